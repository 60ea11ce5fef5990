"""Protocol-level prepared statements and pipelining in transaction mode (spec 5.4)."""
import asyncio
import struct

import asyncpg
import psycopg
import pytest

import pvtest
from pvtest import message

TX = dict(pool_mode="transaction")


def parse(name, sql, types=()):
    body = name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(types))
    for t in types:
        body += struct.pack("!I", t)
    return message(b"P", body)


def bind(stmt, params=(), portal=""):
    body = portal.encode() + b"\0" + stmt.encode() + b"\0" + struct.pack("!H", 0)
    body += struct.pack("!H", len(params))
    for p in params:
        v = p.encode()
        body += struct.pack("!i", len(v)) + v
    return message(b"B", body + struct.pack("!H", 0))


def execute(portal=""):
    return message(b"E", portal.encode() + b"\0" + struct.pack("!i", 0))


def close_stmt(name):
    return message(b"C", b"S" + name.encode() + b"\0")


SYNC = message(b"S")


def until_ready(r):
    """Messages up to and including ReadyForQuery."""
    out = []
    while True:
        tag, body = r.recv_msg()
        out.append((tag, body))
        if tag == b"Z":
            return out


def tags(msgs):
    return b"".join(t for t, _ in msgs)


def raw_login(p, user="md5user"):
    r = p.raw()
    r.login(user, password=pvtest.PASSWORDS[user])
    return r


def server_statements(p, user="md5user"):
    with p.connect(user) as c:
        return c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]


def test_named_statement_shared_across_clients_on_one_server(pooler):
    p = pooler(default_pool_size=1, **TX)
    a, b = raw_login(p), raw_login(p)
    with a, b:
        a.send(parse("s1", "SELECT $1::int * 2") + SYNC)
        assert tags(until_ready(a)) == b"1Z"
        # b prepares the same text under its own name: answered by pgvigil, same server
        b.send(parse("mine", "SELECT $1::int * 2") + SYNC)
        assert tags(until_ready(b)) == b"1Z"
        for r, name, v in ((a, "s1", "21"), (b, "mine", "4")):
            r.send(bind(name, [v]) + execute() + SYNC)
            msgs = until_ready(r)
            assert tags(msgs) == b"2DCZ", msgs
            assert msgs[1][1].endswith(str(int(v) * 2).encode())
    # the server holds one statement for both clients
    assert server_statements(p) == 1


