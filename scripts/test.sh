#!/bin/bash
# Run every test: install packages, build (plain and ASan+UBSan), C unit tests,
# integration tests against a real PostgreSQL 15, bounded fuzzing.
# Works on a fresh Debian 12 machine as root; as a normal user when the
# packages are already installed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/install-deps.sh

PYTEST=(/usr/bin/python3 -m pytest -p no:cacheprovider -q test/integration)

echo "== plain build"
scripts/build.sh build
echo "== unit tests"
make -C build check >build/check.out 2>&1 || { cat build/check.out; find build/test -name '*.log' -exec cat {} +; exit 1; }
grep -E '^# (TOTAL|PASS|FAIL|ERROR)' build/check.out || true
echo "== integration tests (plain build)"
PGVIGIL_BIN="$top/build/pgvigil" "${PYTEST[@]}"

if [ "${PGVIGIL_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== ASan+UBSan build"
  scripts/build.sh build-asan "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  make -C build-asan check >build-asan/check.out 2>&1 || { cat build-asan/check.out; find build-asan/test -name '*.log' -exec cat {} +; exit 1; }
  echo "== integration tests (sanitizer build)"
  PGVIGIL_BIN="$top/build-asan/pgvigil" PGVIGIL_SANITIZED=1 "${PYTEST[@]}"
fi

if [ "${PGVIGIL_SKIP_FUZZ:-0}" != 1 ] && command -v clang >/dev/null; then
  echo "== bounded fuzzing (FUZZ_SECONDS=${FUZZ_SECONDS:-20} per target)"
  scripts/fuzz.sh build
fi
