#!/usr/bin/env python3
"""Redis as deployed: its persistence, read at connect -- a gateway on a
Redis that keeps neither an append-only file nor snapshots logs one
warning (a restart would start account ids again at 1); on one that
keeps either, none; on one whose CONFIG is renamed away or denied by an
ACL, none, and it serves as usual; as a REDIS_USERNAME it does not ask
(the least-privilege user has no CONFIG) -- and a full one (maxmemory,
noeviction): every write answers 503, nothing half-written, and writes
work again once there is room. Real redis-servers and gateways over
loopback. Prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_persistence.py [-k substr]
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, GatewaysEnv, Process, Redis, SSEClient, check, eq,  # noqa: E402
                     get_json, http, post_json, run_suite, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
WARNING = re.compile(r"^\S+ warn  redis: 127\.0\.0\.1:(\d+) persists nothing \(appendonly no, "
                     r"save \"\"\): if it restarts, every history is lost and account ids "
                     r"start again at 1; turn on appendonly \(docs/OPERATIONS\.md\)$", re.M)
SUBSCRIBED = "redis: subscribed to ssegate:events"


class ConfiguredRedis(Redis):
    """A redis-server with these persistence arguments (and any other)."""

    def __init__(self, workdir, args):
        self.args = args
        super().__init__(workdir)

    def start(self):
        self.proc = Process("redis-%d" % self.port,
                            ["redis-server", "--bind", HOST, "--port", str(self.port),
                             "--dir", self.dir] + self.args, os.environ.copy(), self.workdir)
        wait_until(lambda: self.ping(), 10, "redis-server to answer PING")


class Env(GatewaysEnv):
    def __init__(self, binary):
        super().__init__(binary)
        self.redises = []

    def redis_with(self, *args):
        r = ConfiguredRedis(self.work.path, list(args))
        self.redises.append(r)
        return r

    def started(self, name, redis, **env):
        """A gateway on redis, once its log says it subscribed: the
        persistence replies come before the SUBSCRIBE's, so whatever they
        made it log is written by then."""
        g = self.gateway(name, redis=redis, **env)
        wait_until(lambda: SUBSCRIBED in g.proc.output(), 10, "%s to subscribe" % name)
        return g

    def close(self):
        codes = super().close()
        for r in self.redises:
            r.stop()
        return codes


def warnings(g):
    return WARNING.findall(g.proc.output())


def test_no_persistence_warns(env):
    """appendonly no, save "": one warning line naming the Redis."""
    r = env.redis_with("--appendonly", "no", "--save", "")
    g = env.started("bare", r)
    eq(warnings(g), [str(r.port)], "the warning, once")
    # It warns and serves: a write still works.
    st, _, _ = post_json(g.port, "/accounts", {"name": "Ada"})
    eq(st, 201, "POST /accounts on a Redis without persistence")


def test_aof_quiet(env):
    """appendonly yes (the harness's Redis): no warning."""
    g = env.started("aof", env.redis)
    eq(env.redis.cli("CONFIG", "GET", "appendonly").split(), ["appendonly", "yes"], "AOF on")
    eq(warnings(g), [], "warnings with appendonly yes")
    check(re.search(r"^cmdstat_config(\|get)?:calls=[1-9]", env.redis.cli("INFO", "commandstats"), re.M),
          "the gateway asked (CONFIG GET)")
    check("persists nothing" not in g.proc.output(), "no other form of the warning")


def test_snapshots_quiet(env):
    """appendonly no but a save schedule: no warning."""
    r = env.redis_with("--appendonly", "no", "--save", "3600 1")
    g = env.started("rdb", r)
    eq(warnings(g), [], "warnings with save 3600 1")


def test_config_renamed_quiet(env):
    """CONFIG renamed away: the check is skipped without a word above
    debug, and the gateway serves."""
    r = env.redis_with("--appendonly", "no", "--save", "", "--rename-command", "CONFIG", "")
    g = env.started("renamed", r)
    out = g.proc.output()
    eq(warnings(g), [], "warnings with CONFIG renamed")
    check(re.search(r"^errorstat_ERR:count=[1-9]", r.cli("INFO", "errorstats"), re.M),
          "the gateway asked, and Redis said unknown command")
    check(not re.search(r"^\S+ (warn|error) ", out, re.M), "a warn or error line:\n%s" % out)
    st, _, h = get_json(g.port, "/health")
    eq((st, h["redis"]), (200, "up"), "/health")


def test_config_denied_quiet(env):
    """The default user denied CONFIG by an ACL: skipped quietly; the
    gateway serves as usual (no refusal logged, /health up, writes
    work)."""
    r = env.redis_with("--appendonly", "no", "--save", "")
    eq(r.cli("ACL", "SETUSER", "default", "-config"), "OK", "ACL SETUSER default -config")
    g = env.started("denied", r)
    out = g.proc.output()
    eq(warnings(g), [], "warnings with CONFIG denied")
    check(not re.search(r"^\S+ (warn|error) ", out, re.M), "a warn or error line:\n%s" % out)
    st, _, _ = post_json(g.port, "/accounts", {"name": "Ada"})
    eq(st, 201, "POST /accounts with CONFIG denied")
    # The ACL log holds the denied CONFIG GET: the check was made.
    check("config|get" in r.cli("ACL", "LOG"), "Redis logged the denied CONFIG GET")


def test_acl_user_not_asked(env):
    """As a REDIS_USERNAME (docs/API.md's least-privilege user has no
    CONFIG) nothing is asked, so Redis's ACL LOG stays empty: no warning
    even on a Redis without persistence, and no CONFIG call."""
    r = env.redis_with("--appendonly", "no", "--save", "")
    eq(r.cli("ACL", "SETUSER", "gw", "on", ">gw-password-1", "~*", "&*", "+@all"), "OK",
       "ACL SETUSER gw")
    g = env.started("acl", r, REDIS_USERNAME="gw", REDIS_PASSWORD="gw-password-1")
    eq(warnings(g), [], "warnings as an ACL user")
    check(not re.search(r"^cmdstat_config", r.cli("INFO", "commandstats"), re.M),
          "CONFIG was called as the ACL user")
    check("user=gw" in r.cli("CLIENT", "LIST"), "the gateway connected as gw")


def test_full_redis(env):
    """maxmemory reached with noeviction: POST /events, POST /accounts and
    a snapshot each get 503 redis_full with Retry-After; none of
    them wrote anything (history and firehose hold exactly the accepted
    events, the stream gets exactly those, the balance and the account
    count are unchanged); with room again, writes are accepted."""
    r = env.redis_with("--appendonly", "no", "--save", "", "--maxmemory", "3mb",
                       "--maxmemory-policy", "noeviction")
    g = env.started("full", r)
    st, _, acct = post_json(g.port, "/accounts", {"name": "Ada", "balance": 7})
    eq(st, 201, "POST /accounts before Redis is full")
    uid = acct["id"]
    c = SSEClient(g.port, "userId=" + uid)
    eq(c.status, 200, "stream status")
    accepted, refused = [], None
    for _ in range(5000):           # 2 KB each: 3 MB fills within ~1,500
        st, h, body = http(g.port, "POST", "/events",
                           {"userId": uid, "type": "fill", "data": "x" * 2000})
        if st != 202:
            refused = (st, h, body)
            break
        accepted.append(json.loads(body)["id"])
        c.pump(0)
    check(refused is not None, "Redis never filled up")
    st, h, body = refused
    eq((st, json.loads(body)["error"], h.get("retry-after")), (503, "redis_full", "1"),
       "a write to a full Redis")
    # Full it stays: the room the subscriber's drained output buffer gives
    # back would otherwise let a small write in now and then.
    r.cli("CONFIG", "SET", "maxmemory", "1")
    st, _, body = http(g.port, "POST", "/events", {"userId": uid, "type": "fill", "data": 1})
    eq((st, json.loads(body)["error"]), (503, "redis_full"), "POST /events when full")
    seq = r.cli("GET", "ssegate:account:seq")
    st, _, body = http(g.port, "POST", "/accounts", {"name": "Bob"})
    eq((st, json.loads(body)["error"]), (503, "redis_full"), "POST /accounts when full")
    st, _, body = http(g.port, "POST", "/accounts/%s/snapshots" % uid, {"balance": 99})
    eq((st, json.loads(body)["error"]), (503, "redis_full"), "a snapshot when full")
    # Nothing half-written: account.created + its first snapshot, then
    # exactly the accepted events, in both histories; no new account.
    eq(int(r.cli("XLEN", "ssegate:history:" + uid)), 2 + len(accepted), "the user's history")
    eq(int(r.cli("XLEN", "ssegate:history")), 2 + len(accepted), "the firehose")
    eq(r.cli("GET", "ssegate:account:seq"), seq, "the account counter")
    eq(r.cli("HGET", "ssegate:account:" + uid, "balance"), "7", "the balance")
    # Room again: a write is accepted, and the stream got exactly the
    # accepted events before it, each once.
    r.cli("CONFIG", "SET", "maxmemory", "0")
    last = env_event(g, uid)
    c.wait(lambda s: any(e.id == last for e in s.events), 10, "the event after the room came")
    eq([e.id for e in c.events], accepted + [last], "the stream: accepted events, then the last")
    c.close()


def env_event(g, uid):
    st, _, body = post_json(g.port, "/events", {"userId": uid, "type": "after"})
    eq(st, 202, "POST /events with room again (%r)" % body)
    return body["id"]


TESTS = [test_no_persistence_warns, test_aof_quiet, test_snapshots_quiet,
         test_config_renamed_quiet, test_config_denied_quiet, test_acl_user_not_asked,
         test_full_redis]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, lambda: Env(BIN)))
