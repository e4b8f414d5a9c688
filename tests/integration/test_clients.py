#!/usr/bin/env python3
"""Integration suite for the limits per client: rate limits shared by every
instance through Redis (RATE_LIMIT_WRITES, RATE_LIMIT_STREAMS), who the
client is (the TCP peer, or X-Forwarded-For through TRUSTED_PROXIES only),
MAX_STREAMS_PER_USER and MAX_CONNECTIONS_PER_CLIENT, and stream opens
admitted while Redis cannot check them. A real redis-server and ssegate
instances on loopback; prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_clients.py [-k substr]
"""
import json
import math
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, Gateway, Redis, SSEClient, TestFailure, Workdir,  # noqa: E402
                     check, eq, get_json, parse_response, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")

RATE_LIMITED = "too many requests from this address; retry after Retry-After seconds"


class Env:
    """One Redis; each test starts the gateways it needs (kept in extra, so
    run_suite checks each for sanitizer reports and a clean exit)."""

    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        self.extra = []
        self.ignore = set()

    def gateways(self):
        return self.extra

    def gateway(self, name, redis=None, **env):
        g = Gateway(BIN, redis or self.redis, self.work.path, name, **env)
        self.extra.append(g)
        return g

    def forget_rate_limits(self):
        """Each test starts with every client's bucket full."""
        keys = self.redis.cli("--scan", "--pattern", "ssegate:rl:*").split()
        if keys:
            self.redis.cli("DEL", *keys)

    def rate_keys(self):
        return sorted(self.redis.cli("--scan", "--pattern", "ssegate:rl:*").split())

    def close(self):
        codes = {g.name: g.stop() for g in self.extra}
        self.redis.stop()
        return codes


# ------------------------------------------------------------------ helpers

def get_json_or_text(port, path, headers, timeout):
    from harness import http
    st, h, text = http(port, "GET", path, headers=headers, timeout=timeout)
    try:
        return st, h, json.loads(text)
    except ValueError:
        return st, h, text


def open_stream(port, query="", headers=None):
    c = SSEClient(port, query, timeout=10, headers=headers)
    eq(c.status, 200, "stream status (%s)" % getattr(c, "error_body", ""))
    c.wait(lambda s: s.retry is not None and s.comments, 5, "retry and hello comment")
    return c


def refused_stream(port, query="", headers=None):
    """A stream open that is answered with an error: (status, headers, body)."""
    c = SSEClient(port, query, timeout=10, headers=headers)
    try:
        check(c.status != 200, "the stream was refused (got %d)" % c.status)
        return c.status, c.headers, json.loads(c.error_body)
    finally:
        c.close()


def expect_rate_limited(st, h, body, first, last, interval_s, what):
    """A 429 rate_limited whose Retry-After is the time to the client's next
    token: interval_s after its first request, minus what passed between
    the first request (sent at or after first) and the refusal (answered
    at or before last), in whole seconds rounded up."""
    eq(st, 429, "%s: status" % what)
    eq(body, {"error": "rate_limited", "message": RATE_LIMITED}, "%s: body" % what)
    eq(h.get("content-type"), "application/json; charset=utf-8", "%s: content type" % what)
    ra = int(h.get("retry-after", "0"))
    lo = max(1, math.ceil(interval_s - (last - first)))
    check(lo <= ra <= interval_s,
          "%s: Retry-After %d, want %d..%d" % (what, ra, lo, interval_s))


