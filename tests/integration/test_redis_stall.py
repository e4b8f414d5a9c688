#!/usr/bin/env python3
"""Integration tests: an HTTP thread never waits on Redis or on publish
backpressure, /health tells the truth about a frozen Redis, and no write
is applied twice. A real redis-server, frozen with SIGSTOP (by its pid);
one gateway with HTTP_THREADS=1, so every request shares one thread.
Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_redis_stall.py [-k substr]
"""
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatewaysEnv, Gateway, Redis, Relay, SSEClient,  # noqa: E402
                     Workdir, check, eq, get_json, http, post_json, wait_until, run_suite)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")

TIMEOUT_MS = 800            # REDIS_TIMEOUT_MS of the stalled gateway
PING_MS = 1000              # the pipeline's PING interval (pipeline.c)
HEALTH_MAX_S = 0.100        # /health must answer within this, Redis frozen or not


class Env(GatewaysEnv):
    """One Redis; the gateways each test starts."""

    def __init__(self):
        super().__init__(BIN)


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return time.monotonic() - t0, r


def health(port):
    st, _, body = http(port, "GET", "/health", timeout=5)
    return st, json.loads(body)["redis"]


def history(env, uid):
    """[(type, data)] of uid's history, oldest first, read from Redis."""
    raw = env.redis.cli("XRANGE", "ssegate:history:" + uid, "-", "+")
    lines = raw.splitlines()
    got = []
    for i, line in enumerate(lines):
        if line == "e" and i + 1 < len(lines):
            env_ = json.loads(lines[i + 1])
            got.append((env_["type"], env_["data"]))
    return got


