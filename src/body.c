/* body.c -- what a valid request body is: the one place that decides
 * which input the REST API accepts. Each parser reads one strict JSON
 * object, checks every field's type and range, refuses unknown fields
 * (a misspelt field must not be silently ignored), and fills a plain
 * struct; the only memory it hands out is event_input's data_json.
 * Event bodies, one per write, are read with strictjson_scan_object (no
 * json-c objects) and their data copied as json-c would write it back;
 * the other bodies are read with json-c. Pure (json-c, strictjson). */
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

/* A body strictjson refused, in why: the client's fault, unless it ran
 * out of memory (the server's); the text is strictjson.c's, the only way
 * it tells that case apart. */
static int
body_fail_parse(struct body_error *e, const char *why)
{
    if (why == NULL)
        why = "not valid JSON";
    if (strcmp(why, "out of memory") == 0)
        return body_fail(e, "out_of_memory", "the server is out of memory");
    return body_fail(e, "invalid_json", "the body is %s", why);
}

/* The strict parse the json-c parsers share: a JSON object or an error. */
static json_object *
body_parse_object(const char *buf, size_t len, struct body_error *e)
{
    const char *why = NULL;
    json_object *o = strictjson_parse_object(buf, len, &why);

    if (o == NULL)
        body_fail_parse(e, why);
    return o;
}

/* unknown_field for key (as json-c holds it: cut at its first NUL).
 * Echoes at most BODY_SHOWN_KEY_MAX printable ASCII bytes of it, so the
 * message stays short and valid UTF-8 whatever was sent. */
static int
body_fail_unknown(struct body_error *e, const char *key)
{
    char shown[BODY_SHOWN_KEY_MAX + 1];
    size_t n = 0;

    for (const char *k = key; *k != '\0' && n < sizeof(shown) - 1; k++)
        shown[n++] = *k >= 0x20 && *k < 0x7f ? *k : '?';
    shown[n] = '\0';
    return body_fail(e, "unknown_field", "unknown field '%s'", shown);
}

