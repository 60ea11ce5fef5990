#!/bin/bash
# Quick start on a fresh Debian 12 (as root, or as a user with the packages installed):
#
#   scripts/quickstart.sh         install packages, build, start a throwaway PostgreSQL 15
#                                 on 127.0.0.1:5433 and pgvigil on 127.0.0.1:6432
#   scripts/quickstart.sh stop    stop both
#
# Everything lives in /tmp/pgvigil-quickstart (override: QUICKSTART_DIR).
# QUICKSTART_BIN=/path/to/binary runs that binary instead of building build/pgvigil
# (e.g. QUICKSTART_BIN=/usr/sbin/pgbouncer to try the setup with PgBouncer).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
QS=${QUICKSTART_DIR:-/tmp/pgvigil-quickstart}
PGBIN=/usr/lib/postgresql/15/bin
PG_PORT=5433
POOL_PORT=6432
RUN_USER=pgvigil-test

say() { printf '== %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# Run a command as the unprivileged user when we are root (postgres and the
# pooler refuse to run as root).
as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups -- "$@"
  else
    "$@"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_all() {
  local pid i
  if [ -f "$QS/pooler.pid" ]; then
    pid=$(cat "$QS/pooler.pid")
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping pooler (pid $pid)"
      # first SIGTERM: graceful shutdown; second: immediate
      for sig in TERM TERM KILL; do
        kill -s "$sig" "$pid" 2>/dev/null || break
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break 2; sleep 0.1; done
      done
    fi
    rm -f "$QS/pooler.pid"
  fi
  if [ -f "$QS/pgdata/postmaster.pid" ]; then
    say "stopping PostgreSQL"
    as_user "$PGBIN/pg_ctl" -D "$QS/pgdata" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
}

if [ "${1:-}" = stop ]; then
  stop_all
  say "stopped (files left in $QS)"
  exit 0
elif [ $# -gt 0 ]; then
  die "usage: $0 [stop]"
fi

say "packages"
"$top/scripts/install-deps.sh"

if [ -n "${QUICKSTART_BIN:-}" ]; then
  bin=$(readlink -f "$QUICKSTART_BIN")
  [ -x "$bin" ] || die "QUICKSTART_BIN=$QUICKSTART_BIN is not executable"
else
  say "build"
  "$top/scripts/build.sh" build
  bin="$top/build/pgvigil"
fi

if [ "$(id -u)" -eq 0 ] && ! id "$RUN_USER" >/dev/null 2>&1; then
  say "creating system user $RUN_USER"
  useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_USER"
fi

stop_all
for port in $PG_PORT $POOL_PORT; do
  port_open "$port" && die "port $port on 127.0.0.1 is already in use"
done

rm -rf "$QS"
mkdir -p "$QS/bin"
# the repository may live under /root (mode 700): run a copy the test user can read
cp "$bin" "$QS/bin/pgvigil"
chmod 755 "$QS" "$QS/bin" "$QS/bin/pgvigil"
cp "$top/etc/pgvigil.ini" "$QS/pgvigil.ini"
cp "$top/etc/userlist.txt" "$QS/userlist.txt"
chmod 644 "$QS/pgvigil.ini"
chmod 600 "$QS/userlist.txt"
[ "$(id -u)" -eq 0 ] && chown -R "$RUN_USER:$RUN_USER" "$QS"

say "PostgreSQL 15 on 127.0.0.1:$PG_PORT (data in $QS/pgdata)"
cd "$QS"  # the unprivileged user may not be able to enter the current directory
as_user "$PGBIN/initdb" -D "$QS/pgdata" -U postgres -A trust --auth-host=scram-sha-256 \
  -E UTF8 --locale=C.UTF-8 >"$QS/initdb.log" 2>&1 || { cat "$QS/initdb.log"; die "initdb failed"; }
as_user "$PGBIN/pg_ctl" -D "$QS/pgdata" -l "$QS/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$QS" start >/dev/null \
  || { cat "$QS/postgres.log"; die "PostgreSQL did not start"; }
as_user "$PGBIN/psql" -X -q -h "$QS" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'app-secret';
CREATE DATABASE appdb OWNER app;
SQL

say "pooler on 127.0.0.1:$POOL_PORT ($bin, config $QS/pgvigil.ini)"
# pgvigil.ini names "userlist.txt" relative to the working directory (cwd is $QS)
# no shell function here: "$!" must be the pooler itself (setpriv exec's it)
if [ "$(id -u)" -eq 0 ]; then
  setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups -- \
    "$QS/bin/pgvigil" "$QS/pgvigil.ini" >"$QS/pgvigil.log" 2>&1 </dev/null &
else
  "$QS/bin/pgvigil" "$QS/pgvigil.ini" >"$QS/pgvigil.log" 2>&1 </dev/null &
fi
pooler_pid=$!
echo "$pooler_pid" >"$QS/pooler.pid"
for i in $(seq 100); do
  kill -0 "$pooler_pid" 2>/dev/null || { cat "$QS/pgvigil.log"; die "pooler exited"; }
  port_open "$POOL_PORT" && break
  sleep 0.1
done
port_open "$POOL_PORT" || { cat "$QS/pgvigil.log"; die "pooler is not listening on $POOL_PORT"; }

conn="host=127.0.0.1 port=$POOL_PORT dbname=appdb user=app password=app-secret"
if ! out=$(PGCONNECT_TIMEOUT=10 psql -X -A -t -c "SELECT 'pgvigil quickstart ok: ' || current_user || '@' || current_database()" "$conn" 2>&1); then
  echo "$out" >&2
  tail -n 20 "$QS/pgvigil.log" >&2
  die "the pooler is running but a test query failed (logs in $QS; stop with: $0 stop)"
fi
say "$out"

cat <<EOF

pgvigil is running (pid $pooler_pid, log $QS/pgvigil.log).

Connect:
  psql "$conn"

Stop:
  scripts/quickstart.sh stop
EOF
