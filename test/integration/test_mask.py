"""
Masking through pgvigil (doc/governance.md "Masking"): an exfiltration
suite. The raw value of a masked column must never appear in anything the
client receives: plain, aliased, SELECT *, qualified and aliased tables,
views, CTEs, FROM-subqueries, RETURNING, server-side cursors, binary format
(psycopg binary=True, asyncpg), extended protocol with and without Describe.
What the rewriter cannot see (expressions, casts, whole-row references,
json/array aggregates, set operations, scalar sub-selects, COPY, DO blocks)
is refused; error and notice messages that echo values are scrubbed;
notification payloads go through the detectors. Exempt groups see raw
values; result sets without masked columns are untouched.
"""
import asyncio
import os
import struct

import psycopg
import pytest

from pvtest import PASSWORDS, TESTDB, parse_datarow
from test_oidc import HBA, jwks, policy as oidc_policy, token

CARD = "4111111111111111"
CARD_TAIL = "************1111"
SSN = "123-45-6789"
ADMIN_PW = "adm-secret"

MASKS = """
masks:
  - name: cards
    columns: [mx.customers.card, mx.customers.card_num]
    method: partial
    keep_last: 4
    except: {groups: [billing]}
  - name: mails
    columns: [mx.customers.email]
    method: email
  - name: fresh
    columns: ["mx.fresh*.card"]
    method: redact
  - name: safety-net
    detect: [credit_card, us_ssn]
    method: redact
derived: %s
predicates: %s
"""

SETUP = [
    "DROP SCHEMA IF EXISTS mx CASCADE",
    "CREATE SCHEMA mx",
    "GRANT USAGE, CREATE ON SCHEMA mx TO PUBLIC",
    "CREATE TABLE mx.customers (id int PRIMARY KEY, name text, email text, card text, "
    "card_num bigint, note text)",
    f"INSERT INTO mx.customers VALUES (1, 'ann', 'ann@example.com', '{CARD}', {CARD}, "
    f"'ssn {SSN}')",
    "INSERT INTO mx.customers VALUES (2, 'bob', 'bob@example.org', '5500005555555559', "
    "5500005555555559, 'plain note')",
    "CREATE VIEW mx.v AS SELECT id, card, name FROM mx.customers",
    "CREATE TABLE mx.plain (id int, word text)",
    "INSERT INTO mx.plain VALUES (1, 'hello'), (2, 'world')",
    "GRANT ALL ON ALL TABLES IN SCHEMA mx TO PUBLIC",
]

RAW = [CARD, "5500005555555559", "ann@", "bob@", SSN]


def no_raw(obj):
    """Nothing of the raw values appears in the repr of what the client got."""
    text = repr(obj)
    for raw in RAW:
        assert raw not in text, (raw, text[:2000])


@pytest.fixture
def schema(pg_cluster):
    with pg_cluster.connect(TESTDB) as c:
        for sql in SETUP:
            c.execute(sql)
    yield pg_cluster
    with pg_cluster.connect(TESTDB) as c:
        c.execute("DROP SCHEMA IF EXISTS mx CASCADE")


def make(pooler, derived="deny", predicates="allow", extra_policy="", **ini):
    settings = {"governance_file": "governance.yaml", "pool_mode": "transaction",
                "default_pool_size": 2}
    settings.update(ini)
    p = pooler(start=False, **settings)
    p.runas.write(os.path.join(p.dir, "governance.yaml"),
                  extra_policy + MASKS % (derived, predicates))
    p.start()
    return p


@pytest.fixture
def mp(pooler, schema):
    return make(pooler)


def rows(p, sql, **kw):
    with p.connect() as c:
        with c.cursor(**kw) as cur:
            cur.execute(sql)
            return cur.fetchall()


