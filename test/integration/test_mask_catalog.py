"""
Masking: column provenance (doc/governance.md#masking). The mask rules'
column globs are resolved per database to (table OID, attnum) with a catalog
query that pgvigil runs on a pooled server connection before a client's
first transaction; SHOW MASKS lists the result. Covers exact names, globs,
partitioned tables (parent and partitions), views (plain and computed
columns), re-resolution after RELOAD and after mask_refresh, and the
fail-closed path when the catalog query fails.
"""
import os
import threading

import psycopg
import pytest

from pvtest import PASSWORDS, TESTDB, wait_until
from test_admin import admin, ok, err

ADMIN_PW = "adm-secret"

POLICY = """\
masks:
  - name: cards
    columns: [mcat.customers.card_number, "*.*.credit_card"]
    method: partial
    keep_last: 4
    except: {groups: [billing]}
  - name: contact
    columns: ["mcat.cust?mers.e*"]
    method: email
  - name: secrets
    detect: [us_ssn, jwt]
    method: redact
mask_refresh: %s
"""

SETUP = [
    "DROP SCHEMA IF EXISTS mcat CASCADE",
    "CREATE SCHEMA mcat",
    "GRANT USAGE ON SCHEMA mcat TO PUBLIC",
    "CREATE TABLE mcat.customers (id int, name text, email text, card_number text)",
    "CREATE TABLE mcat.payments (id int, credit_card text, amount int)",
    "CREATE TABLE mcat.orders (id int, region text, credit_card text) PARTITION BY LIST (region)",
    "CREATE TABLE mcat.orders_eu PARTITION OF mcat.orders FOR VALUES IN ('eu')",
    "CREATE TABLE mcat.orders_us (credit_card text, id int, region text)",
    "ALTER TABLE mcat.orders ATTACH PARTITION mcat.orders_us FOR VALUES IN ('us')",
    "CREATE VIEW mcat.v_plain AS SELECT c.id, c.card_number AS cc, c.name FROM mcat.customers c",
    "CREATE VIEW mcat.v_computed AS SELECT id, 'x' || right(card_number, 4) AS tail, "
    "upper(name) AS uname FROM mcat.customers",
    "CREATE VIEW mcat.v_nested AS SELECT cc AS card, name FROM mcat.v_plain",
    "CREATE VIEW mcat.v_sub AS SELECT s.x, s.n FROM (SELECT card_number AS x, name AS n "
    "FROM mcat.customers) s",
    "CREATE VIEW mcat.v_union AS SELECT id, card_number AS c FROM mcat.customers "
    "UNION ALL SELECT id, name FROM mcat.customers",
    "CREATE VIEW mcat.v_dated AS SELECT current_date AS d, card_number, name FROM mcat.customers",
    "GRANT SELECT ON ALL TABLES IN SCHEMA mcat TO PUBLIC",
    "INSERT INTO mcat.customers VALUES (1, 'ann', 'ann@example.com', '4111111111111111')",
]


def make(pooler, refresh="60s", **ini):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    settings = {"admin_users": "adm", "governance_file": "governance.yaml",
                "pool_mode": "transaction", "default_pool_size": 2}
    settings.update(ini)
    p = pooler(userlist=userlist, start=False, **settings)
    p.runas.write(os.path.join(p.dir, "governance.yaml"), POLICY % refresh)
    p.start()
    return p


@pytest.fixture
def schema(pg_cluster):
    with pg_cluster.connect(TESTDB) as c:
        for sql in SETUP:
            c.execute(sql)
    yield pg_cluster
    with pg_cluster.connect(TESTDB) as c:
        c.execute("DROP SCHEMA IF EXISTS mcat CASCADE")


