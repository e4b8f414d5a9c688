#!/usr/bin/env python3
"""Integration suite for CORS_ORIGINS: preflights (204, the route's methods,
the headers a page may send, Max-Age), the headers of simple requests and
errors, the event stream's own head, origins not on the list (no
Access-Control-* header at all), "*", and CORS off. A real redis-server
and ssegate instances on loopback; prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_cors.py [-k substr]
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, Gateway, Redis, SSEClient, TestFailure, Workdir,  # noqa: E402
                     check, eq, http, parse_response, post_json, run_suite)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")

APP = "https://app.example.com"
LOCAL = "http://localhost:8080"
EVIL = "https://app.example.com.evil.example"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"


class Env:
    """One Redis; a gateway with two exact origins, one with "*", one with
    CORS off (the default)."""

    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        self.exact = Gateway(BIN, self.redis, self.work.path, "cors-exact",
                             CORS_ORIGINS="%s, %s" % (APP, LOCAL))
        self.any = Gateway(BIN, self.redis, self.work.path, "cors-any", CORS_ORIGINS="*")
        self.off = Gateway(BIN, self.redis, self.work.path, "cors-off")
        st, _, acct = post_json(self.off.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts")
        self.uid = acct["id"]

    def gateways(self):
        return [self.exact, self.any, self.off]

    def close(self):
        codes = {g.name: g.stop() for g in self.gateways()}
        self.redis.stop()
        return codes


def cors_headers(h):
    """Every Access-Control-* header of a response, lower-cased names."""
    return {k: v for k, v in h.items() if k.startswith("access-control-")}


def preflight(port, path, origin, method="POST", headers="Content-Type"):
    h = {"Access-Control-Request-Method": method}
    if origin is not None:
        h["Origin"] = origin
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return http(port, "OPTIONS", path, headers=h)


# -------------------------------------------------------------------- tests

def test_preflight(env):
    """OPTIONS on a known path from an allowed origin: 204, no body, the
    path's methods (as a 405's Allow lists them), the headers our
    endpoints read, Max-Age 600, the origin itself with credentials."""
    for path, methods in (("/events", "POST"), ("/accounts", "POST"),
                          ("/accounts/%s" % env.uid, "GET, HEAD"),
                          ("/accounts/%s/snapshots" % env.uid, "POST"),
                          ("/events/sse", "GET"), ("/health", "GET, HEAD")):
        for origin in (APP, LOCAL):
            st, h, body = preflight(env.exact.port, path, origin)
            eq(st, 204, "preflight %s from %s" % (path, origin))
            eq(body, "", "no body")
            check("content-length" not in h or h["content-length"] == "0",
                  "no content: %r" % h)
            eq(cors_headers(h), {
                "access-control-allow-origin": origin,
                "access-control-allow-credentials": "true",
                "access-control-allow-methods": methods,
                "access-control-allow-headers": ALLOW_HEADERS,
                "access-control-max-age": "600",
                "access-control-expose-headers": "Location, Retry-After",
            }, "CORS headers of the preflight of %s" % path)
            eq(h.get("vary"), "Origin", "Vary")
            eq(h.get("allow"), methods, "Allow")
    # An unknown path is still a 404.
    st, h, body = preflight(env.exact.port, "/nope", APP)
    eq(st, 404, "preflight of an unknown path")
    eq(json.loads(body)["error"], "not_found", "its error")
    eq(h.get("access-control-allow-origin"), APP, "the 404 is readable by the page")


def test_preflight_keeps_the_connection(env):
    """A browser sends its real request right after the preflight, on the
    same connection: the 204 does not close it."""
    with socket.create_connection((HOST, env.exact.port), timeout=5) as s:
        s.sendall(("OPTIONS /events HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\n"
                   "Access-Control-Request-Method: POST\r\n\r\n" % APP).encode())
        got = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in got and time.monotonic() < deadline:
            got += s.recv(65536)
        st, h, rest = parse_response(got)
        eq(st, 204, "preflight")
        check(h.get("connection", "").lower() != "close", "kept alive: %r" % h)
        body = json.dumps({"userId": env.uid, "type": "cors"}).encode()
        s.sendall(("POST /events HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                   % (APP, len(body))).encode() + body)
        got = rest
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        st, h, rest = parse_response(got)
        eq(st, 202, "the real request on the same connection (%r)" % rest)
        eq(h.get("access-control-allow-origin"), APP, "its CORS header")


def test_simple_requests(env):
    """A request from an allowed origin: the origin, credentials, Vary and
    the readable headers, on successes and errors alike. An origin not on
    the list, or no Origin: no Access-Control-* header at all."""
    want = {"access-control-allow-origin": APP,
            "access-control-allow-credentials": "true",
            "access-control-expose-headers": "Location, Retry-After"}
    hdr = {"Origin": APP}
    st, h, b = post_json(env.exact.port, "/accounts", {"name": "Bob"}, headers=hdr)
    eq(st, 201, "POST /accounts")
    eq((cors_headers(h), h.get("vary")), (want, "Origin"), "headers of a 201")
    st, h, b = post_json(env.exact.port, "/events", {"userId": env.uid, "type": "x"}, headers=hdr)
    eq((st, cors_headers(h)), (202, want), "headers of a 202")
    st, h, b = post_json(env.exact.port, "/events", {"userId": env.uid}, headers=hdr)
    eq((st, cors_headers(h)), (400, want), "headers of a 400")
    st, h, b = http(env.exact.port, "GET", "/accounts/999999", headers=hdr)
    eq((st, cors_headers(h)), (404, want), "headers of a 404")
    st, h, b = http(env.exact.port, "DELETE", "/events", headers=hdr)
    eq((st, cors_headers(h), h.get("allow")), (405, want, "POST"), "headers of a 405")
    st, h, b = http(env.exact.port, "GET", "/", headers=hdr)
    eq((st, cors_headers(h)), (200, want), "headers of the page")
    for origin in (EVIL, "https://APP.example.com", "null", APP + "/", None):
        st, h, b = http(env.exact.port, "GET", "/health",
                        headers={"Origin": origin} if origin else None)
        eq(st, 200, "GET /health from %r" % origin)
        eq(cors_headers(h), {}, "no Access-Control-* for %r" % origin)
        eq(h.get("vary"), "Origin", "Vary for %r" % origin)
    # An origin not on the list gets its preflight answered, with nothing
    # that lets the browser go on.
    st, h, _ = preflight(env.exact.port, "/events", EVIL)
    eq((st, cors_headers(h), h.get("allow")), (204, {}, "POST"), "preflight from %s" % EVIL)
    st, h, _ = preflight(env.exact.port, "/events", None)
    eq((st, cors_headers(h)), (204, {}), "OPTIONS without Origin")


def test_any_origin(env):
    """CORS_ORIGINS=*: every origin gets "*" and never credentials (browsers
    refuse them with "*"); a request without Origin gets nothing."""
    for origin in (APP, "https://other.example", "null"):
        st, h, _ = http(env.any.port, "GET", "/health", headers={"Origin": origin})
        eq((st, cors_headers(h)), (200, {"access-control-allow-origin": "*",
                                         "access-control-expose-headers":
                                             "Location, Retry-After"}),
           "GET /health from %s" % origin)
        st, h, _ = preflight(env.any.port, "/events", origin)
        eq(st, 204, "preflight from %s" % origin)
        eq(h.get("access-control-allow-origin"), "*", "its origin")
        check("access-control-allow-credentials" not in h, "no credentials with *")
        eq(h.get("access-control-allow-methods"), "POST", "its methods")
    st, h, _ = http(env.any.port, "GET", "/health")
    eq(cors_headers(h), {}, "no Origin, no CORS")


def test_off(env):
    """Unset (the default): no CORS headers anywhere, and OPTIONS is a 405
    as before."""
    st, h, _ = http(env.off.port, "GET", "/health", headers={"Origin": APP})
    eq(st, 200, "GET /health")
    eq(cors_headers(h), {}, "no Access-Control-*")
    check("vary" not in h, "no Vary: %r" % h)
    st, h, body = preflight(env.off.port, "/events", APP)
    eq((st, json.loads(body)["error"], h.get("allow")), (405, "method_not_allowed", "POST"),
       "OPTIONS with CORS off")
    eq(cors_headers(h), {}, "no Access-Control-* on the 405")
    c = SSEClient(env.off.port, "userId=" + env.uid, headers={"Origin": APP})
    try:
        eq(c.status, 200, "stream")
        eq(c.head_lines, ["HTTP/1.1 200 OK", "Content-Type: text/event-stream",
                          "Cache-Control: no-cache", "X-Accel-Buffering: no",
                          "Transfer-Encoding: chunked", "Connection: close"],
       "the stream's head with CORS off")
    finally:
        c.close()


def test_stream_head(env):
    """The event stream's head, which ssegate writes itself after taking
    the socket over, carries the same CORS headers: the exact origin with
    credentials (EventSource withCredentials), "*", or none for an origin
    not on the list; on HTTP/1.0 too."""
    base = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache",
            "X-Accel-Buffering: no", "Transfer-Encoding: chunked", "Connection: close",
            "Vary: Origin"]
    for port, origin, extra in (
            (env.exact.port, APP, ["Access-Control-Allow-Origin: " + APP,
                                   "Access-Control-Allow-Credentials: true"]),
            (env.exact.port, LOCAL, ["Access-Control-Allow-Origin: " + LOCAL,
                                     "Access-Control-Allow-Credentials: true"]),
            (env.exact.port, EVIL, []),
            (env.any.port, EVIL, ["Access-Control-Allow-Origin: *"])):
        c = SSEClient(port, "userId=" + env.uid, headers={"Origin": origin})
        try:
            eq(c.status, 200, "stream from %s" % origin)
            eq(c.head_lines, base + extra, "the stream's head for %s" % origin)
            c.wait(lambda s: s.retry is not None and s.comments, 5, "the hello")
            st, _, ev = post_json(env.off.port, "/events", {"userId": env.uid, "type": "t"})
            eq(st, 202, "POST /events")
            c.wait(lambda s: any(e.id == ev["id"] for e in s.events), 5, "the event")
        finally:
            c.close()
    with socket.create_connection((HOST, env.exact.port), timeout=5) as s:
        s.sendall(("GET /events/sse HTTP/1.0\r\nOrigin: %s\r\n\r\n" % APP).encode())
        got = b""
        deadline = time.monotonic() + 5
        while b"retry:" not in got:
            if time.monotonic() > deadline:
                raise TestFailure("no hello on HTTP/1.0: %r" % got)
            got += s.recv(65536)
        head = got.partition(b"\r\n\r\n")[0].decode().split("\r\n")
        eq(head, ["HTTP/1.0 200 OK", "Content-Type: text/event-stream",
                  "Cache-Control: no-cache", "X-Accel-Buffering: no", "Connection: close",
                  "Vary: Origin", "Access-Control-Allow-Origin: " + APP,
                  "Access-Control-Allow-Credentials: true"], "the HTTP/1.0 stream's head")


TESTS = [
    test_preflight,
    test_preflight_keeps_the_connection,
    test_simple_requests,
    test_any_origin,
    test_off,
    test_stream_head,
]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
