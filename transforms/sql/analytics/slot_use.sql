-- Internship slots offered (scenario input) and used (placements recorded), by round, host and track.
SELECT c.round, c.host_code, h.name AS host_name, h.host_type, c.track, c.slots_offered, c.slots_used, c.use_rate
FROM marts.capacity c LEFT JOIN ref.hosts h USING (host_code)
