"""pgvigil-audit: verify catches every kind of tampering; sessions and replay.

Recordings are produced by the real recorder through the tool's hidden
`selftest-write DIR N` test aid (synthetic sessions of 4 events each:
session_start, statement, result, session_end), then copied and tampered.
"""
import json
import os
import shutil
import subprocess

import pytest

PGVIGIL_BIN = os.path.abspath(os.environ.get(
    "PGVIGIL_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "pgvigil")))
AUDIT = os.path.join(os.path.dirname(PGVIGIL_BIN), "pgvigil-audit")


def audit(*args):
    if not os.access(AUDIT, os.X_OK):
        pytest.fail(f"pgvigil-audit not found next to PGVIGIL_BIN: {AUDIT} (build it with make)")
    return subprocess.run([AUDIT, *map(str, args)], capture_output=True, text=True, timeout=60)


def files(d):
    return sorted(f for f in os.listdir(d) if f.startswith("pgvigil-"))


def lines(path):
    with open(path) as f:
        return f.read().splitlines(keepends=True)


def write_lines(path, ls):
    with open(path, "w") as f:
        f.writelines(ls)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec") / "r"
    r = audit("selftest-write", d, 120, "--rotate-size", 2500)
    assert r.returncode == 0, r.stderr
    assert len(files(d)) >= 4
    return d


@pytest.fixture
def copy(recording, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(recording, d)
    return d


def assert_broken(d, name, line, kind, *extra):
    r = audit("verify", d, *extra)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith(f"BROKEN: {name}:{line}: {kind}:"), r.stdout


def test_untampered_verifies(recording):
    r = audit("verify", recording)
    assert r.returncode == 0, r.stdout + r.stderr
    n = sum(len(lines(os.path.join(recording, f))) for f in files(recording))
    assert r.stdout.strip() == f"OK: {n} events in {len(files(recording))} files"


def test_edited_field(copy):
    name = files(copy)[1]
    p = os.path.join(copy, name)
    ls = lines(p)
    ls[2] = ls[2].replace('"ts":"2', '"ts":"1', 1)
    write_lines(p, ls)
    assert_broken(copy, name, 3, "edited event")


def test_deleted_line(copy):
    name = files(copy)[1]
    p = os.path.join(copy, name)
    ls = lines(p)
    del ls[3]
    write_lines(p, ls)
    assert_broken(copy, name, 4, "deleted event")


def test_swapped_lines(copy):
    name = files(copy)[2]
    p = os.path.join(copy, name)
    ls = lines(p)
    ls[2], ls[3] = ls[3], ls[2]
    write_lines(p, ls)
    assert_broken(copy, name, 3, "reordered")


def test_truncated_last_line(copy):
    name = files(copy)[-1]
    p = os.path.join(copy, name)
    ls = lines(p)
    with open(p, "r+") as f:
        f.truncate(os.path.getsize(p) - 20)
    assert_broken(copy, name, len(ls), "truncated line")


def test_deleted_middle_file(copy):
    fs = files(copy)
    os.unlink(os.path.join(copy, fs[1]))
    assert_broken(copy, fs[2], 1, "missing file")


def test_deleted_oldest_file_without_retention(copy):
    fs = files(copy)
    os.unlink(os.path.join(copy, fs[0]))
    assert_broken(copy, fs[1], 1, "missing file")


def test_edited_header(copy):
    name = files(copy)[1]
    p = os.path.join(copy, name)
    ls = lines(p)
    ls[0] = ls[0].replace('"hash_alg":"sha256"', '"hash_alg":"sha512"')
    write_lines(p, ls)
    assert_broken(copy, name, 1, "bad header")


def test_renamed_file_is_bad_header(copy):
    fs = files(copy)
    old = fs[-1]
    new = old[:-len(".jsonl")].rsplit("-", 1)
    renamed = f"{new[0]}-{int(new[1]) + 1:020d}.jsonl"
    os.rename(os.path.join(copy, old), os.path.join(copy, renamed))
    assert_broken(copy, renamed, 1, "bad header")


def test_retention_is_not_tampering(tmp_path):
    d = tmp_path / "ret"
    r = audit("selftest-write", d, 300, "--rotate-size", 1500, "--max-bytes", 6000)
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for f in files(d) for x in lines(os.path.join(d, f))]
    assert any(e["type"] == "retention" for e in events)
    assert events[0]["prev_file"] is not None  # the oldest files are gone
    r = audit("verify", d)
    assert r.returncode == 0, r.stdout


def test_hmac_key(tmp_path):
    d = tmp_path / "h"
    key = tmp_path / "key"
    key.write_text("s3cret-key\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("other\n")
    assert audit("selftest-write", d, 20, "--hmac-key-file", key).returncode == 0
    assert audit("verify", d, "--hmac-key-file", key).returncode == 0
    name = files(d)[0]
    assert_broken(d, name, 1, "bad header")
    assert_broken(d, name, 1, "bad header", "--hmac-key-file", wrong)
    # The plain-SHA-256 chain does not reveal the key.
    assert "s3cret" not in "".join(lines(os.path.join(d, name)))


def test_sessions(recording):
    r = audit("sessions", recording)
    assert r.returncode == 0, r.stderr
    rows = [x.split("\t") for x in r.stdout.splitlines()]
    assert len(rows) == 30
    assert rows[0][:2] == ["s0", "agent-a@example.com"]
    assert rows[1][:2] == ["s1", "agent-b@example.com"]
    assert all(row[2] <= row[3] for row in rows)
    r = audit("sessions", recording, "--identity", "agent-b@example.com", "--json")
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(got) == 15 and all(s["identity"] == "agent-b@example.com" for s in got)


def test_replay_session(recording):
    r = audit("replay", recording, "--session", "s1", "--json")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [e["type"] for e in evs] == ["session_start", "statement", "result", "session_end"]
    assert evs[1]["text"] == "SELECT 5 /* synthetic */"
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)
    text = audit("replay", recording, "--session", "s1").stdout
    assert "SELECT 5 /* synthetic */" in text and "sqlstate=00000" in text


def test_replay_filters(recording):
    r = audit("replay", recording, "--class", "write", "--json")
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    stmts = [e for e in evs if e["type"] == "statement"]
    assert stmts and all(e["class"] == "write" for e in stmts)
    assert {e["type"] for e in evs} <= {"statement", "result", "session_end"}
    r = audit("replay", recording, "--identity", "agent-a@example.com", "--json")
    sessions = {json.loads(x)["session"] for x in r.stdout.splitlines()}
    assert sessions and all(int(s[1:]) % 2 == 0 for s in sessions)
    all_ts = [json.loads(x)["ts"] for x in audit("replay", recording, "--json").stdout.splitlines()]
    mid = sorted(all_ts)[len(all_ts) // 2]
    r = audit("replay", recording, "--since", mid, "--json")
    assert all(json.loads(x)["ts"] >= mid for x in r.stdout.splitlines())
    r = audit("replay", recording, "--until", mid, "--json")
    assert all(json.loads(x)["ts"] <= mid for x in r.stdout.splitlines())


def test_usage_errors():
    assert audit().returncode == 2
    assert audit("verify").returncode == 2
    assert audit("bogus", "/nonexistent").returncode == 2
    assert audit("verify", "/nonexistent-dir").returncode == 2
