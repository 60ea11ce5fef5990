"""Client authentication (pooler side) and server login (pooler -> PostgreSQL)."""
import struct

import psycopg
import pytest

import pvtest
from pvtest import PASSWORDS, md5_secret, message


def login_error(p, user, password=None, db=pvtest.TESTDB):
    with pytest.raises(psycopg.OperationalError) as ei:
        p.connect(user, db=db, password=password).close()
    return str(ei.value)


def whoami(c):
    return c.execute("SELECT current_user, current_database(), inet_client_addr()::text").fetchone()


def first_auth_request(p, user, db=pvtest.TESTDB):
    """Send a startup packet and return the code of the first Authentication message."""
    with p.raw() as r:
        r.startup({"user": user, "database": db})
        tag, body = r.recv_msg()
        if tag == b"E":
            return "error: " + pvtest.parse_error(body).get("M", "")
        assert tag == b"R", (tag, body)
        return struct.unpack("!I", body[:4])[0]


# --- trust / any ------------------------------------------------------------

def test_auth_trust_known_user_needs_no_password(pooler):
    p = pooler(auth_type="trust")
    assert first_auth_request(p, "md5user") == 0
    with p.connect("md5user", password="") as c:
        assert whoami(c) == ("md5user", "testdb", "127.0.0.1/32")


def test_auth_trust_unknown_user_rejected(pooler):
    p = pooler(auth_type="trust")
    msg = login_error(p, "nosuchuser", password="")
    assert '"trust" authentication failed' in msg
    p.assert_serves()


def test_auth_any_uses_forced_user(pooler, pg_cluster):
    p = pooler(auth_type="any",
               databases={"testdb": pg_cluster.db_line(user="plainuser", password=PASSWORDS["plainuser"])})
    for name in ("whoever", "md5user", "nosuchuser"):
        with p.connect(name, password="") as c:
            assert whoami(c)[:2] == ("plainuser", "testdb")


# --- password methods ------------------------------------------------------

@pytest.mark.parametrize("auth_type,code", [("plain", 3), ("md5", 5), ("scram-sha-256", 10)])
def test_auth_method_sends_expected_challenge(pooler, auth_type, code):
    p = pooler(auth_type=auth_type)
    assert first_auth_request(p, "md5user") == code


# (an md5 secret cannot verify a SCRAM exchange, so scram-sha-256 only with plaintext;
#  stored SCRAM secrets are covered below)
@pytest.mark.parametrize("auth_type,stored", [
    ("plain", "plaintext"), ("plain", "md5"), ("md5", "plaintext"), ("md5", "md5"),
    ("scram-sha-256", "plaintext"),
])
def test_auth_right_password_succeeds(pooler, auth_type, stored):
    users = {u: (pw if stored == "plaintext" else md5_secret(u, pw)) for u, pw in PASSWORDS.items()}
    p = pooler(auth_type=auth_type, userlist=users)
    with p.connect("md5user") as c:
        assert whoami(c) == ("md5user", "testdb", "127.0.0.1/32")


def test_auth_scram_with_stored_scram_secret(pooler, pg_cluster):
    users = dict(PASSWORDS, scramuser=pg_cluster.scram_secret("scramuser"))
    p = pooler(auth_type="scram-sha-256", userlist=users)
    with p.connect("scramuser") as c:
        assert whoami(c) == ("scramuser", "testdb", "127.0.0.1/32")


def test_auth_md5_with_stored_scram_secret_uses_scram(pooler, pg_cluster):
    # auth_type=md5 but the stored secret is SCRAM: the client is asked for SCRAM.
    users = dict(PASSWORDS, scramuser=pg_cluster.scram_secret("scramuser"))
    p = pooler(auth_type="md5", userlist=users)
    assert first_auth_request(p, "scramuser") == 10
    assert first_auth_request(p, "md5user") == 5
    with p.connect("scramuser") as c:
        assert whoami(c)[0] == "scramuser"


