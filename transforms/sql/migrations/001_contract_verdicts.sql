-- Warehouses created before the contract's verdicts and overrides: the columns they added.
ALTER TABLE ops.manifest ADD COLUMN IF NOT EXISTS verdict VARCHAR;
ALTER TABLE ops.manifest ADD COLUMN IF NOT EXISTS verdict_note VARCHAR;
ALTER TABLE ops.validation_results ADD COLUMN IF NOT EXISTS observed VARCHAR;
ALTER TABLE ops.validation_results ADD COLUMN IF NOT EXISTS scope VARCHAR;
ALTER TABLE ops.validation_results ADD COLUMN IF NOT EXISTS accepted_override BOOLEAN;
ALTER TABLE ops.validation_results ADD COLUMN IF NOT EXISTS override_note VARCHAR;
