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
import os

import pytest

from pvtest import ConnectionClosed, parse_datarow
from test_mask import CARD, CARD_TAIL, _login, _msg, make, no_raw, schema  # noqa: F401 (fixture)

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


# Known: after an error in an extended-protocol pipeline the layouts prepared.c
# tracks are lost and the next result fails closed ("the columns of this result
# are unknown"); the client is closed before the Bind queue is exercised.
@pytest.mark.xfail(reason="prepared.c loses result layouts after an error in a pipeline "
                          "(fails closed)", raises=ConnectionClosed, strict=False)
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
