-- Warehouses created before ingest reasons carried their rule id: the column beside the reason.
ALTER TABLE ops.manifest ADD COLUMN IF NOT EXISTS reason_rule_id VARCHAR;
-- Their rows were written without it, so it is filled once here, from the reason text, with the
-- table feedback used to match reasons by (first match wins), after the few cases where the code
-- now names another rule than that table did. This is the only place a reason's words decide a
-- rule: from now on the code that refuses a file names the rule (transforms/contract/rules.py).
UPDATE ops.manifest SET reason_rule_id = CASE
    -- the contract refused the file: its reason starts with the failing file rules' ids
    WHEN regexp_matches(reason, '^(ENR|PLC)\.') THEN 'ING.file.rejected'
    -- where the code's choice differs from the old table
    WHEN regexp_matches(reason, 'because of an internal error') THEN 'ING.file.internal'
    WHEN regexp_matches(reason, 'line breaks and quotes make|runs over several lines|is written twice; one would overwrite')
        THEN 'ING.file.records'
    WHEN regexp_matches(reason, 'unpacks to a different size or content') THEN 'ING.file.damaged'
    WHEN regexp_matches(reason, 'is not inside the landing zone') THEN 'ING.file.link'
    -- the old table
    WHEN regexp_matches(reason, '^same content \(sha256') THEN 'ING.file.duplicate'
    WHEN regexp_matches(reason, 'every one of the \d+ rows was quarantined') THEN 'ING.file.all_quarantined'
    WHEN regexp_matches(reason, 'replaced by a newer submission') THEN 'ING.file.superseded'
    WHEN regexp_matches(reason, 'symbolic link|not a regular file') THEN 'ING.file.link'
    WHEN regexp_matches(reason, 'temporary lock file|hidden file') THEN 'ING.file.hidden'
    WHEN regexp_matches(reason, 'file name ') THEN 'ING.file.name'
    WHEN regexp_matches(reason, 'is a term after the current term') THEN 'ING.file.term_future'
    WHEN regexp_matches(reason, 'outside the collection''s terms') THEN 'ING.file.term_range'
    WHEN regexp_matches(reason, 'not in an? \w+/|is not a university registry code|is not a term like|is not a round like')
        THEN 'ING.file.location'
    WHEN regexp_matches(reason, 'disappeared while|could not be listed|could not be examined|could not be read|changed while')
        THEN 'ING.file.unavailable'
    WHEN regexp_matches(reason, 'over the \d+-byte limit|exceed the limit|more than \d+ rows|unpacks to|parts, over|merged cells|merged ranges')
        THEN 'ING.file.size'
    WHEN regexp_matches(reason, 'entity declarations|external references') THEN 'ING.file.unsafe'
    WHEN regexp_matches(reason, 'encoding cannot be determined') THEN 'ING.file.encoding'
    WHEN regexp_matches(reason, 'is not accepted|legacy Excel|spreadsheet saved with|password-protected|the file is empty')
        THEN 'ING.file.type'
    WHEN regexp_matches(reason, 'has no sheet named|has no worksheet') THEN 'ING.file.sheet'
    WHEN regexp_matches(reason, 'no header row found') THEN 'ING.file.header'
    WHEN regexp_matches(reason, 'missing required column') THEN 'ING.file.columns'
    WHEN regexp_matches(reason, 'the quote \("\) that opens|would overwrite another|records in the file but')
        THEN 'ING.file.records'
    WHEN regexp_matches(reason, 'not a valid |cannot be read as |not a readable CSV') THEN 'ING.file.damaged'
    ELSE 'ING.file.rejected' END
WHERE reason IS NOT NULL AND reason_rule_id IS NULL;
