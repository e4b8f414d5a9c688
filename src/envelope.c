#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "envelope.h"

int
envelope_type_valid(const char *s, size_t len)
{
    if (len == 0 || len > SSE_EVENT_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static char *
envelope_quote(const char *s)
{
    json_object *o = json_object_new_string(s);
    char *r = NULL;
    if (o == NULL) return NULL;
    r = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return r;
}

char *
envelope_build_rest(const char *type, const char *user_id, const char *data_json, size_t data_len, const char *server_id, int64_t ts_ms)
{
    char *qt = envelope_quote(type), *qu = envelope_quote(user_id), *qs = envelope_quote(server_id), *out = NULL;
    if (qt && qu && qs) {
        size_t n = strlen(qt) + strlen(qu) + strlen(qs) + data_len + 96;
        if ((out = malloc(n)) != NULL)
            snprintf(out, n, "\"type\":%s,\"userId\":%s,\"data\":%.*s,\"serverId\":%s,\"ts\":%lld}", qt, qu, (int)data_len, data_json, qs, (long long)ts_ms);
    }
    free(qt); free(qu); free(qs);
    return out;
}

int
envelope_parse(const char *msg, size_t len, struct envelope_view *out, char *err, size_t errlen)
{
    json_tokener *tok = json_tokener_new_ex(32);
    json_object *o = NULL, *v;
    int rc = -1;
    if (tok == NULL) { snprintf(err, errlen, "out of memory"); return -1; }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, msg, (int)len);
    memset(out, 0, sizeof(*out));
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(o, json_type_object)) {
        snprintf(err, errlen, "not a JSON object"); goto out;
    }
    if (!json_object_object_get_ex(o, "userId", &v)) { snprintf(err, errlen, "no userId"); goto out; }
    if (json_object_is_type(v, json_type_string)) {
        size_t n = (size_t)json_object_get_string_len(v);
        const char *u = json_object_get_string(v);
        if (n == 0 || n > ENVELOPE_USER_MAX) { snprintf(err, errlen, "bad userId"); goto out; }
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)u[i] < 0x20 || u[i] == 0x7f) { snprintf(err, errlen, "control character in userId"); goto out; }
        memcpy(out->user_id, u, n);
    } else if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0) {
        snprintf(out->user_id, sizeof(out->user_id), "%lld", (long long)json_object_get_int64(v));
    } else { snprintf(err, errlen, "bad userId"); goto out; }
    strcpy(out->type, "message");
    if (json_object_object_get_ex(o, "type", &v)) {
        if (!json_object_is_type(v, json_type_string) || !envelope_type_valid(json_object_get_string(v), (size_t)json_object_get_string_len(v))) { snprintf(err, errlen, "bad type"); goto out; }
        strcpy(out->type, json_object_get_string(v));
    }
    if (json_object_object_get_ex(o, "id", &v)) {
        if (!json_object_is_type(v, json_type_string) || eventid_parse(json_object_get_string(v), (size_t)json_object_get_string_len(v), &out->id) == -1) { snprintf(err, errlen, "bad id"); goto out; }
        out->has_id = 1;
    }
    rc = 0;
out:
    json_object_put(o);
    json_tokener_free(tok);
    return rc;
}
