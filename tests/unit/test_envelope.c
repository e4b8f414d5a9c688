/* test_envelope.c -- the envelope tail C builds (exact bytes, and valid
 * JSON once Redis prefixes the id), and reading channel messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envelope.h"

/* Parses text strictly, as a client would, or fails the test. */
static json_object *
parse_strict(const char *text)
{
    json_tokener *tok = json_tokener_new_ex(32);
    json_object *o;

    assert_non_null(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, text, (int)strlen(text));
    if (o == NULL || json_tokener_get_parse_end(tok) != strlen(text))
        fail_msg("not one JSON text: %s", text);
    json_tokener_free(tok);
    return o;
}

static const char *
get_string(json_object *o, const char *key)
{
    json_object *v;

    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

/* What the publish script does: {"id":"<id>",  + rest. */
static json_object *
complete(const char *rest)
{
    char full[1024];

    assert_true((size_t)snprintf(full, sizeof(full), "{\"id\":\"1-0\",%s", rest) <
                sizeof(full));
    assert_null(strchr(full, '\n'));                /* one line, for a data: field */
    return parse_strict(full);
}

static void
test_build_rest_exact(void **state)
{
    char *rest = envelope_build_rest("order.shipped", "42", "{\"a\":[1,2]}", 11,
                                     "gw-1", 1732484473123LL);

    (void)state;
    assert_non_null(rest);
    assert_string_equal(rest, "\"type\":\"order.shipped\",\"userId\":\"42\","
                              "\"data\":{\"a\":[1,2]},\"serverId\":\"gw-1\","
                              "\"ts\":1732484473123}");
    free(rest);
}

static void
test_build_rest_is_json(void **state)
{
    static const char data[] = "{\"url\":\"http://x/y\",\"n\":[1,null]}XXX";
    char *rest = envelope_build_rest("snapshot", "9007", data, strlen(data) - 3,
                                     "back\"end\n1\\/\x01", -5);
    json_object *o, *v;

    (void)state;
    assert_non_null(rest);
    /* data is copied verbatim, and only data_len bytes of it. */
    assert_non_null(strstr(rest, ",\"data\":{\"url\":\"http://x/y\",\"n\":[1,null]},"));
    assert_null(strstr(rest, "XXX"));
    /* The server id is escaped, "/" is not. */
    assert_non_null(strstr(rest, "\"serverId\":\"back\\\"end\\n1\\\\/\\u0001\""));
    o = complete(rest);
    assert_int_equal(json_object_object_length(o), 6);
    assert_string_equal(get_string(o, "id"), "1-0");
    assert_string_equal(get_string(o, "type"), "snapshot");
    assert_string_equal(get_string(o, "userId"), "9007");
    assert_string_equal(get_string(o, "serverId"), "back\"end\n1\\/\x01");
    assert_true(json_object_object_get_ex(o, "ts", &v));
    assert_true(json_object_is_type(v, json_type_int));
    assert_int_equal(json_object_get_int64(v), -5);
    assert_true(json_object_object_get_ex(o, "data", &v));
    assert_string_equal(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE),
                        "{\"url\":\"http://x/y\",\"n\":[1,null]}");
    json_object_put(o);
    free(rest);
}

static void
test_build_rest_scalar_data_and_unicode(void **state)
{
    char *rest = envelope_build_rest("t", "1", "null", 4, "gw-\xc3\xa9", INT64_MAX);
    json_object *o, *v;

    (void)state;
    assert_non_null(rest);
    assert_string_equal(rest, "\"type\":\"t\",\"userId\":\"1\",\"data\":null,"
                              "\"serverId\":\"gw-\xc3\xa9\",\"ts\":9223372036854775807}");
    o = complete(rest);
    assert_true(json_object_object_get_ex(o, "data", &v));
    assert_null(v);
    assert_string_equal(get_string(o, "serverId"), "gw-\xc3\xa9");
    json_object_put(o);
    free(rest);
}

/* Strings in the envelope are escaped exactly as json-c writes them
 * (envelope.c no longer asks json-c): every byte 1..255 in the server
 * id, compared with json-c's own quoting of the same string. */
