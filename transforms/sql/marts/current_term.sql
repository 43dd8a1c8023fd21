-- The latest term the marts, the model and the report speak for ("data to term ..."): the latest
-- term with accepted enrollment submissions from at least `latest_term_min_share` (ref.collection)
-- of the reporting universities, i.e. the participating universities with an accepted submission
-- in any term. A term only a few universities have sent so far (or a stray one) does not count;
-- if no term reaches the share, the term the most universities were accepted for (latest of ties).
-- Term folders after the current term by the clock never get here: the landing scan refuses them.
WITH settings AS (
    SELECT coalesce(max(TRY_CAST(value AS DOUBLE)) FILTER (WHERE setting = 'latest_term_min_share'), 0.5) AS min_share
    FROM ref.collection
),
accepted AS (
    SELECT DISTINCT m.university_code, m.term
    FROM ops.manifest m JOIN ref.universities u USING (university_code)
    WHERE m.dataset = 'enrollment' AND m.status = 'loaded' AND m.term IS NOT NULL AND u.participates
),
reporting AS (SELECT count(DISTINCT university_code) AS universities FROM accepted),
terms AS (
    SELECT a.term, count(*) AS universities_accepted, r.universities AS universities_reporting,
           count(*) / r.universities AS share, s.min_share,
           count(*) >= s.min_share * r.universities AS meets_share
    FROM accepted a, reporting r, settings s
    GROUP BY a.term, r.universities, s.min_share
)
SELECT term, universities_accepted, universities_reporting, round(share, 4) AS share, min_share, meets_share,
       (SELECT count(*) FROM terms l WHERE l.term > t.term) AS later_terms_below_share
FROM terms t
ORDER BY meets_share DESC, CASE WHEN meets_share THEN term END DESC, universities_accepted DESC, term DESC
LIMIT 1
