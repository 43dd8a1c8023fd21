-- Where each participating university's submission for each term stands.
SELECT university_code, name_vi AS university_name, term, submission_status, path AS file,
       received_at, rows_read, rows_loaded, rows_quarantined, rows_with_warnings, reason, reason_rule_id,
       path_in_use AS file_in_use, late
FROM marts.submission_status
