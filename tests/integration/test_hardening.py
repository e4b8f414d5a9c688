#!/usr/bin/env python3
"""Integration suite for secure mode's hardening: publish keys, Redis ACL
users, and what untrusted input (request heads and bodies, messages others
PUBLISH on the channel) can and cannot do. A real redis-server and ssegate
instances on loopback; prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_hardening.py [-k substr]
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, Gateway, Process, Redis, Relay, SSEClient, TestFailure,  # noqa: E402
                     Workdir, check, eq, free_port, get_json, http, ids_of,
                     parse_response, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
KEY1 = "first-key-0123456789abcdef"
KEY2 = "second.key_ABCDEF+/0123456789=="
UNAUTHORIZED = {"error": "unauthorized",
                "message": "this needs Authorization: Bearer <a publish key>"}
CHALLENGE = 'Bearer realm="ssegate"'


class Env:
    """One Redis, an open gateway and one that needs a publish key (two
    keys, as during a rotation). Tests that need their own instance add
    it to extra and stop it themselves."""

    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        self.open = Gateway(BIN, self.redis, self.work.path, "open-1")
        self.keyed = Gateway(BIN, self.redis, self.work.path, "keyed-1",
                             PUBLISH_KEYS=KEY1 + "," + KEY2)
        self.extra = []

    def gateways(self):
        return [self.open, self.keyed] + self.extra

    def account(self, port=None, headers=None):
        st, _, acct = post_json(port or self.open.port, "/accounts", {"name": "Ada"},
                                headers=headers)
        eq(st, 201, "POST /accounts status (%r)" % (acct,))
        return acct["id"]

    def event(self, port, user, type_, data=None, headers=None):
        st, _, body = post_json(port, "/events", {"userId": user, "type": type_, "data": data},
                                headers=headers)
        eq(st, 202, "POST /events status (%r)" % (body,))
        return body["id"]

    def writes(self):
        """What every write changes in Redis: the event counter and the
        account counter."""
        return (self.redis.cli("GET", "ssegate:lastid"),
                self.redis.cli("GET", "ssegate:account:seq"))

    def close(self):
        codes = {g.name: g.stop() for g in self.gateways()}
        self.redis.stop()
        return codes


def bearer(key):
    return {"Authorization": "Bearer " + key}


def open_stream(port, query="", last_event_id=None):
    c = SSEClient(port, query, last_event_id, timeout=10)
    eq(c.status, 200, "stream status (%s)" % getattr(c, "error_body", ""))
    c.wait(lambda s: s.retry is not None and s.comments, 5, "retry and hello comment")
    return c


def raw(port, data, timeout=5):
    """Sends data on a new connection and reads until the server closes
    it. Returns every byte received."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            got += d
    return got


def responses(data):
    """Every HTTP response in data (with a Content-Length each):
    [(status, headers, body str)]."""
    out = []
    while data:
        status, hdrs, rest = parse_response(data)
        n = int(hdrs.get("content-length", "0"))
        out.append((status, hdrs, rest[:n].decode("utf-8", "replace")))
        data = rest[n:]
    return out


def expect_error(got, status, error, message, what):
    st, h, body = got
    eq(st, status, "%s: status (%s)" % (what, body))
    eq(json.loads(body) if isinstance(body, str) else body, {"error": error, "message": message},
       "%s: body" % what)
    return h


def post_raw(port, path, body, headers, version="HTTP/1.1"):
    """A POST with exactly the headers given (plus Host, Connection:
    close), nothing added: no Content-Type unless headers has one."""
    head = "POST %s %s\r\nHost: %s:%d\r\nConnection: close\r\n" % (path, version, HOST, port)
    head += "".join("%s: %s\r\n" % kv for kv in headers)
    return raw(port, head.encode() + b"\r\n" + body)


def no_more_events(c, n, seconds=0.5):
    c.idle(seconds)
    eq(len(c.events), n, "no other event reached the stream: %r" % c.events[n:])


# ------------------------------------------------------------ publish keys

