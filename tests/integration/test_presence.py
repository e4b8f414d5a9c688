#!/usr/bin/env python3
"""Integration tests: presence. GET /presence?topic= counts the streams on
a topic across every instance and lists the distinct users among them;
a closed stream leaves at once, a stopped instance's streams too, a
SIGKILLed instance's within PRESENCE_TTL_SECS; with PRESENCE_EVENTS=1 a
user's first stream anywhere writes presence.join and their last
presence.leave, once each however many tabs on however many instances;
the events are topic events (ids, history, resume); Redis losing its
data is repaired at the next beat; secure mode asks for a token that
grants the topic or a publish key. A real redis-server and real
gateways on loopback. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_presence.py [-k substr]
"""
import os
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatewaysEnv, SSEClient, check, eq, get_json, http,  # noqa: E402
                     ids_of, id_key, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
SECRET = "presence-secret-0123456789abcdef01234567"
KEY = "publish-key-0123456789abcdef"
TTL = 6                         # PRESENCE_TTL_SECS of the instances here
BAD_TOPIC = {"error": "invalid_parameter",
             "message": "topic must be given once, as 1 to 128 of A-Z a-z 0-9 . _ : / -"}


class Env(GatewaysEnv):
    def __init__(self):
        super().__init__(BIN)
        opts = {"PRESENCE_EVENTS": 1, "PRESENCE_TTL_SECS": TTL}
        self.b1 = self.gateway("b1", **opts)
        self.b2 = self.gateway("b2", **opts)
        self.b3 = self.gateway("b3", **opts)


