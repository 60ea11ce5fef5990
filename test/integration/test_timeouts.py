"""Timeouts: server lifetime / idle / connect / login retry / health check,
query, wait, idle, login, transaction timeouts, and the queue and login
notices. Each is checked from the client (error text), from the pooler's
log, and where useful from PostgreSQL (pg_stat_activity).
"""
import re
import socket
import time

import psycopg
import pytest

import pvtest
from test_limits import backends, run_in_thread, tagged, wait_backends


def pid(c):
    return c.execute("SELECT pg_backend_pid()").fetchone()[0]


def log_times(p, text):
    """Seconds-of-day of each log line that contains text."""
    out = []
    for line in p.log_text().splitlines():
        if text in line:
            h, m, s = re.search(r" (\d\d):(\d\d):(\d\d\.\d+) ", line).groups()
            out.append(int(h) * 3600 + int(m) * 60 + float(s))
    return out


def wait_log(p, text, timeout=3):
    pvtest.wait_until(lambda: text in p.log_text(), timeout, what=f"log line {text!r}")


def failing_query(c, sql="SELECT 1"):
    with pytest.raises(psycopg.OperationalError) as ei:
        c.execute(sql)
    return str(ei.value)


# --- server side ----------------------------------------------------------------

def test_server_lifetime_closes_are_spread(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, server_lifetime=1.2, default_pool_size=2,
               pool_mode="session")
    with p.connect() as a, p.connect() as b:
        old = {pid(a), pid(b)}
    # both servers pass their lifetime together; the second close waits lifetime/pool_size
    pvtest.wait_until(lambda: len(log_times(p, "server lifetime over")) == 2, 5,
                      what="two lifetime closes")
    first, second = log_times(p, "server lifetime over")
    assert second - first >= 0.5, (first, second)
    with p.connect() as c:
        assert pid(c) not in old


def test_server_idle_timeout_respects_min_pool_size(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, server_idle_timeout=0.5, min_pool_size=1,
               pool_mode="session")
    with p.connect() as a, p.connect() as b:
        a.execute("SELECT 1")
        b.execute("SELECT 1")
    wait_backends(pg_cluster, tag, 1)
    time.sleep(0.8)
    assert backends(pg_cluster, tag) == 1
    wait_log(p, "closing because: server idle timeout")


def test_server_connect_timeout(pooler, pg_cluster):
    # a listener that never answers: the TCP connect succeeds, the login never does
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        p = pooler(databases={pvtest.TESTDB: f"host=127.0.0.1 port={port} dbname=x"},
                   server_connect_timeout=0.5)
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ei:
            p.connect().close()
        assert time.monotonic() - start < 3
        assert "connect timeout" in str(ei.value)
        wait_log(p, "closing because: connect timeout")
    finally:
        silent.close()


def test_server_login_retry_backoff(pooler, pg_cluster):
    closed = pvtest.free_port()
    p = pooler(databases={pvtest.TESTDB: f"host=127.0.0.1 port={closed} dbname=x"},
               server_login_retry=1)

    def attempts():
        return sum(1 for line in p.log_text().splitlines()
                   if "WARNING" in line and "connect failed" in line)
    for _ in range(3):
        with pytest.raises(psycopg.OperationalError):
            p.connect().close()
    assert attempts() == 1  # the later clients got the cached error at once
    time.sleep(1.2)
    with pytest.raises(psycopg.OperationalError):
        p.connect().close()
    assert attempts() == 2


CHECK = "SELECT set_config('pv.checked', 'yes', false)"


def checked(c):
    return c.execute("SELECT current_setting('pv.checked', true)").fetchone()[0]


def test_server_check_query_after_check_delay(pooler):
    p = pooler(server_check_delay=0.4, server_check_query=CHECK, default_pool_size=1,
               pool_mode="session")
    with p.connect() as c:
        first = pid(c)
        assert checked(c) in (None, "")
    time.sleep(1)  # idle longer than server_check_delay: checked before reuse
    with p.connect() as c:
        assert pid(c) == first
        assert checked(c) == "yes"


def test_server_check_delay_zero_checks_every_reuse(pooler):
    p = pooler(server_check_delay=0, server_check_query=CHECK, default_pool_size=1,
               pool_mode="transaction")
    with p.connect() as c:
        c.execute("SELECT set_config('pv.checked', 'no', false)")
        assert checked(c) == "yes"


def test_server_check_query_empty_disables_check(pooler):
    p = pooler(server_check_delay=0, server_check_query="", default_pool_size=1,
               pool_mode="transaction")
    with p.connect() as c:
        c.execute("SELECT set_config('pv.checked', 'no', false)")
        assert checked(c) == "no"


