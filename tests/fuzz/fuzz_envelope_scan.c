/* fuzz_envelope_scan.c -- libFuzzer target: differential. envelope_parse
 * and envelope_parse_topic read a channel message with the allocation-free
 * strictjson_scan_object; before that they used json-c
 * (strictjson_parse_object). Both readings must agree on every input:
 * the same return value, the same view, byte for byte, and the same
 * reason; and strictjson_scan_object must accept and refuse what
 * strictjson_parse_object does, with the same reason.
 *
 * fuzz-sources: src/envelope.c src/strictjson.c src/eventid.c src/sse.c src/topic.c
 * fuzz-libs: json-c
 * fuzz-covers: src/envelope.c:envelope_parse_for src/strictjson.c
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"
#include "eventid.h"
#include "fuzz.h"
#include "strictjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- REFERENCE: envelope_parse as it was on json-c (src/envelope.c
 * before strictjson_scan_object), kept only here, unchanged but for
 * the names. ---- */

static int
ref_read_user(json_object *v, char *out, size_t cap)
{
    const unsigned char *s;
    size_t n;

    if (json_object_is_type(v, json_type_int)) {
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
        if (s[i] < 0x20 || s[i] == 0x7f ||
            (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f))
            return -1;
    }
    memcpy(out, s, n + 1);
    return 0;
}

static int
ref_parse_for(const char *msg, size_t len, int topic, struct envelope_view *out,
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
                   ref_read_user(v, out->user_id, sizeof(out->user_id)) == -1)) {
        why = "userId must be a non-empty string or a non-negative integer";
        goto err;
    }
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
    if (json_object_object_get_ex(o, "id", &v)) {
        if (!json_object_is_type(v, json_type_string) ||
            eventid_parse(json_object_get_string(v),
                          (size_t)json_object_get_string_len(v), &out->id) == -1) {
            why = "id must be a string \"<ms>-<seq>\"";
            goto err;
        }
        out->has_id = 1;
    }
    if (json_object_object_get_ex(o, "serverId", &v) &&
        json_object_is_type(v, json_type_string) &&
        (size_t)json_object_get_string_len(v) <= ENVELOPE_SERVER_MAX)
        memcpy(out->server_id, json_object_get_string(v),
               (size_t)json_object_get_string_len(v) + 1);
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

/* ---- end of the reference ---- */

static void
ignore_member(void *ctx, const struct strictjson_member *m)
{
    (void)ctx;
    /* Every member's spans lie inside the text. */
    FUZZ_CHECK(m->key.p != NULL && m->value.p != NULL);
}

static void
same_parse(const char *msg, size_t size, int topic)
{
    struct envelope_view want, got;
    char want_err[128], got_err[128];
    int want_rc, got_rc;

    /* Every byte of both, padding included, starts the same. */
    memset(&want, 0xa5, sizeof(want));
    memset(&got, 0xa5, sizeof(got));
    memset(want_err, 0, sizeof(want_err));
    memset(got_err, 0, sizeof(got_err));
    want_rc = ref_parse_for(msg, size, topic, &want, want_err, sizeof(want_err));
    if (strcmp(want_err, "out of memory") == 0)
        return;
    got_rc = topic ? envelope_parse_topic(msg, size, &got, got_err, sizeof(got_err))
                   : envelope_parse(msg, size, &got, got_err, sizeof(got_err));
    if (want_rc != got_rc || strcmp(want_err, got_err) != 0)
        fprintf(stderr, "topic %d: json-c %d \"%s\", scanner %d \"%s\"\n", topic,
                want_rc, want_err, got_rc, got_err);
    FUZZ_CHECK(want_rc == got_rc);
    FUZZ_CHECK(strcmp(want_err, got_err) == 0);
    FUZZ_CHECK(want.has_id == got.has_id);
    FUZZ_CHECK(memcmp(&want.id, &got.id, sizeof(want.id)) == 0);
    FUZZ_CHECK(memcmp(want.type, got.type, sizeof(want.type)) == 0);
    FUZZ_CHECK(memcmp(want.user_id, got.user_id, sizeof(want.user_id)) == 0);
    FUZZ_CHECK(memcmp(want.server_id, got.server_id, sizeof(want.server_id)) == 0);
    FUZZ_CHECK(want.ts_ms == got.ts_ms);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *msg = fuzz_copy(data, size, 0);
    const char *want_why = NULL, *got_why = NULL;
    json_object *o = strictjson_parse_object(msg, size, &want_why);
    int got = strictjson_scan_object(msg, size, ignore_member, NULL, &got_why);

    if (o != NULL || strcmp(want_why, "out of memory") != 0) {
        if ((o != NULL) != (got == 0) || (o == NULL && strcmp(want_why, got_why) != 0))
            fprintf(stderr, "json-c %s, scanner %s\n", o != NULL ? "ok" : want_why,
                    got == 0 ? "ok" : got_why);
        FUZZ_CHECK((o != NULL) == (got == 0));
        FUZZ_CHECK(o != NULL || strcmp(want_why, got_why) == 0);
    }
    json_object_put(o);
    same_parse(msg, size, 0);
    same_parse(msg, size, 1);
    free(msg);
    return 0;
}
