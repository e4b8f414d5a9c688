#!/usr/bin/env python3
"""Integration tests: history reaches every stream whatever Redis does.
A stream opened while Redis is frozen or down starts at once and gets its
history once Redis is back (an unknown user's ends then, and 404s after);
BUSY and LOADING replies mean "not yet", never an ended stream; a resume
larger than STREAM_QUEUE_KIB is read in pages, in bounded memory, with the
gateway still answering; recovery after a lost subscription keeps every
stream; a storm of resumes is served. A real redis-server (frozen with
SIGSTOP, restarted on its port with its data) and real gateways on
loopback; streams read by one thread when there are many. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_history.py [-k substr]
"""
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatewaysEnv, HOST, Gateway, Redis, Relay, SSEClient, TestFailure,  # noqa: E402
                     Workdir, check, eq, id_key, ids_of, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")

TIMEOUT_MS = 500            # REDIS_TIMEOUT_MS of the gateways whose Redis goes away
HELLO_MAX_S = TIMEOUT_MS / 1000.0 + 1.0     # a stream's hello, Redis frozen or down
NOBODY = "999999999999"     # a userId with no account
CHANNEL = "user-events"     # REDIS_CHANNEL's default


class Env(GatewaysEnv):
    """One Redis for the tests that stop, freeze or busy it; each test
    starts its own gateway(s), and the tests that fill Redis their own
    Redis as well."""

    def __init__(self):
        super().__init__(BIN)

    def own_redis(self, persist=False):
        """A Redis of the test's own (delete with drop_redis); without
        persist, no AOF: nothing this test writes needs to survive."""
        r = Redis(self.work.path)
        if not persist:
            r.cli("CONFIG", "SET", "appendonly", "no")
        return r

    @staticmethod
    def drop_redis(r):
        r.proc.proc.send_signal(signal.SIGCONT)
        r.stop()
        shutil.rmtree(r.dir, ignore_errors=True)



# ----------------------------------------------------------------- helpers

def account(port, name="Ada"):
    st, _, acct = post_json(port, "/accounts", {"name": name})
    eq(st, 201, "POST /accounts (%r)" % acct)
    return acct["id"]


def post(port, uid, type_, data=None):
    st, _, body = post_json(port, "/events", {"userId": uid, "type": type_, "data": data})
    eq(st, 202, "POST /events (%r)" % body)
    return body["id"]


def post_accepted(port, uid, type_, timeout=10):
    """POST /events with an Idempotency-Key, retried while it gets 503
    (after an outage a thread's Redis connection may still be waiting out
    its back-off): written exactly once. Returns its id."""
    key = "hist-" + uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    while True:
        st, _, body = post_json(port, "/events", {"userId": uid, "type": type_},
                                headers={"Idempotency-Key": key})
        if st == 202:
            return body["id"]
        check(st == 503 and time.monotonic() < deadline,
              "POST /events after Redis is back: %r %r" % (st, body))
        time.sleep(0.05)            # retry pacing, not synchronisation


def post_many(port, path, bodies, want, conns=16, timeout=60):
    """Sends each body (a dict) as a POST to path over `conns` kept-alive
    connections, one request in flight on each, all driven by one thread.
    Every answer must have status want; returns the answers' JSON in the
    order of bodies."""
    reqs = []
    for b in bodies:
        data = json.dumps(b).encode()
        reqs.append(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
    out = [None] * len(reqs)
    nxt = 0
    sel = selectors.DefaultSelector()
    state = {}

    def send_next(s):
        nonlocal nxt
        if nxt >= len(reqs):
            return False
        state[s] = [nxt, b""]
        s.sendall(reqs[nxt])
        nxt += 1
        return True

    socks = []
    try:
        for _ in range(min(conns, len(reqs))):
            s = socket.create_connection((HOST, port), timeout=10)
            socks.append(s)
            send_next(s)
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        done = 0
        while done < len(reqs):
            if time.monotonic() > deadline:
                raise TestFailure("POST %s: %d of %d answered in %ds"
                                  % (path, done, len(reqs), timeout))
            for key, _ in sel.select(1.0):
                s = key.fileobj
                st = state[s]
                try:
                    d = s.recv(65536)
                except ConnectionResetError:
                    d = b""
                check(d, "POST %s: the connection closed (%r)" % (path, st[1][:300]))
                st[1] += d
                head, sep, rest = st[1].partition(b"\r\n\r\n")
                if not sep:
                    continue
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) < n:
                    continue
                status = int(head.split(b" ", 2)[1])
                eq((status, rest[:n].decode() if status != want else ""), (want, ""),
                   "POST %s (status, body)" % path)
                out[st[0]] = json.loads(rest[:n])
                done += 1
                if not send_next(s):
                    sel.unregister(s)
    finally:
        for s in socks:
            s.close()
        sel.close()
    return out


