-- For every participating university and every term seen: the current state of its submission.
-- The one definition of a submission's status, `late` included: analytics.submissions, the
-- university summary and the report all read it here.
WITH s AS (
    SELECT u.university_code, u.name_vi, t.term,
           CASE WHEN l.status IS NULL THEN 'missing'
                WHEN l.status = 'rejected' THEN 'rejected'
                WHEN l.verdict = 'accepted_with_warnings' THEN 'accepted_with_warnings'
                WHEN l.rows_quarantined > 0 THEN 'accepted_with_issues'
                ELSE 'accepted' END AS submission_status,
           l.path, l.received_at, l.rows_read, l.rows_loaded, l.rows_quarantined, l.rows_with_warnings,
           coalesce(l.reason, l.verdict_note) AS reason,
           t.window_closes_at,
           coalesce(l.received_at > t.window_closes_at, false) AS late
    FROM ref.universities u CROSS JOIN intermediate.term_windows t
    LEFT JOIN intermediate.current_submissions l ON l.university_code = u.university_code AND l.term = t.term
    WHERE u.participates
)
-- A late file that was accepted is shown as late; a rejected or missing one keeps that status.
SELECT *, CASE WHEN late AND submission_status NOT IN ('rejected', 'missing') THEN 'late'
               ELSE submission_status END AS status_with_late
FROM s
ORDER BY ALL
