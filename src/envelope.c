/* envelope.c -- the JSON event envelope. Builds the part of it that C
 * knows before Redis assigns the id (json-c), and reads the few fields
 * the subscriber needs from a channel message (strictjson_scan_object,
 * no allocation). Pure; the one
 * string it returns belongs to the caller. */
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "strictjson.h"

int
envelope_type_valid(const char *s, size_t len)
{
    if (len == 0 || len > SSE_EVENT_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int
envelope_type_fires_handler(const char *type)
{
    return strcmp(type, "error") == 0 || strcmp(type, "open") == 0;
}

int
envelope_type_reserved(const char *type)
{
    static const char *const emitted[] = {
        "account.created", "snapshot", "gap", "token-expired"
    };

    for (size_t i = 0; i < sizeof(emitted) / sizeof(emitted[0]); i++) {
        if (strcmp(type, emitted[i]) == 0)
            return 1;
    }
    return strncmp(type, "presence.", 9) == 0 || envelope_type_fires_handler(type);
}

/* s as a JSON string's contents, escaped byte by byte as json-c writes
 * a string (strictjson_escape_byte), so envelopes are what they always
 * were and write.lua finds presence's \u0001 and \u0003. Writes at out
 * unless out is NULL; returns the length either way. Without json-c
 * objects, building an envelope allocates only the envelope (it is on
 * every write's path). */
static size_t
envelope_escape(char *out, const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        char esc[6];
        size_t k = strictjson_escape_byte((unsigned char)*s, esc);

        if (out != NULL)
            memcpy(out + n, esc, k);
        n += k;
    }
    return n;
}

/* Appends len bytes of s at out + n (out NULL: only counts); returns
 * the new length. */
static size_t
envelope_put(char *out, size_t n, const char *s, size_t len)
{
    if (out != NULL)
        memcpy(out + n, s, len);
    return n + len;
}

#define ENVELOPE_PUT_LIT(out, n, lit) envelope_put(out, n, lit, sizeof(lit) - 1)

/* Writes "type":"T","F":"W","data":D,"serverId":"S","ts":N} at out
 * (out NULL: only counts) and returns its length: called once to size
 * the envelope, once to fill it. */
static size_t
envelope_write_rest(char *out, const char *type, const char *field, const char *whom,
                    const char *data_json, size_t data_len,
                    const char *server_id, const char *ts, size_t ts_len)
{
    size_t n = ENVELOPE_PUT_LIT(out, 0, "\"type\":\"");

    n += envelope_escape(out != NULL ? out + n : NULL, type);
    n = ENVELOPE_PUT_LIT(out, n, "\",\"");
    n = envelope_put(out, n, field, strlen(field));
    n = ENVELOPE_PUT_LIT(out, n, "\":\"");
    n += envelope_escape(out != NULL ? out + n : NULL, whom);
    n = ENVELOPE_PUT_LIT(out, n, "\",\"data\":");
    n = envelope_put(out, n, data_json, data_len);
    n = ENVELOPE_PUT_LIT(out, n, ",\"serverId\":\"");
    n += envelope_escape(out != NULL ? out + n : NULL, server_id);
    n = ENVELOPE_PUT_LIT(out, n, "\",\"ts\":");
    n = envelope_put(out, n, ts, ts_len);
    return ENVELOPE_PUT_LIT(out, n, "}");
}

/* The rest of an envelope addressed by field ("userId" or "topic") =
 * whom. */
static char *
envelope_build_rest_for(const char *type, const char *field, const char *whom,
                        const char *data_json, size_t data_len,
                        const char *server_id, int64_t ts_ms)
{
    char ts[24], *out;
    int tsn = snprintf(ts, sizeof(ts), "%lld", (long long)ts_ms);
    size_t n;

    if (tsn < 0)
        return NULL;
    n = envelope_write_rest(NULL, type, field, whom, data_json, data_len, server_id,
                            ts, (size_t)tsn);
    if ((out = malloc(n + 1)) == NULL)
        return NULL;
    envelope_write_rest(out, type, field, whom, data_json, data_len, server_id,
                        ts, (size_t)tsn);
    out[n] = '\0';
    return out;
}

char *
envelope_build_rest(const char *type, const char *user_id,
                    const char *data_json, size_t data_len,
                    const char *server_id, int64_t ts_ms)
{
    return envelope_build_rest_for(type, "userId", user_id, data_json, data_len,
                                   server_id, ts_ms);
}

char *
envelope_build_topic_rest(const char *type, const char *topic,
                          const char *data_json, size_t data_len,
                          const char *server_id, int64_t ts_ms)
{
    return envelope_build_rest_for(type, "topic", topic, data_json, data_len,
                                   server_id, ts_ms);
}

/* The top-level members envelope_parse_for reads, as
 * strictjson_scan_object reports them: the last of a name wins, as in
 * json-c. Nothing is copied until the whole text is known to be valid. */
struct envelope_members {
    struct strictjson_member user, type, id, server, ts;
    int has_user, has_type, has_id, has_server, has_ts;
};

static void
envelope_member(void *ctx, const struct strictjson_member *m)
{
    struct envelope_members *e = ctx;

    if (strictjson_key_is(m->key, "userId")) {
        e->user = *m;
        e->has_user = 1;
    } else if (strictjson_key_is(m->key, "type")) {
        e->type = *m;
        e->has_type = 1;
    } else if (strictjson_key_is(m->key, "id")) {
        e->id = *m;
        e->has_id = 1;
    } else if (strictjson_key_is(m->key, "serverId")) {
        e->server = *m;
        e->has_server = 1;
    } else if (strictjson_key_is(m->key, "ts")) {
        e->ts = *m;
        e->has_ts = 1;
    }
}

/* A string member unescaped into buf (cap bytes, NUL-terminated, an
 * escaped \u0000 kept as json-c keeps it): its length, or -1 if it is
 * not a string or does not fit. */
static long
envelope_string(const struct strictjson_member *m, char *buf, size_t cap)
{
    size_t n;

    if (m->kind != STRICTJSON_STRING ||
        strictjson_string_unescape(m->value, buf, cap, &n) == -1)
        return -1;
    return (long)n;
}

/* A userId from the channel: a non-empty string of at most cap - 1 bytes
 * without control characters (it becomes a hub key and a log field), or
 * a non-negative integer. out is written only on success. */
static int
envelope_read_user(const struct strictjson_member *m, char *out, size_t cap)
{
    char s[ENVELOPE_USER_MAX + 1];
    long got;
    size_t n;

    if (m->kind == STRICTJSON_INT) {
        /* json-c keeps integers up to UINT64_MAX exactly and saturates
         * beyond, so UINT64_MAX itself may be a different number; "-0"
         * is 0. */
        int64_t i64;
        uint64_t id;

        strictjson_int_value(m->value, &i64, &id);
        if (i64 < 0 || id == UINT64_MAX)
            return -1;
        snprintf(out, cap, "%llu", (unsigned long long)id);
        return 0;
    }
    if (cap > sizeof(s))
        cap = sizeof(s);
    if ((got = envelope_string(m, s, cap)) <= 0)
        return -1;                  /* not a string, empty, or too long */
    n = (size_t)got;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *u = (const unsigned char *)s;

        /* C0 (an escaped NUL included), DEL, and C1, which is
         * U+0080..U+009F encoded as C2 80..C2 9F. */
        if (u[i] < 0x20 || u[i] == 0x7f ||
            (u[i] == 0xc2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f))
            return -1;
    }
    memcpy(out, s, n + 1);
    return 0;
}

