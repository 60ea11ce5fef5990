"""
Approver groups (doc/governance.md "Approval"): identities in
approval.approvers.groups log in to the admin console with an OIDC token and
may run SHOW APPROVALS, APPROVE and DENY, nothing else; other identities are
refused at login; nobody approves their own statement (admin_users may).

The agent logs in with a token too (grant ai-agents -> plainuser); the
harness signs the tokens (test_oidc.py helpers).
"""
import concurrent.futures
import os

import psycopg
import pytest

from pvtest import PASSWORDS, wait_until
from test_oidc import ADMIN_PW, jwks, policy, token

RULES = """
rules:
  - name: hold-truncate
    when: {statements: [truncate]}
    action: approve
default: allow
approval:
  timeout: 60s
  approvers: {groups: [dba-oncall]}
"""

HBA = """
host   pgbouncer  adm   127.0.0.1/32  md5
host   pgbouncer  all   127.0.0.1/32  oidc
host   all        all   127.0.0.1/32  oidc
"""

A_ID, A_RULE, A_SUBJECT = 0, 1, 2


def make(pooler, extra=RULES):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    p = pooler(userlist=userlist, start=False, auth_type="hba", auth_hba_file="hba.conf",
               admin_users="adm,boss", governance_file="governance.yaml", pool_mode="transaction",
               default_pool_size=2)
    p.runas.write(os.path.join(p.dir, "hba.conf"), HBA)
    p.runas.write(os.path.join(p.dir, "jwks.json"), jwks())
    p.runas.write(os.path.join(p.dir, "governance.yaml"), policy(True, extra))
    p.start()
    return p


@pytest.fixture
def gp(pooler, pg_cluster):
    with pg_cluster.connect("testdb") as c:
        c.execute("CREATE TABLE IF NOT EXISTS public.apg (id int)")
        c.execute("GRANT ALL ON public.apg TO PUBLIC")
        c.execute("TRUNCATE public.apg")
        c.execute("INSERT INTO public.apg VALUES (1), (2)")
    return make(pooler)


@pytest.fixture
def ex():
    e = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    yield e
    e.shutdown(wait=False, cancel_futures=True)


ONCALL = dict(sub="oncall-1", groups=("dba-oncall",))


def console(p, tok, user="approver"):
    """A token login to the admin console (raises AssertionError with the FATAL fields)."""
    c = p.raw()
    c.login(user, db="pgbouncer", password=tok)
    return c


def admin(p, sql):
    with p.raw() as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        return a.query(sql)


def held(p, n=1):
    def rows():
        r, err = admin(p, "SHOW APPROVALS")
        assert err is None, err
        return r
    wait_until(lambda: len(rows()) >= n, 10, interval=0.05, what=f"{n} held")
    return rows()


def agent(p, **claims):
    claims.setdefault("sub", "agent-1")
    claims.setdefault("groups", ("ai-agents",))
    return p.connect("plainuser", password=token(**claims))


def count(p):
    with agent(p) as c:
        return c.execute("SELECT count(*) FROM public.apg").fetchone()[0]


def test_group_identity_approves(gp, ex):
    with agent(gp) as c:
        fut = ex.submit(c.execute, "TRUNCATE public.apg")
        (row,) = held(gp)
        assert row[A_SUBJECT] == "agent-1"
        with console(gp, token(**ONCALL)) as a:
            rows, err = a.query("SHOW APPROVALS")
            assert err is None, err
            assert [r[A_ID] for r in rows] == [row[A_ID]]
            rows, err = a.query(f"APPROVE {row[A_ID]}")
            assert err is None, err
        fut.result(timeout=10)  # the client gets its result
    assert count(gp) == 0
    log = gp.log_text()
    assert "admin login as approver: subject=oncall-1 provider=testidp" in log
    assert f"approval: id={row[A_ID]} approved by oncall-1 provider=testidp" in log


