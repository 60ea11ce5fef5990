"""The admin console (database "pgbouncer"): access rules, every SHOW command's
columns, control commands, RELOAD and signals.

Expected column lists are PgBouncer 1.25's (spec section 3.3), kept here as data.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import psycopg
import pytest

import pvtest
from pvtest import TESTDB, message, parse_error

ADMIN_PW = "adm-secret"
STATS_PW = "stats-secret"
NOBODY_PW = "nobody-secret"

T, I4, I8, N = 25, 23, 20, 1700

SOCKET_COLS = [("type", T), ("user", T), ("database", T), ("replication", T), ("state", T),
               ("addr", T), ("port", I4), ("local_addr", T), ("local_port", I4),
               ("connect_time", T), ("request_time", T), ("wait", I4), ("wait_us", I4),
               ("close_needed", I4), ("ptr", T), ("link", T), ("remote_pid", I4), ("tls", T),
               ("application_name", T), ("prepared_statements", I4), ("id", I4)]

STAT_NAMES = ["server_assignment_count", "xact_count", "query_count", "received", "sent",
              "xact_time", "query_time", "wait_time", "client_parse_count",
              "server_parse_count", "bind_count", "client_login_count"]

EXPECTED_COLUMNS = {
    "STATS": [("database", T)] + [("total_" + n, N) for n in STAT_NAMES]
    + [("avg_" + n.replace("received", "recv"), N) for n in STAT_NAMES],
    "STATS_TOTALS": [("database", T)] + [(n, N) for n in [
        "server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
        "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count",
        "bind_count", "client_login_count"]],
    "STATS_AVERAGES": [("database", T)] + [(n, N) for n in [
        "server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
        "xact_time", "query_time", "wait_time", "avg_client_parse_count",
        "avg_server_parse_count", "avg_bind_count", "avg_client_login_count"]],
    "TOTALS": [("name", T), ("value", N)],
    "SERVERS": SOCKET_COLS,
    "CLIENTS": SOCKET_COLS,
    "SOCKETS": SOCKET_COLS + [(n, I4) for n in ["recv_pos", "pkt_pos", "pkt_remain", "send_pos",
                                               "send_remain", "pkt_avail", "send_avail"]],
    "ACTIVE_SOCKETS": SOCKET_COLS + [(n, I4) for n in ["recv_pos", "pkt_pos", "pkt_remain",
                                                      "send_pos", "send_remain", "pkt_avail",
                                                      "send_avail"]],
    "POOLS": [("database", T), ("user", T)] + [(n, I4) for n in [
        "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
        "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
        "maxwait", "maxwait_us"]] + [("pool_mode", T), ("load_balance_hosts", T)],
    "PEER_POOLS": [(n, I4) for n in ["peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req",
                                    "sv_active_cancel", "sv_login"]],
    "DATABASES": [("name", T), ("host", T), ("port", I4), ("database", T), ("force_user", T),
                  ("pool_size", I4), ("min_pool_size", I4), ("reserve_pool_size", I4),
                  ("server_lifetime", I4), ("pool_mode", T), ("load_balance_hosts", T),
                  ("max_connections", I4), ("current_connections", I4),
                  ("max_client_connections", I4), ("current_client_connections", I4),
                  ("paused", I4), ("disabled", I4)],
    "PEERS": [("peer_id", I4), ("host", T), ("port", I4), ("pool_size", I4)],
    "USERS": [("name", T), ("pool_size", T), ("reserve_pool_size", T), ("pool_mode", T),
              ("max_user_connections", I4), ("current_connections", I4),
              ("max_user_client_connections", I4), ("current_client_connections", I4)],
    "LISTS": [("list", T), ("items", I4)],
    "MEM": [("name", T), ("size", I4), ("used", I4), ("free", I4), ("memtotal", I4)],
    "CONFIG": [("key", T), ("value", T), ("default", T), ("changeable", T)],
    "FDS": [("fd", I4), ("task", T), ("user", T), ("database", T), ("addr", T), ("port", I4),
            ("cancel", I8), ("link", I4), ("client_encoding", T), ("std_strings", T),
            ("datestyle", T), ("timezone", T), ("password", T), ("scram_client_key", T),
            ("scram_server_key", T)],
    "DNS_HOSTS": [("hostname", T), ("ttl", I8), ("addrs", T)],
    "DNS_ZONES": [("zonename", T), ("serial", I8), ("count", I4)],
    "STATE": [("key", T), ("value", T)],
    "VERSION": [("version", T)],
}

LISTS_ROWS = ["databases", "users", "peers", "pools", "peer_pools", "free_clients",
              "used_clients", "login_clients", "free_servers", "used_servers", "dns_names",
              "dns_zones", "dns_queries", "dns_pending"]


# --- helpers ----------------------------------------------------------------------


def admin_pooler(pooler, databases=None, **ini):
    userlist = dict(pvtest.PASSWORDS)
    userlist.update({"adm": ADMIN_PW, "stats": STATS_PW, "nobody": NOBODY_PW})
    settings = {"admin_users": "adm", "stats_users": "stats", "pool_mode": "transaction"}
    settings.update(ini)
    return pooler(databases=databases, userlist=userlist, **settings)


class Result:
    def __init__(self):
        self.cols, self.rows, self.error, self.notices, self.tag = [], [], None, [], None

    def dicts(self):
        names = [c[0] for c in self.cols]
        return [dict(zip(names, r)) for r in self.rows]


def read_result(conn):
    """Read one simple-query response up to ReadyForQuery."""
    res = Result()
    while True:
        tag, body = conn.recv_msg()
        if tag == b"T":
            (n,) = struct.unpack("!H", body[:2])
            pos = 2
            for _ in range(n):
                end = body.index(b"\0", pos)
                name = body[pos:end].decode()
                pos = end + 1
                _tbl, _att, oid, _len, _mod, _fmt = struct.unpack("!IhIhih", body[pos:pos + 18])
                pos += 18
                res.cols.append((name, oid))
        elif tag == b"D":
            res.rows.append(pvtest.parse_datarow(body))
        elif tag == b"C":
            res.tag = body.rstrip(b"\0").decode()
        elif tag == b"E":
            res.error = parse_error(body)
        elif tag == b"N":
            res.notices.append(parse_error(body))
        elif tag == b"Z":
            return res


def run(conn, sql):
    conn.send(message(b"Q", sql.encode() + b"\0"))
    return read_result(conn)


def admin(p, user="adm", password=ADMIN_PW):
    c = p.raw(timeout=10)
    c.status = c.login(user, db="pgbouncer", password=password)
    return c


def ok(conn, sql, tag=None):
    r = run(conn, sql)
    assert r.error is None, (sql, r.error)
    if tag is not None:
        assert r.tag == tag, (sql, r.tag)
    return r


def err(conn, sql):
    r = run(conn, sql)
    assert r.error is not None, (sql, r.rows)
    return r.error


def no_reply_within(conn, seconds):
    """True if nothing arrives on conn within seconds (the command is still waiting)."""
    conn.sock.settimeout(seconds)
    try:
        conn._fill(1)
        return False
    except socket.timeout:
        return True
    finally:
        conn.sock.settimeout(10)


def show(conn, what):
    return ok(conn, "SHOW " + what, "SHOW").dicts()


def client_ids(conn, user):
    return [int(r["id"]) for r in show(conn, "CLIENTS") if r["user"] == user]


def wait_exit(p, timeout=10):
    p.stopped_by_test = True
    return p.proc.wait(timeout=timeout)


def in_thread(fn):
    import threading
    box = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the test
            box["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


# --- access ------------------------------------------------------------------------


def test_welcome_parameters(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        st = a.status
        assert st["server_version"].endswith("/bouncer")
        assert st["client_encoding"] == "UTF8" and st["server_encoding"] == "UTF8"
        assert st["DateStyle"] == "ISO" and st["TimeZone"] == "GMT"
        assert st["standard_conforming_strings"] == "on" and st["is_superuser"] == "on"


def test_admin_stats_and_other_users(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        ok(a, "SHOW FDS")
        ok(a, "RECONNECT", "RECONNECT")
    with admin(p, "stats", STATS_PW) as s:
        ok(s, "SHOW POOLS")
        ok(s, "SHOW STATS")
        assert err(s, "SHOW FDS")["M"] == "admin access needed"
        e = err(s, "PAUSE")
        assert e["M"] == "admin access needed" and e["C"] == "08P01" and e["S"] == "ERROR"
        assert err(s, "SET default_pool_size = 3")["M"] == "admin access needed"
        ok(s, "SHOW VERSION")  # still usable after errors
    with p.raw() as c:
        with pytest.raises(AssertionError, match="not allowed"):
            c.login("nobody", db="pgbouncer", password=NOBODY_PW)
    with p.raw() as c:
        with pytest.raises(AssertionError, match="password authentication failed"):
            c.login("adm", db="pgbouncer", password="wrong")
    # the alias reaches the same console
    with p.raw() as c:
        c.login("adm", db="pgvigil", password=ADMIN_PW)
        assert ok(c, "SHOW VERSION").rows[0][0].startswith("PgBouncer 1.25.2")


def test_auth_type_any(pooler):
    # any name gets in without a password: admin_users as admin, everyone else stats-only
    p = admin_pooler(pooler, auth_type="any")
    with admin(p, "adm", None) as a:
        ok(a, "SHOW FDS")
    with admin(p, "whoever", None) as s:
        ok(s, "SHOW POOLS")
        assert err(s, "SHOW FDS")["M"] == "admin access needed"


OWN_USER_SCRIPT = r"""
import socket, struct, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(path)
body = struct.pack("!I", 196608) + b"user\0pgbouncer\0database\0pgbouncer\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
buf = b""
def msg():
    global buf
    while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("closed: %r" % buf)
        buf += chunk
    n = struct.unpack("!I", buf[1:5])[0]
    m, buf = (buf[:1], buf[5:1 + n]), buf[1 + n:]
    return m
