#!/bin/bash
# pgvigil vs PgBouncer benchmark (pgbench through each pooler).
# Usage: bench/run.sh [-T SECONDS] [-r ROUNDS] [--scenarios a,b] [--out FILE] ...
#        bench/run.sh --logins 1000 [--login-workers 4] [-r ROUNDS]   (login cost: scram vs oidc)
#        bench/run.sh --rules [-T SECONDS] [-r ROUNDS]   (governance cost: 5 deny rules vs none)
#        bench/run.sh --governance [--gov-stages] [-T SECONDS] [-r ROUNDS]   (issue 10: governance on vs PgBouncer)
#        bench/run.sh --idle-clients 10000 [-r ROUNDS]   (issue 10: many idle clients, RSS per client)
#        bench/run.sh --syscalls [-T SECONDS]   (issue 10: strace -c / perf per transaction, both poolers)
#        bench/run.sh --help
# See doc/benchmarks.md.
set -euo pipefail
exec /usr/bin/python3 "$(cd "$(dirname "$0")" && pwd)/bench.py" "$@"