def in_flight(port, method, path, body, results, key):
    """Sends one request on its own thread; stores (seconds, status, body)."""
    def run():
        t0 = time.monotonic()
        try:
            st, _, b = http(port, method, path, body, timeout=10)
            results[key] = (time.monotonic() - t0, st, b)
        except Exception as e:      # reported by the test's own checks
            results[key] = (time.monotonic() - t0, None, repr(e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------- tests

def test_health_while_redis_frozen(env):
    """Redis frozen (SIGSTOP) for 3 s under HTTP_THREADS=1: /health keeps
    answering within 100 ms and turns 503 down once REDIS_TIMEOUT_MS plus
    the PING interval passed; an account read, an account creation and a
    snapshot in flight on the same thread do not delay it and each get 503
    redis_unavailable at their deadline; after SIGCONT everything answers
    normally, and no write was applied twice."""
    g = env.gateway("stall", HTTP_THREADS=1, REDIS_TIMEOUT_MS=TIMEOUT_MS)
    st, _, acct = post_json(g.port, "/accounts", {"name": "Ada", "balance": 5})
    eq(st, 201, "POST /accounts before the stall")
    uid = acct["id"]
    eq(health(g.port), (200, "up"), "health before the stall")
    before = history(env, uid)
    eq([t for t, _ in before], ["account.created", "snapshot"], "history before")

    env.redis.proc.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    results = {}
    threads = [
        in_flight(g.port, "GET", "/accounts/" + uid, None, results, "get"),
        in_flight(g.port, "POST", "/accounts", {"name": "Stalled"}, results, "create"),
        in_flight(g.port, "POST", "/accounts/%s/snapshots" % uid, {"balance": 7},
                  results, "snapshot"),
    ]
    samples = []
    try:
        while time.monotonic() - t0 < 3.0:
            dt, (st, redis) = timed(health, g.port)
            samples.append((time.monotonic() - t0, dt, st, redis))
            time.sleep(0.1)
    finally:
        env.redis.proc.proc.send_signal(signal.SIGCONT)
    for t in threads:
        t.join(10)

    slow = [s for s in samples if s[1] > HEALTH_MAX_S]
    eq(slow, [], "every /health within %d ms while Redis is frozen "
       "(t, seconds, status, redis)" % (HEALTH_MAX_S * 1000))
    eq(samples[0][2:], (200, "up"), "health just after the freeze")
    late = [s for s in samples if s[0] >= (TIMEOUT_MS + PING_MS) / 1000.0 + 0.4]
    check(len(late) >= 3, "health sampled after the deadline: %r" % samples)
    eq([s[2:] for s in late], [(503, "down")] * len(late),
       "health once the last reply is older than REDIS_TIMEOUT_MS + 1 s")

    for key in ("get", "create", "snapshot"):
        secs, st, body = results[key]
        eq((st, json.loads(body)["error"]), (503, "redis_unavailable"),
           "%s in flight while Redis is frozen" % key)
        check(secs < TIMEOUT_MS / 1000.0 + 1.0,
              "%s answered at its deadline, not later: %.2fs" % (key, secs))

    # Redis is back: everything answers normally.
    wait_until(lambda: health(g.port) == (200, "up"), 5, "health up after SIGCONT")
    # The stalled snapshot may or may not have run (Redis read it after
    # SIGCONT from the connection the gateway gave up on): at most once.
    mid = history(env, uid)
    eq(mid[:2], before, "history before the stall unchanged")
    stalled = [d for t, d in mid[2:] if t == "snapshot" and d["balance"] == 7]
    eq(mid[2:], [("snapshot", d) for d in stalled], "nothing but the stalled snapshot")
    check(len(stalled) <= 1, "the stalled snapshot applied at most once: %r" % mid)
    st, _, got = get_json(g.port, "/accounts/" + uid)
    eq((st, got), (200, dict(acct, balance=7 if stalled else 5)),
       "GET /accounts/ID after the stall")
    st, _, acct2 = post_json(g.port, "/accounts", {"name": "After", "balance": 2})
    eq(st, 201, "POST /accounts after the stall")
    eq((acct2["name"], acct2["balance"]), ("After", 2), "the new account")
    eq(get_json(g.port, "/accounts/" + acct2["id"])[2], acct2, "it reads back")
    st, _, snap = post_json(g.port, "/accounts/%s/snapshots" % uid, {"balance": 9})
    eq((st, snap["accountId"], snap["balance"]), (201, uid, 9), "snapshot after the stall")

    # Nothing twice: the stalled creation never got past its id (INCR),
    # so no account "Stalled" exists.
    after = history(env, uid)
    eq(after[:len(mid)], mid, "history unchanged")
    eq([(t, d["balance"]) for t, d in after[len(mid):]], [("snapshot", 9)],
       "the snapshot after the stall, once")
    fire = env.redis.cli("XRANGE", "ssegate:history", "-", "+").splitlines()
    names = [json.loads(fire[i + 1])["data"].get("name") for i, line in enumerate(fire)
             if line == "e" and json.loads(fire[i + 1])["type"] == "account.created"]
    eq(names.count("Stalled"), 0, "the stalled account creation wrote nothing")
    eq(names.count("After"), 1, "the account created after the stall, once")


def test_publish_wait_holds_no_thread(env):
    """A publish waiting for room in the backlog (PUBLISH_BACKLOG reached,
    the subscriber frozen) is suspended, not its thread: /health and a
    GET on the same (only) HTTP thread answer at once; the waiting
    publish is accepted as soon as room comes, and one that finds none
    gets 503 overloaded at PUBLISH_WAIT_MS."""
    relay = Relay(env.redis.port)
    try:
        g = env.gateway("stall-bp", redis=relay, HTTP_THREADS=1, PUBLISH_BACKLOG=1,
                        PUBLISH_WAIT_MS=2000)
        st, _, acct = post_json(g.port, "/accounts", {"name": "Bo"})
        eq(st, 201, "POST /accounts")
        uid = acct["id"]
        s = SSEClient(g.port, "userId=" + uid)
        eq(s.status, 200, "stream status")
        # x0 through the subscriber: the backlog is empty once it shows
        # (and a publish that came a moment earlier is woken by the hook).
        eq(post_json(g.port, "/events", {"userId": uid, "type": "x0"})[0], 202, "x0")
        s.wait_events(1, 5)
        relay.freeze_subscribers()
        st, _, _ = post_json(g.port, "/events", {"userId": uid, "type": "x1"})
        eq(st, 202, "the publish that fills the backlog")
        results = {}
        w = in_flight(g.port, "POST", "/events", {"userId": uid, "type": "waited"},
                      results, "waited")
        time.sleep(0.2)
        check("waited" not in results, "the publish waits for room: %r" % results)
        for _ in range(5):
            dt, h = timed(health, g.port)
            eq(h, (200, "up"), "health while a publish waits")
            check(dt < HEALTH_MAX_S, "health within 100 ms while a publish waits: %.3fs" % dt)
            dt, (st, _, got) = timed(get_json, g.port, "/accounts/" + uid)
            eq((st, got), (200, acct), "GET /accounts/ID while a publish waits")
            check(dt < HEALTH_MAX_S, "GET within 100 ms while a publish waits: %.3fs" % dt)
            time.sleep(0.05)
        check("waited" not in results, "still waiting: %r" % results)
        t_thaw = time.monotonic()
        relay.thaw()
        w.join(5)
        secs, st, body = results["waited"]
        eq(st, 202, "the waiting publish is accepted once room comes (%r)" % body)
        check(time.monotonic() - t_thaw < 1.0, "accepted promptly after the thaw")
        check(secs < 2.0, "accepted before PUBLISH_WAIT_MS: %.2fs" % secs)
        got = s.wait_events(3, 5)
        eq([e.event for e in got], ["x0", "x1", "waited"], "delivered in order")
        eq(got[2].id, json.loads(body)["id"], "the waited publish's id")
        # Now fill the backlog again and let a publish run out of time.
        relay.freeze_subscribers()
        st, _, _ = post_json(g.port, "/events", {"userId": uid, "type": "x2"})
        eq(st, 202, "the publish that fills the backlog again")
        dt, (st, h, body) = timed(post_json, g.port, "/events",
                                  {"userId": uid, "type": "refused"})
        eq((st, body["error"], h.get("retry-after")), (503, "overloaded", "1"),
           "no room within PUBLISH_WAIT_MS")
        check(1.9 <= dt < 3.0, "refused at PUBLISH_WAIT_MS: %.2fs" % dt)
        relay.thaw()
        got = s.wait_events(4, 5)
        eq([e.event for e in got], ["x0", "x1", "waited", "x2"], "x2 delivered")
        s.idle(0.3)
        eq(len(s.events), 4, "the refused publish was never delivered")
        s.close()
    finally:
        relay.stop()


def firehose(env):
    """[(type, data)] of the firehose history, oldest first."""
    lines = env.redis.cli("XRANGE", "ssegate:history", "-", "+").splitlines()
    return [(json.loads(lines[i + 1])["type"], json.loads(lines[i + 1])["data"])
            for i, line in enumerate(lines) if line == "e" and i + 1 < len(lines)]


def test_no_write_applied_twice(env):
    """Redis frozen for a little longer than REDIS_TIMEOUT_MS, several
    times, each time with a snapshot and an account creation in flight:
    each is answered 201 or 503 redis_unavailable (never 500), and each is
    in history at most once, exactly once if it was answered 201. (A write
    re-sent on a fresh connection after its timeout ran twice once Redis
    woke: duplicate snapshots, and 500 for accounts that exist.)"""
    timeout_ms = 300
    g = env.gateway("stall-twice", HTTP_THREADS=1, REDIS_TIMEOUT_MS=timeout_ms)
    st, _, acct = post_json(g.port, "/accounts", {"name": "Cy"})
    eq(st, 201, "POST /accounts")
    uid = acct["id"]
    answers = []
    for i in range(4):
        wait_until(lambda: health(g.port) == (200, "up"), 5, "health up before round %d" % i)
        results = {}
        env.redis.proc.proc.send_signal(signal.SIGSTOP)
        try:
            threads = [
                in_flight(g.port, "POST", "/accounts/%s/snapshots" % uid,
                          {"balance": 100 + i}, results, "snapshot"),
                in_flight(g.port, "POST", "/accounts", {"name": "Twice%d" % i},
                          results, "create"),
            ]
            # Fault injection, not synchronisation: Redis wakes after the
            # gateway's deadline has passed, while a re-sent copy could
            # still be on its way.
            time.sleep(timeout_ms / 1000.0 + 0.25)
        finally:
            env.redis.proc.proc.send_signal(signal.SIGCONT)
        for t in threads:
            t.join(10)
        for key in ("snapshot", "create"):
            _, st, body = results[key]
            check(st in (201, 503), "%s round %d: %r %r" % (key, i, st, body))
            if st == 503:
                eq(json.loads(body)["error"], "redis_unavailable", "%s round %d" % (key, i))
        answers.append((results["snapshot"][1], results["create"][1]))
    wait_until(lambda: health(g.port) == (200, "up"), 5, "health up at the end")
    # A marker write after the last round: once it is in history, whatever
    # Redis read from the abandoned connections has run.
    st, _, last = post_json(g.port, "/accounts/%s/snapshots" % uid, {"balance": 999})
    eq(st, 201, "the marker snapshot")
    hist = history(env, uid)
    eq(hist[-1], ("snapshot", {"accountId": uid, "balance": 999, "takenAt": last["takenAt"]}),
       "the marker is last")
    names = [d["name"] for t, d in firehose(env) if t == "account.created"]
    for i, (snap_st, create_st) in enumerate(answers):
        n = [d["balance"] for t, d in hist].count(100 + i)
        check(n == 1 if snap_st == 201 else n <= 1,
              "snapshot of round %d (answered %d) in history %d times" % (i, snap_st, n))
        n = names.count("Twice%d" % i)
        check(n == 1 if create_st == 201 else n <= 1,
              "account of round %d (answered %d) created %d times" % (i, create_st, n))


def idem(port, path, body, key):
    """A write with an Idempotency-Key: (status, headers, raw body)."""
    return http(port, "POST", path, body, headers={"Idempotency-Key": key})


def test_idempotency_key(env):
    """A retry with the same Idempotency-Key, on the same instance or the
    other, gets the first answer byte for byte (same status, same event id,
    same takenAt, same Location) and writes nothing; another key writes
    again; a key that is not 1 to 128 visible ASCII characters is 400 and
    writes nothing."""
    g1 = env.gateway("idem-1")
    g2 = env.gateway("idem-2")
    first = idem(g1.port, "/accounts", {"name": "Idem", "balance": 3}, "acct-1")
    again = idem(g2.port, "/accounts", {"name": "Idem", "balance": 3}, "acct-1")
    eq(first[0], 201, "POST /accounts with a key")
    eq((again[0], again[2]), (first[0], first[2]), "the same answer from the other instance")
    acct = json.loads(first[2])
    uid = acct["id"]
    eq(first[1].get("location"), "/accounts/" + uid, "Location")
    eq(again[1].get("location"), "/accounts/" + uid, "the same Location")
    path = "/accounts/%s/snapshots" % uid
    s1 = idem(g1.port, path, {"balance": 9}, "snap-1")
    s2 = idem(g2.port, path, {"balance": 9}, "snap-1")
    eq(s1[0], 201, "snapshot with a key")
    eq((s2[0], s2[2]), (s1[0], s1[2]), "the same snapshot answer, takenAt included")
    e1 = idem(g2.port, "/events", {"userId": uid, "type": "once"}, "ev-1")
    e2 = idem(g1.port, "/events", {"userId": uid, "type": "once"}, "ev-1")
    e3 = idem(g1.port, "/events", {"userId": uid, "type": "once"}, "ev-2")
    eq(e1[0], 202, "event with a key")
    eq((e2[0], e2[2]), (e1[0], e1[2]), "the same event answer")
    check(json.loads(e3[2])["id"] != json.loads(e1[2])["id"], "another key writes again")
    for bad in ("", "has space", "x" * 129, "caf\u00e9"):
        st, _, body = http(g1.port, "POST", "/events", {"userId": uid, "type": "bad"},
                           headers={"Idempotency-Key": bad.encode("utf-8").decode("latin-1")})
        eq((st, json.loads(body)["error"]), (400, "invalid_parameter"), "key %r" % bad)
    eq([(ty, (d or {}).get("balance")) for ty, d in history(env, uid)],
       [("account.created", 3), ("snapshot", 3), ("snapshot", 9), ("once", None),
        ("once", None)],
       "history: one account, one snapshot, one event per key, nothing for bad keys")
    names = [d["name"] for ty, d in firehose(env) if ty == "account.created"]
    eq(names.count("Idem"), 1, "one account for one key")


def test_idempotency_key_expires(env):
    """After IDEMPOTENCY_TTL_SECS the key is forgotten: the same key writes
    again."""
    g = env.gateway("idem-ttl", IDEMPOTENCY_TTL_SECS=1)
    st, _, acct = post_json(g.port, "/accounts", {"name": "Ttl"})
    uid = acct["id"]
    a = idem(g.port, "/events", {"userId": uid, "type": "t"}, "ttl-1")
    eq(a[0], 202, "first")
    eq(env.redis.cli("EXISTS", "ssegate:idem:events:ttl-1"), "1", "the key is kept")
    check(0 < int(env.redis.cli("PTTL", "ssegate:idem:events:ttl-1")) <= 1000,
          "for IDEMPOTENCY_TTL_SECS")
    wait_until(lambda: env.redis.cli("EXISTS", "ssegate:idem:events:ttl-1") == "0", 5,
               "the key to expire")
    b = idem(g.port, "/events", {"userId": uid, "type": "t"}, "ttl-1")
    eq(b[0], 202, "after expiry")
    check(json.loads(a[2])["id"] != json.loads(b[2])["id"], "a new event after the key expired")


def test_idempotency_key_retry_after_503(env):
    """What the key is for: a write answered 503 because Redis froze past
    REDIS_TIMEOUT_MS may or may not have been applied; retried with its key
    until it gets an answer, it is in history exactly once."""
    timeout_ms = 300
    g = env.gateway("idem-stall", HTTP_THREADS=1, REDIS_TIMEOUT_MS=timeout_ms)
    st, _, acct = post_json(g.port, "/accounts", {"name": "Retry"})
    uid = acct["id"]
    for i in range(3):
        key = "retry-%d" % i
        wait_until(lambda: health(g.port) == (200, "up"), 5, "health up before round %d" % i)
        results = {}
        env.redis.proc.proc.send_signal(signal.SIGSTOP)
        try:
            th = threading.Thread(target=lambda: results.__setitem__(
                "k", idem(g.port, "/events", {"userId": uid, "type": key}, key)), daemon=True)
            th.start()
            # Fault injection, not synchronisation: Redis wakes after the
            # gateway's deadline has passed.
            time.sleep(timeout_ms / 1000.0 + 0.25)
        finally:
            env.redis.proc.proc.send_signal(signal.SIGCONT)
        th.join(10)
        st = results["k"][0]
        check(st in (202, 503), "round %d: %r" % (i, results["k"]))
        deadline = time.monotonic() + 10
        while st != 202 and time.monotonic() < deadline:
            st = idem(g.port, "/events", {"userId": uid, "type": key}, key)[0]
        eq(st, 202, "round %d: the retry with the key gets its answer" % i)
    types = [ty for ty, _ in history(env, uid)]
    for i in range(3):
        eq(types.count("retry-%d" % i), 1, "round %d's event exactly once" % i)


def race(ports, path, body, key, n=20):
    """n requests with the same Idempotency-Key, released together by a
    barrier, alternating between ports: [(status, headers, raw body)]."""
    results = [None] * n
    gate = threading.Barrier(n)

    def run(i):
        try:
            gate.wait(10)
            results[i] = idem(ports[i % len(ports)], path, body, key)
        except Exception as e:      # reported by the checks below
            results[i] = (None, {}, repr(e))
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def test_idempotency_key_concurrent(env):
    """The proof that a key needs no 409 "in flight" (docs/API.md,
    Idempotency-Key): 20 requests with one key at once, over two
    instances, for POST /events and for POST /accounts. Every one gets the
    same status and the same bytes (one event id, one account id, one
    Location), one event reaches a stream, and Redis holds one write: the
    key check and the write are one script, so the first to reach Redis
    writes and the other 19 read its answer."""
    g1 = env.gateway("race-1")
    g2 = env.gateway("race-2")
    ports = [g1.port, g2.port]
    st, _, acct = post_json(g1.port, "/accounts", {"name": "Racer"})
    uid = acct["id"]
    s = SSEClient(g2.port, "userId=" + uid)
    eq(s.status, 200, "the user's stream")
    fh = SSEClient(g1.port, "")
    eq(fh.status, 200, "the firehose")
    s.wait(lambda c: c.retry is not None and c.comments, 5, "the user's hello")
    fh.wait(lambda c: c.retry is not None and c.comments, 5, "the firehose's hello")

    got = race(ports, "/events", {"userId": uid, "type": "raced", "data": {"n": 1}}, "race-ev")
    eq(got[0][0], 202, "POST /events with the key (%r)" % (got[0],))
    eq([(st, b) for st, _, b in got], [(got[0][0], got[0][2])] * len(got),
       "20 answers, one status and one body")
    eid = json.loads(got[0][2])["id"]

    created = race(ports, "/accounts", {"name": "Raced", "balance": 7}, "race-acct")
    eq(created[0][0], 201, "POST /accounts with the key (%r)" % (created[0],))
    eq([(st, h.get("location"), b) for st, h, b in created],
       [(201, created[0][1].get("location"), created[0][2])] * len(created),
       "20 answers, one status, one Location, one body")
    new = json.loads(created[0][2])
    eq(created[0][1].get("location"), "/accounts/" + new["id"], "Location names the account")

    # A marker after both races: once a stream has it, it has had
    # everything the races published.
    marker = post_json(g1.port, "/events", {"userId": uid, "type": "marker"})[2]["id"]
    s.wait(lambda c: any(e.id == marker for e in c.events), 10, "the marker on the user's stream")
    fh.wait(lambda c: any(e.id == marker for e in c.events), 10, "the marker on the firehose")
    eq([(e.id, e.event) for e in s.events], [(eid, "raced"), (marker, "marker")],
       "the user's stream: the raced event once, then the marker")
    mine = [e for e in fh.events
            if e.event in ("account.created", "snapshot") and json.loads(e.data)["userId"] == new["id"]]
    eq([e.event for e in mine], ["account.created", "snapshot"],
       "the firehose: one account.created and one snapshot for the raced account")
    eq(json.loads(mine[0].data)["data"], new, "account.created carries the answered account")
    s.close()
    fh.close()

    # Redis: one write each.
    eq([ty for ty, _ in history(env, uid)], ["account.created", "snapshot", "raced", "marker"],
       "the user's history holds the raced event once")
    eq([ty for ty, _ in history(env, new["id"])], ["account.created", "snapshot"],
       "the raced account's history: one creation")
    names = [d["name"] for ty, d in firehose(env) if ty == "account.created"]
    eq(names.count("Raced"), 1, "one account for 20 requests")
    # Each request took an account id before its keyed script (docs/API.md):
    # the ids around the one kept hold no account.
    seq = int(env.redis.cli("GET", "ssegate:account:seq"))
    held = [i for i in range(int(uid) + 1, seq + 1)
            if env.redis.cli("EXISTS", "ssegate:account:%d" % i) == "1"]
    eq(held, [int(new["id"])], "one account hash among the ids the 20 took")


def test_subscriber_refusal_logged_once(env):
    """A Redis that refuses the subscriber (a password set while the
    gateway has none) is logged at once, with why, in one line however
    many times the gateway retries; /health says down meanwhile; once Redis
    lets it in again it is back without a restart."""
    import subprocess
    r = Redis(env.work.path)
    g = env.gateway("refused", redis=r)
    pw = "s3cret-pass"

    def cli(*args):
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(r.port), "-a", pw,
                               "--no-auth-warning"] + list(args),
                              capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        r.cli("CONFIG", "SET", "requirepass", pw)
        cli("CLIENT", "KILL", "TYPE", "pubsub")
        # The subscriber's SUBSCRIBE, refused, says so.
        wait_until(lambda: "refused at" in g.proc.output(), 5, "the refusal logged")
        line = [l for l in g.proc.output().splitlines() if "refused at" in l][0]
        check("NOAUTH" in line and "REDIS_PASSWORD" in line, "it says why: %r" % line)
        eq(health(g.port)[0], 503, "/health down while refused")
        # Three more refused connections later (the back-off retrying):
        # still one line.
        asked = [0]                 # our own redis-cli connections

        def connections():
            asked[0] += 1
            for l in cli("INFO", "stats").splitlines():
                if l.startswith("total_connections_received:"):
                    return int(l.split(":")[1]) - asked[0]
            return 0
        base = connections()
        wait_until(lambda: connections() >= base + 3, 10, "three more tries")
        eq(g.proc.output().count("refused at"), 1, "one line for one refusal, not one per retry")
        cli("CONFIG", "SET", "requirepass", "")
        wait_until(lambda: health(g.port) == (200, "up"), 10, "back once Redis lets it in")
    finally:
        r.stop()


TESTS = [test_health_while_redis_frozen, test_publish_wait_holds_no_thread,
         test_no_write_applied_twice, test_idempotency_key, test_idempotency_key_expires,
         test_idempotency_key_retry_after_503, test_idempotency_key_concurrent,
         test_subscriber_refusal_logged_once]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