def open_within(port, query, last_event_id=None, limit=HELLO_MAX_S):
    """Opens a stream that must answer 200 and send its hello within
    limit seconds (Redis frozen or down); returns the client."""
    t0 = time.monotonic()
    c = SSEClient(port, query, last_event_id, timeout=limit + 5)
    eq((c.status, getattr(c, "error_body", "")), (200, ""),
       "GET /events/sse?%s (Last-Event-ID %s) status" % (query, last_event_id))
    c.wait(lambda s: s.retry is not None and s.comments,
           max(0.1, t0 + limit + 2 - time.monotonic()), "the hello")
    took = time.monotonic() - t0
    check(took <= limit, "200 and hello within %.1fs, took %.2fs" % (limit, took))
    check(c.text.startswith("retry: ") and c.comments[0].startswith("ssegate "),
          "the body starts with the hello: %r" % c.text[:80])
    return c


def exactly(c, want, what, timeout=10, g=None):
    """c gets exactly the events want (ids), in order, and nothing more;
    its stream is still open. g: the gateway whose log says why a stream
    ended."""
    got = waiting(g, c.wait_events, len(want), timeout)
    eq(ids_of(got), want, "%s: every event once, in order" % what)
    c.idle(0.3)                     # bounded absence check
    eq(ids_of(c.events), want, "%s: nothing more" % what)
    check(not c.eof and not c.closed, "%s: the stream is still open" % what)


def waiting(g, fn, *args):
    """fn(*args), a wait; its failure also tells what the gateway's log
    says of ended streams."""
    try:
        return fn(*args)
    except TestFailure as e:
        if g is None:
            raise
        raise TestFailure("%s (the gateway's log, streams ended: %s)"
                          % (e, ended_reasons(g))) from None


def ended_reasons(g):
    """{reason: count} of the streams the gateway's log says ended."""
    out = {}
    for line in g.proc.output().splitlines():
        if " closed: " in line:
            r = line.rsplit(" closed: ", 1)[1].strip()
            out[r] = out.get(r, 0) + 1
    return out


def no_stream_closed(g, what):
    out = g.proc.output()
    eq([l for l in out.splitlines() if "closed:" in l or "replay_failed" in l], [],
       "%s: lines of the gateway's log saying a stream ended" % what)


def firehose_head(redis, n):
    """[(id, userId, type)] of the firehose's first n entries."""
    lines = redis.cli("XRANGE", "ssegate:history", "-", "+", "COUNT", str(n)).splitlines()
    got = []
    for i, line in enumerate(lines):
        if line == "e" and i + 1 < len(lines):
            e = json.loads(lines[i + 1])
            got.append((e["id"], e["userId"], e["type"]))
    return got


def rejected(redis, since):
    """{command: calls refused (BUSY, LOADING...)} since an earlier
    rejected(redis, {}), from INFO commandstats: a diagnostic."""
    out = {}
    for line in redis.cli("INFO", "commandstats").splitlines():
        if "rejected_calls=" in line:
            n = int(line.split("rejected_calls=")[1].split(",")[0])
            cmd = line.split(":")[0][len("cmdstat_"):]
            if n - since.get(cmd, 0) > 0:
                out[cmd] = n - since.get(cmd, 0)
    return out


