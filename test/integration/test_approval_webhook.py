"""
approval.webhook (doc/governance.md "Approval"): a JSON POST when a statement
is held and when it is decided, sent by a worker thread (never the event loop).

A local http.server on 127.0.0.1 records the POSTs; pgvigil may use plain
http to it only because the policy says allow_insecure_loopback: true. The
body is signed with HMAC-SHA256 of secret_file's content.
"""
import concurrent.futures
import hashlib
import hmac
import http.server
import json
import os
import threading

import psycopg
import pytest

from pvtest import PASSWORDS, free_port, wait_until
from test_oidc import ADMIN_PW, jwks, policy, token

SECRET = "s3cret-webhook-key"

HBA = """
host   pgbouncer  adm   127.0.0.1/32  md5
host   pgbouncer  all   127.0.0.1/32  oidc
host   all        all   127.0.0.1/32  oidc
"""


def rules(url, timeout="60s", secret=True):
    sec = "secret_file: hook.secret, " if secret else ""
    return f"""
rules:
  - name: hold-truncate
    when: {{statements: [truncate]}}
    action: approve
default: allow
approval:
  timeout: {timeout}
  approvers: {{groups: [dba-oncall]}}
  webhook: {{url: "{url}", timeout: 2s, {sec}allow_insecure_loopback: true}}
"""


class Hook:
    """Records POSTs: (path, headers, raw body)."""

    def __init__(self):
        self.posts = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.posts.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def events(self):
        return [json.loads(b) for _, _, b in self.posts]

    def wait(self, n):
        wait_until(lambda: len(self.posts) >= n, 10, interval=0.05, what=f"{n} webhook posts")
        return self.events()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def make(pooler, pg_cluster, url, **kw):
    with pg_cluster.connect("testdb") as c:
        c.execute("CREATE TABLE IF NOT EXISTS public.apw (id int)")
        c.execute("GRANT ALL ON public.apw TO PUBLIC")
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    p = pooler(userlist=userlist, start=False, auth_type="hba", auth_hba_file="hba.conf",
               admin_users="adm", governance_file="governance.yaml", pool_mode="transaction",
               default_pool_size=2)
    p.runas.write(os.path.join(p.dir, "hba.conf"), HBA)
    p.runas.write(os.path.join(p.dir, "jwks.json"), jwks())
    p.runas.write(os.path.join(p.dir, "hook.secret"), SECRET + "\n", mode=0o600)
    p.runas.write(os.path.join(p.dir, "governance.yaml"), policy(True, rules(url, **kw)))
    p.start()
    return p


@pytest.fixture
def ex():
    e = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    yield e
    e.shutdown(wait=False, cancel_futures=True)


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


AGENT = dict(sub="agent-1", groups=("ai-agents",))
ONCALL = dict(sub="oncall-1", groups=("dba-oncall",))


def check_signature(headers, body):
    sig = headers.get("X-Pgvigil-Signature")
    assert sig is not None, headers
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sig, want), (sig, want)


def test_held_and_approved_events(pooler, pg_cluster, hook, ex):
    p = make(pooler, pg_cluster, hook.url)
    agent_tok, oncall_tok = token(**AGENT), token(**ONCALL)
    with p.connect("plainuser", password=agent_tok, application_name="agent-app") as c:
        fut = ex.submit(c.execute, "TRUNCATE public.apw")
        (row,) = held(p)
        (req,) = hook.wait(1)
        assert req["event"] == "approval_requested"
        assert req["id"] == int(row[0])
        assert req["decision"] == "pending"
        assert req["approver"] is None
        assert req["subject"] == "agent-1" and req["provider"] == "testidp"
        assert req["groups"] == ["ai-agents"]
        assert req["database"] == "testdb" and req["db_user"] == "plainuser"
        assert req["application_name"] == "agent-app"
        assert req["statement"] == "TRUNCATE public.apw"
        assert req["rule"] == "hold-truncate"
        assert len(req["fingerprint"]) == 16
        assert req["expires_at"].endswith("Z") and "T" in req["expires_at"]
        with p.raw() as a:
            a.login("approver", db="pgbouncer", password=oncall_tok)
            rows, err = a.query(f"APPROVE {row[0]}")
            assert err is None, err
        fut.result(timeout=10)
    req, dec = hook.wait(2)
    assert dec["event"] == "approval_decided"
    assert dec["id"] == req["id"]
    assert dec["decision"] == "approved"
    assert dec["approver"] == "oncall-1" and dec["approver_provider"] == "testidp"
    assert dec["subject"] == "agent-1" and dec["statement"] == "TRUNCATE public.apw"
    assert dec["decided_at"].endswith("Z")
    assert dec["fingerprint"] == req["fingerprint"]
    for path, headers, body in hook.posts:
        assert path == "/hook"
        assert headers["Content-Type"] == "application/json"
        check_signature(headers, body)
        # never a token (nor any part of one), never a password
        text = body.decode()
        for secret in (agent_tok, oncall_tok, ADMIN_PW, SECRET, PASSWORDS["plainuser"]):
            assert secret not in text
        assert agent_tok.split(".")[1] not in text and oncall_tok.split(".")[2] not in text


