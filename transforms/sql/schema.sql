-- The warehouse's own tables, as this version of lab2fab defines them. Run once, when a warehouse
-- is created (transforms/warehouse/db.py `ensure_schema`); an existing warehouse is brought up to
-- date by the numbered files in migrations/, and ops.state `schema_version` records how far it is.
CREATE SCHEMA IF NOT EXISTS ops;      -- accounting: runs, files, quarantine, validation results
CREATE SCHEMA IF NOT EXISTS ref;      -- reference data, reloaded from data/reference each run
CREATE SCHEMA IF NOT EXISTS staging;  -- canonical, pseudonymised rows of current submissions
CREATE SCHEMA IF NOT EXISTS marts;    -- what analysts query

CREATE TABLE IF NOT EXISTS ops.state (
    name VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS ops.runs (
    run_id VARCHAR PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    files_seen INTEGER,
    files_new INTEGER,
    rows_read BIGINT,
    rows_loaded BIGINT,
    rows_quarantined BIGINT,
    rebuilt BOOLEAN,
    status VARCHAR NOT NULL
);

-- One row per landed file, ever: loaded, superseded, rejected or duplicate.
CREATE TABLE IF NOT EXISTS ops.manifest (
    file_id VARCHAR PRIMARY KEY,
    dataset VARCHAR NOT NULL,            -- enrollment | placements
    path VARCHAR NOT NULL,               -- relative to the landing zone
    sha256 VARCHAR,
    size_bytes BIGINT NOT NULL,
    mtime DOUBLE NOT NULL,
    university_code VARCHAR,
    term VARCHAR,
    round VARCHAR,
    received_at TIMESTAMP NOT NULL,
    format VARCHAR,
    encoding VARCHAR,
    header_line INTEGER,
    extra_columns VARCHAR,
    rows_read BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    rows_with_warnings BIGINT NOT NULL,
    status VARCHAR NOT NULL,             -- loaded | superseded | rejected | duplicate
    reason VARCHAR,
    superseded_by VARCHAR,
    run_id VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    verdict VARCHAR,                     -- accepted | accepted_with_warnings | rejected (NULL: duplicate)
    verdict_note VARCHAR,                -- pending / accepted file-level warnings (docs/CONTRACT_RULES.md)
    reason_rule_id VARCHAR               -- the ING.* rule of `reason` (transforms/contract/rules.py); last, as migration 002 adds it
);

-- Every rule a row broke. Rows with an `error` are quarantined (not loaded); warnings are reported.
CREATE TABLE IF NOT EXISTS ops.row_issues (
    file_id VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    university_code VARCHAR,
    term VARCHAR,
    line BIGINT NOT NULL,
    rule_id VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    field VARCHAR,
    observed VARCHAR,
    message_en VARCHAR,
    message_vi VARCHAR,
    original_values VARCHAR             -- JSON of the row's non-personal fields as sent
);

CREATE TABLE IF NOT EXISTS ops.validation_results (
    run_id VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    file_id VARCHAR NOT NULL,
    university_code VARCHAR,
    term VARCHAR,
    rule_id VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    rows_checked BIGINT,
    rows_failing BIGINT NOT NULL,
    observed VARCHAR,                    -- the measured value (file rules) or examples of failing values
    scope VARCHAR,                       -- row | file | load (docs/CONTRACT_RULES.md)
    accepted_override BOOLEAN,           -- a failed warning accepted in the overrides file
    override_note VARCHAR                -- its reason, who accepted it and when
);

-- The overrides file(s) as read by the latest run: every row, whether it was used and how often.
CREATE TABLE IF NOT EXISTS ops.accepted_warnings (
    university_code VARCHAR,             -- '' for the programme office's placement files
    term VARCHAR,                        -- term (enrollment) or round (placements)
    rule_id VARCHAR,
    reason VARCHAR,
    accepted_by VARCHAR,
    accepted_on DATE,
    source VARCHAR,                      -- the overrides file
    line BIGINT,                         -- its line (header = 1)
    status VARCHAR,                      -- valid | ignored: <why>
    warnings_accepted BIGINT             -- failed warnings it accepts
);

CREATE TABLE IF NOT EXISTS staging.enrollment (
    file_id VARCHAR NOT NULL,
    university_code VARCHAR NOT NULL,
    term VARCHAR NOT NULL,
    line BIGINT NOT NULL,
    student_key VARCHAR NOT NULL,
    person_key VARCHAR,
    gender VARCHAR,
    programme_code VARCHAR NOT NULL,
    degree_level VARCHAR NOT NULL,
    intake_year INTEGER NOT NULL,
    study_year INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    gpa DOUBLE,
    birth_year INTEGER
);

CREATE TABLE IF NOT EXISTS staging.placements (
    file_id VARCHAR NOT NULL,
    round VARCHAR NOT NULL,
    line BIGINT NOT NULL,
    university_code VARCHAR NOT NULL,
    student_key VARCHAR NOT NULL,
    host_code VARCHAR NOT NULL,
    track VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    semiconductor_job VARCHAR
);

CREATE OR REPLACE VIEW ops.quarantine AS
SELECT * FROM ops.row_issues WHERE severity = 'error';