class Conn:
    """A kept-alive connection, one request at a time."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=5)

    def get(self, path, headers=None):
        """(status, body) of one request, or (None, b"") when the server
        closed the connection without an answer."""
        h = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        try:
            self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, h)).encode())
        except (BrokenPipeError, ConnectionResetError):
            return None, b""
        got = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                d = b""
            if not d:
                break
            got += d
            head, sep, rest = got.partition(b"\r\n\r\n")
            if sep:
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    return parse_response(got)[0], rest[:n]
        if got:
            raise TestFailure("half an answer: %r" % got[:200])
        return None, b""

    def close(self):
        self.sock.close()


def connection_refused(port):
    """A new connection is closed by the server without a byte of answer."""
    c = Conn(port)
    try:
        st, _ = c.get("/health")
        return st is None
    finally:
        c.close()


def connection_served(port):
    """A new connection is served; it is closed by the server, which gives
    its place back before closing the socket (so once we see the end, the
    place is free again)."""
    c = Conn(port)
    try:
        if c.get("/health", {"Connection": "close"})[0] != 200:
            return False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if c.sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
        raise TestFailure("the server kept a Connection: close connection open")
    finally:
        c.close()


# -------------------------------------------------------------------- tests

def test_write_limit_across_instances(env):
    """RATE_LIMIT_WRITES=5/60s on two instances sharing Redis: five writes
    alternating between them (an account, events, a snapshot) pass, the
    sixth is refused 429 on either, with Retry-After the time to the next
    token; a refused write writes nothing (no event, no account id, no
    balance); reads and /health are not limited."""
    env.forget_rate_limits()
    g1 = env.gateway("rl-w-1", RATE_LIMIT_WRITES="5/60s")
    g2 = env.gateway("rl-w-2", RATE_LIMIT_WRITES="5/60s")
    t0 = time.monotonic()
    st, _, acct = post_json(g1.port, "/accounts", {"name": "Ada", "balance": 5})
    eq(st, 201, "1st write: POST /accounts on backend 1")
    uid = acct["id"]
    for i, (g, path, body, want) in enumerate([
            (g2, "/events", {"userId": uid, "type": "t", "data": 1}, 202),
            (g1, "/accounts/%s/snapshots" % uid, {"balance": 6}, 201),
            (g2, "/events", {"userId": uid, "type": "t", "data": 2}, 202),
            (g1, "/events", {"userId": uid, "type": "t", "data": 3}, 202)], 2):
        st, _, b = post_json(g.port, path, body)
        eq(st, want, "write %d (%s on %s): %r" % (i, path, g.name, b))
    history = env.redis.cli("XLEN", "ssegate:history:" + uid)
    last_id = env.redis.cli("GET", "ssegate:lastid")
    seq = env.redis.cli("GET", "ssegate:account:seq")
    keys = env.redis.cli("--scan", "--pattern", "ssegate:account:*")

    st, h, body = post_json(g2.port, "/events", {"userId": uid, "type": "t", "data": 4})
    expect_rate_limited(st, h, body, t0, time.monotonic(), 12, "6th write on backend 2")
    st, h, body = post_json(g1.port, "/accounts", {"name": "Bob"})
    expect_rate_limited(st, h, body, t0, time.monotonic(), 12, "7th write on backend 1")
    st, h, body = post_json(g1.port, "/accounts/%s/snapshots" % uid, {"balance": 99})
    expect_rate_limited(st, h, body, t0, time.monotonic(), 12, "8th write (a snapshot)")
    st, h, body = post_json(g2.port, "/events", {"userId": uid, "type": "t"},
                            headers={"Idempotency-Key": "k-1"})
    expect_rate_limited(st, h, body, t0, time.monotonic(), 12, "a write with a key")

    eq(env.redis.cli("XLEN", "ssegate:history:" + uid), history, "history after refusals")
    eq(env.redis.cli("GET", "ssegate:lastid"), last_id, "last event id after refusals")
    eq(env.redis.cli("GET", "ssegate:account:seq"), seq, "account id counter after refusals")
    eq(env.redis.cli("--scan", "--pattern", "ssegate:account:*"), keys, "accounts after refusals")
    eq(env.redis.cli("--scan", "--pattern", "ssegate:idem:*"), "", "kept answers after refusals")
    eq(env.redis.cli("HGET", "ssegate:account:" + uid, "balance"), "6", "balance after refusals")
    # One bucket for the client, expiring by itself once it is full again.
    eq(env.rate_keys(), ["ssegate:rl:writes:127.0.0.1"], "rate-limit keys")
    ttl = int(env.redis.cli("PTTL", "ssegate:rl:writes:127.0.0.1"))
    check(0 < ttl <= 60000, "the bucket expires within the window (PTTL %d)" % ttl)
    # Not limited: reads, health, stream opens (their own limit is off).
    for g in (g1, g2):
        st, _, got = get_json(g.port, "/accounts/" + uid)
        eq((st, got["balance"]), (200, 6), "GET /accounts on %s" % g.name)
        eq(get_json(g.port, "/health")[0], 200, "/health on %s" % g.name)
    open_stream(g2.port, "userId=" + uid).close()


def test_write_limit_refills(env):
    """RATE_LIMIT_WRITES=2/2s is a bucket of 2 refilled at one per second:
    after the burst a refused client is let in again once a token is back
    (not at the end of a window), one request at a time."""
    env.forget_rate_limits()
    g = env.gateway("rl-refill", RATE_LIMIT_WRITES="2/2s")
    t0 = time.monotonic()
    st, _, acct = post_json(g.port, "/accounts", {"name": "Ada"})
    eq(st, 201, "1st write")
    ev = {"userId": acct["id"], "type": "t"}
    eq(post_json(g.port, "/events", ev)[0], 202, "2nd write")
    st, h, body = post_json(g.port, "/events", ev)
    expect_rate_limited(st, h, body, t0, time.monotonic(), 1, "3rd write")
    # A refused request costs no token: polling until one is back is fine.
    wait_until(lambda: post_json(g.port, "/events", ev)[0] == 202, 5, "a token back")
    took = time.monotonic() - t0
    check(took >= 0.9, "a token came back after %.2fs, want about 1s" % took)
    st, h, body = post_json(g.port, "/events", ev)
    eq((st, h.get("retry-after")), (429, "1"), "the next write at once")


def test_stream_limit_across_instances(env):
    """RATE_LIMIT_STREAMS=2/60s: two opens (one per instance) pass, the
    third is refused 429 rate_limited with Retry-After and never joins the
    instance's streams; writes have their own limit (off here)."""
    env.forget_rate_limits()
    g1 = env.gateway("rl-s-1", RATE_LIMIT_STREAMS="2/60s")
    g2 = env.gateway("rl-s-2", RATE_LIMIT_STREAMS="2/60s")
    st, _, acct = post_json(g1.port, "/accounts", {"name": "Ada"})
    eq(st, 201, "POST /accounts")
    t0 = time.monotonic()
    a = open_stream(g1.port, "userId=" + acct["id"])
    b = open_stream(g2.port)
    st, h, body = refused_stream(g1.port, "userId=" + acct["id"])
    expect_rate_limited(st, h, body, t0, time.monotonic(), 30, "3rd stream open")
    st, h, body = refused_stream(g2.port)
    expect_rate_limited(st, h, body, t0, time.monotonic(), 30, "4th stream open (firehose)")
    eq(get_json(g1.port, "/health")[2]["streams"], 1, "streams on backend 1")
    eq(get_json(g2.port, "/health")[2]["streams"], 1, "streams on backend 2")
    eq(env.rate_keys(), ["ssegate:rl:streams:127.0.0.1"], "rate-limit keys")
    # The open streams are unaffected: they get the next event.
    st, _, ev = post_json(g2.port, "/events", {"userId": acct["id"], "type": "t"})
    eq(st, 202, "POST /events is not limited by RATE_LIMIT_STREAMS")
    for c in (a, b):
        c.wait(lambda s: any(e.id == ev["id"] for e in s.events), 5, "the event")
        c.close()


