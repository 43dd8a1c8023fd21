-- Students by term, university, programme, track, degree level and status (current submissions only).
SELECT e.term, e.university_code, u.region, e.programme_code, e.track,
       e.degree_level, e.study_year, e.status, count(*) AS students
FROM intermediate.enrollment_tracks e
LEFT JOIN ref.universities u USING (university_code)
GROUP BY ALL
ORDER BY ALL
