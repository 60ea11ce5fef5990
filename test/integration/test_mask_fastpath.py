"""
The rewriter's per-result decision (src/mask.c: first_row / on_datarow): the
plan is looked up at the first DataRow of a result, and the later rows of
that result cost a pointer test; rows of a result without masked columns
pass untouched. These tests make results with and without masked columns
follow each other without a new connection, statement or RowDescription
between them, so that a decision kept one result too long shows up as a raw
value reaching the client.

The policy has no content detectors: with them every text column is looked
at, and no result would take the unmasked path.
"""
import asyncio
import os

import asyncpg
import psycopg
import pytest

from pvtest import PASSWORDS, TESTDB, parse_datarow
from test_mask import CARD, CARD_TAIL, SSN, _login, _msg, make, no_raw, schema  # noqa: F401 (fixture)

POLICY = """
masks:
  - name: cards
    columns: [mx.customers.card, mx.swap.card]
    method: partial
    keep_last: 4
  - name: nums
    columns: [mx.customers.card_num]
    method: redact
"""

PLAIN_ROWS = [["1", "hello"], ["2", "world"]]
MASKED_ROWS = [[CARD_TAIL, None], ["************5559", None]]


@pytest.fixture
def fp(pooler, schema):  # noqa: F811 (the fixture imported above)
    p = pooler(start=False, governance_file="governance.yaml", pool_mode="transaction",
               default_pool_size=2, auth_type="plain")
    p.runas.write(os.path.join(p.dir, "governance.yaml"), POLICY)
    p.start()
    return p


def _exchange(conn, data):
    """Send data; return the messages up to ReadyForQuery."""
    conn.send(data)
    seen = []
    while True:
        t, body = conn.recv_msg()
        seen.append((t, body))
        if t == b"Z":
            return seen


def _results(seen):
    """DataRows grouped by result (a non-DataRow message after rows ends one)."""
    out, cur = [], None
    for t, body in seen:
        if t == b"D":
            cur = cur if cur is not None else []
            cur.append(parse_datarow(body))
        elif cur is not None:
            out.append(cur)
            cur = None
    return out


def parse(name, sql):
    return _msg(b"P", name + b"\0" + sql.encode() + b"\0\0\0")


def bind(portal, stmt, param=None):
    params = b"\0\0" if param is None else (b"\0\1" + len(param).to_bytes(4, "big") + param)
    return _msg(b"B", portal + b"\0" + stmt + b"\0\0\0" + params + b"\0\0")


def execute(portal, n=0):
    return _msg(b"E", portal + b"\0" + n.to_bytes(4, "big"))


SYNC = _msg(b"S", b"")

PLAIN = "SELECT id, word FROM mx.plain ORDER BY id"
MASKED = "SELECT card, card_num FROM mx.customers ORDER BY id"


@pytest.mark.parametrize("order", [(PLAIN, MASKED, PLAIN), (MASKED, PLAIN, MASKED)],
                         ids=["plain-masked-plain", "masked-plain-masked"])
def test_multi_statement_query(fp, order):
    """One simple Query, several result sets: each is decided on its own."""
    with fp.raw() as conn:
        _login(fp, conn)
        seen = _exchange(conn, _msg(b"Q", "; ".join(order).encode() + b"\0"))
    no_raw(seen)
    want = [PLAIN_ROWS if sql == PLAIN else MASKED_ROWS for sql in order]
    assert _results(seen) == want


def test_interleaved_portals(fp):
    """Two portals executed a row at a time in turn: no RowDescription, only
    PortalSuspended, between a result without and one with masked columns."""
    with fp.raw() as conn:
        _login(fp, conn)
        seen = _exchange(conn, parse(b"sp", PLAIN) + parse(b"sm", MASKED) +
                         bind(b"pp", b"sp") + bind(b"pm", b"sm") +
                         execute(b"pp", 1) + execute(b"pm", 1) +
                         execute(b"pp", 1) + execute(b"pm", 1) + SYNC)
    no_raw(seen)
    types = [t for t, _ in seen]
    assert types == [b"1", b"1", b"2", b"2"] + [b"D", b"s"] * 4 + [b"Z"], types
    assert _results(seen) == [[PLAIN_ROWS[0]], [MASKED_ROWS[0]],
                              [PLAIN_ROWS[1]], [MASKED_ROWS[1]]]


def test_same_statement_new_layout(fp):
    """The same text, run again after the table behind it changed to one with
    a masked column: the new layout gets its own plan."""
    sql = "SELECT * FROM mx.swap ORDER BY id"
    with fp.connect(user="plainuser") as c:
        c.execute("CREATE TABLE mx.swap (id int, word text)")
        c.execute("INSERT INTO mx.swap VALUES (1, 'plain')")
        assert c.execute(sql).fetchall() == [(1, "plain")]
        c.execute("DROP TABLE mx.swap")
        c.execute("CREATE TABLE mx.swap (id int, card text)")
        c.execute(f"INSERT INTO mx.swap VALUES (1, '{CARD}')")
        got = c.execute(sql).fetchall()
        no_raw(got)
        assert got == [(1, CARD_TAIL)]