def test_forwarded_for_trusted(env):
    """Through a trusted proxy (TRUSTED_PROXIES=127.0.0.1/32) the client is
    the rightmost X-Forwarded-For address that is not itself trusted:
    each client its own limit, whatever it wrote itself left of that; an
    IPv6 client counts by its /64; a request without the header is the
    proxy's own."""
    env.forget_rate_limits()
    g = env.gateway("xff-trusted", TRUSTED_PROXIES="127.0.0.1/32",
                    RATE_LIMIT_WRITES="2/60s")
    st, _, acct = post_json(g.port, "/accounts", {"name": "Ada"})     # the proxy's own
    eq(st, 201, "POST /accounts without X-Forwarded-For")
    ev = {"userId": acct["id"], "type": "t"}

    def post(xff):
        return post_json(g.port, "/events", ev, headers={"X-Forwarded-For": xff})

    t0 = time.monotonic()
    eq(post("203.0.113.7")[0], 202, "client .7, 1st")
    # What the client put in front is not read: still .7.
    eq(post("198.51.100.1, 203.0.113.7")[0], 202, "client .7 behind a forged address, 2nd")
    st, h, body = post("127.0.0.1, 203.0.113.7")
    expect_rate_limited(st, h, body, t0, time.monotonic(), 30, "client .7, 3rd")
    # Another client behind the same proxy has its own limit; trusted hops
    # to the right of it are peeled off.
    eq(post("203.0.113.8")[0], 202, "client .8")
    eq(post("203.0.113.8, 127.0.0.1")[0], 202, "client .8 through a second proxy")
    eq(post("203.0.113.8")[0], 429, "client .8, 3rd")
    # IPv6: one /64, one client.
    eq(post("2001:db8:1:2::7")[0], 202, "v6 client, 1st")
    eq(post("[2001:db8:1:2:ffff::8]:4711")[0], 202, "v6 client from its /64, 2nd")
    eq(post("2001:db8:1:2::9")[0], 429, "v6 client, 3rd")
    # Garbage where the proxy's entry should be: the proxy itself.
    eq(post("unknown")[0], 202, "an unreadable header: counted as the proxy (2nd of its own)")
    eq(env.rate_keys(), ["ssegate:rl:writes:127.0.0.1",
                         "ssegate:rl:writes:2001:db8:1:2::/64",
                         "ssegate:rl:writes:203.0.113.7",
                         "ssegate:rl:writes:203.0.113.8"], "one bucket per client")