def test_writes_need_a_publish_key(env):
    g = env.keyed
    uid = env.account(g.port, bearer(KEY1))
    before = env.writes()
    s = open_stream(g.port, "userId=" + uid)         # streams need no key
    for hdrs in (None, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong-key-0123456789"},
                 {"Authorization": "Basic " + KEY1}, {"Authorization": KEY1},
                 {"Authorization": "Bearer " + KEY1 + "x"}, {"Authorization": "Bearer " + KEY1[:-1]}):
        for path, body in (("/events", {"userId": uid, "type": "x"}),
                           ("/accounts", {"name": "Eve"}),
                           ("/accounts/%s/snapshots" % uid, {"balance": 5})):
            h = expect_error(post_json(g.port, path, body, headers=hdrs), 401, "unauthorized",
                             UNAUTHORIZED["message"], "%s with %r" % (path, hdrs))
            eq(h.get("www-authenticate"), CHALLENGE, "WWW-Authenticate")
    # The key is checked before anything else about the request.
    h = expect_error(http(g.port, "POST", "/events", "a=b",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}),
                     401, "unauthorized", UNAUTHORIZED["message"], "a form without a key")
    eq(env.writes(), before, "no refused write changed anything")
    no_more_events(s, 0, 0.3)
    # Either key of the two works: rotation.
    e1 = env.event(g.port, uid, "with-key-1", headers=bearer(KEY1))
    e2 = env.event(g.port, uid, "with-key-2", headers={"Authorization": "bearer   " + KEY2})
    st, _, snap = post_json(g.port, "/accounts/%s/snapshots" % uid, {"balance": 7},
                            headers=bearer(KEY2))
    eq(st, 201, "snapshot with a key")
    eq(ids_of(s.wait_events(3)), [e1, e2, snap["id"]], "what the stream got")
    # A snapshot without a body needs the key just the same.
    st, _, _ = http(g.port, "POST", "/accounts/%s/snapshots" % uid)
    eq(st, 401, "a snapshot without a body or a key")
    s.close()


def test_big_body_without_key_is_refused_cleanly(env):
    """Refused from its head: the 401 arrives whole, the body is never
    read, and the connection closes."""
    g = env.keyed
    body = b'{"userId":"1","type":"x","data":"' + b"a" * 60000 + b'"}'
    got = post_raw(g.port, "/events", body, [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(body)))])
    rs = responses(got)
    eq(len(rs), 1, "one answer")
    h = expect_error(rs[0], 401, "unauthorized", UNAUTHORIZED["message"], "a 60 KB body")
    eq(h.get("connection"), "close", "the connection closes: the body was not read")
    st, _, _ = http(g.port, "GET", "/health")
    eq(st, 200, "the instance serves on")


def test_account_read_needs_a_key(env):
    g = env.keyed
    uid = env.account(g.port, bearer(KEY2))
    for hdrs in (None, {"Authorization": "Bearer nope-nope-nope-nope"}):
        h = expect_error(http(g.port, "GET", "/accounts/" + uid, headers=hdrs), 401,
                         "unauthorized", UNAUTHORIZED["message"], "GET /accounts/ID %r" % hdrs)
        eq(h.get("www-authenticate"), CHALLENGE, "WWW-Authenticate")
    st, _, acct = get_json(g.port, "/accounts/" + uid, headers=bearer(KEY1))
    eq((st, acct["id"], acct["name"]), (200, uid, "Ada"), "with a key")
    # Refused before Redis is asked: an unknown account is 401 too.
    st, _, _ = http(g.port, "GET", "/accounts/999999")
    eq(st, 401, "an unknown account without a key")
    # Not keyed: /health, streams, the page.
    for path in ("/health", "/"):
        st, _, _ = http(g.port, "GET", path)
        eq(st, 200, path)
    # Without PUBLISH_KEYS nothing needs one.
    st, _, _ = get_json(env.open.port, "/accounts/" + uid)
    eq(st, 200, "an open instance")


# ------------------------------------------------------------- Redis ACL

def start_unready(env, name, **extra):
    """A gateway that may never be ready (its Redis refuses it): started
    with the harness's environment, waited for until /health answers."""
    port = free_port()
    e = os.environ.copy()
    e.update({"PORT": str(port), "LISTEN_ADDR": HOST, "SERVER_ID": name,
              "REDIS_HOST": HOST, "REDIS_PORT": str(env.redis.port),
              "HEARTBEAT_SECS": "1", "HTTP_THREADS": "2", "LOG_LEVEL": "info"})
    e.update({k: str(v) for k, v in extra.items()})
    p = Process("%s-%d" % (name, port), [BIN], e, env.work.path)

    def answers():
        if not p.alive():
            raise TestFailure("%s exited:\n%s" % (name, p.output()[-2000:]))
        try:
            return http(port, "GET", "/health", timeout=2)
        except OSError:
            return None
    wait_until(answers, 15, "%s to answer /health" % name)
    return p, port


# The gateway's own ACL user, exactly as docs/API.md ("The channel") gives
# it: its two channels, its keys, and the commands it and its scripts run.
GATEWAY_ACL = ["resetchannels", "&ssegate:events", "&ssegate:events:*", "&user-events",
               "&ssegate:topic:*", "resetkeys", "~ssegate:*",
               "-@all", "+evalsha", "+eval", "+script|load", "+subscribe", "+unsubscribe",
               "+ping", "+incr",
               "+hgetall", "+get", "+set", "+exists", "+hget", "+hset", "+time", "+publish",
               "+xadd", "+xlen", "+xrange", "+xrevrange", "+xdel", "+xinfo|stream",
               # presence (write.lua 'presence' and 'alive')
               "+hdel", "+hincrby", "+hlen", "+del", "+sadd", "+srem", "+spop", "+scard",
               "+zadd", "+zrangebyscore", "+zrem",
               # REDIS_WAIT_REPLICAS and Sentinel's master check
               "+wait", "+role"]


