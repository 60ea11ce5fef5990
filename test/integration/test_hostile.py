"""Malformed and unusual startup traffic: the pooler answers or closes, and keeps serving."""
import os
import socket
import struct

import pytest

import pvtest
from pvtest import PROTO_3, SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST, message, startup_packet


@pytest.fixture
def bouncer(pooler):
    # trust keeps the raw clients simple; max_packet_size small for the oversize test
    return pooler(auth_type="trust", pool_mode="transaction", max_packet_size=1024)


def closed_by_peer(r):
    """Read until the pooler closes the connection (bounded by the socket timeout).
    Returns the ErrorResponse fields seen (possibly empty)."""
    try:
        return r.expect_error_and_close()
    except socket.timeout:
        raise AssertionError("pooler kept a bad connection open")


def test_truncated_startup_packet_then_close(bouncer):
    with bouncer.raw() as r:
        r.send(struct.pack("!I", 100) + struct.pack("!I", PROTO_3) + b"user")
    bouncer.assert_serves()


def test_partial_startup_packet_does_not_block_others(bouncer):
    with bouncer.raw() as r:
        r.send(struct.pack("!I", 100) + b"\x00\x03")
        bouncer.assert_serves()
        bouncer.assert_serves("scramuser")


@pytest.mark.parametrize("length", [0, 4, 7])
def test_startup_length_too_small(bouncer, length):
    with bouncer.raw() as r:
        r.send(struct.pack("!I", length) + struct.pack("!I", PROTO_3) + b"\0" * 8)
        closed_by_peer(r)
    bouncer.assert_serves()


@pytest.mark.parametrize("length", [20000, 70000, 0x7FFFFFFF])
def test_startup_length_huge_garbage(bouncer, length):
    with bouncer.raw() as r:
        try:
            r.send(struct.pack("!I", length) + os.urandom(12000))
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed_by_peer(r)
    bouncer.assert_serves()


@pytest.mark.parametrize("seed", range(3))
def test_random_garbage(bouncer, seed):
    import random
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(300))
    with bouncer.raw() as r:
        try:
            r.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed_by_peer(r)
    bouncer.assert_serves()


def test_http_request_is_rejected(bouncer):
    with bouncer.raw() as r:
        r.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        closed_by_peer(r)
    bouncer.assert_serves()


@pytest.mark.parametrize("code", [SSL_REQUEST, GSSENC_REQUEST], ids=["ssl", "gssenc"])
def test_encryption_request_answered_n_then_plain_startup(bouncer, code):
    with bouncer.raw() as r:
        r.send(struct.pack("!II", 8, code))
        assert r.recv_bytes(1) == b"N"
        r.login("md5user")
        assert r.query("SELECT 'plain after N'") == ([["plain after N"]], None)
    bouncer.assert_serves()


def test_gssenc_then_ssl_request_both_refused(bouncer):
    # libpq with gssencmode=prefer and sslmode=prefer sends GSSENCRequest then SSLRequest
    with bouncer.raw() as r:
        r.send(struct.pack("!II", 8, GSSENC_REQUEST))
        assert r.recv_bytes(1) == b"N"
        r.send(struct.pack("!II", 8, SSL_REQUEST))
        assert r.recv_bytes(1) == b"N"
        r.login("md5user")
        assert r.query("SELECT 1") == ([["1"]], None)


def test_protocol_2_rejected(bouncer):
    with bouncer.raw() as r:
        r.send(startup_packet({"user": "md5user", "database": "testdb"}, proto=0x20000))
        err = closed_by_peer(r)
        # spec 5.1: "old V2 protocol not supported" (PgBouncer 1.18 capitalises "Old")
        assert "old v2 protocol not supported" in err.get("M", "").lower(), err
    bouncer.assert_serves()


def test_unknown_protocol_major_rejected(bouncer):
    with bouncer.raw() as r:
        r.send(startup_packet({"user": "md5user", "database": "testdb"}, proto=(7 << 16)))
        closed_by_peer(r)
    bouncer.assert_serves()


