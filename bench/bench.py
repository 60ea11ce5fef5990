#!/usr/bin/python3
"""pgvigil vs PgBouncer benchmark harness.

Starts a throwaway PostgreSQL 15, loads pgbench data, starts PgBouncer and
pgvigil with equivalent configurations, runs pgbench scenarios through both
(interleaved, several rounds) and prints a Markdown report.

Only the Python standard library is used, except by the login benchmark
(--logins), which signs tokens with PyJWT and cryptography.  See doc/benchmarks.md.
Normally invoked through bench/run.sh.
"""
import argparse
import ctypes
import datetime
import hashlib
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

TEST_USER = "pgvigil-test"
DB_USER = "bench"
DB_PASSWORD = "bench"
DB_NAME = "bench"
SLOTS = ("pgbouncer", "pgvigil")  # column order in the report

# name -> (pgbench options, description).  "{big}" is replaced by --big-clients.
SCENARIOS = {
    "select-simple": ("-S -M simple -c 50 -j 2", "select-only, simple protocol, 50 clients"),
    "select-extended": ("-S -M extended -c 50 -j 2", "select-only, extended protocol (unnamed statements), 50 clients"),
    "select-prepared": ("-S -M prepared -c 50 -j 2",
                        "select-only, named prepared statements, 50 clients (PgBouncer < 1.21 "
                        "cannot run it in transaction mode: Debian's 1.18 shows 'failed')"),
    "tpcb": ("-c 20 -j 2", "TPC-B-like read/write, 20 clients"),
    "connect": ("-C -S -c 20 -j 2", "new connection per transaction (-C), select-only, 20 clients"),
    "clients-1000": ("-S -c {big} -j 2", "select-only, {big} clients multiplexed on a pool of 20"),
}
BIG = "clients-1000"

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Fatal(Exception):
    pass


class Timeout(Exception):
    pass


# --------------------------------------------------------------------------
# /proc helpers


def proc_tree(root):
    """root pid plus all its descendants (poolers may fork workers)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids):
    """utime+stime (clock ticks) summed over pids; threads are included."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2:].split()
        total += int(rest[11]) + int(rest[12])  # fields 14 and 15
    return total


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def system_busy_ticks():
    """busy clock ticks of all CPUs together, from /proc/stat.

    irq and softirq time are left out: the kernel does not charge it to any
    process, and during a run most of it is the benchmark's own loopback
    traffic."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    return v[0] + v[1] + v[2] + (v[7] if len(v) > 7 else 0)


def harness_ticks():
    """CPU of this script plus its finished children (pgbench, psql)."""
    t = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        t += ru.ru_utime + ru.ru_stime
    return t * CLK_TCK


def wait_quiet(pct, max_wait, our_pids):
    """Wait until processes outside the benchmark use < pct % of one core."""
    end = time.time() + max_wait
    while True:
        pids = our_pids()
        b0, h0, o0, w0 = system_busy_ticks(), harness_ticks(), cpu_ticks(pids), time.time()
        time.sleep(1)
        busy = max(0.0, system_busy_ticks() - b0 - (harness_ticks() - h0) - (cpu_ticks(pids) - o0)) \
            / CLK_TCK / (time.time() - w0) * 100
        if busy < pct:
            return
        if time.time() >= end:
            log(f"machine still busy ({busy:.0f}% of one core) after {max_wait} s; running anyway")
            return


class RssSampler(threading.Thread):
    def __init__(self, pids, interval=0.1):
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.peak = rss_kib(pids)
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            self.peak = max(self.peak, rss_kib(self.pids))
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.peak = max(self.peak, rss_kib(self.pids))
        return self.peak


# --------------------------------------------------------------------------
# process management


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _pdeathsig():
    # If this harness is killed with SIGKILL, the kernel kills the children.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Runner:
    def __init__(self, args):
        self.args = args
        self.procs = []  # (name, Popen, stop signal)
        self.tmp = None
        self.as_user = None  # (uid, gid) when running as root
        self.cleaned = False

    # -- spawning
    def spawn(self, name, argv, stop_sig=signal.SIGTERM, as_user=True, stdout=None, **kw):
        user_kw = {}
        if as_user and self.as_user:
            user_kw = dict(user=self.as_user[0], group=self.as_user[1], extra_groups=[])
        env = kw.pop("env", None) or self.env()
        p = subprocess.Popen(argv, env=env, cwd=self.tmp, stdin=subprocess.DEVNULL,
                             stdout=stdout, stderr=subprocess.STDOUT if stdout else None,
                             start_new_session=True, preexec_fn=_pdeathsig, **user_kw, **kw)
        self.procs.append((name, p, stop_sig))
        return p

    def run(self, argv, timeout, as_user=False, check=True, **kw):
        """Run to completion (bounded), capturing output."""
        p = self.spawn(argv[0], argv, as_user=as_user, stdout=subprocess.PIPE, **kw)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_proc(p, signal.SIGTERM)
            out = (p.stdout.read() if p.stdout else b"") or b""
            raise Fatal(f"{' '.join(argv)}: timed out after {timeout}s\n{out.decode(errors='replace')[-2000:]}")
        except BaseException:  # interrupted: do not leave it running
            self.stop_proc(p, signal.SIGTERM)
            raise
        finally:
            self.procs = [x for x in self.procs if x[1] is not p]
        out = out.decode(errors="replace")
        if check and p.returncode != 0:
            raise Fatal(f"{' '.join(argv)}: exit {p.returncode}\n{out[-2000:]}")
        return p.returncode, out

    def env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        e.update(PGPASSWORD=DB_PASSWORD, PGSSLMODE="disable", PGGSSENCMODE="disable",
                 PGCONNECT_TIMEOUT="20", LC_ALL="C", HOME=self.tmp or "/tmp")
        return e

    @staticmethod
    def stop_proc(p, sig, grace=10):
        if p.poll() is not None:
            return
        try:
            p.send_signal(sig)
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        except ProcessLookupError:
            pass

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        # stop in reverse order of start: clients, poolers, then postgres
        for name, p, sig in reversed(self.procs):
            try:
                self.stop_proc(p, sig)
            except Exception as e:  # keep going; cleanup must not stop half way
                log(f"stopping {name}: {e}")
        self.procs = []
        if self.tmp and os.path.isdir(self.tmp):
            if self.args.keep:
                log(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def ensure_user():
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        log(f"creating system user {TEST_USER}")
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--user-group", TEST_USER], check=False)
        pw = pwd.getpwnam(TEST_USER)  # may have been created concurrently by the test suite
    return pw.pw_uid, pw.pw_gid


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, need)
    if hard != resource.RLIM_INFINITY and hard < want:
        if os.geteuid() == 0:
            hard = want
        else:
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        log(f"WARNING: RLIMIT_NOFILE is {want} (< {need}); the {BIG} scenario may fail")
    return want


def version_line(binary):
    try:
        r = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).splitlines()[0].strip()
    except Exception as e:
        return f"unknown ({e})"


def machine_info(args, bins, pgbin):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("CPU", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("load average at start", " ".join(open("/proc/loadavg").read().split()[:3])),
        ("PostgreSQL", version_line(os.path.join(pgbin, "postgres"))),
        ("pgbouncer slot", f"{bins['pgbouncer']} ({version_line(bins['pgbouncer'])})"),
        ("pgvigil slot", f"{bins['pgvigil']} ({version_line(bins['pgvigil'])})"),
        ("settings", f"-T {args.duration} s, {args.rounds} rounds, scale {args.scale}, "
                     f"auth_type={args.auth}, pool_mode=transaction, default_pool_size={args.pool_size}"
                     + (f", --quiet {args.quiet:g}" if args.quiet else "")),
    ]


def pooler_ini(slot, port, pgport, tmp, args):
    return f"""; generated by bench/bench.py -- identical for both poolers except port/files