def test_group_identity_denies(gp, ex):
    with agent(gp) as c:
        fut = ex.submit(c.execute, "TRUNCATE public.apg")
        (row,) = held(gp)
        with console(gp, token(**ONCALL)) as a:
            rows, err = a.query(f"DENY {row[A_ID]} not during business hours")
            assert err is None, err
        with pytest.raises(psycopg.Error) as ei:
            fut.result(timeout=10)
        assert "not during business hours" in str(ei.value)
    assert count(gp) == 2
    assert (f"approval: id={row[A_ID]} denied by oncall-1 provider=testidp: "
            "not during business hours") in gp.log_text()


def test_non_approver_identity_refused_at_login(gp):
    with gp.raw() as c:
        with pytest.raises(AssertionError) as ei:
            c.login("approver", db="pgbouncer", password=token(sub="agent-1"))
    err = ei.value.args[0]
    assert err["S"] == "FATAL" and err["M"] == "not allowed", err
    # naming an admin user (boss logs in with tokens per HBA) does not help
    with gp.raw() as c:
        with pytest.raises(AssertionError) as ei:
            c.login("boss", db="pgbouncer", password=token(sub="agent-1"))
    assert ei.value.args[0]["M"] == "not allowed"
    # a bad token is refused by validation, before any group check
    with gp.raw() as c:
        with pytest.raises(AssertionError) as ei:
            c.login("approver", db="pgbouncer", password=token(**ONCALL, exp_in=-600))
    assert ei.value.args[0]["C"] == "28000"
    assert "is not in approver groups" in gp.log_text()


# "boss" is in admin_users, but a token login is never an admin_users login
@pytest.mark.parametrize("user", ["approver", "boss"])
def test_group_identity_only_decides(gp, user):
    with console(gp, token(**ONCALL), user=user) as a:
        for sql in ("SHOW POOLS", "SHOW CLIENTS", "SHOW HELP", "RELOAD", "PAUSE",
                    "SET default_pool_size = 5", "SHOW SESSIONS", "KILL_CLIENT 1"):
            rows, err = a.query(sql)
            assert err is not None and err["M"] == "admin access needed", (sql, err)
            assert rows == []
        rows, err = a.query("SHOW APPROVALS")
        assert err is None and rows == []
        rows, err = a.query("APPROVE 999999")
        assert err["M"] == "approval 999999 not found or already decided"
    assert "RELOAD command issued" not in gp.log_text()


def test_self_approval_refused(gp, ex):
    both = dict(sub="dual-1", groups=("ai-agents", "dba-oncall"))
    with agent(gp, **both) as c:
        fut = ex.submit(c.execute, "TRUNCATE public.apg")
        (row,) = held(gp)
        assert row[A_SUBJECT] == "dual-1"
        with console(gp, token(**both)) as a:
            rows, err = a.query(f"APPROVE {row[A_ID]}")
            assert err is not None, "self-approval must be refused"
            assert err["M"] == (f"approval {row[A_ID]} is your own statement: "
                                "another approver must decide")
            rows, err = a.query(f"APPROVE {row[A_ID]} FOR 1h")
            assert err is not None and "your own statement" in err["M"]
        assert not fut.done()
        assert len(held(gp)) == 1
        # another approver may; here an admin user, who is not restricted
        rows, err = admin(gp, f"APPROVE {row[A_ID]}")
        assert err is None, err
        fut.result(timeout=10)
    assert f"approval: id={row[A_ID]} approved by adm" in gp.log_text()


def test_reload_dropping_the_group_ends_rights(gp):
    with console(gp, token(**ONCALL)) as a:
        rows, err = a.query("SHOW APPROVALS")
        assert err is None
        gp.runas.write(os.path.join(gp.dir, "governance.yaml"),
                       policy(True, RULES.replace("dba-oncall", "someone-else")))
        rows, err = admin(gp, "RELOAD")
        assert err is None, err
        rows, err = a.query("SHOW APPROVALS")
        assert err is not None and err["M"] == "admin access needed"