static void
test_build_rest_escapes_like_json_c(void **state)
{
    char all[256], want[2048];
    json_object *js;
    char *rest;

    (void)state;
    for (int b = 1; b < 256; b++)
        all[b - 1] = (char)b;
    all[255] = '\0';
    js = json_object_new_string(all);
    assert_non_null(js);
    snprintf(want, sizeof(want), "\"type\":\"t\",\"topic\":\"r\",\"data\":1,"
             "\"serverId\":%s,\"ts\":0}",
             json_object_to_json_string_ext(js, JSON_C_TO_STRING_PLAIN |
                                                    JSON_C_TO_STRING_NOSLASHESCAPE));
    rest = envelope_build_topic_rest("t", "r", "1", 1, all, 0);
    assert_non_null(rest);
    assert_string_equal(rest, want);
    free(rest);
    json_object_put(js);
}

static int
parse(const char *msg, struct envelope_view *v, char *err, size_t errlen)
{
    return envelope_parse(msg, strlen(msg), v, err, errlen);
}

static void
test_parse_own_envelope(void **state)
{
    struct envelope_view v;
    char err[128];

    (void)state;
    assert_int_equal(parse("{\"id\":\"17-3\",\"type\":\"snapshot\",\"userId\":\"9\","
                           "\"data\":{\"x\":[1]},\"serverId\":\"b\",\"ts\":1}",
                           &v, err, sizeof(err)), 0);
    assert_int_equal(v.has_id, 1);
    assert_true(v.id.ms == 17 && v.id.seq == 3);
    assert_string_equal(v.type, "snapshot");
    assert_string_equal(v.user_id, "9");
    assert_string_equal(v.server_id, "b");
}

/* serverId only tells our own events apart (publish backpressure): an
 * odd one reads as absent and never rejects the event. */
static void
test_parse_server_id(void **state)
{
    struct envelope_view v;
    char err[128], sid[ENVELOPE_SERVER_MAX + 2], msg[300];

    (void)state;
    assert_int_equal(parse("{\"userId\":\"1\"}", &v, err, sizeof(err)), 0);
    assert_string_equal(v.server_id, "");
    assert_int_equal(parse("{\"userId\":\"1\",\"serverId\":7}", &v, err, sizeof(err)), 0);
    assert_string_equal(v.server_id, "");
    memset(sid, 's', ENVELOPE_SERVER_MAX);
    sid[ENVELOPE_SERVER_MAX] = '\0';
    snprintf(msg, sizeof(msg), "{\"userId\":\"1\",\"serverId\":\"%s\"}", sid);
    assert_int_equal(parse(msg, &v, err, sizeof(err)), 0);
    assert_string_equal(v.server_id, sid);
    sid[ENVELOPE_SERVER_MAX] = 's';
    sid[ENVELOPE_SERVER_MAX + 1] = '\0';
    snprintf(msg, sizeof(msg), "{\"userId\":\"1\",\"serverId\":\"%s\"}", sid);
    assert_int_equal(parse(msg, &v, err, sizeof(err)), 0);
    assert_string_equal(v.server_id, "");
}

static void
test_parse_foreign_messages(void **state)
{
    struct envelope_view v;
    char err[128], user64[80], msg[160];

    (void)state;
    /* What someone PUBLISHes by hand: no id, maybe no type, int userId. */
    assert_int_equal(parse("{\"userId\":\"1\",\"type\":\"x\",\"data\":{}}", &v, err,
                           sizeof(err)), 0);
    assert_int_equal(v.has_id, 0);
    assert_string_equal(v.type, "x");
    assert_string_equal(v.user_id, "1");
    assert_int_equal(parse("{\"userId\":7}", &v, err, sizeof(err)), 0);
    assert_string_equal(v.user_id, "7");
    assert_string_equal(v.type, "message");
    assert_int_equal(v.has_id, 0);
    assert_int_equal(parse("{\"userId\":0}", &v, err, sizeof(err)), 0);
    assert_string_equal(v.user_id, "0");
    assert_int_equal(parse("{\"userId\":18446744073709551614}", &v, err, sizeof(err)), 0);
    assert_string_equal(v.user_id, "18446744073709551614");
    /* White space around the object, a bare "<ms>" id, any string id. */
    assert_int_equal(parse(" {\"userId\":\"alice\",\"id\":\"5\"} \n", &v, err,
                           sizeof(err)), 0);
    assert_string_equal(v.user_id, "alice");
    assert_true(v.has_id == 1 && v.id.ms == 5 && v.id.seq == 0);
    /* 64 bytes is the longest userId. */
    memset(user64, 'u', 64);
    user64[64] = '\0';
    snprintf(msg, sizeof(msg), "{\"userId\":\"%s\"}", user64);
    assert_int_equal(parse(msg, &v, err, sizeof(err)), 0);
    assert_string_equal(v.user_id, user64);
}