def test_alternating_results_one_connection(fp):
    """Masked and unmasked results in turn, text and binary: the plan kept
    between results is refilled for each new layout, never reused wrongly."""
    with fp.connect(user="plainuser") as c:
        for i in range(4):
            binary = i % 2 == 1
            plain = c.execute(PLAIN, binary=binary).fetchall()
            masked = c.execute(MASKED, binary=binary).fetchall()
            mixed = c.execute("SELECT p.word, c.card FROM mx.plain p JOIN mx.customers c "
                              "USING (id) ORDER BY id", binary=binary).fetchall()
            no_raw((plain, masked, mixed))
            assert plain == [(1, "hello"), (2, "world")]
            assert masked == [(CARD_TAIL, None), ("************5559", None)]
            assert mixed == [("hello", CARD_TAIL), ("world", "************5559")]


# derived: mask in a pipeline: a Bind's portal takes its statement's positions
# at BindComplete, so rebinding the portal before the first binding's rows
# arrive cannot unmask them (the upper-cased email is a derived value).
DERIVED = "SELECT upper(email) FROM mx.customers WHERE id = 1"
NAME = "SELECT name FROM mx.customers WHERE id = 1"


def _no_upper_email(seen):
    no_raw(seen)
    assert b"ANN@" not in b"".join(body for _, body in seen), seen


@pytest.mark.parametrize("first", ["derived", "plain"])
def test_pipelined_rebind_keeps_derived_positions(pooler, schema, first):  # noqa: F811
    p = make(pooler, derived="mask", auth_type="plain")
    stmts = [b"sd", b"sn"] if first == "derived" else [b"sn", b"sd"]
    with p.raw() as conn:
        _login(p, conn)
        seen = _exchange(conn, parse(b"sd", DERIVED) + parse(b"sn", NAME) +
                         bind(b"", stmts[0]) + execute(b"") +
                         bind(b"", stmts[1]) + execute(b"") + SYNC)
    _no_upper_email(seen)
    want = {b"sd": [["****"]], b"sn": [["ann"]]}
    assert _results(seen) == [want[stmts[0]], want[stmts[1]]]


# After an error PostgreSQL skips the pipeline up to Sync: prepared.c drops
# those requests even when masking rewrites the ErrorResponse itself.
@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "after-ready"])
def test_rebind_after_error(pooler, schema, pipelined):  # noqa: F811
    """A Bind the server skips after an error gets no BindComplete: the later
    ones must still never lose their positions (they may mask more while the
    skipped Bind is queued in front of them in the same pipeline)."""
    p = make(pooler, derived="mask", auth_type="plain")

    def execute(portal):  # described by the client: prepared.c injects no Describe
        return _msg(b"D", b"P" + portal + b"\0") + _msg(b"E", portal + b"\0\0\0\0\0")

    bad = parse(b"sd", DERIVED) + parse(b"sn", NAME) + parse(b"sz", "SELECT 1/0") + \
        bind(b"", b"sd") + execute(b"") + bind(b"", b"sn") + execute(b"") + \
        bind(b"", b"sz") + execute(b"") + bind(b"", b"sd") + execute(b"") + SYNC
    good = bind(b"", b"sn") + execute(b"") + bind(b"", b"sd") + execute(b"") + SYNC
    with p.raw() as conn:
        _login(p, conn)
        if pipelined:
            conn.send(bad + good)
            seen = _exchange(conn, b"") + _exchange(conn, b"")
        else:
            seen = _exchange(conn, bad) + _exchange(conn, good)
    _no_upper_email(seen)
    assert [t for t, _ in seen].count(b"E") == 1
    got = _results(seen)
    assert got[:2] == [[["****"]], [["ann"]]]
    assert got[3] == [["****"]]
    assert got[2] == [["ann"]] or (pipelined and got[2] == [["****"]])


# Errors in a pipeline with masking: masking scrubs the ErrorResponse and sends
# it itself, and pgvigil describes portals the client did not (Describes
# whose answers the client never sees). The error skips everything up to the
# FIRST Sync, pgvigil's Describes included; the batches behind it, possibly
# already in flight, are masked as usual.
ERR_MID = ("SELECT card, 10 / (2 - id) FROM "  # a row, then 22012
           "(SELECT * FROM mx.customers ORDER BY id OFFSET 0) c")


