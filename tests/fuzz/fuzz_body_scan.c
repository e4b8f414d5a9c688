/* fuzz_body_scan.c -- libFuzzer target: differential. body_parse_event
 * reads a POST /events body with the allocation-free
 * strictjson_scan_object and copies its data out of the text (json-c
 * reads the data alone only when that copy would differ from what
 * json-c writes back); before that it built the whole body into json-c
 * objects (strictjson_parse_object) and wrote data back with json-c.
 * Both readings must agree on every input: the same return value, the
 * same error code and message, byte for byte, and the same fields: the
 * userId, topic and type, data_json's bytes and data_len.
 *
 * fuzz-sources: src/body.c src/strictjson.c src/envelope.c src/eventid.c src/sse.c src/topic.c
 * fuzz-libs: json-c
 * fuzz-covers: src/body.c:body_parse_event src/body.c:body_copy_data src/body.c:body_string_end src/body.c:body_copy_escaped src/body.c:body_read_data src/body.c:body_event_member
 */
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "body.h"
#include "envelope.h"
#include "fuzz.h"
#include "strictjson.h"
#include "topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- REFERENCE: body_parse_event as it was on json-c (src/body.c
 * before strictjson_scan_object, at 5c183b5), kept only here, unchanged
 * but for the names. ---- */

#define BODY_USER_ID_INT_MAX INT64_C(999999999999999999)
#define BODY_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define BODY_SHOWN_KEY_MAX 40

static int
ref_fail(struct body_error *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
ref_fail(struct body_error *e, const char *code, const char *fmt, ...)
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
ref_parse_object(const char *buf, size_t len, struct body_error *e)
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
        ref_fail(e, "out_of_memory", "the server is out of memory");
    else
        ref_fail(e, "invalid_json", "the body is %s", why);
    return NULL;
}

/* Fails on the first key of o that is not in allowed (NULL-terminated). */
static int
ref_check_fields(json_object *o, const char *const *allowed,
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
        return ref_fail(e, "unknown_field", "unknown field '%s'", shown);
    }
    return 0;
}

/* "userId": a string of 1..18 digits without a leading zero, or a JSON
 * integer 1..10^18-1 (which json-c holds exactly), kept as digits. */
static int
ref_read_user_id(json_object *o, char *out, size_t cap, struct body_error *e)
{
    json_object *v;

    if (!json_object_object_get_ex(o, "userId", &v))
        return ref_fail(e, "missing_field", "userId is required");
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
    return ref_fail(e, "invalid_field",
                     "userId must be 1 to %d digits without a leading zero",
                     BODY_USER_ID_MAX_DIGITS);
}

static int
ref_read_type(json_object *o, char *out, size_t cap, struct body_error *e)
{
    json_object *v;

    if (!json_object_object_get_ex(o, "type", &v))
        return ref_fail(e, "missing_field", "type is required");
    if (!json_object_is_type(v, json_type_string) ||
        !envelope_type_valid(json_object_get_string(v),
                             (size_t)json_object_get_string_len(v)))
        return ref_fail(e, "invalid_field",
                         "type must be 1 to %d of A-Z a-z 0-9 . _ -", SSE_EVENT_MAX);
    snprintf(out, cap, "%s", json_object_get_string(v));
    /* The type is checked above, so it can be quoted back as it is. */
    if (envelope_type_reserved(out))
        return ref_fail(e, "reserved_type",
                         "type '%s' is reserved (the gateway or EventSource "
                         "gives it its own meaning)", out);
    return 0;
}

