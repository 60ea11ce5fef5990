"""The native Prometheus endpoint (metrics_listen_addr / metrics_listen_port).

The values are checked against what the tests themselves did (queries run,
connections held open), and against SHOW POOLS / SHOW STATS when the admin
console answers.
"""
import shutil
import subprocess
import threading
import time

import pytest

import promtext
import pvtest

DB = pvtest.TESTDB

EXPORTER_NAMES = {
    # name: labels every sample carries
    "pgbouncer_up": set(),
    "pgbouncer_version_info": {"version"},
    "pgbouncer_config_max_client_connections": set(),
    "pgbouncer_config_max_user_connections": set(),
    "pgbouncer_databases": set(),
    "pgbouncer_users": set(),
    "pgbouncer_pools": set(),
    "pgbouncer_used_clients": set(),
    "pgbouncer_login_clients": set(),
    "pgbouncer_used_servers": set(),
    "pgbouncer_databases_current_connections": {"name", "database", "host", "port", "force_user",
                                                "pool_mode"},
    "pgbouncer_databases_max_connections": {"name", "database"},
    "pgbouncer_databases_pool_size": {"name", "database"},
    "pgbouncer_databases_reserve_pool_size": {"name", "database"},
    "pgbouncer_databases_paused": {"name", "database"},
    "pgbouncer_databases_disabled": {"name", "database"},
    "pgbouncer_pools_client_active_connections": {"database", "user"},
    "pgbouncer_pools_client_waiting_connections": {"database", "user"},
    "pgbouncer_pools_client_active_cancel_connections": {"database", "user"},
    "pgbouncer_pools_client_waiting_cancel_connections": {"database", "user"},
    "pgbouncer_pools_server_active_connections": {"database", "user"},
    "pgbouncer_pools_server_active_cancel_connections": {"database", "user"},
    "pgbouncer_pools_server_being_canceled_connections": {"database", "user"},
    "pgbouncer_pools_server_idle_connections": {"database", "user"},
    "pgbouncer_pools_server_used_connections": {"database", "user"},
    "pgbouncer_pools_server_testing_connections": {"database", "user"},
    "pgbouncer_pools_server_login_connections": {"database", "user"},
    "pgbouncer_pools_client_maxwait_seconds": {"database", "user"},
    "pgbouncer_stats_queries_pooled_total": {"database"},
    "pgbouncer_stats_queries_duration_seconds_total": {"database"},
    "pgbouncer_stats_sql_transactions_pooled_total": {"database"},
    "pgbouncer_stats_server_in_transaction_seconds_total": {"database"},
    "pgbouncer_stats_received_bytes_total": {"database"},
    "pgbouncer_stats_sent_bytes_total": {"database"},
    "pgbouncer_stats_client_wait_seconds_total": {"database"},
}


def metrics_pooler(pooler, **ini):
    port = pvtest.free_port()
    p = pooler(metrics_listen_addr="127.0.0.1", metrics_listen_port=port, **ini)
    p.metrics_port = port
    pvtest.wait_until(lambda: not promtext.port_closed(port), 10, what="metrics listener")
    return p


