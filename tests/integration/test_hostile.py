#!/usr/bin/env python3
"""Integration suite for hostile clients' hard limits: a request head over
16 KiB (431), the memory all unfinished request bodies may hold together
(MAX_PENDING_BODY_KIB: 503 and the connection closed, never growth), and
query parameters read once and whole. Slow heads and bodies
(REQUEST_TIMEOUT_MS) are test_limits.py's. A real redis-server and ssegate
instances on loopback; prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_hostile.py [-k substr]
"""
import json
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (parse_response, HOST, Gateway, Redis,  # noqa: E402
                     Workdir, check, eq, get_json, http, post_json, rss_kib, wait_metric,
                     wait_until, run_suite)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
HEAD_MAX = 16384
HEADS_TOO_LARGE = {"error": "headers_too_large",
                   "message": "the request head is larger than 16384 bytes"}
OVER_BUDGET = {"error": "overloaded",
               "message": "the server holds as many request bodies as it may "
                          "(MAX_PENDING_BODY_KIB); retry"}
# MAX_PENDING_BODY_KIB of the instance the body tests use: four bodies
# of BODY bytes (each reserves its Content-Length + 1), not five.
BUDGET_KIB = 256
BODY = 60000


class Env:
    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        self.g = Gateway(BIN, self.redis, self.work.path, "hostile-1", HTTP_THREADS=2,
                         MAX_PENDING_BODY_KIB=BUDGET_KIB, REQUEST_TIMEOUT_MS=8000)
        st, _, acct = post_json(self.g.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts status")
        self.user = acct["id"]
        self.extra = []

    def gateways(self):
        return [self.g] + self.extra

    def close(self):
        codes = {g.name: g.stop() for g in self.gateways()}
        self.redis.stop()
        return codes


def read_answer(s, timeout=5, until_close=True):
    """Reads until the server closes s or the deadline, or (until_close
    False) until one whole answer came. Returns (bytes, closed): closed is
    True when the server closed the connection."""
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], max(0, deadline - time.monotonic()))
        if not r:
            break
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return got, True
        if not d:
            return got, True
        got += d
        h, sep, rest = got.partition(b"\r\n\r\n")
        if not until_close and sep and b"content-length:" in h.lower():
            n = int(h.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(rest) >= n:
                break
    return got, False


def exchange(port, data, timeout=5):
    """Sends data on a new connection (as much as the server takes) and
    reads until it closes. Returns (status, headers, body, closed)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass        # answered and closed before it read everything
        got, closed = read_answer(s, timeout)
    if not got:
        return None, {}, b"", closed
    st, h, body = parse_response(got)
    return st, h, body, closed


def head(total, path="/health", extra=""):
    """A GET head of exactly total bytes, padded by one X-Pad header."""
    base = "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s" % (path, extra)
    pad = total - len(base) - len("X-Pad: \r\n\r\n")
    check(pad >= 0, "head too small for its base")
    h = (base + "X-Pad: " + "a" * pad + "\r\n\r\n").encode()
    eq(len(h), total, "head length")
    return h


def post_head(length, chunked=False):
    te = "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: %d\r\n" % length
    return ("POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n"
            % te).encode()


def event_body(user, size):
    """A POST /events body of exactly size bytes."""
    b = json.dumps({"userId": user, "type": "t", "data": ""})
    pad = size - len(b)
    b = json.dumps({"userId": user, "type": "t", "data": "x" * pad}).encode()
    eq(len(b), size, "body length")
    return b


# -------------------------------------------------------------------- tests

def test_head_limit(env):
    """A head of 16384 bytes is served; one byte more is answered 431
    headers_too_large and the connection closed; so is a head on a
    kept-alive connection. A head too big for libmicrohttpd's 32 KiB of
    connection memory gets its own 431 (HTML body), also closed."""
    p = env.g.port
    st, _, body, closed = exchange(p, head(HEAD_MAX))
    eq(st, 200, "a %d-byte head" % HEAD_MAX)
    eq(json.loads(body)["status"], "ok", "its body")
    for total in (HEAD_MAX + 1, 24000):
        st, h, body, closed = exchange(p, head(total))
        eq(st, 431, "a %d-byte head" % total)
        eq(h.get("content-type"), "application/json; charset=utf-8", "content type")
        eq(json.loads(body), HEADS_TOO_LARGE, "body of the 431")
        eq(h.get("connection"), "close", "Connection of the 431")
        check(closed, "the connection of a %d-byte head was closed" % total)
    # Past the connection's memory, and much past it.
    for total in (40000, 1 << 20):
        st, h, body, closed = exchange(p, head(total), timeout=10)
        eq(st, 431, "a %d-byte head" % total)
        eq(h.get("connection"), "close", "Connection of libmicrohttpd's 431")
        check(closed, "the connection of a %d-byte head was closed" % total)
    # A big head after a good request on a kept-alive connection.
    with socket.create_connection((HOST, p), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"}" not in got:
            d = s.recv(65536)
            check(d, "closed before the first answer")
            got += d
        check(got.startswith(b"HTTP/1.1 200 "), "first answer %r" % got[:40])
        s.sendall(head(HEAD_MAX + 100).replace(b"Connection: close\r\n", b""))
        got, closed = read_answer(s)
        st, h, body = parse_response(got)
        eq(st, 431, "a big head on a kept-alive connection")
        eq(json.loads(body), HEADS_TOO_LARGE, "its body")
        check(closed, "the kept-alive connection was closed")
    # The stream route and POST routes the same way.
    st, _, body, closed = exchange(p, head(HEAD_MAX + 1, "/events/sse?userId=%s" % env.user))
    eq(st, 431, "a big head on GET /events/sse")
    st, _, body, closed = exchange(
        p, head(HEAD_MAX + 1, "/health").replace(b"GET /health", b"POST /events"))
    eq(st, 431, "a big head on POST /events")
    eq(get_json(p, "/health")[0], 200, "the instance serves on")


def test_big_heads_bounded(env):
    """Fifty clients each sending a 1 MiB head at once cost the instance
    its connections' memory (32 KiB each), not what they send."""
    p = env.g.port
    pid = env.g.proc.pid
    data = head(1 << 20)
    before = rss_kib(pid)
    socks = []
    for _ in range(50):
        s = socket.create_connection((HOST, p), timeout=5)
        s.setblocking(False)
        socks.append([s, 0])
    # Push until every server has refused (it stops reading) or closed.
    deadline = time.monotonic() + 15
    answered = set()
    while len(answered) < len(socks) and time.monotonic() < deadline:
        for i, (s, off) in enumerate(socks):
            if i in answered:
                continue
            try:
                if off < len(data):
                    socks[i][1] += s.send(data[off:off + 65536])
                d = s.recv(4096)
                if d.startswith(b"HTTP/1.1 431") or not d:
                    answered.add(i)
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                answered.add(i)
        time.sleep(0.01)
    grown = rss_kib(pid) - before
    print("# 50 heads of 1 MiB: RSS %+d KiB" % grown)
    for s, _ in socks:
        s.close()
    eq(len(answered), 50, "clients answered 431 or closed")
    check(grown < 20 * 1024, "RSS grew %d KiB for 50 MiB of heads" % grown)
    eq(get_json(p, "/health")[0], 200, "the instance serves on")


def hold_bodies(port, user, n, sent):
    """n connections each sending the head of a BODY-byte POST /events and
    sent bytes of its body, never the rest."""
    socks = []
    body = event_body(user, BODY)
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=5)
        s.sendall(post_head(BODY) + body[:sent])
        socks.append(s)
    return socks


