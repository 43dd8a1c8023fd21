-- Every current enrollment row with the track of its programme ('unknown' when the programme is
-- not in the catalogue): the one place the track of a student is decided.
SELECT e.*, coalesce(p.track, 'unknown') AS track
FROM staging.enrollment e
LEFT JOIN ref.programmes p USING (programme_code)