def _policy(pooler, fp, policy):
    return fp if policy == "columns" else make(pooler, auth_type="plain")


@pytest.mark.parametrize("policy", ["columns", "detectors"])
@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "after-ready"])
def test_error_mid_pipeline_then_masked(pooler, fp, policy, pipelined):
    p = _policy(pooler, fp, policy)
    batches = [
        (parse(b"sm", MASKED) + parse(b"sz", ERR_MID) + bind(b"", b"sm") + execute(b"") +
         bind(b"", b"sz") + execute(b"") + bind(b"p", b"sm") + execute(b"p") + SYNC,
         [b"1", b"1", b"2", b"D", b"D", b"C", b"2", b"D", b"E", b"Z"],
         [MASKED_ROWS, [[CARD_TAIL, "10"]]]),
        (bind(b"", b"sm") + execute(b"") + SYNC, [b"2", b"D", b"D", b"C", b"Z"], [MASKED_ROWS]),
        (bind(b"p", b"sm") + execute(b"p") + bind(b"", b"sz") + execute(b"", 1) + SYNC,
         [b"2", b"D", b"D", b"C", b"2", b"D", b"s", b"Z"], [MASKED_ROWS, [[CARD_TAIL, "10"]]]),
    ]
    with p.raw() as conn:
        _login(p, conn)
        if pipelined:
            conn.send(b"".join(data for data, _, _ in batches))
        for data, types, rows in batches:
            seen = _exchange(conn, b"" if pipelined else data)
            no_raw(seen)
            assert [t for t, _ in seen] == types, seen
            assert _results(seen) == rows
        assert p.alive()


def test_psycopg_pipeline_error_then_masked(pooler, fp):
    with fp.connect(user="plainuser") as c:
        for threshold in (None, 0):
            c.prepare_threshold = threshold
            with pytest.raises(psycopg.errors.DivisionByZero):
                with c.pipeline():
                    c.execute(MASKED)
                    c.execute("SELECT 1 / %s::int", [0])
                    c.execute(MASKED, binary=True)
            for _ in range(2):
                with c.pipeline():
                    curs = [c.execute(MASKED), c.execute(PLAIN), c.execute(MASKED, binary=True),
                            c.execute("SELECT card FROM mx.customers WHERE id = %s", [2])]
                got = [cur.fetchall() for cur in curs]
                no_raw(got)
                masked = [tuple(r) for r in MASKED_ROWS]
                assert got == [masked, [(1, "hello"), (2, "world")], masked,
                               [("************5559",)]]


def test_asyncpg_executemany_error_then_masked(pooler, fp):
    async def run():
        conn = await asyncpg.connect(host=fp.host, port=fp.port, user="plainuser",
                                     password=PASSWORDS["plainuser"], database=TESTDB)
        try:
            out = []
            for _ in range(3):
                with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
                    await conn.executemany("SELECT card, 1 / $1::int FROM mx.customers",
                                           [(1,), (0,), (2,)])
                out.append([tuple(r) for r in await conn.fetch(MASKED)])
                out.append([tuple(r) for r in await conn.fetch(
                    "SELECT card FROM mx.customers WHERE id = $1", 1)])
            return out
        finally:
            await conn.close()

    got = asyncio.run(run())
    no_raw(got)
    assert got == [[tuple(r) for r in MASKED_ROWS], [(CARD_TAIL,)]] * 3


# Rewritten rows and the messages forwarded around them leave in one send at the
# end of the server's input batch (src/sbuf.c): whatever the mix of rewritten
# rows, untouched rows (small and large runs) and the CommandComplete and
# ReadyForQuery behind them, the client gets them in the server's order.
@pytest.mark.parametrize("every", [1, 7, 400])
def test_rewritten_rows_keep_their_order(pooler, schema, every):  # noqa: F811
    p = make(pooler, auth_type="plain")  # detectors: every text value is looked at
    sql = (f"SELECT x, CASE WHEN x % {every} = 0 THEN 'ssn {SSN}' ELSE repeat('a', x % 97) "
           "END FROM generate_series(1, 3000) x")
    with p.raw() as conn:
        _login(p, conn)
        for _ in range(2):
            seen = _exchange(conn, _msg(b"Q", sql.encode() + b"\0"))
            no_raw(seen)
            assert [t for t, _ in seen] == [b"T"] + [b"D"] * 3000 + [b"C", b"Z"]
            rows = [parse_datarow(body) for t, body in seen if t == b"D"]
            assert [r[0] for r in rows] == [str(x) for x in range(1, 3001)]
            for x, (_, v) in zip(range(1, 3001), rows):
                if x % every == 0:
                    assert v.startswith("ssn ") and v != f"ssn {SSN}", (x, v)
                else:
                    assert v == "a" * (x % 97), (x, v)
