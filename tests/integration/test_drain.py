#!/usr/bin/env python3
"""Integration tests: stopping without dropping anyone. At SIGTERM /health
answers 503 "draining" at once while the instance serves on for
DRAIN_SECS (streams, writes, new streams); then it stops accepting, each
stream gets a last "retry:" spread over [100, SSE_RETRY_MS] and a clean
end, a write in flight is answered, a stream opened on a kept-alive
connection meanwhile ends at once with a retry (200, never a 503, which
would stop EventSource for good), and the process exits 0 within
SHUTDOWN_GRACE_SECS. Stream heads say Connection: close (a proxy must
not reuse a stream's connection). A real redis-server and real gateways
on loopback. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_drain.py [-k substr]
"""
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, GatewaysEnv, SSEClient, check, eq, get_json,  # noqa: E402
                     ids_of, parse_response, post_json, run_suite, scrape, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
RETRY_MS = 3000                 # SSE_RETRY_MS's default
STOPPING = re.compile(r"^retry: (\d+)\n: ssegate (\S+) stopping\n$")


class Env(GatewaysEnv):
    def __init__(self):
        super().__init__(BIN)
        self.peer = self.gateway("peer")


def account(port):
    st, _, a = post_json(port, "/accounts", {"name": "Ada"})
    eq(st, 201, "POST /accounts")
    return a["id"]


def post_event(port, uid, n):
    st, _, b = post_json(port, "/events", {"userId": uid, "type": "t", "data": n})
    eq(st, 202, "POST /events (%r)" % b)
    return b["id"]


def held_post(port, uid):
    """A POST /events whose body is not all sent yet: a write in flight."""
    body = json.dumps({"userId": uid, "type": "late", "data": "x" * 100}).encode()
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
    return s, body[10:]


def wait_held(g):
    """The held POST's head is in: its body's room is taken."""
    wait_until(lambda: scrape(g)[0]["ssegate_request_bodies_pending_bytes"] > 0, 5,
               "the held POST's head read")


