"""Pool limits: pool sizes, reserve pool, server and client caps, [users]
overrides, min_pool_size, auto-databases and pool reaping.

Server connections of each pooler carry a unique application_name (sent at
server login), so PostgreSQL's pg_stat_activity tells which backends belong
to the pooler under test.
"""
import itertools
import threading
import time

import psycopg
import pytest

import pvtest

_tags = itertools.count(1)


def tagged(pg, **extra):
    """A [databases] line whose server connections are tagged; returns (line, tag)."""
    tag = f"pvlim{next(_tags)}_{int(time.time() * 1000) % 100000}"
    return pg.db_line(application_name=tag, **extra), tag


def backends(pg, tag):
    with pg.connect() as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                         [tag]).fetchone()[0]


def wait_backends(pg, tag, n, timeout=5):
    pvtest.wait_until(lambda: backends(pg, tag) == n, timeout, interval=0.05,
                      what=f"{n} backends tagged {tag} (now {backends(pg, tag)})")


def run_in_thread(fn):
    out = {}

    def body():
        try:
            out["value"] = fn()
        except Exception as e:  # reported by the caller
            out["error"] = e
        out["at"] = time.monotonic()
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def login_error(p, user="md5user", db=pvtest.TESTDB):
    with pytest.raises(psycopg.OperationalError) as ei:
        p.connect(user, db).close()
    return str(ei.value)


def test_default_pool_size_zero_is_unlimited(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, default_pool_size=0, pool_mode="session")
    conns = [p.connect() for _ in range(4)]
    try:
        for c in conns:
            c.execute("SELECT 1")
        assert backends(pg_cluster, tag) == 4
    finally:
        for c in conns:
            c.close()


def test_min_pool_size_tops_up_while_clients_are_connected(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, min_pool_size=3, default_pool_size=5,
               pool_mode="transaction")
    with p.connect() as c:
        c.execute("SELECT 1")
        wait_backends(pg_cluster, tag, 3)
    time.sleep(0.5)
    assert backends(pg_cluster, tag) == 3  # kept after the client left


def test_min_pool_size_creates_forced_user_pool(pooler, pg_cluster):
    line, tag = tagged(pg_cluster, user="plainuser", min_pool_size=2)
    pooler(databases={pvtest.TESTDB: line}, default_pool_size=4)
    # no client ever connects: the forced user's pool is created and filled
    wait_backends(pg_cluster, tag, 2)


def test_reserve_pool_after_reserve_pool_timeout(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, default_pool_size=1, reserve_pool_size=1,
               reserve_pool_timeout=0.7, pool_mode="session")
    with p.connect() as a, p.connect() as b:
        a.execute("SELECT 1")
        start = time.monotonic()
        t, out = run_in_thread(lambda: b.execute("SELECT 2").fetchone())
        t.join(5)
        assert out.get("value") == (2,), out
        assert out["at"] - start >= 0.6, "reserve connection opened before reserve_pool_timeout"
        assert backends(pg_cluster, tag) == 2
    pvtest.wait_until(lambda: "taking connection from reserve_pool" in p.log_text(), 3,
                      what="reserve_pool log line")


def test_max_db_connections_evicts_idle_server_of_other_pool(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, default_pool_size=5, max_db_connections=2,
               query_wait_timeout=1, pool_mode="session")
    with p.connect("md5user") as c:
        c.execute("SELECT 1")  # leaves an idle md5user server behind
    with p.connect("plainuser") as a, p.connect("plainuser") as b:
        a.execute("SELECT 1")
        b.execute("SELECT 1")  # needs the md5user server's slot
        assert backends(pg_cluster, tag) == 2
        with p.connect("plainuser") as c:
            with pytest.raises(psycopg.OperationalError) as ei:
                c.execute("SELECT 1")  # nothing idle to evict: waits, then times out
            assert "query_wait_timeout" in str(ei.value)
        assert backends(pg_cluster, tag) == 2
    pvtest.wait_until(lambda: "closing because: evicted" in p.log_text(), 3, what="eviction")


def test_max_user_connections_from_users_section(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    line2 = pg_cluster.db_line(application_name=tag)
    p = pooler(databases={pvtest.TESTDB: line, "otherdb": line2},
               users={"md5user": "max_user_connections=1"}, max_user_connections=5,
               pool_mode="session")
    with p.connect("md5user") as c:
        c.execute("SELECT 1")
    with p.connect("md5user", "otherdb") as c:
        c.execute("SELECT 1")  # evicts the testdb pool's idle server
        assert backends(pg_cluster, tag) == 1
    pvtest.wait_until(lambda: "closing because: evicted" in p.log_text(), 3, what="eviction")


def test_max_db_client_connections(pooler, pg_cluster):
    p = pooler(databases={pvtest.TESTDB: pg_cluster.db_line(),
                          "capped": pg_cluster.db_line(max_db_client_connections=1)},
               max_db_client_connections=2)
    with p.connect(), p.connect():
        assert "client connections exceeded (max_db_client_connections)" in login_error(p)
    with p.connect("md5user", "capped"):
        assert "client connections exceeded (max_db_client_connections)" in \
            login_error(p, "plainuser", "capped")
    p.assert_serves()


def test_max_user_client_connections(pooler):
    p = pooler(users={"md5user": "max_user_client_connections=1",
                      "plainuser": "max_user_client_connections=0"},
               max_user_client_connections=2)
    with p.connect("md5user"):
        assert "client connections exceeded (max_user_client_connections)" in login_error(p)
    # 0 in [users] falls back to the global cap of 2
    with p.connect("plainuser"), p.connect("plainuser"):
        assert "(max_user_client_connections)" in login_error(p, "plainuser")


def test_users_section_overrides_pool_size_and_mode(pooler, pg_cluster):
    p = pooler(databases={pvtest.TESTDB: pg_cluster.db_line(pool_size=3)},
               users={"md5user": "pool_size=1 pool_mode=transaction"},
               default_pool_size=5, pool_mode="session")
    # transaction mode from [users]: two clients share the single server (pool_size=1)
    with p.connect("md5user") as a, p.connect("md5user") as b:
        pids = {a.execute("SELECT pg_backend_pid()").fetchone()[0],
                b.execute("SELECT pg_backend_pid()").fetchone()[0]}
        assert len(pids) == 1
    # other users keep the database's pool_size=3 in session mode
    with p.connect("plainuser") as a, p.connect("plainuser") as b:
        assert a.execute("SELECT pg_backend_pid()").fetchone() != \
            b.execute("SELECT pg_backend_pid()").fetchone()


def test_autodb_reaped_after_autodb_idle_timeout(pooler, pg_cluster):
    star = f"host={pg_cluster.host} port={pg_cluster.port}"
    p = pooler(databases={"*": star}, autodb_idle_timeout=0.5, server_idle_timeout=0.3)
    for i in (1, 2):
        with p.connect() as c:
            assert c.execute("SELECT current_database()").fetchone() == (pvtest.TESTDB,)
        # servers idle out first, then the empty auto-database is dropped
        pvtest.wait_until(lambda: p.log_text().count("dropping database 'testdb'") == i, 5,
                          what="autodb to be dropped")
    assert p.log_text().count("registered new auto-database: db=testdb") == 2


def test_pool_idle_timeout_frees_unused_pool(pooler):
    p = pooler(pool_idle_timeout=0.5, server_idle_timeout=0.3)
    p.assert_serves()
    pvtest.wait_until(lambda: "cleaning up idle pool testdb/md5user" in p.log_text(), 5,
                      what="pool to be cleaned up")
    p.assert_serves()
