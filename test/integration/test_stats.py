"""Statistics: counter semantics and the periodic "stats:" log line."""
import re
import subprocess
import threading
import time

import psycopg

import promtext
import pvtest

DB = pvtest.TESTDB
STATS_LINE = re.compile(
    r"LOG stats: (\d+) xacts/s, (\d+) queries/s, (\d+) client parses/s, (\d+) server parses/s, "
    r"(\d+) binds/s, (\d+) client logins/s, in (\d+) B/s, out (\d+) B/s, xact (\d+) us, "
    r"query (\d+) us, wait (\d+) us$")
FIELDS = ["xacts", "queries", "client_parses", "server_parses", "binds", "logins", "in", "out",
          "xact_us", "query_us", "wait_us"]


def stats_lines(p):
    out = []
    for line in p.log_text().splitlines():
        if " stats: " in line:
            m = STATS_LINE.search(line)
            assert m, f"malformed stats line: {line!r}"
            out.append(dict(zip(FIELDS, map(int, m.groups()))))
    return out


def stats_pooler(pooler, **ini):
    port = pvtest.free_port()
    p = pooler(metrics_listen_addr="127.0.0.1", metrics_listen_port=port, **ini)
    p.metrics_port = port
    return p


def totals(p):
    s = promtext.scrape(p.metrics_port)
    get = lambda n: promtext.value(s, "pgbouncer_stats_" + n, database=DB) or 0
    return {"queries": get("queries_pooled_total"),
            "xacts": get("sql_transactions_pooled_total"),
            "query_secs": get("queries_duration_seconds_total"),
            "xact_secs": get("server_in_transaction_seconds_total"),
            "wait_secs": get("client_wait_seconds_total"),
            "received": get("received_bytes_total"),
            "sent": get("sent_bytes_total")}


def connect(p, user="md5user", autocommit=True):
    return psycopg.connect(p.dsn(user), autocommit=autocommit, prepare_threshold=None)


def test_stats_log_line_has_plausible_rates(pooler):
    p = stats_pooler(pooler, stats_period=1, log_stats=1, pool_mode="transaction")
    # a first (idle) line proves the timer runs and prints zeros
    pvtest.wait_until(lambda: stats_lines(p), 5, interval=0.1, what="first stats line")
    n = 300
    with connect(p) as c:
        for i in range(n):
            c.execute("SELECT %s::int", [i])
    assert totals(p)["queries"] == n
    # wait for activity to show up, then for a quiet period after it
    pvtest.wait_until(lambda: any(l["queries"] for l in stats_lines(p)), 5, interval=0.1,
                      what="a stats line with queries")

    def quiet_after_busy():
        lines = stats_lines(p)
        busy = [i for i, l in enumerate(lines) if l["queries"]]
        return busy and any(l["queries"] == 0 for l in lines[busy[-1] + 1:])
    pvtest.wait_until(quiet_after_busy, 6, interval=0.1, what="a quiet stats line")
    lines = stats_lines(p)
    busy = [l for l in lines if l["queries"]]
    # each rate is the period's count / its length (a little over 1 s), truncated
    q = sum(l["queries"] for l in lines)
    x = sum(l["xacts"] for l in lines)
    assert n * 0.8 - len(busy) <= q <= n, lines
    assert n * 0.8 - len(busy) <= x <= n, lines
    for l in busy:
        assert l["in"] > 0 and l["out"] > 0, l
        assert l["query_us"] > 0 and l["xact_us"] > 0, l
        assert l["query_us"] < 1_000_000, l
        assert l["client_parses"] == l["server_parses"] == l["binds"] == 0, l


def test_stats_log_stats_off(pooler):
    p = pooler(stats_period=1, log_stats=0)
    p.assert_serves()
    time.sleep(2.3)
    assert stats_lines(p) == []


def test_stats_count_requests_and_transactions(pooler):
    """query_count = requests (one per ReadyForQuery cycle), xact_count = transactions."""
    p = stats_pooler(pooler, pool_mode="transaction")
    with connect(p) as c:  # autocommit: 3 requests, 3 transactions
        for i in range(3):
            c.execute("SELECT %s::int", [i])
    t = totals(p)
    assert (t["queries"], t["xacts"]) == (3, 3)

    with connect(p, autocommit=False) as c:  # BEGIN, SELECT, SELECT, COMMIT: 1 transaction
        c.execute("SELECT 1")
        c.execute("SELECT 2")
        c.commit()
    t = totals(p)
    assert (t["queries"], t["xacts"]) == (7, 4)

    # one simple-protocol Query with two statements is one request
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-c", "SELECT 1; SELECT 2", p.dsn()],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    t = totals(p)
    assert (t["queries"], t["xacts"]) == (8, 5)

    # a failed transaction still ends at ReadyForQuery 'I' after ROLLBACK
    with connect(p, autocommit=False) as c:
        try:
            c.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero:
            pass
        c.rollback()
    t = totals(p)
    assert (t["queries"], t["xacts"]) == (11, 6)
    assert t["query_secs"] > 0 and t["xact_secs"] >= t["query_secs"] * 0.5
    assert t["received"] > 0 and t["sent"] > 0


def test_stats_transaction_time_spans_the_transaction(pooler):
    p = stats_pooler(pooler, pool_mode="transaction")
    with connect(p, autocommit=False) as c:
        c.execute("SELECT 1")
        time.sleep(0.4)  # idle in transaction: counts for xact_time, not query_time
        c.commit()
    t = totals(p)
    assert t["xact_secs"] >= 0.35
    assert t["query_secs"] < 0.35


def test_stats_wait_time(pooler):
    """A client queued behind a busy pool of one accumulates wait time."""
    p = stats_pooler(pooler, pool_mode="transaction", default_pool_size=1)
    holder = connect(p, "md5user", autocommit=False)
    holder.execute("SELECT 1")  # an open transaction holds the pool's only server
    done = []

    def waiter():
        with connect(p, "md5user") as c:
            c.execute("SELECT 1")
        done.append(True)
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    assert not done
    holder.commit()
    t.join(10)
    assert done
    holder.close()
    assert totals(p)["wait_secs"] >= 0.4