[databases]
{DB_NAME} = host=127.0.0.1 port={pgport} dbname={DB_NAME}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {tmp}
auth_type = {args.auth}
auth_file = {tmp}/userlist.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = {args.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 60
pidfile = {tmp}/{slot}.pid
"""


def parse_pgbench(out, connect_mode):
    m = re.search(r"number of transactions actually processed:\s*(\d+)", out)
    xacts = int(m.group(1)) if m else None
    pat = r"tps = ([0-9.]+) \(including reconnection times\)" if connect_mode else \
        r"tps = ([0-9.]+) \(without initial connection time\)"
    m = re.search(pat, out) or re.search(r"tps = ([0-9.]+)", out)
    tps = float(m.group(1)) if m else None
    return tps, xacts


def fmt_num(x, nd=0):
    if x is None:
        return "failed"
    return f"{x:,.{nd}f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="Benchmark pgvigil against PgBouncer with pgbench (see doc/benchmarks.md).")
    env = os.environ.get
    ap.add_argument("-T", "--duration", type=int, default=int(env("BENCH_DURATION", 10)),
                    help="seconds per pgbench run (env BENCH_DURATION, default 10)")
    ap.add_argument("-r", "--rounds", type=int, default=int(env("BENCH_ROUNDS", 3)),
                    help="rounds; each round runs every scenario on both poolers (env BENCH_ROUNDS, default 3)")
    ap.add_argument("-s", "--scale", type=int, default=int(env("BENCH_SCALE", 10)),
                    help="pgbench scale factor (env BENCH_SCALE, default 10)")
    ap.add_argument("--scenarios", default=env("BENCH_SCENARIOS", ",".join(SCENARIOS)),
                    help=f"comma-separated subset of: {', '.join(SCENARIOS)} (env BENCH_SCENARIOS)")
    ap.add_argument("--big-clients", type=int, default=int(env("BENCH_BIG_CLIENTS", 1000)),
                    help=f"client count of the {BIG} scenario (env BENCH_BIG_CLIENTS, default 1000)")
    ap.add_argument("--pool-size", type=int, default=20, help="default_pool_size for both poolers (default 20)")
    ap.add_argument("--auth", choices=("md5", "trust"), default=env("BENCH_AUTH", "md5"),
                    help="auth_type for both poolers (env BENCH_AUTH, default md5)")
    ap.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", 3)),
                    help="seconds of select-only warm-up per pooler before round 1 (default 3; 0 = none)")
    ap.add_argument("--quiet", type=float, default=float(env("BENCH_QUIET", 0)), metavar="PCT",
                    help="on a shared machine: before each run wait (up to --quiet-wait s) until processes outside "
                         "the benchmark use < PCT%% of one core, and run again once if they used more during the "
                         "run, keeping the quieter result (env BENCH_QUIET; default 0 = off)")
    ap.add_argument("--quiet-wait", type=int, default=20, help="seconds to wait for --quiet (default 20)")
    ap.add_argument("--pgvigil", default=env("PGVIGIL_BIN", os.path.join(TOP, "build", "pgvigil")),
                    help="pgvigil binary (env PGVIGIL_BIN, default build/pgvigil)")
    ap.add_argument("--pgbouncer", default=env("PGBOUNCER_BIN", shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"),
                    help="PgBouncer binary (env PGBOUNCER_BIN, default /usr/sbin/pgbouncer)")
    ap.add_argument("--pgbin", default=env("PG_BIN", "/usr/lib/postgresql/15/bin"),
                    help="PostgreSQL bin directory (env PG_BIN)")
    ap.add_argument("--title", default=env("BENCH_TITLE", ""), help="heading of the report")
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    ap.add_argument("--max-runtime", type=int, default=0,
                    help="hard limit in seconds for the whole run (default: estimated time x2 + 300)")
    ap.add_argument("--logins", type=int, default=0, metavar="N",
                    help="login benchmark instead of pgbench: N sequential logins (connect, authenticate, "
                         "SELECT 1, disconnect) per run against PgBouncer scram-sha-256, pgvigil scram-sha-256 "
                         "and pgvigil oidc; reports logins/s and pooler CPU per login (see doc/benchmarks.md)")
    ap.add_argument("--login-workers", type=int, default=4,
                    help="concurrent login workers (processes) for --logins (default 4)")
    args = ap.parse_args()

    if args.logins:
        return main_logins(ap, args)
    scen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in scen if s not in SCENARIOS]
    if bad or not scen:
        ap.error(f"unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)}")
    if args.duration < 1 or args.rounds < 1:
        ap.error("duration and rounds must be >= 1")

    bins = {"pgbouncer": args.pgbouncer, "pgvigil": args.pgvigil}
    for slot, b in bins.items():
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            ap.error(f"{slot} binary not found or not executable: {b}")
    for tool in ("initdb", "postgres", "pgbench", "psql"):
        if not os.access(os.path.join(args.pgbin, tool), os.X_OK):
            ap.error(f"{args.pgbin}/{tool} not found (install postgresql-15)")

    per_run = args.duration + 15 + (20 if BIG in scen else 0)
    estimate = 20 + args.scale * 2 + 2 * args.warmup + args.rounds * 2 * sum(
        args.duration + (2 if s == BIG else 1.2) + (args.quiet_wait if args.quiet else 0) for s in scen)
    estimate = int(estimate)
    limit = args.max_runtime or estimate * 2 + 300
    log(f"scenarios: {', '.join(scen)}; estimated runtime ~{estimate // 60} min {estimate % 60} s "
        f"(hard limit {limit} s)")

    r = Runner(args)

    def on_signal(signum, frame):
        raise Fatal(f"interrupted by signal {signum}")

    def on_alarm(signum, frame):
        raise Timeout(f"--max-runtime {limit} s exceeded")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        rc = bench(r, args, scen, bins, per_run)
    except (Fatal, Timeout) as e:
        log(f"ERROR: {e}")
        rc = 2
    finally:
        signal.alarm(0)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        r.cleanup()
    return rc


def main_logins(ap, args):
    if args.logins < 1 or args.login_workers < 1 or args.rounds < 1:
        ap.error("--logins, --login-workers and --rounds must be >= 1")
    bins = {"pgbouncer": args.pgbouncer, "pgvigil": args.pgvigil}
    for slot, b in bins.items():
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            ap.error(f"{slot} binary not found or not executable: {b}")
    for tool in ("initdb", "postgres", "psql"):
        if not os.access(os.path.join(args.pgbin, tool), os.X_OK):
            ap.error(f"{args.pgbin}/{tool} not found (install postgresql-15)")
    limit = args.max_runtime or 600 + args.rounds * 4 * (args.logins // 20 + 30)
    r = Runner(args)

    def on_signal(signum, frame):
        raise Fatal(f"interrupted by signal {signum}")

    def on_alarm(signum, frame):
        raise Timeout(f"--max-runtime {limit} s exceeded")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        rc = bench_logins(r, args, bins)
    except (Fatal, Timeout) as e:
        log(f"ERROR: {e}")
        rc = 2
    finally:
        signal.alarm(0)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        r.cleanup()
    return rc


def bench(r, args, scen, bins, per_run):
    pgbin = args.pgbin
    nofile = raise_nofile(max(4096, 2 * args.big_clients + 1024))
    info = machine_info(args, bins, pgbin)

    r.tmp = tempfile.mkdtemp(prefix="pgvigil-bench-")
    if os.geteuid() == 0:
        r.as_user = ensure_user()
        os.chown(r.tmp, *r.as_user)
    os.chmod(r.tmp, 0o700)
    log(f"work dir {r.tmp}, RLIMIT_NOFILE {nofile}, running servers as "
        f"{TEST_USER if r.as_user else pwd.getpwuid(os.getuid()).pw_name}")

    def own(path):
        if r.as_user:
            os.chown(path, *r.as_user)

    # binaries are copied: the repository (and build/) may be under /root
    run_bins = {}
    for slot, b in bins.items():
        dst = os.path.join(r.tmp, f"{slot}-bin")
        shutil.copy2(b, dst)
        os.chmod(dst, 0o755)
        own(dst)
        run_bins[slot] = dst

    # ---- PostgreSQL
    datadir = os.path.join(r.tmp, "pgdata")
    pgport = free_port()
    log("initdb")
    r.run([os.path.join(pgbin, "initdb"), "-D", datadir, "-U", DB_USER, "-A", "trust",
           "--no-locale", "-E", "UTF8", "--no-sync"], timeout=120, as_user=True)
    with open(os.path.join(datadir, "postgresql.auto.conf"), "a") as f:
        f.write(f"""
listen_addresses = '127.0.0.1'
port = {pgport}
unix_socket_directories = '{r.tmp}'
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
""")
    pglog = open(os.path.join(r.tmp, "postgres.log"), "wb")
    pg = r.spawn("postgres", [os.path.join(pgbin, "postgres"), "-D", datadir], stop_sig=signal.SIGINT,
                 stdout=pglog)
    if not wait_port(pgport, pg, timeout=60):
        raise Fatal("PostgreSQL did not start:\n" + open(pglog.name, errors="replace").read()[-2000:])

    psql = [os.path.join(pgbin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", r.tmp, "-p", str(pgport),
            "-U", DB_USER]
    r.run(psql + ["-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"], timeout=60)
    log(f"pgbench -i -s {args.scale}")
    r.run([os.path.join(pgbin, "pgbench"), "-i", "-q", "-s", str(args.scale), "-h", r.tmp, "-p", str(pgport),
           "-U", DB_USER, DB_NAME], timeout=120 + 30 * args.scale)

    # ---- poolers
    md5 = "md5" + hashlib.md5((DB_PASSWORD + DB_USER).encode()).hexdigest()
    with open(os.path.join(r.tmp, "userlist.txt"), "w") as f:
        f.write(f'"{DB_USER}" "{md5}"\n')
    own(f.name)
    ports, poolers, logs = {}, {}, {}
    for slot in SLOTS:
        ports[slot] = free_port()
        ini = os.path.join(r.tmp, f"{slot}.ini")
        with open(ini, "w") as f:
            f.write(pooler_ini(slot, ports[slot], pgport, r.tmp, args))
        own(ini)
        logs[slot] = open(os.path.join(r.tmp, f"{slot}.log"), "wb")
        poolers[slot] = r.spawn(slot, [run_bins[slot], ini], stop_sig=signal.SIGTERM, stdout=logs[slot])
    dead = set()
    for slot in SLOTS:
        if not wait_port(ports[slot], poolers[slot]):
            log(f"{slot} did not start listening on 127.0.0.1:{ports[slot]}; its runs are reported as failed. "
                "Log tail:\n" + open(logs[slot].name, errors="replace").read()[-2000:])
            dead.add(slot)
    if len(dead) == len(SLOTS):
        raise Fatal("no pooler started")

    def alive(slot):
        if slot in dead:
            return False
        if poolers[slot].poll() is not None:
            log(f"{slot} exited with {poolers[slot].returncode}; log tail:\n"
                + open(logs[slot].name, errors="replace").read()[-1500:])
            dead.add(slot)
            return False
        return True

    # connectivity check (one query, one server connection) then idle RSS
    idle_rss = {}
    for slot in SLOTS:
        idle_rss[slot] = 0
        if slot in dead:
            continue
        rc, out = r.run(psql[:5] + ["-h", "127.0.0.1", "-p", str(ports[slot]), "-U", DB_USER, "-d", DB_NAME,
                                    "-c", "SELECT count(*) FROM pgbench_branches"], timeout=30, check=False)
        if rc != 0:
            log(f"{slot}: query through the pooler failed:\n{out[-1500:]}")
            dead.add(slot)
        time.sleep(0.5)
        idle_rss[slot] = rss_kib(proc_tree(poolers[slot].pid))
    log("idle RSS: " + ", ".join(f"{s} {idle_rss[s]} KiB" for s in SLOTS))

    def pgbench(slot, opts, duration, sample_rss=False):
        argv = [os.path.join(pgbin, "pgbench"), "-n", "-T", str(duration), "-h", "127.0.0.1", "-p",
                str(ports[slot]), "-U", DB_USER] + opts.split() + [DB_NAME]
        pids = proc_tree(poolers[slot].pid)
        if args.quiet:
            wait_quiet(args.quiet, args.quiet_wait, lambda: proc_tree(pg.pid) + [
                p for sl in SLOTS if sl not in dead for p in proc_tree(poolers[sl].pid)])
        sampler = RssSampler(pids) if sample_rss else None
        ours = proc_tree(pg.pid) + [p for sl in SLOTS if sl not in dead and sl != slot
                                     for p in proc_tree(poolers[sl].pid)]
        t0 = cpu_ticks(pids)
        o0, c0, b0, w0 = cpu_ticks(ours), harness_ticks(), system_busy_ticks(), time.time()
        if sampler:
            sampler.start()
        try:
            rc, out = r.run(argv, timeout=duration + per_run, check=False)
        finally:
            peak = sampler.stop() if sampler else None
        t1 = cpu_ticks(pids)
        # PostgreSQL backends started during the run (e.g. the pool filling up) count as ours too
        ours_end = set(ours) | set(proc_tree(pg.pid))
        o1, c1, b1, w1 = cpu_ticks(ours_end), harness_ticks(), system_busy_ticks(), time.time()
        # CPU used by processes that are not part of this benchmark, in % of one core
        foreign = max(0.0, (b1 - b0) - (t1 - t0) - (o1 - o0) - (c1 - c0)) / CLK_TCK / (w1 - w0) * 100
        tps, xacts = parse_pgbench(out, "-C" in opts.split())
        if rc != 0 or tps is None or not xacts:
            log(f"{slot}: pgbench {opts} failed (exit {rc}):\n{out[-1500:]}")
            return None
        cpu_us = (t1 - t0) * 1e6 / CLK_TCK / xacts
        return dict(tps=tps, xacts=xacts, cpu_us=cpu_us, peak_rss=peak, foreign=foreign)

    if args.warmup > 0:
        for slot in SLOTS:
            if alive(slot):
                log(f"warm-up {slot} ({args.warmup} s)")
                pgbench(slot, "-S -c 20 -j 2", args.warmup)

    opts_of = {s: SCENARIOS[s][0].format(big=args.big_clients) for s in scen}
    results = {s: {slot: [] for slot in SLOTS} for s in scen}
    for rnd in range(args.rounds):
        order = SLOTS if rnd % 2 == 0 else tuple(reversed(SLOTS))
        for s in scen:
            for slot in order:
                if s == "tpcb":  # keep table bloat from drifting between rounds
                    r.run(psql + ["-d", DB_NAME, "-c", "TRUNCATE pgbench_history",
                                  "-c", "VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts"],
                          timeout=300)
                if not alive(slot):
                    results[s][slot].append(None)
                    continue
                res = pgbench(slot, opts_of[s], args.duration, sample_rss=(s == BIG))
                if args.quiet and res and res["foreign"] > args.quiet and alive(slot):
                    log(f"other load {res['foreign']:.0f}% > {args.quiet:g}%: running again")
                    again = pgbench(slot, opts_of[s], args.duration, sample_rss=(s == BIG))
                    if again and again["foreign"] < res["foreign"]:
                        res = again
                results[s][slot].append(res)
                if res:
                    log(f"round {rnd + 1}/{args.rounds} {s:16s} {slot:9s} tps {res['tps']:10.1f}  "
                        f"cpu {res['cpu_us']:7.1f} us/xact  other load {res['foreign']:3.0f}%"
                        + (f"  peak RSS {res['peak_rss']} KiB" if res['peak_rss'] else ""))
                time.sleep(1)

    report = render(args, scen, opts_of, results, idle_rss, info)
    sys.stdout.write(report)
    sys.stdout.flush()
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        log(f"report written to {args.out}")
    failed = any(x is None for s in scen for slot in SLOTS for x in results[s][slot])
    return 1 if failed else 0


def render(args, scen, opts_of, results, idle_rss, info):
    L = []
    d = dict(info)
    same = d["pgbouncer slot"].split(" (", 1)[1] == d["pgvigil slot"].split(" (", 1)[1]
    L.append(f"### {args.title or 'pgvigil vs PgBouncer (pgbench through the pooler)'}\n")
    if same:
        L.append("> Both slots run the same binary version: this is a harness calibration run; "
                 "the ratios show the noise floor.\n")
    L.append("| | |\n|---|---|")
    for k, v in info:
        L.append(f"| {k} | {v} |")
    L.append("")
    L.append("Median over rounds. TPS ratio > 1 means pgvigil is faster; CPU ratio < 1 means pgvigil "
             "uses less pooler CPU per transaction.\n")
    L.append("| scenario | pgbench options | pgbouncer TPS | pgvigil TPS | TPS ratio "
             "| pgbouncer CPU µs/xact | pgvigil CPU µs/xact | CPU ratio |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in scen:
        med = {}
        for slot in SLOTS:
            runs = results[s][slot]
            ok = all(x is not None for x in runs)
            med[slot] = (median([x["tps"] for x in runs if x]) if ok else None,
                         median([x["cpu_us"] for x in runs if x]) if ok else None)
        b, v = med["pgbouncer"], med["pgvigil"]
        L.append(f"| {s} | `{opts_of[s]}` | {fmt_num(b[0])} | {fmt_num(v[0])} | {fmt_ratio(v[0], b[0])} "
                 f"| {fmt_num(b[1], 1)} | {fmt_num(v[1], 1)} | {fmt_ratio(v[1], b[1])} |")
    L.append("")
    if BIG in scen:
        n = args.big_clients
        L.append(f"Pooler memory (VmRSS of the pooler process tree; idle = after start and one query; "
                 f"peak = highest sample during the {n}-client runs):\n")
        L.append("| pooler | idle RSS KiB | peak RSS KiB | memory per client KiB |")
        L.append("|---|---:|---:|---:|")
        for slot in SLOTS:
            peaks = [x["peak_rss"] for x in results[BIG][slot] if x and x["peak_rss"]]
            if peaks and all(x is not None for x in results[BIG][slot]):
                pk = max(peaks)
                L.append(f"| {slot} | {idle_rss[slot]:,} | {pk:,} | {(pk - idle_rss[slot]) / n:.1f} |")
            else:
                L.append(f"| {slot} | {idle_rss[slot] or 'failed'} | failed | failed |")
        L.append("")
    fmax = max((x["foreign"] for s in scen for slot in SLOTS for x in results[s][slot] if x), default=0)
    L.append(f"CPU used by processes outside the benchmark during the runs: at most {fmax:.0f}% of one core"
             + (" — **the machine was not idle; treat small differences as noise**.\n" if fmax > 10 else ".\n"))
    L.append("<details><summary>per-round TPS (CPU µs/xact) [other load, % of one core]</summary>\n")
    L.append("| scenario | pooler | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " |")
    L.append("|---|---|" + "---:|" * args.rounds)
    for s in scen:
        for slot in SLOTS:
            cells = [f"{x['tps']:,.0f} ({x['cpu_us']:.1f}) [{x['foreign']:.0f}%]" if x else "failed"
                     for x in results[s][slot]]
            L.append(f"| {s} | {slot} | " + " | ".join(cells) + " |")
    L.append("\n</details>\n")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------
# login benchmark (--logins N): cost of a client login, SCRAM vs OIDC token


LOGIN_USER = DB_USER
LOGIN_ISSUER = "https://bench-idp.invalid/"
LOGIN_AUDIENCE = "pgvigil-bench"
SCRAM_ITER = 4096


def scram_secret(password, salt, iterations=SCRAM_ITER):
    """A PostgreSQL SCRAM-SHA-256 verifier (what pg_authid / userlist.txt store)."""
    import base64
    import hmac
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b = lambda x: base64.b64encode(x).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b(salt)}${b(hashlib.sha256(client_key).digest())}:{b(server_key)}"


def _msg(tag, body=b""):
    return tag + (len(body) + 4).to_bytes(4, "big") + body


class _Conn:
    """Minimal protocol-3 client over a unix socket (startup, SCRAM or cleartext, one query)."""

    def __init__(self, path, timeout=20):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def recv(self):
        while True:
            if len(self.buf) >= 5:
                n = int.from_bytes(self.buf[1:5], "big")
                if len(self.buf) >= 1 + n:
                    tag, body, self.buf = self.buf[:1], self.buf[5:1 + n], self.buf[1 + n:]
                    return tag, body
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed by pooler")
            self.buf += chunk

    def close(self):
        self.s.close()


def _error_text(body):
    f = {p[:1].decode(): p[1:].decode(errors="replace") for p in body.split(b"\0") if p}
    return f"{f.get('S')} {f.get('C')} {f.get('M')}"


# SaltedPassword depends only on (password, salt, iterations): a client may cache it, and
# the harness does, so the 4096 PBKDF2 rounds of the client do not hide the pooler's cost.
_salted_cache = {}


def login_once(path, user, password, method):
    """connect, authenticate (method "scram": SCRAM-SHA-256; "token": cleartext), SELECT 1, Terminate."""
    import base64
    import hmac
    c = _Conn(path)
    try:
        params = b"user\0" + user.encode() + b"\0database\0" + DB_NAME.encode() + b"\0\0"
        c.s.sendall((len(params) + 8).to_bytes(4, "big") + (196608).to_bytes(4, "big") + params)
        nonce = first_bare = None
        while True:
            tag, body = c.recv()
            if tag == b"E":
                raise RuntimeError(_error_text(body))
            if tag == b"Z":
                break
            if tag != b"R":
                continue
            code = int.from_bytes(body[:4], "big")
            if code in (3, 10) and method != ("token" if code == 3 else "scram"):
                raise RuntimeError(f"pooler asked for auth {code}, expected {method}")
            if code == 3:  # cleartext: the token
                c.s.sendall(_msg(b"p", password.encode() + b"\0"))
            elif code == 10:  # SASL
                nonce = base64.b64encode(os.urandom(18)).decode()
                first_bare = f"n=,r={nonce}"
                first = ("n,," + first_bare).encode()
                c.s.sendall(_msg(b"p", b"SCRAM-SHA-256\0" + len(first).to_bytes(4, "big") + first))
            elif code == 11:
                server_first = body[4:].decode()
                a = dict(kv.split("=", 1) for kv in server_first.split(","))
                if not a["r"].startswith(nonce):
                    raise RuntimeError("SCRAM: bad server nonce")
                key = (password, a["s"], int(a["i"]))
                salted = _salted_cache.get(key)
                if salted is None:
                    salted = _salted_cache[key] = hashlib.pbkdf2_hmac(
                        "sha256", password.encode(), base64.b64decode(a["s"]), int(a["i"]))
                final_wo = f"c=biws,r={a['r']}"
                auth_msg = f"{first_bare},{server_first},{final_wo}".encode()
                ck = hmac.new(salted, b"Client Key", "sha256").digest()
                sig = hmac.new(hashlib.sha256(ck).digest(), auth_msg, "sha256").digest()
                proof = base64.b64encode(bytes(x ^ y for x, y in zip(ck, sig))).decode()
                c.s.sendall(_msg(b"p", f"{final_wo},p={proof}".encode()))
                sk = hmac.new(salted, b"Server Key", "sha256").digest()
                c.expect_v = base64.b64encode(hmac.new(sk, auth_msg, "sha256").digest()).decode()
            elif code == 12:
                if body[4:].decode() != "v=" + c.expect_v:
                    raise RuntimeError("SCRAM: bad server signature")
            elif code != 0:
                raise RuntimeError(f"unsupported auth request {code}")
        c.s.sendall(_msg(b"Q", b"SELECT 1\0"))
        got = None
        while True:
            tag, body = c.recv()
            if tag == b"E":
                raise RuntimeError(_error_text(body))
            if tag == b"D":
                got = body
            if tag == b"Z":
                break
        if got is None or not got.endswith(b"1"):
            raise RuntimeError("SELECT 1: no row")
        c.s.sendall(_msg(b"X"))
    finally:
        c.close()


def _login_worker(job):
    path, user, method, passwords = job
    errors, first = 0, None
    for pw in passwords:
        try:
            login_once(path, user, pw, method)
        except Exception as e:  # counted and reported, the run goes on
            errors += 1
            first = first or f"{type(e).__name__}: {e}"
    return len(passwords), errors, first


def cpu_ns(pids):
    """CPU time (ns) of pids and all their threads, from /proc/PID/task/*/schedstat
    (ns resolution; utime+stime in clock ticks is too coarse for ~1000 short logins)."""
    total = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def governance_yaml():
    return f"""# generated by bench/bench.py --logins
identity:
  providers:
    - name: bench
      issuer: {LOGIN_ISSUER}
      audience: [{LOGIN_AUDIENCE}]
      jwks_file: jwks.json
      algorithms: [RS256, ES256]
      clock_skew: 30s
  grants:
    - when: {{groups: [bench-agents]}}
      db_users: [{LOGIN_USER}]
"""


class TokenMint:
    """Plays the identity provider: an RSA-2048 and a P-256 key, a JWKS, signed tokens."""

    def __init__(self):
        try:
            import jwt
            from cryptography.hazmat.primitives.asymmetric import ec, rsa
        except ImportError as e:
            raise Fatal(f"--logins needs PyJWT and cryptography (Debian: python3-jwt python3-cryptography): {e}")
        self.jwt = jwt
        self.keys = {"RS256": ("rsa1", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                     "ES256": ("ec1", ec.generate_private_key(ec.SECP256R1()))}

    def jwks(self):
        import json
        keys = []
        for alg, (kid, key) in self.keys.items():
            jwk = json.loads(self.jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            jwk.update({"kid": kid, "use": "sig", "alg": alg})
            keys.append(jwk)
        return json.dumps({"keys": keys})

    def tokens(self, alg, n, tag):
        kid, key = self.keys[alg]
        now = int(time.time())
        return [self.jwt.encode({"iss": LOGIN_ISSUER, "aud": LOGIN_AUDIENCE, "sub": f"agent-{tag}-{i}",
                                 "groups": ["bench-agents"], "iat": now, "exp": now + 3600,
                                 "jti": f"{tag}-{i}"}, key, algorithm=alg, headers={"kid": kid})
                for i in range(n)]


# row label -> (pooler instance, auth of the login)
LOGIN_ROWS = (("pgbouncer scram-sha-256", "pgbouncer-scram", "scram"),
              ("pgvigil scram-sha-256", "pgvigil-scram", "scram"),
              ("pgvigil oidc (RS256 token)", "pgvigil-oidc", "RS256"),
              ("pgvigil oidc (ES256 token)", "pgvigil-oidc", "ES256"))


def login_pooler_ini(name, port, pgport, tmp, auth, pool_size):
    extra = f"governance_file = {tmp}/governance.yaml\n" if auth == "oidc" else ""
    return f"""; generated by bench/bench.py --logins ({name})
[databases]
{DB_NAME} = host=127.0.0.1 port={pgport} dbname={DB_NAME}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {tmp}
auth_type = {auth}
auth_file = {tmp}/userlist.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 60
pidfile = {tmp}/{name}.pid
{extra}"""


def bench_logins(r, args, bins):
    import multiprocessing
    pgbin, n, workers = args.pgbin, args.logins, args.login_workers
    mint = TokenMint()
    info = machine_info(args, bins, pgbin)
    info[-1] = ("settings", f"{n} logins per run, {workers} concurrent workers, {args.rounds} rounds; unix socket; "
                            f"pool_mode=transaction, default_pool_size={workers}; SCRAM secret with {SCRAM_ITER} "
                            "iterations in userlist.txt; tokens RS256 (RSA-2048) / ES256 (P-256)")

    r.tmp = tempfile.mkdtemp(prefix="pgvigil-lbench-")
    if os.geteuid() == 0:
        r.as_user = ensure_user()
        os.chown(r.tmp, *r.as_user)
    os.chmod(r.tmp, 0o700)

    def write(name, text):
        path = os.path.join(r.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        if r.as_user:
            os.chown(path, *r.as_user)
        return path

    run_bins = {}
    for slot, b in bins.items():
        dst = os.path.join(r.tmp, f"{slot}-bin")
        shutil.copy2(b, dst)
        os.chmod(dst, 0o755)
        if r.as_user:
            os.chown(dst, *r.as_user)
        run_bins[slot] = dst

    datadir = os.path.join(r.tmp, "pgdata")
    pgport = free_port()
    log("initdb")
    r.run([os.path.join(pgbin, "initdb"), "-D", datadir, "-U", DB_USER, "-A", "trust",
           "--no-locale", "-E", "UTF8", "--no-sync"], timeout=120, as_user=True)
    with open(os.path.join(datadir, "postgresql.auto.conf"), "a") as f:
        f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {pgport}\nunix_socket_directories = '{r.tmp}'\n"
                "max_connections = 100\nfsync = off\nlogging_collector = off\nlog_min_messages = warning\n")
    pglog = open(os.path.join(r.tmp, "postgres.log"), "wb")
    pg = r.spawn("postgres", [os.path.join(pgbin, "postgres"), "-D", datadir], stop_sig=signal.SIGINT,
                 stdout=pglog)
    if not wait_port(pgport, pg, timeout=60):
        raise Fatal("PostgreSQL did not start:\n" + open(pglog.name, errors="replace").read()[-2000:])
    r.run([os.path.join(pgbin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", r.tmp, "-p", str(pgport),
           "-U", DB_USER, "-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"], timeout=60)

    # PostgreSQL trusts the poolers (server logins are not what is measured).
    write("userlist.txt", f'"{LOGIN_USER}" "{scram_secret(DB_PASSWORD, os.urandom(16))}"\n')
    write("jwks.json", mint.jwks())
    write("governance.yaml", governance_yaml())
    instances = {"pgbouncer-scram": ("pgbouncer", "scram-sha-256"),
                 "pgvigil-scram": ("pgvigil", "scram-sha-256"),
                 "pgvigil-oidc": ("pgvigil", "oidc")}
    ports, procs, logs = {}, {}, {}
    for name, (slot, auth) in instances.items():
        ports[name] = free_port()
        ini = write(f"{name}.ini", login_pooler_ini(name, ports[name], pgport, r.tmp, auth, workers))
        logs[name] = open(os.path.join(r.tmp, f"{name}.log"), "wb")
        procs[name] = r.spawn(name, [run_bins[slot], ini], stop_sig=signal.SIGTERM, stdout=logs[name])
    for name in instances:
        if not wait_port(ports[name], procs[name]):
            raise Fatal(f"{name} did not start; log tail:\n" + open(logs[name].name, errors="replace").read()[-2000:])

    def sock(name):
        return os.path.join(r.tmp, f".s.PGSQL.{ports[name]}")

    def passwords(kind, count, tag):
        return [DB_PASSWORD] * count if kind == "scram" else mint.tokens(kind, count, tag)

    def method(kind):
        return "scram" if kind == "scram" else "token"

    ctx = multiprocessing.get_context("fork")
    results = {label: [] for label, _, _ in LOGIN_ROWS}
    with ctx.Pool(workers) as wp:
        # warm-up: fills the server pool and the client's SCRAM cache in each worker
        for label, name, kind in LOGIN_ROWS:
            pws = passwords(kind, 20 * workers, "warm")
            out = wp.map(_login_worker, [(sock(name), LOGIN_USER, method(kind), pws[i::workers])
                                         for i in range(workers)])
            if any(e for _, e, _ in out):
                raise Fatal(f"{label}: warm-up logins failed: {[f for _, _, f in out if f][0]}\nlog tail:\n"
                            + open(logs[name].name, errors="replace").read()[-1500:])
        for rnd in range(args.rounds):
            rows = LOGIN_ROWS if rnd % 2 == 0 else tuple(reversed(LOGIN_ROWS))
            for label, name, kind in rows:
                pws = passwords(kind, n, f"r{rnd}")  # signed before the clock starts
                jobs = [(sock(name), LOGIN_USER, method(kind), pws[i::workers]) for i in range(workers)]
                pids = proc_tree(procs[name].pid)
                c0, t0 = cpu_ns(pids), time.monotonic()
                out = wp.map(_login_worker, jobs, chunksize=1)
                t1, c1 = time.monotonic(), cpu_ns(pids)
                errs = sum(e for _, e, _ in out)
                if errs:
                    log(f"{label}: {errs} of {n} logins failed: {[f for _, _, f in out if f][0]}")
                res = dict(rate=n / (t1 - t0), cpu_us=(c1 - c0) / 1e3 / n, errors=errs, secs=t1 - t0)
                results[label].append(res)
                log(f"round {rnd + 1}/{args.rounds} {label:28s} {res['rate']:8.0f} logins/s  "
                    f"pooler CPU {res['cpu_us']:6.1f} µs/login  errors {errs}")
                time.sleep(0.5)
    for name in instances:
        if procs[name].poll() is not None:
            raise Fatal(f"{name} exited during the run ({procs[name].returncode})")

    report = render_logins(args, results, info)
    sys.stdout.write(report)
    sys.stdout.flush()
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        log(f"report written to {args.out}")
    return 1 if any(x["errors"] for v in results.values() for x in v) else 0


def render_logins(args, results, info):
    L = [f"### {args.title or 'Login cost: SCRAM-SHA-256 vs OIDC token'}\n", "| | |\n|---|---|"]
    L += [f"| {k} | {v} |" for k, v in info]
    L.append("")
    L.append(f"Each login: connect (unix socket), authenticate, `SELECT 1`, Terminate. Median over "
             f"{args.rounds} rounds of {args.logins} logins (each column separately). Pooler CPU = user+system time of the pooler "
             "process (schedstat) during the run, divided by the logins.\n")
    base = median([x["cpu_us"] for x in results[LOGIN_ROWS[1][0]]])
    L.append("| login | logins/s | pooler CPU µs/login | CPU vs pgvigil scram | failed logins |")
    L.append("|---|---:|---:|---:|---:|")
    for label, _, _ in LOGIN_ROWS:
        runs = results[label]
        rate, cpu = median([x["rate"] for x in runs]), median([x["cpu_us"] for x in runs])
        L.append(f"| {label} | {fmt_num(rate)} | {fmt_num(cpu, 1)} | {fmt_ratio(cpu, base)} "
                 f"| {sum(x['errors'] for x in runs)} |")
    L.append("")
    L.append("<details><summary>per-round logins/s (pooler CPU µs/login)</summary>\n")
    L.append("| login | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " |")
    L.append("|---|" + "---:|" * args.rounds)
    for label, _, _ in LOGIN_ROWS:
        L.append(f"| {label} | " + " | ".join(f"{x['rate']:,.0f} ({x['cpu_us']:.1f})" for x in results[label]) + " |")
    L.append("\n</details>\n")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
