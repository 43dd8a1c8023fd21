-- For every participating university and every term seen: where its submission stands, as
-- intermediate.current_submissions defines it, or missing; `late` added here. The one status that
-- feedback (through the intermediate model), the portal, analytics.submissions, the university
-- summary and the report all read.
WITH s AS (
    SELECT u.university_code, u.name_vi, t.term,
           coalesce(l.submission_status, 'missing') AS submission_status,
           l.path, l.received_at, l.rows_read, l.rows_loaded, l.rows_quarantined, l.rows_with_warnings,
           coalesce(l.reason, l.verdict_note) AS reason,
           l.reason_rule_id,  -- the ING.* rule of a file's reason; empty when the reason is pending warnings
           l.path_in_use,
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
