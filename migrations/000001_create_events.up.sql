-- One row per distinct eventId. Typed columns hold what the reports filter
-- and group on; payload keeps the whole event as received (unknown fields
-- included), so nothing of an event is lost.
CREATE TABLE events (
    event_id        text        NOT NULL,
    -- The event's own timestamp: reports filter on it, not on arrival, so
    -- late and out-of-order events land in their own time buckets.
    occurred_at     timestamptz NOT NULL,
    source          text        NOT NULL CHECK (source IN ('facebook', 'tiktok')),
    funnel_stage    text        NOT NULL CHECK (funnel_stage IN ('top', 'bottom')),
    event_type      text        NOT NULL,
    user_id         text        NOT NULL,
    -- facebook: data.user.age, .gender, .location.country, .location.city
    age             integer,
    gender          text,
    -- facebook: data.user.location.country; tiktok top: data.engagement.country
    country         text,
    city            text,
    -- tiktok: data.user.followers
    followers       bigint,
    -- tiktok top: data.engagement.device; facebook bottom: data.engagement.device
    device          text,
    -- facebook bottom: data.engagement.campaignId
    campaign_id     text,
    -- Money stays exact: numeric, never float. Set only where the event
    -- carries a purchaseAmount.
    purchase_amount numeric     CHECK (purchase_amount >= 0),
    correlation_id  text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    payload         jsonb       NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (event_id)
);

CREATE INDEX events_occurred_at_idx ON events (occurred_at);
CREATE INDEX events_source_occurred_at_idx ON events (source, occurred_at);
-- Revenue reports read only transactional rows.
CREATE INDEX events_revenue_idx ON events (occurred_at)
    WHERE purchase_amount IS NOT NULL;
