-- One row per participating university: students, graduates, placements, data quality.
CREATE OR REPLACE VIEW analytics.universities AS
SELECT * FROM marts.university_summary;