def test_denied_and_canceled_events(pooler, pg_cluster, hook, ex):
    p = make(pooler, pg_cluster, hook.url)
    with p.connect("plainuser", password=token(**AGENT)) as c:
        fut = ex.submit(c.execute, "TRUNCATE public.apw")
        (row,) = held(p)
        rows, err = admin(p, f"DENY {row[0]} use a migration")
        assert err is None, err
        with pytest.raises(psycopg.Error):
            fut.result(timeout=10)
    evs = hook.wait(2)
    assert [e["event"] for e in evs] == ["approval_requested", "approval_decided"]
    assert evs[1]["decision"] == "denied"
    assert evs[1]["approver"] == "adm" and evs[1]["approver_provider"] is None
    assert evs[1]["reason"] == "use a migration"
    # the client's CancelRequest withdraws it: canceled
    with p.connect("plainuser", password=token(**AGENT)) as c:
        fut = ex.submit(c.execute, "TRUNCATE public.apw")
        held(p)
        c.cancel()
        with pytest.raises(psycopg.errors.QueryCanceled):
            fut.result(timeout=10)
    evs = hook.wait(4)
    assert evs[3]["event"] == "approval_decided" and evs[3]["decision"] == "canceled"
    assert evs[3]["id"] == evs[2]["id"] and evs[3]["approver"] is None


def test_timed_out_event_unsigned(pooler, pg_cluster, hook):
    p = make(pooler, pg_cluster, hook.url, timeout="1s", secret=False)
    with p.connect("plainuser", password=token(**AGENT)) as c:
        with pytest.raises(psycopg.Error) as ei:
            c.execute("TRUNCATE public.apw")
        assert "approval timed out" in str(ei.value)
    evs = hook.wait(2)
    assert evs[1]["decision"] == "timed_out" and evs[1]["approver"] is None
    assert all("X-Pgvigil-Signature" not in h for _, h, _ in hook.posts)


def test_webhook_down_nothing_blocks(pooler, pg_cluster, ex):
    p = make(pooler, pg_cluster, f"http://127.0.0.1:{free_port()}/hook")
    with p.connect("plainuser", password=token(**AGENT)) as c:
        fut = ex.submit(c.execute, "TRUNCATE public.apw")
        (row,) = held(p)
        # the console and other clients are served while deliveries fail
        with p.connect("plainuser", password=token(sub="agent-2")) as c2:
            assert c2.execute("SELECT 1").fetchone() == (1,)
        rows, err = admin(p, f"APPROVE {row[0]}")
        assert err is None, err
        fut.result(timeout=10)
    wait_until(lambda: "webhook:" in p.log_text() and "not delivered" in p.log_text(), 10,
               what="delivery failure logged")


def test_reload_applies_new_url(pooler, pg_cluster, hook, ex):
    p = make(pooler, pg_cluster, hook.url)
    other = Hook()
    try:
        p.runas.write(os.path.join(p.dir, "governance.yaml"), policy(True, rules(other.url)))
        rows, err = admin(p, "RELOAD")
        assert err is None, err
        with p.connect("plainuser", password=token(**AGENT)) as c:
            fut = ex.submit(c.execute, "TRUNCATE public.apw")
            (row,) = held(p)
            admin(p, f"APPROVE {row[0]}")
            fut.result(timeout=10)
        evs = other.wait(2)
        assert [e["decision"] for e in evs] == ["pending", "approved"]
        assert hook.posts == []
    finally:
        other.close()


def test_plain_http_to_remote_host_refused(pooler, pg_cluster):
    userlist = dict(PASSWORDS)
    p = pooler(userlist=userlist, start=False, governance_file="governance.yaml")
    p.runas.write(os.path.join(p.dir, "governance.yaml"),
                  "approval:\n  webhook: http://hooks.example.com/x\n")
    with pytest.raises(Exception):
        p.start(timeout=5)
    assert "webhook url must be https://" in p.log_text()
