-- Engineers projected by 2030 against each national target, per scenario, with the P10-P90 band.
SELECT scenario, dimension, category, target, p10, p50, p90, target - p50 AS gap_p50,
       probability_meeting_target, practice_ready_p50
FROM marts.model_headline