static void
test_parse_is_length_bounded(void **state)
{
    static const char msg[] = "{\"userId\":\"1\"}garbage";
    struct envelope_view v;
    char err[128];

    (void)state;
    assert_int_equal(envelope_parse(msg, 14, &v, err, sizeof(err)), 0);
    assert_string_equal(v.user_id, "1");
    assert_int_equal(envelope_parse(msg, sizeof(msg) - 1, &v, err, sizeof(err)), -1);
    assert_int_equal(envelope_parse(msg, 13, &v, err, sizeof(err)), -1);
}

static void
test_parse_malformed(void **state)
{
    static const char *const bad[] = {
        "", "not json", "[1]", "\"x\"", "1", "null", "{\"userId\":\"1\"", "{\"userId\":\"1\"} x",
        "{\"userId\":\"1\"}{}", "{\"userId\":\"1\",}", "{\"type\":\"x\"}", "{}",
        "{\"userId\":\"\"}", "{\"userId\":null}", "{\"userId\":-1}", "{\"userId\":1.0}",
        "{\"userId\":true}", "{\"userId\":[\"1\"]}", "{\"userId\":\"a\\nb\"}",
        "{\"userId\":\"a\\u0000b\"}", "{\"userId\":\"a\\u007fb\"}", "{\"userId\":\"a\\u0085\"}",
        "{\"userId\":99999999999999999999}",
        "{\"userId\":\"1\",\"id\":\"abc\"}", "{\"userId\":\"1\",\"id\":5}",
        "{\"userId\":\"1\",\"id\":\"\"}", "{\"userId\":\"1\",\"id\":\"1-2-3\"}",
        "{\"userId\":\"1\",\"id\":null}", "{\"userId\":\"1\",\"type\":\"a b\"}",
        "{\"userId\":\"1\",\"type\":\"\"}", "{\"userId\":\"1\",\"type\":5}",
        "{\"userId\":\"1\",\"type\":\"a\\nb\"}", "{\"userId\":\"\xff\"}",
        /* What json-c alone lets through, and what would reach a client
         * as it came (a channel message is framed verbatim). */
        "{\"userId\":\"1\",\"data\":\"\xc0\x80\"}",
        "{\"userId\":\"1\",\"data\":\"\xe0\x80\x80\"}",
        "{\"userId\":\"1\",\"data\":\"\xed\xa0\x80\"}",
        "{\"userId\":\"1\",\"data\":\"\xf4\x90\x80\x80\"}",
        "{\"userId\":\"1\",\"data\":\"\xf5\x80\x80\x80\"}",
        "{\"userId\":\"1\",\"data\":\"\\ud800\"}",
        "{\"userId\":\"1\",\"data\":\"a\nb\"}",
        "{\"userId\":\"1\",\"data\":\"a\rb\"}",
        "{\"userId\":\"1\",\"data\":\"a\tb\"}",
        "{\"userId\":\"1\",\"data\":{\"k\":\"\x1f\"}}",
        /* Types that fire EventSource's own handlers. */
        "{\"userId\":\"1\",\"type\":\"error\"}",
        "{\"userId\":\"1\",\"type\":\"open\"}",
    };
    char user65[80], type65[80], msg[200];
    struct envelope_view v;
    char err[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (parse(bad[i], &v, err, sizeof(err)) != -1)
            fail_msg("accepted: %s", bad[i]);
        if (err[0] == '\0')
            fail_msg("no reason for: %s", bad[i]);
    }
    memset(user65, 'u', 65);
    user65[65] = '\0';
    snprintf(msg, sizeof(msg), "{\"userId\":\"%s\"}", user65);
    assert_int_equal(parse(msg, &v, err, sizeof(err)), -1);
    memset(type65, 't', 65);
    type65[65] = '\0';
    snprintf(msg, sizeof(msg), "{\"userId\":\"1\",\"type\":\"%s\"}", type65);
    assert_int_equal(parse(msg, &v, err, sizeof(err)), -1);
    type65[64] = '\0';
    snprintf(msg, sizeof(msg), "{\"userId\":\"1\",\"type\":\"%s\"}", type65);
    assert_int_equal(parse(msg, &v, err, sizeof(err)), 0);
    assert_string_equal(v.type, type65);
}

