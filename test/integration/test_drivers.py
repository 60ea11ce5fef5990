"""Real drivers' protocol-level prepared statements in transaction mode (spec 5.4, issue 5).

pgJDBC (Debian libpostgresql-jdbc-java, prepareThreshold=1) and node-postgres named
queries (Debian node-pg) each run a prepared workload (drivers/PreparedWorkload.java,
drivers/prepared_workload.js) with 20 clients on a pool of 4 server connections, once with
the default max_prepared_statements and once with 3, which makes pgvigil evict and
re-prepare statements on every server all the time. The workload checks every result
itself; here we check its exit code and summary, and count from PostgreSQL's side that
the pool never opened more than default_pool_size server connections.

The toolchains are installed by scripts/install-deps.sh. Outside CI a missing toolchain
skips these tests; under CI=true it fails them.
"""
import os
import shutil
import subprocess
import time

import pytest

import pvtest

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVERS = os.path.join(HERE, "drivers")
JDBC_JAR = os.environ.get("PGVIGIL_JDBC_JAR", "/usr/share/java/postgresql.jar")
# node-pg: Debian's own location, or where install-deps.sh unpacks it (see there why)
NODE_PATHS = ["/usr/share/nodejs", "/usr/local/share/pgvigil-test/nodejs"]

CLIENTS = 20
ITERATIONS = 50
POOL_SIZE = 4
TIMEOUT = 60  # seconds, per workload run


def _missing(reason):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (scripts/install-deps.sh should have installed it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def jdbc_classes(tmp_path_factory):
    """PreparedWorkload compiled once per session; returns the java classpath."""
    java, javac = shutil.which("java"), shutil.which("javac")
    if not java or not javac:
        _missing("no JDK (Debian package default-jdk-headless)")
    if not os.path.exists(JDBC_JAR):
        _missing(f"no pgJDBC at {JDBC_JAR} (Debian package libpostgresql-jdbc-java)")
    out = tmp_path_factory.mktemp("jdbc")
    r = subprocess.run([javac, "-d", str(out), "-cp", JDBC_JAR,
                        os.path.join(DRIVERS, "PreparedWorkload.java")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "javac failed:\n" + r.stdout + r.stderr
    return f"{JDBC_JAR}:{out}"


@pytest.fixture(scope="session")
def node_env():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        _missing("no node (Debian package nodejs)")
    if not any(os.path.exists(os.path.join(d, "pg", "package.json")) for d in NODE_PATHS):
        _missing("no node-postgres in " + " or ".join(NODE_PATHS) + " (Debian package node-pg)")
    env = dict(os.environ)
    env["NODE_PATH"] = ":".join(NODE_PATHS + [p for p in env.get("NODE_PATH", "").split(":") if p])
    return node, env


def _backends_since(pg_cluster, user, t0):
    with pg_cluster.connect() as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                         "AND client_addr IS NOT NULL AND backend_start >= %s", [user, t0]).fetchone()[0]


def _run_workload(p, pg_cluster, user, argv, env=None, summary_prefix="", extra=(), per_iteration=5):
    with pg_cluster.connect() as c:
        t0 = c.execute("SELECT clock_timestamp()").fetchone()[0]
    args = argv + [p.host, str(p.port), pvtest.TESTDB, user, pvtest.PASSWORDS[user],
                   str(CLIENTS), str(ITERATIONS), *extra]
    started = time.monotonic()
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"workload did not finish in {TIMEOUT}s (hang?)\n{out[-4000:]}\n"
                    f"--- pooler log:\n{p.log_text()[-6000:]}", pytrace=False)
    elapsed = time.monotonic() - started
    out = r.stdout + r.stderr
    checks = per_iteration * CLIENTS * ITERATIONS
    want = f"{summary_prefix} ok clients={CLIENTS} iterations={ITERATIONS} checks={checks}"
    assert r.returncode == 0 and want in r.stdout, \
        f"exit {r.returncode} after {elapsed:.1f}s:\n{out[-6000:]}\n--- pooler log:\n{p.log_text()[-6000:]}"
    assert p.alive(), "pooler died; log:\n" + p.log_text()
    n = _backends_since(pg_cluster, user, t0)
    assert 1 <= n <= POOL_SIZE, f"{n} server connections opened for {user}, pool size {POOL_SIZE}"
    return elapsed


MPS = pytest.mark.parametrize("max_ps", [None, 3], ids=["default-max_prepared", "max_prepared_3"])


@MPS
def test_jdbc_prepared_workload_transaction_mode(pooler, pg_cluster, jdbc_classes, max_ps):
    # pgJDBC sends extra_float_digits=2 in its startup packet: the usual PgBouncer setting
    p = pooler(pool_mode="transaction", default_pool_size=POOL_SIZE, max_client_conn=100,
               max_prepared_statements=max_ps, ignore_startup_parameters="extra_float_digits")
    _run_workload(p, pg_cluster, "scramuser",
                  ["java", "-Xss512k", "-cp", jdbc_classes, "PreparedWorkload"], summary_prefix="jdbc")


@MPS
def test_node_pg_named_queries_transaction_mode(pooler, pg_cluster, node_env, max_ps):
    node, env = node_env
    p = pooler(pool_mode="transaction", default_pool_size=POOL_SIZE, max_client_conn=100,
               max_prepared_statements=max_ps)
    _run_workload(p, pg_cluster, "md5user",
                  [node, os.path.join(DRIVERS, "prepared_workload.js")], env=env,
                  summary_prefix="node-pg")


def test_node_pg_named_query_errors_transaction_mode(pooler, pg_cluster, node_env):
    # the same workload plus, each round, a named query that fails to parse (node-pg sends
    # Parse again next time) and a named query failing inside a transaction, rolled back
    node, env = node_env
    p = pooler(pool_mode="transaction", default_pool_size=POOL_SIZE, max_client_conn=100)
    _run_workload(p, pg_cluster, "md5user",
                  [node, os.path.join(DRIVERS, "prepared_workload.js")], env=env,
                  summary_prefix="node-pg", extra=["errors"], per_iteration=8)
