"""An idle token login is closed by the janitor once its token expires.

client.c refuses the next request of a client whose token expired; a client
that sits idle may never send one, so the janitor (every 1/3 s) closes idle
clients (no server linked, so not in a transaction) with FATAL 28000
"token expired" on its own. Tokens, JWKS file and governance file come from
test_oidc.py.
"""
import time

import pytest

from pvtest import message, parse_error
from test_oidc import SHORT_ISSUER, make, token

pytest.importorskip("jwt")


@pytest.fixture
def op(pooler, pg_cluster):
    # transaction mode: between transactions the client holds no server
    return make(pooler, pg_cluster)


def short_token(exp_in):
    """A token of the provider with clock_skew 0s; returns (token, its exp)."""
    now = int(time.time())
    return token(iss=SHORT_ISSUER, groups=None, exp_in=exp_in), now + exp_in


def wait_for_close(conn, deadline):
    """Read (sending nothing) until the pooler closes; returns (error fields, close time)."""
    conn.sock.settimeout(max(0.1, deadline - time.time()))
    msgs = conn.read_until_closed()
    closed_at = time.time()
    errs = [parse_error(body) for tag, body in msgs if tag == b"E"]
    return (errs[0] if errs else {}), closed_at


def test_idle_client_closed_when_token_expires(op):
    tok, exp = short_token(2)
    with op.raw(timeout=10) as c:
        c.login("plainuser", password=tok)
        rows, err = c.query("SELECT 1")
        assert err is None and rows == [["1"]], (rows, err)
        # idle from here on: nothing is sent
        err, closed_at = wait_for_close(c, exp + 4)
    assert closed_at >= exp - 0.05, "closed before the token expired"
    assert closed_at <= exp + 2.0, f"closed {closed_at - exp:.2f}s after expiry"
    assert err.get("S") == "FATAL" and err.get("C") == "28000", err
    assert err.get("M") == "token expired", err
    assert "closing because: token expired" in op.log_text()


def test_open_transaction_not_cut_then_closed_after_commit(op):
    tok, exp = short_token(2)
    with op.raw(timeout=10) as c:
        c.login("plainuser", password=tok)
        _, err = c.query("BEGIN")
        assert err is None
        # linked to a server inside a transaction: the janitor leaves it alone
        time.sleep(max(0, exp - time.time()) + 1.2)
        rows, err = c.query("SELECT 2")
        assert err is None and rows == [["2"]], (rows, err)
        _, err = c.query("COMMIT")
        assert err is None, err
        # back to idle with an expired token: closed without another request
        t0 = time.time()
        err, closed_at = wait_for_close(c, t0 + 3)
    assert closed_at - t0 <= 2.0
    assert err.get("C") == "28000" and err.get("M") == "token expired", err


def test_valid_token_idle_client_stays(op):
    tok, exp = short_token(30)
    with op.raw(timeout=10) as c:
        c.login("plainuser", password=tok)
        time.sleep(1.5)  # several janitor ticks
        rows, err = c.query("SELECT 3")
        assert err is None and rows == [["3"]], (rows, err)
        c.send(message(b"X"))
