-- Slots offered (reference scenario) against placements made, per round, host and track.
SELECT coalesce(s.round, p.round) AS round, coalesce(s.host_code, p.host_code) AS host_code,
       coalesce(s.track, p.track) AS track, coalesce(s.slots, 0) AS slots_offered,
       coalesce(p.placed, 0) AS slots_used,
       CASE WHEN coalesce(s.slots, 0) > 0 THEN round(coalesce(p.placed, 0) / s.slots, 3) END AS use_rate
FROM ref.host_slots s
FULL JOIN (SELECT round, host_code, track, sum(placed) AS placed FROM marts.placements_by_round GROUP BY ALL) p
  ON p.round = s.round AND p.host_code = s.host_code AND p.track = s.track
ORDER BY ALL
