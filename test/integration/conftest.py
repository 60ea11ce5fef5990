"""Fixtures for the integration tests (see pvtest.py for the helpers).

  pg_cluster  (session)  a PostgreSQL 15 cluster with roles md5user, scramuser,
                         plainuser, pwuser and database testdb
  pooler      (function) factory: pooler(databases=..., userlist=..., users=...,
                         **ini_overrides) -> started pvtest.Pooler; every instance is
                         stopped at teardown and checked for crashes / sanitizer reports
  pgbench_db  (session)  pgbench tables (scale 1) in testdb, owned by plainuser
"""
import os
import subprocess
import time
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import pvtest  # noqa: E402


@pytest.fixture(scope="session")
def pv_session():
    sess = pvtest.Session()
    yield sess
    if os.environ.get("PGVIGIL_KEEP_TMP") == "1":
        print(f"\nkept test dir {sess.dir}")
    else:
        sess.cleanup()


@pytest.fixture(scope="session")
def pg_cluster(pv_session):
    pg = pvtest.PgCluster(pv_session)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def pooler(pv_session, pg_cluster, request):
    instances = []

    def make(databases=None, userlist=None, users=None, start=True, **ini):
        p = pvtest.Pooler(pv_session, pg_cluster, databases=databases, userlist=userlist,
                          users=users, **ini)
        instances.append(p)
        if start:
            p.start()
        return p

    yield make
    problems = []
    for p in instances:
        for prob in p.check_health():
            problems.append(f"[pooler port {p.port}] {prob}")
    if problems:
        logs = "\n".join(f"--- log of pooler port {p.port}:\n{p.log_text()[-6000:]}" for p in instances)
        pytest.fail("pooler health check failed:\n" + "\n".join(problems) + "\n" + logs, pytrace=False)


@pytest.fixture(scope="session")
def pgbench_db(pg_cluster):
    r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", pg_cluster.unix_dir,
                        "-p", str(pg_cluster.port), "-U", "plainuser", pvtest.TESTDB],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return pvtest.TESTDB


@pytest.fixture(scope="module")
def repl_cluster(pg_cluster):
    """The shared cluster plus a REPLICATION role and a pg_hba `replication` line."""
    with pg_cluster.connect() as c:
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [pvtest.REPL_USER]).fetchone():
            c.execute(f"CREATE ROLE {pvtest.REPL_USER} LOGIN REPLICATION PASSWORD '{pvtest.REPL_PW}'")
        hba = os.path.join(pg_cluster.data, "pg_hba.conf")
        line = f"host replication {pvtest.REPL_USER} 127.0.0.1/32 scram-sha-256\n"
        with open(hba) as f:
            text = f.read()
        if line not in text:
            with open(hba, "a") as f:
                f.write(line)
        c.execute("SELECT pg_reload_conf()")
        assert int(c.execute("SHOW max_wal_senders").fetchone()[0]) > 0
    time.sleep(0.3)
    return pg_cluster