def test_redis_acl_user(env):
    """REDIS_USERNAME: every connection authenticates as that ACL user,
    and the user docs/API.md gives the gateway is enough for every path
    (writes, idempotent writes, both rate limits, account reads, streams,
    resume): Redis denies it nothing. A refused password is one log line
    (not one per retry, per connection), /health is 503 and writes 503
    meanwhile, and once the user takes the password the gateway works
    without a restart, saying so once."""
    r = env.redis
    eq(r.cli("ACL", "SETUSER", "gw", "on", ">right-pass-1", *GATEWAY_ACL), "OK", "ACL SETUSER")
    eq(r.cli("ACL", "LOG", "RESET"), "OK", "ACL LOG RESET")
    g = Gateway(BIN, r, env.work.path, "acl-ok", REDIS_USERNAME="gw", REDIS_PASSWORD="right-pass-1",
                RATE_LIMIT_WRITES="1000/1s", RATE_LIMIT_STREAMS="1000/1s")
    try:
        uid = env.account(g.port)
        s = open_stream(g.port, "userId=" + uid)
        eid = env.event(g.port, uid, "as-gw")
        st, _, snap = post_json(g.port, "/accounts/%s/snapshots" % uid, {"balance": 5})
        eq(st, 201, "a snapshot as the ACL user")
        again = [post_json(g.port, "/events", {"userId": uid, "type": "idem"},
                           headers={"Idempotency-Key": "acl-1"}) for _ in range(2)]
        eq([a[0] for a in again], [202, 202], "an idempotent write, twice")
        eq(again[0][2], again[1][2], "the same answer")
        idem = again[0][2]["id"]
        eq(ids_of(s.wait_events(3)), [eid, snap["id"], idem], "events as the ACL user")
        st, _, acct = get_json(g.port, "/accounts/" + uid)
        eq((st, acct["id"], acct["balance"]), (200, uid, 5), "the account as the ACL user")
        s.close()
        s = open_stream(g.port, "userId=" + uid, last_event_id=eid)
        eq(ids_of(s.wait_events(2)), [snap["id"], idem], "a resume as the ACL user")
        s.close()
        eq(r.cli("ACL", "LOG"), "", "Redis denied the gateway nothing")
        check("user=gw" in r.cli("CLIENT", "LIST"), "connections are the gw user's")
        check("right-pass-1" not in g.proc.output(), "the password is in no log line")
    finally:
        code = g.stop()
    eq(code, 0, "acl-ok exits 0")
    check(g.sanitizer_report() is None, "acl-ok: no sanitizer report")

    p, port = start_unready(env, "acl-bad", REDIS_USERNAME="gw", REDIS_PASSWORD="wrong-pass-2")
    try:
        st, _, body = get_json(port, "/health")
        eq((st, body["status"], body["redis"]), (503, "degraded", "down"), "/health")
        expect_error(post_json(port, "/accounts", {"name": "x"}), 503, "redis_unavailable",
                     "Redis is unreachable; retry shortly", "a write while refused")
        # Several retries of every connection (back-off 0.1 s doubling).
        time.sleep(2.5)
        out = p.output()
        refused = [l for l in out.splitlines() if "refused" in l]
        eq(len(refused), 1, "one line for the refusal: %r" % refused)
        check(" error " in refused[0] and "WRONGPASS" in refused[0] and
              "REDIS_USERNAME and REDIS_PASSWORD" in refused[0], "it says what to fix: %r" % refused)
        check("wrong-pass-2" not in out, "the password is in no log line")
        check("NOAUTH" not in out and "lost" not in out and "SCRIPT LOAD" not in out,
              "no line for each consequence:\n%s" % out[-2000:])
        # The user takes the gateway's password: it gets in by itself.
        eq(r.cli("ACL", "SETUSER", "gw", ">wrong-pass-2"), "OK", "add the password")
        wait_until(lambda: http(port, "GET", "/health")[0] == 200, 15, "/health 200 after the fix")
        st, _, acct = post_json(port, "/accounts", {"name": "y"})
        eq(st, 201, "writes work again")
        out = p.output()
        eq(len([l for l in out.splitlines() if "accepts this gateway again" in l]), 1,
           "one line when it works again")
        eq(len([l for l in out.splitlines() if "refused" in l]), 1, "no further refusal")
    finally:
        code = p.stop()
        r.cli("ACL", "DELUSER", "gw")
    eq(code, 0, "acl-bad exits 0")
    check("ERROR: AddressSanitizer" not in p.output() and "runtime error:" not in p.output(),
          "acl-bad: no sanitizer report")


