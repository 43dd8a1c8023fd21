-- The contract's verdict on each file (docs/CONTRACT_RULES.md): the one definition, used by the
-- pipeline (staging, and ops.manifest.verdict after the overrides) and by the validation kit.
--   rejected                a file-level error rule failed
--   accepted_with_warnings  a file-level warning rule failed and no override accepts it
--   accepted                otherwise
-- reason: the failing errors (else the pending warnings) as `rule: message (observed)`, by rule id.
-- Not a model: the caller names the relations (transforms/contract/checks.py `file_verdicts`):
--   {files}   file_id, ord (one row per file; ord keeps the caller's order)
--   {results} file_id, rule_id, severity, scope, success, observed, accepted_override
--   {rules}   rule_id, message_en
WITH failing AS (
    SELECT r.file_id, r.rule_id, r.severity,
           r.rule_id || ': ' || coalesce(m.message_en, r.rule_id) || ' (' || coalesce(r.observed, '') || ')' AS text
    FROM {results} r LEFT JOIN {rules} m USING (rule_id)
    WHERE r.scope = 'file' AND NOT r.success AND NOT coalesce(r.accepted_override, false)
)
SELECT f.file_id,
       CASE WHEN count(x.rule_id) FILTER (WHERE x.severity = 'error') > 0 THEN 'rejected'
            WHEN count(x.rule_id) FILTER (WHERE x.severity = 'warning') > 0 THEN 'accepted_with_warnings'
            ELSE 'accepted' END AS verdict,
       coalesce(string_agg(x.text, '; ' ORDER BY x.rule_id) FILTER (WHERE x.severity = 'error'),
                string_agg(x.text, '; ' ORDER BY x.rule_id) FILTER (WHERE x.severity = 'warning')) AS reason
FROM {files} f LEFT JOIN failing x USING (file_id)
GROUP BY f.file_id, f.ord
ORDER BY f.ord
