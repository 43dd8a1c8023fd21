-- Rows kept out of the warehouse, by university, term and broken rule (current and past submissions).
SELECT q.university_code, q.term, q.rule_id, q.field, any_value(q.message_en) AS message_en,
       any_value(q.message_vi) AS message_vi, count(DISTINCT (q.file_id, q.line)) AS rows_quarantined,
       bool_or(m.status = 'loaded') AS in_current_submission
FROM ops.quarantine q JOIN ops.manifest m USING (file_id)
GROUP BY q.university_code, q.term, q.rule_id, q.field
