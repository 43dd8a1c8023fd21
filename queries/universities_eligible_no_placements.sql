-- Universities with eligible students (graduates in the programmes) but no placements yet.
SELECT university_code, university_name, region, graduates
FROM analytics.eligible_without_placement
ORDER BY graduates DESC
LIMIT 20;