def test_gateway_user_needs_both_channels(env):
    """A gateway user without ssegate:events: Redis refuses the one
    SUBSCRIBE whole (NOPERM), so the subscription is never up on one
    channel alone: /health says down, one line says why. Once the ACL
    grants the channel the gateway subscribes by itself, once, and
    delivers events with their ids; a lost subscription comes back once,
    and catches its stream up once."""
    r = env.redis
    half = [a for a in GATEWAY_ACL if a != "&ssegate:events"]
    eq(r.cli("ACL", "SETUSER", "gw-half", "on", ">half-pass-1", *half), "OK", "ACL SETUSER")
    p, port = start_unready(env, "acl-half", REDIS_USERNAME="gw-half", REDIS_PASSWORD="half-pass-1")
    subscribed = "redis: subscribed to ssegate:events and user-events"
    try:
        wait_until(lambda: "refused at" in p.output(), 5, "the refusal logged")
        lines = [l for l in p.output().splitlines() if "refused at" in l]
        eq(len(lines), 1, "one line: %r" % lines)
        check("SUBSCRIBE refused" in lines[0] and "NOPERM" in lines[0] and
              "the ACL of REDIS_USERNAME" in lines[0], "it says what to fix: %r" % lines[0])
        st, _, body = get_json(port, "/health")
        eq((st, body["redis"]), (503, "down"), "/health while refused")
        check("subscribed to" not in p.output(), "never subscribed to one channel alone")
        eq(r.cli("ACL", "SETUSER", "gw-half", "&ssegate:events"), "OK", "grant the channel")
        wait_until(lambda: http(port, "GET", "/health")[0] == 200, 15, "/health 200 after the fix")
        eq(p.output().count(subscribed), 1, "subscribed once")
        uid = env.account(port)
        s = open_stream(port, "userId=" + uid)
        e1 = env.event(port, uid, "both")
        eq(ids_of(s.wait_events(1)), [e1], "events with their ids")
        r.cli("CLIENT", "KILL", "USER", "gw-half", "TYPE", "pubsub")
        wait_until(lambda: p.output().count(subscribed) == 2, 10, "subscribed again")
        e2 = env.event(port, uid, "again")
        eq(ids_of(s.wait_events(2)), [e1, e2], "events after the resubscribe")
        out = p.output()
        eq((out.count(subscribed), out.count("catching up 1 of 1 open streams")), (2, 1),
           "one subscription and one catch-up per connection")
        s.close()
    finally:
        code = p.stop()
        r.cli("ACL", "DELUSER", "gw-half")
    eq(code, 0, "acl-half exits 0")
    check("ERROR: AddressSanitizer" not in p.output() and "runtime error:" not in p.output(),
          "acl-half: no sanitizer report")


# ------------------------------------------------------------ request bodies

JSON_CT = ("Content-Type", "application/json")


def test_content_type(env):
    g = env.open
    uid = env.account()
    body = json.dumps({"userId": uid, "type": "ct"}).encode()
    before = env.writes()
    for hdrs in ([], [("Content-Type", "text/plain")],
                 [("Content-Type", "application/x-www-form-urlencoded")],
                 [("Content-Type", "application/json; charset=latin-1")]):
        rs = responses(post_raw(g.port, "/events", body, hdrs + [("Content-Length", str(len(body)))]))
        expect_error(rs[0], 415, "unsupported_media_type",
                     "send the body as Content-Type: application/json", "%r" % hdrs)
    eq(env.writes(), before, "nothing written")
    for ct in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        rs = responses(post_raw(g.port, "/events", body,
                                [("Content-Type", ct), ("Content-Length", str(len(body)))]))
        eq(rs[0][0], 202, "%s accepted" % ct)
    # A chunked body without a type is refused like any other.
    rs = responses(post_raw(g.port, "/events", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
                            [("Transfer-Encoding", "chunked")]))
    eq(rs[0][0], 415, "a chunked body without a type")
    # No body at all needs no type: a snapshot of the current balance.
    rs = responses(post_raw(g.port, "/accounts/%s/snapshots" % uid, b"", [("Content-Length", "0")]))
    eq(rs[0][0], 201, "a snapshot without a body")
    rs = responses(post_raw(g.port, "/events", b"", []))
    expect_error(rs[0], 400, "invalid_json", "the body is not valid JSON", "/events without a body")


RESERVED = ["account.created", "snapshot", "gap", "token-expired", "presence.join",
            "presence.left", "error", "open"]


