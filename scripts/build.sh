#!/bin/bash
# Build pgvigil out of tree: scripts/build.sh [BUILD_DIR] [EXTRA_CFLAGS]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build}
extra=${2:-}
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] || ./autogen.sh >/dev/null 2>&1
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$(cat .pv_cflags 2>/dev/null)" != "$extra" ]; then
  CFLAGS="-O2 -g $extra" LDFLAGS="$extra" "$top/configure" --enable-werror >configure.out 2>&1 || { cat configure.out; exit 1; }
  echo "$extra" > .pv_cflags
fi
make -j"$(nproc)" >make.out 2>&1 || { cat make.out; exit 1; }
echo "built $dir/pgvigil"
