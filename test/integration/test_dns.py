"""[databases] entries given by host name resolve through c-ares on the event
loop (src/dns.c), and SHOW DNS_HOSTS shows the cached name.
"""
import pytest

import pvtest
from pvtest import TESTDB

ADMIN_PW = "adm-secret"


def dns_pooler(pooler, pg, host="localhost"):
    line = pg.db_line().replace(f"host={pg.host}", f"host={host}")
    assert f"host={host}" in line
    userlist = dict(pvtest.PASSWORDS)
    userlist["adm"] = ADMIN_PW
    return pooler(databases={TESTDB: line}, userlist=userlist, admin_users="adm")


def admin_query(p, sql):
    with p.raw(timeout=10) as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        rows, err = a.query(sql)
        assert err is None, err
        return rows


def test_hostname_db_entry_works_and_is_cached(pooler, pg_cluster):
    p = dns_pooler(pooler, pg_cluster)
    with p.connect("md5user") as c:
        assert c.execute("SELECT inet_server_addr()::text").fetchone()[0].startswith("127.0.0.1")
    rows = admin_query(p, "SHOW DNS_HOSTS")
    hosts = {r[0]: r for r in rows}
    assert "localhost" in hosts, rows
    assert "127.0.0.1" in hosts["localhost"][2], rows
    lists = {r[0]: int(r[1]) for r in admin_query(p, "SHOW LISTS")}
    assert lists["dns_names"] >= 1
    # a second server connection (new pool user) is served from the cache
    p.assert_serves("scramuser")


def test_unknown_hostname_fails_login(pooler, pg_cluster):
    p = dns_pooler(pooler, pg_cluster, host="no-such-host.invalid")
    with pytest.raises(Exception) as ei:
        p.connect("md5user")
    assert "server login failed" in str(ei.value) or "DNS" in str(ei.value), str(ei.value)
    assert "server DNS lookup failed" in p.log_text()