def test_reserved_types(env):
    uid = env.account()
    s = open_stream(env.open.port, "userId=" + uid)
    before = env.writes()
    for t in RESERVED:
        expect_error(post_json(env.open.port, "/events", {"userId": uid, "type": t}), 400,
                     "reserved_type",
                     "type '%s' is reserved (the gateway or EventSource gives it its own meaning)" % t,
                     t)
    eq(env.writes(), before, "nothing written")
    ok = env.event(env.open.port, uid, "presence")
    eq([(e.id, e.event) for e in s.wait_events(1)], [(ok, "presence")], "only the allowed type")
    no_more_events(s, 1, 0.3)
    s.close()


BAD_UTF8 = [b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
            b"\xc1\xbf", b"\xf0\x80\x80\x80", b"\x80", b"\xff"]


def test_invalid_utf8_bodies(env):
    uid = env.account()
    s = open_stream(env.open.port, "userId=" + uid)
    before = env.writes()
    for seq in BAD_UTF8:
        for body in (b'{"userId":"%s","type":"u","data":"a%sb"}' % (uid.encode(), seq),
                     b'{"userId":"%s","type":"u","data":{"k%s":1}}' % (uid.encode(), seq)):
            rs = responses(post_raw(env.open.port, "/events", body,
                                    [JSON_CT, ("Content-Length", str(len(body)))]))
            expect_error(rs[0], 400, "invalid_json",
                         "the body is not valid JSON (not valid UTF-8)", repr(body))
        body = b'{"name":"A%s"}' % seq
        rs = responses(post_raw(env.open.port, "/accounts", body,
                                [JSON_CT, ("Content-Length", str(len(body)))]))
        eq(rs[0][0], 400, "an account name with %r" % seq)
    for esc in ("\\ud800", "\\udfff", "\\ud800\\u0041", "\\udc00\\ud800"):
        body = ('{"userId":"%s","type":"u","data":"%s"}' % (uid, esc)).encode()
        rs = responses(post_raw(env.open.port, "/events", body,
                                [JSON_CT, ("Content-Length", str(len(body)))]))
        expect_error(rs[0], 400, "invalid_json",
                     "the body is not valid JSON (a \\u escape is half of a surrogate pair)", esc)
    body = ('{"userId":"%s","type":"u","data":"a\nb"}' % uid).encode()
    rs = responses(post_raw(env.open.port, "/events", body, [JSON_CT, ("Content-Length", str(len(body)))]))
    expect_error(rs[0], 400, "invalid_json",
                 "the body is not valid JSON (a control character in a string must be escaped)",
                 "a raw LF")
    eq(env.writes(), before, "nothing written")
    # Valid text in all its forms goes through unchanged.
    data = {"pair": "\U0001F600", "e": "\u00e9", "nul": "\u0000", "bmp": "\uffff"}
    ok = env.event(env.open.port, uid, "u", data)
    ev = s.wait_events(1)
    eq((ev[0].id, ev[0].json()["data"]), (ok, data), "the valid event, as sent")
    no_more_events(s, 1, 0.3)
    s.close()


# ------------------------------------------------------------ the channel

CHANNEL = b"user-events"        # REDIS_CHANNEL's default: anybody's
OURS = b"ssegate:events"        # the gateways' own: write.lua's events


class RespError(str):
    """An error reply, as Redis wrote it ("NOPERM ...")."""


