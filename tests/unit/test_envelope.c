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
#include "strictjson.h"

/* A literal and its length; the error buffer. */
#define S(lit) lit, sizeof(lit) - 1
#define E err, sizeof(err)

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


/* ---- strictjson_scan_object, which envelope_parse reads with: it must
 * accept and refuse exactly what strictjson_parse_object (json-c) does. */

static void
no_member(void *ctx, const struct strictjson_member *m)
{
    (void)ctx;
    (void)m;
}

/* The scanner's verdict on len bytes ("ok" or the reason), checked
 * against json-c's. */
static const char *
scan_verdict(const char *text, size_t len)
{
    const char *why = NULL, *jwhy = NULL;
    int rc = strictjson_scan_object(text, len, no_member, NULL, &why);
    json_object *o = strictjson_parse_object(text, len, &jwhy);

    if ((rc == 0) != (o != NULL) || (o == NULL && strcmp(why, jwhy) != 0))
        fail_msg("scanner %s, json-c %s: %.*s", rc == 0 ? "ok" : why,
                 o != NULL ? "ok" : jwhy, (int)len, text);
    json_object_put(o);
    return rc == 0 ? "ok" : why;
}

static const char *
scan_str(const char *text)
{
    return scan_verdict(text, strlen(text));
}

static void
test_scan_numbers(void **state)
{
    /* json-c 0.16 strict takes all of these as numbers. */
    static const char *const ok[] = {
        "0", "-0", "00", "-00", "-01", "7", "1.5", "1.", "-.5", "1.e5", "1e3",
        "1E+3", "1e-3", "NaN", "Infinity", "-Infinity", "1e99999",
        "123456789012345678901234567890", "-123456789012345678901234567890",
    };
    static const char *const bad[] = {
        "01", "-", "1e", "1e+", ".5", "+1", "1.5.3", "--1", "infinity", "-infinity",
        "nan", "NAN", "0x1", "1-2", "1.-5", "1e5e", "-e", "-.", "True", "nul", "Null",
    };
    char text[96];

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(text, sizeof(text), "{\"a\":%s}", ok[i]);
        assert_string_equal(scan_str(text), "ok");
        snprintf(text, sizeof(text), "{\"a\":[%s ,%s]}", ok[i], ok[i]);
        assert_string_equal(scan_str(text), "ok");
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "{\"a\":%s}", bad[i]);
        assert_string_equal(scan_str(text), "not valid JSON");
    }
}

static void
test_scan_depth_limit(void **state)
{
    char text[256];
    size_t n;

    (void)state;
    /* The top-level object and 31 arrays: 32 containers, the innermost
     * empty, is the most json_tokener_new_ex(32) takes. */
    for (int inner = 30; inner <= 32; inner++) {
        n = (size_t)snprintf(text, sizeof(text), "{\"a\":");
        for (int k = 0; k < inner; k++)
            text[n++] = '[';
        for (int k = 0; k < inner; k++)
            text[n++] = ']';
        text[n++] = '}';
        text[n] = '\0';
        assert_string_equal(scan_str(text), inner <= 31 ? "ok" : "not valid JSON");
    }
    /* A scalar needs a level of its own: inside 30 arrays it is fine,
     * inside 31 it is one too deep. */
    for (int inner = 30; inner <= 31; inner++) {
        n = (size_t)snprintf(text, sizeof(text), "{\"a\":");
        for (int k = 0; k < inner; k++)
            text[n++] = '[';
        text[n++] = '1';
        for (int k = 0; k < inner; k++)
            text[n++] = ']';
        text[n++] = '}';
        text[n] = '\0';
        assert_string_equal(scan_str(text), inner == 30 ? "ok" : "not valid JSON");
    }
}

