#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on loopback for the test suite, or stop it.
#   eval "$(bash .ci/postgres.sh start)"   -> exports GATEWAY_TEST_DATABASE_URL
#   bash .ci/postgres.sh stop
# Installs the Debian server package when it is missing. Needs root (CI and dev machines are).
set -euo pipefail
PGPORT="${PGPORT:-54329}"
PGDATA_DIR="${PGDATA_DIR:-/tmp/gateway-pg-$PGPORT}"

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

case "${1:-start}" in
  start)
    if [ -z "$(bin_dir)" ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2
      apt-get install -y -qq postgresql >&2
    fi
    BIN="$(bin_dir)"
    if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
      runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >&2 || true
    fi
    rm -rf "$PGDATA_DIR"
    mkdir -p "$PGDATA_DIR"
    chown postgres:postgres "$PGDATA_DIR"
    runuser -u postgres -- "$BIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres --no-sync >/dev/null
    runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w \
      -o "-p $PGPORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
    runuser -u postgres -- "$BIN/createdb" -h 127.0.0.1 -p "$PGPORT" gateway_test
    echo "export GATEWAY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/gateway_test"
    ;;
  stop)
    BIN="$(bin_dir)"
    [ -n "$BIN" ] && [ -f "$PGDATA_DIR/postmaster.pid" ] && \
      runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >&2 || true
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
