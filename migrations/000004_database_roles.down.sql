-- Takes back this database's grants. The roles stay: they belong to the
-- whole server, and other databases or login roles may still use them.
BEGIN;

DO $$
DECLARE
    schema_name text := current_schema();
BEGIN
    EXECUTE 'ALTER FUNCTION events_rollup() SECURITY INVOKER RESET search_path';
    EXECUTE 'GRANT EXECUTE ON FUNCTION events_rollup() TO PUBLIC';
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventpipe_reader') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE SELECT ON TABLES FROM eventpipe_reader', schema_name);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM eventpipe_reader', schema_name);
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM eventpipe_reader', schema_name);
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventpipe_writer') THEN
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM eventpipe_writer', schema_name);
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM eventpipe_writer', schema_name);
    END IF;
END
$$;

COMMIT;