static void
test_scan_text_edges(void **state)
{
    (void)state;
    assert_string_equal(scan_str(" \t\r\n{ \"a\" : 1 , \"b\" :[ ] } \r\n\t "), "ok");
    assert_string_equal(scan_str("\f{}"), "not valid JSON");
    assert_string_equal(scan_str("{}\v"), "not valid JSON");
    assert_string_equal(scan_str("\xef\xbb\xbf{}"), "not valid JSON");     /* a BOM */
    assert_string_equal(scan_str(""), "not valid JSON");
    assert_string_equal(scan_str("   "), "not valid JSON");
    assert_string_equal(scan_str("{} x"), "not valid JSON");
    assert_string_equal(scan_str("{}{}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":1,}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":[1,]}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":1}/**/"), "not valid JSON");
    assert_string_equal(scan_str("{/**/}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":'b'}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":\"\\x\"}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":\"\\u12G4\"}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\" 1}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":1"), "not valid JSON");
    /* Single-quoted keys: json-c takes them even in strict mode, and
     * strictjson_check_text, which knows only '"', then sees strings
     * where there are none: a raw control character passes. */
    assert_string_equal(scan_str("{'a':1}"), "ok");
    assert_string_equal(scan_str("{'a\x01\"':1}"), "ok");
    assert_string_equal(scan_str("{'\"':\"\x01\"}"), "ok");
    assert_string_equal(scan_str("{'\"':1,\"a\":\"\\ud800\"}"), "ok");
    assert_string_equal(scan_str("{\"a\":\"\x01\",'\"':1}"),
                        "not valid JSON (a control character in a string must be escaped)");
    assert_string_equal(scan_str("{'\\'':1}"), "not valid JSON");
    assert_string_equal(scan_str("{\"a\":\"\\udc00\"}"),
                        "not valid JSON (a \\u escape is half of a surrogate pair)");
    assert_string_equal(scan_str("{\"a\":\"\xc0\x80\"}"), "not valid JSON (not valid UTF-8)");
    /* Not an object. */
    assert_string_equal(scan_str("[]"), "not a JSON object");
    assert_string_equal(scan_str("\"s\""), "not a JSON object");
    assert_string_equal(scan_str("1 "), "not a JSON object");
    assert_string_equal(scan_str("true\n"), "not a JSON object");
    assert_string_equal(scan_str("1"), "not valid JSON");       /* json-c waits for more */
    assert_string_equal(scan_str("true"), "not valid JSON");
    assert_string_equal(scan_str("null "), "not valid JSON");   /* json-c's NULL object */
    /* json-c stops at a NUL after the value, without an error. */
    assert_string_equal(scan_verdict("{}\0", 3), "data after the JSON value");
    assert_string_equal(scan_verdict("{} \0x", 5), "data after the JSON value");
    assert_string_equal(scan_verdict("1\0", 2), "data after the JSON value");
    assert_string_equal(scan_verdict("null\0", 5), "not valid JSON");
    assert_string_equal(scan_verdict("{\0}", 3), "not valid JSON");
    assert_string_equal(scan_verdict("{\"a\":1\0}", 8), "not valid JSON");
    assert_string_equal(scan_verdict("{\"a\0\":1}", 8),
                        "not valid JSON (a control character in a string must be escaped)");
    assert_string_equal(scan_verdict("{} \0\"\x01", 6),
                        "not valid JSON (a control character in a string must be escaped)");
}

static void
test_scan_keys_and_duplicates(void **state)
{
    struct envelope_view v;
    char err[128];

    (void)state;
    /* The last of a duplicate key wins, as in json-c. */
    assert_int_equal(envelope_parse(S("{\"userId\":\"a\",\"userId\":\"b\"}"), &v, E), 0);
    assert_string_equal(v.user_id, "b");
    assert_int_equal(envelope_parse(S("{\"userId\":\"a\",\"userId\":null}"), &v, E), -1);
    assert_int_equal(envelope_parse(S("{\"userId\":\"a\",\"type\":\"x\",\"type\":\"y\"}"), &v, E), 0);
    assert_string_equal(v.type, "y");
    /* Keys compare unescaped, cut at an escaped NUL, in either quotes. */
    assert_int_equal(envelope_parse(S("{\"user\\u0049d\":\"a\"}"), &v, E), 0);
    assert_string_equal(v.user_id, "a");
    assert_int_equal(envelope_parse(S("{\"userId\\u0000x\":\"c\"}"), &v, E), 0);
    assert_string_equal(v.user_id, "c");
    assert_int_equal(envelope_parse(S("{'userId':\"d\"}"), &v, E), 0);
    assert_string_equal(v.user_id, "d");
    assert_int_equal(envelope_parse(S("{\"userid\":\"a\"}"), &v, E), -1);
    /* A member of a nested object is not a top-level member. */
    assert_int_equal(envelope_parse(S("{\"data\":{\"userId\":\"a\"}}"), &v, E), -1);
}

static void
test_scan_values(void **state)
{
    struct envelope_view v;
    char err[128];

    (void)state;
    /* userId as json-c reads an integer: "-0" is 0, beyond UINT64_MAX
     * saturates to it and is refused, a double is not an integer. */
    assert_int_equal(envelope_parse(S("{\"userId\":-0}"), &v, E), 0);
    assert_string_equal(v.user_id, "0");
    assert_int_equal(envelope_parse(S("{\"userId\":00}"), &v, E), 0);
    assert_string_equal(v.user_id, "0");
    assert_int_equal(envelope_parse(S("{\"userId\":18446744073709551614}"), &v, E), 0);
    assert_string_equal(v.user_id, "18446744073709551614");
    assert_int_equal(envelope_parse(S("{\"userId\":18446744073709551615}"), &v, E), -1);
    assert_int_equal(envelope_parse(S("{\"userId\":99999999999999999999}"), &v, E), -1);
    assert_int_equal(envelope_parse(S("{\"userId\":-1}"), &v, E), -1);
    assert_int_equal(envelope_parse(S("{\"userId\":1e3}"), &v, E), -1);
    assert_int_equal(envelope_parse(S("{\"userId\":\"a\\u0000\"}"), &v, E), -1);
    /* ts: a positive json-c int; beyond INT64_MAX reads as INT64_MAX. */
    assert_int_equal(envelope_parse(S("{\"userId\":1,\"ts\":1e3}"), &v, E), 0);
    assert_int_equal(v.ts_ms, 0);
    assert_int_equal(envelope_parse(S("{\"userId\":1,\"ts\":9223372036854775808}"), &v, E), 0);
    assert_true(v.ts_ms == INT64_MAX);
    assert_int_equal(envelope_parse(S("{\"userId\":1,\"ts\":99999999999999999999999}"), &v, E), 0);
    assert_true(v.ts_ms == INT64_MAX);
    assert_int_equal(envelope_parse(S("{\"userId\":1,\"ts\":-5}"), &v, E), 0);
    assert_int_equal(v.ts_ms, 0);
    /* serverId keeps an escaped NUL, as get_string_len does. */
    assert_int_equal(envelope_parse(S("{\"userId\":1,\"serverId\":\"a\\u0000b\"}"), &v, E), 0);
    assert_memory_equal(v.server_id, "a\0b", 4);
    /* Escapes unescape, a surrogate pair included. */
    assert_int_equal(envelope_parse(S("{\"userId\":\"\\u00e9\\ud83d\\ude00\\/\"}"), &v, E), 0);
    assert_string_equal(v.user_id, "\xc3\xa9\xf0\x9f\x98\x80/");
    /* A lone surrogate check_text did not see (after a single-quoted
     * key) is U+FFFD, as json-c makes it. */
    assert_int_equal(envelope_parse(S("{'\"':1,\"userId\":\"a\",\"serverId\":\"\\ud800x\"}"), &v, E), 0);
    assert_string_equal(v.server_id, "\xef\xbf\xbdx");
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
        cmocka_unit_test(test_scan_numbers),
        cmocka_unit_test(test_scan_depth_limit),
        cmocka_unit_test(test_scan_text_edges),
        cmocka_unit_test(test_scan_keys_and_duplicates),
        cmocka_unit_test(test_scan_values),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