@pytest.mark.parametrize("auth_type,text", [
    ("plain", "password authentication failed"),
    ("md5", "password authentication failed"),
    ("scram-sha-256", "SASL authentication failed"),
])
def test_auth_wrong_password_fails(pooler, auth_type, text):
    p = pooler(auth_type=auth_type)
    msg = login_error(p, "md5user", password="wrong-password")
    assert text in msg
    p.assert_serves()


@pytest.mark.parametrize("auth_type,text", [
    ("plain", "password authentication failed"),
    ("md5", "password authentication failed"),
    ("scram-sha-256", "SASL authentication failed"),
])
def test_auth_unknown_user_fails_like_wrong_password(pooler, auth_type, text):
    p = pooler(auth_type=auth_type)
    msg = login_error(p, "nosuchuser", password="whatever")
    assert text in msg
    assert "no such user" not in msg
    p.assert_serves()


@pytest.mark.parametrize("auth_type,code", [("plain", 3), ("md5", 5), ("scram-sha-256", 10)])
def test_auth_unknown_user_gets_mock_challenge(pooler, auth_type, code):
    # Mock authentication: an unknown user is challenged exactly like a known one,
    # so user names cannot be probed.
    p = pooler(auth_type=auth_type)
    assert first_auth_request(p, "nosuchuser") == code


def test_auth_scram_mock_challenge_continues_until_proof(pooler):
    # For an unknown user the SCRAM exchange proceeds: SASLInitialResponse is answered
    # with a server-first-message (AuthenticationSASLContinue, 11), failure only at the end.
    p = pooler(auth_type="scram-sha-256")
    with p.raw() as r:
        r.startup({"user": "nosuchuser", "database": pvtest.TESTDB})
        tag, body = r.recv_msg()
        assert tag == b"R" and struct.unpack("!I", body[:4])[0] == 10
        assert b"SCRAM-SHA-256\0" in body[4:]
        assert b"SCRAM-SHA-256-PLUS" not in body  # no channel binding offered
        first = b"n,,n=,r=abcdefghijklmnopqrstuvwx"
        r.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
        tag, body = r.recv_msg()
        assert tag == b"R" and struct.unpack("!I", body[:4])[0] == 11, (tag, body)
        server_first = body[4:].decode()
        assert server_first.startswith("r=abcdefghijklmnopqrstuvwx") and ",s=" in server_first and ",i=" in server_first
        nonce = server_first.split(",")[0][2:]
        final = f"c=biws,r={nonce},p=" + "A" * 44
        r.send(message(b"p", final.encode()))
        err = r.expect_error_and_close()
        assert "SASL authentication failed" in err.get("M", ""), err
        assert err.get("C") == "08P01"


def test_auth_scram_mock_salt_is_stable_per_user(pooler):
    # the mock salt is derived from the user name: asking twice gives the same salt
    p = pooler(auth_type="scram-sha-256")

    def salt_of(user):
        with p.raw() as r:
            r.startup({"user": user, "database": pvtest.TESTDB})
            r.recv_msg()
            first = b"n,,n=,r=0123456789abcdefghijklmn"
            r.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            tag, body = r.recv_msg()
            assert tag == b"R", (tag, body)
            return dict(kv.split("=", 1) for kv in body[4:].decode().split(","))["s"]
    assert salt_of("ghost1") == salt_of("ghost1")
    assert salt_of("ghost1") != salt_of("ghost2")


def test_auth_plain_empty_password_rejected(pooler):
    p = pooler(auth_type="plain")
    with p.raw() as r:
        r.startup({"user": "md5user", "database": pvtest.TESTDB})
        tag, body = r.recv_msg()
        assert tag == b"R" and struct.unpack("!I", body[:4])[0] == 3
        r.send(message(b"p", b"\0"))
        err = r.expect_error_and_close()
        assert err.get("S") == "FATAL"
        # spec: "empty password returned by client"
        assert "empty password returned by client" in err.get("M", ""), err
    p.assert_serves()


