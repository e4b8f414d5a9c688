#!/usr/bin/env python3
"""Logs: LOG_FORMAT=json lines (each parses, with ts, level, server_id,
msg and the record's fields), the access log (on by default, off with
ACCESS_LOG=0, a stream's token never in it), a stream's last line
(duration, events, bytes, reason), and LOG_FILE reopened on SIGHUP after
logrotate moved it, the process living on. A real redis-server and
gateways over loopback. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_logs.py [-k substr]
"""
import json
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatewaysEnv, SSEClient, check, eq, http,  # noqa: E402
                     post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
SECRET = "s3cret-token-value-never-logged"
ACCESS = re.compile(r"^\S+Z info  request method=(\S+) path=(\S+) status=(\d+) "
                    r"duration_ms=(\d+\.\d{3}) client=(\S+)$")


class Env(GatewaysEnv):
    def account(self, g):
        st, _, acct = post_json(g.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts status")
        return acct["id"]

    def event(self, g, user):
        st, _, body = post_json(g.port, "/events", {"userId": user, "type": "m", "data": 1})
        eq(st, 202, "POST /events status (%r)" % body)
        return body["id"]


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except FileNotFoundError:
        return ""


def json_lines(path):
    out = []
    for line in read(path).splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError("not a JSON line: %r" % line)
    return out


def test_json_lines(env):
    """Every line is one JSON object with ts, level, server_id and msg;
    the access line and a stream's last line carry their fields."""
    path = os.path.join(env.work.path, "json.log")
    g = env.gateway("log-json", LOG_FORMAT="json", LOG_FILE=path)
    uid = env.account(g)
    s = SSEClient(g.port, "userId=%s&token=%s" % (uid, SECRET))
    eq(s.status, 200, "stream open (open mode ignores the token)")
    env.event(g, uid)
    s.wait_events(1)
    s.close()
    wait_until(lambda: any(r.get("reason") == "client" for r in json_lines(path)), 10,
               "the stream's last line")
    lines = json_lines(path)
    check(len(lines) > 5, "lines logged: %d" % len(lines))
    for r in lines:
        for k in ("ts", "level", "server_id", "msg"):
            check(k in r, "%s in %r" % (k, r))
        eq(r["server_id"], "log-json", "server_id")
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["ts"]), r["ts"])
        check(r["level"] in ("debug", "info", "warn", "error"), r["level"])
    opens = [r for r in lines if r["msg"] == "request" and r["path"].startswith("/events/sse")]
    eq(len(opens), 1, "one access line for the stream")
    o = opens[0]
    eq((o["method"], o["path"], o["status"], o["client"]),
       ("GET", "/events/sse?userId=%s&token=" % uid, 200, "127.0.0.1"), "the stream's access line")
    check(isinstance(o["duration_ms"], float) and o["duration_ms"] >= 0, o)
    post = [r for r in lines if r["msg"] == "request" and r["path"] == "/events"]
    eq([(r["method"], r["status"]) for r in post], [("POST", 202)], "the write's access line")
    end = [r for r in lines if r.get("reason") == "client"][0]
    eq((end["user"], end["events"]), (uid, 1), "the stream's last line")
    check(end["bytes"] > 0 and end["duration_s"] >= 0 and isinstance(end["stream"], int), end)
    check(end["msg"].endswith("closed: client"), end["msg"])
    check(SECRET not in read(path) and SECRET not in g.proc.output(), "the token is not logged")


def test_access_log_text(env):
    """On by default: one line per request, the query's token dropped;
    stream frames log nothing; ACCESS_LOG=0: no such line at all."""
    on = env.gateway("log-on")
    off = env.gateway("log-off", ACCESS_LOG=0)
    uids = {}
    for g in (on, off):
        uid = uids[g.name] = env.account(g)
        eq(http(g.port, "GET", "/health?token=" + SECRET)[0], 200, "/health")
        s = SSEClient(g.port, "TOKEN=%s&userId=%s" % (SECRET, uid))
        env.event(g, uid)
        env.event(g, uid)
        s.wait_events(2)
        s.close()
        wait_until(lambda: "user=%s closed: client" % uid in g.proc.output(), 10,
                   "the stream's last line")
    out = on.proc.output()
    lines = [ACCESS.match(l) for l in out.splitlines() if " request " in l]
    check(all(lines), "every access line has the form: %r" % out[-2000:])
    got = [(m.group(1), m.group(2), m.group(3), m.group(5)) for m in lines]
    check(("GET", "/health?token=", "200", "127.0.0.1") in got, got)
    check(("GET", "/events/sse?TOKEN=&userId=%s" % uids["log-on"], "200", "127.0.0.1") in got,
          got)
    eq(len([x for x in got if x[1] == "/events"]), 2, "one line per POST /events, none per frame")
    check(SECRET not in out, "the token is not logged")
    end = [l for l in out.splitlines() if "closed: client" in l][-1]
    check(re.search(r" duration_s=\d+\.\d{3} events=2 bytes=\d+$", end), end)
    out = off.proc.output()
    eq([l for l in out.splitlines() if " request " in l], [], "ACCESS_LOG=0: no access line")
    check("closed: client" in out, "the stream's line is still there")


def test_sighup_reopens_log_file(env):
    """logrotate renames LOG_FILE and sends SIGHUP: the process lives,
    says so in the new file and logs there from then on; without
    LOG_FILE a SIGHUP changes nothing but a line."""
    path = os.path.join(env.work.path, "rotate.log")
    g = env.gateway("log-hup", LOG_FILE=path)
    eq(http(g.port, "GET", "/health?x=before")[0], 200, "/health")
    wait_until(lambda: "/health?x=before" in read(path), 5, "the first access line")
    os.rename(path, path + ".1")
    os.kill(g.proc.pid, signal.SIGHUP)
    wait_until(lambda: "SIGHUP: LOG_FILE reopened" in read(path), 5, "the reopened file")
    eq(http(g.port, "GET", "/health?x=after")[0], 200, "/health after the SIGHUP")
    wait_until(lambda: "/health?x=after" in read(path), 5, "the access line in the new file")
    check("/health?x=after" not in read(path + ".1"), "nothing more in the old file")
    check("/health?x=before" in read(path + ".1"), "the old file kept its lines")
    check(g.proc.alive(), "alive after SIGHUP")
    plain = env.gateway("log-hup-stderr")
    os.kill(plain.proc.pid, signal.SIGHUP)
    wait_until(lambda: "SIGHUP: logging to stderr" in plain.proc.output(), 5, "the line")
    eq(http(plain.port, "GET", "/health")[0], 200, "alive after SIGHUP")


def test_bad_settings(env):
    """LOG_FORMAT and LOG_FILE are checked at start-up: exit 2, one line."""
    import subprocess
    for extra, want in ((["--log-format", "xml"], "LOG_FORMAT"),
                        (["--log-file", "/nonexistent/dir/x.log"], "LOG_FILE")):
        e = dict(os.environ)
        e.pop("LOG_FORMAT", None)
        r = subprocess.run([BIN] + extra, capture_output=True, text=True, timeout=20, env=e)
        eq(r.returncode, 2, "exit code for %s" % extra)
        check(("--log-format" if want == "LOG_FORMAT" else want) in r.stderr, r.stderr)


TESTS = [test_json_lines, test_access_log_text, test_sighup_reopens_log_file, test_bad_settings]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, lambda: Env(BIN)))
