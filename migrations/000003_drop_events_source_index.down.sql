CREATE INDEX CONCURRENTLY IF NOT EXISTS events_source_occurred_at_idx ON events (source, occurred_at);
