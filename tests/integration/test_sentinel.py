#!/usr/bin/env python3
"""Integration tests: Redis high availability (issue #16).

- The settings: REDIS_SENTINELS with REDIS_HOST (or REDIS_PORT), a bad
  sentinel list, a bad REDIS_WAIT_REPLICAS: exit 2 and one line.
- REDIS_WAIT_REPLICAS=1 with no replica: a write is answered
  503 replication_timeout, and it is on the master; retried with the same
  Idempotency-Key once a replica is there, it gets its 202 and is still in
  history once.
- Failover: a master, two replicas, three redis-sentinels, two gateways
  that find the master through the sentinels (REDIS_WAIT_REPLICAS=1),
  streams open on both and events posted all along; the master is
  SIGKILLed, the sentinels promote a replica, and every event that got a
  2xx, before and after, reaches every stream exactly once, with its id;
  writes during the switch are refused (503), none is answered 2xx and
  lost. Prints how long writes were refused and how long until streams
  were live again.
- Switchover: SENTINEL FAILOVER with the old master alive (demoted, not
  killed): both gateways leave it for the new master (lookup, pipelines,
  subscription), and writes there reach every stream exactly once.

Real processes on 127.0.0.1, each stopped by its pid. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_sentinel.py [-k substr]
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatewaysEnv, HOST, Process, Redis, SSEClient, TestFailure,  # noqa: E402
                     check, eq, free_port, id_key, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")

MASTER = "mymaster"
TIMEOUT_MS = 500            # REDIS_TIMEOUT_MS: also WAIT's timeout
WAIT_TIMEOUT_MS = 1000      # test_wait_without_replica's
DOWN_AFTER_MS = 1000        # the sentinels' down-after-milliseconds
FAILOVER_DEADLINE_S = 20    # kill -> a write answered 2xx again
WRITE_EVERY_S = 0.01        # the writer's pace (about 100 events/s)
BEFORE_KILL = 30            # 2xx writes before the kill
AFTER_FAILOVER = 30         # 2xx writes after the first one past the failover


def sentinel_available():
    return shutil.which("redis-sentinel") is not None or shutil.which("redis-server") is not None


class Sentinel:
    """A redis-sentinel on its own port and writable config file, watching
    the master at master_port."""

    def __init__(self, workdir, master_port):
        self.port = free_port()
        self.dir = os.path.join(workdir, "sentinel-%d" % self.port)
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind %s\ndaemonize no\ndir %s\n"
                    "sentinel monitor %s %s %d 2\n"
                    "sentinel down-after-milliseconds %s %d\n"
                    "sentinel failover-timeout %s 10000\n"
                    "sentinel parallel-syncs %s 2\n"
                    % (self.port, HOST, self.dir, MASTER, HOST, master_port,
                       MASTER, DOWN_AFTER_MS, MASTER, MASTER))
        binary = shutil.which("redis-sentinel")
        argv = [binary, conf] if binary else ["redis-server", conf, "--sentinel"]
        self.proc = Process("sentinel-%d" % self.port, argv, os.environ.copy(), workdir)
        wait_until(lambda: self.cli("PING") == "PONG", 10, "redis-sentinel to answer PING")

    def cli(self, *args):
        if not self.proc.alive():
            raise TestFailure("redis-sentinel died:\n" + self.proc.output()[-2000:])
        r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def master_info(self):
        """SENTINEL master <name> as a dict."""
        lines = self.cli("SENTINEL", "master", MASTER).splitlines()
        return dict(zip(lines[0::2], lines[1::2]))

    def master_port(self):
        lines = self.cli("SENTINEL", "get-master-addr-by-name", MASTER).splitlines()
        return int(lines[1]) if len(lines) == 2 else None

    def stop(self):
        return self.proc.stop()


class Env(GatewaysEnv):
    def __init__(self):
        super().__init__(BIN)

    def sentinel_gateway(self, name, sentinels, **env):
        """A gateway that asks the sentinels for the master: REDIS_HOST and
        REDIS_PORT empty (unset), as the two exclude each other."""
        return self.gateway(name, REDIS_HOST="", REDIS_PORT="",
                            REDIS_SENTINELS=",".join("%s:%d" % (HOST, s.port) for s in sentinels),
                            REDIS_MASTER_NAME=MASTER, REDIS_TIMEOUT_MS=TIMEOUT_MS, **env)

    def drop(self, g):
        code = g.stop()
        self.extra.remove(g)
        return code


def replica_of(workdir, master):
    # Redis 7 waits 5 s for more replicas before a diskless full sync.
    master.cli("CONFIG", "SET", "repl-diskless-sync-delay", "0")
    r = Redis(workdir)
    # No AOF: a replica writing its first AOF after a sync refuses SIGTERM
    # (and nothing here needs its disk).
    r.cli("CONFIG", "SET", "appendonly", "no")
    r.cli("REPLICAOF", HOST, str(master.port))
    # Online on the master's side: after a diskless sync it counts the
    # replica (WAIT included) only from the replica's first REPLCONF ACK.
    wait_until(lambda: "port=%d,state=online" % r.port in master.cli("INFO", "replication"),
               10, "replica %d online at its master" % r.port)
    return r


def run_config(env_extra, argv=()):
    """Starts the binary with env_extra over a clean environment; returns
    (exit code, stderr)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SSEGATE_"))}
    e.update(env_extra)
    r = subprocess.run([BIN] + list(argv), env=e, capture_output=True, text=True, timeout=10)
    return r.returncode, r.stderr


