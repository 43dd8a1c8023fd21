-- Students by term, university, programme, track, degree level and status (current submissions only).
CREATE OR REPLACE TABLE marts.enrollment_by_term AS
SELECT e.term, e.university_code, u.region, e.programme_code, coalesce(p.track, 'unknown') AS track,
       e.degree_level, e.study_year, e.status, count(*) AS students
FROM staging.enrollment e
LEFT JOIN ref.universities u USING (university_code)
LEFT JOIN ref.programmes p USING (programme_code)
GROUP BY ALL
ORDER BY ALL;
