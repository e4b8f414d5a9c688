#!/usr/bin/env python3
"""Stream tokens (secure mode): a real redis-server and ssegate instances on
loopback, real HTTP; prints TAP.

  SSEGATE_BIN=path/to/ssegate tests/integration/test_auth.py [-k substr]

Four gateways: "hs" (AUTH_SECRET), "rs" (an RSA public key: RS256), "es"
(an EC P-256 public key, ES256, with AUTH_ISSUER and AUTH_AUDIENCE) and
"open" (no AUTH_*). Keys are made with the openssl command in the suite's
temporary directory; test tokens are signed here, HS256 with hmac from the
standard library and RS256/ES256 with `openssl dgst -sign` (an ES256
signature is the DER ECDSA-Sig-Value turned into raw r||s), so nothing
depends on a Python JWT or crypto module. Every token the suite sends is
remembered, and the last test checks no gateway log holds any of them.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Gateway, Redis, SSEClient, TestFailure, Workdir,  # noqa: E402
                     check, eq, get_json, http, post_json, wait_until, run_suite)

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("SSEGATE_BIN") or os.path.join(HERE, "..", "..", "ssegate")
SECRET = "test-secret-0123456789-abcdefghij-0123"     # 38 bytes
TTL = 600               # AUTH_TOKEN_TTL_SECS of "hs"
ISS = "https://idp.test"
AUD = "ssegate-test"
KEY = "publish-key-0123456789abcdef"    # PUBLISH_KEYS of the secure gateways
WRITE = {"Authorization": "Bearer " + KEY}
CHALLENGE = 'Bearer realm="ssegate"'
CHALLENGE_INVALID = 'Bearer realm="ssegate", error="invalid_token"'
EXPIRED_FRAME = 'event: token-expired\ndata: {"type":"token-expired"}\n\n'

SENT = set()            # every token sent, for test_tokens_never_logged


# ------------------------------------------------------------------ tokens

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def compact(obj):
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def openssl_sign(keyfile, data):
    r = subprocess.run(["openssl", "dgst", "-sha256", "-sign", keyfile], input=data,
                       capture_output=True, timeout=10)
    if r.returncode != 0:
        raise TestFailure("openssl dgst -sign: %s" % r.stderr.decode())
    return r.stdout


def der_to_raw(der, n=32):
    """An ECDSA-Sig-Value (SEQUENCE of INTEGER r, s) as JOSE's r||s."""
    check(der[0] == 0x30, "DER sequence")
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b""
    for _ in range(2):
        check(der[i] == 0x02, "DER integer")
        ln = der[i + 1]
        v = der[i + 2:i + 2 + ln].lstrip(b"\0")
        out += v.rjust(n, b"\0")
        i += 2 + ln
    return out


def token(claims, alg="HS256", key=SECRET, header=None):
    """A compact JWS of claims: alg HS256 (key: the secret, str or bytes),
    RS256 or ES256 (key: a private key file), or none."""
    h = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = (compact(h) + "." + compact(claims)).encode()
    if alg == "HS256":
        k = key.encode() if isinstance(key, str) else key
        sig = hmac.new(k, signing_input, hashlib.sha256).digest()
    elif alg == "RS256":
        sig = openssl_sign(key, signing_input)
    elif alg == "ES256":
        sig = der_to_raw(openssl_sign(key, signing_input))
    else:
        sig = b""
    t = signing_input.decode() + "." + b64url(sig)
    SENT.add(t)
    return t


def user_token(sub, ttl=300, **extra):
    now = int(time.time())
    return token(dict({"sub": sub, "iat": now, "exp": now + ttl}, **extra))


