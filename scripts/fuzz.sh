#!/bin/bash
# Build and run every libFuzzer target in fuzz/ for a bounded time.
#   scripts/fuzz.sh [CONFIGURED_BUILD_DIR] [FUZZ_BUILD_DIR]
# CONFIGURED_BUILD_DIR (default build) supplies include/pv_build_config.h; a
# minimal one is generated when it has none. Binaries go to FUZZ_BUILD_DIR
# (default build-fuzz). Each target starts from fuzz/corpus/<target>/, copied
# to a temporary directory so new corpus entries never touch the repository.
# Env: FUZZ_SECONDS (default 20) per target, FUZZ_TARGETS (names to run,
# default all), CLANG (default clang). Exits non-zero if any target crashes.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
cfg_dir=${1:-build}
out=${2:-build-fuzz}
secs=${FUZZ_SECONDS:-20}
cc=${CLANG:-clang}
# shellcheck disable=SC2054 # commas are inside one -fsanitize= argument
CFLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE)

# target -> "sources|libs|max_len"
declare -A SPEC=(
  [fuzz_config]="src/config.c||8192"
  [fuzz_authfile]="src/authfile.c src/scram.c src/util.c|-lcrypto|4096"
  [fuzz_scram]="src/scram.c src/util.c|-lcrypto|1024"
  [fuzz_proto]="src/proto.c src/util.c|-lcrypto|4096"
  [fuzz_mask_scan]="src/mask_value.c src/util.c|-lcrypto|4096"
  [fuzz_copy]="src/mask_copy.c src/util.c|-lpg_query -ljansson -lcrypto|4096"
)

command -v "$cc" >/dev/null || { echo "fuzz.sh: $cc not found" >&2; exit 1; }
mkdir -p "$out/include" "$out/crashes"
out=$(cd "$out" && pwd)
if [ -f "$cfg_dir/include/pv_build_config.h" ]; then
  inc=$(cd "$cfg_dir/include" && pwd)
else
  inc="$out/include"
  echo "fuzz.sh: no $cfg_dir/include/pv_build_config.h, using a minimal one"
  cat >"$inc/pv_build_config.h" <<'EOF'
/* Minimal stand-in for the configure-generated header (scripts/fuzz.sh). */
#define PACKAGE "pgvigil"
#define PACKAGE_NAME "pgvigil"
#define PACKAGE_VERSION "0.0.0-fuzz"
#define PACKAGE_STRING "pgvigil 0.0.0-fuzz"
#define VERSION "0.0.0-fuzz"
EOF
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pgvigil-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

targets=()
for f in fuzz/fuzz_*.c; do
  t=$(basename "$f" .c)
  if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $t "* ]]; then
    continue
  fi
  [ -n "${SPEC[$t]:-}" ] || { echo "fuzz.sh: no source table entry for $t (edit scripts/fuzz.sh)" >&2; exit 1; }
  targets+=("$t")
done

for t in "${targets[@]}"; do
  IFS='|' read -r srcs libs _ <<<"${SPEC[$t]}"
  # shellcheck disable=SC2086 # word-splitting the source and lib lists is intended
  "$cc" "${CFLAGS[@]}" -Iinclude -I"$inc" "fuzz/$t.c" $srcs $libs -o "$out/$t" 2>"$out/$t.build.log" ||
    { cat "$out/$t.build.log"; echo "fuzz.sh: building $t failed" >&2; exit 1; }
done
echo "built ${#targets[@]} fuzz targets in $out"

failed=0
nfail=0
for t in "${targets[@]}"; do
  IFS='|' read -r _ _ maxlen <<<"${SPEC[$t]}"
  corpus="$work/$t"
  mkdir -p "$corpus"
  [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$corpus/"
  log="$out/$t.log"
  echo "== $t (${secs}s)"
  if "$out/$t" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/crashes/$t-" "$corpus" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$log" | tail -1 || true
  else
    failed=1
    nfail=$((nfail + 1))
    tail -n 60 "$log"
    echo "fuzz.sh: $t FAILED (full log: $log)" >&2
    sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | while IFS= read -r a; do
      echo "  crash input: $a" >&2
      echo "  reproduce:   $out/$t '$a'" >&2
    done
  fi
done
echo "fuzz: $((${#targets[@]} - nfail)) passed, $nfail failed"
exit $failed
