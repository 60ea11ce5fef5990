#!/usr/bin/python3
"""
Masking cost (issue 8): one large result set (default 1,000,000 rows x 10
columns) fetched with psql through four poolers started side by side on the
same PostgreSQL, interleaved over rounds:

  pgbouncer        Debian's PgBouncer, for reference
  pgvigil          no governance_file (no hook on the packet path)
  pgvigil-masks    masks configured, but the result set has no masked column
                   (masks cover another table): must cost what `pgvigil` costs
  pgvigil-masked   2 of the 10 columns masked (partial, keep_last 4)

Reported per slot: median pooler CPU seconds for the whole fetch (utime +
stime of the pooler process and its threads, from /proc/PID/task/*/schedstat) and wall time; ratios against
`pgvigil`. Targets: masked <= 1.3x, masks-but-unmasked ~1.0x.

Usage: bench/mask_bench.py [--rows N] [-r ROUNDS] [--pgvigil PATH] [--out FILE]
"""
import argparse
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (Runner, ports, CPU accounting, machine facts)

MASKS = """masks:
  - name: wide-cards
    columns: [public.wide.c2, public.wide.c5]
    method: partial
    keep_last: 4
  - name: elsewhere
    columns: [public.other.secret]
    method: redact
"""

MASKS_ELSEWHERE = """masks:
  - name: elsewhere
    columns: [public.other.secret]
    method: redact
"""


def ini(slot, port, pgport, tmp):
    gov = {"pgvigil-masks": "masks-elsewhere.yaml", "pgvigil-masked": "masks.yaml"}.get(slot)
    return f"""[databases]
{B.db_line(pgport, tmp)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {tmp}
auth_type = trust
auth_file = {tmp}/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 100
logfile = {tmp}/{slot}.log
pidfile = {tmp}/{slot}.pid
""" + (f"governance_file = {tmp}/{gov}\n" if gov else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("--fetches", type=int, default=1,
                    help="fetch the result this many times per round (one psql session) and report per fetch: "
                         "a 100k-row fetch is only ~20 ms of pooler CPU")
    ap.add_argument("--pgvigil", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "build", "pgvigil"))
    ap.add_argument("--pgbouncer", default="/usr/sbin/pgbouncer")
    ap.add_argument("--pgbin", default="/usr/lib/postgresql/15/bin")
    ap.add_argument("--out", default=None, help="append the Markdown report to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (for perf report)")
    args = ap.parse_args()
    args.pgvigil = os.path.abspath(args.pgvigil)
    args.scale, args.duration = 0, 0  # for B.machine_info
    return B.run_script(args, run)


def run(r, args):
    r.make_workdir("pgvigil-mbench-")
    write = r.write

    _, pgport, psql = B.start_postgres(r, args.pgbin)
    B.log(f"loading {args.rows} rows x 10 columns")
    r.run(psql + ["-h", r.tmp, "-p", str(pgport), "-d", B.DB_NAME, "-c",
                  "CREATE TABLE wide AS SELECT i AS c1, md5(i::text) AS c2, i * 7 AS c3, "
                  "'name-' || i AS c4, lpad((i::bigint * 7919 % 10000000000)::text, 16, '4') AS c5, "
                  "now() AS c6, i % 100 AS c7, 'city ' || (i % 977) AS c8, i::numeric / 3 AS c9, "
                  f"(i % 2 = 0) AS c10 FROM generate_series(1, {args.rows}) i; "
                  "CREATE TABLE other (secret text)"], timeout=900)
    write("userlist.txt", f'"{B.DB_USER}" ""\n')
    write("masks.yaml", MASKS)
    write("masks-elsewhere.yaml", MASKS_ELSEWHERE)

    slots = ["pgbouncer", "pgvigil", "pgvigil-masks", "pgvigil-masked"]
    ports, procs = {}, {}
    for slot in slots:
        binary = args.pgbouncer if slot == "pgbouncer" else args.pgvigil
        dst = os.path.join(r.tmp, f"{slot}-bin")
        shutil.copy2(binary, dst)
        os.chmod(dst, 0o755)
        if r.as_user:
            os.chown(dst, *r.as_user)
        ports[slot] = B.free_port()
        cfg = write(f"{slot}.ini", ini(slot, ports[slot], pgport, r.tmp))
        procs[slot] = r.spawn(slot, [dst, cfg], stop_sig=signal.SIGTERM,
                              stdout=open(os.path.join(r.tmp, f"{slot}.out"), "wb"))
    for slot in slots:
        if not B.wait_port(ports[slot], procs[slot]):
            raise B.Fatal(f"{slot} did not start")

    query = "SELECT * FROM wide"
    check = {}
    for slot in slots:  # warm-up, and proof that masking is on where it should be
        _, out = r.run(psql + ["-h", "127.0.0.1", "-p", str(ports[slot]), "-d", B.DB_NAME, "-At", "-c",
                               "SELECT c2, c5 FROM wide WHERE c1 = 1"], timeout=120)
        check[slot] = out.strip()
    if not check["pgvigil-masked"].startswith("*") or check["pgvigil"].startswith("*") or \
            check["pgvigil-masks"].startswith("*"):
        raise B.Fatal(f"masking not as expected: {check}")
    B.log(f"row 1 (c2|c5): {check}")

    results = {s: [] for s in slots}
    for rnd in range(args.rounds):
        order = slots if rnd % 2 == 0 else list(reversed(slots))
        for slot in order:
            pids = B.proc_tree(procs[slot].pid)
            t0, w0 = B.cpu_ns(pids), time.monotonic()
            r.run(psql + ["-h", "127.0.0.1", "-p", str(ports[slot]), "-d", B.DB_NAME, "-At", "-o", "/dev/null"]
                  + ["-c", query] * args.fetches, timeout=1800)
            cpu = (B.cpu_ns(pids) - t0) / 1e9 / args.fetches  # schedstat: ns resolution
            results[slot].append((cpu, (time.monotonic() - w0) / args.fetches))
            B.log(f"round {rnd + 1} {slot}: pooler CPU {cpu:.2f} s, wall {results[slot][-1][1]:.2f} s")

    med = {s: (B.median([c for c, _ in v]), B.median([w for _, w in v])) for s, v in results.items()}
    base = med["pgvigil"][0]
    lines = [f"### Masking cost: {args.rows:,} rows x 10 columns (`SELECT * FROM wide` with psql)\n",
             f"Date (UTC) {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}; nproc {os.cpu_count()}; "
             f"{args.rounds} rounds interleaved; {args.fetches} fetch(es) per round, reported per fetch; "
             f"pgvigil `{args.pgvigil}`.\n",
             "| slot | pooler CPU s (median) | wall s | CPU ratio vs pgvigil |",
             "|---|---:|---:|---:|"]
    for s in slots:
        lines.append(f"| {s} | {med[s][0]:.3f} | {med[s][1]:.2f} | "
                     f"{(med[s][0] / base) if base else float('nan'):.2f} |")
    if med["pgbouncer"][0]:
        lines.append(f"\nPass-through (issue 10: pgvigil <= PgBouncer): pgvigil / pgbouncer pooler CPU = "
                     f"**{med['pgvigil'][0] / med['pgbouncer'][0]:.2f}**.")
    lines.append("\nTargets: pgvigil-masked <= 1.3x pgvigil (2 of 10 columns masked); pgvigil-masks "
                 "(masks configured, result without masked columns) ~1.0x.\n")
    lines.append("Per round, pooler CPU s: " + "; ".join(
        f"{s} " + " ".join(f"{c:.3f}" for c, _ in results[s]) for s in slots) + "\n")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "a") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