class RawRedis:
    """A Redis connection speaking RESP itself: replies byte for byte
    (redis-cli would mangle invalid UTF-8 and hide which channel a message
    came on). Every read has a deadline."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def send(self, *args):
        args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(args) +
                          b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))

    def _parse(self, i):
        """(value, next index) of the reply at buf[i:], or None if it is
        not all in yet."""
        end = self.buf.find(b"\r\n", i)
        if end < 0:
            return None
        kind, line, i = self.buf[i:i + 1], self.buf[i + 1:end], end + 2
        if kind == b"+":
            return line.decode(), i
        if kind == b"-":
            return RespError(line.decode()), i
        if kind == b":":
            return int(line), i
        if kind == b"$":
            n = int(line)
            if n < 0:
                return None, i
            if len(self.buf) < i + n + 2:
                return None
            return self.buf[i:i + n], i + n + 2
        if kind == b"*":
            out = []
            for _ in range(int(line)):
                got = self._parse(i)
                if got is None:
                    return None
                v, i = got
                out.append(v)
            return out, i
        raise TestFailure("not RESP: %r" % self.buf[i - len(line) - 3:][:80])

    def reply(self, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            got = self._parse(0) if self.buf else None
            if got is not None:
                self.buf = self.buf[got[1]:]
                return got[0]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("no reply from Redis within %.1fs" % timeout)
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise TestFailure("Redis closed the connection")
            self.buf += d

    def call(self, *args):
        self.send(*args)
        return self.reply()

    def nothing_for(self, seconds):
        """Fails if a reply (a message) arrives within seconds."""
        self.sock.settimeout(seconds)
        try:
            self.buf += self.sock.recv(65536)
        except socket.timeout:
            pass
        eq(self.buf, b"", "nothing more from Redis")

    def close(self):
        self.sock.close()


def publish(env, msg, channel=CHANNEL):
    """PUBLISHes raw bytes on a channel, as an outside publisher would;
    returns how many subscribers got it."""
    r = RawRedis(env.redis.port)
    try:
        got = r.call(b"PUBLISH", channel, msg)
    finally:
        r.close()
    check(isinstance(got, int), "PUBLISH answered %r" % got)
    return got


def history_entry(env, uid, eid):
    """The envelope history holds for event eid, byte for byte."""
    r = RawRedis(env.redis.port)
    try:
        got = r.call(b"XRANGE", "ssegate:history:" + uid, eid, eid)
    finally:
        r.close()
    eq([e[0] for e in got], [eid.encode()], "history holds %s" % eid)
    fields = got[0][1]
    return fields[fields.index(b"e") + 1]


def log_bytes(g):
    with open(g.proc.log_path, "rb") as f:
        return f.read()


def test_channel_refuses_malformed_text(env):
    """Messages someone else publishes with invalid UTF-8, raw control
    characters in strings, lone surrogates or a type that fires a
    client's own handler reach no stream; the log says so, without the
    payload (shown, escaped, at debug only)."""
    uid = env.account()
    s = open_stream(env.open.port, "userId=" + uid)
    fh = open_stream(env.keyed.port)
    u = uid.encode()
    bad = [b'{"userId":"%s","type":"m","data":"%s"}' % (u, seq) for seq in BAD_UTF8]
    bad += [b'{"userId":"%s","type":"m","data":"a%sb"}' % (u, c) for c in (b"\n", b"\r", b"\t", b"\x01", b"\x1f")]
    bad += [b'{"userId":"%s","type":"m","data":"\\ud800"}' % u,
            b'{"userId":"%s","type":"m","data":{"\\udc00":1}}' % u,
            b'{"userId":"%s","type":"error","data":{}}' % u,
            b'{"userId":"%s","type":"open","data":{}}' % u]
    for m in bad:
        eq(publish(env, m), 2, "both instances subscribed")
    good = b'{"userId":"%s","type":"m","data":"caf\xc3\xa9 \\ud83d\\ude00"}' % u
    publish(env, good)
    for c in (s, fh):
        ev = c.wait_events(1)
        eq((ev[0].id, ev[0].event, ev[0].data.encode()), (None, "m", good),
           "only the valid message, verbatim, without an id")
    no_more_events(s, 1, 0.2)
    eid = env.event(env.open.port, uid, "after")
    eq(ids_of(s.wait_events(2))[1], eid, "real events still arrive")
    for g in (env.open, env.keyed):
        lines = [l for l in log_bytes(g).split(b"\n") if b"skipping a malformed message" in l]
        check(len(lines) >= len(bad), "%s logged each: %d" % (g.name, len(lines)))
        for l in lines:
            check(all(0x20 <= b < 0x7f for b in l), "a log line of printable ASCII: %r" % l)
        # A payload is shown at debug only (escaped, log_excerpt): at
        # info the line says why and how long, never what.
        check(not any(b'"data"' in l or b"userId" in l for l in lines),
              "no payload in a line above debug")
    s.close()
    fh.close()


def test_channel_ids_are_not_trusted(env):
    """The attack: a message on REDIS_CHANNEL with an id far ahead. It
    reaches streams without an id line, so later real events still arrive,
    and a resume after it loses nothing. The gateways' own events travel on
    ssegate:events, exactly as history holds them, and never on
    REDIS_CHANNEL; a copy of one published on REDIS_CHANNEL is an outside
    message like any other: delivered again, verbatim, without an id line
    (no longer dropped as a duplicate: nothing on that channel is
    compared with a stream's ids)."""
    uid = env.account()
    u = uid.encode()
    streams = [open_stream(g.port, "userId=" + uid) for g in (env.open, env.keyed)]
    fh = open_stream(env.open.port)
    e1 = env.event(env.open.port, uid, "real", {"n": 1})
    eq(ids_of(fh.wait_events(1)), [e1], "the firehose got e1")
    # Both channels, as a gateway subscribes to them.
    watch = RawRedis(env.redis.port)
    watch.send(b"SUBSCRIBE", OURS, CHANNEL)
    eq(watch.reply(), [b"subscribe", OURS, 1], "subscribed to ssegate:events")
    eq(watch.reply(), [b"subscribe", CHANNEL, 2], "subscribed to user-events")
    e1b = env.event(env.keyed.port, uid, "real", {"n": 2}, headers=bearer(KEY1))
    held = history_entry(env, uid, e1b)
    eq(watch.reply(), [b"message", OURS, held],
       "write.lua published on ssegate:events what history holds")
    watch.nothing_for(0.3)          # and nothing on REDIS_CHANNEL
    far = b"99999999999999-0"
    forged = b'{"userId":"%s","id":"%s","type":"x","data":{}}' % (u, far)
    eq(publish(env, forged), 3, "both instances (and the watch) got the forged id")
    eq(publish(env, held), 3, "a real event, copied to REDIS_CHANNEL")
    e2 = env.event(env.open.port, uid, "real", {"n": 3})
    eq([watch.reply() for _ in range(3)],
       [[b"message", CHANNEL, forged], [b"message", CHANNEL, held],
        [b"message", OURS, history_entry(env, uid, e2)]], "what each channel carried")
    watch.close()
    for c in streams + [fh]:
        evs = c.wait_events(5)
        eq([(e.id, e.event) for e in evs],
           [(e1, "real"), (e1b, "real"), (None, "x"), (None, "real"), (e2, "real")],
           "the forged id and the copy have no id line; the real event after them arrives")
        eq(evs[2].data.encode(), forged, "the forged message verbatim")
        eq([evs[1].data.encode(), evs[3].data.encode()], [held, held],
           "the event and its copy: history's bytes, twice")
        no_more_events(c, 5, 0.2)
    # Resume from the last real id, and from the forged one (as a client
    # of a gateway that trusted ids on REDIS_CHANNEL might): nothing is
    # lost, and the copy, in no history, is not replayed.
    last = streams[0].events[-1].id
    for s in streams:
        s.close()
    r = open_stream(env.keyed.port, "userId=" + uid, last_event_id=e1b)
    eq(ids_of(r.wait_events(1)), [e2], "a resume replays what followed")
    no_more_events(r, 1, 0.2)
    r.close()
    r = open_stream(env.keyed.port, "userId=" + uid, last_event_id=far.decode())
    first = r.wait_events(1)[0]
    eq((first.id, first.event), (None, "gap"), "a resume from the forged id starts with a gap")
    eq(first.json()["lastEventId"], far.decode(), "naming it")
    e3 = env.event(env.open.port, uid, "real", {"n": 4})
    eq(ids_of(r.wait_events(2))[1:], [e3], "then live events")
    eq(last, e2, "the stream's last id")
    r.close()
    fh.close()


def test_channel_copies_take_no_backlog(env):
    """Only a gateway's own events, on ssegate:events, count against its
    PUBLISH_BACKLOG: copies of its envelope (its serverId) published on
    REDIS_CHANNEL reach streams but free no room. Were they counted, these
    three would leave room for three more writes while the subscriber
    is behind."""
    relay = Relay(env.redis.port)
    g = None
    try:
        g = Gateway(BIN, relay, env.work.path, "backlog-1", PUBLISH_BACKLOG=1,
                    PUBLISH_WAIT_MS=1000)
        uid = env.account()
        s = open_stream(g.port, "userId=" + uid)
        copy = b'{"userId":"%s","type":"copy","data":{},"serverId":"backlog-1"}' % uid.encode()
        for _ in range(3):
            publish(env, copy)
        eq([(e.id, e.event) for e in s.wait_events(3)], [(None, "copy")] * 3,
           "the copies, fanned out")
        relay.freeze_subscribers()
        e1 = env.event(g.port, uid, "own")
        t0 = time.monotonic()
        expect_error(post_json(g.port, "/events", {"userId": uid, "type": "refused"}), 503,
                     "overloaded", "events are published faster than they can be delivered; "
                     "retry shortly",
                     "the second write with one of ours behind")
        check(time.monotonic() - t0 >= 0.9, "refused at PUBLISH_WAIT_MS")
        relay.thaw()
        eq(ids_of(s.wait_events(4))[3:], [e1], "the accepted event, once the subscriber caught up")
        no_more_events(s, 4, 0.3)
        s.close()
    finally:
        if g is not None:
            eq(g.stop(), 0, "backlog-1 exits 0")
            check(g.sanitizer_report() is None, "backlog-1: no sanitizer report")
        relay.stop()


def test_acl_keeps_publishers_off_our_channel(env):
    """The defence where others share the Redis: an outside publisher's
    ACL user, as docs/API.md gives it (resetchannels &user-events
    +publish), may publish on REDIS_CHANNEL only. On ssegate:events Redis
    refuses it (NOPERM), and it can write no history either, so no one but
    the gateways makes an id streams trust."""
    r = env.redis
    eq(r.cli("ACL", "SETUSER", "publisher", "on", ">pub-pass-1", "resetchannels",
             "&user-events", "+publish"), "OK", "ACL SETUSER publisher")
    p = RawRedis(r.port)
    try:
        uid = env.account()
        u = uid.encode()
        s = open_stream(env.open.port, "userId=" + uid)
        eq(p.call(b"AUTH", b"publisher", b"pub-pass-1"), "OK", "AUTH as the publisher")
        forged = b'{"id":"99999999999999-0","type":"x","userId":"%s","data":{}}' % u
        for cmd in ((b"PUBLISH", OURS, forged),
                    (b"XADD", b"ssegate:history:" + u, b"99999999999999-0", b"e", forged),
                    (b"SUBSCRIBE", OURS)):
            got = p.call(*cmd)
            check(isinstance(got, RespError) and got.startswith("NOPERM"),
                  "%s refused: %r" % (cmd[0].decode(), got))
        eq(p.call(b"PUBLISH", CHANNEL, forged), 2, "REDIS_CHANNEL is the publisher's")
        eid = env.event(env.open.port, uid, "real")
        evs = s.wait_events(2)
        eq([(e.id, e.event) for e in evs], [(None, "x"), (eid, "real")],
           "only the message on REDIS_CHANNEL, without an id; then the real event")
        eq(evs[0].data.encode(), forged, "verbatim")
        no_more_events(s, 2, 0.3)
        s.close()
    finally:
        p.close()
        r.cli("ACL", "DELUSER", "publisher")


# ------------------------------------------------------------ request heads

FRAMING = "a request carries one Content-Length or one Transfer-Encoding, not two of them"
CODING = "the only Transfer-Encoding taken is chunked, on HTTP/1.1"


def test_ambiguous_framing(env):
    """Two ways to read a body's length is request smuggling behind a
    proxy: 400, never a guess, and nothing after it on that connection."""
    g = env.open
    uid = env.account()
    body = json.dumps({"userId": uid, "type": "smuggled"}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    # A second request hidden where one reading puts the body's end.
    second = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    cases = [
        ([("Content-Length", str(len(body))), ("Content-Length", "5")], body, FRAMING),
        ([("Content-Length", "5"), ("Content-Length", str(len(body)))], body, FRAMING),
        ([("Content-Length", str(len(body))), ("Content-Length", str(len(body)))], body, FRAMING),
        ([("Content-Length", str(len(chunked))), ("Transfer-Encoding", "chunked")], chunked + second, FRAMING),
        ([("Transfer-Encoding", "chunked"), ("Content-Length", "0")], chunked, FRAMING),
        ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], chunked, FRAMING),
        ([("Transfer-Encoding", "gzip, chunked")], chunked, CODING),
        ([("Transfer-Encoding", "identity")], chunked, CODING),
    ]
    before = env.writes()
    for hdrs, b, msg in cases:
        rs = responses(post_raw(g.port, "/events", b, [JSON_CT] + hdrs))
        eq(len(rs), 1, "one answer for %r" % hdrs)
        h = expect_error(rs[0], 400, "invalid_framing", msg, repr(hdrs))
        eq(h.get("connection"), "close", "%r: the connection closes" % hdrs)
    rs = responses(post_raw(g.port, "/events", chunked, [JSON_CT, ("Transfer-Encoding", "chunked")],
                            version="HTTP/1.0"))
    expect_error(rs[0], 400, "invalid_framing", CODING, "chunked on HTTP/1.0")
    # A GET is held to the same rule.
    got = raw(g.port, b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n")
    expect_error(responses(got)[0], 400, "invalid_framing", FRAMING, "a GET")
    eq(env.writes(), before, "nothing written")
    # One of either is fine.
    rs = responses(post_raw(g.port, "/events", chunked, [JSON_CT, ("Transfer-Encoding", "Chunked")]))
    eq(rs[0][0], 202, "chunked alone")
    rs = responses(post_raw(g.port, "/events", body, [JSON_CT, ("Content-Length", str(len(body)))]))
    eq(rs[0][0], 202, "Content-Length alone")


def test_user_id_query(env):
    g = env.open
    msg = "userId must be given once, as 1 to 18 digits"
    for q in ("userId", "userId=", "userId&x=1", "userId=1&userId=2", "userId=1&userId=1",
              "userid=1&userId=1", "userId=1&userId"):
        c = SSEClient(g.port, q, timeout=5)
        eq(c.status, 400, "?%s status" % q)
        eq(json.loads(c.error_body), {"error": "invalid_parameter", "message": msg}, "?%s body" % q)
        c.close()
    uid = env.account()
    open_stream(g.port, "userId=" + uid).close()
    open_stream(g.port, "lastEventId&userId=" + uid).close()   # an empty resume id is none


TESTS = [
    test_writes_need_a_publish_key,
    test_big_body_without_key_is_refused_cleanly,
    test_account_read_needs_a_key,
    test_redis_acl_user,
    test_gateway_user_needs_both_channels,
    test_content_type,
    test_reserved_types,
    test_invalid_utf8_bodies,
    test_channel_refuses_malformed_text,
    test_channel_ids_are_not_trusted,
    test_channel_copies_take_no_backlog,
    test_acl_keeps_publishers_off_our_channel,
    test_ambiguous_framing,
    test_user_id_query,
]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
