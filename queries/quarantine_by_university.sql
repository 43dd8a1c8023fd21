-- Which universities have rows kept out of their current submissions, and why.
SELECT university_code, term, rule_id, message_en, rows_quarantined
FROM analytics.quarantine_by_rule
WHERE in_current_submission
ORDER BY rows_quarantined DESC
LIMIT 30;
