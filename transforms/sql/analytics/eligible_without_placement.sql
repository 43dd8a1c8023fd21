-- Universities whose students graduated in the programmes but none of whom has had a placement.
SELECT university_code, name_vi AS university_name, region, graduates_all_terms AS graduates, placed
FROM marts.university_summary
WHERE graduates_all_terms > 0 AND placed = 0
