#!/usr/bin/env bash
# First-start initialisation the way the official postgres image does it, for the Debian-built
# stand-in: on an empty PGDATA, initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD
# (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_INITDB_ARGS, password auth for
# remote hosts, listen on all addresses, create POSTGRES_DB (default: the user's name) and run
# /docker-entrypoint-initdb.d/*.sh|*.sql. Then exec the server. Runs as the container's user.
set -Eeuo pipefail

if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi

if [[ "${1:-}" == postgres ]]; then
  : "${PGDATA:?PGDATA must be set}"
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [[ -z "${POSTGRES_PASSWORD:-}" && "$auth" != trust ]]; then
      echo "error: the database is uninitialised and POSTGRES_PASSWORD is not set" \
           "(set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without one)" >&2
      exit 1
    fi
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list, as upstream
    initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
    rm -f "$pwfile"
    trap - EXIT
    printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    # A temporary server on the socket only, for CREATE DATABASE and the init scripts.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    export PGUSER="$user" PGPASSWORD="${POSTGRES_PASSWORD:-}"
    if [[ "$db" != postgres ]]; then
      psql -v ON_ERROR_STOP=1 --dbname postgres --set db="$db" <<<'CREATE DATABASE :"db";'
    fi
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh) echo "running $f"; . "$f" ;;
        *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --dbname "$db" -f "$f" ;;
        *) echo "ignoring $f" ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGUSER PGPASSWORD
    echo "PostgreSQL init process complete; ready for start up."
  fi
fi
exec "$@"
