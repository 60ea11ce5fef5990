#!/usr/bin/python3
"""
Recording cost in instructions (issue 9): the pooler's instructions per
transaction with every statement recorded against the same pooler without a
governance file, counted by valgrind's callgrind, so the number does not move
with the machine's load the way TPS and CPU time do (see doc/benchmarks.md
"Recording cost").

pgbench -S (-M simple and -M extended, 4 clients, a fixed number of
transactions) runs through pgvigil started under `valgrind --tool=callgrind`
(all threads: the event loop and the recorder thread), once without a
governance file and once with only the benchmark's `recording:` section
(bench.py RECORD_YAML). Reported per transaction: all instructions, the
recording's share (recording minus plain), and of that the SHA-256 of the
hash chain. Under valgrind OpenSSL cannot use the CPU's SHA extensions and
hashes in software, so the SHA-256 count is far above what it costs natively;
the rest of the recording's instructions are as they run natively.

Usage: bench/record_instructions.py [--pgvigil build/pgvigil] [-t 2000] [--out FILE]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (Runner, PostgreSQL set-up, RECORD_YAML, machine facts)

CLIENTS = 4


def callgrind_totals(path):
    """(all instructions, instructions under the SHA-256 functions) of a callgrind output file."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", path], capture_output=True, text=True,
                         check=True).stdout
    total = sha = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) .*PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
        m = re.match(r"\s*([\d,]+) \(.*\)\s+\S*:(\S+)", line)
        if m and m.group(2).startswith("EVP_Digest"):  # the recorder's only way into SHA-256
            sha += int(m.group(1).replace(",", ""))
    return total, sha


def measure(r, args, pgport, slot, mode):
    """Instructions of one pgvigil run under callgrind serving CLIENTS x args.transactions."""
    port = B.free_port()
    gov = "governance.yaml" if slot == "recording" else None
    cfg = r.write(f"{slot}-{mode}.ini", B.ini_text(f"{slot}-{mode}", port, pgport, r.tmp, "trust", 4, 100,
                                                   governance=gov))
    out = os.path.join(r.tmp, f"callgrind.{slot}.{mode}")
    shutil.rmtree(os.path.join(r.tmp, "recordings"), ignore_errors=True)
    proc = r.spawn(f"{slot}-{mode}", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                      r.bin, cfg], stop_sig=signal.SIGINT,
                   stdout=open(os.path.join(r.tmp, f"{slot}-{mode}.log"), "wb"))
    if not B.wait_port(port, proc, timeout=120):
        raise B.Fatal(f"pgvigil ({slot}) did not start under valgrind")
    _, text = r.run([os.path.join(args.pgbin, "pgbench"), "-S", "-M", mode, "-c", str(CLIENTS), "-j", "1",
                     "-t", str(args.transactions), "-h", "127.0.0.1", "-p", str(port), "-U", B.DB_USER,
                     B.DB_NAME], timeout=1800)
    done = re.search(r"actually processed: (\d+)", text)
    if not done or int(done.group(1)) != CLIENTS * args.transactions:
        raise B.Fatal(f"pgbench did not finish:\n{text[-1500:]}")
    r.stop_proc(proc, signal.SIGINT, grace=120)
    for _ in range(100):  # callgrind writes its file at exit
        if os.path.exists(out):
            break
        time.sleep(0.2)
    total, sha = callgrind_totals(out)
    xacts = CLIENTS * args.transactions
    return total / xacts, sha / xacts


def run(r, args):
    r.make_workdir("pgvigil-ibench-")
    r.bin = os.path.join(r.tmp, "pgvigil-bin")
    shutil.copy2(args.pgvigil, r.bin)
    os.chmod(r.bin, 0o755)
    if r.as_user:
        os.chown(r.bin, *r.as_user)
    _, pgport, _ = B.start_postgres(r, args.pgbin)
    r.run([os.path.join(args.pgbin, "pgbench"), "-i", "-q", "-s", "1", "-h", r.tmp, "-p", str(pgport), "-U",
           B.DB_USER, B.DB_NAME], timeout=300)
    r.write("userlist.txt", f'"{B.DB_USER}" ""\n')
    r.write("governance.yaml", B.RECORD_YAML)
    rows = []
    for mode in ("simple", "extended"):
        plain, _ = measure(r, args, pgport, "plain", mode)
        rec, sha = measure(r, args, pgport, "recording", mode)
        rows.append((mode, plain, rec, sha))
        B.log(f"{mode}: plain {plain:,.0f}, recording {rec:,.0f} instructions per transaction "
              f"(SHA-256 {sha:,.0f})")
    lines = ["#### Report: recording cost in instructions (callgrind, `bench/record_instructions.py`)\n",
             f"Date (UTC) {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}; pgvigil `{args.pgvigil}`; "
             f"pgbench -S, {CLIENTS} clients x {args.transactions} transactions; all of pgvigil's threads.\n",
             "| protocol | plain | recording | recording's share | of which SHA-256 (software under "
             "valgrind) | share without SHA-256 |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode, plain, rec, sha in rows:
        lines.append(f"| {mode} | {plain:,.0f} | {rec:,.0f} | {rec - plain:,.0f} | {sha:,.0f} | "
                     f"{rec - plain - sha:,.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "a") as f:
            f.write(report + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pgvigil", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "build", "pgvigil"))
    ap.add_argument("-t", "--transactions", type=int, default=2000, help="per client (default 2000)")
    ap.add_argument("--pgbin", default="/usr/lib/postgresql/15/bin")
    ap.add_argument("--out", default=None, help="append the Markdown report to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (callgrind files)")
    args = ap.parse_args()
    args.pgvigil = os.path.abspath(args.pgvigil)
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        ap.error("valgrind is not installed (apt-get install valgrind)")
    return B.run_script(args, run)


if __name__ == "__main__":
    sys.exit(main())
