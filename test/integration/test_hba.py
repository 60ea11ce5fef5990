"""auth_type = hba end to end: the method is chosen per auth_hba_file rule by
connection type / address, database and user lists, @file includes, and peer
authentication on the unix socket with an auth_ident_file map.

When the tests run as root the pooler runs as pgvigil-test; peer auth looks at
the OS user of the connecting process, so peer clients are started as that
user (pvtest's runas), and clients of the test process itself are root.
"""
import os
import struct
import sys

import psycopg
import pytest

import pvtest
from pvtest import TESTDB, PASSWORDS, parse_error

ADMIN_PW = "adm-secret"

SCRIPT = r"""
import socket, struct, sys
path, user, db = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(path)
body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0" + db.encode() + b"\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
buf = b""
def msg():
    global buf
    while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("closed")
        buf += chunk
    n = struct.unpack("!I", buf[1:5])[0]
    m, buf = (buf[:1], buf[5:1 + n]), buf[1 + n:]
    return m
while True:
    t, b = msg()
    if t == b"R" and b[:4] != b"\0\0\0\0":
        print("AUTH %d" % struct.unpack("!I", b[:4])[0]); break
    if t == b"E":
        f = dict((p[:1].decode(), p[1:].decode()) for p in b.split(b"\0") if p)
        print("ERROR " + f.get("M", "")); break
    if t == b"Z":
        print("OK"); break
"""


def hba_pooler(pooler, pg, rules, ident="", files=None, **ini):
    dbs = {TESTDB: pg.db_line(), "seconddb": pg.db_line(), "thirddb": pg.db_line(),
           "fourthdb": pg.db_line(), "fifthdb": pg.db_line()}
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    settings = {"auth_type": "hba", "auth_hba_file": "hba.conf",
                "auth_ident_file": "ident.conf", "admin_users": "adm"}
    settings.update(ini)
    p = pooler(databases=dbs, userlist=userlist, start=False, **settings)
    p.runas.write(os.path.join(p.dir, "hba.conf"), rules)
    p.runas.write(os.path.join(p.dir, "ident.conf"), ident)
    for name, text in (files or {}).items():
        p.runas.write(os.path.join(p.dir, name), text)
    p.start()
    return p


def first_auth(p, user, db=TESTDB):
    """The first authentication answer over TCP: ("AUTH", code), ("OK", None) or ("ERROR", msg)."""
    with p.raw() as c:
        c.startup({"user": user, "database": db})
        while True:
            tag, body = c.recv_msg()
            if tag == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code != 0:
                    return ("AUTH", code)
            elif tag == b"E":
                return ("ERROR", parse_error(body).get("M"))
            elif tag == b"Z":
                return ("OK", None)


def unix_as(p, user, db=TESTDB, as_pooler_user=True):
    """Log in over the unix socket, as the pooler's OS user or as the test process."""
    path = os.path.join(p.unix_dir, f".s.PGSQL.{p.port}")
    args = [sys.executable, "-c", SCRIPT, path, user, db]
    if as_pooler_user:
        r = p.runas.run(args)
    else:
        import subprocess
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


MD5, SCRAM, CLEAR = 5, 10, 3

RULES = """
# admin console
host     pgbouncer  adm            127.0.0.1/32   md5
# a quoted database name; peer over TCP
host     "fifthdb"  all            127.0.0.1/32   peer
# database and user lists, @file
host     thirddb    @users.txt     127.0.0.1/32   password
host     seconddb   plainuser      127.0.0.1/32   trust
host     fourthdb   scramuser,pwuser  127.0.0.1 255.255.255.255  trust
host     all        plainuser      127.0.0.1/32   reject
host     all        md5user        127.0.0.1/32   md5
host     all        scramuser      all            scram-sha-256
host     all        pwuser         127.0.0.1/32   password
# unix socket
local    all        md5user        trust
local    all        scramuser      peer map=testmap
local    all        pwuser         peer
local    all        plainuser      peer map=allmap
"""


@pytest.fixture
def hp(pooler, pg_cluster):
    name = pvtest.RunAs().name
    ident = (f"testmap  {name}  scramuser\n"
             f"allmap   {name}  all\n")
    return hba_pooler(pooler, pg_cluster, RULES, ident=ident,
                      files={"users.txt": "md5user\n# comment\nnobody, plainuser\n"})