PLAIN = [
    ("SELECT card FROM mx.customers ORDER BY id", [(CARD_TAIL,), ("************5559",)]),
    ("SELECT card AS x FROM mx.customers WHERE id = 1", [(CARD_TAIL,)]),
    ("SELECT c.card FROM mx.customers c WHERE c.id = 1", [(CARD_TAIL,)]),
    ("SELECT \"card\" FROM \"mx\".\"customers\" WHERE id = 1", [(CARD_TAIL,)]),
    ("SELECT email FROM mx.customers ORDER BY id", [("****@example.com",), ("****@example.org",)]),
    ("SELECT card FROM mx.v WHERE id = 1", [(CARD_TAIL,)]),
    ("WITH x AS (SELECT card FROM mx.customers WHERE id = 1) SELECT card FROM x", [(CARD_TAIL,)]),
    ("SELECT s.card FROM (SELECT card FROM mx.customers WHERE id = 1) s", [(CARD_TAIL,)]),
    ("SELECT card_num FROM mx.customers WHERE id = 1", [(None,)]),  # a number cannot be partial
]


@pytest.mark.parametrize("sql,want", PLAIN, ids=[s for s, _ in PLAIN])
def test_plain_references_masked(mp, sql, want):
    got = rows(mp, sql)
    no_raw(got)
    assert got == want


def test_select_star_and_unmasked_columns(mp):
    got = rows(mp, "SELECT * FROM mx.customers WHERE id = 2")
    no_raw(got)
    assert got == [(2, "bob", "****@example.org", "************5559", None, "plain note")]
    # a result set without masked columns is untouched
    assert rows(mp, "SELECT id, word FROM mx.plain ORDER BY id") == [(1, "hello"), (2, "world")]


def test_binary_format_psycopg(mp):
    got = rows(mp, "SELECT id, card, email, card_num FROM mx.customers WHERE id = 1", binary=True)
    no_raw(got)
    assert got == [(1, CARD_TAIL, "****@example.com", None)]


def test_asyncpg_binary(mp):
    asyncpg = pytest.importorskip("asyncpg")

    async def run():
        conn = await asyncpg.connect(host=mp.host, port=mp.port, user="md5user",
                                     password=PASSWORDS["md5user"], database=TESTDB,
                                     statement_cache_size=0)
        try:
            r1 = await conn.fetch("SELECT card, card_num, email FROM mx.customers WHERE id = $1", 1)
            r2 = await conn.fetch("SELECT * FROM mx.v ORDER BY id")
            return [tuple(r) for r in r1], [tuple(r) for r in r2]
        finally:
            await conn.close()

    r1, r2 = asyncio.run(run())
    no_raw((r1, r2))
    assert r1 == [(CARD_TAIL, None, "****@example.com")]
    assert [r[1] for r in r2] == [CARD_TAIL, "************5559"]


def test_extended_protocol_with_parameters(mp):
    with mp.connect() as c:
        got = c.execute("SELECT card, name FROM mx.customers WHERE id = %s", [1]).fetchall()
        got2 = c.execute("SELECT card FROM mx.customers WHERE id = %s", [2], prepare=True).fetchall()
        got3 = c.execute("SELECT card FROM mx.customers WHERE id = %s", [1], prepare=True).fetchall()
    no_raw((got, got2, got3))
    assert got == [(CARD_TAIL, "ann")] and got3 == [(CARD_TAIL,)]


def _msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


def _startup(user, db):
    body = struct.pack("!I", 196608) + f"user\0{user}\0database\0{db}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def _login(p, conn):
    conn.send(_startup("plainuser", TESTDB))
    t, body = conn.recv_msg()
    assert t == b"R" and struct.unpack("!I", body[:4])[0] == 3, (t, body)  # cleartext
    conn.send(_msg(b"p", PASSWORDS["plainuser"].encode() + b"\0"))
    while True:
        t, body = conn.recv_msg()
        if t == b"Z":
            return
        assert t != b"E", body


