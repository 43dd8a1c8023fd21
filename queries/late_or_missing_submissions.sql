-- Universities whose submission for the latest term is missing or rejected.
SELECT university_code, university_name, term, submission_status, reason
FROM analytics.submissions
WHERE term = (SELECT max(term) FROM analytics.submissions) AND submission_status IN ('missing', 'rejected')
ORDER BY university_code;
