"""so_reuseport + [peers]: two pgvigil processes on one TCP port forward each
other's CancelRequests (peer_id in cancel key bytes 1-2, TTL in byte 7)."""
import os
import socket
import struct
import time

import pytest

import pvtest
from pvtest import CANCEL_REQUEST, PASSWORDS, TESTDB, message, wait_until

ADMIN_PW = "adm-secret"


def unix_accepts(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
        return True
    except OSError:
        return False


def peer_pair(pooler, pool_size=None):
    userlist = dict(PASSWORDS)
    userlist["adm"] = ADMIN_PW
    port = pvtest.free_port()
    procs = []
    for pid in (1, 2):
        p = pooler(start=False, userlist=userlist, admin_users="adm", listen_port=port,
                   so_reuseport=1, peer_id=pid)
        p.port = port
        procs.append(p)
    for me, other in ((procs[0], procs[1]), (procs[1], procs[0])):
        size = f" pool_size={pool_size}" if pool_size else ""
        with open(me.ini, "a") as f:
            f.write("[peers]\n")
            # each lists both ids: its own entry is ignored
            for pid, p in ((1, procs[0]), (2, procs[1])):
                f.write(f"{pid} = host={p.unix_dir} port={port}{size}\n")
    for p in procs:
        p.start()
        # the shared TCP port answers as soon as one process listens: wait for this one's socket
        path = os.path.join(p.unix_dir, f".s.PGSQL.{port}")
        wait_until(lambda: unix_accepts(path), 10, what="unix socket of " + p.dir)
    return procs


class Conn(pvtest.RawConn):
    """RawConn over TCP or a pooler's unix socket, remembering BackendKeyData."""

    def __init__(self, p, unix=False, timeout=10.0):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(os.path.join(p.unix_dir, f".s.PGSQL.{p.port}"))
            self.buf = b""
        else:
            super().__init__(p.host, p.port, timeout)
        self.key = None

    def login_key(self, user="md5user"):
        self.startup({"user": user, "database": TESTDB})
        while True:
            tag, body = self.recv_msg()
            if tag == b"R" and struct.unpack("!I", body[:4])[0] == 5:
                import hashlib
                pw = PASSWORDS[user]
                inner = hashlib.md5((pw + user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                self.send(message(b"p", b"md5" + outer.encode() + b"\0"))
            elif tag == b"K":
                self.key = body
            elif tag == b"E":
                raise AssertionError(pvtest.parse_error(body))
            elif tag == b"Z":
                return self.key


def send_cancel(p, key, unix=False):
    """A CancelRequest over a new connection; waits until the pooler closes it."""
    pkt = struct.pack("!II", 16, CANCEL_REQUEST) + key
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(p.unix_dir, f".s.PGSQL.{p.port}"))
    else:
        s = socket.create_connection((p.host, p.port))
    s.settimeout(10)
    with s:
        s.sendall(pkt)
        try:
            while s.recv(100):
                pass
        except (ConnectionResetError, socket.timeout):
            pass


def wait_result(c):
    """Read a query's result; return the error fields or None."""
    err = None
    while True:
        tag, body = c.recv_msg()
        if tag == b"E":
            err = pvtest.parse_error(body)
        elif tag == b"Z":
            return err


def admin_rows(p, sql):
    """Admin console of exactly this process: its own unix socket (TCP is shared)."""
    with Conn(p, unix=True) as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        rows, err = a.query(sql)
        assert err is None, err
        return rows


def test_cancel_key_layout(pooler):
    p1, p2 = peer_pair(pooler)
    with Conn(p1, unix=True) as c:
        key = c.login_key()
    assert key[1] | (key[2] << 8) == 1 and key[7] & 3 == 3
    with Conn(p2, unix=True) as c:
        key = c.login_key()
    assert key[1] | (key[2] << 8) == 2 and key[7] & 3 == 3
    rows = admin_rows(p1, "SHOW PEERS")
    assert [r[0] for r in rows] == ["1", "2"] and rows[1][2] == str(p2.port)


def test_cancel_forwarded_via_other_process(pooler):
    p1, p2 = peer_pair(pooler)
    with Conn(p1, unix=True) as c:
        key = c.login_key()
        c.send(message(b"Q", b"SELECT pg_sleep(30)\0"))
        time.sleep(0.3)
        t0 = time.monotonic()
        send_cancel(p2, key, unix=True)  # the other process: must forward to peer 1
        err = wait_result(c)
        assert err and err["C"] == "57014", err
        assert time.monotonic() - t0 < 5
        rows, err = c.query("SELECT 1")
        assert err is None and rows == [["1"]]
    rows = admin_rows(p2, "SHOW PEER_POOLS")
    assert rows and rows[0][0] == "1", rows
    assert [r for r in admin_rows(p2, "SHOW LISTS") if r[0] == "peer_pools"] == [["peer_pools", "1"]]


def test_cancel_over_shared_tcp_port(pooler):
    """Query and cancel connections go to the shared port; the kernel spreads them over
    both processes. Every cancel must land; repeat until one was forwarded."""
    p1, p2 = peer_pair(pooler)
    forwarded = False
    for i in range(40):
        with Conn(p1) as c:
            key = c.login_key()
            c.send(message(b"Q", b"SELECT pg_sleep(30)\0"))
            time.sleep(0.2)
            t0 = time.monotonic()
            send_cancel(p1, key)  # new TCP connection to the shared port
            err = wait_result(c)
            assert err and err["C"] == "57014", (i, err)
            assert time.monotonic() - t0 < 5
        forwarded = any(admin_rows(p, "SHOW PEER_POOLS") for p in (p1, p2))
        if forwarded and i >= 3:
            break
    assert forwarded, "no cancel request was forwarded in 40 tries"


def test_ttl_and_unknown_peer(pooler):
    p1, p2 = peer_pair(pooler)
    with Conn(p1, unix=True) as c:
        key = c.login_key()
        c.send(message(b"Q", b"SELECT pg_sleep(30)\0"))
        time.sleep(0.3)
        # TTL 0: the other process drops it
        send_cancel(p2, key[:7] + bytes([key[7] & ~3]), unix=True)
        # an id nobody has is dropped too
        send_cancel(p2, key[:1] + bytes([9, 0]) + key[3:], unix=True)
        c.sock.settimeout(1.5)
        with pytest.raises(socket.timeout):
            c.recv_msg()
        c.sock.settimeout(10)
        # TTL 1: forwarded once with TTL 0, and the owner ignores the TTL bits
        send_cancel(p2, key[:7] + bytes([(key[7] & ~3) | 1]), unix=True)
        err = wait_result(c)
        assert err and err["C"] == "57014", err
    assert "cancel request TTL expired" not in p1.log_text()
