"""harness.py -- real processes on loopback for the integration suite.

Starts a private redis-server and ssegate instances on free 127.0.0.1 ports,
each stopped by its own pid; an HTTP helper; and an SSE client that decodes
chunked transfer encoding and SSE incrementally, where every wait has a
deadline. Standard library only.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                   "ERROR: LeakSanitizer", "==ERROR")


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (what, got, want))


def rss_kib(pid):
    """The resident memory of process pid, in KiB (/proc)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure("no VmRSS for pid %d" % pid)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what):
    """Polls pred() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


# --------------------------------------------------------------- processes

class Process:
    """A child process with its output in a file, stopped by pid."""

    def __init__(self, name, argv, env, logdir):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends sig, waits up to timeout, then SIGKILLs. Returns the exit code."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.dir = os.path.join(workdir, "redis-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.workdir = workdir
        self.proc = None
        self.start()

    def start(self):
        self.proc = Process("redis-%d" % self.port,
                            ["redis-server", "--bind", HOST, "--port", str(self.port),
                             "--dir", self.dir, "--appendonly", "yes",
                             "--appendfsync", "always", "--save", ""],
                            os.environ.copy(), self.workdir)
        wait_until(lambda: self.ping(), 10, "redis-server to answer PING")

    def ping(self):
        if not self.proc.alive():
            raise TestFailure("redis-server died:\n" + self.proc.output()[-2000:])
        return self.cli("PING", check=False) == "PONG"

    def cli(self, *args, check=True):
        r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=10)
        if check and r.returncode != 0:
            raise TestFailure("redis-cli %s failed: %s" % (args, r.stderr))
        return r.stdout.strip()

    def stop(self):
        return self.proc.stop()


SUBSCRIBE_CMD = re.compile(rb"\*\d+\r\n\$9\r\nsubscribe\r\n", re.I)


class Relay:
    """A TCP relay in front of Redis (for a gateway's REDIS_PORT) that can
    hold back what Redis sends to subscribed connections (the gateway's
    subscriber then falls behind on demand, while its writes still go
    through), or to every connection (writes reach Redis, their replies
    wait), or hold a SUBSCRIBE on its way to Redis (a subscriber that lost
    its subscription then stays unsubscribed while writes go through).
    Real Redis on both sides; the relay only forwards bytes."""

    def __init__(self, redis_port):
        self.redis_port = redis_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.cv = threading.Condition()
        self.frozen = False
        self.frozen_all = False
        self.hold_subs = False
        self.held_subs = 0          # SUBSCRIBEs that waited in hold_subscribes
        self.stopping = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            r = socket.create_connection((HOST, self.redis_port))
            conn = {"sub": False}
            with self.cv:
                self.socks += [c, r]
            threading.Thread(target=self._pump, args=(c, r, conn, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(r, c, conn, False), daemon=True).start()

    def _pump(self, src, dst, conn, upstream):
        while True:
            try:
                d = src.recv(65536)
            except OSError:
                d = b""
            if not d:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            # The SUBSCRIBE command itself (RESP), not the word: a script's
            # text, sent by SCRIPT LOAD, may say "subscribers".
            if upstream and SUBSCRIBE_CMD.search(d):
                conn["sub"] = True
                with self.cv:
                    if self.hold_subs:
                        self.held_subs += 1
                        self.cv.wait_for(lambda: not self.hold_subs or self.stopping)
            if not upstream:
                with self.cv:
                    self.cv.wait_for(lambda: not (self.frozen_all or (self.frozen and conn["sub"]))
                                     or self.stopping)
            try:
                dst.sendall(d)
            except OSError:
                return

    def freeze_subscribers(self):
        with self.cv:
            self.frozen = True

    def freeze_replies(self):
        with self.cv:
            self.frozen_all = True

    def hold_subscribes(self):
        with self.cv:
            self.hold_subs = True

    def release_subscribes(self):
        with self.cv:
            self.hold_subs = False
            self.cv.notify_all()

    def thaw(self):
        with self.cv:
            self.frozen = False
            self.frozen_all = False
            self.cv.notify_all()

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
            socks = list(self.socks)
        self.lsock.close()
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


class Gateway:
    def __init__(self, binary, redis, workdir, name, valgrind=False, **env):
        self.name = name
        self.port = free_port()
        e = os.environ.copy()
        e.update({"PORT": str(self.port), "LISTEN_ADDR": HOST, "SERVER_ID": name,
                  "REDIS_HOST": HOST, "REDIS_PORT": str(redis.port),
                  "HEARTBEAT_SECS": "1", "HTTP_THREADS": "4", "LOG_LEVEL": "info",
                  # Suites stop many gateways: no lingering after SIGTERM
                  # but in the tests of the drain itself.
                  "DRAIN_SECS": "0"})
        e.update({k: str(v) for k, v in env.items()})
        argv = [binary]
        self.valgrind = valgrind
        if valgrind:
            argv = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                    "--show-leak-kinds=definite,indirect",
                    "--errors-for-leak-kinds=definite,indirect", "-q"] + argv
        self.proc = Process("%s-%d" % (name, self.port), argv, e, workdir)
        wait_until(self.ready, 60 if valgrind else 15, "%s /health" % name)

    def ready(self):
        if not self.proc.alive():
            raise TestFailure("%s exited early:\n%s" % (self.name, self.proc.output()[-3000:]))
        try:
            st, _, body = http(self.port, "GET", "/health", timeout=2)
            return st == 200 and json.loads(body)["redis"] == "up"
        except OSError:
            return False

    def sanitizer_report(self):
        out = self.proc.output()
        for m in SANITIZER_MARKS:
            if m in out:
                i = out.index(m)
                return out[max(0, i - 200):i + 3000]
        return None

    def stop(self, timeout=10):
        return self.proc.stop(signal.SIGTERM, timeout)


# --------------------------------------------------------------------- HTTP

def http(port, method, path, body=None, headers=None, timeout=10):
    """One request on its own connection. Returns (status, headers, body str).
    body may be a dict (sent as JSON), str or bytes."""
    h = {"Host": "%s:%d" % (HOST, port), "Connection": "close"}
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    if isinstance(body, str):
        body = body.encode()
    if body is not None:
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    req = "%s %s HTTP/1.1\r\n" % (method, path)
    req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(req.encode() + (body or b""))
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    status, hdrs, rest = parse_response(data)
    if hdrs.get("transfer-encoding") == "chunked":
        rest = dechunk_all(rest)
    return status, hdrs, rest.decode("utf-8", "replace")


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(g, headers=None):
    """{sample name with its labels: value}, and the text."""
    st, h, body = http(g.port, "GET", "/metrics", headers=headers)
    eq(st, 200, "GET /metrics status")
    eq(h.get("content-type"), METRICS_CONTENT_TYPE, "Content-Type")
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        m = METRICS_SAMPLE.match(line)
        check(m is not None, "a sample line: %r" % line)
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out, body


def wait_metric(g, name, want, timeout=10):
    wait_until(lambda: scrape(g)[0].get(name, 0) == want, timeout,
               "%s == %s" % (name, want))


def parse_response(data):
    """A raw HTTP response: (status, headers lower-cased, body bytes)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, rest


def dechunk_all(data):
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        n = int(size_line.split(b";")[0], 16)
        if n == 0:
            break
        out += data[:n]
        data = data[n + 2:]
    return out


def post_json(port, path, obj, **kw):
    st, h, body = http(port, "POST", path, obj, **kw)
    try:
        return st, h, json.loads(body)
    except ValueError:
        return st, h, body


def get_json(port, path, **kw):
    st, h, body = http(port, "GET", path, **kw)
    return st, h, json.loads(body)


# ---------------------------------------------------------------------- SSE

class Event:
    def __init__(self, id, event, data):
        self.id, self.event, self.data = id, event, data

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return "Event(id=%r, event=%r, data=%r)" % (self.id, self.event, self.data[:80])


class SSEClient:
    """A streaming GET /events/sse reader: parses status and headers, then
    chunked encoding and SSE fields incrementally."""

    def __init__(self, port, query="", last_event_id=None, timeout=10, headers=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        hdrs = "Host: %s:%d\r\nAccept: text/event-stream\r\n" % (HOST, port)
        if last_event_id is not None:
            hdrs += "Last-Event-ID: %s\r\n" % last_event_id
        hdrs += "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        path = "/events/sse" + ("?" + query if query else "")
        self.sock.sendall(("GET %s HTTP/1.1\r\n%s\r\n" % (path, hdrs)).encode())
        self.raw = b""          # undecoded bytes from the socket
        self.body = b""         # de-chunked body not yet parsed as SSE
        self.text = ""          # every body byte seen, for assertions
        self.events = []
        self.comments = []
        self.retry = None
        self.eof = False        # the server ended the body cleanly
        self.closed = False     # the socket closed
        self._cur = {}
        head = self._read_until(b"\r\n\r\n", timeout)
        lines = head.decode("latin-1").split("\r\n")
        self.head_lines = lines
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        if self.status != 200:
            self.error_body = self._read_rest(timeout)
        else:
            self._decode()      # body bytes that came with the head
            self._parse()

    def _recv(self, timeout):
        self.sock.settimeout(max(0.01, timeout))
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            d = b""
        if not d:
            self.closed = True
        return d

    def _read_until(self, mark, timeout):
        deadline = time.monotonic() + timeout
        while mark not in self.raw:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise TestFailure("no HTTP response head (got %r)" % self.raw[:200])
            d = self._recv(left)
            if d:
                self.raw += d
        head, _, self.raw = self.raw.partition(mark)
        return head

    def _read_rest(self, timeout):
        deadline = time.monotonic() + timeout
        n = int(self.headers.get("content-length", "-1"))
        while not self.closed and time.monotonic() < deadline and (n < 0 or len(self.raw) < n):
            d = self._recv(deadline - time.monotonic())
            if d:
                self.raw += d
        return self.raw.decode("utf-8", "replace")

    def _decode(self):
        if not self.chunked:
            self.body += self.raw
            self.raw = b""
            return
        while True:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            n = int(line.split(b";")[0], 16)
            if n == 0:
                if rest.startswith(b"\r\n"):
                    self.eof = True
                    self.raw = rest[2:]
                return
            if len(rest) < n + 2:
                return
            self.body += rest[:n]
            self.raw = rest[n + 2:]

    def _parse(self):
        while True:
            i = self.body.find(b"\n")
            if i < 0:
                return
            line = self.body[:i].decode("utf-8")
            self.body = self.body[i + 1:]
            self.text += line + "\n"
            if line.endswith("\r"):
                line = line[:-1]
            if line == "":
                if self._cur:
                    c = self._cur
                    self.events.append(Event(c.get("id"), c.get("event", "message"),
                                             "\n".join(c.get("data", []))))
                self._cur = {}
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                k, _, v = line.partition(":")
                if v.startswith(" "):
                    v = v[1:]
                if k == "data":
                    self._cur.setdefault("data", []).append(v)
                elif k == "retry":
                    self.retry = int(v)
                elif k in ("id", "event"):
                    self._cur[k] = v

    def pump(self, timeout):
        """Reads whatever arrives within timeout seconds."""
        d = self._recv(timeout)
        if d:
            self.raw += d
            self._decode()
            self._parse()

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("timed out after %.1fs waiting for %s; have %d events %r, comments %r"
                                  % (timeout, what, len(self.events), self.events[-5:], self.comments[-3:]))
            if self.closed and not self.raw:
                raise TestFailure("stream closed while waiting for %s; events %r" % (what, self.events[-5:]))
            self.pump(min(left, 0.5))

    def wait_events(self, n, timeout=10):
        self.wait(lambda c: len(c.events) >= n, timeout, "%d events" % n)
        return self.events[:n]

    def wait_eof(self, timeout=10):
        self.wait(lambda c: c.eof or c.closed, timeout, "end of stream")

    def idle(self, seconds):
        """Reads for `seconds` (for "nothing more arrives" checks)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            self.pump(deadline - time.monotonic())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ids_of(events):
    return [e.id for e in events]


def id_key(i):
    ms, _, seq = i.partition("-")
    return (int(ms), int(seq or 0))


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="ssegate-it-")

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


class GatewaysEnv:
    """A suite environment: one Redis, and the gateways each test starts
    (gateway()); close() stops them all, then Redis (thawed first, in case
    a test left it SIGSTOPped). Suites subclass it for their helpers."""

    def __init__(self, binary):
        self.binary = binary
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        self.extra = []

    def gateways(self):
        return list(self.extra)

    def gateway(self, name, redis=None, **env):
        g = Gateway(self.binary, redis or self.redis, self.work.path, name, False, **env)
        self.extra.append(g)
        return g

    def close(self):
        codes = {}
        for g in self.gateways():
            codes[g.name] = g.stop()
        self.redis.proc.proc.send_signal(signal.SIGCONT)
        self.redis.stop()
        return codes


def run_suite(tests, make_env, what="start redis-server and the gateways", suffix="",
              ignore=()):
    """The TAP main of a suite that starts gateways: `-k substr` picks
    tests; make_env() builds the environment (it has .work, .gateways()
    and .close() -> {name: exit code}); each test runs as t(env) and then
    must leave no sanitizer report; a last case checks every gateway exited
    0 on SIGTERM with no report (but the gateways named in ignore, which
    a test stopped on purpose). Logs are kept when anything failed.
    Returns the exit status."""
    import traceback
    if "-k" in sys.argv:
        k = sys.argv[sys.argv.index("-k") + 1]
        tests = [t for t in tests if k in t.__name__]
    print("1..%d" % (len(tests) + 1))
    sys.stdout.flush()
    failed = 0
    try:
        env = make_env()
    except Exception as e:
        for i, t in enumerate(tests, 1):
            print("not ok %d - %s # not run" % (i, t.__name__))
        print("not ok %d - %s\n# %s" % (len(tests) + 1, what, e))
        return 1
    n = 0
    for t in tests:
        n += 1
        t0 = time.monotonic()
        try:
            t(env)
            for g in env.gateways():
                rep = g.sanitizer_report()
                if rep:
                    raise TestFailure("sanitizer report from %s:\n%s" % (g.name, rep))
            print("ok %d - %s (%.1fs)" % (n, t.__name__, time.monotonic() - t0))
        except Exception as e:
            failed += 1
            print("not ok %d - %s" % (n, t.__name__))
            for line in ("%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc())).splitlines():
                print("# " + line)
        sys.stdout.flush()
    codes = env.close()
    bad = {k: v for k, v in codes.items() if v != 0 and k not in ignore}
    rep = None
    for g in env.gateways():
        rep = rep or g.sanitizer_report()
    if bad or rep:
        failed += 1
        print("not ok %d - clean exit of every gateway: %r %s" % (n + 1, bad, rep or ""))
    else:
        print("ok %d - clean exit of every gateway (SIGTERM -> 0%s)" % (n + 1, suffix))
    if failed == 0:
        env.work.cleanup()
    else:
        print("# logs kept in %s" % env.work.path)
    return 1 if failed else 0