# ------------------------------------------------------------------ settings

def test_config_errors(env):
    cases = [
        ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_HOST": "10.0.0.1"}, (),
         "REDIS_SENTINELS and REDIS_HOST are both set"),
        ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_PORT": "6380"}, (),
         "REDIS_SENTINELS and REDIS_PORT are both set"),
        ({"REDIS_SENTINELS": "127.0.0.1:26379"}, ("--redis-host", "10.0.0.1"),
         "REDIS_SENTINELS and REDIS_HOST are both set"),
        ({"REDIS_SENTINELS": "127.0.0.1"}, (),
         "REDIS_SENTINELS: sentinel 1 is not host:port"),
        ({"REDIS_SENTINELS": "a:1,b:0"}, (),
         "REDIS_SENTINELS: sentinel 2: port is not a number in 1..65535"),
        ({"REDIS_SENTINELS": "a:1,"}, (), "REDIS_SENTINELS: a trailing comma"),
        ({"REDIS_SENTINELS": ",".join("h%d:1" % i for i in range(9))}, (),
         "REDIS_SENTINELS: more than 8 sentinels"),
        ({"REDIS_WAIT_REPLICAS": "x"}, (), "REDIS_WAIT_REPLICAS: 'x' is not a number in 0..64"),
        ({"REDIS_WAIT_REPLICAS": "65"}, (), "REDIS_WAIT_REPLICAS: '65' is out of range 0..64"),
        ({"REDIS_SENTINELS": "127.0.0.1:1", "REDIS_MASTER_NAME": ""}, ("--redis-master-name=",),
         "--redis-master-name: must not be empty"),
    ]
    for extra, argv, want in cases:
        code, err = run_config(dict(extra, PORT="1"), argv)
        eq(code, 2, "exit code for %r %r" % (extra, argv))
        lines = err.strip().splitlines()
        eq(len(lines), 1, "one line for %r: %r" % (extra, err))
        check(want in lines[0], "%r in %r" % (want, lines[0]))
    # Empty is unset (compose files): REDIS_HOST="" with sentinels is fine,
    # and --help still works with both set.
    code, out = run_config({"REDIS_SENTINELS": "127.0.0.1:1", "REDIS_HOST": "x"}, ("--help",))
    eq(code, 0, "--help exit code")