def test_body_budget(env):
    """MAX_PENDING_BODY_KIB=256 holds four unfinished 60,000-byte bodies;
    a fifth is answered 503 overloaded at once, before its body, and its
    connection closed. Small bodies fit the rest; a held body that ends
    gives its room back."""
    p = env.g.port
    held = hold_bodies(p, env.user, 4, BODY - 1000)
    # Each holder's head is read and its room taken (Content-Length + 1).
    wait_metric(env.g, "ssegate_request_bodies_pending_bytes", 4 * (BODY + 1))
    for s in held:
        r, _, _ = select.select([s], [], [], 0)
        check(not r, "a held body was answered early")
    with socket.create_connection((HOST, p), timeout=5) as s:
        s.sendall(post_head(BODY))         # the head alone: refused before its body
        got, closed = read_answer(s)
    st, h, body = parse_response(got)
    eq(st, 503, "a fifth body")
    eq(json.loads(body), OVER_BUDGET, "body of the 503")
    eq(h.get("connection"), "close", "Connection of the 503")
    eq(h.get("retry-after"), "1", "Retry-After of the 503")
    check(closed, "the fifth body's connection was closed")
    # 4 x 60001 reserved of 262144: a small body still fits.
    st, _, b = post_json(p, "/events", {"userId": env.user, "type": "small"})
    eq(st, 202, "a small POST /events beside the held bodies (%r)" % b)
    # One holder finishes: 202, and its room is free for the next.
    body = event_body(env.user, BODY)
    held[0].sendall(body[BODY - 1000:])
    got, _ = read_answer(held[0], timeout=5, until_close=False)
    check(got.startswith(b"HTTP/1.1 202 "), "the finished body: %r" % got[:60])
    held[0].close()
    # Its room is given back when the request ends, just after its answer.
    wait_metric(env.g, "ssegate_request_bodies_pending_bytes", 3 * (BODY + 1))
    st, _, b = post_json(p, "/events", {"userId": env.user, "type": "t", "data": "x" * 59000})
    eq(st, 202, "a big body once one finished (%r)" % str(b)[:80])
    # One holder leaves without finishing: its room comes back too.
    held[1].close()
    wait_until(lambda: post_json(p, "/events", {"userId": env.user, "type": "t",
                                                "data": "x" * 59000})[0] == 202,
               5, "room after a holder left")
    for s in held[2:]:
        s.close()
    wait_metric(env.g, "ssegate_request_bodies_pending_bytes", 0)


