-- What became of each student who was studying or on leave in a term, one term later.
-- `not_reported` means the student is absent from the next term's submission (or the
-- university has not submitted that term yet).
WITH terms AS (
    SELECT term, lead(term) OVER (ORDER BY term) AS next_term
    FROM (SELECT DISTINCT term FROM staging.enrollment)
),
s AS (
    SELECT student_key, term, university_code, degree_level, study_year, status, track
    FROM intermediate.enrollment_tracks
)
SELECT a.term AS from_term, t.next_term AS to_term, a.university_code, a.track, a.degree_level,
       a.status AS from_status, coalesce(b.status, 'not_reported') AS to_status, count(*) AS students
FROM s a
JOIN terms t ON t.term = a.term AND t.next_term IS NOT NULL
LEFT JOIN s b ON b.student_key = a.student_key AND b.term = t.next_term
WHERE a.status IN ('studying', 'on_leave')
GROUP BY ALL
ORDER BY ALL