# ---------------------------------------------------------------------- WAIT

def history_ids(redis, user):
    out = redis.cli("XRANGE", "ssegate:history:" + user, "-", "+")
    return [line for line in out.splitlines() if "-" in line and line[0].isdigit()
            and line.replace("-", "").isdigit()]


def test_wait_without_replica(env):
    """No replica: the write is done on the master and refused 503; once a
    replica is attached, the retry with the same key gets the first try's
    answer and nothing is written twice."""
    # 1 s: a replica's acknowledgement must come in time on a busy machine.
    g = env.gateway("wait", REDIS_WAIT_REPLICAS=1, REDIS_TIMEOUT_MS=WAIT_TIMEOUT_MS)
    replica = None
    try:
        st, _, acct = post_json(g.port, "/accounts", {"name": "Wait"})
        eq(st, 503, "account creation without a replica")
        eq(acct["error"], "replication_timeout", "error code")
        check("Idempotency-Key" in acct["message"], "the message says what to do: %r" % acct)
        # Plain commands do not wait: find the account by its id counter.
        uid = env.redis.cli("GET", "ssegate:account:seq")
        eq(env.redis.cli("HGET", "ssegate:account:" + uid, "name"), "Wait", "account on the master")
        key = str(uuid.uuid4())
        ev = {"userId": uid, "type": "waited", "data": {"n": 1}}
        t0 = time.monotonic()
        st, _, body = post_json(g.port, "/events", ev, headers={"Idempotency-Key": key})
        took = time.monotonic() - t0
        eq((st, body.get("error")), (503, "replication_timeout"), "event without a replica")
        check(took >= WAIT_TIMEOUT_MS / 1000.0 * 0.9, "WAIT waited REDIS_TIMEOUT_MS: %.3fs" % took)
        before = history_ids(env.redis, uid)
        eq(len(before), 3, "account.created, snapshot and the event in history")
        replica = replica_of(env.work.path, env.redis)
        st, _, body = post_json(g.port, "/events", ev, headers={"Idempotency-Key": key})
        eq(st, 202, "the retry with a replica attached: %r" % body)
        eq(body["id"], before[-1], "the retry answers the first try's id")
        eq(history_ids(env.redis, uid), before, "nothing written twice")
        st, _, body = post_json(g.port, "/events", dict(ev, data={"n": 2}))
        eq(st, 202, "a new write with a replica: %r" % body)
        eq(history_ids(replica, uid)[-1], body["id"], "acknowledged by the replica")
    finally:
        env.drop(g)
        if replica is not None:
            replica.stop()
            shutil.rmtree(replica.dir, ignore_errors=True)
        env.redis.cli("FLUSHALL")


# ------------------------------------------------------------------ failover

class Writer(threading.Thread):
    """Posts events to user uid, alternating gateways, about one every
    WRITE_EVERY_S, each with its own Idempotency-Key and its seq in data,
    until stop(). Records (seq, status, id or error code, time answered)."""

    def __init__(self, gateways, uid):
        super().__init__(daemon=True)
        self.gateways, self.uid = gateways, uid
        self.results = []
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self):
        seq = 0
        next_at = time.monotonic()
        while not self.halt.is_set():
            g = self.gateways[seq % len(self.gateways)]
            try:
                st, _, body = post_json(g.port, "/events",
                                        {"userId": self.uid, "type": "tick", "data": {"seq": seq}},
                                        headers={"Idempotency-Key": "tick-%d" % seq}, timeout=5)
                what = body["id"] if st == 202 else body.get("error") if isinstance(body, dict) else body
            except (OSError, ValueError) as e:
                st, what = 0, repr(e)
            with self.lock:
                self.results.append((seq, st, what, time.monotonic()))
            seq += 1
            # Pacing, not synchronisation: the writer only sets the load.
            next_at += WRITE_EVERY_S
            self.halt.wait(max(0.0, next_at - time.monotonic()))

    def snapshot(self):
        with self.lock:
            return list(self.results)

    def stop(self):
        self.halt.set()
        self.join(10)


