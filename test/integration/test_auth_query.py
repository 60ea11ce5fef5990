"""auth_user / auth_query / auth_dbname (spec section 4.2): users missing from
auth_file get their credentials from PostgreSQL through a pooled auth_user
connection; the result is cached and also used for the server login.

The auth_user (pvauth) reads pg_authid through a SECURITY DEFINER function, as
the PgBouncer documentation recommends, so it needs no superuser rights.
"""
import os

import psycopg
import pytest

import pvtest
from pvtest import TESTDB

AUTH_PW = "auth-secret"
ADMIN_PW = "adm-secret"
ROLES = {
    # role: (password, password_encryption, extra)
    "aq_md5": ("aqmd5-secret", "md5", ""),
    "aq_scram": ("aqscram-secret", "scram-sha-256", ""),
    "aq_expired": ("aqexp-secret", "scram-sha-256", "VALID UNTIL '2000-01-01'"),
    "aq_nologin": ("aqnl-secret", "scram-sha-256", "NOLOGIN"),
}
LOOKUP_SQL = """
CREATE OR REPLACE FUNCTION public.pv_lookup(p_user text)
RETURNS TABLE(usename name, passwd text)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END
  FROM pg_authid WHERE rolname = p_user AND rolcanlogin
$$;
REVOKE ALL ON FUNCTION public.pv_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pv_lookup(text) TO pvauth;
"""
AUTH_QUERY = "SELECT usename, passwd FROM public.pv_lookup($1)"


@pytest.fixture(scope="module")
def aq_cluster(pg_cluster):
    """Roles and the lookup function (in testdb and postgres); md5 pg_hba for aq_md5."""
    with pg_cluster.connect() as c:
        have = {r[0] for r in c.execute("SELECT rolname FROM pg_roles").fetchall()}
        if "pvauth" not in have:
            c.execute("SET password_encryption = 'scram-sha-256'")
            c.execute(f"CREATE ROLE pvauth LOGIN PASSWORD '{AUTH_PW}'")
        for role, (pw, enc, extra) in ROLES.items():
            if role not in have:
                c.execute(f"SET password_encryption = '{enc}'")
                login = "NOLOGIN" if extra == "NOLOGIN" else f"LOGIN {extra}"
                c.execute(f"CREATE ROLE {role} {login} PASSWORD '{pw}'")
    for db in (TESTDB, "postgres"):
        with pg_cluster.connect(db) as c:
            c.execute(LOOKUP_SQL)
    # An md5-stored password needs an md5 pg_hba line (scram-sha-256 refuses md5 secrets).
    hba = os.path.join(pg_cluster.data, "pg_hba.conf")
    with open(hba) as f:
        text = f.read()
    line = "host all aq_md5 127.0.0.1/32 md5\n"
    if line not in text:
        pg_cluster.runas.write(hba, line + text, 0o600)
        with pg_cluster.connect() as c:
            c.execute("SELECT pg_reload_conf()")
    return pg_cluster


def aq_pooler(pooler, pg, databases=None, **ini):
    userlist = dict(pvtest.PASSWORDS)
    userlist.update({"pvauth": AUTH_PW, "adm": ADMIN_PW})
    settings = {"auth_user": "pvauth", "auth_query": AUTH_QUERY, "admin_users": "adm"}
    settings.update(ini)
    if databases is None:
        databases = {TESTDB: pg.db_line()}
    return pooler(databases=databases, userlist=userlist, **settings)


def login_error(p, user, password="whatever", db=TESTDB):
    with pytest.raises(psycopg.OperationalError) as ei:
        p.connect(user, db=db, password=password)
    return str(ei.value)


def whoami(p, user, db=TESTDB):
    with p.connect(user, db=db, password=ROLES[user][0]) as c:
        return c.execute("SELECT current_user, current_database()").fetchone()


def admin_cmd(p, sql):
    with p.raw(timeout=10) as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        return a.query(sql)


def test_md5_and_scram_users_not_in_userlist(pooler, aq_cluster):
    p = aq_pooler(pooler, aq_cluster)
    # md5 secret: md5 challenge; the cached md5 secret also logs in to the server (md5 pg_hba)
    assert whoami(p, "aq_md5") == ("aq_md5", TESTDB)
    # SCRAM secret: SCRAM exchange; the server login uses SCRAM pass-through keys
    assert whoami(p, "aq_scram") == ("aq_scram", TESTDB)
    # second login: queried again, server connection reused
    assert whoami(p, "aq_scram") == ("aq_scram", TESTDB)
    assert "password authentication failed" in login_error(p, "aq_md5", "wrong")
    assert "SASL authentication failed" in login_error(p, "aq_scram", "wrong")
    # auth_file users are not queried
    p.assert_serves("md5user")


