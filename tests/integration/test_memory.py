#!/usr/bin/env python3
"""Integration suite for memory after a load: once thousands of
connections and streams have come and gone, the gateway's RSS goes back
near where it was before them (trim.c: malloc_trim once the count fell
to half its peak and by 1,000). A real redis-server and one ssegate on
loopback; prints TAP.

glibc's allocator only: a sanitizer build (ASan's own allocator, which
keeps freed memory in quarantine) skips the whole suite; scripts/test
runs it on the plain build.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_memory.py [-k substr]
"""
import os
import re
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, Gateway, Redis, TestFailure, Workdir, check, eq,  # noqa: E402
                     post_json, rss_kib, wait_until, run_suite)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
STREAMS = 2000          # idle GET /events/sse
HEADS = 2000            # connections holding half a request head
# trim.c looks every 2 s: the load is held longer than that, so one look
# sees it whole (that is the load's length, not a wait for an event).
HOLD = 3.0
# After: within this much of the baseline. Without the trim, glibc's free
# lists keep the streams' and connections' small allocations (measured:
# 7.1 -> 20.6 -> 12.5 MiB 10 s after); with it, 7.1 -> 20.7 -> 8.0.
MARGIN_KIB = 3 * 1024
DEADLINE = 10.0         # after the last socket closed


def sanitized(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


class Env:
    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        # No per-client cap: every socket comes from 127.0.0.1.
        self.g = Gateway(BIN, self.redis, self.work.path, "memory-1", HTTP_THREADS=2,
                         MAX_CONNECTIONS_PER_CLIENT=0, MAX_CONNECTIONS=19000,
                         REQUEST_TIMEOUT_MS=60000, HEARTBEAT_SECS=30, LOG_LEVEL="debug")
        st, _, acct = post_json(self.g.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts status")
        self.user = acct["id"]

    def gateways(self):
        return [self.g]

    def close(self):
        codes = {g.name: g.stop() for g in self.gateways()}
        self.redis.stop()
        return codes


def open_load(port, user):
    """STREAMS streams and HEADS unfinished heads, each stream's response
    head read. Returns the sockets."""
    sel = selectors.DefaultSelector()
    socks = []
    stream_req = ("GET /events/sse?userId=%s HTTP/1.1\r\nHost: x\r\n\r\n" % user).encode()
    part_head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: "
    waiting = {}
    for i in range(STREAMS + HEADS):
        s = socket.create_connection((HOST, port), timeout=5)
        socks.append(s)
        if i < STREAMS:
            s.sendall(stream_req)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            waiting[s] = b""
        else:
            s.sendall(part_head)
    deadline = time.monotonic() + 15
    while waiting and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                d = s.recv(4096)
            except BlockingIOError:
                continue
            if not d:
                raise TestFailure("a stream was closed: %r" % waiting[s][:200])
            waiting[s] += d
            if b"\r\n\r\n" in waiting[s]:
                check(waiting[s].startswith(b"HTTP/1.1 200"),
                      "stream opened: %r" % waiting[s][:200])
                sel.unregister(s)
                del waiting[s]
    sel.close()
    check(not waiting, "%d streams still unanswered" % len(waiting))
    return socks


# -------------------------------------------------------------------- tests

def test_rss_back_to_baseline_after_load(env):
    pid = env.g.proc.pid
    base = rss_kib(pid)
    socks = open_load(env.g.port, env.user)
    try:
        end = time.monotonic() + HOLD
        peak = rss_kib(pid)
        while time.monotonic() < end:
            peak = max(peak, rss_kib(pid))
            time.sleep(0.1)
    finally:
        for s in socks:
            s.close()
    floor = [peak]

    def back():
        floor[0] = min(floor[0], rss_kib(pid))
        return floor[0] <= base + MARGIN_KIB
    t0 = time.monotonic()
    try:
        wait_until(back, DEADLINE, "RSS within %d KiB of the baseline" % MARGIN_KIB)
    except Exception:
        raise TestFailure("RSS %d KiB before, %d during, %d after %.0f s: not within %d KiB"
                          % (base, peak, floor[0], DEADLINE, MARGIN_KIB))
    took = time.monotonic() - t0
    trims = re.findall(r"malloc_trim: (\d+) us, RSS (\d+) -> (\d+) KiB", env.g.proc.output())
    check(trims, "a malloc_trim line in the log")
    print("# RSS %d KiB before, %d during, %d after (%.1f s); trim: %s"
          % (base, peak, floor[0], took,
             ", ".join("%s us %s -> %s KiB" % t for t in trims)))
    check(peak > base + 2 * MARGIN_KIB, "the load raised RSS (%d -> %d KiB)" % (base, peak))


def test_no_trim_while_steady(env):
    """The load held, the count steady: no trim while it lasts."""
    before = env.g.proc.output().count("malloc_trim:")
    socks = open_load(env.g.port, env.user)
    try:
        end = time.monotonic() + 2 * HOLD
        while time.monotonic() < end:
            eq(env.g.proc.output().count("malloc_trim:"), before, "trims while steady")
            time.sleep(0.2)
    finally:
        for s in socks:
            s.close()
    # Then gone: the trim comes.
    wait_until(lambda: env.g.proc.output().count("malloc_trim:") > before, DEADLINE,
               "the trim after the load")


TESTS = [test_rss_back_to_baseline_after_load, test_no_trim_while_steady]

if __name__ == "__main__":
    if sanitized(BIN):
        print("1..0 # SKIP sanitizer build: ASan's allocator is not glibc's "
              "(malloc_trim has nothing to give back); run on a plain build")
        sys.exit(0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = STREAMS + HEADS + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)), hard))
    sys.exit(run_suite(TESTS, Env))
