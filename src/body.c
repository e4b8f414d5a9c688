/* body.c -- what a valid request body is: the one place that decides
 * which input the REST API accepts. Each parser reads one strict JSON
 * object, checks every field's type and range, refuses unknown fields
 * (a misspelt field must not be silently ignored), and fills a plain
 * struct; the only memory it hands out is event_input's data_json.
 * Pure (json-c only). */
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "envelope.h"
#include "strictjson.h"

/* The largest userId given as a JSON integer: BODY_USER_ID_MAX_DIGITS
 * (18) nines. */
#define BODY_USER_ID_INT_MAX INT64_C(999999999999999999)

/* How data is written back out: one line (an SSE data line must not
 * break) and "/" left alone. */
#define BODY_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Most bytes of an unknown field's name quoted back in the error. */
#define BODY_SHOWN_KEY_MAX 40

static int
body_fail(struct body_error *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
body_fail(struct body_error *e, const char *code, const char *fmt, ...)
{
    va_list ap;

    snprintf(e->code, sizeof(e->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* The strict parse all three parsers share: a JSON object or an error. */
static json_object *
body_parse_object(const char *buf, size_t len, struct body_error *e)
{
    const char *why = NULL;
    json_object *o = strictjson_parse_object(buf, len, &why);

    if (o != NULL)
        return o;
    if (why == NULL)
        why = "not valid JSON";
    /* Running out of memory is the server's fault, not the client's; the
     * text is strictjson.c's, the only way it tells this case apart. */
    if (strcmp(why, "out of memory") == 0)
        body_fail(e, "out_of_memory", "the server is out of memory");
    else
        body_fail(e, "invalid_json", "the body is %s", why);
    return NULL;
}

/* Fails on the first key of o that is not in allowed (NULL-terminated). */
static int
body_check_fields(json_object *o, const char *const *allowed,
                  struct body_error *e)
{
    json_object_object_foreach(o, key, val) {
        const char *const *a = allowed;
        char shown[BODY_SHOWN_KEY_MAX + 1];
        size_t n = 0;

        (void)val;
        while (*a != NULL && strcmp(*a, key) != 0)
            a++;
        if (*a != NULL)
            continue;
        /* Echo at most BODY_SHOWN_KEY_MAX printable ASCII bytes of the
         * key, so the message stays short and valid UTF-8 whatever was
         * sent. */
        for (const char *k = key; *k != '\0' && n < sizeof(shown) - 1; k++)
            shown[n++] = *k >= 0x20 && *k < 0x7f ? *k : '?';
        shown[n] = '\0';
        return body_fail(e, "unknown_field", "unknown field '%s'", shown);
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
        return body_fail(e, "invalid_field",
                         "balance must be an integer (no fraction or exponent)");
    b = json_object_get_int64(v);
    if (b < 0 || b > BODY_BALANCE_MAX)
        return body_fail(e, "invalid_field",
                         "balance must be between 0 and %lld",
                         (long long)BODY_BALANCE_MAX);
    *has = 1;
    *out = b;
    return 0;
}

/* Unicode White_Space, less the controls refused before this is asked. */
static int
body_is_space(uint32_t cp)
{
    return cp == 0x20 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* "name": 1..100 Unicode characters (code points), no control
 * characters (C0, DEL, C1; json-c lets \u0000 through, and
 * get_string_len sees past it), not only white space. */
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
    for (size_t i = 0; i < n;) {
        uint32_t cp;

        /* The parse checked the UTF-8 already; decoding it again is how
         * the characters are counted. */
        if (strictjson_utf8_next(s, n, &i, &cp) == -1)
            return body_fail(e, "invalid_field", "name is not valid UTF-8");
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return body_fail(e, "invalid_field",
                             "name must not contain control characters");
        if (!body_is_space(cp))
            blank = 0;
        chars++;
    }
    if (chars == 0 || chars > BODY_NAME_MAX_CHARS || n >= cap)
        return body_fail(e, "invalid_field", "name must be 1 to %d characters",
                         BODY_NAME_MAX_CHARS);
    if (blank)
        return body_fail(e, "invalid_field", "name must not be only white space");
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
    if (len == 0)               /* no body: snapshot the current balance */
        return 0;
    if ((o = body_parse_object(buf, len, err)) == NULL)
        return -1;
    if (body_check_fields(o, allowed, err) == 0 &&
        body_read_balance(o, &out->has_balance, &out->balance, err) == 0)
        rc = 0;
    json_object_put(o);
    return rc;
}

/* "userId": a string of 1..18 digits without a leading zero, or a JSON
 * integer 1..10^18-1 (which json-c holds exactly), kept as digits. */
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
        json_object_get_int64(v) <= BODY_USER_ID_INT_MAX) {
        snprintf(out, cap, "%lld", (long long)json_object_get_int64(v));
        return 0;
    }
    return body_fail(e, "invalid_field",
                     "userId must be 1 to %d digits without a leading zero",
                     BODY_USER_ID_MAX_DIGITS);
}

static int
body_read_type(json_object *o, char *out, size_t cap, struct body_error *e)
{
    json_object *v;

    if (!json_object_object_get_ex(o, "type", &v))
        return body_fail(e, "missing_field", "type is required");
    if (!json_object_is_type(v, json_type_string) ||
        !envelope_type_valid(json_object_get_string(v),
                             (size_t)json_object_get_string_len(v)))
        return body_fail(e, "invalid_field",
                         "type must be 1 to %d of A-Z a-z 0-9 . _ -", SSE_EVENT_MAX);
    snprintf(out, cap, "%s", json_object_get_string(v));
    /* The type is checked above, so it can be quoted back as it is. */
    if (envelope_type_reserved(out))
        return body_fail(e, "reserved_type",
                         "type '%s' is reserved (the gateway or EventSource "
                         "gives it its own meaning)", out);
    return 0;
}

/* RFC 8259's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
body_is_json_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (*s >= '0' && *s <= '9')
            s++;
    } else {
        return 0;
    }
    if (*s == '.') {
        if (*++s < '0' || *s > '9')
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        if (*++s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

/* json-c writes a parsed double back as the text it was read from, and
 * its strict mode still reads NaN, Infinity and "1.", so data must be
 * checked before it is copied into every subscriber's event. Integers
 * beyond its range saturate; the two saturation values are refused so a
 * number is never silently changed. Recursion is bounded by the
 * tokener's depth limit. */
static int
body_check_data(json_object *v, struct body_error *e)
{
    switch (json_object_get_type(v)) {
    case json_type_double: {
        const char *text = json_object_to_json_string_ext(v, BODY_JSON_FLAGS);

        if (text == NULL)
            return body_fail(e, "out_of_memory", "the server is out of memory");
        if (!body_is_json_number(text))
            return body_fail(e, "invalid_json",
                             "the body is not valid JSON (data has the number %.20s)",
                             text);
        if (!isfinite(json_object_get_double(v)))
            return body_fail(e, "invalid_field", "data has a number out of range");
        return 0;
    }
    case json_type_int:
        if (json_object_get_int64(v) == INT64_MIN ||
            json_object_get_uint64(v) == UINT64_MAX)
            return body_fail(e, "invalid_field", "data has a number out of range");
        return 0;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (body_check_data(json_object_array_get_idx(v, i), e) == -1)
                return -1;
        }
        return 0;
    case json_type_object: {
        json_object_object_foreach(v, key, val) {
            (void)key;
            if (body_check_data(val, e) == -1)
                return -1;
        }
        return 0;
    }
    case json_type_null:
    case json_type_boolean:
    case json_type_string:
        break;
    }
    return 0;
}

int
body_parse_event(const char *buf, size_t len, struct event_input *out,
                 struct body_error *err)
{
    static const char *const allowed[] = { "userId", "topic", "type", "data", NULL };
    json_object *o, *data = NULL, *v;
    const char *d;
    size_t dlen;
    int rc = -1, has_user, has_topic;

    memset(out, 0, sizeof(*out));
    if ((o = body_parse_object(buf, len, err)) == NULL)
        return -1;
    if (body_check_fields(o, allowed, err) == -1)
        goto out;
    /* Exactly one addressee: a user or a topic, never both (the event has
     * one history and one channel). */
    has_user = json_object_object_get_ex(o, "userId", NULL);
    has_topic = json_object_object_get_ex(o, "topic", &v);
    if (has_user && has_topic) {
        body_fail(err, "invalid_field", "give either userId or topic, not both");
        goto out;
    }
    if (!has_user && !has_topic) {
        body_fail(err, "missing_field", "userId or topic is required");
        goto out;
    }
    if (has_topic) {
        if (!json_object_is_type(v, json_type_string) ||
            !topic_name_valid(json_object_get_string(v),
                              (size_t)json_object_get_string_len(v))) {
            body_fail(err, "invalid_field",
                      "topic must be 1 to %d of A-Z a-z 0-9 . _ : / -", TOPIC_NAME_MAX);
            goto out;
        }
        memcpy(out->topic, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
    } else if (body_read_user_id(o, out->user_id, sizeof(out->user_id), err) == -1) {
        goto out;
    }
    if (body_read_type(o, out->type, sizeof(out->type), err) == -1)
        goto out;
    /* Absent and null both leave data NULL, which json-c writes "null". */
    json_object_object_get_ex(o, "data", &data);
    if (body_check_data(data, err) == -1)
        goto out;
    if ((d = json_object_to_json_string_length(data, BODY_JSON_FLAGS, &dlen)) == NULL ||
        (out->data_json = malloc(dlen + 1)) == NULL) {
        body_fail(err, "out_of_memory", "the server is out of memory");
        goto out;
    }
    memcpy(out->data_json, d, dlen + 1);
    out->data_len = dlen;
    rc = 0;
out:
    json_object_put(o);         /* d pointed into o: copied above */
    return rc;
}

int
body_parse_token(const char *buf, size_t len, struct token_input *out,
                 struct body_error *err)
{
    static const char *const allowed[] = { "userId", "ttlSecs", "firehose", "topics", NULL };
    json_object *o, *v;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if ((o = body_parse_object(buf, len, err)) == NULL)
        return -1;
    if (body_check_fields(o, allowed, err) == -1 ||
        body_read_user_id(o, out->user_id, sizeof(out->user_id), err) == -1)
        goto out;
    if (json_object_object_get_ex(o, "ttlSecs", &v)) {
        int64_t t = json_object_get_int64(v);

        if (!json_object_is_type(v, json_type_int) || t < 1 || t > BODY_TOKEN_TTL_MAX) {
            body_fail(err, "invalid_field", "ttlSecs must be an integer from 1 to %d",
                      BODY_TOKEN_TTL_MAX);
            goto out;
        }
        out->ttl_secs = (unsigned)t;
    }
    if (json_object_object_get_ex(o, "firehose", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            body_fail(err, "invalid_field", "firehose must be true or false");
            goto out;
        }
        out->firehose = json_object_get_boolean(v);
    }
    if (json_object_object_get_ex(o, "topics", &v)) {
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;

        if (!json_object_is_type(v, json_type_array) || n > BODY_TOKEN_TOPICS_MAX) {
            body_fail(err, "invalid_field", "topics must be an array of at most %d grants",
                      BODY_TOKEN_TOPICS_MAX);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *t = json_object_array_get_idx(v, i);

            if (!json_object_is_type(t, json_type_string) ||
                !topic_grant_valid(json_object_get_string(t),
                                   (size_t)json_object_get_string_len(t))) {
                body_fail(err, "invalid_field", "topics[%zu] must be a topic name, or a "
                          "prefix of one ending in *", i);
                goto out;
            }
            memcpy(out->topics[i], json_object_get_string(t),
                   (size_t)json_object_get_string_len(t) + 1);
        }
        out->ntopics = n;
    }
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

static const char *
body_skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* RFC 9110 media type: type "/" subtype *( OWS ";" OWS [ name=value ] ),
 * the value a token or a quoted string. JSON is UTF-8 (RFC 8259), so a
 * charset parameter naming anything else is refused. */
int
body_content_type_is_json(const char *ct)
{
    static const char json[] = "application/json";
    const char *p;

    if (ct == NULL || strncasecmp(ct, json, sizeof(json) - 1) != 0)
        return 0;
    p = body_skip_ows(ct + sizeof(json) - 1);
    while (*p == ';') {
        const char *name, *value;
        size_t name_len, value_len;

        p = body_skip_ows(p + 1);
        if (*p == ';' || *p == '\0')        /* an empty parameter */
            continue;
        name = p;
        while (*p != '\0' && *p != '=' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        name_len = (size_t)(p - name);
        if (*p++ != '=' || name_len == 0)
            return 0;
        if (*p == '"') {
            value = ++p;
            while (*p != '\0' && *p != '"')
                p++;
            if (*p != '"')
                return 0;
            value_len = (size_t)(p++ - value);
        } else {
            value = p;
            while (*p != '\0' && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            value_len = (size_t)(p - value);
        }
        if (name_len == 7 && strncasecmp(name, "charset", 7) == 0 &&
            !(value_len == 5 && strncasecmp(value, "utf-8", 5) == 0))
            return 0;
        p = body_skip_ows(p);
    }
    return *p == '\0';
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
