-- The collector's PostgreSQL login (docs/databases.md): pg_monitor and nothing else.
--
-- pg_monitor reads every pg_stat_* view and setting, other sessions' query texts in
-- pg_stat_activity and pg_stat_statements — what the collector's postgresql receiver needs for
-- its metrics, query samples and top queries. The role gets no privilege on any table, may not
-- create anything, and its sessions default to read-only transactions (a second guard: it has
-- nothing to write with in the first place; tests/integration/test_database_observability.py
-- tries). Run by an administrator, once per cluster, in the `postgres` database (the receiver
-- reads pg_stat_statements there; the view is cluster-wide):
--
--   psql -v ON_ERROR_STOP=1 -v monitor_user=sagascope_monitor -v monitor_password=... \
--        -d postgres -f observability/postgresql/monitoring-role.sql
--
-- docker compose and the Kubernetes dev overlay run it through initdb.sh at the first start;
-- the local stack and the e2e tier run it themselves. Re-running it only resets the password.
-- The server must preload the extension: shared_preload_libraries=pg_stat_statements. PostgreSQL
-- 15 or later: older versions let every role create objects in schema public.

SELECT format('CREATE ROLE %I LOGIN', :'monitor_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'monitor_user') \gexec

ALTER ROLE :"monitor_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 5 PASSWORD :'monitor_password';
ALTER ROLE :"monitor_user" SET default_transaction_read_only = on;
GRANT pg_monitor TO :"monitor_user";

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
