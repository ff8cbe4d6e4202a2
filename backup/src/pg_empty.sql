-- Empties a PostgreSQL database before a restore, inside the restore's transaction.
--
-- An ordinary user: DROP OWNED drops what it owns (what its dump holds and what a failed
-- migration added); what others own stays, and a restore that collides with it fails
-- and is rolled back. A non-superuser cannot revoke what others granted it, so its
-- privileges stay too.
--
-- A superuser dumped everything, and the bootstrap superuser (the `postgres` role, or
-- POSTGRES_USER of the postgres image) is refused by DROP OWNED: PostgreSQL does not
-- record what it owns ("required by the database system"). So a superuser empties the
-- whole database: event triggers, publications, large objects, extensions (but those
-- in pg_catalog, e.g. plpgsql), foreign-data wrappers of no extension, then every
-- schema. A dump assumes `public` exists, so it is created again with its owner, its
-- privileges and its comment as they were.
DO $cutover_empty$
DECLARE
    o record;
    public_owner text;
    public_acl aclitem[];
    public_comment text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        DROP OWNED BY CURRENT_USER CASCADE;
        RETURN;
    END IF;
    FOR o IN SELECT evtname FROM pg_catalog.pg_event_trigger LOOP
        EXECUTE format('DROP EVENT TRIGGER %I', o.evtname);
    END LOOP;
    FOR o IN SELECT pubname FROM pg_catalog.pg_publication LOOP
        EXECUTE format('DROP PUBLICATION %I', o.pubname);
    END LOOP;
    PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
    FOR o IN SELECT e.extname FROM pg_catalog.pg_extension e
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
             WHERE n.nspname <> 'pg_catalog' LOOP
        EXECUTE format('DROP EXTENSION IF EXISTS %I CASCADE', o.extname);
    END LOOP;
    FOR o IN SELECT w.fdwname FROM pg_catalog.pg_foreign_data_wrapper w
             WHERE NOT EXISTS (
                 SELECT FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_foreign_data_wrapper'::regclass
                   AND d.objid = w.oid AND d.deptype = 'e') LOOP
        EXECUTE format('DROP FOREIGN DATA WRAPPER IF EXISTS %I CASCADE', o.fdwname);
    END LOOP;
    SELECT nspowner::regrole::text, nspacl, pg_catalog.obj_description(oid, 'pg_namespace')
        INTO public_owner, public_acl, public_comment
        FROM pg_catalog.pg_namespace WHERE nspname = 'public';
    FOR o IN SELECT nspname FROM pg_catalog.pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema')
               AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp\_%' LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', o.nspname);
    END LOOP;
    IF public_owner IS NOT NULL THEN
        EXECUTE format('CREATE SCHEMA public AUTHORIZATION %s', public_owner);
        -- A new schema has the default privileges (no list): its owner's alone.
        IF public_acl IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON SCHEMA public FROM %s', public_owner);
            FOR o IN SELECT a.privilege_type, a.is_grantable,
                            CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                 ELSE a.grantee::regrole::text END AS who
                     FROM pg_catalog.aclexplode(public_acl) a LOOP
                EXECUTE format('GRANT %s ON SCHEMA public TO %s%s', o.privilege_type, o.who,
                               CASE WHEN o.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END IF;
        IF public_comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON SCHEMA public IS %L', public_comment);
        END IF;
    END IF;
END
$cutover_empty$;
