"""
Rules with action approve, through pgvigil (doc/inspection.md "Approval").

A held statement waits on its client socket; an admin decides on the console
(SHOW APPROVALS, APPROVE <id> [FOR <duration>], DENY <id> [reason]). Plain md5
users and rules that do not depend on identity; APPROVE ... FOR is keyed by the
login name for token-less logins.
"""
import concurrent.futures
import re
import time

import psycopg
import pytest

from pvtest import wait_until
from test_inspect_deny import ADMIN_PW, make

RULES = """\
rules:
  - name: hold-truncate
    when: {statements: [truncate]}
    action: approve
  - name: hold-delete
    when: {statements: [delete], tables: [public.appr]}
    action: approve
default: allow
unparsable: deny
"""

# SHOW APPROVALS / SHOW POOLS columns used below
A_ID, A_RULE, A_SUBJECT, A_DB, A_DBUSER, A_STMT, A_AGE, A_TIMEOUT = range(8)
P_DB, P_CL_ACTIVE, P_CL_WAITING, P_SV_ACTIVE, P_SV_IDLE, P_SV_USED = 0, 2, 3, 6, 9, 10


@pytest.fixture
def ap(pooler, pg_cluster):
    with pg_cluster.connect("testdb") as c:
        c.execute("CREATE TABLE IF NOT EXISTS public.appr (id int)")
        c.execute("GRANT ALL ON public.appr TO PUBLIC")
        c.execute("TRUNCATE public.appr")
        c.execute("INSERT INTO public.appr VALUES (1), (2)")
    return make(pooler, RULES, max_client_conn=300)


@pytest.fixture
def pool():
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=110)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


def admin(p, sql):
    with p.raw() as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        return a.query(sql)


def approvals(p):
    rows, err = admin(p, "SHOW APPROVALS")
    assert err is None, err
    return rows


def wait_held(p, n=1, timeout=10):
    wait_until(lambda: len(approvals(p)) >= n, timeout, interval=0.05, what=f"{n} held")
    return approvals(p)


def decide(p, sql):
    rows, err = admin(p, sql)
    assert err is None, err


def count(conn):
    return conn.execute("SELECT count(*) FROM public.appr").fetchone()[0]


def connect(p):
    c = p.connect()
    c.notices = []
    c.add_notice_handler(lambda d: c.notices.append(d.message_primary))
    return c


def test_approve_runs_statement(ap, pool):
    with connect(ap) as c:
        fut = pool.submit(c.execute, "TRUNCATE public.appr")
        (row,) = wait_held(ap)
        assert row[A_RULE] == "hold-truncate"
        assert row[A_SUBJECT] is None  # md5 login: no identity
        assert row[A_DB] == "testdb" and row[A_DBUSER] == "md5user"
        assert row[A_STMT] == "TRUNCATE public.appr"
        assert 0 < int(row[A_TIMEOUT]) <= 300
        assert not fut.done()
        decide(ap, f"APPROVE {row[A_ID]}")
        fut.result(timeout=10)
        assert c.notices == [
            f'statement held for approval: id={row[A_ID]} rule="hold-truncate"']
        assert count(c) == 0
        assert approvals(ap) == []
    assert f"approval: id={row[A_ID]} approved by adm" in ap.log_text()


def test_approve_for_covers_same_statement(ap, pool):
    with connect(ap) as c:
        fut = pool.submit(c.execute, "DELETE FROM public.appr WHERE id = 1")
        (row,) = wait_held(ap)
        decide(ap, f"APPROVE {row[A_ID]} FOR 1h")
        fut.result(timeout=10)
        # the same fingerprint (constants differ) runs at once, on this and another session
        c.execute("DELETE FROM public.appr WHERE id = 2")
        with connect(ap) as c2:
            c2.execute("DELETE FROM public.appr WHERE id = 3")
            assert c2.notices == []
        assert count(c) == 0
        # a different statement still asks
        fut = pool.submit(c.execute, "TRUNCATE public.appr")
        (row,) = wait_held(ap)
        assert row[A_RULE] == "hold-truncate"
        decide(ap, f"DENY {row[A_ID]}")
        with pytest.raises(psycopg.Error):
            fut.result(timeout=10)


def test_deny_gives_42501_and_session_usable(ap, pool):
    with connect(ap) as c:
        fut = pool.submit(c.execute, "DELETE FROM public.appr WHERE id = %s", (1,))
        (row,) = wait_held(ap)
        decide(ap, f"DENY {row[A_ID]} 'not during business hours'")
        with pytest.raises(psycopg.Error) as ei:
            fut.result(timeout=10)
        assert ei.value.sqlstate == "42501"
        assert "denied by approver: not during business hours" in str(ei.value)
        assert count(c) == 2
        assert c.execute("SELECT %s::int", (5,)).fetchone()[0] == 5
    assert f"approval: id={row[A_ID]} denied by adm: not during business hours" in ap.log_text()