def pump_all(streams, until, timeout, what):
    """Reads every stream until until() is true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout, what))
        for s in streams:
            if s.closed:
                raise TestFailure("a stream closed: %r" % s.events[-3:])
            s.pump(0.005)


def ticks(stream):
    """[(id, seq)] of a stream's tick events, in arrival order."""
    return [(e.id, e.json()["data"]["seq"]) for e in stream.events if e.event == "tick"]


def ha_cluster(work, procs):
    """A master, two replicas and three sentinels that see them all (and
    each other); every process is appended to procs as it starts."""
    master = Redis(work)
    procs.append(master)
    master.cli("CONFIG", "SET", "appendfsync", "everysec")
    replicas = []
    for _ in range(2):
        replicas.append(replica_of(work, master))
        procs.append(replicas[-1])
    sentinels = []
    for _ in range(3):
        sentinels.append(Sentinel(work, master.port))
        procs.append(sentinels[-1])
    wait_until(lambda: all(s.master_info().get("num-slaves") == "2" and
                           s.master_info().get("num-other-sentinels") == "2"
                           for s in sentinels), 20,
               "every sentinel to see 2 replicas and 2 other sentinels")
    return master, replicas, sentinels


def stop_all(env, streams, procs):
    for s in streams:
        s.close()
    for g in list(env.extra):
        env.drop(g)
    for p in procs:
        if p.proc.alive():
            p.proc.proc.send_signal(signal.SIGCONT)
        p.stop()


