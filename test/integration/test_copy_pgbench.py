"""COPY in/out and pgbench load through the pooler (transaction mode)."""
import os
import re
import subprocess

import psycopg
import pytest

import pvtest


@pytest.fixture
def copy_table(pg_cluster, request):
    name = "copy_" + re.sub(r"\W", "_", request.node.name).lower()[:40]
    with pg_cluster.connect(pvtest.TESTDB) as c:
        c.execute(f"DROP TABLE IF EXISTS {name}")
        c.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text, val numeric)")
        c.execute(f"GRANT ALL ON {name} TO PUBLIC")
    yield name
    with pg_cluster.connect(pvtest.TESTDB) as c:
        c.execute(f"DROP TABLE IF EXISTS {name}")


def test_psycopg_copy_out(pooler):
    p = pooler(pool_mode="transaction", default_pool_size=1)
    with p.connect("md5user") as c:
        with c.cursor() as cur:
            with cur.copy("COPY (SELECT id, name, val FROM copytest ORDER BY id) TO STDOUT") as cp:
                data = b"".join(bytes(chunk) for chunk in cp)
        lines = data.decode().splitlines()
        assert len(lines) == 1000
        assert lines[0] == "1\trow 1\t1.5"
        assert lines[-1] == "1000\trow 1000\t1500.0"
        # binary COPY, rows decoded by psycopg
        with c.cursor() as cur:
            with cur.copy("COPY (SELECT id, name FROM copytest WHERE id <= 3 ORDER BY id) TO STDOUT (FORMAT BINARY)") as cp:
                cp.set_types(["int4", "text"])
                assert list(cp.rows()) == [(1, "row 1"), (2, "row 2"), (3, "row 3")]
        assert c.execute("SELECT 'after copy'").fetchone() == ("after copy",)


def test_psycopg_copy_in(pooler, copy_table):
    p = pooler(pool_mode="transaction", default_pool_size=1)
    with p.connect("md5user") as c, p.connect("md5user") as other:
        with c.cursor() as cur:
            with cur.copy(f"COPY {copy_table} (id, name, val) FROM STDIN") as cp:
                for i in range(1, 20001):
                    cp.write_row((i, f"name {i}", i / 4))
        with c.cursor() as cur:
            with cur.copy(f"COPY {copy_table} (id, name) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int4", "text"])
                for i in range(20001, 20101):
                    cp.write_row((i, "bin"))
        # another client sharing the same server sees the committed rows
        assert other.execute(f"SELECT count(*), sum(id) FROM {copy_table}").fetchone() == \
            (20100, 20100 * 20101 // 2)
        assert other.execute(f"SELECT count(*) FROM {copy_table} WHERE name = 'bin'").fetchone() == (100,)


def test_psycopg_copy_in_error_keeps_connection_usable(pooler, copy_table):
    p = pooler(pool_mode="transaction", default_pool_size=1)
    with p.connect("md5user") as c:
        with pytest.raises(psycopg.errors.UniqueViolation):
            with c.cursor() as cur:
                with cur.copy(f"COPY {copy_table} (id) FROM STDIN") as cp:
                    for i in (1, 2, 2, 3):
                        cp.write_row((i,))
        assert c.execute(f"SELECT count(*) FROM {copy_table}").fetchone() == (0,)
        # the client aborts a COPY itself (CopyFail)
        with pytest.raises(psycopg.errors.QueryCanceled):
            with c.cursor() as cur:
                with cur.copy(f"COPY {copy_table} (id) FROM STDIN") as cp:
                    cp.write_row((1,))
                    raise psycopg.errors.QueryCanceled("client gave up")  # psycopg sends CopyFail
        assert c.execute("SELECT 'usable'").fetchone() == ("usable",)


def test_psql_backslash_copy_in_and_out(pooler, pv_session, copy_table):
    p = pooler(pool_mode="transaction", default_pool_size=2)
    out_file = os.path.join(pv_session.dir, f"copy-out-{p.port}.csv")
    dsn = p.dsn("scramuser")
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                        f"\\copy (SELECT id, name, val FROM copytest ORDER BY id) TO '{out_file}' WITH (FORMAT csv)",
                        dsn], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    with open(out_file) as f:
        lines = f.read().splitlines()
    assert len(lines) == 1000 and lines[1] == "2,row 2,3.0"
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                        f"\\copy {copy_table} FROM '{out_file}' WITH (FORMAT csv)",
                        "-c", f"SELECT count(*), sum(val) FROM {copy_table}", "-A", "-t", dsn],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1000|750750.0"


def _pgbench(p, mode, clients=50, xacts=40, threads=2):
    env = dict(os.environ, PGPASSWORD=pvtest.PASSWORDS["plainuser"], PGCONNECT_TIMEOUT="10")
    r = subprocess.run(["pgbench", "-n", "-M", mode, "-c", str(clients), "-j", str(threads), "-t", str(xacts),
                        "-h", p.host, "-p", str(p.port), "-U", "plainuser", pvtest.TESTDB],
                       capture_output=True, text=True, timeout=20, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    total = clients * xacts
    assert f"number of transactions actually processed: {total}/{total}" in out, out
    m = re.search(r"number of failed transactions: (\d+)", out)
    if m:
        assert m.group(1) == "0", out
    return out


@pytest.mark.parametrize("mode", ["simple", "extended"])
def test_pgbench_transaction_mode_50_clients(pooler, pgbench_db, pg_cluster, mode):
    p = pooler(pool_mode="transaction", default_pool_size=10, max_client_conn=100)
    with pg_cluster.connect() as c:
        t0 = c.execute("SELECT clock_timestamp()").fetchone()[0]
    _pgbench(p, mode)
    # the pool never opened more than pool_size server connections
    with pg_cluster.connect() as c:
        n = c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'plainuser' "
                      "AND client_addr IS NOT NULL AND backend_start >= %s", [t0]).fetchone()[0]
    assert 1 <= n <= 10


def test_pgbench_prepared_transaction_mode(pooler, pgbench_db):
    # -M prepared: named protocol-level statements shared by 50 clients on 10 servers
    # (spec 5.4; PgBouncer >= 1.21). One pgbench thread per client: pgbench prepares with
    # the blocking PQprepare, so a thread serving several clients would wait for a server
    # while another of its own clients holds one mid-transaction (true of any pooler).
    p = pooler(pool_mode="transaction", default_pool_size=10, max_client_conn=100)
    _pgbench(p, "prepared", clients=50, xacts=40, threads=50)