def test_unknown_user_no_such_user(pooler, aq_cluster):
    p = aq_pooler(pooler, aq_cluster)
    assert "no such user" in login_error(p, "nobody_here")
    # NOLOGIN roles are filtered out by the query: no row
    assert "no such user" in login_error(p, "aq_nologin", ROLES["aq_nologin"][0])
    p.assert_serves()


def test_null_password_is_unusable(pooler, aq_cluster):
    p = aq_pooler(pooler, aq_cluster)
    # rolvaliduntil in the past: the query returns NULL -> the login can never succeed
    err = login_error(p, "aq_expired", ROLES["aq_expired"][0])
    assert "authentication failed" in err, err
    p.assert_serves()


def test_query_error_fails_client_pooler_keeps_serving(pooler, aq_cluster):
    p = aq_pooler(pooler, aq_cluster, auth_query="SELECT nosuchcol FROM nowhere WHERE $1 = ''")
    err = login_error(p, "aq_md5", ROLES["aq_md5"][0])
    assert "authentication query failed" in err, err
    assert "auth_query failed" in p.log_text()
    p.assert_serves()
    # and again: the failed server connection was closed, a new one is made
    assert "authentication query failed" in login_error(p, "aq_md5", ROLES["aq_md5"][0])
    p.assert_serves()


def test_wrong_column_count_fails(pooler, aq_cluster):
    p = aq_pooler(pooler, aq_cluster, auth_query="SELECT usename FROM public.pv_lookup($1)")
    assert "authentication query failed" in login_error(p, "aq_md5", ROLES["aq_md5"][0])
    p.assert_serves()


def test_db_level_auth_user_overrides_global(pooler, aq_cluster):
    pg = aq_cluster
    dbs = {
        TESTDB: pg.db_line(auth_user="pvauth"),
        "globaldb": pg.db_line(),
    }
    # the global auth_user cannot log in to the server at all
    p = aq_pooler(pooler, pg, databases=dbs, auth_user="nosuchauth")
    assert whoami(p, "aq_md5") == ("aq_md5", TESTDB)
    err = login_error(p, "aq_md5", ROLES["aq_md5"][0], db="globaldb")
    # ... where the global auth_user (no password anywhere) is used, its server login fails
    assert "server login failed" in err, err
    p.assert_serves()


def test_db_level_auth_query(pooler, aq_cluster):
    pg = aq_cluster
    dbs = {TESTDB: pg.db_line(auth_query=f"'{AUTH_QUERY}'")}
    p = aq_pooler(pooler, pg, databases=dbs, auth_query="SELECT 1")
    assert whoami(p, "aq_scram") == ("aq_scram", TESTDB)


def test_auth_dbname(pooler, aq_cluster):
    pg = aq_cluster
    dbs = {
        TESTDB: pg.db_line(auth_dbname="authdb"),
        "authdb": pg.db_line(dbname="postgres"),
        "viaglobal": pg.db_line(),
    }
    p = aq_pooler(pooler, pg, databases=dbs, auth_dbname="authdb")
    assert whoami(p, "aq_md5") == ("aq_md5", TESTDB)
    assert whoami(p, "aq_scram", db="viaglobal") == ("aq_scram", TESTDB)
    rows, err = admin_cmd(p, "SHOW POOLS")
    assert err is None
    assert any(r[0] == "authdb" and r[1] == "pvauth" for r in rows), rows
    # a disabled auth database refuses logins that need it
    rows, err = admin_cmd(p, "DISABLE authdb")
    assert err is None, err
    err = login_error(p, "aq_md5", ROLES["aq_md5"][0])
    assert 'authentication database "authdb" is disabled' in err, err
    p.assert_serves()


def test_auth_dbname_admin_db_refused(pooler, aq_cluster):
    p = aq_pooler(pooler, aq_cluster, auth_dbname="pgbouncer")
    assert "bouncer config error" in login_error(p, "aq_md5", ROLES["aq_md5"][0])
    p.assert_serves()


def test_no_set_on_auth_connection(pooler, aq_cluster):
    """Startup parameters of the parked client never reach the auth_user connection."""
    p = aq_pooler(pooler, aq_cluster, verbose=2)
    with p.raw() as c:
        c.login("aq_md5", password=ROLES["aq_md5"][0],
                params={"application_name": "evil', search_path='x"})
        rows, err = c.query("SELECT current_setting('application_name')")
        assert err is None and rows == [["evil', search_path='x"]]
    log = p.log_text()
    # the only SET logged is the one for aq_md5's own server, never on pvauth's
    for line in log.splitlines():
        if "varcache_apply" in line:
            assert "/pvauth@" not in line, line


def test_client_gone_while_query_waits(pooler, aq_cluster):
    """A client that disconnects while parked does not disturb the pooler."""
    p = aq_pooler(pooler, aq_cluster)
    for _ in range(3):
        c = p.raw()
        c.startup({"user": "aq_scram", "database": TESTDB})
        c.close()
    assert whoami(p, "aq_scram") == ("aq_scram", TESTDB)
    p.assert_serves()
