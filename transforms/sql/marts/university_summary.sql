-- One row per participating university: students, graduates, placements, data quality.
WITH last_term AS (SELECT term FROM marts.current_term),  -- the one definition of the latest term
students AS (
    SELECT university_code, count(*) AS students_latest_term
    FROM staging.enrollment, last_term WHERE staging.enrollment.term = last_term.term
      AND status IN ('studying', 'on_leave')
    GROUP BY ALL
),
grads AS (SELECT university_code, count(*) AS graduates_all_terms FROM staging.enrollment WHERE status = 'graduated' GROUP BY ALL),
placed AS (
    SELECT university_code, count(*) AS placed, count(*) FILTER (WHERE outcome = 'completed') AS completed
    FROM staging.placements GROUP BY ALL
),
quality AS (
    SELECT university_code,
           count(*) FILTER (WHERE submission_status = 'missing') AS terms_missing,
           -- no file in use: a rejected correction of a loaded file still leaves the term's rows counted
           count(*) FILTER (WHERE submission_status = 'rejected' AND path_in_use IS NULL) AS terms_rejected,
           sum(rows_quarantined) AS rows_quarantined
    FROM marts.submission_status GROUP BY ALL
)
SELECT u.university_code, u.name_vi, u.province_2025, u.region,
       coalesce(s.students_latest_term, 0) AS students_latest_term,
       coalesce(g.graduates_all_terms, 0) AS graduates_all_terms,
       coalesce(p.placed, 0) AS placed, coalesce(p.completed, 0) AS completed,
       CASE WHEN coalesce(g.graduates_all_terms, 0) > 0 THEN round(coalesce(p.placed, 0) / g.graduates_all_terms, 3) END AS placement_rate,
       coalesce(q.terms_missing, 0) AS terms_missing, coalesce(q.terms_rejected, 0) AS terms_rejected,
       coalesce(q.rows_quarantined, 0) AS rows_quarantined
FROM ref.universities u
LEFT JOIN students s USING (university_code)
LEFT JOIN grads g USING (university_code)
LEFT JOIN placed p USING (university_code)
LEFT JOIN quality q USING (university_code)
WHERE u.participates
ORDER BY ALL