/* Fails on the first key of o that is not in allowed (NULL-terminated). */
static int
body_check_fields(json_object *o, const char *const *allowed,
                  struct body_error *e)
{
    json_object_object_foreach(o, key, val) {
        const char *const *a = allowed;

        (void)val;
        while (*a != NULL && strcmp(*a, key) != 0)
            a++;
        if (*a == NULL)
            return body_fail_unknown(e, key);
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

/* "userId": a string of 1..18 digits without a leading zero (s, n
 * bytes; s NULL when it is not a string), or a JSON integer (is_int, v
 * as json_object_get_int64 reads it) 1..10^18-1 (which json-c holds
 * exactly), kept as digits. out is written only on success. */
static int
body_set_user_id(const char *s, size_t n, int is_int, int64_t v, char *out,
                 size_t cap, struct body_error *e)
{
    if (s != NULL && body_user_id_valid(s, n) && n < cap) {
        memcpy(out, s, n);          /* not snprintf: this is every write's path */
        out[n] = '\0';
        return 0;
    }
    if (is_int && v >= 1 && v <= BODY_USER_ID_INT_MAX) {
        snprintf(out, cap, "%lld", (long long)v);
        return 0;
    }
    return body_fail(e, "invalid_field",
                     "userId must be 1 to %d digits without a leading zero",
                     BODY_USER_ID_MAX_DIGITS);
}

/* body_set_user_id for a json-c body. */
static int
body_read_user_id(json_object *o, char *out, size_t cap, struct body_error *e)
{
    json_object *v;
    int is_string;

    if (!json_object_object_get_ex(o, "userId", &v))
        return body_fail(e, "missing_field", "userId is required");
    is_string = json_object_is_type(v, json_type_string);
    return body_set_user_id(is_string ? json_object_get_string(v) : NULL,
                            is_string ? (size_t)json_object_get_string_len(v) : 0,
                            json_object_is_type(v, json_type_int),
                            json_object_get_int64(v), out, cap, e);
}

/* "type" (s, n bytes; s NULL when it is not a string): 1..SSE_EVENT_MAX
 * of [A-Za-z0-9._-], not reserved. out is written once the type is
 * valid, even if it is reserved. */
static int
body_set_type(const char *s, size_t n, char *out, size_t cap, struct body_error *e)
{
    if (s == NULL || !envelope_type_valid(s, n) || n >= cap)
        return body_fail(e, "invalid_field",
                         "type must be 1 to %d of A-Z a-z 0-9 . _ -", SSE_EVENT_MAX);
    memcpy(out, s, n);
    out[n] = '\0';
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

/* data as json-c writes it back (one line, "/" left alone), refused as
 * body_check_data refuses it: out->data_json and data_len on success. */
static int
body_write_data(json_object *data, struct event_input *out, struct body_error *e)
{
    const char *d;
    size_t dlen;

    if (body_check_data(data, e) == -1)
        return -1;
    if ((d = json_object_to_json_string_length(data, BODY_JSON_FLAGS, &dlen)) == NULL ||
        (out->data_json = malloc(dlen + 1)) == NULL)
        return body_fail(e, "out_of_memory", "the server is out of memory");
    memcpy(out->data_json, d, dlen + 1);    /* d belongs to data */
    out->data_len = dlen;
    return 0;
}

/* ---- POST /events: read without json-c objects -------------------------
 * Every write's body comes this way, so it is read by
 * strictjson_scan_object (no allocation, no locale switch) instead of
 * being built into json-c objects, and its data is copied out of the
 * text. Everything observable stays what the json-c reading gave (a
 * differential fuzzer, fuzz_body_scan, keeps that reading as its
 * reference): the same verdicts, codes, messages and bytes. */

/* The top-level members of an event body, as the scanner reports them.
 * json-c keeps a repeated key in its first place with its last value,
 * so the last of each name wins here, and its object order is the
 * order of first occurrence, so the first unknown key in the text is
 * the one body_check_fields would name. Names compare as json-c's keys
 * (unescaped, cut at a NUL). */
struct body_event_members {
    struct strictjson_member user, topic, type, data;
    int has_user, has_topic, has_type, has_data, has_unknown;
    struct strictjson_span unknown;
};

static void
body_event_member(void *ctx, const struct strictjson_member *m)
{
    struct body_event_members *b = ctx;

    if (strictjson_key_is(m->key, "userId")) {
        b->user = *m;
        b->has_user = 1;
    } else if (strictjson_key_is(m->key, "topic")) {
        b->topic = *m;
        b->has_topic = 1;
    } else if (strictjson_key_is(m->key, "type")) {
        b->type = *m;
        b->has_type = 1;
    } else if (strictjson_key_is(m->key, "data")) {
        b->data = *m;
        b->has_data = 1;
    } else if (!b->has_unknown) {
        b->unknown = m->key;
        b->has_unknown = 1;
    }
}

/* A string member unescaped into buf (cap bytes, NUL-terminated) as
 * json-c holds it, *n its length: buf, or NULL if the member is not a
 * string or is longer than cap - 1 bytes (each field read this way is
 * shorter). */
static const char *
body_member_string(const struct strictjson_member *m, char *buf, size_t cap, size_t *n)
{
    if (m->kind != STRICTJSON_STRING ||
        strictjson_string_unescape(m->value, buf, cap, n) == -1)
        return NULL;
    return buf;
}

/* Most keys body_copy_data keeps in view at once (those of the objects
 * open around the current one included) to find a repeated key; data
 * with more goes through json-c. Payloads are a few keys; the bound
 * keeps the search and the stack small. */
#define BODY_DATA_KEYS_MAX 64

/* Writes the string value whose text between its quotes is str (with
 * at least one escape) at out + o, quoted, as json-c writes it back
 * after reading it: unescaped as json-c unescapes it
 * (strictjson_string_unescape: its surrogate quirks, U+FFFD, NULs
 * kept), then each byte escaped by strictjson_escape_byte (NULs too).
 * out has cap bytes.
 * Returns the length written so far (o and this string), or 0 (never a
 * length: the quotes alone are two bytes) if it does not fit. o is
 * passed and returned, not pointed to, so that body_copy_data's o stays
 * in a register (measured: passing its address cost every body, escapes
 * or not, 15 to 30 instructions more).
 *
 * No buffer of its own: the unescaped string is put at the end of out
 * (it is never longer than str) and read from there while its escaped
 * form is written in front of it. That form is never longer than str
 * either: each escape's replacement is no longer than the escape (\/
 * is 1 byte, \u00e9 2, \u2028 3, a pair's 12 bytes 4, \u0001 6 again, a
 * lone surrogate's U+FFFD 3 of 6) and every other byte is copied, as
 * raw control characters are left to the caller. So the writer never
 * catches up with what it reads, and the length returned stays within
 * the text read so far, as body_copy_data's other writes assume. Both are checked all the
 * same: 0 (the caller has json-c read the data) instead of an overrun. */
__attribute__((noinline)) static size_t
body_copy_escaped(struct strictjson_span str, char *out, size_t cap, size_t o)
{
    size_t w = o, r, u;

    /* The opening quote, then room for str unescaped and its NUL. */
    if (cap - w < str.n + 2 ||
        strictjson_string_unescape(str, out + cap - (str.n + 1), str.n + 1, &u) == -1)
        return 0;
    r = cap - u;                        /* the unescaped string, moved to the end */
    memmove(out + r, out + cap - (str.n + 1), u);
    out[w++] = '"';
    while (r < cap) {
        char esc[6];
        size_t k = strictjson_escape_byte((unsigned char)out[r++], esc);

        if (k > r - w)                  /* it would overwrite what is still unread */
            return 0;
        memcpy(out + w, esc, k);
        w += k;
    }
    if (w + 1 - o > str.n + 2)          /* longer than its text: never, as above */
        return 0;
    out[w++] = '"';
    return w;
}

/* The closing quote of a string whose first escape is at q (the text
 * ends at end), or NULL if a raw control character comes first (or the
 * text is cut short: the scanner has read it, so never). An escape is
 * two bytes at least, and its second (\" too) never ends the string. */
static const char *
body_string_end(const char *q, const char *end)
{
    while (q < end && *q != '"') {
        if (*q == '\\') {
            if (end - q < 2)
                return NULL;
            q += 2;
        } else if ((unsigned char)*q < 0x20) {
            return NULL;
        } else {
            q++;
        }
    }
    return q < end ? q : NULL;
}

/* Writes the data value v (its text in the body; a string's with its
 * quotes) at out, which has room for cap (at least v.n + 1) bytes, as
 * json-c would write it back, in the case where that is the text
 * without its white space, each string value with escapes unescaped and
 * escaped again json-c's way (body_copy_escaped): every key free of
 * escapes (json-c cuts a key at \u0000; keys with escapes are rare), no
 * raw control character in a string (json-c escapes it: longer than the
 * text), every number an integer in the form json-c prints
 * (-?(0|[1-9][0-9]*), not -0) that it holds exactly (not at its
 * saturation values, which body_check_data refuses), no object with a
 * repeated key (json-c keeps its first place and last value) and at
 * most BODY_DATA_KEYS_MAX keys in view. Returns 0 with *outlen, or -1
 * for anything else: a double, NaN, Infinity, a single-quoted key...
 * which the caller has json-c read. The scanner has read the text, so
 * its grammar is known good and it nests at most STRICTJSON_MAX_DEPTH
 * deep; the copy is never longer than the text. */
static int
body_copy_data(struct strictjson_span v, char *out, size_t cap, size_t *outlen)
{
    const char *s = v.p, *end = v.p + v.n;
    struct strictjson_span keys[BODY_DATA_KEYS_MAX];
    size_t base[STRICTJSON_MAX_DEPTH];  /* each open object's first key in keys */
    uint32_t objects = 0;               /* bit d: container d + 1 is an object */
    size_t nkeys = 0, o = 0;
    int depth = 0, want_key = 0;

    while (s < end) {
        char c = *s;

        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            s++;
        } else if (c == '{' || c == '[') {
            if (depth == STRICTJSON_MAX_DEPTH)
                return -1;
            if (c == '{') {
                objects |= 1u << depth;
                base[depth] = nkeys;
            } else {
                objects &= ~(1u << depth);
            }
            depth++;
            want_key = c == '{';
            out[o++] = *s++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return -1;
            depth--;
            if (c == '}')
                nkeys = base[depth];
            want_key = 0;
            out[o++] = *s++;
        } else if (c == ',' || c == ':') {
            want_key = c == ',' && depth > 0 && ((objects >> (depth - 1)) & 1u);
            out[o++] = *s++;
        } else if (c == '"') {
            const char *q = s + 1;
            size_t n;

            while (q < end && *q != '"') {
                if (*q == '\\' || (unsigned char)*q < 0x20)
                    break;
                q++;
            }
            if (q == end)
                return -1;
            if (*q != '"') {
                /* Escapes (a raw control character is json-c's to
                 * write): the rest of the string is read apart, so a
                 * string without any costs no more than it did. */
                if (*q != '\\' || want_key ||
                    (q = body_string_end(q, end)) == NULL ||
                    (o = body_copy_escaped((struct strictjson_span){ s + 1,
                                                                     (size_t)(q - s - 1) },
                                           out, cap, o)) == 0)
                    return -1;
                s = q + 1;
                continue;
            }
            n = (size_t)(++q - s);
            if (want_key) {
                struct strictjson_span k = { s + 1, n - 2 };

                if (depth == 0 || nkeys == BODY_DATA_KEYS_MAX)
                    return -1;
                for (size_t i = base[depth - 1]; i < nkeys; i++) {
                    if (keys[i].n == k.n && memcmp(keys[i].p, k.p, k.n) == 0)
                        return -1;
                }
                keys[nkeys++] = k;
                want_key = 0;
            }
            memcpy(out + o, s, n);
            o += n;
            s = q;
        } else if (c == 't' || c == 'f' || c == 'n') {
            while (s < end && *s >= 'a' && *s <= 'z')     /* true, false, null */
                out[o++] = *s++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const char *d = s + (c == '-'), *q = d;
            size_t nd;

            while (q < end && *q >= '0' && *q <= '9')
                q++;
            nd = (size_t)(q - d);
            /* -Infinity, -.5, 00, -0, and doubles. */
            if (nd == 0 || (d[0] == '0' && (nd > 1 || c == '-')) ||
                (q < end && (*q == '.' || *q == 'e' || *q == 'E')))
                return -1;
            if (nd >= 19) {
                struct strictjson_span num = { s, (size_t)(q - s) };
                int64_t i64;
                uint64_t u64;

                strictjson_int_value(num, &i64, &u64);
                if (i64 == INT64_MIN || u64 == UINT64_MAX)
                    return -1;
            }
            memcpy(out + o, s, (size_t)(q - s));
            o += (size_t)(q - s);
            s = q;
        } else {
            return -1;          /* a single-quoted key, NaN, Infinity */
        }
    }
    *outlen = o;
    return 0;
}

/* data (NULL: absent, which json-c writes "null") into out->data_json:
 * copied when body_copy_data can, else parsed alone by json-c and
 * written back, as before. */
static int
body_read_data(const struct strictjson_member *data, struct event_input *out,
               struct body_error *e)
{
    struct strictjson_span v = { "null", 4 };
    json_object *o;
    int rc;

    if (data != NULL) {
        v = data->value;
        if (data->kind == STRICTJSON_STRING) {
            v.p--;                          /* the quotes too */
            v.n += 2;
        }
    }
    if ((out->data_json = malloc(v.n + 1)) == NULL)
        return body_fail(e, "out_of_memory", "the server is out of memory");
    if (body_copy_data(v, out->data_json, v.n + 1, &out->data_len) == 0) {
        out->data_json[out->data_len] = '\0';
        return 0;
    }
    free(out->data_json);
    out->data_json = NULL;
    if (strictjson_parse_value(v.p, v.n, &o) == -1)
        return body_fail(e, "out_of_memory", "the server is out of memory");
    rc = body_write_data(o, out, e);
    json_object_put(o);
    return rc;
}

int
body_parse_event(const char *buf, size_t len, struct event_input *out,
                 struct body_error *err)
{
    struct body_event_members m;
    const char *why = NULL, *s;
    char str[TOPIC_NAME_MAX + 1];       /* the longest field read as a string */
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    memset(&m, 0, sizeof(m));
    if (strictjson_scan_object(buf, len, body_event_member, &m, &why) == -1)
        return body_fail_parse(err, why);
    if (m.has_unknown) {
        /* Big enough that the prefix unescape leaves when the key does
         * not fit (all but a character's 4 bytes) holds what is shown. */
        char key[BODY_SHOWN_KEY_MAX + 8];

        (void)strictjson_string_unescape(m.unknown, key, sizeof(key), &n);
        return body_fail_unknown(err, key);
    }
    /* Exactly one addressee: a user or a topic, never both (the event has
     * one history and one channel). */
    if (m.has_user && m.has_topic)
        return body_fail(err, "invalid_field", "give either userId or topic, not both");
    if (!m.has_user && !m.has_topic)
        return body_fail(err, "missing_field", "userId or topic is required");
    if (m.has_topic) {
        if ((s = body_member_string(&m.topic, str, sizeof(str), &n)) == NULL ||
            !topic_name_valid(s, n))
            return body_fail(err, "invalid_field",
                             "topic must be 1 to %d of A-Z a-z 0-9 . _ : / -",
                             TOPIC_NAME_MAX);
        memcpy(out->topic, s, n + 1);
    } else {
        int64_t v = 0;
        uint64_t ignored;

        if (m.user.kind == STRICTJSON_INT)
            strictjson_int_value(m.user.value, &v, &ignored);
        s = body_member_string(&m.user, str, sizeof(out->user_id), &n);
        if (body_set_user_id(s, n, m.user.kind == STRICTJSON_INT, v, out->user_id,
                             sizeof(out->user_id), err) == -1)
            return -1;
    }
    if (!m.has_type)
        return body_fail(err, "missing_field", "type is required");
    s = body_member_string(&m.type, str, sizeof(out->type), &n);
    if (body_set_type(s, n, out->type, sizeof(out->type), err) == -1)
        return -1;
    return body_read_data(m.has_data ? &m.data : NULL, out, err);
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
