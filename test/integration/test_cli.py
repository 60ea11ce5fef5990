"""Command-line behaviour of the pgvigil binary."""
import os
import subprocess

BIN = os.environ.get("PGVIGIL_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "pgvigil"))


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=10)


def test_version_lists_libraries():
    r = run("-V")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pgvigil ")
    assert any(line.startswith("libevent ") for line in lines)
    assert any(line.startswith("tls: ") for line in lines)


def test_help_exits_zero():
    r = run("--help")
    assert r.returncode == 0
    assert "Usage:" in r.stdout


def test_missing_config_argument_is_an_error():
    r = run()
    assert r.returncode == 1
    assert "Usage:" in r.stderr


# --- process start-up: config errors, root, -u, -q, -v ---------------------------------

import signal  # noqa: E402

import pytest  # noqa: E402

import pvtest  # noqa: E402


def write_ini(sess, text):
    d = sess.new_dir("cli")
    return d, sess.runas.write(os.path.join(d, "pv.ini"), text)


def minimal_ini(d, port, extra=""):
    return (f"[databases]\nx = host=127.0.0.1 port=1 user=u\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {d}\n"
            f"auth_type = any\n{extra}")


def test_config_error_names_file_and_line(pv_session):
    d, ini = write_ini(pv_session, "[pgbouncer]\nlisten_port = 6999\nno_such_key = 1\n")
    r = pv_session.runas.run([pv_session.bin, ini], timeout=10)
    assert r.returncode == 1
    assert f"{ini}:3" in r.stderr and "no_such_key" in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the root refusal can only be seen as root")
def test_refuses_to_run_as_root(pv_session):
    d, ini = write_ini(pv_session, minimal_ini("/tmp", pvtest.free_port()))
    r = subprocess.run([pv_session.bin, ini], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "should not run as root" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="-u switches user only when started as root")
def test_user_option_switches_identity(pv_session):
    d = pv_session.new_dir("cli")
    ini = pv_session.runas.write(os.path.join(d, "pv.ini"), minimal_ini(d, pvtest.free_port()))
    port = int(open(ini).read().split("listen_port = ")[1].split()[0])
    proc = subprocess.Popen([pv_session.bin, "-u", pv_session.runas.name, ini],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pvtest.wait_until(lambda: pvtest.port_accepts("127.0.0.1", port), 10, what="listener")
        with open(f"/proc/{proc.pid}/status") as f:
            uid_line = [line for line in f if line.startswith("Uid:")][0]
        assert all(int(u) == pv_session.runas.uid for u in uid_line.split()[1:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_quiet_and_verbose_logging(pv_session):
    for flags, expect_stderr in (([], "process up"), (["-q"], None), (["-v"], "DEBUG")):
        d = pv_session.new_dir("cli")
        port = pvtest.free_port()
        ini = pv_session.runas.write(os.path.join(d, "pv.ini"), minimal_ini(d, port))
        proc = subprocess.Popen([pv_session.bin, *flags, ini], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                **pv_session.runas.popen_kwargs())
        try:
            pvtest.wait_until(lambda: pvtest.port_accepts("127.0.0.1", port), 10,
                              what="listener")
            if flags == ["-v"]:
                # a login launches a server connection (to a closed port): debug lines
                with pvtest.RawConn("127.0.0.1", port) as r:
                    r.startup({"user": "u", "database": "x"})
                    r.read_until_closed()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        if expect_stderr is None:
            assert err == "", err
        else:
            assert expect_stderr in err, err


def test_example_governance_file_loads(pv_session):
    """etc/governance.yaml (with its JWKS file) is valid as shipped (etc/pgvigil.ini is
    exercised by scripts/quickstart.sh)."""
    import shutil
    etc = os.path.join(os.path.dirname(__file__), "..", "..", "etc")
    d = pv_session.new_dir("cli")
    for name in ("governance.yaml", "corp-jwks.json"):
        shutil.copy(os.path.join(etc, name), os.path.join(d, name))
        pv_session.runas.chown(os.path.join(d, name))
    port = pvtest.free_port()
    ini = pv_session.runas.write(os.path.join(d, "pv.ini"), minimal_ini(d, port).replace(
        "auth_type = any", f"auth_type = oidc\ngovernance_file = {d}/governance.yaml"))
    proc = subprocess.Popen([pv_session.bin, ini], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **pv_session.runas.popen_kwargs())
    try:
        # the discovery provider cannot be reached here; startup waits at most 10 s for it
        pvtest.wait_until(lambda: pvtest.port_accepts("127.0.0.1", port), 20, what="listener")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "process up" in err, err
