#!/usr/bin/env python3
"""GET /metrics: a real redis-server and gateways over loopback. Each test
scrapes before and after known actions and checks exactly what moved
(streams opened and closed, events received and delivered, replays,
gaps, requests by route and code, rate limits, Redis going away and
coming back), METRICS_KEY's 401, and that promtool finds no problem in
the text. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_metrics.py [-k substr]
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GatewaysEnv, Redis, SSEClient, check,  # noqa: E402
                     eq, http, post_json, run_suite, scrape, wait_metric)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
KEY = "metrics-key-0123456789"


class Env(GatewaysEnv):
    def account(self, g):
        st, _, acct = post_json(g.port, "/accounts", {"name": "Ada"})
        eq(st, 201, "POST /accounts status")
        return acct["id"]

    def event(self, g, user, type_="m", data=None):
        st, _, body = post_json(g.port, "/events", {"userId": user, "type": type_, "data": data})
        eq(st, 202, "POST /events status (%r)" % body)
        return body["id"]


def delta(before, after, name):
    return after.get(name, 0) - before.get(name, 0)


def promtool_check(text):
    tool = shutil.which("promtool")
    check(tool is not None, "promtool is installed (scripts/deps: prometheus)")
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    eq((r.returncode, r.stdout.strip(), r.stderr.strip()), (0, "", ""),
       "promtool check metrics")


def test_counts_after_known_actions(env):
    """3 streams opened, 10 events to each, 2 closed by their client; a
    fourth resumes after the first event (9 replayed); a fifth names a
    foreign id (a gap). Every count moves by exactly that much."""
    g = env.gateway("m-counts")
    uid = env.account(g)
    # POST /accounts publishes account.created and snapshot, which reach
    # no stream: wait until both were received.
    wait_metric(g, "ssegate_events_received_total", 2)
    b, _ = scrape(g)
    streams = [SSEClient(g.port, "userId=" + uid) for _ in range(3)]
    for s in streams:
        eq(s.status, 200, "stream open")
    wait_metric(g, 'ssegate_streams{kind="user"}', 3)
    ids = [env.event(g, uid, "m", {"n": i}) for i in range(10)]
    for s in streams:
        eq([e.id for e in s.wait_events(10)], ids, "each stream got the 10 events")
    wait_metric(g, "ssegate_deliveries_total", b.get("ssegate_deliveries_total", 0) + 30)
    streams[0].close()
    streams[1].close()
    wait_metric(g, 'ssegate_streams_closed_total{reason="client"}', 2)
    a, text = scrape(g)
    eq(delta(b, a, "ssegate_streams_opened_total"), 3, "streams opened")
    eq(delta(b, a, 'ssegate_streams_closed_total{reason="client"}'), 2, "closed by the client")
    for reason in ("slow_consumer", "shutdown", "open_failed", "out_of_memory",
                   "token_expired"):
        eq(a['ssegate_streams_closed_total{reason="%s"}' % reason], 0, reason)
    eq(a['ssegate_streams{kind="user"}'], 1, "user streams open")
    eq(a['ssegate_streams{kind="firehose"}'], 0, "firehose streams open")
    eq(delta(b, a, "ssegate_events_received_total"), 10, "events received")
    eq(delta(b, a, "ssegate_deliveries_total"), 30, "deliveries")
    eq(delta(b, a, "ssegate_delivery_delay_seconds_count"), 30, "delays observed")
    eq(a['ssegate_delivery_delay_seconds_bucket{le="+Inf"}'],
       a["ssegate_delivery_delay_seconds_count"], "+Inf bucket is the count")
    check(delta(b, a, "ssegate_sent_bytes_total") > 30 * 20, "bytes sent")
    eq(delta(b, a, 'ssegate_http_requests_total{route="/events",code="202"}'), 10,
       "POST /events 202")
    eq(delta(b, a, 'ssegate_http_requests_total{route="/events/sse",code="200"}'), 3,
       "stream opens 200")
    eq(delta(b, a, 'ssegate_http_request_duration_seconds_count{route="/events"}'), 10,
       "POST /events durations")
    eq(a["ssegate_redis_up"], 1, "redis up")
    eq(a["ssegate_publish_backlog"], 0, "nothing waiting to fan out")
    eq(a["ssegate_replayed_events_total"], 0, "nothing replayed yet")
    eq(a["ssegate_gaps_total"], 0, "no gap yet")
    promtool_check(text)

    b = a
    r = SSEClient(g.port, "userId=" + uid, last_event_id=ids[0])
    eq([e.id for e in r.wait_events(9)], ids[1:], "the resumed stream's replay")
    gap = SSEClient(g.port, "userId=" + uid, last_event_id="not-ours")
    eq(gap.wait_events(1)[0].event, "gap", "a foreign id's gap event")
    wait_metric(g, "ssegate_gaps_total", 1)
    a, _ = scrape(g)
    eq(delta(b, a, "ssegate_replayed_events_total"), 9, "events replayed")
    eq(delta(b, a, "ssegate_streams_opened_total"), 2, "two more opened")
    eq(delta(b, a, "ssegate_delivery_delay_seconds_count"), 0, "replays have no delay")
    for s in streams[2:] + [r, gap]:
        s.close()
    wait_metric(g, 'ssegate_streams_closed_total{reason="client"}', 5)
    a, _ = scrape(g)
    eq(a["ssegate_streams_opened_total"],
       sum(v for k, v in a.items() if k.startswith("ssegate_streams_closed_total")),
       "every stream opened ended once")


def test_requests_by_route_and_code(env):
    g = env.gateway("m-routes")
    b, _ = scrape(g)
    for _ in range(3):
        eq(http(g.port, "GET", "/health")[0], 200, "/health")
    eq(http(g.port, "GET", "/nope")[0], 404, "unknown path")
    eq(http(g.port, "DELETE", "/health")[0], 405, "wrong method")
    eq(post_json(g.port, "/events", {"userId": "1"})[0], 400, "invalid body")
    a, text = scrape(g)
    eq(delta(b, a, 'ssegate_http_requests_total{route="/health",code="200"}'), 3, "/health")
    eq(delta(b, a, 'ssegate_http_requests_total{route="unmatched",code="404"}'), 1, "404")
    eq(delta(b, a, 'ssegate_http_requests_total{route="unmatched",code="405"}'), 1, "405")
    eq(delta(b, a, 'ssegate_http_requests_total{route="/events",code="400"}'), 1, "400")
    # The scrape before this one is counted too.
    eq(delta(b, a, 'ssegate_http_requests_total{route="/metrics",code="200"}'), 1, "scrapes")
    eq(a['ssegate_http_request_duration_seconds_bucket{route="/health",le="+Inf"}'],
       a['ssegate_http_request_duration_seconds_count{route="/health"}'], "+Inf is the count")
    check(a["process_resident_memory_bytes"] > 1e6, "RSS")
    check(a["process_open_fds"] > 5 and a["process_max_fds"] >= a["process_open_fds"], "fds")
    check(a["process_start_time_seconds"] > 1.6e9, "start time")
    check("process_cpu_seconds_total" in a, "cpu")
    promtool_check(text)


def test_metrics_key(env):
    """With METRICS_KEY, a scrape needs it: 401 otherwise, whatever was
    sent; HEAD and the right key get 200."""
    g = env.gateway("m-key", METRICS_KEY=KEY)
    for headers in (None, {"Authorization": "Bearer wrong-key-0123456789"},
                    {"Authorization": KEY}, {"Authorization": "Basic " + KEY}):
        st, h, body = http(g.port, "GET", "/metrics", headers=headers)
        eq(st, 401, "GET /metrics with %r" % headers)
        check('"error":"unauthorized"' in body, "the 401's body")
        check(KEY not in body, "the key is not echoed")
    a, text = scrape(g, {"Authorization": "Bearer " + KEY})
    eq(a['ssegate_http_requests_total{route="/metrics",code="401"}'], 4, "401s counted")
    eq(http(g.port, "HEAD", "/metrics", headers={"Authorization": "Bearer " + KEY})[0], 200,
       "HEAD")
    check(KEY not in g.proc.output(), "the key is in no log line")
    promtool_check(text)


def test_rate_limited(env):
    g = env.gateway("m-rate", RATE_LIMIT_WRITES="3/60s")
    uid = env.account(g)                    # write 1
    env.event(g, uid)                       # 2
    env.event(g, uid)                       # 3
    eq(post_json(g.port, "/events", {"userId": uid, "type": "m"})[0], 429, "write 4")
    a, _ = scrape(g)
    eq(a["ssegate_rate_limited_total"], 1, "rate limited")
    eq(a['ssegate_http_requests_total{route="/events",code="429"}'], 1, "the 429")


def test_redis_down_and_back(env):
    """Redis stops: redis_up goes to 0; it comes back: 1, and one
    reconnect is counted."""
    r = Redis(env.work.path)
    try:
        g = env.gateway("m-redis", redis=r)
        a, _ = scrape(g)
        eq((a["ssegate_redis_up"], a["ssegate_redis_reconnects_total"]), (1, 0), "up")
        r.stop()
        wait_metric(g, "ssegate_redis_up", 0)
        r.start()
        wait_metric(g, "ssegate_redis_up", 1, timeout=20)
        a, text = scrape(g)
        eq(a["ssegate_redis_reconnects_total"], 1, "one reconnect")
        promtool_check(text)
    finally:
        if r.proc.alive():
            r.stop()


TESTS = [test_counts_after_known_actions, test_requests_by_route_and_code, test_metrics_key,
         test_rate_limited, test_redis_down_and_back]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, lambda: Env(BIN)))