def test_forwarded_for_untrusted(env):
    """A client talking to an instance that does not trust its address
    cannot choose who it is: its X-Forwarded-For is ignored, and every
    request counts against its TCP address."""
    env.forget_rate_limits()
    g = env.gateway("xff-untrusted", RATE_LIMIT_WRITES="2/60s",
                    TRUSTED_PROXIES="10.0.0.0/8")
    t0 = time.monotonic()
    st, _, acct = post_json(g.port, "/accounts", {"name": "Ada"},
                            headers={"X-Forwarded-For": "203.0.113.1"})
    eq(st, 201, "1st write")
    st, _, _ = post_json(g.port, "/events", {"userId": acct["id"], "type": "t"},
                         headers={"X-Forwarded-For": "203.0.113.2"})
    eq(st, 202, "2nd write")
    st, h, body = post_json(g.port, "/events", {"userId": acct["id"], "type": "t"},
                            headers={"X-Forwarded-For": "203.0.113.3"})
    expect_rate_limited(st, h, body, t0, time.monotonic(), 30, "3rd write, another forged address")
    eq(env.rate_keys(), ["ssegate:rl:writes:127.0.0.1"], "the only bucket is the peer's")


def test_streams_per_user(env):
    """MAX_STREAMS_PER_USER=2: a user's third stream on the instance is
    refused 429 too_many_streams; other users and the firehose are not
    limited by it; once one of the user's streams ends, a new one opens."""
    g = env.gateway("per-user", MAX_STREAMS_PER_USER=2)
    uids = [post_json(g.port, "/accounts", {"name": n})[2]["id"] for n in ("Ada", "Bob")]
    a = [open_stream(g.port, "userId=" + uids[0]) for _ in range(2)]
    st, h, body = refused_stream(g.port, "userId=" + uids[0])
    eq(st, 429, "the user's 3rd stream")
    eq(body, {"error": "too_many_streams",
              "message": "this user holds MAX_STREAMS_PER_USER streams on this instance already"},
       "its body")
    eq(h.get("content-type"), "application/json; charset=utf-8", "its content type")
    others = [open_stream(g.port, "userId=" + uids[1]) for _ in range(2)]
    others += [open_stream(g.port) for _ in range(3)]
    eq(get_json(g.port, "/health")[2]["streams"], 7, "streams held")
    a[0].close()
    wait_until(lambda: get_json(g.port, "/health")[2]["streams"] == 6, 5,
               "the closed stream counted out")
    a[0] = open_stream(g.port, "userId=" + uids[0])
    for c in a + others:
        c.close()


def test_connections_per_client(env):
    """MAX_CONNECTIONS_PER_CLIENT=4 from 127.0.0.1: two streams and two
    kept-alive connections fill it, and the next connection is closed at
    once with no answer (streams count after libmicrohttpd has handed
    their sockets over); when a stream or a connection goes, a new
    connection is served again."""
    g = env.gateway("per-client", MAX_CONNECTIONS_PER_CLIENT=4)
    streams = [open_stream(g.port) for _ in range(2)]
    conns = [Conn(g.port) for _ in range(2)]
    for c in conns:
        eq(c.get("/health")[0], 200, "a kept-alive connection is served")
    check(connection_refused(g.port), "a 5th connection is refused")
    check(connection_refused(g.port), "and a 6th")
    for c in conns:
        eq(c.get("/health")[0], 200, "the kept-alive connections still work")
    streams[0].close()
    wait_until(lambda: connection_served(g.port), 5, "a connection served after a stream ended")
    # The served probe has gone again; take the freed place with a stream.
    streams[0] = open_stream(g.port)
    check(connection_refused(g.port), "full again")
    conns[0].close()
    wait_until(lambda: connection_served(g.port), 5,
               "a connection served after a connection closed")
    for c in streams + conns[1:]:
        c.close()
    wait_until(lambda: all(connection_served(g.port) for _ in range(4)), 5,
               "every place given back")