def test_close_is_answered_locally_and_name_is_gone(pooler):
    p = pooler(default_pool_size=1, **TX)
    with raw_login(p) as r:
        r.send(parse("s", "SELECT 1") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        r.send(close_stmt("s") + SYNC)
        assert tags(until_ready(r)) == b"3Z"
        r.send(bind("s") + execute() + SYNC)
        err = r.expect_error_and_close()
        assert "prepared statement did not exist" in err.get("M", ""), err
    p.assert_serves()


def test_duplicate_statement_name_disconnects(pooler):
    p = pooler(default_pool_size=1, **TX)
    with raw_login(p) as r:
        r.send(parse("dup", "SELECT 1") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        r.send(parse("dup", "SELECT 2") + SYNC)
        err = r.expect_error_and_close()
        assert "prepared statement name is already in use" in err.get("M", ""), err


def test_pipeline_error_discards_until_sync_including_local_answers(pooler):
    p = pooler(default_pool_size=1, **TX)
    with raw_login(p) as r:
        r.send(parse("ok", "SELECT 1") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        # error at the first Bind: the later Parse (known: pgvigil would answer it) and
        # the second Bind/Execute are skipped up to Sync, as PostgreSQL does
        r.send(bind("ok", ["x"]) + execute() + parse("ok2", "SELECT 1") +
               bind("ok2") + execute() + SYNC)
        msgs = until_ready(r)
        assert tags(msgs) == b"EZ", msgs
        # the pipeline after the Sync works, and ok2 was never created
        r.send(bind("ok") + execute() + SYNC)
        assert tags(until_ready(r)) == b"2DCZ"


def test_lru_eviction_and_reprepare(pooler):
    p = pooler(default_pool_size=1, max_prepared_statements=2, **TX)
    with raw_login(p) as r:
        for i in range(5):
            r.send(parse(f"q{i}", f"SELECT {i}") + SYNC)
            assert tags(until_ready(r)) == b"1Z"
        assert server_statements(p) <= 2
        # every statement still runs: evicted ones are prepared again transparently
        for rnd in range(2):
            for i in range(5):
                r.send(bind(f"q{i}") + execute() + SYNC)
                msgs = until_ready(r)
                assert tags(msgs) == b"2DCZ", msgs
                assert msgs[1][1].endswith(str(i).encode())
    assert server_statements(p) <= 2


def test_deallocate_all_forgets_statements(pooler):
    p = pooler(default_pool_size=1, **TX)
    with raw_login(p) as r:
        r.send(parse("s", "SELECT 7") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        rows, err = r.query("DEALLOCATE ALL")
        assert err is None
        # the client's name is gone with it, as on a plain server
        r.send(bind("s") + execute() + SYNC)
        err = r.expect_error_and_close()
        assert "prepared statement did not exist" in err.get("M", ""), err
    # and a new client can prepare the same text again (the server copy was dropped)
    with raw_login(p) as r:
        r.send(parse("s", "SELECT 7") + bind("s") + execute() + SYNC)
        assert tags(until_ready(r)) == b"12DCZ"


def test_large_parse_beyond_pkt_buf(pooler):
    p = pooler(default_pool_size=1, pkt_buf=4096, **TX)
    sql = "SELECT length('" + "x" * 24000 + "') + %s::int"  # a 24 KB Parse
    big = "y" * 30000  # and a 30 KB Bind
    with p.connect() as c:
        for i in range(3):
            assert c.execute(sql, [i], prepare=True).fetchone()[0] == 24000 + i
            assert c.execute("SELECT length(%s::text)", [big], prepare=True).fetchone()[0] == 30000


def test_psycopg_pipeline_with_error_in_the_middle(pooler):
    p = pooler(default_pool_size=2, **TX)
    with p.connect(autocommit=True) as c:
        c.prepare_threshold = 0
        with pytest.raises(psycopg.errors.DivisionByZero):
            with c.pipeline():
                c.execute("SELECT %s::int", [1])
                c.execute("SELECT 1 / %s::int", [0])
                c.execute("SELECT %s::int", [3])
        # the connection is usable and prepared statements still work
        for i in range(5):
            assert c.execute("SELECT %s::int + 1", [i]).fetchone()[0] == i + 1
        with c.pipeline():
            curs = [c.execute("SELECT %s::int * 10", [i]) for i in range(10)]
        assert [cur.fetchone()[0] for cur in curs] == [i * 10 for i in range(10)]


def test_asyncpg_many_tasks_small_pool(pooler):
    p = pooler(default_pool_size=3, max_client_conn=100, **TX)

    async def worker(n):
        conn = await asyncpg.connect(host=p.host, port=p.port, user="md5user",
                                     password=pvtest.PASSWORDS["md5user"], database=pvtest.TESTDB)
        try:
            total = 0
            for i in range(20):
                total += await conn.fetchval("SELECT $1::int + $2::int", i, n)
                total += await conn.fetchval(f"SELECT $1::int * {n % 4 + 1}", i)
                async with conn.transaction():
                    total += await conn.fetchval("SELECT $1::int", 1)
            return total
        finally:
            await conn.close()

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(30))), 60)

    results = asyncio.run(main())
    for n, total in enumerate(results):
        assert total == sum(i + n for i in range(20)) + sum(i * (n % 4 + 1) for i in range(20)) + 20


def flush():
    return message(b"H")


def describe_portal(portal=""):
    return message(b"D", b"P" + portal.encode() + b"\0")


def err_code(msgs):
    return [pvtest.parse_error(b).get("C") for t, b in msgs if t == b"E"]


def test_failed_parse_leaves_no_name_behind(pooler):
    p = pooler(default_pool_size=1, **TX)
    with raw_login(p) as r:
        r.send(parse("bad", "SELEC 1") + SYNC)
        msgs = until_ready(r)
        assert tags(msgs) == b"EZ" and err_code(msgs) == ["42601"]
        # like PostgreSQL, the name is free again
        r.send(parse("bad", "SELECT 1") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        r.send(bind("bad") + execute() + SYNC)
        assert tags(until_ready(r)) == b"2DCZ"


def test_failed_parse_text_is_not_assumed_prepared(pooler):
    p = pooler(default_pool_size=1, **TX)
    with raw_login(p) as r:
        r.send(parse("x", "SELECT * FROM nosuch") + SYNC)
        assert err_code(until_ready(r)) == ["42P01"]
        # the same text under another name must reach the server again and fail again
        r.send(parse("y", "SELECT * FROM nosuch") + SYNC)
        assert err_code(until_ready(r)) == ["42P01"]


def test_parse_skipped_after_error_poisons_nothing(pooler):
    p = pooler(default_pool_size=1, **TX)
    a, b = raw_login(p), raw_login(p)
    with a, b:
        # the named Parse comes after the failing Execute: PostgreSQL skips it
        a.send(parse("", "SELECT 1/0") + bind("") + execute() + parse("n", "SELECT 3") + SYNC)
        msgs = until_ready(a)
        assert tags(msgs) == b"1EZ" and err_code(msgs) == ["22012"]
        # another client on the same server preparing that text gets a real statement
        b.send(parse("m", "SELECT 3") + SYNC)
        assert tags(until_ready(b)) == b"1Z"
        b.send(bind("m") + execute() + SYNC)
        assert tags(until_ready(b)) == b"2DCZ"
        # and a's own name n does not exist
        a.send(parse("n", "SELECT 3") + SYNC)
        assert tags(until_ready(a)) == b"1Z"


def test_error_before_sync_keeps_pipeline_in_step(pooler):
    # node-pg style: messages written one by one, the error overtakes the Sync
    p = pooler(default_pool_size=1, max_prepared_statements=1, **TX)
    with raw_login(p) as r:
        r.send(parse("bad", "SELEC 1") + flush())
        tag, body = r.recv_msg()
        assert tag == b"E"
        r.send(bind("bad") + describe_portal() + execute() + SYNC)
        assert tags(until_ready(r)) == b"Z"
        # pgvigil's own Close / injected Parse answers never leak to the client
        r.send(parse("s1", "SELECT 1") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        r.send(parse("s2", "SELECT 2") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        for name in ("s1", "s2", "s1"):
            r.send(bind(name) + execute() + SYNC)
            assert tags(until_ready(r)) == b"2DCZ"


def test_admin_shows_prepared_statements_and_counters(pooler):
    from test_admin import admin, admin_pooler, show

    p = admin_pooler(pooler, default_pool_size=1)
    with raw_login(p) as r:
        r.send(parse("a", "SELECT 1") + parse("b", "SELECT 2") + SYNC)
        assert tags(until_ready(r)) == b"11Z"
        for name in ("a", "b", "a"):
            r.send(bind(name) + execute() + SYNC)
            assert tags(until_ready(r)) == b"2DCZ"
        with admin(p) as adm:
            clients = [c for c in show(adm, "CLIENTS") if c["user"] == "md5user"]
            assert [c["prepared_statements"] for c in clients] == ["2"]
            servers = [s for s in show(adm, "SERVERS") if s["user"] == "md5user"]
            assert [s["prepared_statements"] for s in servers] == ["2"]
            totals = {row["name"]: int(row["value"]) for row in show(adm, "TOTALS")}
            assert totals["total_ps_client_parse_count"] == 2
            assert totals["total_ps_server_parse_count"] == 2
            assert totals["total_ps_bind_count"] == 3


# --- errors in a pipeline: PostgreSQL skips every request up to the next Sync ---------------

ERR_MID_RESULT = "SELECT 10 / (2 - x) FROM generate_series(1, 2) x"  # a row, then 22012


@pytest.mark.parametrize("max_ps", [200, 2], ids=["cache", "evicting"])
@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "after-ready"])
def test_error_skips_only_to_first_sync(pooler, pipelined, max_ps):
    """Three batches: the error in the first skips the rest of it (a Parse and a
    Bind/Execute, and with a small cache pgvigil's own eviction Close and
    Parse), not the batches behind its Sync, which may already be in flight."""
    p = pooler(default_pool_size=1, max_prepared_statements=max_ps, **TX)
    batches = [
        (bind("a") + execute() + parse("z", ERR_MID_RESULT) + bind("z") + execute() +
         parse("b", "SELECT 2") + bind("a") + execute() + SYNC, b"2DC12DEZ"),
        # a still runs; y reaches the server (it was evicted in the first batch)
        (bind("a") + execute() + parse("y", "SELECT 3") + bind("y") + execute() + SYNC,
         b"2DC12DCZ"),
        # same text as a: answered locally, in order; Close answered locally too
        (parse("c", "SELECT 1") + bind("c") + execute() + close_stmt("c") + SYNC, b"12DC3Z"),
    ]
    with raw_login(p) as r:
        r.send(parse("a", "SELECT 1") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        if pipelined:
            r.send(b"".join(data for data, _ in batches))
        got = []
        for data, want in batches:
            if not pipelined:
                r.send(data)
            msgs = until_ready(r)
            got.append(tags(msgs))
            if want.endswith(b"EZ"):
                assert err_code(msgs) == ["22012"]
        assert got == [want for _, want in batches]
        # and the connection goes on as new: every statement runs again
        # b was skipped: the name is free and the text reaches the server again
        r.send(parse("b", "SELECT 2") + SYNC)
        assert tags(until_ready(r)) == b"1Z"
        for name, v in (("a", b"1"), ("b", b"2"), ("z", None), ("y", b"3"), ("a", b"1")):
            r.send(bind(name) + execute() + SYNC)
            msgs = until_ready(r)
            if v is None:
                assert tags(msgs) == b"2DEZ", msgs
            else:
                assert tags(msgs) == b"2DCZ", msgs
                assert msgs[1][1].endswith(v)


def test_asyncpg_executemany_error_then_connection_works(pooler):
    """asyncpg executemany pipelines Bind/Execute per row before one Sync."""
    p = pooler(default_pool_size=1, **TX)

    async def run():
        conn = await asyncpg.connect(host=p.host, port=p.port, user="md5user",
                                     password=pvtest.PASSWORDS["md5user"], database=pvtest.TESTDB)
        try:
            out = []
            for _ in range(3):
                with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
                    await conn.executemany("SELECT 1 / $1::int", [(1,), (2,), (0,), (3,), (4,)])
                await conn.executemany("SELECT 1 / $1::int", [(1,), (2,), (3,)])
                out.append(await conn.fetchval("SELECT $1::int + 1", 41))
                out.append([tuple(r) for r in await conn.fetch(
                    "SELECT x FROM generate_series(1, $1::int) x", 3)])
            return out
        finally:
            await conn.close()

    assert asyncio.run(run()) == [42, [(1,), (2,), (3,)]] * 3
