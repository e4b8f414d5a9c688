/* envelope.c -- the JSON event envelope. Builds the part of it that C
 * knows before Redis assigns the id, and reads the few fields the
 * subscriber needs from a channel message. Pure (json-c only); the one
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

/* s as a JSON string's contents, escaped the way json-c writes a string
 * with JSON_C_TO_STRING_NOSLASHESCAPE, byte for byte (so envelopes are
 * what they always were, and write.lua finds presence's \u0001 and
 * \u0003): \" \\ \b \f \n \r \t, \u00xx for the other control bytes,
 * every other byte as it is. Writes at out unless out is NULL; returns
 * the length either way. Without json-c objects, building an envelope
 * allocates only the envelope (it is on every write's path). */
static size_t
envelope_escape(char *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t" : NULL;

        if (esc != NULL) {
            if (out != NULL)
                memcpy(out + n, esc, 2);
            n += 2;
        } else if (c < 0x20) {
            if (out != NULL) {
                memcpy(out + n, "\\u00", 4);
                out[n + 4] = hex[c >> 4];
                out[n + 5] = hex[c & 0xf];
            }
            n += 6;
        } else {
            if (out != NULL)
                out[n] = (char)c;
            n++;
        }
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

/* A userId from the channel: a non-empty string of at most cap - 1 bytes
 * without control characters (it becomes a hub key and a log field), or
 * a non-negative integer. */
static int
envelope_read_user(json_object *v, char *out, size_t cap)
{
    const unsigned char *s;
    size_t n;

    if (json_object_is_type(v, json_type_int)) {
        /* json-c keeps integers up to UINT64_MAX exactly and saturates
         * beyond, so UINT64_MAX itself may be a different number. */
        uint64_t id = json_object_get_uint64(v);

        if (json_object_get_int64(v) < 0 || id == UINT64_MAX)
            return -1;
        snprintf(out, cap, "%llu", (unsigned long long)id);
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -1;
    s = (const unsigned char *)json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (n == 0 || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        /* C0 (NUL included: get_string_len sees past it), DEL, and C1,
         * which is U+0080..U+009F encoded as C2 80..C2 9F. */
        if (s[i] < 0x20 || s[i] == 0x7f ||
            (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f))
            return -1;
    }
    memcpy(out, s, n + 1);
    return 0;
}

/* topic: the message came on a topic's channel, which names its
 * recipients: no userId is needed (one given is ignored). */
static int
envelope_parse_for(const char *msg, size_t len, int topic, struct envelope_view *out,
                   char *err, size_t errlen)
{
    const char *why = NULL;
    json_object *o, *v;

    memset(out, 0, sizeof(*out));
    if ((o = strictjson_parse_object(msg, len, &why)) == NULL) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (!topic && (!json_object_object_get_ex(o, "userId", &v) ||
                   envelope_read_user(v, out->user_id, sizeof(out->user_id)) == -1)) {
        why = "userId must be a non-empty string or a non-negative integer";
        goto err;
    }
    /* What EventSource dispatches an event without "event:" as. */
    snprintf(out->type, sizeof(out->type), "%s", "message");
    if (json_object_object_get_ex(o, "type", &v)) {
        if (!json_object_is_type(v, json_type_string) ||
            !envelope_type_valid(json_object_get_string(v),
                                 (size_t)json_object_get_string_len(v))) {
            why = "type must be 1 to 64 of A-Z a-z 0-9 . _ -";
            goto err;
        }
        if (envelope_type_fires_handler(json_object_get_string(v))) {
            why = "type error or open would fire a client's own handler";
            goto err;
        }
        snprintf(out->type, sizeof(out->type), "%s", json_object_get_string(v));
    }
    /* An id we cannot read would break Last-Event-ID ordering, so it
     * rejects the message rather than being dropped. */
    if (json_object_object_get_ex(o, "id", &v)) {
        if (!json_object_is_type(v, json_type_string) ||
            eventid_parse(json_object_get_string(v),
                          (size_t)json_object_get_string_len(v), &out->id) == -1) {
            why = "id must be a string \"<ms>-<seq>\"";
            goto err;
        }
        out->has_id = 1;
    }
    /* Only used to recognise our own events (publish backpressure), so
     * an odd serverId is ignored rather than rejected. */
    if (json_object_object_get_ex(o, "serverId", &v) &&
        json_object_is_type(v, json_type_string) &&
        (size_t)json_object_get_string_len(v) <= ENVELOPE_SERVER_MAX)
        memcpy(out->server_id, json_object_get_string(v),
               (size_t)json_object_get_string_len(v) + 1);
    /* Only for the delivery delay metric: an odd ts is ignored. */
    if (json_object_object_get_ex(o, "ts", &v) && json_object_is_type(v, json_type_int) &&
        json_object_get_int64(v) > 0)
        out->ts_ms = json_object_get_int64(v);
    json_object_put(o);
    return 0;
err:
    snprintf(err, errlen, "%s", why);
    json_object_put(o);
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
