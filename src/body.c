#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "body.h"
#include "envelope.h"

static void
body_err(struct body_error *e, const char *code, const char *msg)
{
    snprintf(e->code, sizeof(e->code), "%s", code);
    snprintf(e->message, sizeof(e->message), "%s", msg);
}

static json_object *
body_parse_object(const char *buf, size_t len, struct body_error *e)
{
    json_tokener *tok = json_tokener_new_ex(32);
    json_object *o;
    if (tok == NULL) { body_err(e, "invalid_json", "out of memory"); return NULL; }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, buf, (int)len);
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o); o = NULL;
        body_err(e, "invalid_json", "the body is not valid JSON");
    } else {
        size_t end = json_tokener_get_parse_end(tok);
        while (end < len && strchr(" \t\r\n", buf[end])) end++;
        if (end != len) { json_object_put(o); o = NULL; body_err(e, "invalid_json", "trailing data after the JSON"); }
        else if (!json_object_is_type(o, json_type_object)) { json_object_put(o); o = NULL; body_err(e, "invalid_json", "the body must be a JSON object"); }
    }
    json_tokener_free(tok);
    return o;
}

static int
body_only(json_object *o, const char *const *allowed, struct body_error *e)
{
    json_object_object_foreach(o, key, val) {
        int ok = 0;
        (void)val;
        for (int i = 0; allowed[i]; i++) if (strcmp(key, allowed[i]) == 0) ok = 1;
        if (!ok) { char m[160]; snprintf(m, sizeof m, "unknown field '%.100s'", key); body_err(e, "unknown_field", m); return -1; }
    }
    return 0;
}

static int
body_balance(json_object *o, int *has, int64_t *out, struct body_error *e)
{
    json_object *v;
    int64_t b;
    *has = 0;
    if (!json_object_object_get_ex(o, "balance", &v)) return 0;
    if (!json_object_is_type(v, json_type_int)) { body_err(e, "invalid_field", "balance must be an integer"); return -1; }
    b = json_object_get_int64(v);
    if (b < 0 || b > BODY_BALANCE_MAX) { body_err(e, "invalid_field", "balance must be between 0 and 9007199254740991"); return -1; }
    *has = 1; *out = b;
    return 0;
}

int
body_parse_account(const char *buf, size_t len, struct account_input *out, struct body_error *err)
{
    static const char *const allowed[] = { "name", "balance", NULL };
    json_object *o = body_parse_object(buf, len, err), *v;
    int has, rc = -1;
    size_t n, chars = 0, blank = 1;
    const unsigned char *s;
    memset(out, 0, sizeof(*out));
    if (o == NULL) return -1;
    if (body_only(o, allowed, err) == -1) goto out;
    if (!json_object_object_get_ex(o, "name", &v)) { body_err(err, "missing_field", "name is required"); goto out; }
    if (!json_object_is_type(v, json_type_string)) { body_err(err, "invalid_field", "name must be a string"); goto out; }
    n = (size_t)json_object_get_string_len(v);
    s = (const unsigned char *)json_object_get_string(v);
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) { body_err(err, "invalid_field", "name must not contain control characters"); goto out; }
        if ((s[i] & 0xc0) != 0x80) chars++;
        if (s[i] != ' ') blank = 0;
    }
    if (chars == 0 || blank || chars > BODY_NAME_MAX_CHARS || n >= sizeof(out->name)) { body_err(err, "invalid_field", "name must be 1 to 100 characters"); goto out; }
    memcpy(out->name, s, n);
    if (body_balance(o, &has, &out->balance, err) == -1) goto out;
    rc = 0;
out:
    json_object_put(o);
    return rc;
}

int
body_parse_snapshot(const char *buf, size_t len, struct snapshot_input *out, struct body_error *err)
{
    static const char *const allowed[] = { "balance", NULL };
    json_object *o;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    if (len == 0) return 0;
    if ((o = body_parse_object(buf, len, err)) == NULL) return -1;
    if (body_only(o, allowed, err) == 0 && body_balance(o, &out->has_balance, &out->balance, err) == 0) rc = 0;
    json_object_put(o);
    return rc;
}

int
body_parse_event(const char *buf, size_t len, struct event_input *out, struct body_error *err)
{
    static const char *const allowed[] = { "userId", "type", "data", NULL };
    json_object *o = body_parse_object(buf, len, err), *v;
    const char *d;
    size_t dl;
    int rc = -1;
    memset(out, 0, sizeof(*out));
    if (o == NULL) return -1;
    if (body_only(o, allowed, err) == -1) goto out;
    if (!json_object_object_get_ex(o, "userId", &v)) { body_err(err, "missing_field", "userId is required"); goto out; }
    if (json_object_is_type(v, json_type_string) && body_user_id_valid(json_object_get_string(v), (size_t)json_object_get_string_len(v)))
        strcpy(out->user_id, json_object_get_string(v));
    else if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 1 && json_object_get_int64(v) <= 999999999999999999LL)
        snprintf(out->user_id, sizeof(out->user_id), "%lld", (long long)json_object_get_int64(v));
    else { body_err(err, "invalid_field", "userId must be 1 to 18 digits"); goto out; }
    if (!json_object_object_get_ex(o, "type", &v)) { body_err(err, "missing_field", "type is required"); goto out; }
    if (!json_object_is_type(v, json_type_string) || !envelope_type_valid(json_object_get_string(v), (size_t)json_object_get_string_len(v))) { body_err(err, "invalid_field", "type must be 1 to 64 of A-Z a-z 0-9 . _ -"); goto out; }
    strcpy(out->type, json_object_get_string(v));
    if (!json_object_object_get_ex(o, "data", &v)) v = NULL;
    d = json_object_to_json_string_length(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &dl);
    if ((out->data_json = malloc(dl + 1)) == NULL) { body_err(err, "invalid_json", "out of memory"); goto out; }
    memcpy(out->data_json, d, dl + 1);
    out->data_len = dl;
    rc = 0;
out:
    json_object_put(o);
    return rc;
}

void
event_input_clear(struct event_input *in)
{
    free(in->data_json);
    in->data_json = NULL;
}

int
body_content_type_is_json(const char *ct)
{
    if (strncasecmp(ct, "application/json", 16) != 0) return 0;
    ct += 16;
    while (*ct == ' ') ct++;
    return *ct == '\0' || *ct == ';';
}

int
body_user_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > BODY_USER_ID_MAX_DIGITS || s[0] == '0') return 0;
    for (size_t i = 0; i < len; i++) if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}