def test_body_budget_chunked(env):
    """A chunked body (no Content-Length) takes its room as it grows; when
    the room runs out mid-body the rest is discarded, never held, and once
    it ends it is answered 503 overloaded with the connection closed."""
    p = env.g.port
    held = hold_bodies(p, env.user, 4, 10)          # 240,004 of 262,144 reserved
    wait_metric(env.g, "ssegate_request_bodies_pending_bytes", 4 * (BODY + 1))
    body = event_body(env.user, 40000)
    with socket.create_connection((HOST, p), timeout=5) as s:
        s.sendall(post_head(0, chunked=True))
        for i in range(0, len(body), 4000):
            part = body[i:i + 4000]
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        got, closed = read_answer(s)
    st, h, b = parse_response(got)
    eq(st, 503, "a chunked body past the budget")
    eq(json.loads(b), OVER_BUDGET, "body of the 503")
    eq(h.get("connection"), "close", "Connection of the 503")
    check(closed, "its connection was closed")
    for s in held:
        s.close()
    # With the room back, the same chunked body is taken.
    def chunked_ok():
        with socket.create_connection((HOST, p), timeout=5) as s:
            s.sendall(post_head(0, chunked=True) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            got, _ = read_answer(s, timeout=5, until_close=False)
        return got.startswith(b"HTTP/1.1 202 ")
    wait_until(chunked_ok, 5, "a chunked body once the room is back")


def test_body_budget_memory(env):
    """500 clients each holding an unfinished 64 KiB body: only as many as
    MAX_PENDING_BODY_KIB (4 MiB here) are held, the others are refused 503
    and closed, and the instance's RSS grows by about the budget, not by
    the 32 MiB they send."""
    # AddressSanitizer would keep freed memory (the refused connections')
    # in its quarantine, counted in RSS: keep that small.
    asan = os.environ.get("ASAN_OPTIONS", "")
    g = Gateway(BIN, env.redis, env.work.path, "hostile-mem", HTTP_THREADS=2,
                MAX_PENDING_BODY_KIB=4096, REQUEST_TIMEOUT_MS=20000, MAX_CONNECTIONS=2000,
                ASAN_OPTIONS=(asan + ":" if asan else "") + "quarantine_size_mb=1")
    env.extra.append(g)
    pid = g.proc.pid
    body = event_body(env.user, 65000)
    before = rss_kib(pid)
    socks, refused = [], 0
    for _ in range(500):
        s = socket.create_connection((HOST, g.port), timeout=5)
        try:
            s.sendall(post_head(len(body)) + body[:-1])
        except (BrokenPipeError, ConnectionResetError):
            refused += 1
            s.close()
            continue
        socks.append(s)
    # Every refusal is an answer and a close; every holder waits.
    held = 0
    for s in socks:
        got, closed = read_answer(s, timeout=0.05)
        if got:
            check(got.startswith(b"HTTP/1.1 503 "), "a refusal: %r" % got[:40])
            check(b'"error":"overloaded"' in got, "its body: %r" % got[-200:])
            refused += 1
        else:
            held += 1
    grown = rss_kib(pid) - before
    print("# 500 bodies: %d held, %d refused, RSS %+d KiB" % (held, refused, grown))
    for s in socks:
        s.close()
    # 4 MiB / 65001 bytes a body = 64 held.
    eq(held, 64, "bodies held (refused %d)" % refused)
    check(grown < 20 * 1024, "RSS grew %d KiB for 500 bodies of 64 KiB" % grown)
    wait_until(lambda: post_json(g.port, "/events", {"userId": env.user, "type": "t",
                                                     "data": "x" * 60000})[0] == 202,
               5, "a body accepted once the holders left")


def test_query_read_once(env):
    """userId is read once and whole: given twice, without "=", or with a
    %00 in it, it is 400 invalid_parameter (it opened user 1's stream, or
    the firehose); a resume id given twice is no resume id."""
    p = env.g.port
    bad = {"error": "invalid_parameter",
           "message": "userId must be given once, as 1 to 18 digits"}
    u = env.user
    for q in ("userId=%s%%00x" % u, "userId", "userId&userId=%s" % u,
              "userId=%s&userId=%s" % (u, u), "userId=%s%%00" % u, "userId="):
        st, _, body = http(p, "GET", "/events/sse?" + q, timeout=5)
        eq(st, 400, "GET /events/sse?%s" % q)
        eq(json.loads(body), bad, "body for ?%s" % q)
    # Encoded digits are still digits; other parameters may repeat.
    enc = "".join("%%%02X" % ord(c) for c in u)
    with socket.create_connection((HOST, p), timeout=5) as s:
        s.sendall(("GET /events/sse?userId=%s&x=1&x=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                   % enc).encode())
        got, _ = read_answer(s, timeout=1, until_close=False)
    check(got.startswith(b"HTTP/1.1 200 "), "a stream for userId=%s&x=1&x=2: %r"
          % (enc, got[:40]))


TESTS = [
    test_head_limit,
    test_big_heads_bounded,
    test_body_budget,
    test_body_budget_chunked,
    test_body_budget_memory,
    test_query_read_once,
]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
