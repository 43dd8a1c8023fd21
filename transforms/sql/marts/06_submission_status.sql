-- For every participating university and every term seen: the current state of its submission.
CREATE OR REPLACE TABLE marts.submission_status AS
WITH terms AS (SELECT DISTINCT term FROM ops.manifest WHERE dataset = 'enrollment' AND term IS NOT NULL),
latest AS (
    SELECT university_code, term, status, verdict, verdict_note, path, rows_read, rows_loaded, rows_quarantined,
           rows_with_warnings, reason, received_at
    FROM ops.manifest
    WHERE dataset = 'enrollment' AND status IN ('loaded', 'rejected')
    QUALIFY row_number() OVER (PARTITION BY university_code, term
                               ORDER BY status = 'loaded' DESC, mtime DESC, path DESC) = 1
)
SELECT u.university_code, u.name_vi, t.term,
       CASE WHEN l.status IS NULL THEN 'missing'
            WHEN l.status = 'rejected' THEN 'rejected'
            WHEN l.verdict = 'accepted_with_warnings' THEN 'accepted_with_warnings'
            WHEN l.rows_quarantined > 0 THEN 'accepted_with_issues'
            ELSE 'accepted' END AS submission_status,
       l.path, l.received_at, l.rows_read, l.rows_loaded, l.rows_quarantined, l.rows_with_warnings,
       coalesce(l.reason, l.verdict_note) AS reason
FROM ref.universities u CROSS JOIN terms t
LEFT JOIN latest l ON l.university_code = u.university_code AND l.term = t.term
WHERE u.participates
ORDER BY ALL;
