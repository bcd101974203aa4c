-- Least privilege: the reporter reads, the collectors insert, and only
-- the migrations' own role (the owner of every table) changes the schema.
-- Two NOLOGIN group roles carry the grants; login roles join them
-- (`migrate` creates those from REPORTER_DATABASE_URL and
-- COLLECTOR_DATABASE_URL, or an administrator does):
--   eventpipe_reader  SELECT on every table of the schema, tables created
--                     later included (default privileges);
--   eventpipe_writer  INSERT on events, SELECT on its event_id alone
--                     (ON CONFLICT (event_id) reads it: the writer learns
--                     whether an id is stored, nothing of the event), SELECT
--                     on schema_migrations for the readiness check; nothing
--                     else.
-- The rollups of migration 2 are maintained by the events_rollup trigger,
-- which from here on runs as the function's owner (SECURITY DEFINER): the
-- writer needs no right on the rollup tables, so it cannot forge or reset
-- a count, only add events. A later migration that replaces the function
-- must keep SECURITY DEFINER and the pinned search_path (pkg/schema's
-- TestRoles fails otherwise).
--
-- Roles belong to the whole server, grants to one database: several
-- databases on one server (staging next to production, the tests) share
-- the roles, so they are created only when missing, tolerating a
-- concurrent migration creating them first, and never dropped by the down
-- migration. When the migrating role may not create roles (a managed
-- service's database owner) and they do not exist yet, the grants are
-- skipped with a warning (the migration must not leave the schema dirty).
-- migrate grants the groups these rights again after every run
-- (pkg/schema.Grant), so groups an administrator or an operator creates
-- later get them from the next run.
BEGIN;

DO $$
DECLARE
    schema_name text := current_schema();
    may_create boolean;
    r text;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
    FOREACH r IN ARRAY ARRAY['eventpipe_reader', 'eventpipe_writer'] LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = r);
        IF NOT may_create THEN
            RAISE WARNING 'role % does not exist and % may not create roles: no grants for it', r, current_user
                USING HINT = format('CREATE ROLE %I NOLOGIN as an administrator, then migrate a new database or grant as migration 4 does', r);
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created meanwhile by the migration of another database
        END;
    END LOOP;

    -- PostgreSQL 15 and later no longer let everyone create objects in
    -- the public schema; take that right away on older servers too.
    IF EXISTS (SELECT FROM pg_namespace n, aclexplode(n.nspacl) a
               WHERE n.nspname = schema_name AND a.grantee = 0 AND a.privilege_type = 'CREATE') THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', schema_name);
    END IF;

    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventpipe_reader') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO eventpipe_reader', schema_name);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO eventpipe_reader', schema_name);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO eventpipe_reader', schema_name);
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventpipe_writer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO eventpipe_writer', schema_name);
        GRANT INSERT ON events TO eventpipe_writer;
        GRANT SELECT (event_id) ON events TO eventpipe_writer;
        GRANT SELECT ON schema_migrations TO eventpipe_writer;
    END IF;

    EXECUTE format('ALTER FUNCTION events_rollup() SECURITY DEFINER SET search_path = %I, pg_temp', schema_name);
END
$$;

-- A SECURITY DEFINER function anyone may call is a door: only the trigger
-- calls this one.
REVOKE EXECUTE ON FUNCTION events_rollup() FROM PUBLIC;

COMMIT;
