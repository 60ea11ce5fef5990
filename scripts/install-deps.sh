#!/bin/bash
# Install every Debian 12 package pgvigil needs to build, test and benchmark.
# Idempotent; run as root (or via sudo).
set -euo pipefail
PKGS=(
  # build
  build-essential autoconf automake libtool pkg-config
  libevent-dev libssl-dev libc-ares-dev libcjose-dev libjansson-dev libyaml-dev
  libpg-query-dev libprotobuf-c-dev libcurl4-openssl-dev
  # unit tests, sanitizers, fuzzing
  libcmocka-dev clang libclang-rt-14-dev
  # integration tests and benchmarks
  postgresql-15 postgresql-client-15 python3 python3-pytest python3-psycopg python3-asyncpg
  python3-jwt python3-cryptography
  pgbouncer procps prometheus
  # real-driver tests (test/integration/test_drivers.py): JDBC, and node-postgres' pure-JS
  # runtime dependencies (node-pg itself is unpacked below)
  libpostgresql-jdbc-java default-jdk-headless nodejs node-split2 node-xtend
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root to install)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node-pg (Debian's node-postgres 8.8) hard-depends on node-libpq, a native addon that
# cannot be installed next to the machine's NodeSource nodejs (apt: "held broken
# packages"). Its pure-JS modules are all the tests need: unpack the Debian package
# into a private module directory that test_drivers.py puts on NODE_PATH.
NODEPG_DIR=/usr/local/share/pgvigil-test/nodejs
if [ ! -e /usr/share/nodejs/pg/package.json ] && [ ! -e "$NODEPG_DIR/pg/package.json" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "node-pg is not installed (run as root to unpack it into $NODEPG_DIR)" >&2
    exit 1
  fi
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  export DEBIAN_FRONTEND=noninteractive
  (cd "$tmp" && { apt-get download -qq node-pg 2>/dev/null || { apt-get update -qq && apt-get download -qq node-pg; }; })
  dpkg-deb -x "$tmp"/node-pg_*.deb "$tmp/root"
  mkdir -p "$NODEPG_DIR"
  cp -a "$tmp/root/usr/share/nodejs/." "$NODEPG_DIR/"
  rm -rf "$tmp"
fi