def test_failover(env):
    work = env.work.path
    procs = []
    streams = []
    writer = None
    try:
        master, replicas, sentinels = ha_cluster(work, procs)
        gws = [env.sentinel_gateway("ha-%d" % i, sentinels, REDIS_WAIT_REPLICAS=1)
               for i in range(2)]
        st, _, acct = post_json(gws[0].port, "/accounts", {"name": "HA"})
        eq(st, 201, "account creation through the sentinels' master: %r" % acct)
        uid = acct["id"]
        for g in gws:
            for _ in range(2):
                s = SSEClient(g.port, "userId=" + uid)
                eq(s.status, 200, "stream status")
                streams.append(s)
        # A stream's head comes once it is indexed: every event published
        # from now on is its to get.
        writer = Writer(gws, uid)
        writer.start()
        pump_all(streams, lambda: sum(1 for r in writer.snapshot() if r[1] == 202) >= BEFORE_KILL,
                 10, "%d writes answered 202 before the kill" % BEFORE_KILL)
        t_kill = time.monotonic()
        os.kill(master.proc.pid, signal.SIGKILL)
        master.proc.proc.wait(5)

        def after_kill():
            return [r for r in writer.snapshot() if r[3] > t_kill]

        def first_ok_after_refusal():
            rs = after_kill()
            refused = [i for i, r in enumerate(rs) if r[1] != 202]
            if not refused:
                return None
            oks = [r for r in rs[refused[0]:] if r[1] == 202]
            return oks[0] if oks else None

        pump_all(streams, lambda: first_ok_after_refusal() is not None, FAILOVER_DEADLINE_S,
                 "a write answered 202 after the failover")
        back = first_ok_after_refusal()
        pump_all(streams, lambda: sum(1 for r in writer.snapshot()
                                      if r[1] == 202 and r[0] > back[0]) >= AFTER_FAILOVER,
                 15, "%d writes answered 202 after the failover" % AFTER_FAILOVER)
        writer.stop()
        results = writer.snapshot()
        ok = {r[0]: r[2] for r in results if r[1] == 202}
        refused = [r for r in results if r[1] != 202]
        ok_ids = sorted(ok.values(), key=id_key)
        eq(len(set(ok_ids)), len(ok_ids), "2xx ids are distinct")
        # Every stream gets every 2xx event.
        pump_all(streams, lambda: all(set(ok_ids) <= {i for i, _ in ticks(s)} for s in streams),
                 15, "every 2xx event on every stream")
        for s in streams:
            s.idle(0.3)
        new_port = sentinels[0].master_port()
        check(new_port in [r.port for r in replicas], "a replica was promoted: %r" % new_port)
        new_master = [r for r in replicas if r.port == new_port][0]
        hist = set(history_ids(new_master, uid))
        for n, s in enumerate(streams):
            got = ticks(s)
            ids = [i for i, _ in got]
            eq(len(set(ids)), len(ids), "stream %d: no event twice" % n)
            eq([i for i in ids if i in set(ok_ids)], ok_ids,
               "stream %d: every 2xx event exactly once, in id order" % n)
            for i, seq in got:
                if seq in ok:
                    eq(i, ok[seq], "stream %d: seq %d has its 2xx id" % (n, seq))
                else:
                    # Refused (503) and shown live before the master died:
                    # written there, maybe lost. Never a write nobody made.
                    check(seq in {r[0] for r in refused},
                          "stream %d: seq %d was neither 2xx nor refused" % (n, seq))
        check(set(ok_ids) <= hist, "every 2xx event is in the new master's history")
        # The switch: writes were refused, not left hanging or lost.
        check(len(refused) > 0, "some writes were refused during the switch")
        codes = sorted({r[2] for r in refused})
        # overloaded: the pipelines reached the new master before the
        # subscription did, and the publish backlog filled (nothing written).
        for r in refused:
            check(r[1] == 503 and r[2] in ("redis_unavailable", "replication_timeout",
                                           "overloaded"),
                  "a refusal is 503 redis_unavailable, replication_timeout or "
                  "overloaded: %r" % (r,))
        t_first_refused = min(r[3] for r in refused)
        t_last_refused = max(r[3] for r in refused)
        # When the first write after the failover reached every stream.
        for s in streams:
            s_ids = [e.id for e in s.events]
            check(back[2] in s_ids, "the first write after the failover on every stream")
        print("# %d writes answered 202, %d refused (%s); %d before the kill"
              % (len(ok), len(refused), ", ".join(codes),
                 sum(1 for r in results if r[1] == 202 and r[3] <= t_kill)))
        print("# writes refused for %.2fs (first refusal %.2fs after the kill, last %.2fs)"
              % (t_last_refused - t_first_refused, t_first_refused - t_kill,
                 t_last_refused - t_kill))
        print("# first 202 after the kill: %.2fs after it (master now %d)"
              % (back[3] - t_kill, new_port))
        live = stream_live_time(streams, back[2])
        print("# streams live again (that event on all %d streams): %.2fs after the kill"
              % (len(streams), live - t_kill))
    finally:
        if writer is not None:
            writer.stop()
        stop_all(env, streams, procs)


def post_until_2xx(g, uid, seq, deadline_s):
    """Posts tick seq, retrying 503s with the same Idempotency-Key (safe:
    at most one write) until a 202 or the deadline. Returns (id, tries)."""
    deadline = time.monotonic() + deadline_s
    tries = 0
    while True:
        tries += 1
        st, _, body = post_json(g.port, "/events",
                                {"userId": uid, "type": "tick", "data": {"seq": seq}},
                                headers={"Idempotency-Key": "switch-%d" % seq})
        if st == 202:
            return body["id"], tries
        check(st == 503 and body["error"] in ("redis_unavailable", "replication_timeout"),
              "only a 503 while the master moves: %r %r" % (st, body))
        if time.monotonic() > deadline:
            raise TestFailure("tick %d: no 202 within %ds: %r" % (seq, deadline_s, body))
        # A retry's pace, not synchronisation: each try is a real request.
        time.sleep(0.05)


