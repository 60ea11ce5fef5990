"""
Format 2 of the recording: a statement's first result folded into it
(doc/recordings.md "Events", src/record_events.c "statements held for their
result"). A statement waits on the loop at most a few milliseconds for its
result; a slower statement is recorded alone while it runs, and a session's
events stay in the order they happened (pipelines, disconnects).

These tests read the files as written (read_events(..., folded=True)); the
other recording tests read folded results back as `result` events.
"""
import threading
import time

import psycopg

from pvtest import PASSWORDS, message
from test_inspect_deny import make
from test_prepared import SYNC, bind, execute, parse, until_ready
from test_recording import audit, of, policy, read_events, rec_dir, session_of, verify_ok, wait_events


def raw_events(p):
    return read_events(rec_dir(p), folded=True)


def in_session(events, sid):
    return [e for e in events if e.get("session") == sid]


def test_quick_statements_carry_their_result(pooler):
    p = make(pooler, policy())
    with p.connect() as conn:
        conn.execute("SELECT 1 AS fold_simple /*fold-a*/").fetchall()
        conn.execute("SELECT %s::int AS fold_ext /*fold-b*/", (7,)).fetchall()
        try:
            conn.execute("SELECT 1/0 /*fold-c*/")
        except psycopg.errors.DivisionByZero:
            pass
    ev = wait_events(p, lambda ev: of(ev, "session_end"), what="session_end")
    ev = raw_events(p)
    sid = session_of(ev, "fold-a")
    mine = in_session(ev, sid)
    stmts = {s["text"].split("/*")[1][:6]: s for s in of(mine, "statement")}
    assert all(e["v"] == 2 for e in ev)
    a, b, c = stmts["fold-a"], stmts["fold-b"], stmts["fold-c"]
    assert a["result"]["command_tag"] == "SELECT 1" and a["result"]["rows"] == 1
    assert a["result"]["sqlstate"] == "00000" and a["result"]["duration_us"] >= 0
    assert b["protocol"] == "extended" and b["result"]["command_tag"] == "SELECT 1"
    assert c["result"]["sqlstate"] == "22012" and "division by zero" in c["result"]["error"]
    # a folded result is not recorded a second time, and says nothing its statement says
    assert not {r["stmt"] for r in of(mine, "result")} & {a["stmt"], b["stmt"], c["stmt"]}
    assert not {"session", "stmt", "part", "type"} & set(a["result"])
    # the statement's time is when it was sent: before the session ended
    assert a["ts"] <= b["ts"] <= c["ts"] <= of(mine, "session_end")[0]["ts"]
    # pgvigil-audit replay shows a folded result on a line of its own, after its statement
    lines = audit("replay", rec_dir(p), "--session", sid).stdout.splitlines()
    at = [i for i, line in enumerate(lines) if "fold-a" in line][0]
    assert "result" in lines[at + 1] and "SELECT 1 rows=1" in lines[at + 1]
    assert "sqlstate=00000" in lines[at + 1]
    verify_ok(p)


def test_slow_statement_is_recorded_while_it_runs(pooler):
    p = make(pooler, policy())
    done = threading.Event()

    def run():
        with p.connect() as conn:
            conn.execute("SELECT pg_sleep(2) /*fold-slow*/")
        done.set()

    t = threading.Thread(target=run)
    t.start()
    try:
        ev = wait_events(p, lambda ev: any("fold-slow" in (e.get("text") or "")
                                           for e in of(ev, "statement")),
                         timeout=1.5, what="the running statement")
        assert not done.is_set(), "recorded only after it finished"
    finally:
        t.join()
    ev = wait_events(p, lambda ev: of(ev, "session_end"), what="session_end")
    ev = raw_events(p)
    st = [s for s in of(ev, "statement") if "fold-slow" in (s["text"] or "")][0]
    assert "result" not in st  # it went alone; its result is an event of its own
    res = of(ev, "result", session=st["session"], stmt=st["stmt"])
    assert len(res) == 1 and res[0]["command_tag"] == "SELECT 1"
    assert res[0]["duration_us"] >= 2_000_000 and res[0]["seq"] > st["seq"]
    verify_ok(p)


def test_pipeline_keeps_the_session_order(pooler):
    p = make(pooler, policy())
    with p.raw() as c:
        c.login("md5user", password=PASSWORDS["md5user"])
        c.send(parse("", "SELECT 1 /*fold-p1*/") + bind("") + execute() +
               parse("", "SELECT 2 /*fold-p2*/") + bind("") + execute() + SYNC)
        until_ready(c)
        rows, err = c.query("SELECT 3 /*fold-p3*/")
        assert err is None
    ev = wait_events(p, lambda ev: of(ev, "session_end"), what="session_end")
    mine = in_session(raw_events(p), session_of(ev, "fold-p1"))
    kinds = [(e["type"], (e.get("text") or "").split("/*")[-1][:7], "result" in e) for e in mine]
    # the second Execute came before the first result: both statements went alone,
    # each result as its own event, in the order they happened
    assert kinds == [("session_start", "", False),
                     ("statement", "fold-p1", False), ("statement", "fold-p2", False),
                     ("result", "", False), ("result", "", False),
                     ("statement", "fold-p3", True), ("session_end", "", False)]
    st1, st2 = mine[1], mine[2]
    assert [r["stmt"] for r in mine[3:5]] == [st1["stmt"], st2["stmt"]]
    verify_ok(p)


def test_disconnect_records_the_held_statement_first(pooler):
    p = make(pooler, policy())
    with p.raw() as c:
        c.login("md5user", password=PASSWORDS["md5user"])
        c.send(message(b"Q", b"SELECT pg_sleep(3) /*fold-gone*/\0"))
        time.sleep(0.001)  # the statement is held (no result yet) when the client goes
    ev = wait_events(p, lambda ev: any("fold-gone" in (e.get("text") or "")
                                       for e in of(ev, "statement")) and of(ev, "session_end"),
                     timeout=10, what="the statement of the gone client")
    mine = in_session(raw_events(p), session_of(ev, "fold-gone"))
    assert [e["type"] for e in mine][:2] == ["session_start", "statement"]
    assert "result" not in mine[1]
    assert mine[-1]["type"] == "session_end"
    verify_ok(p)


def test_results_none_records_statements_alone(pooler):
    p = make(pooler, policy("  results: none\n"))
    with p.connect() as conn:
        conn.execute("SELECT 1 /*fold-none*/").fetchall()
    ev = wait_events(p, lambda ev: of(ev, "session_end"), what="session_end")
    st = [s for s in of(raw_events(p), "statement") if "fold-none" in (s["text"] or "")][0]
    assert "result" not in st and not of(ev, "result")
    verify_ok(p)
