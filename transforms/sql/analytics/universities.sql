-- One row per participating university: students, graduates, placements, data quality.
SELECT * FROM marts.university_summary
