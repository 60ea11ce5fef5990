"""The verified-token cache: a token that verified once logs in again without
the signature check, but never past what the uncached path would accept.

A hit is visible with verbose = 1 as the debug line "oidc: token cache hit";
a cached token that no longer holds is dropped with "cached token dropped
(<why>)" and then verified (and refused) in full. Tokens, keys, the JWKS
file, the governance file and the local IdP come from test_oidc.py.
"""
import os
import time

import pytest

from test_oidc import (AUDIENCE, SHORT_ISSUER, LocalIdP, admin, jwk_of, logs_in, make, make_remote,
                       policy, refusal, remote_policy, remote_token, token)
from pvtest import wait_until

pytest.importorskip("jwt")
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

HIT = "oidc: token cache hit: provider="


@pytest.fixture
def op(pooler, pg_cluster):
    return make(pooler, pg_cluster, verbose=1)


@pytest.fixture
def idp():
    i = LocalIdP()
    yield i
    i.stop()


def hits(p):
    return p.log_text().count(HIT)


def token_cache(p):
    """SHOW TOKEN_CACHE as a dict of ints."""
    rows, err = admin(p, "SHOW TOKEN_CACHE")
    assert err is None and len(rows) == 1
    names = ("entries", "max_entries", "hits", "misses", "stale", "evictions", "flushes")
    return dict(zip(names, (int(v) for v in rows[0])))


def test_second_login_is_a_cache_hit(op):
    tok = token(sub="agent-c1")
    assert token_cache(op)["entries"] == 0
    assert logs_in(op, tok)
    assert hits(op) == 0
    tc = token_cache(op)
    assert (tc["entries"], tc["hits"], tc["max_entries"]) == (1, 0, 4096)
    assert logs_in(op, tok)
    assert hits(op) == 1
    assert logs_in(op, tok)
    assert hits(op) == 2
    # each login still logs its identity (and was granted) as an uncached one does
    assert op.log_text().count("oidc login: subject=agent-c1 provider=testidp "
                               "groups=ai-agents role=plainuser") == 3
    # only the token verification is cached: the grant is checked on a hit too
    assert refusal(op, "md5user", tok) == "role not granted"
    assert hits(op) == 3
    # another token (one byte differs in the signature) is no hit
    head, payload, sig = tok.split(".")
    forged = f"{head}.{payload}.{sig[:-3]}{'A' if sig[-3] != 'A' else 'B'}{sig[-2:]}"
    assert refusal(op, "plainuser", forged) == "invalid token"
    assert hits(op) == 3
    tc = token_cache(op)
    assert (tc["entries"], tc["hits"]) == (1, 3)
    assert tc["misses"] >= 2  # the first login and the forged token


def test_token_expiring_between_logins_refused(op):
    # the short provider has clock_skew 0s
    tok = token(iss=SHORT_ISSUER, groups=None, exp_in=3)
    exp = int(time.time()) + 3  # not earlier than the token's exp
    assert logs_in(op, tok)
    assert logs_in(op, tok)
    assert hits(op) == 1
    time.sleep(max(0, exp - time.time()) + 0.2)
    assert refusal(op, "plainuser", tok) == "token expired"
    log = op.log_text()
    assert "cached token dropped (expired)" in log
    assert log.count(HIT) == 1


def test_reload_with_changed_audience_refuses_cached_token(op):
    tok = token(sub="agent-c2")
    assert logs_in(op, tok)
    assert logs_in(op, tok)
    assert hits(op) == 1
    op.runas.write(os.path.join(op.dir, "governance.yaml"),
                   policy().replace(f"audience: [{AUDIENCE}, other]", "audience: [other]"))
    assert token_cache(op)["entries"] == 1
    rows, err = admin(op, "RELOAD")
    assert err is None, err
    tc = token_cache(op)
    assert tc["entries"] == 0 and tc["flushes"] >= 1
    assert refusal(op, "plainuser", tok) == "audience mismatch"
    assert hits(op) == 1
    # a token for the new audience is verified and cached again
    tok2 = token(sub="agent-c2", aud="other")
    assert logs_in(op, tok2) and logs_in(op, tok2)
    assert hits(op) == 2


def test_reload_flushes_with_a_shared_key_source(pooler, idp):
    # a fetched key set survives RELOAD (the source is shared): the flush must not rely on it
    p = make_remote(pooler, idp, remote_policy(idp), verbose=1)
    tok = remote_token(idp)
    assert logs_in(p, tok) and logs_in(p, tok)
    assert hits(p) == 1
    p.runas.write(os.path.join(p.dir, "governance.yaml"),
                  remote_policy(idp).replace(f"audience: [{AUDIENCE}]", "audience: [other]"))
    rows, err = admin(p, "RELOAD")
    assert err is None, err
    assert refusal(p, "plainuser", tok) == "audience mismatch"
    assert hits(p) == 1


def test_rotation_removing_the_key_refuses_cached_token(pooler, idp):
    p = make_remote(pooler, idp, remote_policy(
        idp, source=f"jwks_uri: {idp.url}keys",
        extra_provider="unknown_kid_refresh_min_interval: 1s"), verbose=1)
    old = remote_token(idp)
    assert logs_in(p, old) and logs_in(p, old)
    assert hits(p) == 1
    # the IdP rotates: rsa1 is gone, rsa2 signs
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.keys = [jwk_of(new_key, "rsa2", "RS256")]
    new = remote_token(idp, kid="rsa2", key=new_key)
    assert refusal(p, "plainuser", new) == "unknown signing key"  # asks for the new set
    wait_until(lambda: logs_in(p, new), 10, interval=0.2, what="the rotated key")
    # the cached verification of the old token went with the old set
    assert refusal(p, "plainuser", old) == "unknown signing key"
    assert "cached token dropped (key set replaced)" in p.log_text()
    assert hits(p) == 1
