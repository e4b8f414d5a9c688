/* envelope.c -- the JSON event envelope. Builds the part of it C knows
 * before Redis assigns the id, and reads the few fields the subscriber
 * needs from a channel message. Pure (json-c only); returns owned strings. */
#include <json-c/json.h>
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

/* s as a JSON string literal, quotes included; the caller frees it. */
static char *
envelope_quote(const char *s)
{
    json_object *o = json_object_new_string(s);
    const char *q;
    char *copy = NULL;

    if (o == NULL)
        return NULL;
    q = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                              JSON_C_TO_STRING_NOSLASHESCAPE);
    if (q != NULL)
        copy = strdup(q);
    json_object_put(o);
    return copy;
}

char *
envelope_build_rest(const char *type, const char *user_id,
                    const char *data_json, size_t data_len,
                    const char *server_id, int64_t ts_ms)
{
    char *qtype = envelope_quote(type);
    char *quser = envelope_quote(user_id);
    char *qserver = envelope_quote(server_id);
    char *out = NULL;
    size_t cap;

    if (qtype == NULL || quser == NULL || qserver == NULL || data_len > INT32_MAX)
        goto out;
    cap = strlen(qtype) + strlen(quser) + strlen(qserver) + data_len + 96;
    if ((out = malloc(cap)) == NULL)
        goto out;
    snprintf(out, cap, "\"type\":%s,\"userId\":%s,\"data\":%.*s,\"serverId\":%s,"
                       "\"ts\":%lld}",
             qtype, quser, (int)data_len, data_json, qserver, (long long)ts_ms);
out:
    free(qtype);
    free(quser);
    free(qserver);
    return out;
}

/* A userId from the channel: a non-empty string without control
 * characters, or a non-negative integer. */
static int
envelope_read_user(json_object *v, char *out, size_t cap)
{
    const char *s;
    size_t n;

    if (json_object_is_type(v, json_type_int)) {
        int64_t id = json_object_get_int64(v);

        if (id < 0)
            return -1;
        snprintf(out, cap, "%lld", (long long)id);
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -1;
    s = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (n == 0 || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    }
    memcpy(out, s, n + 1);
    return 0;
}

int
envelope_parse(const char *msg, size_t len, struct envelope_view *out,
               char *err, size_t errlen)
{
    const char *why = NULL;
    json_object *o, *v;

    memset(out, 0, sizeof(*out));
    if ((o = strictjson_parse_object(msg, len, &why)) == NULL) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (!json_object_object_get_ex(o, "userId", &v) ||
        envelope_read_user(v, out->user_id, sizeof(out->user_id)) == -1) {
        why = "userId must be a non-empty string or an integer";
        goto err;
    }
    strcpy(out->type, "message");       /* what EventSource calls an unnamed event */
    if (json_object_object_get_ex(o, "type", &v)) {
        if (!json_object_is_type(v, json_type_string) ||
            !envelope_type_valid(json_object_get_string(v),
                                 (size_t)json_object_get_string_len(v))) {
            why = "type must be 1 to 64 of A-Z a-z 0-9 . _ -";
            goto err;
        }
        strcpy(out->type, json_object_get_string(v));
    }
    if (json_object_object_get_ex(o, "id", &v)) {
        if (!json_object_is_type(v, json_type_string) ||
            eventid_parse(json_object_get_string(v),
                          (size_t)json_object_get_string_len(v), &out->id) == -1) {
            why = "id must be an event id string";
            goto err;
        }
        out->has_id = 1;
    }
    json_object_put(o);
    return 0;
err:
    snprintf(err, errlen, "%s", why);
    json_object_put(o);
    return -1;
}