def test_switchover(env):
    """SENTINEL FAILOVER with the old master alive (demoted, not killed):
    connections to it must not stay (its writes would answer READONLY, its
    subscription would hear the new master only through replication). The
    gateways move to the new master, and writes there reach every stream
    exactly once."""
    work = env.work.path
    procs = []
    streams = []
    try:
        master, replicas, sentinels = ha_cluster(work, procs)
        gws = [env.sentinel_gateway("sw-%d" % i, sentinels, REDIS_WAIT_REPLICAS=1)
               for i in range(2)]
        st, _, acct = post_json(gws[0].port, "/accounts", {"name": "Switch"})
        eq(st, 201, "account creation: %r" % acct)
        uid = acct["id"]
        for g in gws:
            s = SSEClient(g.port, "userId=" + uid)
            eq(s.status, 200, "stream status")
            streams.append(s)
        before = [post_until_2xx(gws[i % 2], uid, i, 5)[0] for i in range(10)]
        eq(sentinels[0].cli("SENTINEL", "FAILOVER", MASTER), "OK", "SENTINEL FAILOVER")
        t0 = time.monotonic()
        wait_until(lambda: sentinels[0].master_port() != master.port, 15,
                   "the sentinels to name a new master")
        new_port = sentinels[0].master_port()
        new_master = [r for r in replicas if r.port == new_port][0]
        # Both gateways move: the lookup names the new master, and the
        # subscription leaves the old one for it.
        wait_until(lambda: all(("redis: subscribed to ssegate:events and user-events at %s:%d"
                                % (HOST, new_port)) in g.proc.output() for g in gws), 10,
                   "both gateways to subscribe at the new master")
        t_follow = time.monotonic() - t0
        # The old master is demoted and stays up.
        wait_until(lambda: "role:slave" in master.cli("INFO", "replication"), 20,
                   "the old master to become a replica")
        after = [post_until_2xx(gws[i % 2], uid, i, 10) for i in range(10, 30)]
        took = time.monotonic() - t0
        ids = before + [i for i, _ in after]
        eq(len(set(ids)), len(ids), "distinct ids")
        hist = history_ids(new_master, uid)
        check(set(ids) <= set(hist), "every 202 write in the new master's history")
        pump_all(streams, lambda: all(set(ids) <= {i for i, _ in ticks(s)} for s in streams),
                 10, "every 202 write on every stream")
        for s in streams:
            s.idle(0.3)
        for n, s in enumerate(streams):
            eq([i for i, _ in ticks(s) if i in set(ids)], sorted(ids, key=id_key),
               "stream %d: every 202 write exactly once, in id order" % n)
            eq(len({i for i, _ in ticks(s)}), len(ticks(s)), "stream %d: nothing twice" % n)
        print("# switchover: both gateways subscribed at the new master %.2fs after "
              "SENTINEL FAILOVER; 20 writes answered 202 there by %.2fs (%d tries)"
              % (t_follow, took, sum(t for _, t in after)))
    finally:
        stop_all(env, streams, procs)


def stream_live_time(streams, event_id):
    """The latest arrival, over the streams, of event_id (recorded by
    TimedSSE)."""
    return max(s.arrived[event_id] for s in streams)


# SSEClient with each event's arrival time, for the "live again" figure.
class TimedSSE(SSEClient):
    def _parse(self):
        n = len(self.events)
        super()._parse()
        now = time.monotonic()
        if not hasattr(self, "arrived"):
            self.arrived = {}
        for e in self.events[n:]:
            self.arrived.setdefault(e.id, now)


SSEClient = TimedSSE  # noqa: F811  (the suite's streams record arrival times)

TESTS = [test_config_errors, test_wait_without_replica, test_failover, test_switchover]


if __name__ == "__main__":
    if not sentinel_available():
        print("1..0 # SKIP redis-sentinel is not installed (scripts/deps)")
        sys.exit(0)
    sys.exit(run_suite(TESTS, Env))