def test_failing_check_query_replaces_server(pooler):
    p = pooler(server_check_delay=0, server_check_query="SELECT * FROM no_such_table",
               default_pool_size=1, pool_mode="transaction")
    with p.connect() as c:
        first = pid(c)
        assert pid(c) != first
    wait_log(p, "closing because: check query failed")


# --- client side ------------------------------------------------------------------

def test_query_timeout_disconnects_server_and_client(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, query_timeout=0.5, pool_mode="transaction")
    with p.connect() as c:
        start = time.monotonic()
        assert "query timeout" in failing_query(c, "SELECT pg_sleep(1.5)")
        assert time.monotonic() - start < 1.4
    wait_log(p, "closing because: query timeout")
    wait_backends(pg_cluster, tag, 0)  # the backend ends once pg_sleep notices
    p.assert_serves()


@pytest.mark.parametrize("where", ["db", "user"])
def test_query_wait_timeout_precedence(pooler, pg_cluster, where):
    db_line = pg_cluster.db_line(query_wait_timeout=0.5 if where == "db" else 30)
    users = {"md5user": "query_wait_timeout=0.5"} if where == "user" else None
    p = pooler(databases={pvtest.TESTDB: db_line}, users=users, query_wait_timeout=30,
               default_pool_size=1, pool_mode="session")
    with p.connect() as a, p.connect() as b:
        a.execute("SELECT 1")  # holds the only server
        start = time.monotonic()
        assert "query_wait_timeout" in failing_query(b)
        assert time.monotonic() - start < 3


def test_query_wait_notify_notice(pooler):
    p = pooler(query_wait_notify=1, default_pool_size=1, pool_mode="session")
    with p.connect() as a, p.connect() as b:
        a.execute("SELECT 1")
        notices = []
        b.add_notice_handler(lambda d: notices.append(d.message_primary))
        t, out = run_in_thread(lambda: b.execute("SELECT 7").fetchone())
        pvtest.wait_until(lambda: notices, 4, what="queue notice")
        assert notices == ["No server connection available in postgres backend, "
                           "client being queued"]
        a.close()
        t.join(5)
        assert out.get("value") == (7,), out


def test_client_idle_timeout(pooler):
    p = pooler(client_idle_timeout=0.5, pool_mode="transaction")
    with p.connect() as c:
        c.execute("SELECT 1")
        time.sleep(1.2)
        failing_query(c)
    wait_log(p, "closing because: client_idle_timeout")


def test_client_login_timeout(pooler):
    # tcp_defer_accept (on by default on Linux) would keep a silent client in the kernel
    p = pooler(client_login_timeout=0.5, tcp_defer_accept=0)
    with p.raw() as r:  # connects and sends nothing
        err = r.expect_error_and_close()
    assert err.get("M") == "client_login_timeout"


def test_idle_transaction_timeout_user_override(pooler, pg_cluster):
    line, tag = tagged(pg_cluster)
    p = pooler(databases={pvtest.TESTDB: line}, idle_transaction_timeout=60,
               users={"md5user": "idle_transaction_timeout=0.5"}, pool_mode="transaction")
    with p.connect() as c:
        c.execute("BEGIN")
        c.execute("SELECT 1")
        wait_backends(pg_cluster, tag, 0, timeout=3)  # server closed from the pooler side
        failing_query(c)
    wait_log(p, "closing because: idle transaction timeout")


def test_transaction_timeout_user_override(pooler):
    p = pooler(transaction_timeout=60, users={"md5user": "transaction_timeout=0.8"},
               pool_mode="transaction")
    with p.connect() as c:
        c.execute("BEGIN")
        with pytest.raises(psycopg.OperationalError) as ei:
            for _ in range(20):  # busy, never idle: only the whole transaction is too long
                c.execute("SELECT pg_sleep(0.2)")
        assert "transaction timeout" in str(ei.value)
    wait_log(p, "closing because: transaction timeout")
    # outside a transaction nothing is cut
    with p.connect() as c:
        for _ in range(6):
            c.execute("SELECT pg_sleep(0.2)")


def test_login_notify_message(pooler):
    p = pooler(auth_type="trust", login_notify_message="welcome to pgvigil")
    with p.raw() as r:
        r.startup({"user": "md5user", "database": pvtest.TESTDB})
        notices = []
        while True:
            tag, body = r.recv_msg()
            if tag == b"N":
                notices.append(pvtest.parse_error(body).get("M"))
            if tag == b"Z":
                break
    assert notices == ["welcome to pgvigil"]
