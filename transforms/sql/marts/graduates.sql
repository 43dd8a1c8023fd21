-- Graduates by the term they graduated in. Academic year YYYY's graduates finish by June YYYY+1.
SELECT term, CAST(left(term, 4) AS INTEGER) AS academic_year, university_code,
       track, degree_level, count(*) AS graduates
FROM intermediate.enrollment_tracks
WHERE status = 'graduated'
GROUP BY ALL
ORDER BY ALL