def proc_status(pid, field):
    """A /proc/PID/status field in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise TestFailure("no %s in /proc/%d/status" % (field, pid))


ID_RE = re.compile(rb"\nid: ([^\n]*)(?=\n)")


class Fleet:
    """Many streams opened at once and read by one thread (selectors),
    parsed cheaply: the status, the first bytes of the body (the hello),
    the id of each frame and the number of frames, whether the chunked body
    ended (its 0 chunk) or the socket closed."""

    class Stream:
        def __init__(self, k, sock, query, last):
            self.sock, self.query, self.last = sock, query, last
            self.what = "stream %d (?%s, Last-Event-ID %s)" % (k, query, last)
            self.status = None
            self.raw = bytearray()      # bytes not yet de-chunked
            self.need = 0               # bytes left of the current chunk
            self.skip = 0               # CRLF left after a chunk's data
            self.body = bytearray(b"\n")    # de-chunked, from a line's "\n" on
            self.first = b""            # the body's first bytes
            self.ids = []
            self.frames = 0             # "event:" lines
            self.eof = False
            self.closed = False

        def feed(self, d):
            raw = self.raw
            raw += d
            if self.status is None:
                i = raw.find(b"\r\n\r\n")
                if i < 0:
                    return
                self.status = int(raw[:i].split(b" ", 2)[1])
                del raw[:i + 4]
            if self.status != 200:
                return
            pos, n = 0, len(raw)
            mv = memoryview(raw)
            body = self.body
            start = len(body)
            while pos < n and not self.eof:
                if self.skip:
                    k = min(self.skip, n - pos)
                    pos += k
                    self.skip -= k
                elif self.need:
                    k = min(self.need, n - pos)
                    body += mv[pos:pos + k]
                    pos += k
                    self.need -= k
                    if not self.need:
                        self.skip = 2
                else:
                    j = raw.find(b"\r\n", pos)
                    if j < 0:
                        break
                    size = int(bytes(raw[pos:j]).split(b";")[0], 16)
                    pos = j + 2
                    if size == 0:
                        self.eof = True
                    self.need = size
            mv.release()
            del raw[:pos]
            if len(self.first) < 200:
                self.first += bytes(body[start:start + 200 - len(self.first)])
            k = body.rfind(b"\n")
            if k > 0:
                self.ids += [x.decode() for x in ID_RE.findall(body, 0, k + 1)]
                self.frames += body.count(b"\nevent: ", 0, k + 1)
                del body[:k]

        def ended(self):
            return self.eof or self.closed or (self.status is not None and self.status != 200)

        def describe(self):
            if self.status is not None and self.status != 200:
                return "%s: status %d %r" % (self.what, self.status, bytes(self.raw[:300]))
            return "%s: %s after %d events (last %r)" % (
                self.what, "body ended" if self.eof else "socket closed" if self.closed
                else "open", len(self.ids), self.ids[-1:])

    def __init__(self, g, opens):
        """opens: [(query, Last-Event-ID or None)] on gateway g; every
        request is sent before any answer is read."""
        self.g = g
        port = g.port
        self.sel = selectors.DefaultSelector()
        self.streams = []
        for query, last in opens:
            s = socket.create_connection((HOST, port), timeout=10)
            self.streams.append(Fleet.Stream(len(self.streams), s, query, last))
        for st in self.streams:
            req = "GET /events/sse%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" % (
                "?" + st.query if st.query else "")
            if st.last is not None:
                req += "Last-Event-ID: %s\r\n" % st.last
            st.sock.sendall((req + "\r\n").encode())
            st.sock.setblocking(False)
            self.sel.register(st.sock, selectors.EVENT_READ, st)

    def run(self, pred, timeout, what, end_ok=False):
        """Reads until pred(streams) holds; fails at the deadline or, unless
        end_ok, as soon as a stream is refused or ends."""
        deadline = time.monotonic() + timeout
        next_check = 0
        while True:
            now = time.monotonic()
            if now >= next_check:
                if not end_ok:
                    bad = [st.describe() for st in self.streams if st.ended()]
                    check(not bad, "%s: %d streams refused or ended (the gateway's log: %s): %s"
                          % (what, len(bad), ended_reasons(self.g), "; ".join(bad[:3])))
                if pred(self.streams):
                    return
                next_check = now + 0.02
            if now > deadline:
                counts = sorted(len(st.ids) for st in self.streams)
                raise TestFailure("timed out after %.1fs waiting for %s; events per stream "
                                  "min %d max %d; e.g. %s" % (timeout, what, counts[0],
                                                              counts[-1],
                                                              self.streams[0].describe()))
            for key, _ in self.sel.select(min(0.05, max(0.0, deadline - now))):
                st = key.data
                try:
                    d = st.sock.recv(1 << 18)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    d = b""
                if not d:
                    st.closed = True
                    self.sel.unregister(st.sock)
                    continue
                st.feed(d)

    def idle(self, seconds):
        """Reads for seconds (for "nothing more arrives" checks)."""
        t_end = time.monotonic() + seconds
        self.run(lambda _: time.monotonic() >= t_end, seconds + 1, "idle", end_ok=True)

    def close(self):
        for st in self.streams:
            st.sock.close()
        self.sel.close()


def check_fleet(fleet, want_of, what):
    """Every stream got exactly want_of(stream) (ids), in order, each frame
    with an id, the hello first; none ended."""
    for st in fleet.streams:
        check(st.first.startswith(b"retry: ") and b"\n: ssegate " in st.first,
              "%s: %s: the body starts with the hello: %r" % (what, st.what, st.first[:80]))
        want = want_of(st)
        if st.ids != want:
            want_set, got_set = set(want), set(st.ids)
            extra = [i for i in st.ids if i not in want_set]
            missing = [i for i in want if i not in got_set]
            raise TestFailure("%s: %s: got %d events, want %d: missing %r, unexpected %r, "
                              "duplicates %d, in order %s"
                              % (what, st.what, len(st.ids), len(want), missing[:5], extra[:5],
                                 len(st.ids) - len(set(st.ids)),
                                 st.ids == sorted(st.ids, key=id_key)))
        eq(st.frames, len(st.ids), "%s: %s: frames without an id (a gap?)" % (what, st.what))
        check(not st.ended(), "%s: %s" % (what, st.describe()))


# ------------------------------------------------------------------- tests

def outage_opens(env, g, begin, end):
    """Three events before an outage; during it (begin .. end) a stream
    resuming from before them and a fresh one each answer 200 with the
    hello within REDIS_TIMEOUT_MS + 1 s; three events after: the first
    gets all six, the second the last three, each once, in order."""
    uid = account(g.port)
    e0 = post(g.port, uid, "zero")
    before = [post(g.port, uid, "before%d" % i) for i in range(3)]
    begin()
    try:
        t0 = time.monotonic()
        resumed = open_within(g.port, "userId=" + uid, e0)
        fresh = open_within(g.port, "userId=" + uid)
        # Fault injection, not synchronisation: the outage lasts past
        # REDIS_TIMEOUT_MS, so every read sent during it has failed.
        time.sleep(max(0.0, t0 + TIMEOUT_MS / 1000.0 + 0.5 - time.monotonic()))
        eq(resumed.events + fresh.events, [], "no event during the outage")
    finally:
        end()
    after = [post_accepted(g.port, uid, "after%d" % i) for i in range(3)]
    exactly(resumed, before + after, "the stream resumed during the outage", 15, g)
    exactly(fresh, after, "the stream opened during the outage", 5, g)
    resumed.close()
    fresh.close()


def test_open_while_redis_frozen(env):
    """Redis frozen (SIGSTOP): a stream open answers 200 with the hello
    within REDIS_TIMEOUT_MS + 1 s (not 503); once Redis is back, the
    resuming stream gets the events written before the freeze after its
    Last-Event-ID, then those posted after; a stream opened without one
    gets those posted after. Each once, in order."""
    g = env.gateway("hist-frozen", REDIS_TIMEOUT_MS=TIMEOUT_MS)
    sig = env.redis.proc.proc.send_signal
    try:
        outage_opens(env, g, lambda: sig(signal.SIGSTOP), lambda: sig(signal.SIGCONT))
    finally:
        g.stop()


def test_open_while_redis_down(env):
    """The same with Redis stopped, then started again on its port with
    its data (appendonly)."""
    g = env.gateway("hist-down", REDIS_TIMEOUT_MS=TIMEOUT_MS)
    try:
        outage_opens(env, g, env.redis.stop, env.redis.start)
    finally:
        if not env.redis.proc.alive():
            env.redis.start()
        g.stop()


def test_unknown_user_during_outage(env):
    """A stream for a userId with no account, opened while Redis is
    frozen, answers 200 with the hello (whether the account exists is not
    known yet); once Redis is back its body ends cleanly (the 0 chunk)
    with no event, and the next open for that user gets 404, as with
    Redis up. (One HTTP thread, so the 404 comes from the Redis connection
    /health has seen answer again.)"""
    g = env.gateway("hist-nobody", REDIS_TIMEOUT_MS=TIMEOUT_MS, HTTP_THREADS=1)
    try:
        post(g.port, account(g.port), "warm-up")
        env.redis.proc.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            c = open_within(g.port, "userId=" + NOBODY)
            # Fault injection: the outage outlasts REDIS_TIMEOUT_MS.
            time.sleep(max(0.0, t0 + TIMEOUT_MS / 1000.0 + 0.5 - time.monotonic()))
            check(not c.eof and not c.closed, "the stream stays open while Redis is frozen")
        finally:
            env.redis.proc.proc.send_signal(signal.SIGCONT)
        waiting(g, c.wait_eof, 10)
        check(c.eof, "the body ended cleanly (0 chunk), not a dropped socket")
        eq(c.events, [], "no event on the unknown user's stream")
        c.close()
        wait_until(g.ready, 10, "/health up")
        again = SSEClient(g.port, "userId=" + NOBODY)
        eq((again.status, json.loads(again.error_body)["error"]), (404, "not_found"),
           "the next open for the unknown user")
        again.close()
    finally:
        g.stop()


def lost_subscription(env, relay, between):
    """Kills the gateway's subscription and holds its next SUBSCRIBE (at
    the relay) until between() has run: whatever between() posts is
    written while the gateway is not subscribed, so it reaches streams
    only through recovery."""
    relay.hold_subscribes()
    held = relay.held_subs
    env.redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
    wait_until(lambda: relay.held_subs > held, 5, "the gateway to subscribe again")
    return between()


def test_busy_is_not_yet(env):
    """Recovery meets BUSY (a script running past lua-time-limit): 20
    streams over 10 users lose their subscription; 3 events per user are
    written meanwhile; the gateway subscribes again while Redis answers
    BUSY (~1.5 s, then SCRIPT KILL), so its recovery reads get BUSY. Then
    3 more per user. Every stream gets all 6 of its user's, once, in
    order; none ends; no replay_failed."""
    relay = Relay(env.redis.port)
    busy = None
    try:
        g = env.gateway("hist-busy", redis=relay)
        users = [account(g.port) for _ in range(10)]
        streams = [SSEClient(g.port, "userId=" + u) for u in users for _ in range(2)]
        for c in streams:
            eq(c.status, 200, "stream status")
            c.wait(lambda s: s.comments, 5, "the hello")
        env.redis.cli("CONFIG", "SET", "lua-time-limit", "100")
        refused0 = rejected(env.redis, {})

        def burst():
            return post_many(g.port, "/events", [{"userId": u, "type": "missed%d" % i}
                                                  for i in range(3) for u in users], 202,
                             conns=10)
        missed = lost_subscription(env, relay, burst)
        relay.freeze_subscribers()      # its confirmation waits ...
        relay.release_subscribes()      # ... while Redis takes the SUBSCRIBE
        wait_until(lambda: env.redis.cli("PUBSUB", "NUMSUB", CHANNEL).splitlines()[-1] == "1",
                   5, "the gateway subscribed in Redis")
        busy = subprocess.Popen(["redis-cli", "-h", HOST, "-p", str(env.redis.port), "EVAL",
                                 "local i=0 while true do i=i+1 end", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: env.redis.cli("PING", check=False).startswith("BUSY"), 5,
                   "Redis to answer BUSY")
        t_busy = time.monotonic()
        relay.thaw()                    # subscribed: recovery reads meet BUSY
        # Fault injection: Redis stays busy for 1.5 s.
        time.sleep(max(0.0, t_busy + 1.5 - time.monotonic()))
        check(env.redis.cli("PING", check=False).startswith("BUSY"), "still busy after 1.5 s")
        env.redis.cli("SCRIPT", "KILL", check=False)
        busy.wait(5)
        wait_until(lambda: env.redis.cli("PING", check=False) == "PONG", 5, "Redis to answer")
        print("# commands refused BUSY (PING: ours): %s" % rejected(env.redis, refused0))
        later = [post_accepted(g.port, u, "later%d" % i) for i in range(3) for u in users]
        for k, c in enumerate(streams):
            u = k // 2
            want = sorted([m["id"] for m in missed[u::10]] + later[u::10], key=id_key)
            got = waiting(g, c.wait_events, 6, 15)
            eq(ids_of(got), want, "stream %d: every event once, in order" % k)
        streams[0].idle(0.3)
        for k, c in enumerate(streams):
            eq(len(c.events), 6, "stream %d: nothing more" % k)
            check(not c.eof and not c.closed, "stream %d still open" % k)
        no_stream_closed(g, "after BUSY")
        for c in streams:
            c.close()
    finally:
        if busy is not None and busy.poll() is None:
            env.redis.cli("SCRIPT", "KILL", check=False)
            busy.kill()
            busy.wait(5)
        env.redis.cli("CONFIG", "SET", "lua-time-limit", "5000", check=False)
        relay.release_subscribes()
        relay.thaw()
        relay.stop()
        for g in env.extra:
            g.stop()


# A dataset that takes about a second to load (2 M sorted-set members:
# 0.9 s on an idle machine here; more than 0.3 s is checked): 4 sorted
# sets of 500,000, built by a script in batches in about 2 s (DEBUG
# POPULATE is refused under Redis 7's default enable-debug-command no).
POPULATE_SETS = 4
POPULATE = """
local n = tonumber(ARGV[1])
local t = {}
for i = 1, n, 2000 do
  local k = 0
  for j = i, math.min(i + 1999, n) do t[k + 1] = j; t[k + 2] = j; k = k + 2 end
  for x = k + 1, #t do t[x] = nil end
  redis.call('ZADD', KEYS[1], unpack(t))
