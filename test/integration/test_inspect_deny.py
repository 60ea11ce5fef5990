"""
Statement inspection: rules with action deny, through pgvigil (doc/inspection.md).

Rules that do not depend on identity, plain md5 users. A deny is a 42501
raised by the server itself (pgvigil rewrites the statement), so transaction
and pipeline state stay in step: checked in simple, extended and pipelined
protocol, and the session stays usable afterwards.
"""
import os

import psycopg
import pytest

from pvtest import PASSWORDS

ADMIN_PW = "adm-secret"

RULES = """\
rules:
  - name: no-ddl
    when: {statements: [ddl]}
    action: deny
    message: schema changes go through migrations
  - name: unbounded-writes
    when: {statements: [delete, update], without_where: true}
    action: deny
  - name: files
    when: {functions: [pg_read_file, "dblink*"]}
    action: deny
  - name: keep-audit
    when: {tables: [audit.*]}
    action: deny
  - name: later
    when: {statements: [truncate]}
    action: approve
default: allow
unparsable: deny
"""


def make(pooler, policy=RULES, **ini):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    settings = {"admin_users": "adm", "governance_file": "governance.yaml",
                "pool_mode": "transaction", "default_pool_size": 2}
    settings.update(ini)
    p = pooler(userlist=userlist, start=False, **settings)
    p.runas.write(os.path.join(p.dir, "governance.yaml"), policy)
    p.start()
    return p


@pytest.fixture
def gp(pooler, pg_cluster):
    with pg_cluster.connect("testdb") as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS audit")
        c.execute("CREATE TABLE IF NOT EXISTS audit.log (id int)")
        c.execute("CREATE TABLE IF NOT EXISTS public.dt (id int)")
        c.execute("GRANT ALL ON SCHEMA audit TO PUBLIC")
        c.execute("GRANT ALL ON audit.log, public.dt TO PUBLIC")
        c.execute("TRUNCATE audit.log, public.dt")
        c.execute("INSERT INTO public.dt VALUES (1), (2)")
    return make(pooler)


def denied(excinfo, rule):
    e = excinfo.value
    assert e.sqlstate == "42501", e
    assert f'denied by pgvigil rule "{rule}"' in str(e), e


def count(conn):
    return conn.execute("SELECT count(*) FROM public.dt").fetchone()[0]


def test_simple_outside_transaction(gp):
    with gp.connect() as c:
        with pytest.raises(psycopg.Error) as ei:
            c.execute("DELETE FROM public.dt")
        denied(ei, "unbounded-writes")
        assert "migrations" not in str(ei.value)
        with pytest.raises(psycopg.Error) as ei:
            c.execute("DROP TABLE public.dt")
        denied(ei, "no-ddl")
        assert "schema changes go through migrations" in str(ei.value)
        # allowed statements run; the session is fine
        c.execute("DELETE FROM public.dt WHERE id = 2")
        assert count(c) == 1


def test_simple_inside_transaction(gp):
    with gp.connect() as c:
        c.execute("BEGIN")
        c.execute("SELECT 1")
        with pytest.raises(psycopg.Error) as ei:
            c.execute("UPDATE public.dt SET id = 3")
        denied(ei, "unbounded-writes")
        with pytest.raises(psycopg.Error) as ei:
            c.execute("SELECT 1")
        assert ei.value.sqlstate == "25P02"  # current transaction is aborted
        c.execute("ROLLBACK")
        assert count(c) == 2


def test_hidden_statements(gp):
    with gp.connect() as c:
        for sql, rule in [
            ("SELECT 1; DROP TABLE public.dt; SELECT 2", "no-ddl"),
            ("WITH d AS (DELETE FROM public.dt RETURNING *) SELECT * FROM d",
             "unbounded-writes"),
            ("EXPLAIN ANALYZE DELETE FROM public.dt", "unbounded-writes"),
            ("SELECT pg_catalog.pg_read_file('/etc/passwd')", "files"),
            ("SELECT * FROM audit.log", "keep-audit"),
        ]:
            with pytest.raises(psycopg.Error) as ei:
                c.execute(sql)
            denied(ei, rule)
        assert count(c) == 2


