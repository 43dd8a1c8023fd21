-- Slot use by host and round: offered, used, and the share used.
SELECT round, host_name, track, slots_offered, slots_used, use_rate
FROM analytics.slot_use
WHERE slots_used > 0 OR slots_offered > 0
ORDER BY round, host_name, track;
