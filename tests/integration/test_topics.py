#!/usr/bin/env python3
"""Integration tests: topics (rooms) beside users, on the same streams. A
stream names any number of topics (and maybe a user) and gets the union,
in id order; POST /events takes a topic; each instance is subscribed to a
topic's two channels exactly while it holds a stream on it (PUBSUB
NUMSUB), in batches; a stream opened on a topic not yet subscribed loses
nothing published after its 200; a resume merges every source, with one
gap event if any source was trimmed; outsiders' messages on
TOPIC_CHANNEL_PREFIX come without ids; secure mode checks the token's
topics claim; a lost subscription is recovered for topic streams. A real
redis-server and real gateways on loopback. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_topics.py [-k substr]
"""
import json
import os
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatewaysEnv, SSEClient, TestFailure, check, eq, http,  # noqa: E402
                     id_key, ids_of, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
SECRET = "topics-secret-0123456789abcdef0123456789"
KEY = "publish-key-0123456789abcdef"
OWN = "ssegate:events:"         # the gateways' own topic channels
OUTSIDE = "ssegate:topic:"      # TOPIC_CHANNEL_PREFIX's default


class Env(GatewaysEnv):
    def __init__(self):
        super().__init__(BIN)
        self.b1 = self.gateway("b1")
        self.b2 = self.gateway("b2")

    def numsub(self, channel):
        out = self.redis.cli("PUBSUB", "NUMSUB", channel).split("\n")
        return int(out[1])

    def wait_numsub(self, topic, n, what):
        wait_until(lambda: self.numsub(OWN + topic) == n and
                   self.numsub(OUTSIDE + topic) == n, 10, what)


