#!/usr/bin/env python3
"""HAProxy in front of two gateways, with haproxy/haproxy.cfg as shipped
(only its "# @native" lines rendered by scripts/render-haproxy): a real
haproxy, a real redis-server, backend-1 and backend-2 on loopback.
Streams pass unbuffered; /health takes a sick backend out; a client whose
backend is killed resumes through HAProxy on the other with Last-Event-ID
and gets every event exactly once. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_haproxy.py [-k substr]
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Gateway, GatewaysEnv, Process, SSEClient, TestFailure,  # noqa: E402
                     check, eq, free_port, http, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(TOP, "ssegate")
# No heartbeat during a test: nothing but the events themselves may push
# bytes through HAProxy.
HEARTBEAT = 60
# How much later an event may reach the client through HAProxy than a
# client of the backend itself. Without `option http-no-delay` HAProxy
# sends with MSG_MORE and the kernel holds each event ~200 ms; with it,
# the difference is a loopback hop. The bound sits halfway, so the test
# tells the two apart on a loaded, sanitized build; it checks buffering
# (an event held back), not speed.
HELD_BACK = 0.1


class Env(GatewaysEnv):
    def __init__(self, binary):
        super().__init__(binary)
        self.proxies = []
        # run_suite cannot stop what a half-made environment started.
        try:
            self.b1 = self.gateway("backend-1", HEARTBEAT_SECS=HEARTBEAT)
            self.b2 = self.gateway("backend-2", HEARTBEAT_SECS=HEARTBEAT)
            self.hp = self.haproxy(self.b1.port, self.b2.port)
        except Exception:
            self.close()
            raise

    def haproxy(self, b1, b2):
        """HAProxy on a free port in front of backends on ports b1 and b2;
        returns its port once a request through it is answered."""
        port = free_port()
        conf = subprocess.run([os.path.join(TOP, "scripts", "render-haproxy"), str(port),
                               str(b1), str(b2)], capture_output=True, text=True, check=True,
                              timeout=10).stdout
        path = os.path.join(self.work.path, "haproxy-%d.cfg" % port)
        with open(path, "w") as f:
            f.write(conf)
        p = Process("haproxy-%d" % port, ["haproxy", "-db", "-f", path], os.environ.copy(),
                    self.work.path)
        self.proxies.append(p)

        def up():
            if not p.alive():
                raise TestFailure("haproxy exited:\n" + p.output()[-2000:])
            try:
                return http(port, "GET", "/health", timeout=2)[0] == 200
            except OSError:
                return False
        wait_until(up, 15, "haproxy to answer /health")
        return port

    def account(self):
        st, _, acct = post_json(self.b1.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts status")
        return acct["id"]

    def event(self, g, user, type_="m"):
        st, _, body = post_json(g.port, "/events", {"userId": user, "type": type_, "data": 1})
        eq(st, 202, "POST /events on %s (%r)" % (g.name, body))
        return body["id"]

    def kill(self, g):
        """SIGKILL by pid: the backend dies holding its streams. It is
        then no longer one of the gateways that must exit 0."""
        g.proc.proc.send_signal(signal.SIGKILL)
        g.proc.proc.wait(10)
        g.proc.log.close()
        self.extra.remove(g)

    def close(self):
        for p in self.proxies:
            p.stop()
        return super().close()


class NoRedis:
    """Where a gateway looks for Redis and finds nothing listening."""

    def __init__(self):
        self.port = free_port()


class SickGateway(Gateway):
    """A gateway without Redis: up, its /health 503 (it is ready when it
    says so)."""

    def ready(self):
        if not self.proc.alive():
            raise TestFailure("%s exited early:\n%s" % (self.name, self.proc.output()[-3000:]))
        return http_status(self.port, "/health") == 503


def server_of(c):
    """The instance a stream reached, from its hello comment."""
    c.wait(lambda s: s.comments, 5, "the hello comment")
    m = re.fullmatch(r"ssegate (\S+)", c.comments[0])
    check(m is not None, "hello comment: %r" % c.comments[0])
    return m.group(1)


class Arrivals(threading.Thread):
    """Reads one stream in its own thread, noting when each event came."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c, self.at, self.stop = c, [], threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self.stop.is_set() and not self.c.closed:
            self.c.pump(0.05)
            now = time.monotonic()
            with self.lock:
                while len(self.at) < len(self.c.events):
                    self.at.append((self.c.events[len(self.at)].id, now))

    def seen(self):
        with self.lock:
            return list(self.at)


