-- Internship placements by round, host and track, with outcomes.
SELECT pl.round, pl.host_code, h.name AS host_name, h.host_type, pl.track,
       count(*) AS placed,
       count(*) FILTER (WHERE pl.outcome = 'completed') AS completed,
       count(*) FILTER (WHERE pl.outcome = 'withdrew') AS withdrew,
       count(*) FILTER (WHERE pl.semiconductor_job = 'yes') AS semiconductor_jobs
FROM staging.placements pl LEFT JOIN ref.hosts h USING (host_code)
GROUP BY ALL
ORDER BY ALL
