-- The one definition of where each university's enrollment submission for a term stands, for every
-- university and term (NULL: files outside a term folder) with a file in the manifest.
-- The status is the verdict on the newest real attempt, the file the office must act on; the
-- file whose rows are in use (the one loaded file) is named beside it, so a rejected correction
-- of an accepted file says both "rejected" and which file still counts.
-- Not attempts: duplicates, superseded files (a newer file was loaded) and files refused for a
-- reason that is not the office's doing (the rules with attempt=False in
-- transforms/contract/rules.py; tests/test_submission_status.py keeps the list below equal to it).
WITH not_attempts(rule_id) AS (VALUES ('ING.file.hidden'), ('ING.file.unavailable'), ('ING.file.internal'),
                                      ('ING.file.duplicate')),
files AS (
    SELECT m.*, m.status IN ('loaded', 'rejected')
                AND coalesce(m.reason_rule_id, '') NOT IN (SELECT rule_id FROM not_attempts) AS attempt
    FROM ops.manifest m
    WHERE m.dataset = 'enrollment' AND m.university_code IS NOT NULL
),
-- The newest real attempt; when there is none (only a lock file, say), the newest file, so that
-- the office is still told what became of what it sent.
latest AS (
    SELECT * FROM files
    QUALIFY row_number() OVER (PARTITION BY university_code, term
                               ORDER BY attempt DESC, status <> 'superseded' DESC, mtime DESC, path DESC) = 1
),
-- At most one loaded file per university and term: the load supersedes the others.
in_use AS (SELECT university_code, term, file_id, path FROM files WHERE status = 'loaded')
SELECT l.university_code, l.term,
       CASE WHEN l.status <> 'loaded' THEN 'rejected'
            WHEN l.verdict = 'accepted_with_warnings' THEN 'accepted_with_warnings'
            WHEN l.rows_quarantined > 0 THEN 'accepted_with_issues'
            ELSE 'accepted' END AS submission_status,
       l.file_id, l.status, l.verdict, l.verdict_note, l.path, l.rows_read, l.rows_loaded, l.rows_quarantined,
       l.rows_with_warnings, l.reason, l.reason_rule_id, l.received_at,
       u.file_id AS file_id_in_use, u.path AS path_in_use
FROM latest l LEFT JOIN in_use u ON u.university_code = l.university_code AND u.term IS NOT DISTINCT FROM l.term