end
return n
"""


def test_loading_is_not_yet(env):
    """Recovery meets LOADING: 10 user streams and a firehose stream are
    open on their own Redis, whose dataset takes about a second to load;
    Redis is restarted on its port and answers LOADING meanwhile (it
    accepts SUBSCRIBE then, not scripts); events posted once it answers
    PING reach every stream, once; none ends; no replay_failed. The big
    dataset goes with this Redis."""
    r = env.own_redis(persist=True)
    try:
        g = env.gateway("hist-loading", redis=r)
        users = [account(g.port) for _ in range(5)]
        fire = SSEClient(g.port, "")
        streams = [SSEClient(g.port, "userId=" + u) for u in users for _ in range(2)]
        first = [post(g.port, u, "first") for u in users]
        for k, c in enumerate(streams):
            eq(ids_of(c.wait_events(1, 5)), [first[k // 2]], "stream %d: the first event" % k)
        eq(ids_of(fire.wait_events(len(users), 5)), first, "firehose")
        # The dataset: built without the AOF, then written in one rewrite
        # (appendonly back on), which also keeps the accounts and events.
        r.cli("CONFIG", "SET", "appendonly", "no")
        for z in range(POPULATE_SETS):
            r.cli("EVAL", POPULATE, "1", "key:z%d" % z, "500000")
        r.cli("CONFIG", "SET", "appendonly", "yes")

        def rewritten():
            info = r.cli("INFO", "persistence")
            return ("aof_rewrite_in_progress:0" in info and "aof_rewrite_scheduled:0" in info
                    and "aof_last_bgrewrite_status:ok" in info and "aof_rewrites:1" in info)
        wait_until(rewritten, 30, "the AOF rewrite")
        r.stop()
        started = {}
        t = threading.Thread(target=lambda: started.setdefault("err", _start(r)), daemon=True)
        t.start()
        seen = []

        def loading():
            if not t.is_alive():
                return True
            a = subprocess.run(["redis-cli", "-h", HOST, "-p", str(r.port), "PING"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
            if a.startswith("LOADING"):
                seen.append(time.monotonic())
            return a == "PONG"
        wait_until(loading, 20, "Redis to load its dataset")
        t.join(20)
        eq(started.get("err"), None, "restart")
        t_up = time.monotonic()
        check(seen and t_up - seen[0] > 0.3,
              "Redis answered LOADING for more than 0.3 s (%s)"
              % ("%.2fs" % (t_up - seen[0]) if seen else "never"))
        eq(r.cli("ZCARD", "key:z%d" % (POPULATE_SETS - 1)), "500000", "the dataset is back")
        eq([r.cli("EXISTS", "ssegate:account:" + u) for u in users], ["1"] * len(users),
           "the accounts are back")
        print("# LOADING for %.2fs; commands refused meanwhile (PING: ours): %s"
              % (t_up - seen[0], rejected(r, {})))
        later = [post_accepted(g.port, u, "later%d" % i) for i in range(2) for u in users]
        for k, c in enumerate(streams):
            u = k // 2
            exactly(c, [first[u]] + later[u::5], "stream %d" % k, 15, g)
        exactly(fire, first + later, "firehose", 5, g)
        no_stream_closed(g, "after LOADING")
        for c in streams + [fire]:
            c.close()
    finally:
        for g in env.extra:
            g.stop()
        env.drop_redis(r)


def _start(r):
    try:
        r.start()
        return None
    except Exception as e:          # reported by the test
        return repr(e)


# Paged resume: 5,000 events of 4 KiB in the firehose (about 21 MB with
# their envelopes), replayed from 0-1 to 50 clients at once.
PAGED_EVENTS = 5000
PAGED_CLIENTS = 50
PAGED_QUEUE_KIB = 1024
# The gateway's peak RSS while the 50 replays run, over its RSS just
# before: each stream may queue at most STREAM_QUEUE_KIB of frames, and
# may have one page of history in flight, no larger than that (held as
# read, then as frames, not at once): 2 x STREAM_QUEUE_KIB per stream,
# 100 MiB for 50; plus 64 MiB for ASan (its quarantine is set to 16 MiB
# here, its redzones and shadow add about a quarter) and the allocators'
# slack: 164 MiB. Whole replays held at once would be 50 x 21 MB = 1 GB;
# even one at a time per HTTP thread (today's pipelines, with a queue
# large enough not to end them) the peak measured 256-266 MiB over: a 21
# MB reply held three times (hiredis's buffer, the reply, the frames) on
# each of the 4 threads.
PAGED_RSS_BOUND_KIB = PAGED_CLIENTS * 2 * PAGED_QUEUE_KIB + 64 * 1024
PUBLISH_MAX_S = 0.100


def asan_options(**kw):
    opts = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
    opts += ["%s=%s" % kv for kv in kw.items()]
    return ":".join(opts)


def test_paged_resume_bounded_memory(env):
    """50 clients resume the firehose from 0-1 at once over 5,000 events of
    4 KiB (21 MB each, 20 x STREAM_QUEUE_KIB=1024): each gets every event
    once, in order, then the live ones posted meanwhile; no stream is ended
    (today: 503 at REDIS_TIMEOUT_MS, or closed: limit); the gateway's peak
    RSS meanwhile stays within
    PAGED_RSS_BOUND_KIB of where it was; and a POST /events every 100 ms
    meanwhile is answered 202 within 100 ms each."""
    r = env.own_redis()
    fleet = None
    try:
        g = env.gateway("hist-paged", redis=r, STREAM_QUEUE_KIB=PAGED_QUEUE_KIB,
                        ASAN_OPTIONS=asan_options(quarantine_size_mb=16,
                                                  thread_local_quarantine_size_kb=256))
        users = [account(g.port) for _ in range(5)]
        data = "x" * 4096
        posted = post_many(g.port, "/events", [{"userId": users[i % 5], "type": "bulk",
                                                "data": data} for i in range(PAGED_EVENTS)],
                           202, conns=32)
        accounts = firehose_head(r, 2 * len(users))
        eq(sorted((u, ty) for _, u, ty in accounts),
           sorted((u, ty) for u in users for ty in ("account.created", "snapshot")),
           "the firehose starts with the accounts' events")
        base = sorted([i for i, _, _ in accounts] + [p["id"] for p in posted], key=id_key)
        eq(len(set(base)), PAGED_EVENTS + 2 * len(users), "distinct ids")
        pid = g.proc.pid
        rss0 = proc_status(pid, "VmRSS")
        try:
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")                # resets VmHWM to the current RSS
            hwm_floor = 0
        except OSError:
            hwm_floor = proc_status(pid, "VmHWM")   # only a peak above it counts

        fleet = Fleet(g, [("", "0-1")] * PAGED_CLIENTS)
        t0 = time.monotonic()
        stop = threading.Event()
        live = []                   # (seconds, status, id)

        def publisher():
            k = 0
            while not stop.is_set():
                t = time.monotonic()
                try:
                    st, _, body = post_json(g.port, "/events",
                                            {"userId": users[0], "type": "live", "data": k},
                                            timeout=5)
                    live.append((time.monotonic() - t, st, body.get("id")
                                 if isinstance(body, dict) else body))
                except OSError as e:
                    live.append((time.monotonic() - t, None, repr(e)))
                k += 1
                stop.wait(max(0.0, t + 0.1 - time.monotonic()))    # one every 100 ms
        pub = threading.Thread(target=publisher, daemon=True)
        pub.start()
        try:
            fleet.run(lambda ss: all(len(s.ids) >= len(base) for s in ss), 60,
                      "every client's %d replayed events" % len(base))
        finally:
            stop.set()
            pub.join(10)
        took = time.monotonic() - t0
        ok_live = [i for _, st, i in live if st == 202]
        want = sorted(base + ok_live, key=id_key)
        fleet.run(lambda ss: all(len(s.ids) >= len(want) for s in ss), 10,
                  "the live events after the replay")
        fleet.idle(0.3)
        hwm = proc_status(pid, "VmHWM")
        print("# %d replays of %d events in %.1fs; peak RSS %d MiB (before %d MiB); "
              "%d live POSTs, slowest %.0f ms" % (PAGED_CLIENTS, len(base), took, hwm // 1024,
                                                 rss0 // 1024, len(live),
                                                 1000 * max([s for s, _, _ in live] or [0])))
        no_stream_closed(g, "paged resume")
        check(len(live) >= 5, "POSTs during the replays: %d" % len(live))
        eq([(st, s <= PUBLISH_MAX_S) for s, st, _ in live], [(202, True)] * len(live),
           "every POST during the replays: 202 within %d ms (seconds: %r)"
           % (PUBLISH_MAX_S * 1000, [round(s, 3) for s, _, _ in live]))
        check(hwm <= max(hwm_floor, rss0 + PAGED_RSS_BOUND_KIB),
              "peak RSS during the replays %d MiB, over %d MiB + the bound %d MiB"
              % (hwm // 1024, rss0 // 1024, PAGED_RSS_BOUND_KIB // 1024))
        check_fleet(fleet, lambda st: want, "paged resume")
    finally:
        if fleet is not None:
            fleet.close()
        for g in env.extra:
            g.stop()
        env.drop_redis(r)


def test_recovery_keeps_every_stream(env):
    """200 streams over 100 users lose their subscription; one event to
    each of 60 users is written while the gateway is not subscribed (its
    SUBSCRIBE held at the relay), then one more to each of 60 as soon as
    it is: every stream gets its user's events once, in order; none
    ends."""
    relay = Relay(env.redis.port)
    fleet = None
    try:
        g = env.gateway("hist-recover", redis=relay)
        users = [a["id"] for a in post_many(g.port, "/accounts", [{"name": "R%d" % i}
                                                                  for i in range(100)], 201)]
        fleet = Fleet(g, [("userId=" + u, None) for u in users for _ in range(2)])
        fleet.run(lambda ss: all(b"\n: ssegate " in s.first for s in ss), 10, "every hello")
        missed = lost_subscription(env, relay, lambda: post_many(
            g.port, "/events", [{"userId": u, "type": "missed"} for u in users[:60]], 202,
            conns=8))
        relay.release_subscribes()
        later = post_many(g.port, "/events", [{"userId": u, "type": "later"}
                                              for u in users[40:]], 202, conns=8)
        want = {}
        for u, p in zip(users[:60] + users[40:], missed + later):
            want.setdefault(u, []).append(p["id"])
        for u in want:
            want[u].sort(key=id_key)

        def want_of(st):
            return want.get(st.query.split("=")[1], [])
        fleet.run(lambda ss: all(len(s.ids) >= len(want_of(s)) for s in ss), 20,
                  "every stream's events")
        fleet.idle(0.3)
        check_fleet(fleet, want_of, "recovery")
        no_stream_closed(g, "recovery")
    finally:
        if fleet is not None:
            fleet.close()
        relay.release_subscribes()
        relay.stop()
        for g in env.extra:
            g.stop()


STORM_USERS = 300
STORM_EVENTS = 200          # per user, its account's two included
STORM_DEADLINE_S = 20       # from the first open to the last stream complete


def test_resume_storm(env):
    """300 users with 200 events each in history; 300 clients resume at
    once, each from its user's first event (199 to replay), with
    REDIS_TIMEOUT_MS=500: every one gets 200 and its 199 events once, in
    order, all within STORM_DEADLINE_S."""
    r = env.own_redis()
    fleet = None
    try:
        # Every client comes from 127.0.0.1: no per-client cap.
        g = env.gateway("hist-storm", redis=r, REDIS_TIMEOUT_MS=TIMEOUT_MS,
                        MAX_CONNECTIONS_PER_CLIENT=0)
        users = [a["id"] for a in post_many(g.port, "/accounts",
                                            [{"name": "S%d" % i} for i in range(STORM_USERS)],
                                            201)]
        # The accounts' two events each, read before the firehose's cap
        # (FIREHOSE_MAXLEN) drops them.
        head = firehose_head(r, 2 * STORM_USERS)
        created = {u: i for i, u, ty in head if ty == "account.created"}
        snap = {u: i for i, u, ty in head if ty == "snapshot"}
        check(sorted(created) == sorted(snap) == sorted(users),
              "each account's two events in the firehose: %d, %d" % (len(created), len(snap)))
        n = STORM_EVENTS - 2
        posted = post_many(g.port, "/events", [{"userId": u, "type": "h%d" % i}
                                               for i in range(n) for u in users], 202, conns=32)
        want = {u: [snap[u]] for u in users}
        for k, p in enumerate(posted):
            want[users[k % STORM_USERS]].append(p["id"])
        for u in users:
            want[u].sort(key=id_key)
            eq(len(want[u]), STORM_EVENTS - 1, "events to replay")
        t0 = time.monotonic()
        fleet = Fleet(g, [("userId=" + u, created[u]) for u in users])

        def user_of(st):
            return st.query.split("=")[1]
        fleet.run(lambda ss: all(len(s.ids) >= STORM_EVENTS - 1 for s in ss), STORM_DEADLINE_S,
                  "every resumed stream's %d events" % (STORM_EVENTS - 1))
        took = time.monotonic() - t0
        fleet.idle(0.3)
        print("# %d resumes of %d events in %.1fs" % (STORM_USERS, STORM_EVENTS - 1, took))
        eq(sorted(set(st.status for st in fleet.streams)), [200], "every status")
        check_fleet(fleet, lambda st: want[user_of(st)], "resume storm")
        no_stream_closed(g, "resume storm")
    finally:
        if fleet is not None:
            fleet.close()
        for g in env.extra:
            g.stop()
        env.drop_redis(r)


TESTS = [test_open_while_redis_frozen, test_open_while_redis_down,
         test_unknown_user_during_outage, test_busy_is_not_yet, test_loading_is_not_yet,
         test_paged_resume_bounded_memory, test_recovery_keeps_every_stream,
         test_resume_storm]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