def test_config_as_shipped(env):
    """The shipped file: valid for this haproxy, the switches the streams
    need, timeouts far above the heartbeat, /health checked, /metrics not
    served."""
    with open(os.path.join(TOP, "haproxy", "haproxy.cfg")) as f:
        conf = "\n".join(l.split("#")[0] for l in f.read().splitlines())
    # The shipped file names Compose's hosts, unknown here: only the
    # native render must load. Its syntax is checked on that render.
    conf_native = os.path.join(env.work.path, "haproxy-%d.cfg" % env.hp)
    r = subprocess.run(["haproxy", "-c", "-f", conf_native], capture_output=True, text=True,
                       timeout=10)
    eq(r.returncode, 0, "haproxy -c on the rendered file (%s)" % r.stderr)
    # Everything but the marked lines is the shipped file; a marked line
    # changes only its address (or maxconn), never its options.
    with open(os.path.join(TOP, "haproxy", "haproxy.cfg")) as f:
        shipped = f.read().splitlines()
    with open(conf_native) as f:
        rendered = f.read().splitlines()
    eq(len(rendered), len(shipped), "rendered line count")
    for a, b in zip(shipped, rendered):
        if "# @native" not in a:
            eq(b, a, "render-haproxy changed an unmarked line")
        else:
            norm = lambda l: re.sub(r"\S*:\d+|maxconn \d+", "ADDR", l.split("#")[0]).split()
            eq(norm(b), norm(a), "render-haproxy changed more than an address")
    check("[WARNING]" not in r.stdout + r.stderr, "haproxy -c warns: %s" % (r.stdout + r.stderr))
    for directive in (r"^\s*option http-no-delay$", r"^\s*option httpchk$",
                      r"^\s*http-check send meth GET uri /health\b", r"^\s*option forwardfor$",
                      r"^\s*option redispatch\b"):
        check(re.search(directive, conf, re.M), "haproxy.cfg needs %s" % directive)
    for name in ("client", "server", "tunnel"):
        m = re.search(r"^\s*timeout %s (\d+)([smh]?)$" % name, conf, re.M)
        check(m is not None, "haproxy.cfg sets timeout %s" % name)
        secs = int(m.group(1)) * {"": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        check(secs > 4 * 15, "timeout %s %ss: well above HEARTBEAT_SECS (15)" % (name, secs))
    st, _, _ = http(env.hp, "GET", "/metrics")
    eq(st, 404, "GET /metrics through haproxy")


def test_stream_unbuffered(env):
    """Ten events, each posted to backend-1: through HAProxy each arrives
    no later than HELD_BACK after it reaches a client of backend-1 itself
    (HEARTBEAT_SECS=60: no heartbeat pushes anything along)."""
    uid = env.account()
    via = SSEClient(env.hp, "userId=" + uid)
    eq(via.status, 200, "stream status through haproxy")
    eq(via.headers.get("content-type", "").split(";")[0], "text/event-stream", "content type")
    direct = SSEClient(env.b1.port, "userId=" + uid)
    server_of(via)
    server_of(direct)
    readers = [Arrivals(via), Arrivals(direct)]
    for r in readers:
        r.start()
    try:
        ids = []
        for i in range(10):
            ids.append(env.event(env.b1, uid))
            wait_until(lambda: all(len(r.seen()) > i for r in readers), 5,
                       "event %d on both streams" % (i + 1))
        got_via, got_direct = readers[0].seen(), readers[1].seen()
        eq([i for i, _ in got_via], ids, "events through haproxy")
        eq([i for i, _ in got_direct], ids, "events from backend-1")
        late = [(i, round(t - d, 3)) for (i, t), (_, d) in zip(got_via, got_direct)
                if t - d >= HELD_BACK]
        check(not late, "held back in haproxy (id, seconds): %r" % late)
    finally:
        for r in readers:
            r.stop.set()
        for r in readers:
            r.join(5)
        via.close()
        direct.close()


def test_health_check_takes_a_backend_out(env):
    """A backend whose Redis is away answers /health 503: HAProxy sends
    new streams to the other one."""
    sick = SickGateway(env.binary, NoRedis(), env.work.path, "sick", HEARTBEAT_SECS=HEARTBEAT)
    env.extra.append(sick)
    hp = env.haproxy(env.b1.port, sick.port)
    uid = env.account()
    # Both start as up; the first failed check (every second) takes the
    # sick one out. From then on, every open lands on backend-1.
    def all_on_b1():
        for _ in range(4):
            c = SSEClient(hp, "userId=" + uid)
            try:
                if c.status != 200 or server_of(c) != "backend-1":
                    return False
            finally:
                c.close()
        return True
    wait_until(all_on_b1, 10, "four streams in a row on backend-1")


def http_status(port, path):
    try:
        return http(port, "GET", path, timeout=2)[0]
    except OSError:
        return None


def test_failover_resume(env):
    """The backend holding a stream is killed (SIGKILL): the client
    reconnects through HAProxy with Last-Event-ID, reaches the other
    backend and gets every event exactly once, in order."""
    uid = env.account()
    c = SSEClient(env.hp, "userId=" + uid)
    eq(c.status, 200, "stream status")
    holder = env.b1 if server_of(c) == "backend-1" else env.b2
    other = env.b2 if holder is env.b1 else env.b1
    before = [env.event(other, uid) for _ in range(3)]
    c.wait_events(3)
    eq([e.id for e in c.events], before, "events before the kill")
    env.kill(holder)
    c.wait_eof(10)
    c.close()
    missed = [env.event(other, uid) for _ in range(3)]
    c2 = SSEClient(env.hp, "userId=" + uid, last_event_id=before[-1])
    eq(c2.status, 200, "reconnect status through haproxy")
    eq(server_of(c2), other.name, "the reconnect reached the live backend")
    c2.wait_events(3)
    live = [env.event(other, uid) for _ in range(2)]
    # A last event: once it is in, anything sent twice would be too.
    end = env.event(other, uid, "end")
    c2.wait(lambda s: any(e.id == end for e in s.events), 10, "the last event")
    eq([e.id for e in c2.events], missed + live + [end], "after resume: each event once, in order")
    c2.close()


TESTS = [test_config_as_shipped, test_stream_unbuffered, test_health_check_takes_a_backend_out,
         test_failover_resume]


if __name__ == "__main__":
    if shutil.which("haproxy") is None:
        print("1..0 # SKIP haproxy is not installed (Debian package haproxy)")
        sys.exit(0)
    sys.exit(run_suite(TESTS, lambda: Env(BIN), what="start redis-server, two gateways and haproxy"))
