#!/usr/bin/env python3
"""Integration suite for secure mode's hardening: publish keys, Redis ACL
users, and what untrusted input (request heads and bodies, messages others
PUBLISH on the channel) can and cannot do. A real redis-server and ssegate
instances on loopback; prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_hardening.py [-k substr]
"""
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, Gateway, Process, Redis, SSEClient, TestFailure,  # noqa: E402
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


def test_redis_acl_user(env):
    """REDIS_USERNAME: every connection authenticates as that ACL user. A
    refused password is one log line (not one per retry, per connection),
    /health is 503 and writes 503 meanwhile, and once the user takes the
    password the gateway works without a restart, saying so once."""
    r = env.redis
    eq(r.cli("ACL", "SETUSER", "gw", "on", ">right-pass-1", "~*", "&*", "+@all"), "OK", "ACL SETUSER")
    g = Gateway(BIN, r, env.work.path, "acl-ok", REDIS_USERNAME="gw", REDIS_PASSWORD="right-pass-1")
    try:
        uid = env.account(g.port)
        s = open_stream(g.port, "userId=" + uid)
        eid = env.event(g.port, uid, "as-gw")
        eq(ids_of(s.wait_events(1)), [eid], "events as the ACL user")
        s.close()
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

def publish(env, msg):
    """PUBLISHes raw bytes on the channel (redis-cli would mangle them)."""
    cmd = b"*3\r\n$7\r\nPUBLISH\r\n$11\r\nuser-events\r\n$%d\r\n%s\r\n" % (len(msg), msg)
    with socket.create_connection((HOST, env.redis.port), timeout=5) as s:
        s.sendall(cmd)
        got = b""
        while not got.endswith(b"\r\n"):
            d = s.recv(100)
            if not d:
                break
            got += d
    check(got.startswith(b":"), "PUBLISH answered %r" % got)
    return int(got[1:])


def log_bytes(g):
    with open(g.proc.log_path, "rb") as f:
        return f.read()


def test_channel_refuses_malformed_text(env):
    """Messages someone else publishes with invalid UTF-8, raw control
    characters in strings, lone surrogates or a type that fires a
    client's own handler reach no stream; the log shows them escaped."""
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
        check(any(b"\\xed\\xa0\\x80" in l for l in lines), "invalid bytes shown escaped")
        check(any(b"\\x0a" in l for l in lines), "a raw LF shown escaped")
    s.close()
    fh.close()


def test_channel_ids_are_not_trusted(env):
    """The attack: an outside message with an id far ahead. It reaches
    streams without an id line, so later real events still arrive, and a
    resume after it loses nothing. A copied tag does not make a forged id
    either, and a real message published again is a duplicate."""
    uid = env.account()
    streams = [open_stream(g.port, "userId=" + uid) for g in (env.open, env.keyed)]
    fh = open_stream(env.open.port)
    e1 = env.event(env.open.port, uid, "real", {"n": 1})
    raw_e1 = []
    # What write.lua published for e1, as a subscriber of the channel
    # sees it: with the id's tag.
    sub = socket.create_connection((HOST, env.redis.port), timeout=5)
    sub.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$11\r\nuser-events\r\n")
    wait_until(lambda: b"subscribe" in sub.recv(1000), 5, "our own subscription")
    e1b = env.event(env.keyed.port, uid, "real", {"n": 2}, headers=bearer(KEY1))
    buf = b""

    def got_tagged():
        nonlocal buf
        buf += sub.recv(65536)
        m = re.search(rb'\{"id":"%s","idTag":"([0-9a-f]{40})",[^\r]*' % e1b.encode(), buf)
        if m:
            raw_e1.append(m.group(0))
            return m.group(1)
        return None
    tag = wait_until(got_tagged, 5, "the tagged message on the channel")
    sub.close()
    u = uid.encode()
    far = b"99999999999999-0"
    forged = [b'{"userId":"%s","id":"%s","type":"x","data":{}}' % (u, far),
              b'{"id":"%s","idTag":"%s","type":"x","userId":"%s","data":{}}' % (far, tag, u),
              b'{"id":"%s","idTag":"%s","type":"x","userId":"%s","data":{}}' % (far, b"0" * 40, u)]
    for m in forged:
        publish(env, m)
    publish(env, raw_e1[0])          # a real message, again
    e2 = env.event(env.open.port, uid, "real", {"n": 3})
    for c in streams + [fh]:
        evs = c.wait_events(6)
        eq([(e.id, e.event) for e in evs],
           [(e1, "real"), (e1b, "real"), (None, "x"), (None, "x"), (None, "x"), (e2, "real")],
           "forged ids have no id line; the real event after them arrives")
        eq([e.data.encode() for e in evs[2:5]], forged, "forged messages verbatim")
        check(not any("idTag" in e.data for e in evs if e.id is not None),
              "clients never see the gateway's own tags")
        eq(evs[1].data, env.redis.cli("XRANGE", "ssegate:history:" + uid, e1b, e1b).split("\n")[-1],
           "a live event has exactly history's bytes")
        no_more_events(c, 6, 0.2)
    # Resume from the last real id, and from the forged one (as a client
    # that got it before ids were checked would): nothing is lost.
    last = streams[0].events[-1].id
    for s in streams:
        s.close()
    r = open_stream(env.keyed.port, "userId=" + uid, last_event_id=e1b)
    eq(ids_of(r.wait_events(1)), [e2], "a resume replays what followed")
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


def test_lost_channel_key(env):
    """Without the channel key ids cannot be checked: events still reach
    every stream (without an id line); once the subscriptions come back a
    new key is made and ids return."""
    uid = env.account()
    s = open_stream(env.open.port, "userId=" + uid)
    eq(env.redis.cli("DEL", "ssegate:channelkey"), "1", "DEL the key")
    lost = env.event(env.open.port, uid, "untagged")
    ev = s.wait_events(1)[0]
    eq((ev.id, ev.event), (None, "untagged"), "delivered, without an id")
    env.redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
    for g in (env.open, env.keyed):
        wait_until(g.ready, 10, "%s subscribed again" % g.name)
    eq(env.redis.cli("STRLEN", "ssegate:channelkey"), "128", "a key again")
    eid = env.event(env.keyed.port, uid, "tagged", headers=bearer(KEY2))
    # The catch-up after the resubscribe replays the event from history,
    # with its id: a repeat, never a loss.
    eq([(e.id, e.event) for e in s.wait_events(3)],
       [(None, "untagged"), (lost, "untagged"), (eid, "tagged")], "ids are back")
    no_more_events(s, 3, 0.2)
    s.close()


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
    test_content_type,
    test_reserved_types,
    test_invalid_utf8_bodies,
    test_channel_refuses_malformed_text,
    test_channel_ids_are_not_trusted,
    test_ambiguous_framing,
    test_user_id_query,
    test_lost_channel_key,
]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