/* topic: the message came on a topic's channel, which names its
 * recipients: no userId is needed (one given is ignored). The message
 * is read by strictjson_scan_object, not json-c: this runs for every
 * event, and the scanner allocates nothing. */
static int
envelope_parse_for(const char *msg, size_t len, int topic, struct envelope_view *out,
                   char *err, size_t errlen)
{
    struct envelope_members e;
    const char *why = NULL;
    char buf[ENVELOPE_SERVER_MAX + SSE_EVENT_MAX + EVENTID_STR_MAX + 1];
    long n;

    memset(out, 0, sizeof(*out));
    memset(&e, 0, sizeof(e));
    if (strictjson_scan_object(msg, len, envelope_member, &e, &why) == -1) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (!topic && (!e.has_user ||
                   envelope_read_user(&e.user, out->user_id, sizeof(out->user_id)) == -1)) {
        why = "userId must be a non-empty string or a non-negative integer";
        goto err;
    }
    /* What EventSource dispatches an event without "event:" as. */
    snprintf(out->type, sizeof(out->type), "%s", "message");
    if (e.has_type) {
        if ((n = envelope_string(&e.type, buf, SSE_EVENT_MAX + 1)) == -1 ||
            !envelope_type_valid(buf, (size_t)n)) {
            why = "type must be 1 to 64 of A-Z a-z 0-9 . _ -";
            goto err;
        }
        if (envelope_type_fires_handler(buf)) {
            why = "type error or open would fire a client's own handler";
            goto err;
        }
        memcpy(out->type, buf, (size_t)n + 1);
    }
    /* An id we cannot read would break Last-Event-ID ordering, so it
     * rejects the message rather than being dropped. One too long for
     * buf is too long for eventid_parse. */
    if (e.has_id) {
        if ((n = envelope_string(&e.id, buf, EVENTID_STR_MAX)) == -1 ||
            eventid_parse(buf, (size_t)n, &out->id) == -1) {
            why = "id must be a string \"<ms>-<seq>\"";
            goto err;
        }
        out->has_id = 1;
    }
    /* Only used to recognise our own events (publish backpressure), so
     * an odd serverId is ignored rather than rejected. */
    if (e.has_server &&
        (n = envelope_string(&e.server, buf, ENVELOPE_SERVER_MAX + 1)) != -1)
        memcpy(out->server_id, buf, (size_t)n + 1);
    /* Only for the delivery delay metric: an odd ts is ignored. */
    if (e.has_ts && e.ts.kind == STRICTJSON_INT) {
        int64_t ts;
        uint64_t ignored;

        strictjson_int_value(e.ts.value, &ts, &ignored);
        if (ts > 0)
            out->ts_ms = ts;
    }
    return 0;
err:
    snprintf(err, errlen, "%s", why);
    return -1;
}

int
envelope_parse(const char *msg, size_t len, struct envelope_view *out,
               char *err, size_t errlen)
{
    return envelope_parse_for(msg, len, 0, out, err, errlen);
}

int
envelope_parse_topic(const char *msg, size_t len, struct envelope_view *out,
                     char *err, size_t errlen)
{
    return envelope_parse_for(msg, len, 1, out, err, errlen);
}