static void
test_parse_error_reasons(void **state)
{
    struct envelope_view v;
    char err[128], tiny[6];

    (void)state;
    assert_int_equal(parse("[1]", &v, err, sizeof(err)), -1);
    assert_string_equal(err, "not a JSON object");
    assert_int_equal(parse("{\"type\":\"x\"}", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "userId"));
    assert_int_equal(parse("{\"userId\":\"1\",\"type\":\"a b\"}", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "type"));
    assert_int_equal(parse("{\"userId\":\"1\",\"id\":\"abc\"}", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "id"));
    /* The reason is cut to the buffer given. */
    assert_int_equal(parse("[1]", &v, tiny, sizeof(tiny)), -1);
    assert_string_equal(tiny, "not a");
}

static void
test_type_reserved(void **state)
{
    static const char *const reserved[] = {
        "account.created", "snapshot", "gap", "token-expired", "presence.",
        "presence.join", "presence.x.y", "error", "open",
    };
    static const char *const free_types[] = {
        "message", "order.shipped", "Snapshot", "snapshots", "account.created2",
        "gap.", "presence", "presencex", "Presence.join", "errors", "Error", "opened",
        "x",
    };
    struct envelope_view v;
    char err[128];

    (void)state;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (!envelope_type_reserved(reserved[i]))
            fail_msg("not reserved: %s", reserved[i]);
    for (size_t i = 0; i < sizeof(free_types) / sizeof(free_types[0]); i++)
        if (envelope_type_reserved(free_types[i]))
            fail_msg("reserved: %s", free_types[i]);
    /* On the channel only error and open are refused: the gateway's own
     * events come that way with their own types. */
    assert_true(envelope_type_fires_handler("error"));
    assert_true(envelope_type_fires_handler("open"));
    assert_false(envelope_type_fires_handler("snapshot"));
    assert_int_equal(parse("{\"userId\":\"1\",\"type\":\"snapshot\"}", &v, err,
                           sizeof(err)), 0);
    assert_int_equal(parse("{\"userId\":\"1\",\"type\":\"presence.join\"}", &v, err,
                           sizeof(err)), 0);
    assert_int_equal(parse("{\"userId\":\"1\",\"type\":\"open\"}", &v, err,
                           sizeof(err)), -1);
    assert_non_null(strstr(err, "handler"));
}

static void
test_type_valid(void **state)
{
    char t65[66];

    (void)state;
    assert_true(envelope_type_valid("order.shipped", 13));
    assert_true(envelope_type_valid("A-Z_0.9", 7));
    assert_true(envelope_type_valid("ab", 1));          /* only len bytes */
    assert_false(envelope_type_valid("", 0));
    assert_false(envelope_type_valid("a b", 3));
    assert_false(envelope_type_valid("a/b", 3));
    assert_false(envelope_type_valid("a:b", 3));
    assert_false(envelope_type_valid("a\nb", 3));
    assert_false(envelope_type_valid("a\0b", 3));
    assert_false(envelope_type_valid("\xc3\xa9", 2));
    memset(t65, 'a', 65);
    assert_true(envelope_type_valid(t65, 64));
    assert_false(envelope_type_valid(t65, 65));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_rest_exact),
        cmocka_unit_test(test_build_rest_is_json),
        cmocka_unit_test(test_build_rest_scalar_data_and_unicode),
        cmocka_unit_test(test_build_rest_escapes_like_json_c),
        cmocka_unit_test(test_parse_own_envelope),
        cmocka_unit_test(test_parse_foreign_messages),
        cmocka_unit_test(test_parse_server_id),
        cmocka_unit_test(test_parse_is_length_bounded),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_error_reasons),
        cmocka_unit_test(test_type_valid),
        cmocka_unit_test(test_type_reserved),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
