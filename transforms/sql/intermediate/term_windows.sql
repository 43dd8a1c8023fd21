-- Every enrollment term seen, with the close of its submission window (the nightly schedule's
-- windows Sep-Nov and Feb-Apr): 30 November for semester 1, 30 April for semester 2, at midnight
-- Vietnam time (UTC+7), as naive UTC like ops.manifest.received_at.
SELECT term,
       CASE right(term, 1)
            WHEN '1' THEN make_timestamp(CAST(left(term, 4) AS INTEGER), 12, 1, 0, 0, 0)
            ELSE make_timestamp(CAST(left(term, 4) AS INTEGER) + 1, 5, 1, 0, 0, 0)
       END - INTERVAL 7 HOUR AS window_closes_at
FROM (SELECT DISTINCT term FROM ops.manifest WHERE dataset = 'enrollment' AND term IS NOT NULL)
