#!/bin/bash
# Install every Debian 12 package pgvigil needs to build, test and benchmark.
# Idempotent; run as root (or via sudo).
set -euo pipefail
PKGS=(
  # build
  build-essential autoconf automake libtool pkg-config
  libevent-dev libssl-dev libc-ares-dev libcjose-dev libjansson-dev libyaml-dev
  libpg-query-dev libprotobuf-c-dev
  # unit tests, sanitizers, fuzzing
  libcmocka-dev clang libclang-rt-14-dev
  # integration tests and benchmarks
  postgresql-15 postgresql-client-15 python3 python3-pytest python3-psycopg python3-asyncpg
  pgbouncer procps
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
