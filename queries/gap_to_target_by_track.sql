-- Gap to the 2030 target by track group, baseline scenario: P50 projection, band and probability.
SELECT category AS track_group, target, round(p10) AS p10, round(p50) AS p50, round(p90) AS p90,
       round(gap_p50) AS gap, probability_meeting_target
FROM analytics.gap_to_target
WHERE scenario = 'baseline' AND dimension IN ('total', 'track_group')
ORDER BY target DESC;
