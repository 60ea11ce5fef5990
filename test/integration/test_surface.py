"""The rest of the PgBouncer surface, through the real binary:
application_name_add_host, startup parameters and `options`, disable_pqexec,
server_round_robin, server_fast_close, connect_query, host lists with
load_balance_hosts, tcp_* socket options, syslog, and -d daemon mode.

Socket options are read back from the pooler's own sockets: the test (root,
or the same user) copies each fd out of the running process with
pidfd_getfd(2) and calls getsockopt on the copy.
"""
import ctypes
import os
import signal
import socket
import struct
import subprocess
import time

import psycopg
import pytest

import pvtest
from pvtest import PASSWORDS, TESTDB, message, wait_until

ADMIN_PW = "adm-secret"


def admin_conn(p):
    c = p.raw(timeout=10)
    c.login("adm", db="pgbouncer", password=ADMIN_PW)
    return c


def with_admin(pooler, **ini):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    return pooler(userlist=userlist, admin_users="adm", **ini)


def startup_error(p, params):
    with p.raw() as c:
        c.startup(params)
        msgs = []
        try:
            while True:
                tag, body = c.recv_msg()
                msgs.append((tag, body))
                if tag == b"R" and struct.unpack("!I", body[:4])[0] == 5:
                    user = params["user"]
                    pw = PASSWORDS[user]
                    import hashlib
                    inner = hashlib.md5((pw + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    c.send(message(b"p", b"md5" + outer.encode() + b"\0"))
                if tag in (b"E", b"Z"):
                    break
        except (pvtest.ConnectionClosed, ConnectionResetError):
            pass
    for tag, body in msgs:
        if tag == b"E":
            return pvtest.parse_error(body)
    return None


# --- application_name_add_host ---------------------------------------------------------


def test_application_name_add_host(pooler):
    p = pooler(application_name_add_host=1)
    with p.connect(application_name="myapp") as c:
        fd = c.pgconn.socket
        s = socket.socket(fileno=os.dup(fd))
        host, port = s.getsockname()[:2]
        s.close()
        name = c.execute("SELECT application_name FROM pg_stat_activity "
                         "WHERE pid = pg_backend_pid()").fetchone()[0]
        assert name == f"myapp - {host}:{port}"
    # off (default): unchanged
    p2 = pooler()
    with p2.connect(application_name="myapp") as c:
        assert c.execute("SHOW application_name").fetchone()[0] == "myapp"


# --- startup parameters and options -------------------------------------------------------


def test_options_tracked_params_and_escapes(pooler):
    p = pooler()
    with p.raw() as c:
        # backslash-escaped space inside a value, -c with a separate word, --k=v
        c.login("md5user", password=PASSWORDS["md5user"],
                params={"options": r"-c DateStyle=ISO,\ DMY --TimeZone=Asia/Tokyo"})
        rows, err = c.query("SHOW DateStyle")
        assert err is None and rows[0][0] == "ISO, DMY"
        rows, err = c.query("SHOW TimeZone")
        assert err is None and rows[0][0] == "Asia/Tokyo"


def test_options_errors_exact(pooler):
    p = pooler()
    e = startup_error(p, {"user": "md5user", "database": TESTDB, "options": "-c work_mem=8MB"})
    assert e["M"] == "unsupported startup parameter in options: work_mem"
    e = startup_error(p, {"user": "md5user", "database": TESTDB, "options": "-x"})
    assert e["M"] == ("unsupported options startup parameter: only '-c config=val' and "
                      "'--config=val' are allowed")
    e = startup_error(p, {"user": "md5user", "database": TESTDB, "extra_float_digits": "2"})
    assert e["M"] == "unsupported startup parameter: extra_float_digits"


def test_ignore_startup_parameters(pooler):
    p = pooler(ignore_startup_parameters="extra_float_digits, work_mem")
    with p.raw() as c:
        c.login("md5user", password=PASSWORDS["md5user"],
                params={"extra_float_digits": "2", "options": "-c work_mem=8MB"})
        rows, err = c.query("SHOW work_mem")
        assert err is None and rows[0][0] == "4MB"  # ignored, not applied
    # "options" in the list: unknown options are ignored, tracked ones still apply
    p2 = pooler(ignore_startup_parameters="options")
    with p2.raw() as c:
        c.login("md5user", password=PASSWORDS["md5user"],
                params={"options": "-x -c work_mem=8MB -c TimeZone=UTC"})
        rows, err = c.query("SHOW TimeZone")
        assert err is None and rows[0][0] == "UTC"
        rows, err = c.query("SHOW work_mem")
        assert rows[0][0] == "4MB"


# --- disable_pqexec ------------------------------------------------------------------------


def test_disable_pqexec(pooler):
    p = pooler(disable_pqexec=1)
    # extended protocol (psycopg) works
    with p.connect() as c:
        assert c.execute("SELECT %s::int", [7]).fetchone()[0] == 7
    with p.raw() as c:
        c.login("md5user", password=PASSWORDS["md5user"])
        c.send(message(b"Q", b"SELECT 1\0"))
        err = c.expect_error_and_close()
        assert err["M"] == "PQexec disallowed" and err["C"] == "08P01"


# --- server_round_robin ------------------------------------------------------------------


def backend_pids_seen(p, n=6):
    with p.connect() as c1, p.connect() as c2:
        # two servers: both clients inside a transaction at once
        c1.execute("BEGIN")
        c2.execute("BEGIN")
        both = {c1.execute("SELECT pg_backend_pid()").fetchone()[0],
                c2.execute("SELECT pg_backend_pid()").fetchone()[0]}
        c1.execute("COMMIT")
        c2.execute("COMMIT")
        assert len(both) == 2
        # prepare=False: a psycopg auto-prepare would be a round trip of its own
        return [c1.execute("SELECT pg_backend_pid()", prepare=False).fetchone()[0]
                for _ in range(n)]


def test_server_round_robin(pooler):
    lifo = backend_pids_seen(pooler(pool_mode="transaction"))
    assert len(set(lifo)) == 1, lifo  # LIFO: the last released server again
    fifo = backend_pids_seen(pooler(pool_mode="transaction", server_round_robin=1))
    assert len(set(fifo)) == 2, fifo
    assert all(a != b for a, b in zip(fifo, fifo[1:])), fifo  # strictly alternating


# --- server_fast_close -------------------------------------------------------------------


def reconnect(p):
    with admin_conn(p) as a:
        rows, err = a.query("RECONNECT")
        assert err is None, err


def test_server_fast_close_at_transaction_end(pooler):
    p = with_admin(pooler, server_fast_close=1)
    with p.connect() as c:
        c.execute("BEGIN")
        c.execute("SELECT 1")
        reconnect(p)
        time.sleep(0.8)  # janitor ticks: the server is in a transaction, so it stays
        assert c.execute("SELECT 2").fetchone()[0] == 2
        c.execute("COMMIT")
        with pytest.raises(psycopg.OperationalError):
            c.execute("SELECT 3")
    assert "database configuration changed" in p.log_text()
    # an idle session is closed by the janitor
    with p.connect() as c:
        c.execute("SELECT 1")
        reconnect(p)
        wait_until(lambda: "database configuration changed" in p.log_text(), 5)
        with pytest.raises(psycopg.OperationalError):
            time.sleep(0.8)
            c.execute("SELECT 4")


def test_without_server_fast_close_session_survives(pooler):
    p = with_admin(pooler)
    with p.connect() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        reconnect(p)
        time.sleep(1)
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid


# --- connect_query --------------------------------------------------------------------------


def test_connect_query(pooler, pg_cluster):
    dbs = {TESTDB: pg_cluster.db_line() + " connect_query='SET statement_timeout = 12345'"}
    p = pooler(databases=dbs, server_reset_query="")
    with p.connect() as c:
        assert c.execute("SHOW statement_timeout").fetchone()[0] == "12345ms"
    # a failing connect_query is logged and ignored
    dbs = {TESTDB: pg_cluster.db_line() + " connect_query='SELECT * FROM no_such_table_cq'"}
    p = pooler(databases=dbs)
    p.assert_serves()
    assert "no_such_table_cq" in p.log_text()


# --- host lists ----------------------------------------------------------------------------


def server_addrs(p, n):
    conns = [p.connect() for _ in range(n)]
    try:
        return [c.execute("SELECT inet_server_addr()::text").fetchone()[0] for c in conns]
    finally:
        for c in conns:
            c.close()


def host_list_db(pg, hosts, **extra):
    line = f"host={hosts} port={pg.port} dbname={TESTDB}"
    return {TESTDB: " ".join([line] + [f"{k}={v}" for k, v in extra.items()])}


def test_host_list_round_robin(pooler, pg_cluster):
    p = pooler(databases=host_list_db(pg_cluster, f"{pg_cluster.unix_dir},127.0.0.1"))
    addrs = server_addrs(p, 4)
    # unix socket (NULL) and TCP alternate, one new connection each
    assert addrs == [None, "127.0.0.1/32", None, "127.0.0.1/32"], addrs


def test_host_list_disable_sticks_until_failure(pooler, pg_cluster):
    p = pooler(databases=host_list_db(pg_cluster, f"{pg_cluster.unix_dir},127.0.0.1",
                                      load_balance_hosts="disable"))
    assert server_addrs(p, 3) == [None, None, None]
    # the first host fails: the pool moves on and stays on the second
    p = pooler(databases=host_list_db(pg_cluster, "/nonexistent-dir,127.0.0.1",
                                      load_balance_hosts="disable"))

    def login():
        try:
            with p.connect() as c:
                c.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False
    wait_until(login, 10, interval=0.2, what="login after the first host failed")
    assert server_addrs(p, 3) == ["127.0.0.1/32"] * 3


# --- TCP socket options ---------------------------------------------------------------------

SYS_pidfd_open, SYS_pidfd_getfd = 434, 438
libc = ctypes.CDLL(None, use_errno=True)


def pooler_sockets(pid):
    """Copies of the TCP sockets of process pid: list of socket objects (caller closes)."""
    pidfd = libc.syscall(SYS_pidfd_open, pid, 0)
    if pidfd < 0:
        pytest.skip("pidfd_open not available")
    out = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
            if fd < 0:
                if ctypes.get_errno() == 1:
                    pytest.skip("pidfd_getfd not permitted")
                continue
            s = socket.socket(fileno=fd)
            if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM:
                out.append(s)
            else:
                s.close()
    finally:
        os.close(pidfd)
    return out


def opt(s, level, name):
    return s.getsockopt(level, name)


def test_tcp_socket_options(pooler, pg_cluster):
    p = pooler(tcp_keepalive=1, tcp_keepcnt=5, tcp_keepidle=61, tcp_keepintvl=7,
               tcp_user_timeout=12345, tcp_socket_buffer=65536, tcp_defer_accept=1)
    with p.connect() as c:
        c.execute("SELECT 1")
        socks = pooler_sockets(p.proc.pid)
        try:
            listener = [s for s in socks if s.getsockname()[1] == p.port and
                        opt(s, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)]
            clients = [s for s in socks if s.getsockname()[1] == p.port and
                       not opt(s, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)]
            servers = [s for s in socks if not opt(s, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                       and s.getpeername()[1] == pg_cluster.port]
            assert listener and clients and servers, (listener, clients, servers)
            assert opt(listener[0], socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
            for s in clients + servers:
                assert opt(s, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert opt(s, socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 5
                assert opt(s, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 61
                assert opt(s, socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7
                assert opt(s, socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 12345
                assert opt(s, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                # the kernel doubles the requested size for its bookkeeping
                assert opt(s, socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 65536
                assert opt(s, socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 65536
        finally:
            for s in socks:
                s.close()


def test_tcp_options_off(pooler):
    p = pooler(tcp_keepalive=0, tcp_defer_accept=0)
    with p.connect() as c:
        c.execute("SELECT 1")
        socks = pooler_sockets(p.proc.pid)
        try:
            listener = [s for s in socks if opt(s, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)]
            conns = [s for s in socks if not opt(s, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)]
            assert listener and conns
            assert opt(listener[0], socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0
            for s in conns:
                assert opt(s, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        finally:
            for s in socks:
                s.close()


# --- syslog -----------------------------------------------------------------------------


def test_syslog(pooler):
    """With a /dev/log receiver (created here when the system has none and we are root),
    log lines arrive there with syslog_ident; without one, logging to the file and
    serving still work."""
    own_devlog = None
    if not os.path.exists("/dev/log") and os.geteuid() == 0:
        own_devlog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        own_devlog.bind("/dev/log")
        os.chmod("/dev/log", 0o666)
        own_devlog.settimeout(0.2)
    try:
        p = pooler(syslog=1, syslog_ident="pvtest-ident", syslog_facility="local3")
        p.assert_serves()
        assert "process up" in p.log_text()
        if own_devlog is not None:
            got = []

            def seen():
                try:
                    got.append(own_devlog.recv(65536).decode(errors="replace"))
                except socket.timeout:
                    pass
                return any("process up" in g for g in got)
            wait_until(seen, 5, what="syslog datagram")
            line = next(g for g in got if "process up" in g)
            assert "pvtest-ident[" in line
            # facility local3 (19) * 8 + LOG_INFO (6) = 158
            assert line.startswith("<158>"), line
    finally:
        if own_devlog is not None:
            own_devlog.close()
            os.unlink("/dev/log")


# --- daemon mode ------------------------------------------------------------------------


def run_pooler_cmd(p, *args, timeout=20):
    return p.runas.run([p.sess.bin, *args, p.ini], cwd=p.dir, timeout=timeout)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_daemon_mode_and_pidfile(pooler):
    p = pooler(start=False, pidfile=None, logfile=None)
    pidfile = os.path.join(p.dir, "pgvigil.pid")
    logfile = os.path.join(p.dir, "daemon.log")
    # -d without a pidfile is refused
    r = run_pooler_cmd(p, "-d")
    assert r.returncode == 1 and "pidfile" in (r.stdout + r.stderr)
    with open(p.ini, "a") as f:
        f.write(f"pidfile = {pidfile}\nlogfile = {logfile}\n")
    # a stale pidfile (dead process) is removed
    dead = subprocess.Popen(["true"])
    dead.wait()
    p.runas.write(pidfile, f"{dead.pid}\n")
    r = run_pooler_cmd(p, "-d")
    assert r.returncode == 0, r.stdout + r.stderr
    pid = None
    try:
        def daemon_pid():
            try:
                with open(pidfile) as f:
                    v = int(f.read().strip() or 0)
                return v if v != dead.pid and pid_alive(v) else None
            except (OSError, ValueError):
                return None
        pid = wait_until(daemon_pid, 10, what="daemon pidfile")
        wait_until(lambda: pvtest.port_accepts(p.host, p.port), 10, what="daemon to listen")
        with p.connect() as c:
            assert c.execute("SELECT 1").fetchone()[0] == 1
        # detached: a session of its own (double fork: the first child led it)
        assert os.getsid(pid) != os.getsid(0)
        # a second instance refuses to start while the pidfile names a live process
        r = run_pooler_cmd(p, "-d")
        assert r.returncode == 1
        with open(logfile) as f:
            assert "is running" in f.read()  # -d: logs go to the logfile only
        assert pid_alive(pid)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), 10, what="daemon to exit")
        pid = None
        assert not os.path.exists(pidfile)
        with open(logfile) as f:
            text = f.read()
        assert "process up" in text and "removing stale pidfile" in text
    finally:
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
