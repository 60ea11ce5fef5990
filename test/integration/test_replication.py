"""Replication connections (replication=true|database) through pgvigil:
pg_basebackup -X stream, pg_receivewal, and a logical-mode walsender with
IDENTIFY_SYSTEM and SQL. Each gets a dedicated server connection."""
import os
import re
import signal
import subprocess

import pytest

from pvtest import PASSWORDS, REPL_PW, REPL_USER, TESTDB, wait_until

ADMIN_PW = "adm-secret"




@pytest.fixture
def repl_pooler(pooler, repl_cluster):
    userlist = dict(PASSWORDS)
    userlist[REPL_USER] = REPL_PW
    userlist["adm"] = ADMIN_PW
    dbs = {TESTDB: repl_cluster.db_line(), "replication": repl_cluster.db_line()}
    # transaction mode: replication connections keep session semantics anyway
    return pooler(databases=dbs, userlist=userlist, admin_users="adm",
                  pool_mode="transaction", default_pool_size=2)


def pg_env():
    env = dict(os.environ)
    env["PGPASSWORD"] = REPL_PW
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def admin_rows(p, sql):
    with p.raw(timeout=10) as a:
        a.login("adm", db="pgbouncer", password=ADMIN_PW)
        rows, err = a.query(sql)
        assert err is None, err
        return rows


def psql(p, conninfo, sql):
    return subprocess.run(["psql", "-X", "-A", "-t", "-d",
                           f"host={p.host} port={p.port} user={REPL_USER} {conninfo}", "-c", sql],
                          capture_output=True, text=True, timeout=60, env=pg_env())


def test_pg_basebackup_stream(repl_pooler, tmp_path):
    p = repl_pooler
    target = tmp_path / "backup"
    r = subprocess.run(["pg_basebackup", "-D", str(target), "-h", p.host, "-p", str(p.port),
                        "-U", REPL_USER, "-X", "stream", "-c", "fast", "--no-sync"],
                       capture_output=True, text=True, timeout=180, env=pg_env())
    assert r.returncode == 0, r.stdout + r.stderr + p.log_text()[-3000:]
    assert (target / "PG_VERSION").exists() and (target / "backup_manifest").exists()
    assert any(re.fullmatch(r"[0-9A-F]{24}", n) for n in os.listdir(target / "pg_wal"))
    # the dedicated servers left with their clients
    wait_until(lambda: not [r for r in admin_rows(p, "SHOW SERVERS") if r[3] != "none"], 5,
               what="replication servers to close")
    p.assert_serves()


def test_pg_receivewal(repl_pooler, repl_cluster, tmp_path):
    p = repl_pooler
    target = tmp_path / "wal"
    target.mkdir()
    proc = subprocess.Popen(["pg_receivewal", "-D", str(target), "-h", p.host, "-p", str(p.port),
                             "-U", REPL_USER, "--no-loop", "--no-sync"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=pg_env())
    try:
        def streaming():
            return any(r[1] == REPL_USER and r[3] == "physical" and r[4] == "active"
                       for r in admin_rows(p, "SHOW CLIENTS"))
        wait_until(streaming, 15, interval=0.1, what="pg_receivewal to stream")
        rows = admin_rows(p, "SHOW SERVERS")
        assert any(r[3] == "physical" and r[4] == "active" for r in rows), rows
        # new WAL (the stream may start at an empty segment), then finish the segment:
        # it is streamed through and completed on disk
        with repl_cluster.connect(TESTDB) as c:
            c.execute("CREATE TABLE IF NOT EXISTS walgen (x int)")
            c.execute("INSERT INTO walgen SELECT generate_series(1, 1000)")
            c.execute("SELECT pg_switch_wal()")
        wait_until(lambda: any(re.fullmatch(r"[0-9A-F]{24}", n) for n in os.listdir(target)), 15,
                   interval=0.1, what="a complete WAL segment")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out


def test_logical_mode_identify_system_and_sql(repl_pooler, repl_cluster):
    p = repl_pooler
    r = psql(p, f"dbname={TESTDB} replication=database", "IDENTIFY_SYSTEM")
    assert r.returncode == 0, r.stderr
    sysid, timeline, _lsn, dbname = r.stdout.strip().split("|")
    with repl_cluster.connect() as c:
        assert sysid == str(c.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
    assert timeline == "1" and dbname == TESTDB
    r = psql(p, f"dbname={TESTDB} replication=database", "SELECT count(*) FROM copytest")
    assert r.returncode == 0 and r.stdout.strip() == "1000", r.stderr
    # physical mode over the "replication" entry
    r = psql(p, "dbname=replication replication=true", "IDENTIFY_SYSTEM")
    assert r.returncode == 0 and r.stdout.startswith(sysid), r.stderr


def test_options_and_params_sent_verbatim(repl_pooler):
    p = repl_pooler
    r = psql(p, f"dbname={TESTDB} replication=database application_name=replapp "
                "options='-c work_mem=7MB'", "SELECT current_setting('work_mem'), "
                "current_setting('application_name')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7MB|replapp"


def test_replication_login_failure_is_not_the_pools(repl_pooler):
    """A refused replication login fails only that client; no pool back-off follows."""
    p = repl_pooler
    r = subprocess.run(["psql", "-X", "-d", f"host={p.host} port={p.port} user=md5user "
                        f"dbname={TESTDB} replication=true password={PASSWORDS['md5user']}",
                        "-c", "IDENTIFY_SYSTEM"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "replication" in r.stderr, r.stderr
    p.assert_serves("md5user")
    # bad value
    with p.raw() as c:
        c.startup({"user": "md5user", "database": TESTDB, "replication": "maybe"})
        err = c.expect_error_and_close()
        assert err["M"] == 'invalid value for parameter "replication": "maybe"'
