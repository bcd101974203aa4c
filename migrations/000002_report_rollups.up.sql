-- Rollups the reports read instead of scanning events: each holds counts
-- (or sums) of whole time buckets, so a report costs about the same at 10M
-- or 1B stored events. Reports read events only for the uneven edges of a
-- range, below a rollup's finest bucket.
--
-- A statement-level trigger keeps every rollup up to date in the statement
-- that inserts the events, hence in its transaction, from the transition
-- table: it holds only the rows actually inserted, so events skipped by ON
-- CONFLICT DO NOTHING (duplicates, redeliveries) are never counted, and a
-- failed insert adds nothing. Being a trigger, it covers every writer:
-- InsertEvents, COPY loads, hand-written SQL.
--
-- Every rollup is written with its rows ordered by key, so concurrent
-- inserts lock rollup rows in one order and cannot deadlock on them.
BEGIN;

-- No insert may run between the backfill below and the trigger taking
-- over: it would be counted by neither, or by both.
LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;

-- The demographics buckets of api.md. IMMUTABLE one-expression SQL
-- functions are inlined by the planner: they cost nothing per row.
CREATE FUNCTION age_group(age integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN age < 18 THEN 'under-18'
    WHEN age < 25 THEN '18-24'
    WHEN age < 35 THEN '25-34'
    WHEN age < 45 THEN '35-44'
    WHEN age < 55 THEN '45-54'
    WHEN age < 65 THEN '55-64'
    WHEN age >= 65 THEN '65+'
END;

CREATE FUNCTION follower_tier(followers bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN followers < 1000 THEN '<1k'
    WHEN followers < 10000 THEN '1k-10k'
    WHEN followers < 100000 THEN '10k-100k'
    WHEN followers < 1000000 THEN '100k-1M'
    WHEN followers >= 1000000 THEN '1M+'
END;

-- The start of the UTC minute, hour or day of at: date_bin from a UTC
-- midnight is plain arithmetic, cheaper than date_trunc with a time zone.
CREATE FUNCTION utc_bucket(width interval, at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_bin(width, at, timestamptz '2000-01-01 00:00:00+00');

-- The start of the UTC month of at.
CREATE FUNCTION utc_month(at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';

-- The bit of at's hour within its UTC month: 31 days of 24 hours fit in
-- 744 bits.
CREATE FUNCTION utc_month_hour_bit(at timestamptz) RETURNS bit(744)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN set_bit(B'0'::bit(744), ((date_part('day', at AT TIME ZONE 'UTC') - 1) * 24
    + date_part('hour', at AT TIME ZONE 'UTC'))::integer, 1);

-- Events per bucket, source, funnel stage and type, at three granularities
-- (named as date_trunc names them): /reports/events. Besides the rows of
-- each source, stage and type (rolled_up 0), each bucket has rows rolled up
-- over some of them, which hold NULL there: per source and stage (1), per
-- source (3), per stage (5) and all events (7); rolled_up is
-- GROUPING(source, funnel_stage, event_type), a bit for each column rolled
-- up (source 4, stage 2, type 1). A series filtered on anything but the event
-- type then reads one row per bucket, and at most two with a type: a
-- minute series over a month reads 43,200 rows, not 14 times as many.
CREATE TABLE event_counts (
    granularity  text        NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    rolled_up    smallint    NOT NULL CHECK (rolled_up IN (0, 1, 3, 5, 7)),
    bucket       timestamptz NOT NULL,
    source       text,
    funnel_stage text,
    event_type   text,
    events       bigint      NOT NULL,
    CONSTRAINT event_counts_key UNIQUE NULLS NOT DISTINCT
        (granularity, rolled_up, bucket, source, funnel_stage, event_type)
);

-- Transactional events (events.md, "Revenue") per bucket, source and
-- campaign, summed exactly: /reports/revenue. Tiktok has no campaigns:
-- its rows carry NULL, one row per bucket.
CREATE TABLE revenue_sums (
    granularity  text        NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    bucket       timestamptz NOT NULL,
    source       text        NOT NULL,
    campaign_id  text,
    revenue      numeric     NOT NULL,
    transactions bigint      NOT NULL,
    CONSTRAINT revenue_sums_key UNIQUE NULLS NOT DISTINCT (granularity, bucket, source, campaign_id)
);

-- Events per bucket and value of each demographics list: /reports/
-- demographics takes its event counts and follower statistics from here.
-- Dimensions: facebook 'total', 'gender', 'age_group', 'place' (value the
-- country, detail the city); tiktok 'total', 'follower_tier', and 'device'
-- and 'country' of top-funnel events. Every row also keeps the minimum,
-- maximum, sum and count of its events' followers (tiktok's); the report
-- reads them from the 'total' rows.
CREATE TABLE audience_counts (
    granularity      text        NOT NULL CHECK (granularity IN ('hour', 'day')),
    bucket           timestamptz NOT NULL,
    source           text        NOT NULL,
    dimension        text        NOT NULL,
    value            text,
    detail           text,
    events           bigint      NOT NULL,
    followers_min    bigint,
    followers_max    bigint,
    followers_sum    numeric     NOT NULL,
    followers_events bigint      NOT NULL,
    CONSTRAINT audience_counts_key UNIQUE NULLS NOT DISTINCT
        (granularity, bucket, source, dimension, value, detail)
);

-- Which users were active in which hours: one row per UTC month, source,
-- user and combination of the attributes the demographics lists group on,
-- with a bit per hour of the month. Distinct users do not add up across
-- buckets, so they are counted from here: a range of whole hours reads at
-- most one row per user and attribute combination per month it touches,
-- however many events those users sent. Facebook rows leave the tiktok
-- columns NULL and the other way round; tiktok country and device are
-- those of top-funnel events, NULL for bottom ones.
CREATE TABLE audience_users (
    month         timestamptz NOT NULL,
    source        text        NOT NULL,
    user_id       text        NOT NULL,
    gender        text,
    age_group     text,
    country       text,
    city          text,
    follower_tier text,
    device        text,
    hours         bit(744)    NOT NULL,
    CONSTRAINT audience_users_key UNIQUE NULLS NOT DISTINCT
        (month, source, user_id, gender, age_group, country, city, follower_tier, device)
);

-- Each statement aggregates the new rows once, at its finest granularity,
-- and the coarser buckets from that: far fewer rows than the events.
CREATE FUNCTION events_rollup() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH by_minute AS (
        SELECT GROUPING(source, funnel_stage, event_type) AS rolled_up,
               utc_bucket('1 minute', occurred_at) AS bucket, source, funnel_stage, event_type,
               count(*) AS events
        FROM new_events
        GROUP BY bucket, GROUPING SETS ((source, funnel_stage, event_type), (source, funnel_stage),
            (source), (funnel_stage), ())
    ), by_hour AS (
        SELECT rolled_up, utc_bucket('1 hour', bucket) AS bucket, source, funnel_stage, event_type,
               sum(events)::bigint AS events
        FROM by_minute
        GROUP BY 1, 2, 3, 4, 5
    )
    INSERT INTO event_counts AS c (granularity, rolled_up, bucket, source, funnel_stage, event_type, events)
    SELECT 'minute', * FROM by_minute
    UNION ALL
    SELECT 'hour', * FROM by_hour
    UNION ALL
    SELECT 'day', rolled_up, utc_bucket('1 day', bucket), source, funnel_stage, event_type, sum(events)
    FROM by_hour
    GROUP BY 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (granularity, rolled_up, bucket, source, funnel_stage, event_type)
    DO UPDATE SET events = c.events + EXCLUDED.events;

    WITH by_minute AS (
        SELECT utc_bucket('1 minute', occurred_at) AS bucket, source, campaign_id,
               sum(purchase_amount) AS revenue, count(*) AS transactions
        FROM new_events
        WHERE purchase_amount IS NOT NULL
          AND ((source = 'facebook' AND event_type = 'checkout.complete')
            OR (source = 'tiktok' AND event_type = 'purchase'))
        GROUP BY 1, 2, 3
    ), by_hour AS (
        SELECT utc_bucket('1 hour', bucket) AS bucket, source, campaign_id,
               sum(revenue) AS revenue, sum(transactions)::bigint AS transactions
        FROM by_minute
        GROUP BY 1, 2, 3
    )
    INSERT INTO revenue_sums AS r (granularity, bucket, source, campaign_id, revenue, transactions)
    SELECT 'minute', * FROM by_minute
    UNION ALL
    SELECT 'hour', * FROM by_hour
    UNION ALL
    SELECT 'day', utc_bucket('1 day', bucket), source, campaign_id, sum(revenue), sum(transactions)
    FROM by_hour
    GROUP BY 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (granularity, bucket, source, campaign_id)
    DO UPDATE SET revenue = r.revenue + EXCLUDED.revenue,
                  transactions = r.transactions + EXCLUDED.transactions;

    WITH by_hour AS (
        -- One grouping set per dimension; GROUPING tells them apart.
        SELECT bucket, source,
               CASE GROUPING(gender, age_group, country, city, follower_tier, top_device, top_country)
                   WHEN 127 THEN 'total' WHEN 63 THEN 'gender' WHEN 95 THEN 'age_group'
                   WHEN 103 THEN 'place' WHEN 123 THEN 'follower_tier' WHEN 125 THEN 'device'
                   WHEN 126 THEN 'country'
               END AS dimension,
               coalesce(gender, age_group, country, follower_tier, top_device, top_country) AS value,
               city AS detail, count(*) AS events, min(followers) AS followers_min,
               max(followers) AS followers_max, coalesce(sum(followers), 0) AS followers_sum,
               count(followers) AS followers_events
        FROM (SELECT utc_bucket('1 hour', occurred_at) AS bucket, source, followers,
                     CASE WHEN source = 'facebook' THEN gender END AS gender,
                     CASE WHEN source = 'facebook' THEN age_group(age) END AS age_group,
                     CASE WHEN source = 'facebook' THEN country END AS country,
                     CASE WHEN source = 'facebook' THEN city END AS city,
                     CASE WHEN source = 'tiktok' THEN follower_tier(followers) END AS follower_tier,
                     CASE WHEN source = 'tiktok' AND funnel_stage = 'top' THEN device END AS top_device,
                     CASE WHEN source = 'tiktok' AND funnel_stage = 'top' THEN country END AS top_country
              FROM new_events) e
        GROUP BY bucket, source, GROUPING SETS ((), (gender), (age_group), (country, city),
            (follower_tier), (top_device), (top_country))
    )
    INSERT INTO audience_counts AS a (granularity, bucket, source, dimension, value, detail,
        events, followers_min, followers_max, followers_sum, followers_events)
    SELECT 'hour', * FROM by_hour
    WHERE dimension = 'total' OR value IS NOT NULL
    UNION ALL
    SELECT 'day', utc_bucket('1 day', bucket), source, dimension, value, detail, sum(events),
           min(followers_min), max(followers_max), sum(followers_sum), sum(followers_events)
    FROM by_hour
    WHERE dimension = 'total' OR value IS NOT NULL
    GROUP BY 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (granularity, bucket, source, dimension, value, detail)
    DO UPDATE SET events = a.events + EXCLUDED.events,
                  followers_min = least(a.followers_min, EXCLUDED.followers_min),
                  followers_max = greatest(a.followers_max, EXCLUDED.followers_max),
                  followers_sum = a.followers_sum + EXCLUDED.followers_sum,
                  followers_events = a.followers_events + EXCLUDED.followers_events;

    -- Most events land in an hour their user was already seen in. Those
    -- are found by reading the user's row alone, and skipped: no lock, no
    -- new version of the row. Skipping is exact because rows are never
    -- deleted and bits only ever get set: a bit a committed row holds is
    -- there for good.
    INSERT INTO audience_users AS u (month, source, user_id, gender, age_group, country, city,
        follower_tier, device, hours)
    SELECT n.* FROM (
        SELECT utc_month(occurred_at) AS month, source, user_id,
               CASE WHEN source = 'facebook' THEN gender END AS gender,
               CASE WHEN source = 'facebook' THEN age_group(age) END AS age_group,
               CASE WHEN source = 'facebook' OR funnel_stage = 'top' THEN country END AS country,
               CASE WHEN source = 'facebook' THEN city END AS city,
               CASE WHEN source = 'tiktok' THEN follower_tier(followers) END AS follower_tier,
               CASE WHEN source = 'tiktok' AND funnel_stage = 'top' THEN device END AS device,
               bit_or(utc_month_hour_bit(occurred_at)) AS hours
        FROM new_events
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ) n
    -- A scalar subquery, not NOT EXISTS: the planner cannot turn it into
    -- a join that reads the whole table.
    WHERE NOT coalesce((
        SELECT o.hours | n.hours = o.hours FROM audience_users o
        WHERE o.month = n.month AND o.source = n.source AND o.user_id = n.user_id
          AND (o.gender, o.age_group, o.country, o.city, o.follower_tier, o.device)
              IS NOT DISTINCT FROM (n.gender, n.age_group, n.country, n.city, n.follower_tier, n.device)
        LIMIT 1), false)
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ON CONFLICT (month, source, user_id, gender, age_group, country, city, follower_tier, device)
    DO UPDATE SET hours = u.hours | EXCLUDED.hours
    WHERE u.hours | EXCLUDED.hours <> u.hours;

    RETURN NULL;
END
$$;

CREATE TRIGGER events_rollup AFTER INSERT ON events
REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT EXECUTE FUNCTION events_rollup();

-- The backfill: the trigger's statements over the events already stored,
-- so an upgraded database holds what incremental maintenance would have
-- built.
WITH by_minute AS (
    SELECT GROUPING(source, funnel_stage, event_type) AS rolled_up,
           utc_bucket('1 minute', occurred_at) AS bucket, source, funnel_stage, event_type,
           count(*) AS events
    FROM events
    GROUP BY bucket, GROUPING SETS ((source, funnel_stage, event_type), (source, funnel_stage),
        (source), (funnel_stage), ())
), by_hour AS (
    SELECT rolled_up, utc_bucket('1 hour', bucket) AS bucket, source, funnel_stage, event_type,
           sum(events)::bigint AS events
    FROM by_minute
    GROUP BY 1, 2, 3, 4, 5
)
INSERT INTO event_counts AS c (granularity, rolled_up, bucket, source, funnel_stage, event_type, events)
SELECT 'minute', * FROM by_minute
UNION ALL
SELECT 'hour', * FROM by_hour
UNION ALL
SELECT 'day', rolled_up, utc_bucket('1 day', bucket), source, funnel_stage, event_type, sum(events)
FROM by_hour
GROUP BY 2, 3, 4, 5, 6;

WITH by_minute AS (
    SELECT utc_bucket('1 minute', occurred_at) AS bucket, source, campaign_id,
           sum(purchase_amount) AS revenue, count(*) AS transactions
    FROM events
    WHERE purchase_amount IS NOT NULL
      AND ((source = 'facebook' AND event_type = 'checkout.complete')
        OR (source = 'tiktok' AND event_type = 'purchase'))
    GROUP BY 1, 2, 3
), by_hour AS (
    SELECT utc_bucket('1 hour', bucket) AS bucket, source, campaign_id,
           sum(revenue) AS revenue, sum(transactions)::bigint AS transactions
    FROM by_minute
    GROUP BY 1, 2, 3
)
INSERT INTO revenue_sums AS r (granularity, bucket, source, campaign_id, revenue, transactions)
SELECT 'minute', * FROM by_minute
UNION ALL
SELECT 'hour', * FROM by_hour
UNION ALL
SELECT 'day', utc_bucket('1 day', bucket), source, campaign_id, sum(revenue), sum(transactions)
FROM by_hour
GROUP BY 2, 3, 4;

WITH by_hour AS (
    -- One grouping set per dimension; GROUPING tells them apart.
    SELECT bucket, source,
           CASE GROUPING(gender, age_group, country, city, follower_tier, top_device, top_country)
               WHEN 127 THEN 'total' WHEN 63 THEN 'gender' WHEN 95 THEN 'age_group'
               WHEN 103 THEN 'place' WHEN 123 THEN 'follower_tier' WHEN 125 THEN 'device'
               WHEN 126 THEN 'country'
           END AS dimension,
           coalesce(gender, age_group, country, follower_tier, top_device, top_country) AS value,
           city AS detail, count(*) AS events, min(followers) AS followers_min,
           max(followers) AS followers_max, coalesce(sum(followers), 0) AS followers_sum,
           count(followers) AS followers_events
    FROM (SELECT utc_bucket('1 hour', occurred_at) AS bucket, source, followers,
                 CASE WHEN source = 'facebook' THEN gender END AS gender,
                 CASE WHEN source = 'facebook' THEN age_group(age) END AS age_group,
                 CASE WHEN source = 'facebook' THEN country END AS country,
                 CASE WHEN source = 'facebook' THEN city END AS city,
                 CASE WHEN source = 'tiktok' THEN follower_tier(followers) END AS follower_tier,
                 CASE WHEN source = 'tiktok' AND funnel_stage = 'top' THEN device END AS top_device,
                 CASE WHEN source = 'tiktok' AND funnel_stage = 'top' THEN country END AS top_country
          FROM events) e
    GROUP BY bucket, source, GROUPING SETS ((), (gender), (age_group), (country, city),
        (follower_tier), (top_device), (top_country))
)
INSERT INTO audience_counts AS a (granularity, bucket, source, dimension, value, detail,
    events, followers_min, followers_max, followers_sum, followers_events)
SELECT 'hour', * FROM by_hour
WHERE dimension = 'total' OR value IS NOT NULL
UNION ALL
SELECT 'day', utc_bucket('1 day', bucket), source, dimension, value, detail, sum(events),
       min(followers_min), max(followers_max), sum(followers_sum), sum(followers_events)
FROM by_hour
WHERE dimension = 'total' OR value IS NOT NULL
GROUP BY 2, 3, 4, 5, 6;

INSERT INTO audience_users AS u (month, source, user_id, gender, age_group, country, city,
    follower_tier, device, hours)
SELECT utc_month(occurred_at), source, user_id,
       CASE WHEN source = 'facebook' THEN gender END,
       CASE WHEN source = 'facebook' THEN age_group(age) END,
       CASE WHEN source = 'facebook' OR funnel_stage = 'top' THEN country END,
       CASE WHEN source = 'facebook' THEN city END,
       CASE WHEN source = 'tiktok' THEN follower_tier(followers) END,
       CASE WHEN source = 'tiktok' AND funnel_stage = 'top' THEN device END,
       bit_or(utc_month_hour_bit(occurred_at))
FROM events
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;

COMMIT;
