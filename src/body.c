/* body.c -- what a valid request body is. Each parser reads one JSON
 * object, checks every field's type and range, refuses unknown fields
 * (a typo must not be silently ignored), and fills a plain struct. Pure
 * (json-c only). */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "envelope.h"
#include "strictjson.h"

static int
body_fail(struct body_error *e, const char *code, const char *msg)
{
    snprintf(e->code, sizeof(e->code), "%s", code);
    snprintf(e->message, sizeof(e->message), "%s", msg);
    return -1;
}

static json_object *
body_parse_object(const char *buf, size_t len, struct body_error *e)
{
    const char *why = NULL;
    json_object *o = strictjson_parse_object(buf, len, &why);
    char msg[96];

    if (o == NULL) {
        snprintf(msg, sizeof(msg), "the body is %s", why);
        body_fail(e, "invalid_json", msg);
    }
    return o;
}

/* Fails on the first key of o that is not in allowed (NULL-terminated). */
static int
body_check_fields(json_object *o, const char *const *allowed,
                  struct body_error *e)
{
    json_object_object_foreach(o, key, val) {
        const char *const *a = allowed;
        char msg[160];

        (void)val;
        while (*a != NULL && strcmp(*a, key) != 0)
            a++;
        if (*a == NULL) {
            snprintf(msg, sizeof(msg), "unknown field '%.64s'", key);
            return body_fail(e, "unknown_field", msg);
        }
    }
    return 0;
}

/* An optional "balance": a JSON integer in 0..BODY_BALANCE_MAX. json-c
 * saturates larger integers at INT64_MAX, which the range check catches;
 * 1.0 and 1e3 are doubles and refused, so a balance is always exact. */
static int
body_read_balance(json_object *o, int *has, int64_t *out, struct body_error *e)
{
    json_object *v;
    int64_t b;

    *has = 0;
    if (!json_object_object_get_ex(o, "balance", &v))
        return 0;
    if (!json_object_is_type(v, json_type_int))
        return body_fail(e, "invalid_field", "balance must be an integer");
    b = json_object_get_int64(v);
    if (b < 0 || b > BODY_BALANCE_MAX)
        return body_fail(e, "invalid_field",
                         "balance must be between 0 and 9007199254740991");
    *has = 1;
    *out = b;
    return 0;
}

/* A name: 1..100 Unicode characters (UTF-8 is already validated by the
 * tokener), no control characters, not only spaces. */
static int
body_read_name(json_object *o, char *out, size_t cap, struct body_error *e)
{
    json_object *v;
    const unsigned char *s;
    size_t n, chars = 0;
    int blank = 1;

    if (!json_object_object_get_ex(o, "name", &v))
        return body_fail(e, "missing_field", "name is required");
    if (!json_object_is_type(v, json_type_string))
        return body_fail(e, "invalid_field", "name must be a string");
    s = (const unsigned char *)json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return body_fail(e, "invalid_field",
                             "name must not contain control characters");
        if ((s[i] & 0xc0) != 0x80)      /* not a continuation byte */
            chars++;
        if (s[i] != ' ')
            blank = 0;
    }
    if (chars == 0 || blank || chars > BODY_NAME_MAX_CHARS || n >= cap)
        return body_fail(e, "invalid_field", "name must be 1 to 100 characters");
    memcpy(out, s, n + 1);
    return 0;
}

int
body_parse_account(const char *buf, size_t len, struct account_input *out,
                   struct body_error *err)
{
    static const char *const allowed[] = { "name", "balance", NULL };
    json_object *o;
    int has, rc = -1;

    memset(out, 0, sizeof(*out));
    if ((o = body_parse_object(buf, len, err)) == NULL)
        return -1;
    if (body_check_fields(o, allowed, err) == 0 &&
        body_read_name(o, out->name, sizeof(out->name), err) == 0 &&
        body_read_balance(o, &has, &out->balance, err) == 0)
        rc = 0;
    json_object_put(o);
    return rc;
}

int
body_parse_snapshot(const char *buf, size_t len, struct snapshot_input *out,
                    struct body_error *err)
{
    static const char *const allowed[] = { "balance", NULL };
    json_object *o;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return 0;
    if ((o = body_parse_object(buf, len, err)) == NULL)
        return -1;
    if (body_check_fields(o, allowed, err) == 0 &&
        body_read_balance(o, &out->has_balance, &out->balance, err) == 0)
        rc = 0;
    json_object_put(o);
    return rc;
}

/* "userId": a string of 1..18 digits or a positive integer of as many. */
static int
body_read_user_id(json_object *o, char *out, size_t cap, struct body_error *e)
{
    json_object *v;

    if (!json_object_object_get_ex(o, "userId", &v))
        return body_fail(e, "missing_field", "userId is required");
    if (json_object_is_type(v, json_type_string) &&
        body_user_id_valid(json_object_get_string(v),
                           (size_t)json_object_get_string_len(v))) {
        snprintf(out, cap, "%s", json_object_get_string(v));
        return 0;
    }
    if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 1 &&
        json_object_get_int64(v) <= INT64_C(999999999999999999)) {
        snprintf(out, cap, "%lld", (long long)json_object_get_int64(v));
        return 0;
    }
    return body_fail(e, "invalid_field", "userId must be 1 to 18 digits");
}

int
body_parse_event(const char *buf, size_t len, struct event_input *out,
                 struct body_error *err)
{
    static const char *const allowed[] = { "userId", "type", "data", NULL };
    json_object *o, *type, *data = NULL;
    const char *d;
    size_t dlen;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if ((o = body_parse_object(buf, len, err)) == NULL)
        return -1;
    if (body_check_fields(o, allowed, err) == -1 ||
        body_read_user_id(o, out->user_id, sizeof(out->user_id), err) == -1)
        goto out;
    if (!json_object_object_get_ex(o, "type", &type)) {
        body_fail(err, "missing_field", "type is required");
        goto out;
    }
    if (!json_object_is_type(type, json_type_string) ||
        !envelope_type_valid(json_object_get_string(type),
                             (size_t)json_object_get_string_len(type))) {
        body_fail(err, "invalid_field", "type must be 1 to 64 of A-Z a-z 0-9 . _ -");
        goto out;
    }
    snprintf(out->type, sizeof(out->type), "%s", json_object_get_string(type));
    /* Re-serialised on one line: an SSE data line must not break. */
    json_object_object_get_ex(o, "data", &data);
    d = json_object_to_json_string_length(data, JSON_C_TO_STRING_PLAIN |
                                                    JSON_C_TO_STRING_NOSLASHESCAPE,
                                          &dlen);
    if (d == NULL || (out->data_json = malloc(dlen + 1)) == NULL) {
        body_fail(err, "invalid_json", "out of memory");
        goto out;
    }
    memcpy(out->data_json, d, dlen + 1);
    out->data_len = dlen;
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
    in->data_len = 0;
}

int
body_content_type_is_json(const char *ct)
{
    const char *charset;

    if (strncasecmp(ct, "application/json", 16) != 0)
        return 0;
    ct += 16;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (*ct == '\0')
        return 1;
    if (*ct != ';')
        return 0;
    /* JSON is UTF-8 (RFC 8259); any other declared charset is refused. */
    charset = strcasestr(ct, "charset=");
    return charset == NULL || strncasecmp(charset + 8, "utf-8", 5) == 0 ||
           strncasecmp(charset + 8, "\"utf-8\"", 7) == 0;
}

int
body_user_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > BODY_USER_ID_MAX_DIGITS || s[0] == '0')
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}
