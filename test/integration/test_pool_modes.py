"""Session, transaction and statement pooling; parameter tracking; cancel."""
import asyncio
import threading
import time

import asyncpg
import psycopg
import pytest

import pvtest


def backend_pid(c):
    return c.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_session_mode_keeps_session_state(pooler):
    p = pooler(pool_mode="session", default_pool_size=1)
    with p.connect("md5user") as c:
        pid = backend_pid(c)
        c.execute("SET work_mem = '7MB'")
        c.execute("SET myapp.tag = 'kept'")
        c.execute("PREPARE sql_level (int) AS SELECT $1 * 3")
        for _ in range(3):
            assert c.execute("SHOW work_mem").fetchone() == ("7MB",)
            assert c.execute("SELECT current_setting('myapp.tag')").fetchone() == ("kept",)
            assert c.execute("EXECUTE sql_level(5)").fetchone() == (15,)
            assert backend_pid(c) == pid
    # next client gets the same server (pool_size=1), reset by server_reset_query (DISCARD ALL)
    with p.connect("md5user") as c:
        assert backend_pid(c) == pid
        assert c.execute("SHOW work_mem").fetchone() == ("4MB",)
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            c.execute("EXECUTE sql_level(5)")


def test_session_mode_clients_get_distinct_servers(pooler):
    p = pooler(pool_mode="session", default_pool_size=5)
    with p.connect("md5user") as a, p.connect("md5user") as b:
        assert backend_pid(a) != backend_pid(b)


def test_transaction_mode_shares_one_server(pooler):
    p = pooler(pool_mode="transaction", default_pool_size=1)
    with p.connect("md5user") as a, p.connect("md5user") as b:
        pids = set()
        for i in range(5):
            pids.add(backend_pid(a))
            pids.add(backend_pid(b))
            assert a.execute("SELECT %s::int", [i]).fetchone() == (i,)
            assert b.execute("SELECT %s::text", [str(i)]).fetchone() == (str(i),)
        assert len(pids) == 1


def test_transaction_mode_holds_server_for_whole_transaction(pooler):
    p = pooler(pool_mode="transaction", default_pool_size=1)
    with p.connect("md5user") as a, p.connect("md5user") as b:
        a.execute("BEGIN")
        pid_a = backend_pid(a)
        result = {}
        done = threading.Event()

        def other():
            try:
                result["pid"] = backend_pid(b)
            except Exception as e:  # pragma: no cover - reported below
                result["err"] = e
            done.set()
        t = threading.Thread(target=other, daemon=True)
        t.start()
        # b must queue while a's transaction holds the only server connection
        assert not done.wait(0.5), "second client ran while the server was in a transaction"
        assert backend_pid(a) == pid_a
        a.execute("COMMIT")
        assert done.wait(10), "second client never got the server"
        t.join(5)
        assert result.get("pid") == pid_a, result


def test_statement_mode_refuses_transaction_blocks(pooler):
    p = pooler(pool_mode="statement", default_pool_size=2)
    with p.connect("md5user") as c:
        assert c.execute("SELECT %s::int + 1", [1]).fetchone() == (2,)
        with pytest.raises(psycopg.OperationalError) as ei:
            c.execute("BEGIN")
        assert "transaction blocks not allowed in statement pooling mode" in str(ei.value)
    # the pooler keeps serving
    with p.connect("md5user") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_statement_mode_autocommit_statements_share_server(pooler):
    p = pooler(pool_mode="statement", default_pool_size=1)
    with p.connect("md5user") as a, p.connect("md5user") as b:
        assert backend_pid(a) == backend_pid(b)


def test_timezone_tracked_per_client_in_transaction_mode(pooler):
    # Two clients send different TimeZone startup parameters and share a single server
    # connection; the pooler re-applies each client's value before its queries.
    p = pooler(pool_mode="transaction", default_pool_size=1)

    async def main():
        conns = []
        for tz in ("America/New_York", "Asia/Tokyo"):
            conns.append(await asyncpg.connect(
                host=p.host, port=p.port, user="md5user", password=pvtest.PASSWORDS["md5user"],
                database=pvtest.TESTDB, statement_cache_size=0, timeout=10,
                server_settings={"TimeZone": tz}))
        ny, tokyo = conns
        try:
            for _ in range(3):
                assert await ny.fetchval("SHOW TimeZone") == "America/New_York"
                assert await tokyo.fetchval("SHOW TimeZone") == "Asia/Tokyo"
                assert await ny.fetchval("SELECT pg_backend_pid()") == await tokyo.fetchval("SELECT pg_backend_pid()")
            # a SET by the client is tracked too
            await ny.execute("SET TimeZone = 'Europe/Paris'")
            assert await tokyo.fetchval("SHOW TimeZone") == "Asia/Tokyo"
            assert await ny.fetchval("SHOW TimeZone") == "Europe/Paris"
        finally:
            for c in conns:
                await c.close()
    asyncio.run(main())


def test_timezone_raw_startup_parameter(pooler):
    # ParameterStatus in the welcome reflects the client's own TimeZone
    p = pooler(pool_mode="transaction", default_pool_size=1, auth_type="trust")
    with p.raw() as a, p.raw() as b:
        sa = a.login("md5user", params={"TimeZone": "UTC"})
        sb = b.login("md5user", params={"TimeZone": "Europe/Berlin"})
        assert sa.get("TimeZone") == "UTC"
        assert sb.get("TimeZone") == "Europe/Berlin"
        for _ in range(2):
            assert a.query("SHOW TimeZone") == ([["UTC"]], None)
            assert b.query("SHOW TimeZone") == ([["Europe/Berlin"]], None)


def _wait_for_active_query(pg_cluster, text, timeout=10):
    def active():
        with pg_cluster.connect() as c:
            return c.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = %s",
                             [text]).fetchone()[0] > 0
    pvtest.wait_until(active, timeout, interval=0.05, what=f"query {text!r} to be running")


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_cancel_running_query(pooler, pg_cluster, mode):
    p = pooler(pool_mode=mode, default_pool_size=2)
    with p.connect("md5user") as c:
        sql = f"SELECT pg_sleep(30) /* cancel {mode} {p.port} */"
        t = threading.Thread(target=lambda: (_wait_for_active_query(pg_cluster, sql), c.cancel()),
                             daemon=True)
        t.start()
        start = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute(sql)
        assert time.monotonic() - start < 10
        t.join(10)
        # the connection stays usable after the cancel
        assert c.execute("SELECT 'alive'").fetchone() == ("alive",)


def test_cancel_targets_only_the_right_client(pooler, pg_cluster):
    # Two clients in transaction mode with two servers; cancelling one leaves the other alone.
    p = pooler(pool_mode="transaction", default_pool_size=2)
    with p.connect("md5user") as a, p.connect("md5user") as b:
        res = {}

        def run_b():
            try:
                res["b"] = b.execute("SELECT pg_sleep(1), 'b done'").fetchone()[1]
            except Exception as e:
                res["b"] = e
        sql_a = f"SELECT pg_sleep(30) /* cancel a {p.port} */"
        tb = threading.Thread(target=run_b, daemon=True)
        tb.start()
        threading.Thread(target=lambda: (_wait_for_active_query(pg_cluster, sql_a), a.cancel()),
                         daemon=True).start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            a.execute(sql_a)
        tb.join(15)
        assert res.get("b") == "b done", res