def test_method_per_rule_over_tcp(hp):
    assert first_auth(hp, "md5user") == ("AUTH", MD5)
    assert first_auth(hp, "scramuser") == ("AUTH", SCRAM)
    assert first_auth(hp, "pwuser") == ("AUTH", CLEAR)
    assert first_auth(hp, "plainuser") == ("ERROR", "pg_hba.conf rejected connection")
    assert first_auth(hp, "stranger") == ("ERROR", "no authentication method is found")
    # real logins with the chosen methods
    for user in ("md5user", "scramuser", "pwuser"):
        hp.assert_serves(user)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        hp.connect("pwuser", password="wrong")


def test_database_and_user_lists_and_include(hp):
    # seconddb: plainuser trusted (before the reject line)
    assert first_auth(hp, "plainuser", db="seconddb") == ("OK", None)
    # thirddb: users from @users.txt get cleartext; others fall through
    assert first_auth(hp, "md5user", db="thirddb") == ("AUTH", CLEAR)
    assert first_auth(hp, "plainuser", db="thirddb") == ("AUTH", CLEAR)
    assert first_auth(hp, "scramuser", db="thirddb") == ("AUTH", SCRAM)
    # fourthdb: a user list with addr + mask
    assert first_auth(hp, "scramuser", db="fourthdb") == ("OK", None)
    assert first_auth(hp, "pwuser", db="fourthdb") == ("OK", None)
    assert first_auth(hp, "md5user", db="fourthdb") == ("AUTH", MD5)
    with hp.connect("md5user", db="thirddb") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == "md5user"


def test_unix_socket_rules_and_peer(hp):
    # local trust, from any OS user
    assert unix_as(hp, "md5user", as_pooler_user=False) == "OK"
    # peer with a map: the pooler's OS user maps to scramuser, root does not
    assert unix_as(hp, "scramuser") == "OK"
    if pvtest.RunAs().root:
        assert unix_as(hp, "scramuser", as_pooler_user=False) == "ERROR peer authentication failed"
    # map with "all"
    assert unix_as(hp, "plainuser") == "OK"
    # peer without a map: the OS user name must be the database user
    assert unix_as(hp, "pwuser") == "ERROR peer authentication failed"


def test_peer_over_tcp_is_refused(hp):
    assert first_auth(hp, "md5user", db="fifthdb") == (
        "ERROR", "peer authentication is only supported on unix sockets")


def test_peer_same_name_without_map(pooler, pg_cluster):
    """An OS user logging in as the database user of the same name needs no map."""
    name = pvtest.RunAs().name
    p = hba_pooler(pooler, pg_cluster, "local all all peer\n")
    out = unix_as(p, name)
    # authentication passed: whatever fails now is the server login (no such role)
    assert "peer authentication failed" not in out, out


def test_reload_keeps_rules_on_bad_file(hp):
    with hp.raw() as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        hp.runas.write(os.path.join(hp.dir, "hba.conf"), RULES + "host all all 10.0.0.0/99 md5\n")
        rows, err = a.query("RELOAD")
        assert err and err["M"] == "RELOAD failed, see logs for additional details", err
        assert "hba.conf:" in hp.log_text() and "invalid CIDR mask" in hp.log_text()
        # old rules still apply
        assert first_auth(hp, "plainuser") == ("ERROR", "pg_hba.conf rejected connection")
        good = RULES.replace("host     all        plainuser      127.0.0.1/32   reject",
                             "host     all        plainuser      127.0.0.1/32   scram-sha-256")
        hp.runas.write(os.path.join(hp.dir, "hba.conf"), good)
        rows, err = a.query("RELOAD")
        assert err is None, err
    assert first_auth(hp, "plainuser") == ("AUTH", SCRAM)
    hp.assert_serves("plainuser")


def test_bad_hba_file_at_startup(pooler, pg_cluster):
    with pytest.raises(RuntimeError, match="hba.conf:2: invalid connection type"):
        hba_pooler(pooler, pg_cluster, "local all all trust\nhostx all all all md5\n")
