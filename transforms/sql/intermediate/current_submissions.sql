-- The submission that stands for each university and term: its loaded file if it has one,
-- else its newest rejected file (superseded and duplicate files never stand).
SELECT university_code, term, status, verdict, verdict_note, path, rows_read, rows_loaded, rows_quarantined,
       rows_with_warnings, reason, received_at
FROM ops.manifest
WHERE dataset = 'enrollment' AND status IN ('loaded', 'rejected')
QUALIFY row_number() OVER (PARTITION BY university_code, term
                           ORDER BY status = 'loaded' DESC, mtime DESC, path DESC) = 1