def test_timeout(pooler, pg_cluster, pool):
    p = make(pooler, RULES + "approval:\n  timeout: 1s\n")
    with connect(p) as c:
        start = time.monotonic()
        with pytest.raises(psycopg.Error) as ei:
            c.execute("TRUNCATE public.appr")
        assert ei.value.sqlstate == "42501"
        assert "approval timed out" in str(ei.value)
        assert 0.9 <= time.monotonic() - start < 5
        assert c.execute("SELECT 1").fetchone()[0] == 1
    assert "approval: id=1 timed out by timeout" in p.log_text()


def test_cancel_withdraws(ap, pool):
    with connect(ap) as c:
        fut = pool.submit(c.execute, "TRUNCATE public.appr")
        (row,) = wait_held(ap)
        c.cancel()
        with pytest.raises(psycopg.errors.QueryCanceled) as ei:
            fut.result(timeout=10)
        assert ei.value.sqlstate == "57014"
        assert approvals(ap) == []
        assert count(c) == 2
    assert f"approval: id={row[A_ID]} canceled by client cancel request" in ap.log_text()


def test_disconnect_removes_approval(ap, pool):
    c = connect(ap)
    pool.submit(c.execute, "TRUNCATE public.appr")
    (row,) = wait_held(ap)
    # a held client's socket is not read: its disconnect is seen at the decision
    c.pgconn.finish()
    decide(ap, f"APPROVE {row[A_ID]}")
    wait_until(lambda: f"approval: id={row[A_ID]} approved" in ap.log_text(), 5)
    with connect(ap) as c2:
        assert count(c2) in (0, 2)
        assert approvals(ap) == []
    rows, err = admin(ap, f"APPROVE {row[A_ID]}")
    assert err and "not found or already decided" in err["M"]


def pools_row(p):
    rows, err = admin(p, "SHOW POOLS")
    assert err is None
    return next(r for r in rows if r[P_DB] == "testdb")


def test_held_clients_hold_no_server(ap, pool):
    n = 100
    conns = [connect(ap) for _ in range(n)]
    try:
        futs = [pool.submit(c.execute, "TRUNCATE public.appr") for c in conns]
        rows = wait_held(ap, n, timeout=30)
        assert len(rows) == n
        r = pools_row(ap)
        assert int(r[P_SV_ACTIVE]) == 0, r
        assert int(r[P_CL_WAITING]) == 0, r
        assert int(r[P_CL_ACTIVE]) == n, r
        servers, err = admin(ap, "SHOW SERVERS")
        assert err is None and all(s[1] != "md5user" or s[3] != "active" for s in servers)
        # other clients are served meanwhile
        with ap.connect() as c:
            assert count(c) == 2
        for row in rows:
            decide(ap, f"DENY {row[A_ID]} bulk")
        for f in futs:
            with pytest.raises(psycopg.Error) as ei:
                f.result(timeout=20)
            assert ei.value.sqlstate == "42501"
    finally:
        for c in conns:
            c.close()


def test_inside_transaction(ap, pool):
    with connect(ap) as c:
        c.execute("BEGIN")
        c.execute("INSERT INTO public.appr VALUES (3)")
        fut = pool.submit(c.execute, "DELETE FROM public.appr WHERE id = 1")
        (row,) = wait_held(ap)
        # the transaction keeps its server while it waits
        assert int(pools_row(ap)[P_SV_ACTIVE]) == 1
        decide(ap, f"APPROVE {row[A_ID]}")
        fut.result(timeout=10)
        c.execute("COMMIT")
        assert sorted(r[0] for r in c.execute("SELECT id FROM public.appr")) == [2, 3]


def test_deny_inside_transaction_fails_it(ap, pool):
    with connect(ap) as c:
        c.execute("BEGIN")
        c.execute("INSERT INTO public.appr VALUES (3)")
        fut = pool.submit(c.execute, "TRUNCATE public.appr")
        (row,) = wait_held(ap)
        decide(ap, f"DENY {row[A_ID]}")
        with pytest.raises(psycopg.Error) as ei:
            fut.result(timeout=10)
        assert ei.value.sqlstate == "42501"
        assert ei.value.diag.message_primary == "denied by approver"
        with pytest.raises(psycopg.Error) as ei:
            c.execute("SELECT 1")
        assert ei.value.sqlstate == "25P02"
        c.execute("ROLLBACK")
        assert count(c) == 2


def test_admin_grammar_and_rights(ap):
    rows, err = admin(ap, "APPROVE 999")
    assert err["M"] == "approval 999 not found or already decided"
    rows, err = admin(ap, "APPROVE x")
    assert err["M"] == "invalid approval id"
    rows, err = admin(ap, "APPROVE 1 FOR ever")
    assert err["M"] == "approval 1 not found or already decided"


def test_show_sessions_held(ap, pool):
    with connect(ap) as c:
        fut = pool.submit(c.execute, "TRUNCATE public.appr")
        (row,) = wait_held(ap)
        sessions, err = admin(ap, "SHOW SESSIONS")
        assert [s[10] for s in sessions if s[4] == "md5user"] == ["1"]
        decide(ap, f"APPROVE {row[A_ID]} FOR 10m")
        fut.result(timeout=10)
        assert re.search(rf"approval: id={row[A_ID]} approved by adm: same statement allowed "
                         r"for 600s", ap.log_text())