def test_unknown_database_rejected(pooler):
    p = pooler(auth_type="md5")
    msg = login_error(p, "md5user", db="nosuchdb")
    assert "no such database: nosuchdb" in msg
    # raw protocol: the error is a FATAL ErrorResponse with SQLSTATE 08P01
    # (the pooler may ask for the password first)
    with p.raw() as r:
        with pytest.raises(AssertionError) as ei:
            r.login("md5user", db="nosuchdb", password=PASSWORDS["md5user"])
        err = ei.value.args[0]
        assert err["S"] == "FATAL" and err["C"] == "08P01", err
        assert err["M"] == "no such database: nosuchdb", err
    p.assert_serves()


# --- server login ------------------------------------------------------------

@pytest.mark.parametrize("user,stored", [
    ("md5user", "plaintext"),    # server asks MD5, pooler has the password
    ("md5user", "md5"),          # server asks MD5, pooler only has the md5 secret
    ("scramuser", "plaintext"),  # server asks SCRAM
    ("pwuser", "plaintext"),     # server asks cleartext (pg_hba "password")
    ("pwuser", "md5"),           # cleartext asked, only md5 secret known -> fails
])
def test_server_login_methods(pooler, user, stored):
    secret = PASSWORDS[user] if stored == "plaintext" else md5_secret(user, PASSWORDS[user])
    p = pooler(auth_type="md5", userlist={user: secret})
    if (user, stored) == ("pwuser", "md5"):
        # Only a plaintext password can answer a cleartext request. pgvigil should
        # refuse to send the md5 secret (spec 4.3 "Cleartext (plaintext only)"):
        # "server login failed: wrong password type"; PgBouncer 1.18 sends the md5
        # secret as the password and PostgreSQL rejects it. Either way: no login.
        msg = login_error(p, user)
        assert "wrong password type" in msg or "password authentication failed" in msg, msg
        return
    with p.connect(user) as c:
        assert whoami(c) == (user, "testdb", "127.0.0.1/32")
    # a second client in parallel forces a second server login
    with p.connect(user) as a, p.connect(user) as b:
        pa = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        pb = b.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pa != pb


def test_server_login_wrong_password_in_auth_file(pooler):
    # client authenticates against the auth file, but PostgreSQL rejects the password
    p = pooler(auth_type="md5", userlist=dict(PASSWORDS, scramuser="not-the-server-password"))
    msg = login_error(p, "scramuser", password="not-the-server-password")
    assert "password authentication failed" in msg
    assert 'user "scramuser"' in msg  # forwarded server error text
    p.assert_serves()


def test_server_login_md5_secret_against_scram_server_fails(pooler):
    # only an md5 secret is known, but PostgreSQL wants SCRAM for scramuser
    p = pooler(auth_type="md5", userlist={"scramuser": md5_secret("scramuser", PASSWORDS["scramuser"]),
                                          "md5user": PASSWORDS["md5user"]})
    msg = login_error(p, "scramuser")
    assert "server login failed: wrong password type" in msg
    p.assert_serves()


def test_server_login_scram_passthrough(pooler, pg_cluster):
    # The auth file holds the SCRAM secret copied from pg_authid; the client logs in
    # with SCRAM and the pooler reuses the client's keys to log in to PostgreSQL.
    users = {"scramuser": pg_cluster.scram_secret("scramuser"),
             "plainuser": pg_cluster.scram_secret("plainuser"), "md5user": PASSWORDS["md5user"]}
    p = pooler(auth_type="scram-sha-256", userlist=users, pool_mode="transaction")
    with p.connect("scramuser") as a, p.connect("scramuser") as b:
        a.execute("BEGIN")
        b.execute("BEGIN")  # second server connection, also via pass-through
        assert whoami(a) == ("scramuser", "testdb", "127.0.0.1/32")
        assert whoami(b) == ("scramuser", "testdb", "127.0.0.1/32")
        a.execute("COMMIT")
        b.execute("COMMIT")
    with p.connect("plainuser") as c:
        assert whoami(c)[0] == "plainuser"
    assert "SASL authentication failed" in login_error(p, "scramuser", password="wrong")
