"""TLS on both sides (spec 4.4) and auth_type=cert (spec 4.1).

Certificates are made once per module with the openssl CLI: a CA, a server
certificate for localhost / 127.0.0.1 (used by pgvigil and by the test
PostgreSQL), client certificates CN=md5user and CN=scramuser, a client
certificate CN=md5user from another CA, and a server certificate for a wrong
host name. While this module runs, the test cluster has ssl=on (reset after).
"""
import os
import signal
import ssl
import struct
import subprocess

import psycopg
import pytest

import pvtest
from pvtest import PASSWORDS, TESTDB, message, startup_packet, wait_until
from test_admin import ADMIN_PW, admin_pooler, read_result


# --- certificates -------------------------------------------------------------------


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def make_cert(d, name, cn, ca, san=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        if san:
            f.write(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.crt", cwd=d)


class Certs:
    def __init__(self, d, runas):
        self.dir = d
        make_ca(d, "ca")
        make_ca(d, "ca2")
        make_cert(d, "server", "localhost", "ca", "DNS:localhost,IP:127.0.0.1")
        make_cert(d, "wronghost", "wrong.example", "ca", "DNS:wrong.example")
        make_cert(d, "client", "md5user", "ca")
        make_cert(d, "client_scram", "scramuser", "ca")
        make_cert(d, "client_ca2", "md5user", "ca2")
        # pgvigil and postgres run as runas and read the keys; libpq wants 0600 keys
        for name in os.listdir(d):
            path = os.path.join(d, name)
            os.chmod(path, 0o600 if name.endswith(".key") else 0o644)
            runas.chown(path)

    def __getattr__(self, name):
        # certs.server_crt -> <dir>/server.crt
        stem, _, ext = name.rpartition("_")
        if ext not in ("crt", "key"):
            raise AttributeError(name)
        return os.path.join(self.dir, f"{stem}.{ext}")


@pytest.fixture(scope="module")
def certs(pv_session):
    return Certs(pv_session.new_dir("tls"), pv_session.runas)


def pg_set_ssl(pg, on=True, cert=None, key=None):
    with pg.connect() as c:
        if cert:
            c.execute(f"ALTER SYSTEM SET ssl_cert_file = '{cert}'")
            c.execute(f"ALTER SYSTEM SET ssl_key_file = '{key}'")
        c.execute(f"ALTER SYSTEM SET ssl = {'on' if on else 'off'}")
        c.execute("SELECT pg_reload_conf()")

    def applied():
        with pg.connect() as c:
            return c.execute("SHOW ssl").fetchone()[0] == ("on" if on else "off")
    wait_until(applied, 10, interval=0.05, what="postgres ssl setting")


@pytest.fixture(scope="module")
def pg_tls(pg_cluster, certs):
    """The test cluster with ssl=on and the localhost certificate, for this module only."""
    pg_set_ssl(pg_cluster, True, certs.server_crt, certs.server_key)
    try:
        yield pg_cluster
    finally:
        with pg_cluster.connect() as c:
            for k in ("ssl", "ssl_cert_file", "ssl_key_file"):
                c.execute(f"ALTER SYSTEM RESET {k}")
            c.execute("SELECT pg_reload_conf()")


def client_tls(certs, mode="require", **extra):
    ini = {"client_tls_sslmode": mode, "client_tls_key_file": certs.server_key,
           "client_tls_cert_file": certs.server_crt, "client_tls_ca_file": certs.ca_crt}
    ini.update(extra)
    return ini


# --- client helpers -------------------------------------------------------------------


def ssl_ctx(certs, cert=None, alpn=True, **kw):
    ctx = ssl.create_default_context(cafile=certs.ca_crt)
    if cert:
        ctx.load_cert_chain(getattr(certs, cert + "_crt"), getattr(certs, cert + "_key"))
    if alpn:
        ctx.set_alpn_protocols(["postgresql"])
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_raw(p, ctx, direct=False):
    """A RawConn that talks TLS: SSLRequest + 'S' first, or direct TLS."""
    r = p.raw(timeout=10)
    if not direct:
        r.send(struct.pack("!II", 8, pvtest.SSL_REQUEST))
        assert r.recv_bytes(1) == b"S"
    r.sock = ctx.wrap_socket(r.sock, server_hostname="localhost")
    return r


def ssl_answer(p, code=pvtest.SSL_REQUEST):
    with p.raw() as r:
        r.send(struct.pack("!II", 8, code))
        return r.recv_bytes(1)


def pg_ssl_in_use(conn):
    return conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


def connect_error(p, **kw):
    with pytest.raises(psycopg.OperationalError) as ei:
        p.connect(**kw).close()
    return str(ei.value)


def show(conn, what):
    conn.send(message(b"Q", f"SHOW {what}".encode() + b"\0"))
    res = read_result(conn)
    assert res.error is None, res.error
    return res.dicts()


# --- client side ------------------------------------------------------------------------


def test_client_disable_answers_n(pooler):
    p = pooler()
    assert ssl_answer(p) == b"N"
    assert ssl_answer(p, pvtest.GSSENC_REQUEST) == b"N"
    with p.connect(sslmode="prefer") as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("SELECT 1").fetchone()[0] == 1


@pytest.mark.parametrize("mode", ["allow", "prefer"])
def test_client_allow_prefer_take_both(pooler, certs, mode):
    p = pooler(**client_tls(certs, mode))
    assert ssl_answer(p, pvtest.GSSENC_REQUEST) == b"N"
    with p.connect(sslmode="require") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT 2").fetchone()[0] == 2
    with p.connect(sslmode="disable") as c:
        assert not c.pgconn.ssl_in_use
        assert c.execute("SELECT 3").fetchone()[0] == 3
    assert "tls=TLSv1.3/" in p.log_text() and "tls=no" in p.log_text()


def test_client_require_refuses_plain_tcp_not_unix(pooler, certs):
    p = pooler(**client_tls(certs, "require"))
    assert "SSL required" in connect_error(p, sslmode="disable")
    with psycopg.connect(host=p.unix_dir, port=p.port, dbname=TESTDB, user="md5user",
                         password=PASSWORDS["md5user"], sslmode="disable") as c:
        assert c.execute("SELECT 4").fetchone()[0] == 4
    with p.connect(sslmode="require") as c:
        assert c.execute("SELECT 5").fetchone()[0] == 5


def test_psql_verify_full_against_pgvigil(pooler, certs):
    p = pooler(**client_tls(certs, "require"))
    env = dict(os.environ, PGPASSWORD=PASSWORDS["md5user"])
    dsn = (f"sslmode=verify-full sslrootcert={certs.ca_crt} host=localhost port={p.port} "
           f"dbname={TESTDB} user=md5user")
    r = subprocess.run(["psql", dsn, "-XAtc", "SELECT 40 + 2"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_client_verify_requires_valid_cert(pooler, certs, mode):
    p = pooler(**client_tls(certs, mode))
    connect_error(p, sslmode="require")  # no client certificate
    connect_error(p, sslmode="require", sslcert=certs.client_ca2_crt,
                  sslkey=certs.client_ca2_key)  # wrong CA
    with p.connect(sslmode="verify-ca", sslrootcert=certs.ca_crt, sslcert=certs.client_crt,
                   sslkey=certs.client_key) as c:
        assert c.execute("SELECT 6").fetchone()[0] == 6


def test_data_after_ssl_request_is_refused(pooler, certs):
    p = pooler(**client_tls(certs, "prefer"))
    with p.raw() as r:
        r.send(struct.pack("!II", 8, pvtest.SSL_REQUEST) +
               startup_packet({"user": "md5user", "database": TESTDB}))
        err = r.expect_error_and_close()
    assert "unencrypted data after SSL request" in err.get("M", ""), err


def test_direct_tls_with_alpn(pooler, certs):
    p = pooler(**client_tls(certs, "require"))
    with tls_raw(p, ssl_ctx(certs), direct=True) as r:
        assert r.sock.selected_alpn_protocol() == "postgresql"
        r.login("md5user", password=PASSWORDS["md5user"])
        assert r.query("SELECT 7")[0] == [["7"]]
    # direct TLS without ALPN is refused, like PostgreSQL 17
    with pytest.raises((ssl.SSLError, OSError, pvtest.ConnectionClosed)):
        with tls_raw(p, ssl_ctx(certs, alpn=False), direct=True) as r:
            r.login("md5user", password=PASSWORDS["md5user"])


def test_direct_tls_needs_client_tls(pooler, certs):
    p = pooler()
    with pytest.raises((ssl.SSLError, OSError)):
        tls_raw(p, ssl_ctx(certs), direct=True).close()


def test_tls13_cipher_selection_and_show_clients(pooler, certs):
    p = admin_pooler(pooler, **client_tls(certs, "require",
                                          client_tls13_ciphers="TLS_CHACHA20_POLY1305_SHA256"))
    with tls_raw(p, ssl_ctx(certs)) as r:
        assert r.sock.version() == "TLSv1.3"
        assert r.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
        r.login("md5user", password=PASSWORDS["md5user"])
        with tls_raw(p, ssl_ctx(certs)) as a:
            a.login("adm", db="pgbouncer", password=ADMIN_PW)
            tls = {row["user"]: row["tls"] for row in show(a, "CLIENTS")}
    assert tls["md5user"].startswith("TLSv1.3/TLS_CHACHA20_POLY1305_SHA256"), tls
    assert "/ECDH=" in tls["md5user"]


def test_tls13_only_refuses_tls12_client(pooler, certs):
    p = pooler(**client_tls(certs, "require", client_tls_protocols="tlsv1.3"))
    with pytest.raises((ssl.SSLError, OSError)):
        tls_raw(p, ssl_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)).close()
    with tls_raw(p, ssl_ctx(certs)) as r:
        assert r.sock.version() == "TLSv1.3"


def test_tls12_with_cipher_keyword(pooler, certs):
    p = pooler(**client_tls(certs, "require", client_tls_ciphers="secure",
                            client_tls_ecdhcurve="prime256v1"))
    with tls_raw(p, ssl_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)) as r:
        assert r.sock.version() == "TLSv1.2"
        assert "ECDHE" in r.sock.cipher()[0] and "GCM" in r.sock.cipher()[0]
        r.login("md5user", password=PASSWORDS["md5user"])


def test_client_tls_setup_errors_are_fatal(pooler, certs):
    bad = [
        {"client_tls_sslmode": "require"},  # no key / cert
        client_tls(certs, "verify-full", client_tls_ca_file=""),
        client_tls(certs, "require", client_tls_key_file="/nonexistent.key"),
        client_tls(certs, "require", client_tls_protocols="tlsv9"),
        dict(client_tls(certs, "require"), auth_type="cert"),
    ]
    for ini in bad:
        p = pooler(start=False, **ini)
        with pytest.raises(RuntimeError) as ei:
            p.start()
        assert "TLS setup failed" in str(ei.value), ini


# --- cert auth --------------------------------------------------------------------------


def test_cert_auth(pooler, certs):
    p = pooler(auth_type="cert", **client_tls(certs, "verify-full"))
    kw = dict(sslmode="verify-full", sslrootcert=certs.ca_crt, host="localhost")
    with psycopg.connect(p.dsn("md5user", **kw) + f" sslcert={certs.client_crt} "
                         f"sslkey={certs.client_key}") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == "md5user"
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(p.dsn("md5user", **kw) +
                        f" sslcert={certs.client_scram_crt} sslkey={certs.client_scram_key}")
    assert "certificate authentication failed" in str(ei.value)


# --- server side -------------------------------------------------------------------------


def server_tls(certs, mode, **extra):
    ini = {"server_tls_sslmode": mode, "server_tls_ca_file": certs.ca_crt}
    ini.update(extra)
    return ini


@pytest.mark.parametrize("mode", ["prefer", "require", "verify-ca", "verify-full"])
def test_server_tls_modes(pooler, pg_tls, certs, mode):
    p = admin_pooler(pooler, **server_tls(certs, mode))
    with p.connect() as c:
        assert pg_ssl_in_use(c) is True
        with p.raw() as a:
            a.login("adm", db="pgbouncer", password=ADMIN_PW)
            servers = show(a, "SERVERS")
    assert servers and all(s["tls"].startswith("TLSv1.3/") for s in servers), servers


def test_server_tls_disable_and_unix(pooler, pg_tls, certs):
    p = pooler(server_tls_sslmode="disable")
    with p.connect() as c:
        assert pg_ssl_in_use(c) is False
    p2 = pooler(databases={TESTDB: f"host={pg_tls.unix_dir} port={pg_tls.port} dbname={TESTDB}"},
                server_tls_sslmode="require")
    with p2.connect() as c:  # unix sockets never use TLS
        assert pg_ssl_in_use(c) is False


def test_server_verify_full_wrong_host(pooler, pg_tls, certs):
    pg_set_ssl(pg_tls, True, certs.wronghost_crt, certs.wronghost_key)
    try:
        p = pooler(**server_tls(certs, "verify-full"))
        msg = connect_error(p)
        assert "certificate verify failed" in msg, msg
        p2 = pooler(**server_tls(certs, "verify-ca"))
        with p2.connect() as c:
            assert pg_ssl_in_use(c) is True
    finally:
        pg_set_ssl(pg_tls, True, certs.server_crt, certs.server_key)


def test_server_refused_ssl(pooler, pg_tls, certs):
    pg_set_ssl(pg_tls, False)
    try:
        p = pooler(server_tls_sslmode="require")
        assert "server refused SSL" in connect_error(p)
        p2 = pooler(server_tls_sslmode="prefer")
        with p2.connect() as c:
            assert pg_ssl_in_use(c) is False
    finally:
        pg_set_ssl(pg_tls, True)


def test_large_transfers_through_tls_both_sides(pooler, pg_tls, certs):
    p = pooler(**client_tls(certs, "require"), **server_tls(certs, "require"))
    with p.connect(sslmode="require") as c:
        assert c.pgconn.ssl_in_use and pg_ssl_in_use(c)
        big = c.execute("SELECT repeat('x', 3000000)").fetchone()[0]
        assert len(big) == 3000000
        rows = c.execute("SELECT g, repeat(md5(g::text), 40) FROM generate_series(1, 3000) g")
        assert sum(len(r[1]) for r in rows.fetchall()) == 3000 * 1280
        c.execute("CREATE TEMP TABLE t (id int, v text)")
        payload = "".join(f"{i}\t{'v' * 500}{i}\n" for i in range(5000)).encode()
        with c.cursor() as cur:
            with cur.copy("COPY t FROM STDIN") as cp:
                for i in range(0, len(payload), 100000):
                    cp.write(payload[i:i + 100000])
            out = bytearray()
            with cur.copy("COPY t TO STDOUT") as cp:
                for chunk in cp:
                    out += chunk
        assert bytes(out) == payload


def test_reload_keeps_tls_when_new_config_fails(pooler, pg_tls, certs):
    p = pooler(**client_tls(certs, "require"))
    with open(p.ini) as f:
        text = f.read()
    p.runas.write(p.ini, text.replace(f"client_tls_key_file = {certs.server_key}",
                                      "client_tls_key_file = /nonexistent.key"))
    p.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS setup failed" in p.log_text(), 10, what="TLS setup failed")
    with p.connect(sslmode="require") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT 8").fetchone()[0] == 8


def test_server_tls_change_recycles_servers(pooler, pg_tls, certs):
    p = admin_pooler(pooler, server_tls_sslmode="prefer")
    with p.raw() as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        with p.connect() as c:
            c.execute("SELECT 1")
            a.send(message(b"Q", b"SET client_tls_ciphers = 'all'\0"))
            assert read_result(a).error is None
            assert all(s["close_needed"] == "0" for s in show(a, "SERVERS"))
            a.send(message(b"Q", b"SET server_tls_sslmode = 'require'\0"))
            assert read_result(a).error is None
            assert all(s["close_needed"] == "1" for s in show(a, "SERVERS"))
