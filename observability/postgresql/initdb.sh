#!/bin/sh
# The postgres image runs this once, on an empty data directory, as its superuser (mounted into
# /docker-entrypoint-initdb.d/): the collector's monitoring role from monitoring-role.sql, with
# the password from POSTGRES_MONITOR_PASSWORD (DEV-ONLY default in .env / the dev overlay's
# Secret). monitoring-role.sql itself is mounted at /etc/sagascope/postgresql/, NOT in
# /docker-entrypoint-initdb.d/, where the image would run it without its variables.
set -eu
: "${POSTGRES_MONITOR_PASSWORD:?set POSTGRES_MONITOR_PASSWORD (the collector's PostgreSQL password)}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v monitor_user="${POSTGRES_MONITOR_USER:-sagascope_monitor}" \
  -v monitor_password="$POSTGRES_MONITOR_PASSWORD" \
  -f "${MONITORING_ROLE_SQL:-/etc/sagascope/postgresql/monitoring-role.sql}"