def test_connections_per_client_via_proxy(env):
    """Behind a trusted proxy the cap counts each X-Forwarded-For client's
    requests and streams: a third stream of one client is refused 429
    too_many_connections, another client is not; and the proxy's own
    connections are not capped at accept (it carries many clients)."""
    g = env.gateway("per-client-proxy", MAX_CONNECTIONS_PER_CLIENT=2,
                    TRUSTED_PROXIES="127.0.0.1/32")
    seven = {"X-Forwarded-For": "203.0.113.7"}
    a = [open_stream(g.port, headers=seven) for _ in range(2)]
    st, h, body = refused_stream(g.port, headers=seven)
    eq(st, 429, "a 3rd stream of client .7")
    eq(body, {"error": "too_many_connections",
              "message": "this client address holds MAX_CONNECTIONS_PER_CLIENT connections already"},
       "its body")
    st, _, _ = get_json_or_text(g.port, "/health", seven, 5)
    eq(st, 429, "any request of client .7 while it holds two streams")
    b = open_stream(g.port, headers={"X-Forwarded-For": "203.0.113.8"})
    # Five connections from the proxy itself, each kept alive: no cap at
    # accept, and each finished request gives its place back.
    conns = [Conn(g.port) for _ in range(5)]
    for i, c in enumerate(conns):
        eq(c.get("/health")[0], 200, "proxy connection %d" % i)
        eq(c.get("/health", seven)[0], 429, "client .7 on proxy connection %d" % i)
    a[0].close()
    wait_until(lambda: get_json_or_text(g.port, "/health", seven, 5)[0] == 200, 5,
               "client .7 served once a stream ended")
    for c in a[1:] + [b] + conns:
        c.close()


def test_streams_admitted_while_redis_frozen(env):
    """RATE_LIMIT_STREAMS=1/60s: the second open is refused; with Redis
    frozen (SIGSTOP) the check cannot be answered and an open is admitted
    (200 and its first lines, as any open while Redis is away), while a
    write gets 503 redis_unavailable; after SIGCONT the limit holds again."""
    redis = Redis(env.work.path)
    try:
        g = env.gateway("frozen", redis=redis, RATE_LIMIT_STREAMS="1/60s",
                        RATE_LIMIT_WRITES="100/60s", REDIS_TIMEOUT_MS=300)
        st, _, acct = post_json(g.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts")
        a = open_stream(g.port, "userId=" + acct["id"])
        eq(refused_stream(g.port)[0], 429, "the 2nd open, Redis up")
        redis.proc.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            b = open_stream(g.port, "userId=" + acct["id"])
            check(time.monotonic() - t0 < 3, "admitted within the Redis timeout (%.1fs)"
                  % (time.monotonic() - t0))
            st, h, body = post_json(g.port, "/events", {"userId": acct["id"], "type": "t"})
            eq((st, body["error"], h.get("retry-after")), (503, "redis_unavailable", "1"),
               "a write while Redis is frozen")
        finally:
            redis.proc.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: get_json(g.port, "/health")[0] == 200, 10, "health after SIGCONT")
        eq(refused_stream(g.port)[0], 429, "an open once Redis answers again")
        # The admitted stream is a stream like any: it gets the next event.
        st, _, ev = post_json(g.port, "/events", {"userId": acct["id"], "type": "t"})
        eq(st, 202, "POST /events after SIGCONT")
        for c in (a, b):
            c.wait(lambda s: any(e.id == ev["id"] for e in s.events), 5, "the event")
            c.close()
        eq(g.stop(), 0, "exit code")
    finally:
        redis.proc.proc.send_signal(signal.SIGCONT)
        redis.stop()


TESTS = [
    test_write_limit_across_instances,
    test_write_limit_refills,
    test_stream_limit_across_instances,
    test_forwarded_for_trusted,
    test_forwarded_for_untrusted,
    test_streams_per_user,
    test_connections_per_client,
    test_connections_per_client_via_proxy,
    test_streams_admitted_while_redis_frozen,
]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