def uniq(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def account(port, headers=None):
    st, _, a = post_json(port, "/accounts", {"name": "Ada"}, headers=headers)
    eq(st, 201, "POST /accounts (%r)" % a)
    return a["id"]


def presence(port, topic, headers=None):
    st, _, b = get_json(port, "/presence?topic=" + topic, headers=headers)
    eq(st, 200, "GET /presence?topic=%s (%r)" % (topic, b))
    return b


def wait_presence(gateways, topic, streams, users, timeout=10):
    """Every instance answers exactly {topic, streams, users}."""
    want = {"topic": topic, "streams": streams, "users": users}
    wait_until(lambda: all(presence(g.port, topic) == want for g in gateways), timeout,
               "presence of %s == %r" % (topic, want))


def open_ok(port, query, **kw):
    c = SSEClient(port, query, **kw)
    eq(c.status, 200, "GET /events/sse?%s" % query)
    return c


def presence_events(c):
    return [(e.event, e.json()["data"]["userId"]) for e in c.events
            if e.event.startswith("presence.")]


def wait_presence_events(c, want, timeout=10):
    c.wait(lambda x: len(presence_events(x)) >= len(want), timeout,
           "%d presence events" % len(want))
    c.idle(0.3)
    eq(presence_events(c), want, "exactly these presence events, in order")


# ------------------------------------------------------------------- tests

def test_counts_across_instances(env):
    """Streams and users across three instances, kept as streams open and
    close; an observer with no user counts as a stream, not a user; a
    user's second tab (another instance) neither joins nor leaves."""
    t = uniq("room")
    every = (env.b1, env.b2, env.b3)
    a, b = account(env.b1.port), account(env.b1.port)
    wait_presence(every, t, 0, [])
    obs = open_ok(env.b2.port, "topic=" + t)
    wait_presence(every, t, 1, [])
    a1 = open_ok(env.b1.port, "userId=%s&topic=%s" % (a, t))
    wait_presence(every, t, 2, [a])
    b2 = open_ok(env.b2.port, "userId=%s&topic=%s" % (b, t))
    wait_presence(every, t, 3, sorted([a, b], key=int))
    a3 = open_ok(env.b3.port, "userId=%s&topic=%s" % (a, t))
    wait_presence(every, t, 4, sorted([a, b], key=int))
    a3.close()
    wait_presence(every, t, 3, sorted([a, b], key=int))
    a1.close()
    wait_presence(every, t, 2, [b])
    b2.close()
    wait_presence(every, t, 1, [])
    wait_presence_events(obs, [("presence.join", a), ("presence.join", b),
                               ("presence.leave", a), ("presence.leave", b)])
    # Ordinary topic events: the envelope, increasing ids.
    evs = [e for e in obs.events if e.event.startswith("presence.")]
    d = evs[0].json()
    eq(sorted(d), ["data", "id", "serverId", "topic", "ts", "type"], "envelope fields")
    eq((d["id"], d["type"], d["topic"], d["data"], d["serverId"]),
       (evs[0].id, "presence.join", t, {"userId": a}, "b1"), "presence.join's envelope")
    eq(evs[2].json()["serverId"], "b1", "the leave was written by the instance it left")
    ids = ids_of(evs)
    eq(sorted(ids, key=id_key), ids, "ids increase")
    obs.close()
    wait_presence(every, t, 0, [])
    # They are in the topic's history: a resume replays them.
    r = open_ok(env.b3.port, "topic=%s&lastEventId=%s" % (t, "1-0"))
    wait_presence_events(r, [("presence.join", a), ("presence.join", b),
                             ("presence.leave", a), ("presence.leave", b)])
    eq(ids_of(r.events), ids, "the same events, the same ids, from history")
    r.close()
    eq(env.redis.cli("EXISTS", "ssegate:presence:topic:" + t), "0",
       "an empty topic leaves nothing in Redis")


def test_two_tabs_two_backends(env):
    """One user opening and closing tabs on two instances at once joins
    once and leaves once."""
    t = uniq("room")
    u = account(env.b1.port)
    obs = open_ok(env.b3.port, "topic=" + t)
    wait_presence((env.b1,), t, 1, [])
    for _ in range(3):
        tabs = [open_ok(g.port, "userId=%s&topic=%s" % (u, t)) for g in (env.b1, env.b2)]
        wait_presence((env.b1, env.b2), t, 3, [u])
        for c in tabs:
            c.close()
        wait_presence((env.b1, env.b2), t, 1, [])
    wait_presence_events(obs, [("presence.join", u), ("presence.leave", u)] * 3)
    obs.close()


def test_sigkill_leaves_within_ttl(env):
    """A SIGKILLed instance's streams leave presence within
    PRESENCE_TTL_SECS, with one presence.leave each for the users it alone
    held, written by a live instance."""
    t = uniq("room")
    a, b = account(env.b1.port), account(env.b1.port)
    doomed = env.gateway("doomed", PRESENCE_EVENTS=1, PRESENCE_TTL_SECS=TTL)
    obs = open_ok(env.b1.port, "topic=" + t)
    ca = open_ok(doomed.port, "userId=%s&topic=%s" % (a, t))
    cb = open_ok(doomed.port, "userId=%s&topic=%s" % (b, t))
    cb2 = open_ok(env.b2.port, "userId=%s&topic=%s" % (b, t))
    wait_presence((env.b1, env.b2), t, 4, sorted([a, b], key=int))
    t0 = time.monotonic()
    doomed.proc.proc.send_signal(signal.SIGKILL)
    doomed.proc.proc.wait(10)
    wait_presence((env.b1, env.b2), t, 2, [b], timeout=TTL + 2)
    took = time.monotonic() - t0
    print("# a SIGKILLed instance's streams left presence after %.1f s "
          "(PRESENCE_TTL_SECS=%d)" % (took, TTL))
    check(took <= TTL, "left within PRESENCE_TTL_SECS (%.1f s)" % took)
    wait_presence_events(obs, [("presence.join", a), ("presence.join", b),
                               ("presence.leave", a)])
    leave = [e for e in obs.events if e.event == "presence.leave"][0].json()
    check(leave["serverId"] in ("b1", "b2", "b3"), "a live instance wrote the leave")
    eq(env.redis.cli("ZCARD", "ssegate:presence:instances"), "3",
       "the dead instance is gone from the instances")
    for c in (obs, ca, cb, cb2):
        c.close()


def test_stop_leaves_at_once(env):
    """A stopped instance (SIGTERM) takes its streams out of presence
    before it exits: no wait for PRESENCE_TTL_SECS."""
    t = uniq("room")
    a = account(env.b1.port)
    g = env.gateway("stopping", PRESENCE_EVENTS=1, PRESENCE_TTL_SECS=TTL)
    obs = open_ok(env.b1.port, "topic=" + t)
    c = open_ok(g.port, "userId=%s&topic=%s" % (a, t))
    wait_presence((env.b1,), t, 2, [a])
    eq(g.stop(), 0, "SIGTERM exit status")
    eq(presence(env.b1.port, t), {"topic": t, "streams": 1, "users": []},
       "presence right after the instance exited")
    wait_presence_events(obs, [("presence.join", a), ("presence.leave", a)])
    c.close()
    obs.close()


def test_redis_lost_its_data(env):
    """Redis restarted without its data (FLUSHALL here): each instance
    sees at its next beat that Redis does not know it and tells every
    count again."""
    t = uniq("room")
    a = account(env.b1.port)
    c1 = open_ok(env.b1.port, "userId=%s&topic=%s" % (a, t))
    c2 = open_ok(env.b2.port, "topic=" + t)
    wait_presence((env.b1,), t, 2, [a])
    env.redis.cli("FLUSHALL")
    eq(presence(env.b1.port, t), {"topic": t, "streams": 0, "users": []}, "just after")
    # A beat every PRESENCE_TTL_SECS / 6.
    wait_presence((env.b1, env.b2), t, 2, [a], timeout=TTL)
    c1.close()
    wait_presence((env.b1,), t, 1, [])
    c2.close()
    wait_presence((env.b1,), t, 0, [])


def test_errors(env):
    p = env.b1.port
    for q in ("", "?topic=", "?topic=a%20b", "?topic=a&topic=b", "?topic", "?topic=" + "x" * 129,
              "?room=a"):
        st, h, b = get_json(p, "/presence" + q)
        eq((st, b), (400, BAD_TOPIC), "GET /presence%s" % q[:40])
        eq(h.get("content-type"), "application/json; charset=utf-8", "Content-Type of the 400")
    st, h, _ = http(p, "POST", "/presence?topic=a")
    eq(st, 405, "POST /presence")
    eq(h.get("allow"), "GET, HEAD", "Allow")
    eq(presence(p, "nobody-" + uuid.uuid4().hex[:6])["streams"], 0, "an unknown topic")
    st, _, b = post_json(p, "/events", {"topic": "x", "type": "presence.join"})
    eq(st, 400, "presence.* is ours to write (%r)" % b)


def test_no_events_by_default(env):
    """Without PRESENCE_EVENTS, presence is counted and no event is
    written."""
    t = uniq("room")
    g = env.gateway("quiet", PRESENCE_TTL_SECS=TTL)
    a = account(g.port)
    obs = open_ok(g.port, "topic=" + t)
    c = open_ok(g.port, "userId=%s&topic=%s" % (a, t))
    wait_presence((g,), t, 2, [a])
    c.close()
    wait_presence((g,), t, 1, [])
    st, _, b = post_json(g.port, "/events", {"topic": t, "type": "m"})
    eq(st, 202, "a topic event")
    obs.wait(lambda x: b["id"] in ids_of(x.events), 10, "the topic's event")
    eq([e.event for e in obs.events], ["m"], "no presence event before it")
    obs.close()
    g.stop()


def test_secure(env):
    """Secure mode: a token that grants the topic (exact or prefix), or
    a publish key; the member of a stream without userId is its
    token's sub."""
    g = env.gateway("sec", AUTH_SECRET=SECRET, PUBLISH_KEYS=KEY, PRESENCE_TTL_SECS=TTL)
    e = dict(os.environ, AUTH_SECRET=SECRET)

    def token(sub, *topics):
        argv = [BIN, "token", "--sub", sub]
        for t in topics:
            argv += ["--topic", t]
        r = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=30)
        eq(r.returncode, 0, "ssegate token (%s)" % r.stderr)
        return r.stdout.strip()

    t = "chat/" + uuid.uuid4().hex[:8]
    alice = token("alice", "chat/*")
    c = open_ok(g.port, "topic=" + t, headers={"Authorization": "Bearer " + alice})
    want = {"topic": t, "streams": 1, "users": ["alice"]}
    wait_until(lambda: presence(g.port, t, {"Authorization": "Bearer " + KEY}) == want, 10,
               "presence with a publish key")
    eq(presence(g.port, t, {"Authorization": "Bearer " + alice}), want, "with a granting token")
    eq(get_json(g.port, "/presence?topic=%s&token=%s" % (t, alice))[0], 200,
       "with the token in the query")
    st, h, b = get_json(g.port, "/presence?topic=" + t)
    eq((st, b["error"]), (401, "unauthorized"), "no token")
    check(h.get("www-authenticate", "").startswith("Bearer"), "a challenge")
    other = token("bob", "room-1")
    st, _, b = get_json(g.port, "/presence?topic=" + t,
                        headers={"Authorization": "Bearer " + other})
    eq((st, b), (403, {"error": "forbidden", "message": "the token does not grant this topic"}),
       "a token for other topics")
    check(alice not in g.proc.output(), "the token is in no log line")
    c.close()
    g.stop()


TESTS = [test_counts_across_instances, test_two_tabs_two_backends,
         test_sigkill_leaves_within_ttl, test_stop_leaves_at_once, test_redis_lost_its_data,
         test_errors, test_no_events_by_default, test_secure]

if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env, ignore=("doomed",)))