def verify_hs256(t, secret=SECRET):
    """The claims of an HS256 token whose signature checks out."""
    h, p, s = t.split(".")
    eq(json.loads(b64url_decode(h)), {"alg": "HS256", "typ": "JWT"}, "token header")
    want = hmac.new(secret.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    check(hmac.compare_digest(b64url_decode(s), want), "the token's signature verifies")
    return json.loads(b64url_decode(p))


# ------------------------------------------------------------------- setup

class Env:
    def __init__(self):
        self.work = Workdir()
        self.redis = Redis(self.work.path)
        d = self.work.path
        self.rsa_key, self.rsa_pub = self.keypair("rsa", ["-algorithm", "RSA", "-pkeyopt",
                                                          "rsa_keygen_bits:2048"])
        self.ec_key, self.ec_pub = self.keypair("ec", ["-algorithm", "EC", "-pkeyopt",
                                                       "ec_paramgen_curve:P-256"])
        common = {"LOG_LEVEL": "debug", "HTTP_THREADS": 1, "WRITER_THREADS": 1}
        self.hs = Gateway(BIN, self.redis, d, "hs", AUTH_SECRET=SECRET,
                          AUTH_TOKEN_TTL_SECS=TTL, PUBLISH_KEYS=KEY, **common)
        self.rs = Gateway(BIN, self.redis, d, "rs", AUTH_PUBLIC_KEY_FILE=self.rsa_pub,
                          PUBLISH_KEYS=KEY, **common)
        self.es = Gateway(BIN, self.redis, d, "es", AUTH_PUBLIC_KEY_FILE=self.ec_pub,
                          AUTH_ISSUER=ISS, AUTH_AUDIENCE=AUD, PUBLISH_KEYS=KEY, **common)
        self.open = Gateway(BIN, self.redis, d, "open", **common)

    def keypair(self, name, genopts):
        key = os.path.join(self.work.path, name + ".key")
        pub = os.path.join(self.work.path, name + ".pub")
        for argv in (["openssl", "genpkey"] + genopts + ["-out", key],
                     ["openssl", "pkey", "-in", key, "-pubout", "-out", pub]):
            r = subprocess.run(argv, capture_output=True, timeout=60)
            if r.returncode != 0:
                raise TestFailure("%s: %s" % (" ".join(argv), r.stderr.decode()))
        return key, pub

    def account(self, g=None):
        st, _, acct = post_json((g or self.open).port, "/accounts", {"name": "Ada"},
                                headers=WRITE)
        eq(st, 201, "POST /accounts status")
        return acct["id"]

    def event(self, user, type_="note", data=None):
        st, _, body = post_json(self.open.port, "/events",
                                {"userId": user, "type": type_, "data": data})
        eq(st, 202, "POST /events status (%r)" % body)
        return body["id"]

    def gateways(self):
        return [self.hs, self.rs, self.es, self.open]

    def close(self):
        codes = {g.name: g.stop() for g in self.gateways()}
        self.redis.stop()
        return codes


def open_ok(g, query="", headers=None):
    c = SSEClient(g.port, query, headers=headers)
    eq(c.status, 200, "stream status (%s)" % getattr(c, "error_body", ""))
    c.wait(lambda s: s.retry is not None and s.comments, 5, "retry and hello comment")
    return c


def refused(g, query="", headers=None):
    """A GET /events/sse that must be refused: (status, headers, body dict)."""
    st, h, body = http(g.port, "GET", "/events/sse" + ("?" + query if query else ""),
                       headers=headers)
    check(st != 200, "refused, got 200")
    return st, h, json.loads(body)


def expect_401(g, query, headers, message, invalid=True):
    st, h, body = refused(g, query, headers)
    eq(st, 401, "status")
    eq(h.get("www-authenticate"), CHALLENGE_INVALID if invalid else CHALLENGE,
       "WWW-Authenticate")
    eq(h.get("content-type"), "application/json; charset=utf-8", "Content-Type")
    eq(body, {"error": "unauthorized", "message": message}, "body")


def expect_403(g, query, headers, message):
    st, h, body = refused(g, query, headers)
    eq(st, 403, "status")
    check("www-authenticate" not in h, "no challenge on a 403: %r" % h)
    eq(body, {"error": "forbidden", "message": message}, "body")


def bearer(t):
    return {"Authorization": "Bearer " + t}


def streams(g):
    st, _, body = get_json(g.port, "/health")
    eq(st, 200, "/health")
    return body["streams"]


# ------------------------------------------------------------------- tests

def test_open_mode_unchanged(env):
    uid = env.account()
    c = open_ok(env.open, "userId=" + uid)
    c.close()
    # A token, even a bad one, is nobody's business in open mode.
    c = open_ok(env.open, "userId=" + uid, {"Authorization": "Bearer not.a.token"})
    c.close()
    c = open_ok(env.open)                   # the firehose
    c.close()
    st, _, acct = post_json(env.open.port, "/accounts", {"name": "Bo"})
    eq(st, 201, "POST /accounts")
    eq(sorted(acct), ["balance", "createdAt", "id", "name"], "no token in open mode")


def test_no_token(env):
    uid = env.account()
    before = streams(env.hs)
    msg = ("this stream needs a token (Authorization: Bearer, the token parameter "
           "or the ssegate_token cookie)")
    expect_401(env.hs, "userId=" + uid, None, msg, invalid=False)
    expect_401(env.hs, "", None, msg, invalid=False)
    # Another scheme is not a token; empty places are no token.
    expect_401(env.hs, "userId=" + uid + "&token=", {"Authorization": "Basic dTpw",
                                                     "Cookie": "ssegate_token="},
               msg, invalid=False)
    expect_401(env.rs, "userId=" + uid, None, msg, invalid=False)
    eq(streams(env.hs), before, "no stream was made")
    # The userId is checked first; a refusal never reaches Redis.
    st, _, body = refused(env.hs, "userId=abc")
    eq(st, 400, "bad userId")


def test_three_places(env):
    uid = env.account()
    good = user_token(uid)
    bad = user_token(uid)[:-4] + "AAAA"
    SENT.add(bad)
    for q, h in ((None, bearer(good)), ("token=" + good, None),
                 (None, {"Cookie": "theme=dark; ssegate_token=" + good}),
                 ("token=" + good, {"Authorization": "Basic dTpw"})):
        c = open_ok(env.hs, "userId=" + uid + ("&" + q if q else ""), h)
        eid = env.event(uid, "place")
        ev = c.wait_events(1)[0]
        eq((ev.id, ev.event), (eid, "place"), "the event on a stream opened with %r/%r" % (q, h))
        c.close()
    # The header wins, and a bad one is not made up for by a good parameter.
    c = open_ok(env.hs, "userId=%s&token=%s" % (uid, bad), bearer(good))
    c.close()
    expect_401(env.hs, "userId=%s&token=%s" % (uid, good), bearer(bad),
               "the token's signature does not verify")
    expect_401(env.hs, "userId=" + uid, {"Cookie": "ssegate_token=" + good,
                                         "Authorization": "Bearer " + bad},
               "the token's signature does not verify")
    # The parameter wins over the cookie.
    expect_401(env.hs, "userId=%s&token=%s" % (uid, bad),
               {"Cookie": "ssegate_token=" + good}, "the token's signature does not verify")


def test_other_user(env):
    a, b = env.account(), env.account()
    expect_403(env.hs, "userId=" + b, bearer(user_token(a)), "the token is for another user")
    expect_403(env.hs, "userId=" + a + "0", bearer(user_token(a)), "the token is for another user")


def test_firehose_claim(env):
    uid = env.account()
    expect_403(env.hs, "", bearer(user_token(uid)), "the token does not open the firehose")
    expect_403(env.hs, "", bearer(user_token(uid, firehose=False)),
               "the token does not open the firehose")
    fire = user_token("ops", firehose=True)
    c = open_ok(env.hs, "", bearer(fire))
    eid = env.event(uid, "fire")
    c.wait(lambda s: any(e.id == eid for e in s.events), 5, "the event on the firehose")
    c.close()
    # The firehose sees every user, so its token opens any one user too.
    c = open_ok(env.hs, "userId=" + uid, bearer(fire))
    c.close()
    expect_401(env.hs, "", bearer(user_token("ops", firehose="yes")),
               "the token's firehose is not a boolean")


def test_invalid_tokens(env):
    uid = env.account()
    now = int(time.time())
    q = "userId=" + uid
    expect_401(env.hs, q, bearer(token({"sub": uid, "exp": now - 1})), "the token has expired")
    expect_401(env.hs, q, bearer(token({"sub": uid, "nbf": now + 300, "exp": now + 600})),
               "the token is not valid yet (nbf)")
    expect_401(env.hs, q, bearer(token({"sub": uid}, alg="none")),
               "unsigned tokens (alg none) are refused")
    # "none" in any case, even with a signature, is none.
    expect_401(env.hs, q, bearer(token({"sub": uid}, alg="HS256", header={"alg": "None"})),
               "unsigned tokens (alg none) are refused")
    # The same claims under another secret, and a payload swapped under a
    # good signature.
    expect_401(env.hs, q, bearer(token({"sub": uid, "exp": now + 60},
                                       key="another-secret-of-32-bytes-or-more!")),
               "the token's signature does not verify")
    good = user_token(uid)
    h, _, s = good.split(".")
    forged = h + "." + compact({"sub": uid, "exp": now + 99999, "firehose": True}) + "." + s
    SENT.add(forged)
    expect_401(env.hs, "", bearer(forged), "the token's signature does not verify")
    expect_401(env.hs, q, bearer(token({"sub": uid}, header={"alg": "HS512", "typ": "JWT"})),
               "the token's alg is not HS256, RS256 or ES256")
    expect_401(env.hs, q, bearer("a.b"), "the token is not three dot-separated parts")
    expect_401(env.hs, q, bearer(good.replace(".", "!.", 1)), "a part of the token is not base64url")
    expect_401(env.hs, q, bearer(token({"user": uid})), "the token has no sub")
    SENT.update(("a" * 5000, "b" * 4097))
    expect_401(env.hs, q, bearer("a" * 5000), "the token is longer than 4096 bytes")
    expect_401(env.hs, q + "&token=" + "b" * 4097, None, "the token is longer than 4096 bytes")


def test_hs256_refused_with_public_key(env):
    """Algorithm confusion: HS256 keyed with the public key's own PEM text,
    which anyone can read, must not verify."""
    uid = env.account()
    with open(env.rsa_pub, "rb") as f:
        pem = f.read()
    for g in (env.rs, env.es):
        expect_401(g, "userId=" + uid, bearer(user_token(uid)), "HS256 tokens are not accepted here")
        forged = token({"sub": uid, "iss": ISS, "aud": AUD}, key=pem)
        expect_401(g, "userId=" + uid, bearer(forged), "HS256 tokens are not accepted here")
    with open(env.ec_pub, "rb") as f:
        forged = token({"sub": uid, "iss": ISS, "aud": AUD}, key=f.read())
    expect_401(env.es, "userId=" + uid, bearer(forged), "HS256 tokens are not accepted here")


def test_rs256(env):
    uid = env.account()
    now = int(time.time())
    t = token({"sub": uid, "exp": now + 300}, alg="RS256", key=env.rsa_key)
    c = open_ok(env.rs, "userId=" + uid, bearer(t))
    eid = env.event(uid, "rs")
    eq(c.wait_events(1)[0].id, eid, "the event on an RS256 stream")
    c.close()
    expect_401(env.rs, "userId=" + uid,
               bearer(token({"sub": uid}, alg="ES256", key=env.ec_key)),
               "ES256 tokens are not accepted here")
    h, p, s = t.split(".")
    forged = h + "." + compact({"sub": uid, "exp": now + 300, "firehose": True}) + "." + s
    SENT.add(forged)
    expect_401(env.rs, "", bearer(forged), "the token's signature does not verify")
    expect_403(env.rs, "userId=" + env.account(), bearer(t), "the token is for another user")


def test_es256_issuer_audience(env):
    uid = env.account()
    now = int(time.time())
    claims = {"sub": uid, "exp": now + 300, "iss": ISS, "aud": [AUD, "other"]}
    t = token(claims, alg="ES256", key=env.ec_key)
    c = open_ok(env.es, "token=" + t + "&userId=" + uid)
    eid = env.event(uid, "es")
    eq(c.wait_events(1)[0].id, eid, "the event on an ES256 stream")
    c.close()
    expect_401(env.es, "userId=" + uid,
               bearer(token(dict(claims, aud="other"), alg="ES256", key=env.ec_key)),
               "the token is not for this audience")
    expect_401(env.es, "userId=" + uid,
               bearer(token(dict(claims, iss="https://evil.test"), alg="ES256", key=env.ec_key)),
               "the token is not from the expected issuer")
    expect_401(env.es, "userId=" + uid, bearer(token(claims, alg="RS256", key=env.rsa_key)),
               "RS256 tokens are not accepted here")
    # The right key signing with the wrong curve's hash length is no ES256.
    h, p, s = t.split(".")
    short = h + "." + p + "." + b64url(b64url_decode(s)[:63])
    SENT.add(short)
    expect_401(env.es, "userId=" + uid, bearer(short), "the token's signature does not verify")


def test_token_expired_on_open_stream(env):
    """At exp the stream gets one token-expired event, then the chunked
    body's end; the client reopens with a fresh token from the last id it
    saw and misses nothing."""
    uid = env.account()
    now = time.time()
    exp = int(now) + 3              # 2 to 3 s from now
    c = open_ok(env.hs, "userId=" + uid, bearer(token({"sub": uid, "exp": exp})))
    first = env.event(uid, "before")
    eq(c.wait_events(1)[0].id, first, "a live event before the expiry")
    c.wait(lambda s: s.eof or s.closed, exp - time.time() + 3, "the stream to end at exp")
    ended = time.time()
    check(ended >= exp - 0.05, "ended %.3fs before exp" % (exp - ended))
    check(c.eof, "a clean end (the chunked body's last chunk), not a cut connection")
    eq(c.raw, b"", "nothing after the last chunk")
    eq([(e.id, e.event, e.data) for e in c.events[1:]],
       [(None, "token-expired", '{"type":"token-expired"}')], "the events after the live one")
    # After an event's blank line or a comment's line end.
    check(c.text.endswith(EXPIRED_FRAME) and c.text[:-len(EXPIRED_FRAME)].endswith("\n"),
          "the last frame, exactly: %r" % c.text[-120:])
    c.close()
    wait_until(lambda: "user=%s closed: token_expired" % uid in env.hs.proc.output(), 5,
               "the teardown's log line")
    # Meanwhile, an event the closed stream did not get.
    missed = env.event(uid, "missed")
    c = open_ok(env.hs, "userId=" + uid, dict(bearer(user_token(uid)), **{"Last-Event-ID": first}))
    eq([e.id for e in c.wait_events(1)], [missed], "the event missed while reconnecting")
    c.close()


def test_expired_before_handoff(env):
    """A token whose exp comes while the stream opens ends it right after
    its hello, cleanly (the check at open passed, the writer's at attach
    did not)."""
    uid = env.account()
    # exp just ahead: whichever side of it the open lands on, the answer is
    # a 401 or a stream that ends with token-expired at once.
    exp = int(time.time()) + 1
    t = token({"sub": uid, "exp": exp})
    wait_until(lambda: time.time() >= exp - 0.01, 2, "exp to be close")
    c = SSEClient(env.hs.port, "userId=" + uid, headers=bearer(t))
    if c.status == 200:
        c.wait_eof(5)
        check(c.eof, "a clean end")
        check(c.text.endswith(EXPIRED_FRAME), "token-expired last: %r" % c.text)
    else:
        eq(c.status, 401, "status")
        eq(json.loads(c.error_body)["message"], "the token has expired", "message")
    c.close()


def test_accounts_token(env):
    st, h, body = http(env.hs.port, "POST", "/accounts", {"name": "Ada", "balance": 5},
                       headers=WRITE)
    eq(st, 201, "status")
    acct = json.loads(body)
    eq(list(acct), ["id", "name", "balance", "createdAt", "token"], "fields, token last")
    SENT.add(acct["token"])
    claims = verify_hs256(acct["token"])
    eq(claims["sub"], acct["id"], "sub")
    eq(claims["exp"] - claims["iat"], TTL, "exp - iat (AUTH_TOKEN_TTL_SECS)")
    check(abs(claims["exp"] - (time.time() + TTL)) < 5, "exp is now + TTL: %r" % claims)
    check("firehose" not in claims, "no firehose claim")
    c = open_ok(env.hs, "userId=" + acct["id"], bearer(acct["token"]))
    c.close()
    # Without AUTH_SECRET there is nothing to sign with: no token field.
    st, _, other = post_json(env.rs.port, "/accounts", {"name": "Bo"}, headers=WRITE)
    eq(st, 201, "status on rs")
    check("token" not in other, "no token from a gateway without AUTH_SECRET: %r" % other)


def test_accounts_token_idempotent(env):
    """The kept answer is replayed byte for byte, and its token signed
    anew: the kept copy in Redis holds none."""
    key = "auth-idem-%d" % time.monotonic_ns()
    h = dict(WRITE, **{"Idempotency-Key": key})
    st, _, first = http(env.hs.port, "POST", "/accounts", {"name": "Cy"}, headers=h)
    eq(st, 201, "first status")
    t1 = json.loads(first)["token"]
    SENT.add(t1)
    c1 = verify_hs256(t1)
    kept = env.redis.cli("GET", "ssegate:idem:accounts:" + key)
    check(kept != "" and "token" not in kept and t1 not in kept,
          "the kept answer holds no token: %r" % kept)
    # iat and exp are whole seconds: a later second shows a fresh token.
    wait_until(lambda: int(time.time()) > c1["iat"], 2, "the next second")
    st, hdrs, again = http(env.hs.port, "POST", "/accounts", {"name": "Cy"}, headers=h)
    eq(st, 201, "replay status")
    t2 = json.loads(again)["token"]
    SENT.add(t2)
    c2 = verify_hs256(t2)
    eq(again.replace(t2, "T"), first.replace(t1, "T"), "the replayed answer, but its token")
    eq(c2["sub"], c1["sub"], "the same account")
    check(c2["exp"] > c1["exp"], "a fresh token: %r then %r" % (c1, c2))
    eq(hdrs.get("location"), "/accounts/" + c1["sub"], "Location")
    c = open_ok(env.hs, "userId=" + c2["sub"], bearer(t2))
    c.close()


def test_account_read(env):
    """GET /accounts/ID in secure mode: a publish key, or a stream token
    whose sub is that account (or the firehose claim), reads it, from any
    of a stream's three places; another user's valid token is 403; no
    credential 401; a bad token (or a Bearer value that is neither a key
    nor a token) 401 invalid_token, exactly as a stream open answers."""
    g = env.hs
    a, b = env.account(g), env.account(g)
    path = "/accounts/" + a
    st, _, by_key = get_json(g.port, path, headers=WRITE)
    eq(st, 200, "with the publish key")
    eq(sorted(by_key), ["balance", "createdAt", "id", "name"], "the account's fields")
    eq((by_key["id"], by_key["name"], by_key["balance"]), (a, "Ada", 0), "the account")
    own = user_token(a)
    for q, h in (("", bearer(own)), ("?token=" + own, None),
                 ("", {"Cookie": "ssegate_token=" + own})):
        st, _, body = http(g.port, "GET", path + q, headers=h)
        eq((st, json.loads(body)), (200, by_key), "its own token (%r, %r)" % (q[:7], h and list(h)))
    st, _, body = http(g.port, "GET", path, headers=bearer(user_token("ops", firehose=True)))
    eq((st, json.loads(body)), (200, by_key), "a firehose token reads any account")
    # Another user's valid token: 403, no challenge.
    st, h, body = http(g.port, "GET", path, headers=bearer(user_token(b)))
    eq((st, json.loads(body)), (403, {"error": "forbidden",
                                      "message": "the token is for another user"}),
       "another user's token")
    check("www-authenticate" not in h, "no challenge on a 403: %r" % h)
    # No credential: 401, the plain challenge.
    st, h, body = http(g.port, "GET", path)
    eq((st, json.loads(body)), (401, {"error": "unauthorized",
                                      "message": "this needs Authorization: Bearer <a publish "
                                                 "key, or a stream token for this account>"}),
       "no credential")
    eq(h.get("www-authenticate"), CHALLENGE, "WWW-Authenticate without a credential")
    # A token that fails, or a Bearer value that is not a key (so it is
    # read as a token): 401 invalid_token.
    expired = token({"sub": a, "exp": int(time.time()) - 1})
    for h, msg in ((bearer(expired), "the token has expired"),
                   ({"Cookie": "ssegate_token=" + expired}, "the token has expired"),
                   (bearer(own[:-4] + ("AAAA" if not own.endswith("AAAA") else "BBBB")),
                    "the token's signature does not verify"),
                   (bearer(KEY + "x"), "the token is not three dot-separated parts")):
        SENT.add(h.get("Authorization", "")[7:])
        st, hd, body = http(g.port, "GET", path, headers=h)
        eq((st, json.loads(body)), (401, {"error": "unauthorized", "message": msg}),
           "a bad credential (%s)" % msg)
        eq(hd.get("www-authenticate"), CHALLENGE_INVALID, "WWW-Authenticate (%s)" % msg)
    # Refused before Redis is asked; let through, an unknown account is 404.
    st, _, body = http(g.port, "GET", "/accounts/999999999", headers=bearer(user_token(a)))
    eq(st, 403, "another account, unknown or not")
    st, _, body = http(g.port, "GET", "/accounts/999999999",
                       headers=bearer(user_token("999999999")))
    eq((st, json.loads(body)["error"]), (404, "not_found"), "its own token, no such account")


def run_cli(args, env_extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    e.update(env_extra or {})
    return subprocess.run([BIN, "token"] + args, env=e, capture_output=True, text=True,
                          timeout=20)


def test_cli_token(env):
    uid = env.account()
    r = run_cli(["--sub", uid, "--ttl", "60"], {"AUTH_SECRET": SECRET})
    eq((r.returncode, r.stderr), (0, ""), "exit status and stderr")
    eq(r.stdout.count("\n"), 1, "one line")
    t = r.stdout.strip()
    SENT.add(t)
    claims = verify_hs256(t)
    eq((claims["sub"], claims["exp"] - claims["iat"]), (uid, 60), "sub and lifetime")
    c = open_ok(env.hs, "userId=" + uid, bearer(t))
    c.close()
    r = run_cli(["--sub", "ops", "--firehose", "--auth-secret", SECRET])
    eq(r.returncode, 0, "--firehose exit status")
    SENT.add(r.stdout.strip())
    eq(verify_hs256(r.stdout.strip())["firehose"], True, "the firehose claim")
    c = open_ok(env.hs, "", bearer(r.stdout.strip()))
    c.close()
    r = run_cli(["--sub", uid])
    eq((r.returncode, r.stdout, r.stderr),
       (2, "", "ssegate token: AUTH_SECRET (or --auth-secret) is not set: "
               "there is no key to sign with\n"), "without a secret")
    r = run_cli(["--ttl", "5"], {"AUTH_SECRET": SECRET})
    eq((r.returncode, r.stderr), (2, "ssegate token: --sub: required (the user id the token "
                                     "is for)\n"), "without --sub")
    r = run_cli(["--sub", uid], {"AUTH_SECRET": "too short"})
    eq((r.returncode, r.stderr), (2, "ssegate token: AUTH_SECRET: 9 bytes is shorter than "
                                     "the 32 required\n"), "a short secret")


def test_tokens_endpoint(env):
    """POST /tokens: a publish key buys a stream token for any user (what
    an application's back end asks for its page); without a key 401,
    without AUTH_SECRET 404, a bad body 400. Nothing is written."""
    uid = env.account()
    keys_before = env.redis.cli("DBSIZE")
    st, h, body = post_json(env.hs.port, "/tokens", {"userId": uid, "ttlSecs": 30},
                            headers=WRITE)
    eq(st, 200, "status (%r)" % body)
    eq(sorted(body), ["expiresAt", "token", "userId"], "fields")
    SENT.add(body["token"])
    claims = verify_hs256(body["token"])
    eq((claims["sub"], claims["exp"] - claims["iat"]), (uid, 30), "sub and lifetime")
    check("firehose" not in claims, "no firehose claim: %r" % claims)
    check(abs(body["expiresAt"] / 1000 - claims["exp"]) < 1, "expiresAt is exp: %r" % body)
    open_ok(env.hs, "userId=" + uid, bearer(body["token"])).close()
    st, _, body = post_json(env.hs.port, "/tokens", {"userId": 7, "firehose": True},
                            headers=WRITE)
    eq(st, 200, "firehose token status")
    SENT.add(body["token"])
    claims = verify_hs256(body["token"])
    eq((claims["sub"], claims["firehose"], claims["exp"] - claims["iat"]), ("7", True, TTL),
       "firehose claim and the default lifetime")
    st, h, body = post_json(env.hs.port, "/tokens", {"userId": uid})
    eq((st, body["error"], h.get("www-authenticate")), (401, "unauthorized", CHALLENGE),
       "without a publish key")
    for bad, field in (({"userId": uid, "ttlSecs": 0}, "ttlSecs"),
                       ({"userId": uid, "firehose": "yes"}, "firehose"),
                       ({"ttlSecs": 5}, "userId"), ({"userId": uid, "sub": "x"}, "sub")):
        st, _, body = post_json(env.hs.port, "/tokens", bad, headers=WRITE)
        eq(st, 400, "status for %r" % bad)
        check(field in body["message"], "the message names %s: %r" % (field, body))
    st, _, body = post_json(env.rs.port, "/tokens", {"userId": uid}, headers=WRITE)
    eq((st, body["error"]), (404, "not_found"), "a gateway without AUTH_SECRET signs nothing")
    eq(env.redis.cli("DBSIZE"), keys_before, "nothing written")


def test_startup_errors(env):
    """A bad key setting stops start-up: exit 2, one line naming it, and
    never the secret itself."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    bad_pem = os.path.join(env.work.path, "bad.pem")
    with open(bad_pem, "w") as f:
        f.write("not a key\n")
    cases = [
        ({"AUTH_SECRET": SECRET},
         "ssegate: secure mode (AUTH_SECRET or AUTH_PUBLIC_KEY_FILE) needs PUBLISH_KEYS: "
         "otherwise anyone may write\n"),
        ({"AUTH_PUBLIC_KEY_FILE": env.rsa_pub},
         "ssegate: secure mode (AUTH_SECRET or AUTH_PUBLIC_KEY_FILE) needs PUBLISH_KEYS: "
         "otherwise anyone may write\n"),
        ({"AUTH_SECRET": "s3cr3t-but-short"},
         "ssegate: AUTH_SECRET: 16 bytes is shorter than the 32 required\n"),
        ({"AUTH_PUBLIC_KEY_FILE": env.rsa_key},
         "ssegate: AUTH_PUBLIC_KEY_FILE: %s holds no PEM public key (-----BEGIN PUBLIC "
         "KEY-----; from a certificate: openssl x509 -pubkey -noout -in CERT)\n" % env.rsa_key),
        ({"AUTH_PUBLIC_KEY_FILE": bad_pem},
         "ssegate: AUTH_PUBLIC_KEY_FILE: %s holds no PEM public key (-----BEGIN PUBLIC "
         "KEY-----; from a certificate: openssl x509 -pubkey -noout -in CERT)\n" % bad_pem),
        ({"AUTH_PUBLIC_KEY_FILE": bad_pem + ".missing"},
         "ssegate: AUTH_PUBLIC_KEY_FILE: cannot open %s.missing: No such file or directory\n"
         % bad_pem),
    ]
    for extra, want in cases:
        r = subprocess.run([BIN, "--port", "1"], env=dict(base, **extra), capture_output=True,
                           text=True, timeout=20)
        eq((r.returncode, r.stdout, r.stderr), (2, "", want), "start-up with %r" % extra)


def test_refusals_logged_without_tokens(env):
    uid = env.account()
    t = token({"sub": uid, "exp": int(time.time()) - 5})
    expect_401(env.hs, "userId=%s&token=%s" % (uid, t), None, "the token has expired")
    line = "/events/sse refused: the token has expired (user=%s)" % uid
    wait_until(lambda: line in env.hs.proc.output(), 5, "the refusal's log line")


def test_tokens_never_logged(env):
    """Last: no token this suite sent or received, nor the secret, is in
    any gateway's output (LOG_LEVEL=debug)."""
    check(len(SENT) > 10, "tokens were sent: %d" % len(SENT))
    for g in env.gateways():
        out = g.proc.output()
        check(SECRET not in out, "the secret in %s's log" % g.name)
        for t in SENT:
            # The signature is the secret part of a token; a header alone is not.
            check(t.split(".")[-1] not in out or len(t.split(".")[-1]) < 8,
                  "a token in %s's log: %s..." % (g.name, t[:40]))


TESTS = [
    test_open_mode_unchanged,
    test_tokens_endpoint,
    test_no_token,
    test_three_places,
    test_other_user,
    test_firehose_claim,
    test_invalid_tokens,
    test_hs256_refused_with_public_key,
    test_rs256,
    test_es256_issuer_audience,
    test_token_expired_on_open_stream,
    test_expired_before_handoff,
    test_accounts_token,
    test_accounts_token_idempotent,
    test_account_read,
    test_cli_token,
    test_startup_errors,
    test_refusals_logged_without_tokens,
    test_tokens_never_logged,
]


if __name__ == "__main__":
    sys.exit(run_suite(TESTS, Env))