def attnums(pg, rel):
    """{column: (table_oid, attnum)} straight from the catalog."""
    with pg.connect(TESTDB) as c:
        rows = c.execute(
            "SELECT a.attname, a.attrelid::oid::int8, a.attnum FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            [rel]).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def show_masks(p):
    with admin(p, password=ADMIN_PW) as a:
        rows = ok(a, "SHOW MASKS").dicts()
    return rows


def resolved(p, schema="mcat"):
    """{(table, column): row} of SHOW MASKS for testdb and the given schema."""
    return {(r["table"], r["column"]): r for r in show_masks(p)
            if r["database"] == TESTDB and r["schema"] == schema}


def touch(p):
    try:
        with p.connect() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        print(p.log_text()[-3000:])
        raise


def expect(got, pg, rel, col, mask, via=""):
    oid, attnum = attnums(pg, "mcat." + rel)[col]
    row = got.get((rel, col))
    assert row is not None, (rel, col, sorted(got))
    assert (int(row["table_oid"]), int(row["attnum"]), row["mask"], row["via_view"]) == \
        (oid, attnum, mask, via), row


def test_show_masks_resolution(pooler, schema):
    p = make(pooler)
    # nothing resolved before the first client transaction; detect rules are listed
    rows = show_masks(p)
    assert [r["mask"] for r in rows] == ["secrets"]
    assert rows[0]["table"] is None and rows[0]["table_oid"] is None
    touch(p)
    got = resolved(p)
    pg = schema
    expect(got, pg, "customers", "card_number", "cards")
    expect(got, pg, "customers", "email", "contact")
    expect(got, pg, "payments", "credit_card", "cards")
    # partitioned: the parent and each partition (attnum differs in orders_us)
    expect(got, pg, "orders", "credit_card", "cards")
    expect(got, pg, "orders_eu", "credit_card", "cards")
    expect(got, pg, "orders_us", "credit_card", "cards")
    assert attnums(pg, "mcat.orders_us")["credit_card"][1] == 1
    # views: a plain reference, a computed column, a view over a view, and an
    # unanalysable one (subquery in FROM: every column masked)
    expect(got, pg, "v_plain", "cc", "cards", "mcat.customers.card_number")
    expect(got, pg, "v_computed", "tail", "cards", "mcat.customers.card_number")
    expect(got, pg, "v_nested", "card", "cards", "mcat.customers.card_number")
    expect(got, pg, "v_sub", "x", "cards", "mcat.customers.card_number")
    assert ("v_sub", "n") in got
    assert ("v_union", "id") in got and ("v_union", "c") in got  # set operation: all masked
    expect(got, pg, "v_dated", "card_number", "cards", "mcat.customers.card_number")
    assert ("v_dated", "d") not in got and ("v_dated", "name") not in got
    for clear in [("customers", "id"), ("customers", "name"), ("v_plain", "name"),
                  ("v_plain", "id"), ("v_computed", "uname"), ("v_nested", "name"),
                  ("orders", "region"), ("payments", "amount")]:
        assert clear not in got, clear
    methods = {r["mask"]: r["method"] for r in show_masks(p)}
    assert methods == {"cards": "partial", "contact": "email", "secrets": "redact"}
    assert all(r["resolved_at"] for r in got.values())


def test_rename_then_reload(pooler, schema):
    p = make(pooler)
    touch(p)
    assert ("customers", "card_number") in resolved(p)
    with schema.connect(TESTDB) as c:
        c.execute("ALTER TABLE mcat.customers RENAME COLUMN card_number TO pan")
        c.execute("ALTER TABLE mcat.payments RENAME COLUMN credit_card TO cc")
    # new policy names the renamed column
    p.runas.write(os.path.join(p.dir, "governance.yaml"),
                  (POLICY % "60s").replace("mcat.customers.card_number", "mcat.customers.pan"))
    with admin(p, password=ADMIN_PW) as a:
        ok(a, "RELOAD", "RELOAD")
    touch(p)
    got = resolved(p)
    expect(got, schema, "customers", "pan", "cards")
    assert ("customers", "card_number") not in got
    assert ("payments", "credit_card") not in got and ("payments", "cc") not in got
    # the view follows the renamed column by attnum
    expect(got, schema, "v_plain", "cc", "cards", "mcat.customers.pan")


def test_new_table_after_refresh(pooler, schema):
    p = make(pooler, refresh="1s")
    touch(p)
    assert ("late", "credit_card") not in resolved(p)
    with schema.connect(TESTDB) as c:
        c.execute("CREATE TABLE mcat.late (id int, credit_card text)")
        c.execute("GRANT SELECT ON mcat.late TO PUBLIC")

    def appeared():
        touch(p)
        return ("late", "credit_card") in resolved(p)
    wait_until(appeared, 10, interval=0.3, what="mcat.late resolved after mask_refresh")
    expect(resolved(p), schema, "late", "credit_card", "cards")


def test_invalid_glob_is_a_load_error(pooler, schema):
    p = make(pooler)
    p.runas.write(os.path.join(p.dir, "governance.yaml"),
                  "masks:\n  - name: x\n    columns: [mcat.customers]\n    method: redact\n")
    with admin(p, password=ADMIN_PW) as a:
        e = err(a, "RELOAD")
        assert e["C"] == "F0000"
    assert "must be schema.table.column" in p.log_text()
    touch(p)  # the running policy stays
    assert ("customers", "card_number") in resolved(p)


@pytest.fixture
def faildb(pg_cluster):
    """A database where the catalog query cannot run: pg_rewrite is not readable."""
    with pg_cluster.connect() as c:
        c.execute("DROP DATABASE IF EXISTS mcatfail")
        c.execute("CREATE DATABASE mcatfail")
    with pg_cluster.connect("mcatfail") as c:
        c.execute("CREATE TABLE t (id int, credit_card text)")
        c.execute("INSERT INTO t VALUES (1, '4111111111111111')")
        c.execute("GRANT SELECT ON t TO PUBLIC")
        c.execute("REVOKE SELECT ON pg_catalog.pg_rewrite FROM PUBLIC")
    yield "mcatfail"
    with pg_cluster.connect() as c:
        c.execute("DROP DATABASE IF EXISTS mcatfail WITH (FORCE)")


def test_catalog_query_failure_fails_closed(pooler, schema, faildb):
    pg = schema
    p = make(pooler, databases={TESTDB: pg.db_line(), faildb: pg.db_line(faildb)})
    for _ in range(2):  # every attempt fails the same way; no rows ever
        with pytest.raises(psycopg.Error) as ei:
            with p.connect(db=faildb) as c:
                c.execute("SELECT credit_card FROM t").fetchall()
        assert "column catalog" in str(ei.value), ei.value
    assert "masking: column catalog query failed: permission denied" in p.log_text()
    assert not [r for r in show_masks(p) if r["database"] == faildb]
    # another database is unaffected
    touch(p)
    assert ("customers", "card_number") in resolved(p)


def test_concurrent_clients_one_query(pooler, schema):
    """Several clients arriving at once: all get through, the catalog resolved once."""
    p = make(pooler, default_pool_size=4, log_connections=1)
    conns = [psycopg.connect(p.dsn(), autocommit=True) for _ in range(4)]
    try:
        res = []

        def q(c):
            res.append(c.execute("SELECT count(*) FROM mcat.customers").fetchone()[0])
        ts = [threading.Thread(target=q, args=(c,)) for c in conns]
        for t in ts:
            t.start()
        for t in ts:
            t.join(15)
        assert res == [1, 1, 1, 1]
    finally:
        for c in conns:
            c.close()
    rows = [r for r in show_masks(p) if r["database"] == TESTDB and r["table"] == "customers"]
    assert len({r["resolved_at"] for r in rows}) == 1
