"""auth_type = oidc / HBA method oidc: agents log in with a JWT as their password.

The harness plays the identity provider: it generates an RSA and an EC key
(python3-cryptography), writes their public halves as a JWKS file that the
governance_file's provider reads (jwks_file), and signs tokens with PyJWT.
For the fetched key sets it also runs a small IdP (http.server on 127.0.0.1
in a thread) serving discovery + JWKS over plain HTTP, which pgvigil accepts
only with allow_insecure_loopback_jwks: true.
Grants map identities to the database roles of the test cluster; the pooler
logs in to the server with the role's password from auth_file.
"""
import base64
import http.server
import json
import os
import subprocess
import threading
import time

import psycopg
import pytest

from pvtest import TESTDB, PASSWORDS, REPL_PW, REPL_USER, wait_until

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

ISSUER = "https://idp.test/"
SHORT_ISSUER = "https://short.test/"
AUDIENCE = "pgvigil"
ADMIN_PW = "adm-secret"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwks():
    keys = []
    for kid, key, alg in (("rsa1", RSA_KEY, "RS256"), ("ec1", EC_KEY, "ES256")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": alg})
        keys.append(jwk)
    return json.dumps({"keys": keys})


def policy(loopback=True, extra=""):
    return f"""# test policy
identity:
  providers:
    - name: testidp
      issuer: {ISSUER}
      audience: [{AUDIENCE}, other]
      jwks_file: jwks.json
      algorithms: [RS256, ES256]
      clock_skew: 5s
      max_token_size: 4096
    - name: short
      issuer: {SHORT_ISSUER}
      audience: [{AUDIENCE}]
      jwks_file: jwks.json
      algorithms: [RS256]
      clock_skew: 0s
  grants:
    - when: {{groups: [ai-agents]}}
      db_users: [plainuser]
    - when: {{subject: "ci-*", provider: testidp}}
      db_users: [md5user, plainuser]
    - when: {{provider: short}}
      db_users: [plainuser]
  allow_plaintext_loopback: {"true" if loopback else "false"}
{extra}"""


def token(sub="agent-1", groups=("ai-agents",), iss=ISSUER, aud=AUDIENCE, exp_in=300, key=None,
          alg="RS256", kid="rsa1", extra=None, headers=None):
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + exp_in}
    if groups is not None:
        claims["groups"] = list(groups)
    claims.update(extra or {})
    if key is None:
        key = EC_KEY if alg.startswith("ES") else RSA_KEY
    hdr = dict(headers or {})
    if kid:
        hdr["kid"] = kid
    return jwt.encode(claims, key, algorithm=alg, headers=hdr)


def b64(d):
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


HBA = """
host   pgbouncer  adm   127.0.0.1/32  md5
host   all        all   127.0.0.1/32  oidc
host   replication all  127.0.0.1/32  oidc
local  all        all   oidc
"""


def make(pooler, pg, auth_type="hba", loopback=True, **ini):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    settings = {"auth_type": auth_type, "auth_hba_file": "hba.conf", "admin_users": "adm",
                "governance_file": "governance.yaml", "pool_mode": "transaction",
                "default_pool_size": 1}
    settings.update(ini)
    p = pooler(userlist=userlist, start=False, **settings)
    p.runas.write(os.path.join(p.dir, "hba.conf"), HBA)
    p.runas.write(os.path.join(p.dir, "jwks.json"), jwks())
    p.runas.write(os.path.join(p.dir, "governance.yaml"), policy(loopback))
    p.start()
    return p


@pytest.fixture
def op(pooler, pg_cluster):
    return make(pooler, pg_cluster)


def refusal(p, user, password, db=TESTDB):
    """Log in over TCP with a token; returns the FATAL message (asserting 28000)."""
    with p.raw() as c:
        with pytest.raises(AssertionError) as ei:
            c.login(user, db=db, password=password)
    err = ei.value.args[0]
    assert isinstance(err, dict), err
    assert err["S"] == "FATAL" and err["C"] == "28000", err
    return err["M"]


