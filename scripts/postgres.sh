#!/usr/bin/env bash
# A local PostgreSQL for the test suite: installs it if missing (apt), initializes a
# cluster once, starts it on 127.0.0.1:$MERCATO_PG_PORT (default 55432) and prints its
# SQLAlchemy URL on stdout (everything else goes to stderr). Idempotent: a running
# cluster is reused. Usage: export MERCATO_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
# Stop it with: bash scripts/postgres.sh stop
set -euo pipefail
CACHE=${MERCATO_CACHE:-$HOME/.cache/mercato}
PORT=${MERCATO_PG_PORT:-55432}
DB=${MERCATO_PG_DB:-mercato_test}
log() { printf '\033[1;34m[postgres]\033[0m %s\n' "$*" >&2; }

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN=$(find_bin)
if [[ -z "$BIN" || ! -x "$BIN/initdb" ]]; then
  [[ $EUID -eq 0 ]] || { log "PostgreSQL is not installed and this is not root: install the 'postgresql' package"; exit 1; }
  log "installing PostgreSQL (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
  BIN=$(find_bin)
fi

# The server refuses to run as root: as root it runs as the 'postgres' user, which must
# be able to reach the data directory ($HOME is often 0700: then /var/tmp is used).
RUN=()
DATA=${MERCATO_PG_DIR:-$CACHE/pg}
if [[ $EUID -eq 0 ]]; then
  RUN=(runuser -u postgres --)
  mkdir -p "$CACHE"
  if [[ -z "${MERCATO_PG_DIR:-}" ]] && ! "${RUN[@]}" test -x "$CACHE"; then
    DATA=/var/tmp/mercato-pg
    [[ -e "$CACHE/pg" ]] || ln -s "$DATA" "$CACHE/pg"
  fi
  mkdir -p "$DATA" && chown postgres: "$DATA" && chmod 700 "$DATA"
else
  mkdir -p "$DATA" && chmod 700 "$DATA"
fi
PG=("${RUN[@]}" "$BIN/pg_ctl" -D "$DATA")

if [[ "${1:-}" == "stop" ]]; then
  "${PG[@]}" status >/dev/null 2>&1 && "${PG[@]}" stop -m fast >&2
  exit 0
fi

if [[ ! -f "$DATA/PG_VERSION" ]]; then
  log "initializing a cluster in $DATA"
  "${RUN[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! "${PG[@]}" status >/dev/null 2>&1; then
  log "starting on 127.0.0.1:$PORT"
  "${PG[@]}" start -w -l "$DATA/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c max_connections=200" >/dev/null
fi
if ! "${RUN[@]}" "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1; then
  "${RUN[@]}" "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "create database $DB" >&2
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