def read_response(s, timeout=10):
    s.settimeout(timeout)
    got = b""
    while b"\r\n\r\n" not in got:
        d = s.recv(65536)
        if not d:
            break
        got += d
    head, _, rest = got.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length: (\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    st, h, body = parse_response(head + b"\r\n\r\n" + rest)
    return st, h, body.decode("utf-8", "replace")


def exit_code(g, timeout):
    try:
        return g.proc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


# ------------------------------------------------------------------- tests

def test_stream_head_says_close(env):
    c = SSEClient(env.peer.port, "")
    eq(c.status, 200, "a stream")
    eq(c.headers.get("connection"), "close", "a stream's Connection")
    eq(c.headers.get("transfer-encoding"), "chunked", "still chunked")
    c.close()


def test_drain(env):
    """SIGTERM with DRAIN_SECS=2: /health 503 draining at once; streams,
    writes and new streams are served for the two seconds; then every
    stream ends after a spread retry, cleanly; exit 0."""
    g = env.gateway("draining", DRAIN_SECS=2)
    uid = account(env.peer.port)
    streams = [SSEClient(g.port, "userId=" + uid) for _ in range(20)]
    for c in streams:
        eq(c.status, 200, "a stream before the signal")
    t0 = time.monotonic()
    g.proc.proc.send_signal(15)
    wait_until(lambda: get_json(g.port, "/health")[0] == 503, 1, "/health 503 at once")
    st, _, b = get_json(g.port, "/health")
    eq((st, b["status"], b["serverId"]), (503, "draining", "draining"), "/health while draining")
    # Still serving what is routed here: a write, and a new stream.
    late = SSEClient(g.port, "userId=" + uid)
    eq(late.status, 200, "a stream opened while draining")
    i1 = post_event(g.port, uid, 1)
    i2 = post_event(env.peer.port, uid, 2)
    for c in streams + [late]:
        c.wait(lambda x: ids_of(x.events)[-2:] == [i1, i2], 10, "both events while draining")
    check(time.monotonic() - t0 < 2, "all that within DRAIN_SECS")
    retries = set()
    for c in streams + [late]:
        c.wait_eof(10)
        check(c.eof, "a clean end (the last chunk)")
        check(c.retry is not None and 100 <= c.retry <= RETRY_MS,
              "a last retry in [100, %d]: %r" % (RETRY_MS, c.retry))
        check(c.comments[-1] == "ssegate draining stopping", "the last comment: %r"
              % c.comments[-1:])
        retries.add(c.retry)
        c.close()
    took = time.monotonic() - t0
    check(took >= 1.9, "the streams ended after DRAIN_SECS (%.2f s)" % took)
    check(len(retries) > 1, "the retries are spread: %r" % sorted(retries))
    eq(exit_code(g, 10), 0, "exit 0")
    print("# drained and exited %.2f s after SIGTERM (DRAIN_SECS=2)" % (time.monotonic() - t0))


def test_write_in_flight_and_late_stream(env):
    """A write in flight when the instance stops accepting is answered;
    a stream opened on a kept-alive connection after that ends at once
    with a 200 and a retry (EventSource reconnects elsewhere)."""
    g = env.gateway("stopping", DRAIN_SECS=0)
    uid = account(env.peer.port)
    watch = SSEClient(env.peer.port, "userId=" + uid)
    eq(watch.status, 200, "a stream on the peer")
    kept = socket.create_connection((HOST, g.port), timeout=10)
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    eq(read_response(kept)[0], 200, "a kept-alive connection's first answer")
    post, rest = held_post(g.port, uid)
    wait_held(g)
    t0 = time.monotonic()
    g.proc.proc.send_signal(15)
    # Accepting stops at once with DRAIN_SECS=0.
    def refused():
        try:
            socket.create_connection((HOST, g.port), timeout=1).close()
            return False
        except OSError:
            return True
    wait_until(refused, 5, "the listener closed")
    check(g.proc.alive(), "alive while a write is in flight")
    kept.sendall(b"GET /events/sse?userId=%s HTTP/1.1\r\nHost: x\r\n"
                 b"Accept: text/event-stream\r\n\r\n" % uid.encode())
    st, h, body = read_response(kept)
    eq(st, 200, "a stream opened while stopping: 200, not 503")
    eq((h.get("content-type"), h.get("connection")), ("text/event-stream", "close"),
       "its Content-Type and Connection")
    m = STOPPING.match(body)
    check(m is not None, "its body is a retry and a comment: %r" % body)
    check(100 <= int(m.group(1)) <= RETRY_MS and m.group(2) == "stopping",
          "the retry and the instance: %r" % body)
    kept.close()
    post.sendall(rest)
    st, _, b = read_response(post)
    eq(st, 202, "the write in flight was answered (%r)" % b)
    post.close()
    watch.wait(lambda x: json.loads(b)["id"] in ids_of(x.events), 10,
               "the late write's event reached the peer's stream")
    watch.close()
    eq(exit_code(g, 10), 0, "exit 0 once the write was answered")
    check(time.monotonic() - t0 < 10, "within SHUTDOWN_GRACE_SECS")


def test_grace(env):
    """A write that never completes does not hold the process past
    SHUTDOWN_GRACE_SECS."""
    g = env.gateway("grace", DRAIN_SECS=0, SHUTDOWN_GRACE_SECS=2, REQUEST_TIMEOUT_MS=60000)
    uid = account(env.peer.port)
    post, _ = held_post(g.port, uid)
    wait_held(g)
    t0 = time.monotonic()
    g.proc.proc.send_signal(15)
    eq(exit_code(g, 10), 0, "exit 0")
    took = time.monotonic() - t0
    check(1.9 <= took <= 3.5, "exited at SHUTDOWN_GRACE_SECS (%.2f s)" % took)
    check("closing 1 connections still open" in g.proc.output(), "said why")
    post.close()


def test_config(env):
    for extra, msg in ((["--drain-secs", "10"], "DRAIN_SECS (10) must be less than "
                                                  "SHUTDOWN_GRACE_SECS (10)"),
                       (["--drain-secs", "2", "--shutdown-grace-secs", "1"],
                        "DRAIN_SECS (2) must be less than SHUTDOWN_GRACE_SECS (1)"),
                       (["--drain-secs", "301"], None)):
        r = subprocess.run([BIN] + extra, capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, REDIS_PORT="1", PORT="1"))
        eq(r.returncode, 2, "exit 2 for %r" % extra)
        lines = r.stderr.strip().splitlines()
        eq(len(lines), 1, "one line: %r" % r.stderr)
        if msg is not None:
            eq(lines[0], "ssegate: " + msg, "the line")


TESTS = [test_stream_head_says_close, test_drain, test_write_in_flight_and_late_stream,
         test_grace, test_config]

if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