def test_extended_protocol_without_describe(pooler, schema):
    """Parse/Bind/Execute with no Describe: pgvigil learns the layout itself, unseen."""
    p = make(pooler, auth_type="plain")
    with p.raw() as conn:
        _login(p, conn)
        sql = b"SELECT name, card FROM mx.customers WHERE id = 1\0"
        conn.send(_msg(b"P", b"\0" + sql + b"\0\0") + _msg(b"B", b"\0\0" + b"\0\0\0\0\0\0") +
                  _msg(b"E", b"\0" + b"\0\0\0\0") + _msg(b"S", b""))
        seen = []
        while True:
            t, body = conn.recv_msg()
            seen.append((t, body))
            if t == b"Z":
                break
    types = [t for t, _ in seen]
    assert types == [b"1", b"2", b"D", b"C", b"Z"], types
    row = parse_datarow(seen[2][1])
    no_raw(seen)
    assert row == ["ann", CARD_TAIL]


def test_returning_and_cursor(mp):
    with mp.connect(autocommit=False) as c:
        got = c.execute("UPDATE mx.customers SET name = name WHERE id = 1 RETURNING card, id").fetchall()
        c.execute("DECLARE cur CURSOR FOR SELECT id, card FROM mx.customers ORDER BY id")
        fetched = c.execute("FETCH ALL FROM cur").fetchall()
        c.rollback()
    no_raw((got, fetched))
    assert got == [(CARD_TAIL, 1)]
    assert fetched == [(1, CARD_TAIL), (2, "************5559")]


DENIED = [
    "SELECT row_to_json(c) FROM mx.customers c",
    "SELECT to_jsonb(c.*) FROM mx.customers c",
    "SELECT json_agg(c) FROM mx.customers c",
    "SELECT c FROM mx.customers c",
    "SELECT array_agg(card) FROM mx.customers",
    "SELECT string_agg(card, ',') FROM mx.customers",
    "SELECT card || '' FROM mx.customers",
    "SELECT card::bigint FROM mx.customers",
    "SELECT CAST(card AS numeric) FROM mx.customers",
    "SELECT substr(card, 1, 8) FROM mx.customers",
    "SELECT upper(email) FROM mx.customers",
    "SELECT (SELECT card FROM mx.customers LIMIT 1)",
    "SELECT card FROM mx.customers UNION SELECT 'x'",
    "SELECT id FROM mx.customers UNION ALL SELECT card_num FROM mx.customers",
    "SELECT CASE WHEN true THEN card END FROM mx.customers",
    "COPY (SELECT card FROM mx.customers) TO STDOUT",
    "SELECT 1; COPY mx.customers TO STDOUT",
    "CREATE TABLE mx.stolen AS SELECT card FROM mx.customers",
    "INSERT INTO mx.plain SELECT id, card FROM mx.customers",
    "DO $$DECLARE v text; BEGIN SELECT card INTO v FROM mx.customers LIMIT 1; "
    "RAISE NOTICE '%', v; END$$",
]


@pytest.mark.parametrize("sql", DENIED)
def test_leaky_statements_refused(mp, sql):
    with mp.connect() as c:
        notices = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
            c.execute(sql).fetchall()
        no_raw((str(ei.value), notices))
        # the session is usable afterwards
        assert c.execute("SELECT card FROM mx.customers WHERE id = 1").fetchone() == (CARD_TAIL,)


def copy_out(p, sql):
    with p.connect() as c:
        with c.cursor() as cur:
            with cur.copy(sql) as cp:
                data = b"".join(bytes(b) for b in cp)
            # the session goes on normally afterwards
            assert cur.execute("SELECT card FROM mx.customers WHERE id = 2").fetchone() == \
                ("************5559",)
    no_raw(data)
    return data


