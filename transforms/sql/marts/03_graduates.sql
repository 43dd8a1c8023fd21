-- Graduates by the term they graduated in. Academic year YYYY's graduates finish by June YYYY+1.
CREATE OR REPLACE TABLE marts.graduates AS
SELECT e.term, CAST(left(e.term, 4) AS INTEGER) AS academic_year, e.university_code,
       coalesce(p.track, 'unknown') AS track, e.degree_level, count(*) AS graduates
FROM staging.enrollment e LEFT JOIN ref.programmes p USING (programme_code)
WHERE e.status = 'graduated'
GROUP BY ALL
ORDER BY ALL;