def promtool_check(text):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (scripts/install-deps.sh installs prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics failed (rc={r.returncode}):\n{r.stdout}\n{r.stderr}"


def pool_value(samples, name, user="md5user"):
    return promtext.value(samples, name, database=DB, user=user)


def stat_value(samples, name):
    return promtext.value(samples, name, database=DB)


def test_metrics_off_by_default(pooler):
    p = pooler()
    p.assert_serves()
    assert "metrics: listening" not in p.log_text()
    assert promtext.tcp_listen_ports(p.proc.pid) == {p.port}


def test_metrics_format_passes_promtool(pooler):
    p = metrics_pooler(pooler)
    clients = [p.connect("md5user") for _ in range(3)]
    try:
        for c in clients:
            c.execute("SELECT 1")
        status, ctype, body = promtext.fetch(p.metrics_port)
        assert status == 200
        assert ctype.startswith("text/plain") and "version=0.0.4" in ctype
        promtool_check(body)
        samples = promtext.parse(body)
        for name, labels in EXPORTER_NAMES.items():
            assert name in samples, f"{name} missing"
            assert f"# TYPE {name} " in body and f"# HELP {name} " in body
            for lb, _ in samples[name]:
                assert labels <= set(lb), f"{name} labels {lb} lack {labels}"
        assert promtext.value(samples, "pgbouncer_up") == 1
        assert promtext.value(samples, "pgbouncer_version_info", version="PgBouncer 1.25.2") == 1
        assert promtext.value(samples, "pgbouncer_config_max_client_connections") == 100
        assert pool_value(samples, "pgbouncer_pools_client_active_connections") == 3
        assert promtext.value(samples, "pgbouncer_databases_current_connections", name=DB) == 3
        # every counter family is a _total
        for line in body.splitlines():
            if line.startswith("# TYPE ") and line.endswith(" counter"):
                assert line.split()[2].endswith("_total"), line
    finally:
        for c in clients:
            c.close()


def test_metrics_other_paths(pooler):
    p = metrics_pooler(pooler)
    assert promtext.fetch(p.metrics_port, "/")[0] == 404
    assert promtext.fetch(p.metrics_port, "/metricsx")[0] == 404
    assert promtext.fetch(p.metrics_port, "/metrics?x=1")[0] == 200
    # a client that connects and says nothing does not stall the pooler
    with pvtest.socket.create_connection(("127.0.0.1", p.metrics_port)):
        p.assert_serves()
        assert promtext.fetch(p.metrics_port)[0] == 200


def test_metrics_label_escaping(pooler, pg_cluster):
    import psycopg
    name = 'we"ird\\db'
    p = metrics_pooler(pooler, databases={'"we""ird\\db"': pg_cluster.db_line(),
                                          DB: pg_cluster.db_line()})
    with psycopg.connect(host=p.host, port=p.port, dbname=name, user="md5user",
                         password=pvtest.PASSWORDS["md5user"], autocommit=True) as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    body = promtext.fetch(p.metrics_port)[2]
    promtool_check(body)
    assert 'database="we\\"ird\\\\db"' in body
    samples = promtext.parse(body)
    assert promtext.value(samples, "pgbouncer_stats_queries_pooled_total", database=name) == 1


def run_queries(pool_port_dsn, n, errors):
    import psycopg
    try:
        # prepare_threshold=None: psycopg would otherwise PREPARE on the 5th run,
        # a round trip (and so a counted request) of its own.
        with psycopg.connect(pool_port_dsn, autocommit=True, prepare_threshold=None) as c:
            for i in range(n):
                assert c.execute("SELECT %s::int", [i]).fetchone()[0] == i
    except Exception as e:  # reported by the main thread
        errors.append(e)


def test_metrics_match_load(pooler):
    """Counters equal the queries the test ran; scraping under load works."""
    p = metrics_pooler(pooler, pool_mode="transaction", default_pool_size=3)
    before = promtext.scrape(p.metrics_port)
    assert stat_value(before, "pgbouncer_stats_queries_pooled_total") in (None, 0)
    threads, errors, per_thread = [], [], 150
    for _ in range(5):
        t = threading.Thread(target=run_queries, args=(p.dsn("md5user"), per_thread, errors))
        t.start()
        threads.append(t)
    scrapes = 0
    while any(t.is_alive() for t in threads):
        samples = promtext.scrape(p.metrics_port)
        # no sample yet while the first client is still connecting (no pool exists)
        assert (pool_value(samples, "pgbouncer_pools_server_active_connections") or 0) <= 3
        scrapes += 1
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert not errors, errors
    total = 5 * per_thread
    after = promtext.scrape(p.metrics_port)
    assert stat_value(after, "pgbouncer_stats_queries_pooled_total") == total
    assert stat_value(after, "pgbouncer_stats_sql_transactions_pooled_total") == total
    assert stat_value(after, "pgbouncer_stats_received_bytes_total") > total * 20
    assert stat_value(after, "pgbouncer_stats_sent_bytes_total") > total * 20
    assert stat_value(after, "pgbouncer_stats_queries_duration_seconds_total") > 0
    assert stat_value(after, "pgbouncer_stats_server_in_transaction_seconds_total") > 0
    assert stat_value(after, "pgbouncer_stats_client_wait_seconds_total") >= 0
    # all clients gone: nothing active or waiting, the servers idle in the pool
    assert pool_value(after, "pgbouncer_pools_client_active_connections") == 0
    assert pool_value(after, "pgbouncer_pools_client_waiting_connections") == 0
    assert pool_value(after, "pgbouncer_pools_server_active_connections") == 0
    assert 1 <= pool_value(after, "pgbouncer_pools_server_idle_connections") <= 3


def test_metrics_gauges_follow_open_clients(pooler):
    p = metrics_pooler(pooler, pool_mode="transaction")
    clients = [p.connect("md5user") for _ in range(3)]
    try:
        for c in clients:
            c.execute("SELECT 1")
        s = promtext.scrape(p.metrics_port)
        assert pool_value(s, "pgbouncer_pools_client_active_connections") == 3
        assert pool_value(s, "pgbouncer_pools_client_waiting_connections") == 0
        # transaction mode: idle clients hold no server
        assert pool_value(s, "pgbouncer_pools_server_active_connections") == 0
        assert pool_value(s, "pgbouncer_pools_server_idle_connections") >= 1
        # an open transaction keeps its server active
        tx = p.connect("scramuser", autocommit=False)
        tx.execute("SELECT 1")
        s = promtext.scrape(p.metrics_port)
        assert pool_value(s, "pgbouncer_pools_server_active_connections", "scramuser") == 1
        assert pool_value(s, "pgbouncer_pools_client_active_connections", "scramuser") == 1
        assert promtext.value(s, "pgbouncer_used_clients") == 4
        tx.rollback()
        tx.close()
    finally:
        for c in clients:
            c.close()
    pvtest.wait_until(lambda: pool_value(promtext.scrape(p.metrics_port),
                                         "pgbouncer_pools_client_active_connections") == 0,
                      5, what="clients to be gone")


# --- cross-check with the admin console ------------------------------------------


def admin_conn(p):
    c = p.connect("md5user", db="pgbouncer")
    c.execute("SHOW VERSION").fetchall()
    return c


def rows(conn, sql):
    cur = conn.execute(sql)
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def test_metrics_agree_with_admin_console(pooler):
    p = metrics_pooler(pooler, pool_mode="transaction", admin_users="md5user")
    adm = admin_conn(p)
    clients = [p.connect("scramuser") for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            for _ in range(i + 1):
                c.execute("SELECT 1")
        samples = promtext.scrape(p.metrics_port)
        pools = [r for r in rows(adm, "SHOW POOLS") if r["database"] == DB]
        stats = [r for r in rows(adm, "SHOW STATS") if r["database"] == DB]
        dbs = [r for r in rows(adm, "SHOW DATABASES") if r["name"] == DB]
    finally:
        for c in clients:
            c.close()
        adm.close()
    assert pools and len(stats) == 1 and len(dbs) == 1
    for r in pools:
        for col, name in [("cl_active", "client_active_connections"),
                          ("cl_waiting", "client_waiting_connections"),
                          ("sv_active", "server_active_connections"),
                          ("sv_idle", "server_idle_connections"),
                          ("sv_used", "server_used_connections"),
                          ("sv_tested", "server_testing_connections"),
                          ("sv_login", "server_login_connections")]:
            assert pool_value(samples, "pgbouncer_pools_" + name, r["user"]) == r[col], (col, r)
    st = stats[0]
    assert st["total_query_count"] == 6
    for col, name, scale in [("total_query_count", "queries_pooled_total", 1),
                             ("total_xact_count", "sql_transactions_pooled_total", 1),
                             ("total_query_time", "queries_duration_seconds_total", 1e-6),
                             ("total_xact_time", "server_in_transaction_seconds_total", 1e-6),
                             ("total_wait_time", "client_wait_seconds_total", 1e-6)]:
        assert stat_value(samples, "pgbouncer_stats_" + name) == pytest.approx(
            float(st[col]) * scale), col
    # the admin connection's own traffic is counted in the pgbouncer database
    assert stat_value(samples, "pgbouncer_stats_received_bytes_total") == float(st["total_received"])
    assert stat_value(samples, "pgbouncer_stats_sent_bytes_total") == float(st["total_sent"])
    assert promtext.value(samples, "pgbouncer_databases_pool_size", name=DB) == dbs[0]["pool_size"]
    assert promtext.value(samples, "pgbouncer_databases_current_connections",
                          name=DB) == dbs[0]["current_connections"]