def test_copy_text(mp):
    data = copy_out(mp, "COPY mx.customers TO STDOUT")
    assert data.decode().splitlines() == [
        "1\tann\t****@example.com\t************1111\t\\N\tssn ****",
        "2\tbob\t****@example.org\t************5559\t\\N\tplain note"]
    data = copy_out(mp, "COPY mx.customers (card, id, name) TO STDOUT (DELIMITER '|', NULL 'nil')")
    assert data.decode().splitlines() == ["************1111|1|ann", "************5559|2|bob"]


def test_copy_csv(mp):
    import csv
    import io
    data = copy_out(mp, "COPY mx.customers (id, card, note, email) TO STDOUT (FORMAT csv, HEADER)")
    got = list(csv.reader(io.StringIO(data.decode())))
    assert got == [["id", "card", "note", "email"],
                   ["1", "************1111", "ssn ****", "****@example.com"],
                   ["2", "************5559", "plain note", "****@example.org"]]
    data = copy_out(mp, "COPY \"mx\".customers (card) TO STDOUT WITH CSV QUOTE '#' FORCE QUOTE *")
    assert data.decode().splitlines() == ["#************1111#", "#************5559#"]


def test_copy_binary(mp):
    data = copy_out(mp, "COPY mx.customers (id, card, card_num, name) TO STDOUT (FORMAT binary)")
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00"
    ext = struct.unpack("!I", data[15:19])[0]
    pos, tuples = 19 + ext, []
    while True:
        (n,) = struct.unpack("!h", data[pos:pos + 2])
        pos += 2
        if n == -1:
            break
        fields = []
        for _ in range(n):
            (ln,) = struct.unpack("!i", data[pos:pos + 4])
            pos += 4
            fields.append(None if ln == -1 else data[pos:pos + ln])
            pos += max(ln, 0)
        tuples.append(fields)
    assert pos == len(data)
    assert [(struct.unpack("!i", t[0])[0], t[1], t[2], t[3]) for t in tuples] == [
        (1, CARD_TAIL.encode(), None, b"ann"), (2, b"************5559", None, b"bob")]


def test_leaky_statement_refused_in_transaction_and_extended(mp):
    with mp.connect(autocommit=False) as c:
        c.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT card || %s FROM mx.customers", ["x"])
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("SELECT 1")
        c.rollback()
        assert c.execute("SELECT card FROM mx.customers WHERE id = %s", [1]).fetchone() == (CARD_TAIL,)


def test_predicates(pooler, schema):
    allow = make(pooler)
    assert rows(allow, "SELECT id FROM mx.customers WHERE card LIKE '4111%'") == [(1,)]
    deny = make(pooler, predicates="deny")
    with deny.connect() as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT id FROM mx.customers WHERE card LIKE '4111%'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT id FROM mx.customers ORDER BY card")
        assert c.execute("SELECT id FROM mx.customers WHERE id = 1").fetchone() == (1,)


def test_derived_mask_and_error_scrubbing(pooler, schema):
    p = make(pooler, derived="mask")
    got = rows(p, "SELECT id, card || '-x', upper(name) FROM mx.customers WHERE id = 1")
    no_raw(got)
    assert got == [(1, "****", "ANN")]
    with p.connect() as c:
        with pytest.raises(psycopg.errors.DataError) as ei:
            c.execute("SELECT card::int FROM mx.customers WHERE id = 1").fetchall()
        msg = str(ei.value)
        no_raw(msg)
        assert "****" in msg, msg
        # extended protocol: positions follow the statement to its portal, also when the
        # statement is prepared once and executed again later (Bind/Execute only)
        got = [c.execute("SELECT card || %s, id FROM mx.customers WHERE id = 1", ["x"]).fetchall()]
        sql = "SELECT id, lower(card) FROM mx.customers WHERE id = %s"
        for i in (1, 2, 1):
            got.append(c.execute(sql, [i], prepare=True).fetchall())
        got.append(c.execute("SELECT id, card FROM mx.customers WHERE id = %s", [1],
                             prepare=True).fetchall())
    no_raw(got)
    assert got == [[("****", 1)], [(1, "****")], [(2, "****")], [(1, "****")],
                   [(1, CARD_TAIL)]], got


