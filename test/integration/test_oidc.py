"""auth_type = oidc / HBA method oidc: agents log in with a JWT as their password.

The harness plays the identity provider: it generates an RSA and an EC key
(python3-cryptography), writes their public halves as a JWKS file that the
governance_file's provider reads (jwks_file), and signs tokens with PyJWT.
Grants map identities to the database roles of the test cluster; the pooler
logs in to the server with the role's password from auth_file.
"""
import base64
import json
import os
import time

import psycopg
import pytest

import pvtest
from pvtest import TESTDB, PASSWORDS

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
    bad = policy(extra="rules: []\n")
    op.runas.write(path, bad)
    rows, err = admin(op, "RELOAD")
    assert err and err["M"] == "RELOAD failed, see logs for additional details", err
    line = bad.splitlines().index("rules: []") + 1
    assert f"governance.yaml:{line}: unknown section \"rules\"" in op.log_text()
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