def uniq(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def account(port, headers=None):
    st, _, a = post_json(port, "/accounts", {"name": "Ada"}, headers=headers)
    eq(st, 201, "POST /accounts (%r)" % a)
    return a["id"]


def post_user(port, uid, type_="u", data=None):
    st, _, b = post_json(port, "/events", {"userId": uid, "type": type_, "data": data})
    eq(st, 202, "POST /events user (%r)" % b)
    return b["id"]


def post_topic(port, topic, type_="chat.message", data=None, headers=None):
    st, _, b = post_json(port, "/events", {"topic": topic, "type": type_, "data": data},
                         headers=headers)
    eq(st, 202, "POST /events topic %s (%r)" % (topic, b))
    return b["id"]


def open_ok(port, query, last_event_id=None, headers=None):
    c = SSEClient(port, query, last_event_id=last_event_id, headers=headers)
    eq(c.status, 200, "GET /events/sse?%s" % query[:80])
    return c


def real(c):
    """The stream's events that carry an id (not gap)."""
    return [e for e in c.events if e.id]


def wait_ids(c, want, timeout=10):
    c.wait(lambda x: len(real(x)) >= len(want), timeout, "%d events" % len(want))
    c.idle(0.3)
    eq(ids_of(real(c)), want, "exactly these events, in order")


# ------------------------------------------------------------------- tests

def test_union_of_sources(env):
    uid = account(env.b1.port)
    ta, tb, tc = uniq("room"), uniq("room"), uniq("room")
    both = open_ok(env.b1.port, "userId=%s&topic=%s&topic=%s" % (uid, ta, tb))
    only = open_ok(env.b2.port, "topic=" + ta)
    fire = open_ok(env.b1.port, "")
    env.wait_numsub(ta, 2, "both instances subscribed to " + ta)
    env.wait_numsub(tb, 1, "b1 subscribed to " + tb)
    u1 = post_user(env.b2.port, uid)
    a1 = post_topic(env.b1.port, ta, data={"text": "hi"})
    b1 = post_topic(env.b2.port, tb)
    post_topic(env.b1.port, tc)             # nobody's
    a2 = post_topic(env.b2.port, ta)
    u2 = post_user(env.b1.port, uid)
    wait_ids(both, [u1, a1, b1, a2, u2])
    wait_ids(only, [a1, a2])
    env_a1 = [e for e in only.events if e.id == a1][0]
    eq(env_a1.event, "chat.message", "event type")
    d = env_a1.json()
    eq(sorted(d), ["data", "id", "serverId", "topic", "ts", "type"], "a topic envelope's fields")
    eq((d["id"], d["topic"], d["data"], d["serverId"]), (a1, ta, {"text": "hi"}, "b1"),
       "the envelope")
    # The firehose carries users' events only.
    fire.idle(0.3)
    check(a1 not in ids_of(fire.events) and u1 in ids_of(fire.events),
          "the firehose has user events, not topic events: %r" % fire.events)
    for c in (both, only, fire):
        c.close()


def test_bad_requests(env):
    p = env.b1.port
    uid = account(p)
    for body, code in (({"userId": uid, "topic": "r", "type": "t"}, "invalid_field"),
                       ({"type": "t"}, "missing_field"),
                       ({"topic": "a b", "type": "t"}, "invalid_field"),
                       ({"topic": "", "type": "t"}, "invalid_field"),
                       ({"topic": "x" * 129, "type": "t"}, "invalid_field"),
                       ({"topic": 5, "type": "t"}, "invalid_field"),
                       ({"topic": "r*", "type": "t"}, "invalid_field")):
        st, _, b = post_json(p, "/events", body)
        eq((st, b["error"]), (400, code), "POST /events %r" % body)
    post_topic(p, "x" * 128)
    many = "&".join("topic=t%d" % i for i in range(33))
    for q in ("topic=a%20b", "topic", "topic=", "topic=a%00", "topic=r*", "topic=" + "x" * 129,
              many, "userId=%s&topic=ok&topic=b@d" % uid):
        c = SSEClient(p, q)
        eq(c.status, 400, "status of ?%s" % q[:40])
        eq(json.loads(c.error_body)["error"], "invalid_parameter", "error of ?%s" % q[:40])
        c.close()
    # 32 distinct topics (one given twice) are fine.
    ok = "&".join("topic=t%d" % i for i in range(32)) + "&topic=t0&userId=" + uid
    c = open_ok(p, ok)
    c.close()


def test_union_resume_during_publish(env):
    uid = account(env.b1.port)
    t1, t2 = uniq("r"), uniq("r")
    ids = []
    for i in range(12):
        if i % 3 == 0:
            ids.append(post_user(env.b1.port, uid))
        else:
            ids.append(post_topic(env.b2.port, (t1, t2)[i % 3 - 1], data=i))
    more = []

    def publish():
        for i in range(30):
            if i % 3 == 0:
                more.append(post_user(env.b2.port, uid))
            else:
                more.append(post_topic(env.b1.port, (t1, t2)[i % 3 - 1]))
    th = threading.Thread(target=publish)
    th.start()
    c = open_ok(env.b1.port, "userId=%s&topic=%s&topic=%s" % (uid, t1, t2),
                last_event_id=ids[2])
    th.join(30)
    check(not th.is_alive(), "the publisher finished")
    want = ids[3:] + more
    eq(want, sorted(want, key=id_key), "ids increase")
    wait_ids(c, want, 15)
    check(not any(e.event == "gap" for e in c.events), "no gap")
    c.close()


def test_gap_from_one_source(env):
    g = env.gateway("g3", TOPIC_HISTORY_MAXLEN="5")
    uid = account(g.port)
    t, kept = uniq("trim"), uniq("kept")
    first = post_user(g.port, uid)
    user_ids = [post_user(g.port, uid) for _ in range(3)]
    topic_ids = [post_topic(g.port, t) for _ in range(8)]
    kept_ids = [post_topic(g.port, kept) for _ in range(3)]
    c = open_ok(g.port, "userId=%s&topic=%s&topic=%s" % (uid, t, kept), last_event_id=first)
    want = sorted(user_ids + topic_ids[-5:] + kept_ids, key=id_key)
    wait_ids(c, want)
    eq(c.events[0].event, "gap", "a gap event first")
    eq(c.events[0].json()["lastEventId"], first, "naming the id asked for")
    eq(sum(1 for e in c.events if e.event == "gap"), 1, "one gap event")
    c.close()
    # Sources that lost nothing after the id: no gap.
    c = open_ok(g.port, "userId=%s&topic=%s" % (uid, kept), last_event_id=first)
    wait_ids(c, sorted(user_ids + kept_ids, key=id_key))
    check(not any(e.event == "gap" for e in c.events), "no gap")
    c.close()
    # A stream opened now (no Last-Event-ID) on the trimmed topic: what was
    # trimmed before it opened is nothing it missed.
    c = open_ok(g.port, "topic=" + t)
    c.idle(0.5)
    check(not any(e.event == "gap" for e in c.events), "no gap at a fresh open: %r" % c.events)
    c.close()
    eq(g.stop(), 0, "g3 exit status")
    env.extra.remove(g)


def test_unknown_user_with_topics(env):
    """The account is checked: 404 at the open, as for a user's stream;
    with a Last-Event-ID, in the replay reader's read (the stream ends)."""
    c = SSEClient(env.b1.port, "userId=999999999999&topic=" + uniq("u"))
    eq(c.status, 404, "unknown user with topics")
    c.close()
    c = open_ok(env.b1.port, "userId=999999999999&topic=" + uniq("u"),
                last_event_id="1-0")
    c.wait_eof(10)
    eq([e for e in c.events], [], "no event")
    c.close()


def subscribe_calls(env):
    for line in env.redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_subscribe:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_subscriptions(env):
    t = uniq("sub")
    eq(env.numsub(OWN + t), 0, "nobody subscribed yet")
    s1 = open_ok(env.b1.port, "topic=" + t)
    env.wait_numsub(t, 1, "b1 subscribed on its first stream")
    s2 = open_ok(env.b1.port, "topic=" + t)
    s3 = open_ok(env.b2.port, "topic=%s&topic=%s" % (t, t))
    env.wait_numsub(t, 2, "b2 subscribed on its first stream")
    s1.close()
    time.sleep(0.5)
    eq((env.numsub(OWN + t), env.numsub(OUTSIDE + t)), (2, 2), "b1 still has s2")
    s2.close()
    env.wait_numsub(t, 1, "b1 unsubscribed after its last stream")
    s3.close()
    env.wait_numsub(t, 0, "b2 unsubscribed after its last stream")
    # 32 topics at once: one SUBSCRIBE of 64 channels, not 32 round trips.
    names = [uniq("batch") for _ in range(32)]
    before = subscribe_calls(env)
    c = open_ok(env.b1.port, "&".join("topic=" + n for n in names))
    for n in names:
        env.wait_numsub(n, 1, "b1 subscribed to " + n)
    eq(subscribe_calls(env) - before, 1, "one SUBSCRIBE command")
    c.close()
    for n in names:
        env.wait_numsub(n, 0, "b1 unsubscribed from " + n)


def test_no_loss_on_first_subscribe(env):
    for round_ in range(3):
        t = uniq("nl")
        sent = []           # (monotonic time before the POST, id)
        stop = threading.Event()

        def publish():
            while not stop.is_set():
                t0 = time.monotonic()
                sent.append((t0, post_topic(env.b2.port, t)))
                time.sleep(0.003)
        th = threading.Thread(target=publish)
        th.start()
        time.sleep(0.1)
        c = open_ok(env.b1.port, "topic=" + t)
        opened = time.monotonic()
        time.sleep(0.5)
        stop.set()
        th.join(10)
        after = [i for (t0, i) in sent if t0 > opened]
        check(len(after) > 10, "events published after the 200 (%d)" % len(after))
        c.wait(lambda x: after[-1] in ids_of(x.events), 10, "the last event")
        got = ids_of(real(c))
        eq(got, sorted(set(got), key=id_key), "in order, each once")
        missing = [i for i in after if i not in got]
        eq(missing, [], "round %d: nothing published after the 200 is missing" % round_)
        c.close()


def test_outside_publish(env):
    t = uniq("raw")
    c = open_ok(env.b1.port, "topic=" + t)
    env.wait_numsub(t, 1, "b1 subscribed")
    env.redis.cli("PUBLISH", OUTSIDE + t, "not json")
    env.redis.cli("PUBLISH", OUTSIDE + t, '{"type":"x","data":{"a":1},"id":"99999999999999-0"}')
    c.wait(lambda x: len(x.events) >= 1, 10, "the outside message")
    c.idle(0.3)
    eq(len(c.events), 1, "the malformed message is skipped")
    e = c.events[0]
    eq((e.id, e.event, e.json()), (None, "x", {"type": "x", "data": {"a": 1},
                                               "id": "99999999999999-0"}),
       "delivered verbatim without an id line")
    # Its claimed id moved nothing: a real event still comes.
    i = post_topic(env.b2.port, t)
    c.wait(lambda x: i in ids_of(x.events), 10, "a real event after it")
    c.close()


def bearer(t):
    return {"Authorization": "Bearer " + t}


def test_secure_topics(env):
    g = env.gateway("sec", AUTH_SECRET=SECRET, PUBLISH_KEYS=KEY)
    key = bearer(KEY)
    uid = account(g.port, headers=key)
    st, _, b = post_json(g.port, "/tokens", {"userId": uid, "topics": ["room-1", "chat/*"]},
                         headers=key)
    eq(st, 200, "POST /tokens with topics (%r)" % b)
    tok = b["token"]
    st, _, b = post_json(g.port, "/tokens", {"userId": uid, "topics": ["bad name"]},
                         headers=key)
    eq(st, 400, "POST /tokens with a bad grant")
    c = open_ok(g.port, "topic=room-1&topic=chat/eu", headers=bearer(tok))
    c2 = open_ok(g.port, "userId=%s&topic=chat/x" % uid, headers=bearer(tok))
    for q in ("topic=room-2", "topic=room-1&topic=chat", "userId=%s&topic=room-10" % uid):
        r = SSEClient(g.port, q, headers=bearer(tok))
        eq(r.status, 403, "?%s is not granted" % q)
        r.close()
    st, _, b = post_json(g.port, "/tokens", {"userId": uid}, headers=key)
    r = SSEClient(g.port, "topic=room-1", headers=bearer(b["token"]))
    eq(r.status, 403, "a token without topics")
    r.close()
    r = SSEClient(g.port, "topic=room-1")
    eq(r.status, 401, "no token")
    r.close()
    # Publishing to a topic needs a publish key.
    st, _, _ = post_json(g.port, "/events", {"topic": "room-1", "type": "t"})
    eq(st, 401, "POST /events topic without a key")
    i = post_topic(g.port, "chat/eu", headers=key)
    c.wait(lambda x: i in ids_of(x.events), 10, "the granted topic's event")
    # ssegate token --topic.
    e = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    e["AUTH_SECRET"] = SECRET
    r = subprocess.run([BIN, "token", "--sub", "ops", "--topic", "room-1", "--topic", "ops/*"],
                       env=e, capture_output=True, text=True, timeout=20)
    eq((r.returncode, r.stderr), (0, ""), "ssegate token --topic")
    c3 = open_ok(g.port, "topic=room-1&topic=ops/x", headers=bearer(r.stdout.strip()))
    r = subprocess.run([BIN, "token", "--sub", "ops", "--topic", "a b"],
                       env=e, capture_output=True, text=True, timeout=20)
    eq(r.returncode, 2, "ssegate token --topic with a bad name")
    for x in (c, c2, c3):
        x.close()


def test_recovery_after_kill(env):
    uid = account(env.b1.port)
    t = uniq("rec")
    streams = [open_ok(g.port, "userId=%s&topic=%s" % (uid, t)) for g in (env.b1, env.b2)]
    only = open_ok(env.b2.port, "topic=" + t)
    env.wait_numsub(t, 2, "both subscribed")
    first = post_topic(env.b1.port, t)
    for s in streams + [only]:
        s.wait(lambda x: first in ids_of(x.events), 10, "the first event")
    env.redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
    ids = []
    for i in range(6):
        ids.append(post_topic(env.b1.port, t) if i % 2 else post_user(env.b2.port, uid))
    for s in streams:
        wait_ids(s, [first] + ids, 15)
    wait_ids(only, [first] + [i for n, i in enumerate(ids) if n % 2], 15)
    env.wait_numsub(t, 2, "both resubscribed")
    later = post_topic(env.b2.port, t)
    for s in streams + [only]:
        s.wait(lambda x: later in ids_of(x.events), 10, "live again")
        s.close()


TESTS = [test_union_of_sources, test_bad_requests, test_union_resume_during_publish,
         test_gap_from_one_source, test_unknown_user_with_topics, test_subscriptions, test_no_loss_on_first_subscribe,
         test_outside_publish, test_secure_topics, test_recovery_after_kill]

if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