def admin(p, sql):
    with p.raw() as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        return a.query(sql)


def test_rs256_and_es256_pooled(op):
    t1 = token(sub="agent-1")
    t2 = token(sub="ci-42", groups=None, alg="ES256", kid="ec1")
    with op.connect("plainuser", password=t1) as a, op.connect("plainuser", password=t2) as b:
        pa = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        pb = b.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert a.execute("SELECT current_user").fetchone()[0] == "plainuser"
        assert pa == pb  # two identities, one server connection (transaction mode)
    log = op.log_text()
    assert "oidc login: subject=agent-1 provider=testidp groups=ai-agents role=plainuser" in log
    assert "oidc login: subject=ci-42 provider=testidp groups= role=plainuser" in log


def test_unix_socket(op):
    with psycopg.connect(host=op.unix_dir, port=op.port, dbname=TESTDB, user="plainuser",
                         password=token(), autocommit=True) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_refusals(op):
    now = int(time.time())
    good = token()
    head, payload, sig = good.split(".")
    other_payload = token(sub="someone-else").split(".")[1]
    pub_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    hs256 = (b64({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}) + "." + payload)
    import hashlib
    import hmac
    hs256 += "." + base64.urlsafe_b64encode(
        hmac.new(pub_pem, hs256.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    none_tok = b64({"alg": "none", "typ": "JWT"}) + "." + payload + "."
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    cases = [
        (token(exp_in=-60), "token expired"),
        (token(extra={"nbf": now + 600}), "token not yet valid"),
        (token(iss="https://evil.test/"), "issuer mismatch"),
        (token(aud="someone-else"), "audience mismatch"),
        (token(kid="nope"), "unknown signing key"),
        (none_tok, "algorithm not allowed"),
        (hs256, "algorithm not allowed"),
        (token(alg="RS384"), "algorithm not allowed"),
        (token(headers={"crit": ["exp"]}), "invalid token"),
        (f"{head}.{other_payload}.{sig}", "invalid token"),
        (f"{head}.{payload}.{flipped}", "invalid token"),
        (good[:len(good) // 2], "invalid token"),
        ("garbage", "invalid token"),
        (token(extra={"pad": "x" * 5000}), "token too large"),
        (token(groups=["staff"]), "role not granted"),
    ]
    for tok, reason in cases:
        assert refusal(op, "plainuser", tok) == reason, (tok[:60], reason)
    # an unknown role and a not-granted role look the same
    assert refusal(op, "no_such_role", good) == "role not granted"
    assert refusal(op, "md5user", good) == "role not granted"
    assert "oidc login refused: token expired" in op.log_text()


def test_tls_required_without_loopback(pooler, pg_cluster):
    p = make(pooler, pg_cluster, auth_type="oidc", loopback=False)
    assert refusal(p, "plainuser", token()) == "TLS required for token login"
    # the unix socket is fine; auth_type = oidc globally
    with psycopg.connect(host=p.unix_dir, port=p.port, dbname=TESTDB, user="plainuser",
                         password=token(), autocommit=True) as c:
        assert c.execute("SELECT 2").fetchone()[0] == 2


def test_show_sessions(op):
    with op.connect("plainuser", password=token(sub="agent-7")) as c:
        c.execute("SELECT 1")
        c.execute("SELECT 2")
        rows, err = admin(op, "SHOW SESSIONS")
    assert err is None, err
    mine = [r for r in rows if r[1] == "agent-7"]
    assert len(mine) == 1, rows
    r = mine[0]
    assert r[2:6] == ["testidp", "ai-agents", "plainuser", TESTDB], r
    assert r[7]  # token_expiry
    assert int(r[8]) >= 2 and r[9] == "0" and r[10] == "0", r


def test_reload_keeps_policy_on_bad_file(op):
    path = os.path.join(op.dir, "governance.yaml")
    bad = policy(extra="colours: []\n")
    op.runas.write(path, bad)
    rows, err = admin(op, "RELOAD")
    assert err and err["M"] == "RELOAD failed, see logs for additional details", err
    line = bad.splitlines().index("colours: []") + 1
    assert f"governance.yaml:{line}: unknown section \"colours\"" in op.log_text()
    with op.connect("plainuser", password=token()) as c:
        assert c.execute("SELECT 3").fetchone()[0] == 3
    # a valid new policy takes effect: the ci-* grant removed
    op.runas.write(path, policy().replace("db_users: [md5user, plainuser]", "db_users: [md5user]")
                   .replace('subject: "ci-*"', 'subject: "bot-*"'))
    rows, err = admin(op, "RELOAD")
    assert err is None, err
    assert refusal(op, "plainuser", token(sub="ci-1", groups=None)) == "role not granted"


def test_bad_policy_at_startup(pooler, pg_cluster):
    p = pooler(start=False, auth_type="oidc", governance_file="governance.yaml")
    p.runas.write(os.path.join(p.dir, "governance.yaml"), "identity:\n  providers:\n    - nme: x\n")
    with pytest.raises(RuntimeError, match=r"governance.yaml:3: unknown key \"nme\" in a provider"):
        p.start()


def test_token_expiry_mid_session(op):
    tok = token(iss=SHORT_ISSUER, exp_in=2, groups=None)
    with op.connect("plainuser", password=tok) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
        with c.transaction():
            c.execute("SELECT 1")
            time.sleep(2.5)
            # inside the transaction: not cut off
            assert c.execute("SELECT 2").fetchone()[0] == 2
        with pytest.raises(psycopg.OperationalError, match="token expired"):
            c.execute("SELECT 3")


# --- fetched key sets: a local test IdP ------------------------------------------------

def jwk_of(key, kid, alg):
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": alg})
    return jwk


class LocalIdP:
    """Discovery + JWKS on 127.0.0.1 over HTTP; the keys served can be swapped live."""

    def __init__(self):
        self.keys = [jwk_of(RSA_KEY, "rsa1", "RS256")]
        self.raw_jwks = None  # bytes served instead of the keys (oversized tests)
        self.hits = {"discovery": 0, "jwks": 0}
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    idp.hits["discovery"] += 1
                    body = json.dumps({"issuer": idp.issuer, "jwks_uri": idp.url + "keys"}).encode()
                elif self.path == "/keys":
                    idp.hits["jwks"] += 1
                    body = idp.raw_jwks or json.dumps({"keys": idp.keys}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                # no Content-Length for raw bodies: the size cap must hold while streaming
                if idp.raw_jwks is None:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # pgvigil hung up on an oversized body

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.issuer = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def idp():
    i = LocalIdP()
    yield i
    i.stop()


def remote_policy(idp, source="discovery: true", extra_provider="", extra_grants=""):
    return f"""identity:
  providers:
    - name: remote
      issuer: {idp.issuer}
      audience: [{AUDIENCE}]
      {source}
      allow_insecure_loopback_jwks: true
      algorithms: [RS256, ES256]
      {extra_provider}
  grants:
    - when: {{groups: [ai-agents]}}
      db_users: [plainuser]
{extra_grants}
  allow_plaintext_loopback: true
"""


def make_remote(pooler, idp, policy_text, userlist_extra=None, start=True, **ini):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    userlist.update(userlist_extra or {})
    settings = {"auth_type": "hba", "auth_hba_file": "hba.conf", "admin_users": "adm",
                "governance_file": "governance.yaml", "pool_mode": "transaction",
                "default_pool_size": 1}
    settings.update(ini)
    p = pooler(userlist=userlist, start=False, **settings)
    p.runas.write(os.path.join(p.dir, "hba.conf"), HBA)
    p.runas.write(os.path.join(p.dir, "governance.yaml"), policy_text)
    if start:
        p.start()
    return p


def remote_token(idp, kid="rsa1", key=None, sub="agent-1", groups=("ai-agents",)):
    return token(iss=idp.issuer, kid=kid, key=key, sub=sub, groups=groups)


def logs_in(p, tok, user="plainuser"):
    try:
        with p.connect(user, password=tok) as c:
            return c.execute("SELECT 1").fetchone()[0] == 1
    except psycopg.OperationalError:
        return False


def test_discovery_login(pooler, idp):
    p = make_remote(pooler, idp, remote_policy(idp))
    # startup waited for the first fetch: the very first login works
    assert logs_in(p, remote_token(idp))
    assert idp.hits["discovery"] >= 1 and idp.hits["jwks"] >= 1
    assert f"jwks {idp.issuer}: 1 keys fetched" in p.log_text()
    assert refusal(p, "plainuser", remote_token(idp, kid="nope")) == "unknown signing key"


def test_jwks_uri_and_rotation(pooler, idp):
    p = make_remote(pooler, idp, remote_policy(
        idp, source=f"jwks_uri: {idp.url}keys",
        extra_provider="unknown_kid_refresh_min_interval: 1s"))
    assert logs_in(p, remote_token(idp))
    assert idp.hits["discovery"] == 0
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.keys = [jwk_of(new_key, "rsa2", "RS256")]
    tok = remote_token(idp, kid="rsa2", key=new_key)
    # refused once (that login triggers the refresh), accepted afterwards without restart
    assert refusal(p, "plainuser", tok) == "unknown signing key"
    wait_until(lambda: logs_in(p, tok), 10, interval=0.2, what="the rotated key")
    # the old key is gone with the new set
    assert refusal(p, "plainuser", remote_token(idp)) == "unknown signing key"
    # unknown kids cannot drive fetches: a burst asks for at most one more
    # (one per unknown_kid_refresh_min_interval = 1 s: on a loaded machine the burst
    # itself may take longer than that, which allows one more per second it took)
    time.sleep(1.2)
    before = idp.hits["jwks"]
    t0 = time.monotonic()
    for i in range(8):
        refusal(p, "plainuser", remote_token(idp, kid=f"bogus{i}"))
    allowed = 1 + int(time.monotonic() - t0)
    time.sleep(0.5)
    assert idp.hits["jwks"] - before <= min(allowed, 4), (idp.hits, allowed)


def test_grace_period(pooler, idp):
    p = make_remote(pooler, idp, remote_policy(
        idp, extra_provider="refresh_interval: 1s\n      grace_period: 3s"))
    tok = remote_token(idp)
    assert logs_in(p, tok)
    idp.stop()
    stopped = time.monotonic()
    assert logs_in(p, tok)  # cached keys within grace_period
    wait_until(lambda: not logs_in(p, tok), 15, interval=0.25, what="keys to expire")
    assert time.monotonic() - stopped >= 1.5
    log = p.log_text()
    assert "fetch failed, keeping the last good keys" in log
    assert "older than grace_period" in log
    assert refusal(p, "plainuser", tok) == "unknown signing key"


def test_oversized_jwks_refused(pooler, idp):
    pad = "x" * (1024 * 1024 + 10)
    idp.raw_jwks = json.dumps({"keys": [jwk_of(RSA_KEY, "rsa1", "RS256")], "pad": pad}).encode()
    p = make_remote(pooler, idp, remote_policy(idp, source=f"jwks_uri: {idp.url}keys"))
    assert "response larger than 1048576 bytes" in p.log_text()
    assert refusal(p, "plainuser", remote_token(idp)) == "unknown signing key"


def test_insecure_jwks_uri_refused(pooler, idp):
    p = make_remote(pooler, idp, remote_policy(idp, source="jwks_uri: http://idp.example/keys"),
                    start=False)
    # even with allow_insecure_loopback_jwks, plain http is for loopback only
    with pytest.raises(RuntimeError, match=r'provider "remote": jwks_uri uses http:// to a host '
                                           r'that is not 127.0.0.1'):
        p.start()
    text = remote_policy(idp, source=f"jwks_uri: {idp.url}keys").replace(
        "allow_insecure_loopback_jwks: true", "allow_insecure_loopback_jwks: false")
    p = make_remote(pooler, idp, text, start=False)
    with pytest.raises(RuntimeError, match=r'jwks_uri must be https://'):
        p.start()


def test_claims_escaped_in_log(op):
    evil = "agent\nFAKE oidc login: subject=root\x1b[31m"
    assert logs_in(op, token(sub=evil))
    log = op.log_text()
    assert "subject=agent\\x0aFAKE oidc login: subject=root\\x1b[31m provider=testidp" in log
    assert not any(line.startswith("FAKE") for line in log.splitlines())


# --- replication needs an explicit grant ------------------------------------------------



def test_replication_needs_explicit_grant(pooler, repl_cluster, idp):
    grants = f"""    - when: {{subject: "repl-*"}}
      db_users: [{REPL_USER}]
      replication: true
    - when: {{subject: "sql-*"}}
      db_users: [{REPL_USER}]"""
    p = make_remote(pooler, idp, remote_policy(idp, extra_grants=grants),
                    userlist_extra={REPL_USER: REPL_PW})

    def psql(tok, extra):
        env = dict(os.environ, PGPASSWORD=tok, PGCONNECT_TIMEOUT="10")
        return subprocess.run(["psql", "-X", "-A", "-t", "-d",
                               f"host={p.host} port={p.port} user={REPL_USER} dbname={TESTDB} "
                               + extra, "-c", "IDENTIFY_SYSTEM" if extra else "SELECT 7"],
                              capture_output=True, text=True, timeout=60, env=env)

    ok = psql(remote_token(idp, sub="repl-1", groups=None), "replication=database")
    assert ok.returncode == 0 and len(ok.stdout.strip().split("|")) == 4, ok.stderr
    no = psql(remote_token(idp, sub="sql-1", groups=None), "replication=database")
    assert no.returncode != 0 and "role not granted" in no.stderr, no.stderr
    # the grant without replication still allows ordinary logins as that role
    sql = psql(remote_token(idp, sub="sql-1", groups=None), "")
    assert sql.returncode == 0 and sql.stdout.strip() == "7", sql.stderr
    assert "role not granted: subject=sql-1 provider=remote groups= (replication)" in p.log_text()


# --- JWKS over real HTTPS ---------------------------------------------------------------


class HttpsIdP(LocalIdP):
    """The same IdP over TLS with a certificate for 127.0.0.1 from the test CA."""

    def __init__(self, certs):
        import ssl
        super().__init__()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.server_crt, certs.server_key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/"
        self.issuer = self.url


@pytest.fixture
def https_idp(pv_session):
    from test_tls import Certs
    certs = Certs(pv_session.new_dir("idp-tls"), pv_session.runas)
    i = HttpsIdP(certs)
    i.certs = certs
    yield i
    i.stop()


def https_policy(idp, ca_file):
    return remote_policy(idp, extra_provider=f"ca_file: {ca_file}").replace(
        "      allow_insecure_loopback_jwks: true\n", "")


def test_https_discovery_with_ca_file(pooler, https_idp):
    p = make_remote(pooler, https_idp, https_policy(https_idp, https_idp.certs.ca_crt))
    assert logs_in(p, remote_token(https_idp))
    assert https_idp.hits["jwks"] >= 1


def test_https_idp_with_untrusted_certificate_gives_no_keys(pooler, https_idp):
    # the IdP's certificate is not from ca2: the fetch fails, so no key is ever trusted
    p = make_remote(pooler, https_idp, https_policy(https_idp, https_idp.certs.ca2_crt))
    assert refusal(p, "plainuser", remote_token(https_idp)) == "unknown signing key"
    assert https_idp.hits["jwks"] == 0
