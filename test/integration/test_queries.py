"""Queries through the pooler with psql, psycopg (simple + extended) and asyncpg."""
import asyncio
import decimal
import os
import subprocess

import asyncpg
import pytest

import pvtest

MODES = ["session", "transaction"]


def psql(dsn, *args, input=None, timeout=30):
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args, dsn],
                          input=input, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("mode", MODES)
def test_psql_simple_query(pooler, mode):
    p = pooler(pool_mode=mode)
    r = psql(p.dsn("md5user"), "-c", "SELECT current_user, current_database(), 6 * 7")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "md5user|testdb|42"


@pytest.mark.parametrize("mode", MODES)
def test_psql_multi_statement_script(pooler, mode):
    p = pooler(pool_mode=mode)
    script = ("CREATE TEMP TABLE t (x int);\n" if mode == "session" else "") + \
        "BEGIN;\nSELECT 1;\nSELECT 'two';\nCOMMIT;\nSELECT count(*) FROM copytest;\n"
    r = psql(p.dsn("scramuser"), "-f", "-", input=script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "two", "1000"]


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_simple_and_extended_protocol(pooler, mode):
    p = pooler(pool_mode=mode)
    with p.connect("md5user") as c:
        # no parameters: psycopg sends a simple Query
        assert c.execute("SELECT 'simple'").fetchone() == ("simple",)
        # parameters: Parse/Bind/Execute with text params
        assert c.execute("SELECT %s::int + %s::int", [40, 2]).fetchone() == (42,)
        # binary params and binary results
        cur = c.cursor(binary=True)
        row = cur.execute("SELECT %b::int8 * 2, %b::text, %b::numeric",
                          [21, "bin", decimal.Decimal("1.25")]).fetchone()
        assert row == (42, "bin", decimal.Decimal("1.25"))
        # an error in extended protocol leaves the connection usable
        with pytest.raises(Exception, match="division by zero"):
            c.execute("SELECT 1 / %s::int", [0])
        assert c.execute("SELECT %s::text", ["after error"]).fetchone() == ("after error",)
        # multi-row result
        rows = c.execute("SELECT id, name FROM copytest WHERE id <= %s ORDER BY id", [3]).fetchall()
        assert rows == [(1, "row 1"), (2, "row 2"), (3, "row 3")]


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_prepared_statements(pooler, mode):
    # prepare=True makes psycopg use a named protocol-level prepared statement
    p = pooler(pool_mode=mode)
    with p.connect("scramuser") as c:
        for i in range(5):
            assert c.execute("SELECT %s::int * 2", [i], prepare=True).fetchone() == (i * 2,)
        cur = c.cursor(binary=True)
        for i in range(3):
            assert cur.execute("SELECT %b::int8 + 1, %b::bytea", [i, b"\x00\x01"],
                               prepare=True).fetchone() == (i + 1, b"\x00\x01")


def test_psycopg_transaction_commit_and_rollback(pooler):
    p = pooler(pool_mode="transaction")
    with p.connect("md5user", autocommit=False) as c:
        c.execute("CREATE TABLE txtest_%s (x int)" % p.port)
        c.execute("INSERT INTO txtest_%s VALUES (%%s)" % p.port, [1])
        c.commit()
        c.execute("INSERT INTO txtest_%s VALUES (%%s)" % p.port, [2])
        c.rollback()
        assert c.execute("SELECT array_agg(x) FROM txtest_%s" % p.port).fetchone() == ([1],)
        c.execute("DROP TABLE txtest_%s" % p.port)
        c.commit()


def test_transaction_mode_prepared_statements_across_clients(pooler):
    # Two clients share one server connection (pool_size=1) and both use the same
    # protocol-level statement names (psycopg calls them _pg3_0, ...): the pooler must
    # keep each client's statements apart (max_prepared_statements, spec 5.4).
    # PgBouncer < 1.21 has no prepared statement support in transaction mode.
    p = pooler(pool_mode="transaction", default_pool_size=1)  # max_prepared_statements default 200
    with p.connect("md5user") as a, p.connect("md5user") as b:
        for i in range(4):
            assert a.execute("SELECT %s::int + 1", [i], prepare=True).fetchone() == (i + 1,)
            assert b.execute("SELECT %s::text || 'x'", [str(i)], prepare=True).fetchone() == (f"{i}x",)
        pa = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        pb = b.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pa == pb


async def _asyncpg_work(p, user, cache):
    conn = await asyncpg.connect(host=p.host, port=p.port, user=user, password=pvtest.PASSWORDS[user],
                                 database=pvtest.TESTDB, statement_cache_size=cache, timeout=10)
    try:
        assert await conn.fetchval("SELECT $1::int + $2::int", 40, 2) == 42
        stmt = await conn.prepare("SELECT id, name, val FROM copytest WHERE id = $1")
        for i in (1, 2, 500):
            row = await stmt.fetchrow(i)
            assert (row["id"], row["name"], row["val"]) == (i, f"row {i}", decimal.Decimal(i) * decimal.Decimal("1.5"))
        rows = await conn.fetch("SELECT g FROM generate_series(1, $1::int) g", 100)
        assert [r[0] for r in rows] == list(range(1, 101))
        async with conn.transaction():
            assert await conn.fetchval("SELECT count(*) FROM copytest WHERE id < $1", 11) == 10
        with pytest.raises(asyncpg.PostgresError):
            await conn.fetchval("SELECT 1 / $1::int", 0)
        assert await conn.fetchval("SELECT $1::text", "still fine") == "still fine"
        await conn.executemany("SELECT $1::int", [(i,) for i in range(10)])
    finally:
        await conn.close()


@pytest.mark.parametrize("mode", MODES)
def test_asyncpg_prepared_statements(pooler, mode):
    p = pooler(pool_mode=mode)
    asyncio.run(_asyncpg_work(p, "scramuser", 100))


@pytest.mark.parametrize("mode", MODES)
def test_asyncpg_unnamed_statements(pooler, mode):
    p = pooler(pool_mode=mode)
    asyncio.run(_asyncpg_work(p, "md5user", 0))


def test_asyncpg_many_concurrent_clients_transaction_mode(pooler):
    # 20 asyncpg clients, 3 server connections; unnamed statements only.
    p = pooler(pool_mode="transaction", default_pool_size=3)

    async def one(i):
        conn = await asyncpg.connect(host=p.host, port=p.port, user="md5user",
                                     password=pvtest.PASSWORDS["md5user"], database=pvtest.TESTDB,
                                     statement_cache_size=0, timeout=10)
        try:
            for j in range(10):
                assert await conn.fetchval("SELECT $1::int * 1000 + $2::int", i, j) == i * 1000 + j
        finally:
            await conn.close()

    async def main():
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), 60)
    asyncio.run(main())


def test_unix_socket_connection(pooler):
    p = pooler(pool_mode="transaction")
    sock = os.path.join(p.unix_dir, f".s.PGSQL.{p.port}")
    assert os.path.exists(sock)
    import psycopg
    with psycopg.connect(host=p.unix_dir, port=p.port, user="md5user", dbname=pvtest.TESTDB,
                         password=pvtest.PASSWORDS["md5user"], connect_timeout=10, autocommit=True) as c:
        assert c.execute("SELECT %s::int + 1", [1]).fetchone() == (2,)
        assert c.execute("SELECT current_user").fetchone() == ("md5user",)
    r = psql(f"host={p.unix_dir} port={p.port} dbname=testdb user=scramuser password=scram-secret",
             "-c", "SELECT 'via unix'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "via unix"