def test_unparsable(gp):
    with gp.connect() as c:
        with pytest.raises(psycopg.Error) as ei:
            c.execute("SELEC garbage")
        denied(ei, "unparsable")


def test_prepare_execute(gp):
    with gp.connect(autocommit=False) as c:
        # the PREPARE of a destructive statement is judged as that statement
        with pytest.raises(psycopg.Error) as ei:
            c.execute("PREPARE p AS DELETE FROM public.dt")
        denied(ei, "unbounded-writes")
        c.rollback()
        c.execute("PREPARE q AS SELECT count(*) FROM public.dt")
        assert c.execute("EXECUTE q").fetchone()[0] == 2
        # an EXECUTE of a name pgvigil never saw prepared cannot be judged
        with pytest.raises(psycopg.Error) as ei:
            c.execute("EXECUTE nosuch")
        denied(ei, "unparsable")
        c.rollback()


def test_extended_protocol(gp):
    with gp.connect() as c:
        with pytest.raises(psycopg.Error) as ei:
            c.execute("UPDATE public.dt SET id = %s", (5,))
        denied(ei, "unbounded-writes")
        assert c.execute("SELECT %s::int", (7,)).fetchone()[0] == 7
        # named (prepared) statements: a denied one stays denied, others work
        with pytest.raises(psycopg.Error) as ei:
            c.execute("SELECT * FROM audit.log WHERE id = %s", (1,), prepare=True)
        denied(ei, "keep-audit")
        with pytest.raises(psycopg.Error) as ei:
            c.execute("SELECT * FROM audit.log WHERE id = %s", (1,), prepare=True)
        denied(ei, "keep-audit")
        assert c.execute("SELECT %s::int + 1", (1,), prepare=True).fetchone()[0] == 2


def test_extended_inside_transaction(gp):
    with gp.connect(autocommit=False) as c:
        c.execute("SELECT %s::int", (1,))
        with pytest.raises(psycopg.Error) as ei:
            c.execute("DROP TABLE public.dt -- %s", (1,))
        denied(ei, "no-ddl")
        with pytest.raises(psycopg.Error) as ei:
            c.execute("SELECT %s::int", (1,))
        assert ei.value.sqlstate == "25P02"
        c.rollback()
        assert count(c) == 2


def test_pipeline(gp):
    with gp.connect() as c:
        with pytest.raises(psycopg.Error) as ei:
            with c.pipeline():
                c.execute("SELECT %s::int", (1,))
                c.execute("DELETE FROM public.dt")
                c.execute("INSERT INTO public.dt VALUES (%s)", (9,))
        denied(ei, "unbounded-writes")
        # the INSERT after the denial was skipped by the server
        assert count(c) == 2
        with c.pipeline():
            cur = c.execute("SELECT %s::int", (3,))
        assert cur.fetchone()[0] == 3


def test_show_policy_hits(gp):
    with gp.connect() as c:
        for _ in range(2):
            with pytest.raises(psycopg.Error):
                c.execute("DROP TABLE public.dt")
    with gp.raw() as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        rows = a.query("SHOW POLICY")[0]
    by = {r[0]: r for r in rows}
    assert by["no-ddl"][1] == "deny"
    assert int(by["no-ddl"][2]) >= 2
    assert by["no-ddl"][3] == "schema changes go through migrations"
    assert by["later"][1] == "approve"
    assert set(by) >= {"default", "unparsable"}


def test_no_rules_unchanged(pooler, pg_cluster):
    p = make(pooler, policy="identity:\n  grants: []\n")
    with p.connect() as c:
        c.execute("CREATE TEMP TABLE x (id int); DROP TABLE x")
        assert c.execute("SELECT %s::int", (4,)).fetchone()[0] == 4
    with p.raw() as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        assert a.query("SHOW POLICY")[0] == []