def test_protocol_3_minor_negotiated_down(bouncer):
    # spec 5.1: 3.x>0 -> NegotiateProtocolVersion(3.0) listing unsupported _pq_ options
    with bouncer.raw() as r:
        r.send(startup_packet({"user": "md5user", "database": "testdb", "_pq_.pv_test": "1"},
                              proto=(3 << 16) | 2))
        tag, body = r.recv_msg()
        assert tag == b"v", (tag, body)
        newest, n = struct.unpack("!II", body[:8])
        assert newest == PROTO_3
        assert n == 1 and body[8:].split(b"\0")[0] == b"_pq_.pv_test"
        while tag != b"Z":
            tag, body = r.recv_msg()
            assert tag != b"E", pvtest.parse_error(body)
        assert r.query("SELECT 3") == ([["3"]], None)


def test_startup_without_user(bouncer):
    with bouncer.raw() as r:
        r.send(startup_packet({"database": "testdb"}))
        err = closed_by_peer(r)
        assert "no username supplied" in err.get("M", ""), err
        assert err.get("S") == "FATAL"
    bouncer.assert_serves()


def test_startup_missing_terminator(bouncer):
    body = struct.pack("!I", PROTO_3) + b"user\0md5user\0database\0testdb\0"  # no final \0
    with bouncer.raw(timeout=2) as r:
        r.send(struct.pack("!I", len(body) + 4) + body)
        err = closed_by_peer(r)
        assert err.get("S") == "FATAL", err
        # spec 5.1: "invalid startup packet layout: expected terminator as last byte"
        assert "invalid startup packet layout" in err.get("M", ""), err
    bouncer.assert_serves()


def test_startup_key_without_value(bouncer):
    # database with an empty value, then the list terminator
    body = struct.pack("!I", PROTO_3) + b"user\0md5user\0database\0\0\0"
    with bouncer.raw() as r:
        r.send(struct.pack("!I", len(body) + 4) + body)
        try:
            msgs = r.read_until_closed()
        except socket.timeout:
            raise AssertionError("no answer to odd startup packet")
        # empty database name means "same as user": no such database
        errs = [pvtest.parse_error(b) for t, b in msgs if t == b"E"]
        assert errs and "no such database: md5user" in errs[0].get("M", ""), msgs
    bouncer.assert_serves()


def test_unsupported_startup_parameter(bouncer):
    with bouncer.raw() as r:
        r.send(startup_packet({"user": "md5user", "database": "testdb", "frobnicate": "yes"}))
        err = closed_by_peer(r)
        assert err.get("M") == "unsupported startup parameter: frobnicate", err
    bouncer.assert_serves()


def test_cancel_request_with_unknown_key(bouncer):
    with bouncer.raw() as r:
        r.send(struct.pack("!IIII", 16, CANCEL_REQUEST, 12345, 67890))
        msgs = closed_by_peer(r)
        assert msgs == {}
    bouncer.assert_serves()


def test_many_half_open_connections(bouncer):
    socks = []
    try:
        for _ in range(30):
            s = socket.create_connection((bouncer.host, bouncer.port), timeout=5)
            s.sendall(b"\x00\x00")
            socks.append(s)
        bouncer.assert_serves()
    finally:
        for s in socks:
            s.close()
    bouncer.assert_serves()


def test_message_larger_than_max_packet_size(bouncer):
    with bouncer.raw() as r:
        r.login("md5user")
        assert r.query("SELECT 'small'") == ([["small"]], None)
        big = "SELECT '" + "x" * 4096 + "'"
        try:
            r.send(message(b"Q", big.encode() + b"\0"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        msgs = []
        try:
            msgs = r.read_until_closed()
        except socket.timeout:
            raise AssertionError("oversized message neither rejected nor connection closed")
        assert not any(t == b"D" for t, _ in msgs), "oversized query was executed"
    bouncer.assert_serves()
    # a message just under the limit still works
    with bouncer.raw() as r:
        r.login("md5user")
        ok = "SELECT '" + "y" * 900 + "'"
        rows, err = r.query(ok)
        assert err is None and rows == [["y" * 900]]


def test_unknown_message_type_after_login(bouncer):
    with bouncer.raw() as r:
        r.login("md5user")
        try:
            r.send(message(b"\x01", b"junk"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r.read_until_closed()
        except socket.timeout:
            raise AssertionError("pooler kept the connection open after an invalid message")
    bouncer.assert_serves()