def test_error_of_prepared_statement_scrubbed(mp):
    """Bind/Execute of a statement prepared earlier: the error it raises still echoes nothing."""
    with mp.connect() as c:
        sql = "SELECT id FROM mx.customers WHERE id = %s AND email::int > 0"  # no detector for emails
        assert c.execute(sql, [0], prepare=True).fetchall() == []
        with pytest.raises(psycopg.errors.DataError) as ei:
            c.execute(sql, [1], prepare=True).fetchall()
    msg = str(ei.value)
    no_raw(msg)
    assert "****" in msg, msg


def test_detectors_on_values_notices_and_notifications(mp):
    # a value in an unmasked column
    got = rows(mp, "SELECT note FROM mx.customers WHERE id = 1")
    no_raw(got)
    assert got == [("ssn ****",)]
    with mp.connect() as c:
        notices = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        # dynamic SQL hides the column from inspection: the detectors still catch the value
        c.execute("DO $$DECLARE v text; BEGIN EXECUTE 'SELECT ca' || 'rd FROM mx.customers "
                  "WHERE id = 1' INTO v; RAISE NOTICE 'v=%', v; END$$")
        assert notices == ["v=****"], notices
        payloads = []
        c.add_notify_handler(lambda n: payloads.append(n.payload))
        c.execute("LISTEN mxchan")
        c.execute(f"NOTIFY mxchan, 'card {CARD} ssn {SSN}'")
        c.execute("SELECT 1")
    no_raw((notices, payloads))
    assert payloads == ["card **** ssn ****"]


def test_session_mode(pooler, schema):
    p = make(pooler, pool_mode="session")
    with p.connect() as c:
        got = c.execute("SELECT card FROM mx.customers WHERE id = %s", [1]).fetchall()
        got2 = c.execute("SELECT card FROM mx.customers WHERE id = 2").fetchall()
    no_raw((got, got2))
    assert got == [(CARD_TAIL,)] and got2 == [("************5559",)]


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_ddl_refreshes_catalog(pooler, schema, mode):
    """A table created through pgvigil whose column a glob covers is masked from the next
    transaction on, also for a session-pooled client that keeps its server."""
    p = make(pooler, pool_mode=mode)
    with p.connect() as c:
        assert c.execute("SELECT card FROM mx.customers WHERE id = 1").fetchone() == (CARD_TAIL,)
        c.execute(f"CREATE TABLE mx.fresh_{mode} (id int, card text)")
        c.execute(f"INSERT INTO mx.fresh_{mode} VALUES (1, 'secret-value')")
        got = c.execute(f"SELECT id, card FROM mx.fresh_{mode}").fetchall()
    assert got == [(1, "****")]


def test_exempt_group_sees_raw_values(pooler, schema):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    p = pooler(userlist=userlist, start=False, auth_type="hba", auth_hba_file="hba.conf",
               admin_users="adm", governance_file="governance.yaml", pool_mode="transaction",
               default_pool_size=2)
    p.runas.write(os.path.join(p.dir, "hba.conf"), HBA)
    p.runas.write(os.path.join(p.dir, "jwks.json"), jwks())
    p.runas.write(os.path.join(p.dir, "governance.yaml"),
                  oidc_policy() + MASKS % ("deny", "allow"))
    p.start()
    billing = token(sub="clerk", groups=("ai-agents", "billing"))
    agent = token(sub="agent-7", groups=("ai-agents",))
    with p.connect("plainuser", password=billing) as c:
        assert c.execute("SELECT card, email FROM mx.customers WHERE id = 1").fetchone() == \
            (CARD, "****@example.com")  # exempt from cards only
    with p.connect("plainuser", password=agent) as c:
        got = c.execute("SELECT card FROM mx.customers WHERE id = 1").fetchone()
    assert got == (CARD_TAIL,)
