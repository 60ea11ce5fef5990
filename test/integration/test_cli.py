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