while True:
    t, b = msg()
    if t == b"R" and b[:4] != b"\0\0\0\0":
        raise SystemExit("password asked")
    if t == b"E":
        raise SystemExit("error: %r" % b)
    if t == b"Z":
        break
q = b"SHOW FDS\0"
s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
while True:
    t, b = msg()
    if t == b"E":
        raise SystemExit("error: %r" % b)
    if t == b"Z":
        break
print("OK")
"""


def test_own_user_over_unix_socket_needs_no_password(pooler):
    p = admin_pooler(pooler)
    path = os.path.join(p.unix_dir, f".s.PGSQL.{p.port}")
    # the client must run with the pooler's UID (pgvigil-test when the tests run as root)
    r = p.runas.run([sys.executable, "-c", OWN_USER_SCRIPT, path])
    assert r.stdout.strip() == "OK", r.stdout + r.stderr
    # over TCP the same name is an ordinary (unknown) user
    with p.raw() as c:
        with pytest.raises(AssertionError):
            c.login("pgbouncer", db="pgbouncer", password="x")


# --- grammar -------------------------------------------------------------------------


def test_grammar_errors_and_aliases(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        e = err(a, "FROBNICATE")
        assert e["M"] == "invalid command 'FROBNICATE', use SHOW HELP;" and e["C"] == "08P01"
        assert err(a, "SHOW NOTHING")["M"] == "invalid command 'SHOW NOTHING', use SHOW HELP;"
        assert err(a, "SHOW")["M"].startswith("invalid command")
        assert err(a, "SHOW POOLS extra words")["M"].startswith("invalid command")
        # case-insensitive, optional semicolon, SELECT alias
        assert ok(a, "show version;").rows == ok(a, "SELECT VERSION").rows
        assert ok(a, "  Show   Pools  ; ").cols
        r = ok(a, "SHOW HELP", "SHOW")
        assert r.notices and r.notices[0]["M"].startswith("Console usage")
        assert "SHOW" in r.notices[0]["M"] and "WAIT_CLOSE" in r.notices[0]["M"]
        # fake parameters
        assert ok(a, "SHOW client_encoding").rows == [["UTF-8"]]
        assert ok(a, "SHOW default_transaction_isolation").rows == [["read committed"]]
        assert ok(a, "SHOW standard_conforming_strings").rows == [["on"]]
        assert ok(a, "SHOW DateStyle").rows == [["ISO"]]
        assert ok(a, "SHOW timezone").rows == [["GMT"]]
        r = ok(a, "SET client_encoding = 'UTF8'", "SET")
        assert r.notices and r.notices[0]["M"] == "SET ignored"
        ok(a, "SHOW VERSION")


def test_extended_protocol_refused(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        a.send(message(b"P", b"\0SHOW POOLS\0\0\0") + message(b"S"))
        e = a.expect_error_and_close()
        assert e["M"] == "extended query protocol not supported by admin console"


def test_psql_and_psycopg_clients(pooler):
    p = admin_pooler(pooler)
    env = dict(os.environ, PGPASSWORD=ADMIN_PW)
    r = subprocess.run(["psql", "-h", p.host, "-p", str(p.port), "-U", "adm", "-d", "pgbouncer",
                        "-X", "-A", "-t", "-c", "SHOW VERSION"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("PgBouncer 1.25.2")
    with psycopg.connect(p.dsn("adm", "pgbouncer", ADMIN_PW), autocommit=True) as c:
        cur = c.execute("SHOW POOLS")
        assert [d.name for d in cur.description] == [n for n, _ in EXPECTED_COLUMNS["POOLS"]]
        assert any(r[0] == "pgbouncer" for r in cur.fetchall())


# --- SHOW ----------------------------------------------------------------------------


@pytest.mark.parametrize("what", sorted(EXPECTED_COLUMNS))
def test_show_columns(pooler, what):
    p = admin_pooler(pooler)
    with p.connect("md5user") as c, admin(p) as a:
        c.execute("SELECT 1")
        r = ok(a, "SHOW " + what, "SHOW")
        assert r.cols == EXPECTED_COLUMNS[what]
        for row in r.rows:
            assert len(row) == len(r.cols)


def test_show_contents(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as c, admin(p) as a:
        c.execute("SELECT 1")
        assert ok(a, "SHOW VERSION").rows[0][0].startswith("PgBouncer 1.25.2 (pgvigil ")
        pools = {(r["database"], r["user"]): r for r in show(a, "POOLS")}
        assert pools[(TESTDB, "md5user")]["pool_mode"] == "transaction"
        assert pools[(TESTDB, "md5user")]["sv_idle"] == "1"
        assert pools[("pgbouncer", "pgbouncer")]["pool_mode"] == "statement"
        dbs = {r["name"]: r for r in show(a, "DATABASES")}
        assert dbs["pgbouncer"]["force_user"] == "pgbouncer" and dbs["pgbouncer"]["pool_size"] == "2"
        assert dbs[TESTDB]["database"] == TESTDB and dbs[TESTDB]["paused"] == "0"
        assert dbs[TESTDB]["current_client_connections"] == "1"
        clients = show(a, "CLIENTS")
        mine = [r for r in clients if r["user"] == "md5user"]
        assert len(mine) == 1 and mine[0]["state"] == "idle" and mine[0]["type"] == "C"
        assert mine[0]["replication"] == "none"
        servers = show(a, "SERVERS")
        assert [r["state"] for r in servers if r["database"] == TESTDB] == ["idle"]
        ids = [int(r["id"]) for r in clients + servers]
        assert len(ids) == len(set(ids))
        socks = show(a, "SOCKETS")
        assert {r["state"] for r in socks} >= {"cl_active", "sv_idle"}
        assert [r["list"] for r in show(a, "LISTS")] == LISTS_ROWS
        mem = {r["name"] for r in show(a, "MEM")}
        assert {"client_cache", "server_cache", "pool_cache", "db_cache", "user_cache",
                "iobuf_cache"} <= mem
        state = {r["key"]: r["value"] for r in show(a, "STATE")}
        assert state == {"active": "yes", "paused": "no", "suspended": "no"}
        cfg = {r["key"]: r for r in show(a, "CONFIG")}
        assert cfg["pool_mode"]["value"] == "transaction"
        assert cfg["pool_mode"]["changeable"] == "yes"
        totals = [r["name"] for r in show(a, "TOTALS")]
        assert totals[0] == "total_server_assignment_count" and totals[12] == "avg_server_assignment_count"
        assert len(totals) == 24
        stats = {r["database"]: r for r in show(a, "STATS")}
        assert int(stats[TESTDB]["total_query_count"]) >= 1
        users = {r["name"] for r in show(a, "USERS")}
        assert "md5user" in users
        fds = show(a, "FDS")
        assert {"pooler", "client", "server"} <= {r["task"] for r in fds}
        assert all(r["password"] is None for r in fds)


# --- control commands -------------------------------------------------------------------


def test_pause_waits_for_running_transaction_then_resume(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as tx, admin(p) as a, admin(p) as a2:
        tx.execute("BEGIN")
        tx.execute("SELECT 1")
        a.send(message(b"Q", b"PAUSE\0"))
        assert no_reply_within(a, 0.7), "PAUSE answered while a transaction holds a server"
        tx.execute("COMMIT")
        r = read_result(a)
        assert r.tag == "PAUSE" and r.error is None
        assert {r["key"]: r["value"] for r in show(a2, "STATE")}["paused"] == "yes"
        assert err(a2, "PAUSE")["M"] == "already suspended/paused"
        # a new query waits while paused and runs after RESUME
        t, box = in_thread(lambda: tx.execute("SELECT 42").fetchone()[0])
        time.sleep(0.5)
        assert "value" not in box
        assert [r["cl_waiting"] for r in show(a2, "POOLS") if r["database"] == TESTDB] == ["1"]
        ok(a2, "RESUME", "RESUME")
        t.join(10)
        assert box.get("value") == 42, box
        assert err(a2, "RESUME")["M"] == "pooler is not paused/suspended"


def test_pause_and_resume_one_database(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as c, admin(p) as a:
        c.execute("SELECT 1")
        ok(a, f"PAUSE {TESTDB}", "PAUSE")
        assert [r["paused"] for r in show(a, "DATABASES") if r["name"] == TESTDB] == ["1"]
        assert not [r for r in show(a, "SERVERS") if r["database"] == TESTDB]
        assert err(a, "PAUSE nosuchdb")["M"] == "no such database: nosuchdb"
        assert err(a, "PAUSE pgbouncer")["M"] == "cannot pause admin db: pgbouncer"
        ok(a, f"RESUME {TESTDB}", "RESUME")
        assert err(a, f"RESUME {TESTDB}")["M"] == f"database {TESTDB} is not paused"
        assert c.execute("SELECT 7").fetchone()[0] == 7


def test_disable_enable(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        assert err(a, "DISABLE")["M"] == "a database is required"
        ok(a, f"DISABLE {TESTDB}", "DISABLE")
        with pytest.raises(psycopg.OperationalError, match=f'database "{TESTDB}" is disabled'):
            p.connect("md5user")
        ok(a, f"ENABLE {TESTDB}", "ENABLE")
        p.assert_serves()


def test_kill_database_and_resume(pooler):
    p = admin_pooler(pooler)
    c = p.connect("md5user")
    c.execute("SELECT 1")
    with admin(p) as a:
        ok(a, f"KILL {TESTDB}", "KILL")
        with pytest.raises(psycopg.OperationalError):
            c.execute("SELECT 1")
        assert not [r for r in show(a, "SERVERS") if r["database"] == TESTDB]
        assert [r["paused"] for r in show(a, "DATABASES") if r["name"] == TESTDB] == ["1"]
        ok(a, f"RESUME {TESTDB}", "RESUME")
        p.assert_serves()
    c.close()
    assert "database removed" in p.log_text()


def test_kill_client(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as victim, p.connect("scramuser") as other, admin(p) as a:
        victim.execute("SELECT 1")
        (vid,) = client_ids(a, "md5user")
        assert err(a, "KILL_CLIENT abc")["M"] == "invalid client pointer supplied"
        assert err(a, "KILL_CLIENT 999999")["M"] == "client not found"
        ok(a, f"KILL_CLIENT {vid}", "KILL_CLIENT")
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert client_ids(a, "md5user") == []
        assert other.execute("SELECT 2").fetchone()[0] == 2
    assert "admin forced disconnect" in p.log_text()


def test_reconnect_and_wait_close(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as c, admin(p) as a:
        c.execute("SELECT 1")
        before = {r["id"] for r in show(a, "SERVERS") if r["database"] == TESTDB}
        assert len(before) == 1
        ok(a, f"RECONNECT {TESTDB}", "RECONNECT")
        ok(a, f"WAIT_CLOSE {TESTDB}", "WAIT_CLOSE")
        c.execute("SELECT 1")
        after = {r["id"] for r in show(a, "SERVERS") if r["database"] == TESTDB}
        assert after and not (after & before)
        ok(a, "RECONNECT", "RECONNECT")
        ok(a, "WAIT_CLOSE", "WAIT_CLOSE")
        assert err(a, "RECONNECT nosuchdb")["M"] == "no such database: nosuchdb"


def test_suspend_and_resume(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as c, admin(p) as a:
        c.execute("SELECT 1")
        ok(a, "SUSPEND", "SUSPEND")
        assert {r["key"]: r["value"] for r in show(a, "STATE")}["suspended"] == "yes"
        assert err(a, "SUSPEND")["M"] == "already suspended/paused"
        t, box = in_thread(lambda: c.execute("SELECT 5").fetchone()[0])
        time.sleep(0.5)
        assert "value" not in box
        ok(a, "RESUME", "RESUME")
        t.join(10)
        assert box.get("value") == 5, box


def test_admin_disconnect_during_suspend_resumes(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        ok(a, "SUSPEND", "SUSPEND")
    p.assert_serves()


def test_set(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        ok(a, "SET default_pool_size = 7", "SET default_pool_size=7")
        cfg = {r["key"]: r["value"] for r in show(a, "CONFIG")}
        assert cfg["default_pool_size"] == "7"
        ok(a, "SET server_reset_query TO 'DISCARD ALL'", "SET server_reset_query=DISCARD ALL")
        assert err(a, "SET no_such_key = 1")["M"] == "SET failed"
        assert err(a, "SET default_pool_size = notanumber")["M"] == "SET failed"


def rewrite_ini(p, replace=None, append=""):
    with open(p.ini) as f:
        text = f.read()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    p.runas.write(p.ini, text + append)


def test_reload_good_and_bad(pooler):
    p = admin_pooler(pooler)
    with admin(p) as a:
        rewrite_ini(p, {"pool_mode = transaction": "pool_mode = session"})
        ok(a, "RELOAD", "RELOAD")
        cfg = {r["key"]: r["value"] for r in show(a, "CONFIG")}
        assert cfg["pool_mode"] == "session"
        rewrite_ini(p, {"pool_mode = session": "pool_mode = bogus"})
        e = err(a, "RELOAD")
        assert e["M"] == "RELOAD failed, see logs for additional details" and e["C"] == "F0000"
        cfg = {r["key"]: r["value"] for r in show(a, "CONFIG")}
        assert cfg["pool_mode"] == "session"
    p.assert_serves()


def test_reload_changed_and_removed_databases(pooler, pg_cluster):
    dbs = {TESTDB: pg_cluster.db_line(), "second": pg_cluster.db_line()}
    p = admin_pooler(pooler, databases=dbs)
    with p.connect("md5user") as c, p.connect("md5user", db="second") as c2, admin(p) as a:
        c.execute("SELECT 1")
        c2.execute("SELECT 1")
        old = {r["id"] for r in show(a, "SERVERS") if r["database"] == TESTDB}
        # change the port spelling of testdb (same server), drop "second"
        line = pg_cluster.db_line()
        rewrite_ini(p, {f"{TESTDB} = {line}": f"{TESTDB} = {line} application_name=x "
                        f"connect_query='SELECT 1'",
                        f"second = {line}\n": ""})
        ok(a, "RELOAD", "RELOAD")
        ok(a, "WAIT_CLOSE", "WAIT_CLOSE")
        assert not ({r["id"] for r in show(a, "SERVERS")} & old)
        with pytest.raises(psycopg.OperationalError):
            c2.execute("SELECT 1")
        assert c.execute("SELECT 3").fetchone()[0] == 3
        assert "second" not in {r["name"] for r in show(a, "DATABASES")}
    log = p.log_text()
    assert "database configuration changed" in log and "database removed" in log


# --- shutdown -------------------------------------------------------------------------


def test_shutdown_immediate(pooler):
    p = admin_pooler(pooler)
    a = admin(p)
    a.send(message(b"Q", b"SHUTDOWN\0"))
    assert wait_exit(p) == 0
    a.close()


def test_shutdown_wait_for_clients(pooler):
    p = admin_pooler(pooler)
    c = p.connect("md5user")
    c.execute("SELECT 1")
    with admin(p) as a:
        ok(a, "SHUTDOWN WAIT_FOR_CLIENTS", "SHUTDOWN")
        assert err(a, "RESUME")["M"] == "pooler is shutting down"
        # new logins over the unix socket are refused, existing clients still served
        with pytest.raises(psycopg.OperationalError, match="pooler is shutting down"):
            psycopg.connect(host=p.unix_dir, port=p.port, user="md5user", dbname=TESTDB,
                            password=pvtest.PASSWORDS["md5user"], connect_timeout=5)
        assert c.execute("SELECT 8").fetchone()[0] == 8
    time.sleep(0.5)
    assert p.alive()
    c.close()
    assert wait_exit(p) == 0
    assert "client connections dropped, exiting" in p.log_text()


def test_shutdown_wait_for_servers(pooler):
    p = admin_pooler(pooler)
    tx = p.connect("md5user")
    tx.execute("BEGIN")
    tx.execute("SELECT 1")
    with admin(p) as a:
        ok(a, "SHUTDOWN WAIT_FOR_SERVERS", "SHUTDOWN")
    time.sleep(0.5)
    assert p.alive()
    tx.execute("COMMIT")
    assert wait_exit(p) == 0
    tx.close()
    assert "server connections dropped, exiting" in p.log_text()


# --- signals -----------------------------------------------------------------------------


def test_sighup_reloads(pooler):
    p = admin_pooler(pooler)
    rewrite_ini(p, {"pool_mode = transaction": "pool_mode = session"})
    p.proc.send_signal(signal.SIGHUP)
    with admin(p) as a:
        pvtest.wait_until(lambda: {r["key"]: r["value"] for r in show(a, "CONFIG")}["pool_mode"]
                          == "session", 5, what="SIGHUP reload")


def test_sigusr1_pauses_sigusr2_resumes(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as c, admin(p) as a:
        c.execute("SELECT 1")
        p.proc.send_signal(signal.SIGUSR1)
        pvtest.wait_until(lambda: {r["key"]: r["value"] for r in show(a, "STATE")}["paused"]
                          == "yes", 5, what="pause")
        t, box = in_thread(lambda: c.execute("SELECT 9").fetchone()[0])
        time.sleep(0.5)
        assert "value" not in box
        p.proc.send_signal(signal.SIGUSR2)
        t.join(10)
        assert box.get("value") == 9, box
    log = p.log_text()
    assert "got SIGUSR1, pausing all activity" in log


def test_sigterm_waits_for_clients_second_exits(pooler):
    p = admin_pooler(pooler)
    c = p.connect("md5user")
    p.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert p.alive()
    assert c.execute("SELECT 4").fetchone()[0] == 4
    p.proc.send_signal(signal.SIGUSR2)
    p.proc.send_signal(signal.SIGTERM)
    assert wait_exit(p) == 0
    c.close()
    assert "got SIGUSR2 while shutting down, ignoring" in p.log_text()


def test_sigterm_exits_when_last_client_leaves(pooler):
    p = admin_pooler(pooler)
    c = p.connect("md5user")
    p.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert p.alive()
    c.close()
    assert wait_exit(p) == 0


def test_sigint_and_sigquit(pooler):
    p = admin_pooler(pooler)
    p.assert_serves()
    p.proc.send_signal(signal.SIGINT)
    assert wait_exit(p) == 0
    assert "server connections dropped, exiting" in p.log_text()
    q = admin_pooler(pooler)
    c = q.connect("md5user")
    q.proc.send_signal(signal.SIGQUIT)
    assert wait_exit(q) == 0
    c.close()


def test_kill_all_databases(pooler):
    p = admin_pooler(pooler)
    c = p.connect("md5user")
    c.execute("SELECT 1")
    with admin(p) as a:
        ok(a, "KILL", "KILL")
        with pytest.raises(psycopg.OperationalError):
            c.execute("SELECT 1")
        assert [r["paused"] for r in show(a, "DATABASES") if r["name"] == TESTDB] == ["1"]
        assert [r["paused"] for r in show(a, "DATABASES") if r["name"] == "pgbouncer"] == ["0"]
        ok(a, f"RESUME {TESTDB}", "RESUME")
        p.assert_serves()
    c.close()


def test_max_client_conn_not_enforced_for_admin(pooler):
    p = admin_pooler(pooler, max_client_conn=1)
    with p.connect("md5user") as c:
        c.execute("SELECT 1")
        with admin(p) as a:
            ok(a, "SHOW CLIENTS")
        with pytest.raises(psycopg.OperationalError, match="max_client_conn"):
            p.connect("scramuser")


def test_pending_pause_db_ends_on_resume_db(pooler):
    p = admin_pooler(pooler)
    with p.connect("md5user") as tx, admin(p) as a, admin(p) as a2:
        tx.execute("BEGIN")
        tx.execute("SELECT 1")
        a.send(message(b"Q", f"PAUSE {TESTDB}\0".encode()))
        assert no_reply_within(a, 0.5)
        ok(a2, f"RESUME {TESTDB}", "RESUME")
        assert read_result(a).tag == "PAUSE"
        tx.execute("COMMIT")
        assert tx.execute("SELECT 6").fetchone()[0] == 6
