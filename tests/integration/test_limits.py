#!/usr/bin/env python3
"""Integration suite for the HTTP layer's limits: what a hostile or broken
client, or a process out of file descriptors, gets. A real redis-server and
ssegate instances on loopback; prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_limits.py [-k substr]
"""
import json
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (parse_response, HOST, Gateway, Redis, SSEClient, TestFailure,  # noqa: E402
                     Workdir, check, eq, get_json, http, post_json, wait_until, run_suite)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
# REQUEST_TIMEOUT_MS of the instance the timing tests use, and how late
# its cut may come (one loop pass, a loaded 2-core machine under ASan).
TIMEOUT_S = 1.0
MARGIN_S = 0.8


class Env:
    """One Redis and one gateway with a short REQUEST_TIMEOUT_MS; tests
    that need their own instance add it to extra."""

    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        self.g = Gateway(BIN, self.redis, self.work.path, "limits-1",
                         REQUEST_TIMEOUT_MS=int(TIMEOUT_S * 1000))
        self.extra = []

    def gateways(self):
        return [self.g] + self.extra

    def account(self, port):
        st, _, acct = post_json(port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts status")
        return acct

    def close(self):
        codes = {g.name: g.stop() for g in self.gateways()}
        self.redis.stop()
        return codes


def open_stream(port, query=""):
    c = SSEClient(port, query, timeout=10)
    eq(c.status, 200, "stream status (%s)" % getattr(c, "error_body", ""))
    c.wait(lambda s: s.retry is not None and s.comments, 5, "retry and hello comment")
    return c


def raw(port, data, timeout=5):
    """Sends data on a new connection and reads until the server closes.
    Returns (status, headers, body bytes); status None when nothing came."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
            head, sep, rest = got.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    break
    if not got:
        return None, {}, b""
    return parse_response(got)


def trickle(port, head_first, dribble, step=0.05, limit=10.0):
    """Sends head_first at once, then dribble a byte every step seconds
    until the server answers or closes. Returns (seconds from the end of
    head_first to the close, every byte received)."""
    s = socket.create_connection((HOST, port), timeout=5)
    try:
        s.sendall(head_first)
        t0 = time.monotonic()
        got = b""
        i = 0
        while time.monotonic() - t0 < limit:
            r, _, _ = select.select([s], [], [], step)
            if r:
                try:
                    d = s.recv(65536)
                except ConnectionResetError:
                    d = b""
                if not d:
                    return time.monotonic() - t0, got
                got += d
                continue
            if i < len(dribble):
                try:
                    s.send(dribble[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0, got
                i += 1
        raise TestFailure("the connection was still open after %.1fs (got %r)" % (limit, got))
    finally:
        s.close()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


# -------------------------------------------------------------------- tests

def test_host_required(env):
    """RFC 9112 3.2: an HTTP/1.1 request without Host is 400; HTTP/1.0
    needs none."""
    p = env.g.port
    for req in (b"GET /health HTTP/1.1\r\n\r\n",
                b"GET /events/sse HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
                b"POST /events HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"):
        st, h, body = raw(p, req)
        eq(st, 400, "%r without Host" % req[:16])
        eq(json.loads(body), {"error": "missing_host",
                              "message": "an HTTP/1.1 request needs a Host header"},
           "body of the 400")
    st, _, body = raw(p, b"GET /health HTTP/1.0\r\n\r\n")
    eq(st, 200, "HTTP/1.0 without Host")
    eq(json.loads(body)["status"], "ok", "health body")
    st, _, body = raw(p, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    eq(st, 200, "HTTP/1.1 with Host")


def test_many_query_parameters(env):
    """200 query parameters (about 1.8 KB) got no answer at all: they are
    answered 414 with the JSON error; 48 still work."""
    p = env.g.port
    many = "&".join("p%03d=%03d" % (i, i) for i in range(200))
    check(len(many) > 1700, "the query is about 1.8 KB (%d)" % len(many))
    for path in ("/health?" + many, "/events/sse?" + many, "/accounts/1?" + many):
        st, h, body = http(p, "GET", path, timeout=5)
        eq(st, 414, "status of GET %s..." % path[:20])
        eq(h.get("content-type"), "application/json; charset=utf-8", "content type")
        eq(json.loads(body), {"error": "uri_too_long",
                              "message": "the query has more than 48 parameters"},
           "body of the 414")
    st, _, body = http(p, "POST", "/events?" + many,
                       {"userId": "1", "type": "t", "data": None}, timeout=5)
    eq(st, 414, "POST /events with 200 parameters")
    eq(json.loads(body)["error"], "uri_too_long", "error code")
    few = "&".join("p%d=%d" % (i, i) for i in range(47))
    st, _, body = http(p, "GET", "/health?" + few + "&x=1", timeout=5)
    eq(st, 200, "GET /health with 48 parameters")
    acct = env.account(p)
    c = open_stream(p, "userId=%s&" % acct["id"] + few)
    c.close()


def test_head_trickled(env):
    """A head sent a byte at a time is cut off REQUEST_TIMEOUT_MS after the
    connection started, with no answer (it has no request yet)."""
    p = env.g.port
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 400
    took, got = trickle(p, b"", head)
    eq(got, b"", "bytes sent to the trickling client")
    check(TIMEOUT_S - 0.1 <= took <= TIMEOUT_S + MARGIN_S,
          "closed after %.2fs, want %.1f..%.1f" % (took, TIMEOUT_S, TIMEOUT_S + MARGIN_S))
    # A client that connects and sends nothing goes the same way.
    took, got = trickle(p, b"", b"")
    eq(got, b"", "bytes sent to the silent client")
    check(TIMEOUT_S - 0.1 <= took <= TIMEOUT_S + MARGIN_S,
          "silent client closed after %.2fs" % took)
    # A slow head that completes in time is served.
    st, _, body = raw(p, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    eq(st, 200, "a prompt request on the same instance")


def test_keepalive_idle(env):
    """A kept-alive connection's next head gets REQUEST_TIMEOUT_MS too,
    counted from the end of the previous request; until then it works."""
    p = env.g.port
    s = socket.create_connection((HOST, p), timeout=5)
    try:
        req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(2):
            s.sendall(req)
            got = b""
            while b"}" not in got:
                d = s.recv(65536)
                check(d, "connection closed before the answer")
                got += d
            check(got.startswith(b"HTTP/1.1 200 "), "answer %r" % got[:40])
            time.sleep(TIMEOUT_S / 2)      # idle, within the deadline
        t0 = time.monotonic()
        s.settimeout(TIMEOUT_S + MARGIN_S + 1)
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            d = b""
        took = time.monotonic() - t0
        eq(d, b"", "bytes on the idle connection")
        check(took <= TIMEOUT_S / 2 + MARGIN_S,
              "idle connection closed %.2fs after the check began" % took)
    finally:
        s.close()


def test_body_trickled(env):
    """A body trickled a byte at a time after a complete head is answered
    408 REQUEST_TIMEOUT_MS after the head, and the connection closed."""
    p = env.g.port
    body = json.dumps({"userId": "1", "type": "slow", "data": "x" * 200}).encode()
    head = ("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % len(body)).encode()
    took, got = trickle(p, head + body[:1], body[1:])
    check(TIMEOUT_S - 0.1 <= took <= TIMEOUT_S + MARGIN_S,
          "answered after %.2fs, want %.1f..%.1f" % (took, TIMEOUT_S, TIMEOUT_S + MARGIN_S))
    h, _, rest = got.partition(b"\r\n\r\n")
    lines = h.decode("latin-1").split("\r\n")
    eq(lines[0], "HTTP/1.1 408 Request Timeout", "status line")
    check("Connection: close" in lines, "Connection: close in %r" % lines)
    eq(json.loads(rest), {"error": "request_timeout",
                          "message": "the request did not arrive within REQUEST_TIMEOUT_MS"},
       "body of the 408")
    # A body sent promptly is still taken.
    acct = env.account(p)
    st, _, b = post_json(p, "/events", {"userId": acct["id"], "type": "t"})
    eq(st, 202, "a prompt POST /events (%r)" % b)


REFUSED_FD = {"error": "too_many_streams",
              "message": "this instance has no file descriptor left for another stream"}


def read_answers(socks, timeout, quiet):
    """Reads the status (and error body) of each socket's answer until every
    one answered, or nothing came for quiet seconds, or timeout. Returns
    {socket: (status, body bytes, {header: value})} of those that answered."""
    out = {}
    bufs = {s: b"" for s in socks}
    pending = set(socks)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        r, _, _ = select.select(list(pending), [], [], quiet)
        if not r:
            break
        for s in r:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                d = b""
            bufs[s] += d
            head, sep, rest = bufs[s].partition(b"\r\n\r\n")
            st = int(head.split()[1]) if sep else None
            if st == 200 or (st is not None and rest.endswith(b"}")) or not d:
                hdrs = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                out[s] = (st, rest, hdrs)
                pending.discard(s)
    return out


def check_refusals(answers, what):
    for st, body, hdrs in answers.values():
        if st == 200:
            continue
        eq(st, 503, "%s: status of a refused stream (%r)" % (what, body[:200]))
        eq(json.loads(body.decode()), REFUSED_FD, "%s: body of a refused stream" % what)
        eq(hdrs.get("connection"), "close", "%s: a refusal for want of descriptors "
           "frees its connection's" % what)


def settle_fds(pid, what, quiet=0.3, timeout=5):
    """Waits until the instance's descriptor count has not changed for
    quiet seconds: connections of an earlier phase (some still in the
    listen backlog when their clients closed them, accepted and closed
    later) must not free descriptors in the middle of the next one."""
    last, since = fd_count(pid), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = fd_count(pid)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise TestFailure("%s: the descriptor count kept changing for %ds" % (what, timeout))


def check_accepting(g, acct, what):
    """/health and a new stream answer promptly."""
    t0 = time.monotonic()
    wait_until(lambda: get_json(g.port, "/health", timeout=2)[2]["streams"] == 0, 5,
               "%s: every stream counted out" % what)
    c = open_stream(g.port, "userId=%s" % acct["id"])
    c.close()
    check(time.monotonic() - t0 < 5, "%s: took %.1fs to accept again" % (what, time.monotonic() - t0))


def test_descriptor_shortage(env):
    """Out of file descriptors: a stream that cannot get one is refused
    503 too_many_streams (it was out_of_memory), and once the clients have
    gone the instance accepts again at once. It used to stop accepting for
    good: libmicrohttpd stops accept() on EMFILE and re-arms it only in a
    later MHD_run, while our loop slept in poll() with no timeout."""
    # A long REDIS_TIMEOUT_MS: a Redis connection reset on a loaded
    # machine would free a descriptor in the middle of the count.
    g = Gateway(BIN, env.redis, env.work.path, "limits-fd", HTTP_THREADS=1,
                REQUEST_TIMEOUT_MS=int(TIMEOUT_S * 1000), REDIS_TIMEOUT_MS=30000,
                MAX_CONNECTIONS_PER_CLIENT=0)
    env.extra.append(g)
    acct = env.account(g.port)
    base = fd_count(g.proc.pid)
    room = 24
    soft, hard = resource.prlimit(g.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(g.proc.pid, resource.RLIMIT_NOFILE, (base + room, hard))
    req = ("GET /events/sse?userId=%s HTTP/1.1\r\nHost: x\r\n\r\n" % acct["id"]).encode()

    # A burst of 3x as many streams as there are descriptors: accepted
    # connections take them all, so their take-overs fail; the rest wait
    # in the listen backlog.
    socks = []
    for _ in range(3 * room):
        s = socket.create_connection((HOST, g.port), timeout=5)
        s.sendall(req)
        socks.append(s)
    answers = read_answers(socks, 10, 1.0)
    check(any(a[0] != 200 for a in answers.values()),
          "burst: some streams were refused (%r)" % sorted(str(a[0]) for a in answers.values()))
    check_refusals(answers, "burst")
    for s in socks:
        s.close()
    check_accepting(g, acct, "after the burst")
    settle_fds(g.proc.pid, "after the burst")

    # One at a time: streams take the descriptors until one is refused.
    streams = []
    refused = None
    while refused is None and len(streams) <= room:
        s = socket.create_connection((HOST, g.port), timeout=5)
        s.sendall(req)
        a = read_answers([s], 5, 5)
        check(s in a, "sequential: stream %d got no answer" % len(streams))
        if a[s][0] == 200:
            streams.append(s)
        else:
            refused = a
            s.close()
    check(refused is not None, "sequential: no refusal after %d streams" % len(streams))
    check(len(streams) >= room // 2, "sequential: only %d streams in %d descriptors"
          % (len(streams), room))
    check_refusals(refused, "sequential")
    # More arrive while every descriptor is held: the one the refusal
    # freed takes each in turn, and each is refused at once, its
    # connection closed to free the descriptor for the next.
    late = []
    for _ in range(6):
        s = socket.create_connection((HOST, g.port), timeout=5)
        s.sendall(req)
        late.append(s)
    answers = read_answers(late, 5, 5)
    eq(len(answers), 6, "answers while no descriptor is free")
    eq(sorted(a[0] for a in answers.values()), [503] * 6, "their statuses")
    check_refusals(answers, "while every descriptor is held")
    for s in late + streams:
        s.close()
    check_accepting(g, acct, "after the sequential run")
    resource.prlimit(g.proc.pid, resource.RLIMIT_NOFILE, (soft, hard))


TESTS = [
    test_host_required,
    test_many_query_parameters,
    test_head_trickled,
    test_keepalive_idle,
    test_body_trickled,
    test_descriptor_shortage,
]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
