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

/* How strings are written everywhere: one line, and "/" left alone (the
 * default "\/" is legal but surprises everyone who reads it). */
#define ENVELOPE_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Kept a literal so the compiler checks it against the arguments. */
#define ENVELOPE_REST_FMT \
    "\"type\":%s,\"%s\":%s,\"data\":%.*s,\"serverId\":%s,\"ts\":%lld}"

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

/* The rest of an envelope addressed by field ("userId" or "topic") =
 * whom. */
static char *
envelope_build_rest_for(const char *type, const char *field, const char *whom,
                        const char *data_json, size_t data_len,
                        const char *server_id, int64_t ts_ms)
{
    /* json-c escapes quotes, backslashes and control characters; each
     * quoted string lives in its object until the objects are put. */
    json_object *jtype = json_object_new_string(type);
    json_object *juser = json_object_new_string(whom);
    json_object *jserver = json_object_new_string(server_id);
    const char *qtype, *quser, *qserver;
    char *out = NULL;
    int n;

    if (jtype == NULL || juser == NULL || jserver == NULL || data_len > INT_MAX)
        goto done;
    qtype = json_object_to_json_string_ext(jtype, ENVELOPE_JSON_FLAGS);
    quser = json_object_to_json_string_ext(juser, ENVELOPE_JSON_FLAGS);
    qserver = json_object_to_json_string_ext(jserver, ENVELOPE_JSON_FLAGS);
    if (qtype == NULL || quser == NULL || qserver == NULL)
        goto done;
    n = snprintf(NULL, 0, ENVELOPE_REST_FMT, qtype, field, quser, (int)data_len,
                 data_json, qserver, (long long)ts_ms);
    if (n < 0 || (out = malloc((size_t)n + 1)) == NULL)
        goto done;
    snprintf(out, (size_t)n + 1, ENVELOPE_REST_FMT, qtype, field, quser, (int)data_len,
             data_json, qserver, (long long)ts_ms);
done:
    json_object_put(jserver);
    json_object_put(juser);
    json_object_put(jtype);
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
