#!/usr/bin/env python3
"""Heartbeats and the write timeout: a real redis-server and one ssegate
(HEARTBEAT_SECS=1, STREAM_WRITE_TIMEOUT_SECS=2), real HTTP over loopback.
Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_heartbeat.py [-k substr]

The streams are read by a parser written from the WHATWG rules (HTML
9.2.6) that also counts what lenient clients (@microsoft/fetch-event-source,
extended-eventsource) would dispatch: for them, a blank line with an empty
data buffer is a message with data "".
"""
import fcntl
import json
import os
import selectors
import socket
import struct
import sys
import termios
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, Gateway, Redis, SSEClient, Workdir,  # noqa: E402
                     check, eq, get_json, post_json, wait_until, run_suite)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
BEAT = 1.0          # HEARTBEAT_SECS of the gateway under test
TICK = 0.5          # how late a heartbeat may be: scheduling on a shared, sanitized build
WRITE_TIMEOUT = 2   # STREAM_WRITE_TIMEOUT_SECS


class Env:
    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        # 1,000 streams from one address: no per-client cap.
        self.g = Gateway(BIN, self.redis, self.work.path, "beat", HEARTBEAT_SECS=int(BEAT),
                         STREAM_WRITE_TIMEOUT_SECS=WRITE_TIMEOUT, STREAM_QUEUE_KIB=65536,
                         MAX_CONNECTIONS_PER_CLIENT=0)

    def account(self):
        st, _, acct = post_json(self.g.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts status")
        return acct["id"]

    def event(self, user, type_, data=None):
        st, _, body = post_json(self.g.port, "/events", {"userId": user, "type": type_, "data": data})
        eq(st, 202, "POST /events status (%r)" % body)
        return body["id"]

    def gateways(self):
        return [self.g]

    def close(self):
        codes = {self.g.name: self.g.stop()}
        self.redis.stop()
        return codes


class WhatwgStream(SSEClient):
    """SSEClient's socket and de-chunking, with the body parsed by the
    WHATWG event stream rules, each line stamped with its arrival time."""

    def __init__(self, port, query=""):
        self.w_events = []      # (id, type, data, t): what EventSource dispatches
        self.w_retry = None
        self.w_comments = []    # (text, t)
        self.w_empty = 0        # what a lenient client dispatches as data ""
        self.w_log = []         # ("event", id) and ("comment", text), in stream order
        self.w_data = ""
        self.w_type = ""
        self.w_last_id = ""
        self.w_pending_cr = False
        super().__init__(port, query, timeout=10)

    def _parse(self):
        now = time.monotonic()
        text = self.body.decode("utf-8")
        self.body = b""
        # Lines end in CRLF, LF or CR; a CR at the end of what we have may
        # still be followed by its LF.
        i = 0
        start = 0
        if self.w_pending_cr and text.startswith("\n"):
            i = start = 1
        self.w_pending_cr = False
        while i < len(text):
            ch = text[i]
            if ch in "\r\n":
                self._line(text[start:i], now)
                if ch == "\r":
                    if i + 1 == len(text):
                        self.w_pending_cr = True
                    elif text[i + 1] == "\n":
                        i += 1
                start = i + 1
            i += 1
        self.body = text[start:].encode("utf-8")
        self.text += text[:start]

    def _line(self, line, now):
        if line == "":
            if self.w_data == "":
                self.w_empty += 1       # WHATWG: nothing; lenient clients: data ""
                self.w_type = ""
                return
            data = self.w_data[:-1] if self.w_data.endswith("\n") else self.w_data
            self.w_events.append((self.w_last_id, self.w_type or "message", data, now))
            self.w_log.append(("event", self.w_last_id))
            self.w_data = ""
            self.w_type = ""
            return
        if line.startswith(":"):
            self.w_comments.append((line[1:].strip(), now))
            self.w_log.append(("comment", line[1:].strip()))
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.w_type = value
        elif name == "data":
            self.w_data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                self.w_last_id = value
        elif name == "retry":
            if value.isdigit():
                self.w_retry = int(value)

    def pings(self):
        return [t for c, t in self.w_comments if c == "ping"]


def open_whatwg(env, query):
    c = WhatwgStream(env.g.port, query)
    eq(c.status, 200, "stream status")
    c.wait(lambda s: s.w_retry is not None and s.w_comments, 5, "retry and hello comment")
    return c


def health_streams(env):
    st, _, body = get_json(env.g.port, "/health")
    eq(st, 200, "/health status")
    return body["streams"]


# -------------------------------------------------------------------- tests

def test_hello_bytes(env):
    c = open_whatwg(env, "")
    check(c.text.startswith("retry: 3000\n: ssegate beat\n"), "hello: %r" % c.text[:60])
    check("\n\n" not in c.text, "no blank line after the hello: %r" % c.text[:60])
    c.wait(lambda s: len(s.pings()) >= 1, BEAT + TICK + 1, "a heartbeat")
    check("\n\n" not in c.text, "no blank line after a heartbeat: %r" % c.text[:80])
    eq(c.w_comments[0][0], "ssegate beat", "hello comment names the instance")
    c.close()


def test_no_empty_messages(env):
    uid = env.account()
    c = open_whatwg(env, "userId=" + uid)
    c.wait(lambda s: len(s.pings()) >= 2, 2 * BEAT + 2 * TICK + 1, "two heartbeats")
    want = [env.event(uid, "first", {"n": 1}), env.event(uid, "second", {"n": 2})]
    c.wait(lambda s: len(s.w_events) >= 2, 5, "two events")
    k = len(c.pings())
    c.wait(lambda s: len(s.pings()) >= k + 2, 2 * BEAT + 2 * TICK + 1, "two more heartbeats")
    want += [env.event(uid, "third", {"n": 3}), env.event(uid, "fourth", {"n": 4}),
             env.event(uid, "fifth", {"n": 5})]
    c.wait(lambda s: len(s.w_events) >= 5, 5, "five events")
    c.idle(BEAT + TICK)         # anything more, a heartbeat at least
    eq(c.w_retry, 3000, "retry reached the parser")
    eq([e[0] for e in c.w_events], want, "every event once, in order, with its id")
    eq([e[1] for e in c.w_events], ["first", "second", "third", "fourth", "fifth"], "event types")
    eq([json.loads(e[2])["data"]["n"] for e in c.w_events], [1, 2, 3, 4, 5], "event data")
    check(len(c.pings()) >= 4, "heartbeats seen: %d" % len(c.pings()))
    eq(c.w_empty, 0, "empty messages a lenient client would dispatch")
    c.close()


def test_idle_stream_heartbeat_period(env):
    c = open_whatwg(env, "")
    hello_t = c.w_comments[0][1]
    c.wait(lambda s: len(s.pings()) >= 3, 3 * BEAT + 3 * TICK + 1, "three heartbeats")
    times = [hello_t] + c.pings()[:3]
    gaps = [b - a for a, b in zip(times, times[1:])]
    for g in gaps:
        check(BEAT - 0.1 <= g <= BEAT + TICK,
              "an idle stream gets a heartbeat every %.1fs (+ a tick): gaps %r" % (BEAT, gaps))
    eq(c.w_events, [], "heartbeats are not events")
    c.close()


def test_busy_stream_gets_no_heartbeat(env):
    uid = env.account()
    busy = open_whatwg(env, "userId=" + uid)
    idle = open_whatwg(env, "userId=" + env.account())    # not the firehose: that is busy too
    n = 12
    want = []
    for i in range(n):             # one event every 0.3 s: never idle for HEARTBEAT_SECS
        want.append(env.event(uid, "tick", {"i": i}))
        time.sleep(0.3)            # the pace of the load, not a synchronisation
    busy.wait(lambda s: len(s.w_events) >= n, 5, "%d events" % n)
    idle.idle(0.1)
    kinds = [k for k, _ in busy.w_log]
    first, last = kinds.index("event"), len(kinds) - 1 - kinds[::-1].index("event")
    between = [x for x in busy.w_log[first:last] if x == ("comment", "ping")]
    eq([e[0] for e in busy.w_events], want, "every event once, in order")
    eq(between, [], "heartbeats between a busy stream's events")
    check(len(idle.pings()) >= 2, "an idle stream on the same gateway meanwhile got heartbeats: %d"
          % len(idle.pings()))
    eq(busy.w_empty + idle.w_empty, 0, "empty messages")
    busy.close()
    idle.close()


def test_many_streams_due_together(env):
    """1,000 streams opened at once are due together: each writer loop
    spreads them over a few slots, and every one still gets its heartbeat
    within HEARTBEAT_SECS + a tick of its hello (and none before)."""
    # The firehose sees the account's events once they are fanned out:
    # then no stream opened after it can take them for its own (a stream
    # opened "now" gets what is fanned out after it opens).
    fire = SSEClient(env.g.port)
    eq(fire.status, 200, "the firehose's status")
    uid = env.account()
    fire.wait_events(2)
    fire.close()
    n = 1000
    sel = selectors.DefaultSelector()
    state = {}
    req = ("GET /events/sse?userId=%s HTTP/1.1\r\nHost: %s:%d\r\n"
           "Accept: text/event-stream\r\n\r\n" % (uid, HOST, env.g.port)).encode()
    try:
        for _ in range(n):
            t = time.monotonic()
            sk = socket.create_connection((HOST, env.g.port), timeout=10)
            sk.sendall(req)
            sk.setblocking(False)
            state[sk] = {"buf": b"", "sent": t, "hello": None, "ping": None}
            sel.register(sk, selectors.EVENT_READ)
        deadline = time.monotonic() + BEAT + TICK + 10
        while any(v["ping"] is None for v in state.values()) and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                v = state[key.fileobj]
                d = key.fileobj.recv(65536)
                check(d, "a stream closed")
                v["buf"] += d
                now = time.monotonic()
                if v["hello"] is None and b": ssegate beat\n" in v["buf"]:
                    v["hello"] = now
                if v["ping"] is None and b": ping\n" in v["buf"]:
                    v["ping"] = now
        got = [v for v in state.values() if v["ping"] is not None and v["hello"] is not None]
        eq(len(got), n, "streams with a hello and a heartbeat")
        # The stream starts after its request was sent, and its hello
        # arrives no later than we read it: the bounds hold either way.
        early = min(v["ping"] - v["sent"] for v in got)
        late = max(v["ping"] - v["hello"] for v in got)
        check(early >= BEAT - 0.1 and late <= BEAT + TICK,
              "first heartbeats %.3f s after the request at the earliest, %.3f s after the "
              "hello at the latest" % (early, late))
        check(all(b"\n\n" not in v["buf"] for v in got), "no blank line on any stream")
    finally:
        for sk in state:
            sel.unregister(sk)
            sk.close()
        sel.close()
    wait_until(lambda: health_streams(env) == 0, 10, "the 1,000 streams gone")


def bytes_taken(server_port, client):
    """What the gateway's socket to client has taken so far, seen from
    outside: its send queue (this host's /proc/net/tcp, the entry from
    server_port to client's port) plus what waits unread in client's
    receive queue. None once the gateway's socket is gone."""
    ip = "%08X" % struct.unpack("<I", socket.inet_aton(HOST))[0]
    local = "%s:%04X" % (ip, server_port)
    remote = "%s:%04X" % (ip, client.getsockname()[1])
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote and fields[3] == "01":
                unread = struct.unpack("i", fcntl.ioctl(client, termios.FIONREAD,
                                                        b"\0\0\0\0"))[0]
                return int(fields[4].split(":")[0], 16) + unread
    return None


def test_stalled_client_is_closed(env):
    """A client that stops reading is ended as slow_consumer, not before
    STREAM_WRITE_TIMEOUT_SECS has passed since its socket last took a
    byte (still open a second before that), and not much after (closed
    within 2 s after); a reading client of the same user loses nothing."""
    uid = env.account()
    base = health_streams(env)
    reader = open_whatwg(env, "userId=" + uid)
    # A client that never reads, with a small receive window.
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((HOST, env.g.port))
    stuck.sendall(("GET /events/sse?userId=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                   "Accept: text/event-stream\r\n\r\n" % (uid, HOST, env.g.port)).encode())
    wait_until(lambda: health_streams(env) == base + 2, 5, "both streams open")
    needle = "user=%s closed: slow_consumer" % uid
    # The reader keeps reading on its own thread while we post; another
    # thread watches the stuck socket: when it last took a byte, and when
    # the gateway said it ended the stream.
    stop = threading.Event()
    seen = {"taken": None, "last_byte": None, "ended": None}

    def read():
        while not stop.is_set() and not reader.closed:
            reader.pump(0.1)

    def watch():
        while not stop.is_set() and seen["ended"] is None:
            now = time.monotonic()
            if needle in env.g.proc.output():
                seen["ended"] = now
                break
            n = bytes_taken(env.g.port, stuck)
            if n is not None and n != seen["taken"]:
                seen["taken"], seen["last_byte"] = n, now
            time.sleep(0.01)        # the sampling period, not a wait for anything
    threads = [threading.Thread(target=read), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    try:
        payload = "x" * 30000
        n = 256                        # ~7.7 MB: more than both sockets' buffers hold
        t0 = time.monotonic()
        want = [env.event(uid, "big", payload) for _ in range(n)]
        posted = time.monotonic() - t0
        wait_until(lambda: seen["ended"] is not None, WRITE_TIMEOUT + posted + 5,
                   "log line %r" % needle)
        wait_until(lambda: health_streams(env) == base + 1, 5, "/health stream count back down")
        wait_until(lambda: len(reader.w_events) >= n, 20, "the reader's %d events" % n)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    check(seen["last_byte"] is not None and seen["taken"] > 4096,
          "the stuck socket took bytes: %r" % seen)
    quiet = seen["ended"] - seen["last_byte"]
    check(WRITE_TIMEOUT - 1 <= quiet <= WRITE_TIMEOUT + 2,
          "ended %.2f s after the socket's last byte (%d taken): want within [%d, %d] s "
          "of STREAM_WRITE_TIMEOUT_SECS=%d"
          % (quiet, seen["taken"], WRITE_TIMEOUT - 1, WRITE_TIMEOUT + 2, WRITE_TIMEOUT))
    eq([e[0] for e in reader.w_events], want, "the reading client got every event once, in order")
    check(not reader.closed, "the reading client's stream is still open")
    eq(env.g.proc.output().count("closed: slow_consumer"), 1, "one stream closed as slow")
    stuck.close()
    reader.close()


TESTS = [test_hello_bytes, test_no_empty_messages, test_idle_stream_heartbeat_period,
         test_busy_stream_gets_no_heartbeat, test_many_streams_due_together,
         test_stalled_client_is_closed]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