/* RFC 8259's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
ref_is_json_number(const char *s)
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
ref_check_data(json_object *v, struct body_error *e)
{
    switch (json_object_get_type(v)) {
    case json_type_double: {
        const char *text = json_object_to_json_string_ext(v, BODY_JSON_FLAGS);

        if (text == NULL)
            return ref_fail(e, "out_of_memory", "the server is out of memory");
        if (!ref_is_json_number(text))
            return ref_fail(e, "invalid_json",
                             "the body is not valid JSON (data has the number %.20s)",
                             text);
        if (!isfinite(json_object_get_double(v)))
            return ref_fail(e, "invalid_field", "data has a number out of range");
        return 0;
    }
    case json_type_int:
        if (json_object_get_int64(v) == INT64_MIN ||
            json_object_get_uint64(v) == UINT64_MAX)
            return ref_fail(e, "invalid_field", "data has a number out of range");
        return 0;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (ref_check_data(json_object_array_get_idx(v, i), e) == -1)
                return -1;
        }
        return 0;
    case json_type_object: {
        json_object_object_foreach(v, key, val) {
            (void)key;
            if (ref_check_data(val, e) == -1)
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

static int
ref_parse_event(const char *buf, size_t len, struct event_input *out,
                 struct body_error *err)
{
    static const char *const allowed[] = { "userId", "topic", "type", "data", NULL };
    json_object *o, *data = NULL, *v;
    const char *d;
    size_t dlen;
    int rc = -1, has_user, has_topic;

    memset(out, 0, sizeof(*out));
    if ((o = ref_parse_object(buf, len, err)) == NULL)
        return -1;
    if (ref_check_fields(o, allowed, err) == -1)
        goto out;
    /* Exactly one addressee: a user or a topic, never both (the event has
     * one history and one channel). */
    has_user = json_object_object_get_ex(o, "userId", NULL);
    has_topic = json_object_object_get_ex(o, "topic", &v);
    if (has_user && has_topic) {
        ref_fail(err, "invalid_field", "give either userId or topic, not both");
        goto out;
    }
    if (!has_user && !has_topic) {
        ref_fail(err, "missing_field", "userId or topic is required");
        goto out;
    }
    if (has_topic) {
        if (!json_object_is_type(v, json_type_string) ||
            !topic_name_valid(json_object_get_string(v),
                              (size_t)json_object_get_string_len(v))) {
            ref_fail(err, "invalid_field",
                      "topic must be 1 to %d of A-Z a-z 0-9 . _ : / -", TOPIC_NAME_MAX);
            goto out;
        }
        memcpy(out->topic, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
    } else if (ref_read_user_id(o, out->user_id, sizeof(out->user_id), err) == -1) {
        goto out;
    }
    if (ref_read_type(o, out->type, sizeof(out->type), err) == -1)
        goto out;
    /* Absent and null both leave data NULL, which json-c writes "null". */
    json_object_object_get_ex(o, "data", &data);
    if (ref_check_data(data, err) == -1)
        goto out;
    if ((d = json_object_to_json_string_length(data, BODY_JSON_FLAGS, &dlen)) == NULL ||
        (out->data_json = malloc(dlen + 1)) == NULL) {
        ref_fail(err, "out_of_memory", "the server is out of memory");
        goto out;
    }
    memcpy(out->data_json, d, dlen + 1);
    out->data_len = dlen;
    rc = 0;
out:
    json_object_put(o);         /* d pointed into o: copied above */
    return rc;
}


/* ---- end of the reference ---- */

static void
same_event(const char *msg, size_t size)
{
    struct event_input want, got;
    struct body_error want_err, got_err;
    int want_rc, got_rc;

    /* Every byte of both, padding included, starts the same. */
    memset(&want, 0xa5, sizeof(want));
    memset(&got, 0xa5, sizeof(got));
    memset(&want_err, 0, sizeof(want_err));
    memset(&got_err, 0, sizeof(got_err));
    want_rc = ref_parse_event(msg, size, &want, &want_err);
    got_rc = body_parse_event(msg, size, &got, &got_err);
    if (want_rc == -1 && strcmp(want_err.code, "out_of_memory") == 0)
        goto out;
    if (want_rc != got_rc || memcmp(&want_err, &got_err, sizeof(want_err)) != 0)
        fprintf(stderr, "json-c %d %s \"%s\", scanner %d %s \"%s\"\n", want_rc,
                want_err.code, want_err.message, got_rc, got_err.code, got_err.message);
    FUZZ_CHECK(want_rc == got_rc);
    FUZZ_CHECK(memcmp(&want_err, &got_err, sizeof(want_err)) == 0);
    FUZZ_CHECK(memcmp(want.user_id, got.user_id, sizeof(want.user_id)) == 0);
    FUZZ_CHECK(memcmp(want.topic, got.topic, sizeof(want.topic)) == 0);
    FUZZ_CHECK(memcmp(want.type, got.type, sizeof(want.type)) == 0);
    FUZZ_CHECK((want.data_json == NULL) == (got.data_json == NULL));
    FUZZ_CHECK(want.data_len == got.data_len);
    if (want.data_json != NULL) {
        if (memcmp(want.data_json, got.data_json, want.data_len + 1) != 0)
            fprintf(stderr, "data: json-c %s, scanner %s\n", want.data_json, got.data_json);
        FUZZ_CHECK(memcmp(want.data_json, got.data_json, want.data_len + 1) == 0);
    }
out:
    event_input_clear(&want);
    event_input_clear(&got);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *msg = fuzz_copy(data, size, 0);

    same_event(msg, size);
    free(msg);
    return 0;
}
