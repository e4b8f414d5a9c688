/* test_body.c -- which request bodies are accepted, what each field
 * becomes, and the code and message of every rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "body.h"

/* ---------------------------------------------------------------- accounts */

static int
account(const char *json, struct account_input *in, struct body_error *e)
{
    return body_parse_account(json, strlen(json), in, e);
}

/* Expects a rejection with code; the message must name word (a field). */
static void
expect_account_error(const char *json, const char *code, const char *word)
{
    struct account_input in;
    struct body_error e;

    memset(&e, 0, sizeof(e));
    if (account(json, &in, &e) != -1)
        fail_msg("accepted: %s", json);
    if (strcmp(e.code, code) != 0)
        fail_msg("%s: code %s, want %s (%s)", json, e.code, code, e.message);
    if (strstr(e.message, word) == NULL)
        fail_msg("%s: message '%s' does not say '%s'", json, e.message, word);
}

static void
test_account_ok(void **state)
{
    struct account_input in;
    struct body_error e;

    (void)state;
    assert_int_equal(account("{\"name\":\"Ada\",\"balance\":100000}", &in, &e), 0);
    assert_string_equal(in.name, "Ada");
    assert_int_equal(in.balance, 100000);
    assert_int_equal(account(" {\"balance\":0, \"name\":\"B\"} \r\n\t", &in, &e), 0);
    assert_string_equal(in.name, "B");
    assert_int_equal(in.balance, 0);
    assert_int_equal(account("{\"name\":\"x\"}", &in, &e), 0);
    assert_int_equal(in.balance, 0);                    /* the default */
    assert_int_equal(account("{\"name\":\"x\",\"balance\":9007199254740991}", &in, &e), 0);
    assert_int_equal(in.balance, BODY_BALANCE_MAX);
    /* Inner and escaped spaces, "/" and escapes are kept as text. */
    assert_int_equal(account("{\"name\":\" Ada  L. \\u00e9/\\\"q\\\" \"}", &in, &e), 0);
    assert_string_equal(in.name, " Ada  L. \xc3\xa9/\"q\" ");
}

static void
test_account_name_length(void **state)
{
    char json[1024], name[512];
    struct account_input in;
    struct body_error e;

    (void)state;
    memset(name, 'a', 100);
    name[100] = '\0';
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    assert_int_equal(account(json, &in, &e), 0);
    assert_string_equal(in.name, name);
    name[100] = 'a';
    name[101] = '\0';
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    expect_account_error(json, "invalid_field", "name");

    /* Characters, not bytes: 100 of two bytes, then 100 of four. */
    name[0] = '\0';
    for (int i = 0; i < 100; i++)
        strcat(name, "\xc3\xa9");
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    assert_int_equal(account(json, &in, &e), 0);
    assert_string_equal(in.name, name);
    strcat(name, "\xc3\xa9");
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    expect_account_error(json, "invalid_field", "name");

    name[0] = '\0';
    for (int i = 0; i < 100; i++)
        strcat(name, "\xf0\x9f\x98\x80");              /* U+1F600, 400 bytes in all */
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    assert_int_equal(account(json, &in, &e), 0);
    assert_int_equal(strlen(in.name), 400);
    assert_string_equal(in.name, name);
    strcat(name, "\xf0\x9f\x98\x80");
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    expect_account_error(json, "invalid_field", "name");

    /* A surrogate pair escape is one character. */
    assert_int_equal(account("{\"name\":\"\\ud83d\\ude00\"}", &in, &e), 0);
    assert_string_equal(in.name, "\xf0\x9f\x98\x80");
}

static void
test_account_rejects_json(void **state)
{
    (void)state;
    expect_account_error("", "invalid_json", "JSON");
    expect_account_error("   ", "invalid_json", "JSON");
    expect_account_error("{\"name\":\"a\"} xyz", "invalid_json", "JSON");
    expect_account_error("{\"name\":\"a\"}{}", "invalid_json", "JSON");
    expect_account_error("{\"name\":\"a\"", "invalid_json", "JSON");
    expect_account_error("{\"name\":", "invalid_json", "JSON");
    expect_account_error("[1]", "invalid_json", "object");
    expect_account_error("\"name\"", "invalid_json", "object");
    expect_account_error("null", "invalid_json", "JSON");   /* json-c reads null as NULL */
    expect_account_error("{\"name\":\"a\",}", "invalid_json", "JSON");
    expect_account_error("{\"name\":\"a\" /* c */}", "invalid_json", "JSON");
    expect_account_error("{\"name\":\"\xff\"}", "invalid_json", "JSON");
    expect_account_error("{\"name\":\"a\xc3\"}", "invalid_json", "JSON");
}

static void
test_account_rejects_fields(void **state)
{
    char deep[200];
    int n;

    (void)state;
    expect_account_error("{}", "missing_field", "name");
    expect_account_error("{\"balance\":1}", "missing_field", "name");
    expect_account_error("{\"name\":\"\"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"   \"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"\\u00a0\\u3000\"}", "invalid_field", "name");
    expect_account_error("{\"name\":5}", "invalid_field", "name");
    expect_account_error("{\"name\":null}", "invalid_field", "name");
    expect_account_error("{\"name\":[\"a\"]}", "invalid_field", "name");
    expect_account_error("{\"name\":\"a\\u0000b\"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"\\u0000\"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"a\\nb\"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"a\\tb\"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"a\\u007f\"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"a\\u0085\"}", "invalid_field", "name");
    expect_account_error("{\"name\":\"a\",\"balance\":-1}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":1.5}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":100.0}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":1e3}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":\"100\"}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":true}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":null}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":{}}", "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":99999999999999999999}",
                         "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":9223372036854775807}",
                         "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"balance\":9007199254740992}",
                         "invalid_field", "9007199254740991");
    expect_account_error("{\"name\":\"a\",\"balance\":-99999999999999999999}",
                         "invalid_field", "balance");
    expect_account_error("{\"name\":\"a\",\"nmae\":\"b\"}", "unknown_field", "'nmae'");
    expect_account_error("{\"Name\":\"a\"}", "unknown_field", "'Name'");
    /* The echoed key is bounded and printable. */
    expect_account_error("{\"name\":\"a\",\"x\\ny\":1}", "unknown_field", "'x?y'");
    /* Deeper than 32 levels is refused by the tokener. */
    n = snprintf(deep, sizeof(deep), "%s", "{\"name\":\"a\",\"x\":");
    memset(deep + n, '[', 40);
    memset(deep + n + 40, ']', 40);
    snprintf(deep + n + 80, sizeof(deep) - (size_t)n - 80, "%s", "}");
    expect_account_error(deep, "invalid_json", "JSON");
}

static void
test_account_is_length_bounded(void **state)
{
    static const char body[] = "{\"name\":\"Ada\"}trailing";
    struct account_input in;
    struct body_error e;

    (void)state;
    assert_int_equal(body_parse_account(body, 14, &in, &e), 0);
    assert_string_equal(in.name, "Ada");
    assert_int_equal(body_parse_account(body, 13, &in, &e), -1);
    assert_string_equal(e.code, "invalid_json");
    /* An embedded NUL is not the end of the body. */
    assert_int_equal(body_parse_account("{\"name\":\"a\"}\0x", 14, &in, &e), -1);
    assert_string_equal(e.code, "invalid_json");
}

/* ------------------------------------------------------------------ tokens */

static int
token(const char *json, struct token_input *in, struct body_error *e)
{
    return body_parse_token(json, strlen(json), in, e);
}

static void
test_token_request(void **state)
{
    struct token_input in;
    struct body_error e;
    static const struct { const char *json, *code, *word; } bad[] = {
        { "{}", "missing_field", "userId" },
        { "{\"userId\":\"007\"}", "invalid_field", "userId" },
        { "{\"userId\":\"7\",\"ttlSecs\":0}", "invalid_field", "ttlSecs" },
        { "{\"userId\":\"7\",\"ttlSecs\":2592001}", "invalid_field", "ttlSecs" },
        { "{\"userId\":\"7\",\"ttlSecs\":1.5}", "invalid_field", "ttlSecs" },
        { "{\"userId\":\"7\",\"firehose\":1}", "invalid_field", "firehose" },
        { "{\"userId\":\"7\",\"sub\":\"7\"}", "unknown_field", "sub" },
        { "[]", "invalid_json", "" },
    };

    (void)state;
    assert_int_equal(token("{\"userId\":\"42\"}", &in, &e), 0);
    assert_string_equal(in.user_id, "42");
    assert_int_equal(in.ttl_secs, 0);
    assert_int_equal(in.firehose, 0);
    assert_int_equal(token("{\"userId\":42,\"ttlSecs\":2592000,\"firehose\":true}", &in, &e), 0);
    assert_string_equal(in.user_id, "42");
    assert_int_equal(in.ttl_secs, 2592000);
    assert_int_equal(in.firehose, 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&e, 0, sizeof(e));
        if (token(bad[i].json, &in, &e) != -1)
            fail_msg("accepted: %s", bad[i].json);
        if (strcmp(e.code, bad[i].code) != 0 || strstr(e.message, bad[i].word) == NULL)
            fail_msg("%s: %s (%s), want %s naming %s", bad[i].json, e.code, e.message,
                     bad[i].code, bad[i].word);
    }
}

/* --------------------------------------------------------------- snapshots */

static void
test_snapshot(void **state)
{
    struct snapshot_input in;
    struct body_error e;

    (void)state;
    assert_int_equal(body_parse_snapshot("", 0, &in, &e), 0);
    assert_int_equal(in.has_balance, 0);
    assert_int_equal(body_parse_snapshot(NULL, 0, &in, &e), 0);
    assert_int_equal(in.has_balance, 0);
    assert_int_equal(body_parse_snapshot("{}", 2, &in, &e), 0);
    assert_int_equal(in.has_balance, 0);
    assert_int_equal(body_parse_snapshot("{\"balance\":120000}", 18, &in, &e), 0);
    assert_int_equal(in.has_balance, 1);
    assert_int_equal(in.balance, 120000);
    assert_int_equal(body_parse_snapshot("{\"balance\":0}", 13, &in, &e), 0);
    assert_int_equal(in.has_balance, 1);
    assert_int_equal(in.balance, 0);
    assert_int_equal(body_parse_snapshot("{\"balance\":-2}", 14, &in, &e), -1);
    assert_string_equal(e.code, "invalid_field");
    assert_int_equal(body_parse_snapshot("{\"balance\":1.5}", 15, &in, &e), -1);
    assert_string_equal(e.code, "invalid_field");
    assert_int_equal(body_parse_snapshot("{\"balance\":\"100\"}", 17, &in, &e), -1);
    assert_string_equal(e.code, "invalid_field");
    assert_int_equal(body_parse_snapshot("{\"x\":1}", 7, &in, &e), -1);
    assert_string_equal(e.code, "unknown_field");
    assert_string_equal(e.message, "unknown field 'x'");
    assert_int_equal(body_parse_snapshot(" ", 1, &in, &e), -1);
    assert_string_equal(e.code, "invalid_json");
    assert_int_equal(body_parse_snapshot("[]", 2, &in, &e), -1);
    assert_string_equal(e.code, "invalid_json");
}

/* ------------------------------------------------------------------ events */

static int
event(const char *json, struct event_input *in, struct body_error *e)
{
    return body_parse_event(json, strlen(json), in, e);
}

/* Parses an event that must be accepted and checks what it became. */
static void
expect_event(const char *json, const char *user_id, const char *type,
             const char *data_json)
{
    struct event_input in;
    struct body_error e;

    if (event(json, &in, &e) != 0)
        fail_msg("rejected %s: %s %s", json, e.code, e.message);
    assert_string_equal(in.user_id, user_id);
    assert_string_equal(in.type, type);
    assert_non_null(in.data_json);
    assert_string_equal(in.data_json, data_json);
    assert_int_equal(in.data_len, strlen(data_json));
    event_input_clear(&in);
    assert_null(in.data_json);
    assert_int_equal(in.data_len, 0);
}

static void
test_event_ok(void **state)
{
    char type64[65], json[200];

    (void)state;
    /* Nested data comes back on one line, compact, "/" unescaped. */
    expect_event("{\"userId\":\"42\",\"type\":\"order.shipped\","
                 "\"data\":{ \"a\" : [1, 2.50, -0.5e-3],\n \"u\":\"http:\\/\\/x/y\","
                 "\"n\":{\"b\":null,\"t\":true}}}",
                 "42", "order.shipped",
                 "{\"a\":[1,2.50,-0.5e-3],\"u\":\"http://x/y\",\"n\":{\"b\":null,\"t\":true}}");
    expect_event("{\"userId\":42,\"type\":\"t\"}", "42", "t", "null");   /* absent */
    expect_event("{\"userId\":\"7\",\"type\":\"t\",\"data\":null}", "7", "t", "null");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"a\\nb\"}", "1", "t",
                 "\"a\\nb\"");                          /* escaped, one line */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"\\u2028\"}", "1", "t",
                 "\"\xe2\x80\xa8\"");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":[]}", "1", "t", "[]");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":-12}", "1", "t", "-12");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":1E+2}", "1", "t", "1E+2");
    expect_event("{\"userId\":\"123456789012345678\",\"type\":\"A-Z_a.z-09\",\"data\":0}",
                 "123456789012345678", "A-Z_a.z-09", "0");
    expect_event("{\"userId\":999999999999999999,\"type\":\"t\"}",
                 "999999999999999999", "t", "null");
    memset(type64, 'x', 64);
    type64[64] = '\0';
    snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"%s\"}", type64);
    expect_event(json, "1", type64, "null");
}

static void
expect_event_error(const char *json, const char *code, const char *word)
{
    struct event_input in;
    struct body_error e;

    memset(&e, 0, sizeof(e));
    if (event(json, &in, &e) != -1)
        fail_msg("accepted: %s", json);
    if (strcmp(e.code, code) != 0)
        fail_msg("%s: code %s, want %s (%s)", json, e.code, code, e.message);
    if (strstr(e.message, word) == NULL)
        fail_msg("%s: message '%s' does not say '%s'", json, e.message, word);
    assert_null(in.data_json);                          /* nothing to free */
}

static void
test_event_rejects(void **state)
{
    char json[256], type[70];

    (void)state;
    expect_event_error("{\"type\":\"t\"}", "missing_field", "userId");
    expect_event_error("{\"userId\":\"1\"}", "missing_field", "type");
    expect_event_error("{\"userId\":\"01\",\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":\"0\",\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":\"\",\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":\"1a\",\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":\" 1\",\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":\"-1\",\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":\"1234567890123456789\",\"type\":\"t\"}",
                       "invalid_field", "userId");
    expect_event_error("{\"userId\":1000000000000000000,\"type\":\"t\"}",
                       "invalid_field", "userId");
    expect_event_error("{\"userId\":0,\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":-5,\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":1.0,\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":null,\"type\":\"t\"}", "invalid_field", "userId");
    expect_event_error("{\"userId\":\"1\",\"type\":\"a b\"}", "invalid_field", "type");
    expect_event_error("{\"userId\":\"1\",\"type\":\"\"}", "invalid_field", "type");
    expect_event_error("{\"userId\":\"1\",\"type\":\"a\\nb\"}", "invalid_field", "type");
    expect_event_error("{\"userId\":\"1\",\"type\":\"a\\u0000\"}", "invalid_field", "type");
    expect_event_error("{\"userId\":\"1\",\"type\":7}", "invalid_field", "type");
    memset(type, 'a', 65);
    type[65] = '\0';
    snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"%s\"}", type);
    expect_event_error(json, "invalid_field", "type");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"extra\":1}", "unknown_field",
                       "'extra'");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":[1,]}", "invalid_json",
                       "JSON");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\"} xyz", "invalid_json", "JSON");
    expect_event_error("[{\"userId\":\"1\",\"type\":\"t\"}]", "invalid_json", "object");
}

/* A topic's event: a topic in place of userId, never both, never neither. */
static void
test_event_topic(void **state)
{
    struct event_input in;
    struct body_error e;
    const char *ok = "{\"topic\":\"chat/eu:room_1.v-2\",\"type\":\"chat.message\","
                     "\"data\":{\"t\":1}}";

    (void)state;
    assert_int_equal(body_parse_event(ok, strlen(ok), &in, &e), 0);
    assert_string_equal(in.topic, "chat/eu:room_1.v-2");
    assert_string_equal(in.user_id, "");
    assert_string_equal(in.type, "chat.message");
    assert_string_equal(in.data_json, "{\"t\":1}");
    event_input_clear(&in);
    expect_event_error("{\"userId\":\"1\",\"topic\":\"r\",\"type\":\"t\"}",
                       "invalid_field", "not both");
    expect_event_error("{\"type\":\"t\"}", "missing_field", "topic");
    expect_event_error("{\"topic\":\"a b\",\"type\":\"t\"}", "invalid_field", "topic");
    expect_event_error("{\"topic\":\"\",\"type\":\"t\"}", "invalid_field", "topic");
    expect_event_error("{\"topic\":\"r*\",\"type\":\"t\"}", "invalid_field", "topic");
    expect_event_error("{\"topic\":7,\"type\":\"t\"}", "invalid_field", "topic");
    expect_event_error("{\"topic\":\"r\"}", "missing_field", "type");
    expect_event_error("{\"topic\":\"r\",\"type\":\"gap\"}", "reserved_type", "gap");
}

/* The types the gateway emits, and those EventSource handles itself. */
static void
test_event_rejects_reserved_types(void **state)
{
    static const char *const reserved[] = {
        "account.created", "snapshot", "gap", "token-expired", "presence.join",
        "presence.", "error", "open",
    };
    char json[128];
    struct event_input in;
    struct body_error e;

    (void)state;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"%s\"}", reserved[i]);
        expect_event_error(json, "reserved_type", reserved[i]);
    }
    /* Near misses are anybody's. */
    assert_int_equal(event("{\"userId\":\"1\",\"type\":\"presence\"}", &in, &e), 0);
    event_input_clear(&in);
    assert_int_equal(event("{\"userId\":\"1\",\"type\":\"Snapshot\"}", &in, &e), 0);
    event_input_clear(&in);
}

/* Invalid UTF-8 json-c would pass, and lone surrogates it would turn into
 * U+FFFD, are refused wherever they are (data, keys, names). */
static void
test_bodies_reject_invalid_text(void **state)
{
    static const char *const data[] = {
        "\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80", "\xff",
    };
    struct account_input a;
    struct body_error e;
    char json[128];

    (void)state;
    for (size_t i = 0; i < sizeof(data) / sizeof(data[0]); i++) {
        snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"t\",\"data\":\"%s\"}",
                 data[i]);
        expect_event_error(json, "invalid_json", "UTF-8");
        snprintf(json, sizeof(json), "{\"name\":\"A%s\"}", data[i]);
        assert_int_equal(body_parse_account(json, strlen(json), &a, &e), -1);
        assert_string_equal(e.code, "invalid_json");
    }
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"\\ud800\"}",
                       "invalid_json", "surrogate");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"\\udfff\":1}}",
                       "invalid_json", "surrogate");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"a\nb\"}",
                       "invalid_json", "control character");
    assert_int_equal(body_parse_account("{\"name\":\"\\udc00x\"}", 17, &a, &e), -1);
    assert_string_equal(e.code, "invalid_json");
}

/* json-c reads these in strict mode and would write them back verbatim,
 * which would put invalid JSON into every subscriber's event. */
static void
test_event_rejects_numbers_json_c_would_echo(void **state)
{
    (void)state;
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":NaN}", "invalid_json",
                       "NaN");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":[Infinity]}",
                       "invalid_json", "Infinity");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"x\":-Infinity}}",
                       "invalid_json", "Infinity");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"x\":[1.]}}",
                       "invalid_json", "1.");
    /* Valid JSON, but no double holds it. */
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":1e400}", "invalid_field",
                       "data");
    /* Integers json-c would silently saturate. */
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":99999999999999999999}",
                       "invalid_field", "data");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":[-99999999999999999999]}",
                       "invalid_field", "data");
    /* ...while everything up to them is kept exactly. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":[18446744073709551614,"
                 "-9223372036854775807]}", "1", "t",
                 "[18446744073709551614,-9223372036854775807]");
}

static void
test_event_is_length_bounded(void **state)
{
    static const char body[] = "{\"userId\":\"1\",\"type\":\"t\"}}}}";
    struct event_input in;
    struct body_error e;

    (void)state;
    assert_int_equal(body_parse_event(body, sizeof(body) - 4, &in, &e), 0);
    assert_string_equal(in.data_json, "null");
    event_input_clear(&in);
    assert_int_equal(body_parse_event(body, sizeof(body) - 1, &in, &e), -1);
    assert_string_equal(e.code, "invalid_json");
    assert_null(in.data_json);
}

/* Data json-c would write back as its text without white space is
 * copied from the body (body_copy_data): exactly those bytes. */
static void
test_event_data_copied(void **state)
{
    char json[512], want[512];

    (void)state;
    /* bench/loadgen.c's body, and a Python client's json.dumps. */
    expect_event("{\"userId\":\"123\",\"type\":\"b\",\"data\":{\"t\":1733500000000,"
                 "\"s\":42,\"p\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}}", "123", "b",
                 "{\"t\":1733500000000,\"s\":42,\"p\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}");
    expect_event("{\"userId\": \"123\", \"type\": \"b\", \"data\": {\"t\": 1, \"msg\": \"hello\"}}",
                 "123", "b", "{\"t\":1,\"msg\":\"hello\"}");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\": { \"a\" :\t[ 1 , { \"b\" : [ ] ,"
                 "\r\n \"c\" : { } } ] , \"d\" : true , \"e\" : null , \"f\" : false } }",
                 "1", "t", "{\"a\":[1,{\"b\":[],\"c\":{}}],\"d\":true,\"e\":null,\"f\":false}");
    /* Raw UTF-8, U+2028, DEL and "/" are written back as they are. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"h\xc3\xa9\":\"h\xc3\xa9llo "
                 "\xf0\x9f\x98\x80 \xe2\x80\xa8 \x7f a/b\"}}", "1", "t",
                 "{\"h\xc3\xa9\":\"h\xc3\xa9llo \xf0\x9f\x98\x80 \xe2\x80\xa8 \x7f a/b\"}");
    /* Integers json-c holds exactly, up to its saturation values. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":[0,-1,10,999999999999999999,"
                 "9223372036854775807,9223372036854775808,18446744073709551614,"
                 "-9223372036854775807]}", "1", "t",
                 "[0,-1,10,999999999999999999,9223372036854775807,9223372036854775808,"
                 "18446744073709551614,-9223372036854775807]");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"x\"}", "1", "t", "\"x\"");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":12 }", "1", "t", "12");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":false}", "1", "t", "false");
    /* The same key in two objects is no repeat. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"a\":{\"a\":1},\"b\":{\"a\":2}}}",
                 "1", "t", "{\"a\":{\"a\":1},\"b\":{\"a\":2}}");
    /* 31 containers inside the body's object, the innermost empty: the
     * most it may hold (STRICTJSON_MAX_DEPTH); one value more is refused. */
    snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"t\",\"data\":%s %s}",
             "[[[[[[[[[[ [[[[[[[[[[ [[[[[[[[[[ [", "] ]]]]]]]]]] ]]]]]]]]]] ]]]]]]]]]]");
    snprintf(want, sizeof(want), "%s%s", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    expect_event(json, "1", "t", want);
    snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"t\",\"data\":%s 1 %s}",
             "[[[[[[[[[[ [[[[[[[[[[ [[[[[[[[[[ [", "] ]]]]]]]]]] ]]]]]]]]]] ]]]]]]]]]]");
    expect_event_error(json, "invalid_json", "not valid JSON");
}

/* A string value with escapes is copied too (body_copy_escaped):
 * unescaped as json-c reads it and escaped again as json-c writes it,
 * which these bytes are (json-c 0.16, as test_event_data_fallbacks had
 * them when json-c wrote them). Each escape class: */
static void
test_event_data_escapes_copied(void **state)
{
    (void)state;
    /* The short escapes are written back as they came; \/ is "/". */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"q\\\"b\\\\s\\/n\\nt\\tb\\bf\\fr\\r\"}",
                 "1", "t", "\"q\\\"b\\\\s/n\\nt\\tb\\bf\\fr\\r\"");
    /* \u escapes of the same bytes: json-c's short forms, / raw. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"\\u0022\\u005c\\u002f\\u0008\\u000C"
                 "\\u000a\\u000d\\u0009\"}", "1", "t", "\"\\\"\\\\/\\b\\f\\n\\r\\t\"");
    /* The other control characters: \u00xx in lower case, NUL kept. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":[\"a\\u0000b\",\"\\u0001\\u001F\\u000b\"]}",
                 "1", "t", "[\"a\\u0000b\",\"\\u0001\\u001f\\u000b\"]");
    /* Printable ASCII and DEL written raw; UTF-8 of 2, 3 and 4 bytes;
     * U+2028 raw (json-c does not escape it). */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"\\u0041\\u007f\\u00e9\\u20AC\\u2028"
                 "\\ud83d\\ude00\"}", "1", "t",
                 "\"A\x7f\xc3\xa9\xe2\x82\xac\xe2\x80\xa8\xf0\x9f\x98\x80\"");
    /* Lone surrogates become U+FFFD, as json-c reads them. The text
     * checks refuse them, unless a '"' in a single-quoted key moves
     * where they see strings: 'data\u0000"' is json-c's key "data". */
    expect_event("{'data\\u0000\"':[\"\\ud800\",\"x\\udc00y\",\"\\ud800\\u0041\",\"\\ud800\\\"\"],"
                 "\"userId\":\"1\",\"type\":\"t\"}", "1", "t",
                 "[\"\xef\xbf\xbd\",\"x\xef\xbf\xbdy\",\"\xef\xbf\xbd" "A\",\"\xef\xbf\xbd\\\"\"]");
    /* json-c 0.16: a pair decoding to U+1D800 waits for a low
     * surrogate, and pairs with it. */
    expect_event("{'data\\u0000\"':\"\\ud836\\udc00\\udc00\",\"userId\":\"1\",\"type\":\"t\"}",
                 "1", "t", "\"\xf0\x90\x80\x80\"");
    /* The chat message of bench/bodycost.c, in an object with keys and
     * white space around it; a topic addressee. */
    expect_event("{\"userId\":\"1\",\"type\":\"chat.message\",\"data\": {\"from\": \"ada\", "
                 "\"text\": \"He said \\\"hi\\\"\\nthen left \\u00e9\\ud83d\\ude00\", \"n\": 1}}",
                 "1", "chat.message",
                 "{\"from\":\"ada\",\"text\":\"He said \\\"hi\\\"\\nthen left \xc3\xa9\xf0\x9f\x98\x80\","
                 "\"n\":1}");
    /* A string that shrinks (\/) before one that keeps its length. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":[\"\\/\\/\\/\",\"\\u0001\",\"x\"]}",
                 "1", "t", "[\"///\",\"\\u0001\",\"x\"]");
}

/* Everything body_copy_data does not copy goes through json-c, and
 * comes out as json-c wrote it before. */
static void
test_event_data_fallbacks(void **state)
{
    char json[2048], want[2048];
    size_t n, w;

    (void)state;
    /* An escape in a string beside what is not copied: json-c writes
     * it the same. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":[\"a\\/b\\u00e9\\n\\\"\\\\\\u0001"
                 "\\u0000\",1.5]}", "1", "t", "[\"a/b\xc3\xa9\\n\\\"\\\\\\u0001\\u0000\",1.5]");
    /* An escape in a key (json-c cuts a key at \u0000), with escaped
     * values beside it. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"k\\u00e9\":1,\"a\\\"b\":2}}",
                 "1", "t", "{\"k\xc3\xa9\":1,\"a\\\"b\":2}");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"a\\u0000b\":1,\"c\":2}}",
                 "1", "t", "{\"a\":1,\"c\":2}");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"k\\n\":\"v\\u00e9\\n\"}}",
                 "1", "t", "{\"k\\n\":\"v\xc3\xa9\\n\"}");
    /* A raw control character json-c lets through (after a
     * single-quoted key the text checks see strings elsewhere) is
     * written \u00xx: longer than the text, so json-c writes it. */
    expect_event("{'data\\u0000\"':\"\\n\x01\",\"userId\":\"1\",\"type\":\"t\"}", "1", "t",
                 "\"\\n\\u0001\"");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"a\\u0000b\":1,\"a\":2}}",
                 "1", "t", "{\"a\":2}");
    /* Doubles keep their text. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{ \"x\" : [1.5, -0.5e-3, 2.50, 1E+2] }}",
                 "1", "t", "{\"x\":[1.5,-0.5e-3,2.50,1E+2]}");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":0.0}", "1", "t", "0.0");
    /* Integers json-c prints another way. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":-0}", "1", "t", "0");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":[-0, 00, -00, 1]}", "1", "t",
                 "[0,0,0,1]");
    /* A repeated key keeps its first place and its last value. */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"a\":1, \"b\":2, \"a\":[3]}}",
                 "1", "t", "{\"a\":[3],\"b\":2}");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"x\":{\"y\":1,\"y\":{\"z\":2}}}}",
                 "1", "t", "{\"x\":{\"y\":{\"z\":2}}}");
    /* A key in single quotes (json-c's leniency). */
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":{'a':1}}", "1", "t", "{\"a\":1}");
    /* More keys in view than the copy keeps: json-c writes the same. */
    n = (size_t)snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"t\",\"data\":{");
    w = (size_t)snprintf(want, sizeof(want), "{");
    for (int i = 0; i < 70; i++) {
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s \"k%d\": %d", i ? "," : "", i, i);
        w += (size_t)snprintf(want + w, sizeof(want) - w, "%s\"k%d\":%d", i ? "," : "", i, i);
    }
    snprintf(json + n, sizeof(json) - n, "}}");
    snprintf(want + w, sizeof(want) - w, "}");
    expect_event(json, "1", "t", want);
    /* A double 30 containers deep (the most around a value): json-c
     * reads the data on its own, one level higher than in the body. */
    snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"t\",\"data\":%s 1.5 %s}",
             "[[[[[[[[[[ [[[[[[[[[[ [[[[[[[[[[", "]]]]]]]]]] ]]]]]]]]]] ]]]]]]]]]]");
    snprintf(want, sizeof(want), "%s1.5%s", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    expect_event(json, "1", "t", want);
}

/* Expects a rejection with exactly code and message. */
static void
expect_event_exact(const char *json, const char *code, const char *message)
{
    struct event_input in;
    struct body_error e;

    memset(&e, 0, sizeof(e));
    if (event(json, &in, &e) != -1)
        fail_msg("accepted: %s", json);
    if (strcmp(e.code, code) != 0 || strcmp(e.message, message) != 0)
        fail_msg("%s: %s '%s', want %s '%s'", json, e.code, e.message, code, message);
    assert_null(in.data_json);
}

static void
test_event_user_id_forms(void **state)
{
    (void)state;
    expect_event("{\"userId\":123,\"type\":\"t\",\"data\":1}", "123", "t", "1");
    expect_event("{\"type\":\"t\",\"userId\": 7 }", "7", "t", "null");
    /* The last of a repeated key wins; a key is cut at \u0000. */
    expect_event("{\"userId\":\"12\",\"type\":\"t\",\"userId\":34}", "34", "t", "null");
    expect_event("{\"user\\u0049d\":\"5\",\"type\\u0000x\":\"t\",\"data\":[]}", "5", "t", "[]");
    expect_event("{\"userId\":\"\\u0031\\u0032\",\"type\":\"t\"}", "12", "t", "null");
    expect_event_exact("{\"userId\":-0,\"type\":\"t\"}", "invalid_field",
                       "userId must be 1 to 18 digits without a leading zero");
    expect_event_exact("{\"userId\":1e2,\"type\":\"t\"}", "invalid_field",
                       "userId must be 1 to 18 digits without a leading zero");
    expect_event_exact("{\"userId\":\"1234567890123456789012345\",\"type\":\"t\"}",
                       "invalid_field", "userId must be 1 to 18 digits without a leading zero");
}

/* Which error wins when several apply: the parse, an unknown field (the
 * first in the text), both or neither addressee, the addressee, the
 * type, then data in json-c's order. */
static void
test_event_error_precedence(void **state)
{
    struct event_input in;
    struct body_error e;

    (void)state;
    expect_event_exact("{\"zzz\":1,\"userId\":\"1\",\"topic\":\"r\",\"data\":NaN",
                       "invalid_json", "the body is not valid JSON");
    expect_event_exact("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"\xff\"}", "invalid_json",
                       "the body is not valid JSON (not valid UTF-8)");
    expect_event_exact("{\"userId\":\"1\",\"type\":\"t\"} x", "invalid_json",
                       "the body is not valid JSON");
    expect_event_exact("{\"b\":1,\"userId\":\"1\",\"topic\":\"r\",\"a\":2,\"b\":3}",
                       "unknown_field", "unknown field 'b'");
    expect_event_exact("{\"userId\":\"1\",\"x\\u00e9\\n\":1,\"type\":\"gap\"}",
                       "unknown_field", "unknown field 'x\?\?\?'");
    expect_event_exact("{\"userId\":\"1\",\"z\\u0000y\":1}", "unknown_field",
                       "unknown field 'z'");
    expect_event_exact("{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}",
                       "unknown_field",
                       "unknown field 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
    expect_event_exact("{\"userId\":\"0\",\"topic\":\"r\",\"type\":\"gap\"}", "invalid_field",
                       "give either userId or topic, not both");
    expect_event_exact("{\"type\":7,\"data\":NaN}", "missing_field",
                       "userId or topic is required");
    expect_event_exact("{\"userId\":\"0\",\"data\":NaN}", "invalid_field",
                       "userId must be 1 to 18 digits without a leading zero");
    expect_event_exact("{\"topic\":\"a b\",\"type\":7}", "invalid_field",
                       "topic must be 1 to 128 of A-Z a-z 0-9 . _ : / -");
    expect_event_exact("{\"userId\":\"1\",\"data\":NaN}", "missing_field", "type is required");
    expect_event_exact("{\"userId\":\"1\",\"type\":\"a b\",\"data\":NaN}", "invalid_field",
                       "type must be 1 to 64 of A-Z a-z 0-9 . _ -");
    expect_event_exact("{\"userId\":\"1\",\"type\":\"gap\",\"data\":NaN}", "reserved_type",
                       "type 'gap' is reserved (the gateway or EventSource gives it its "
                       "own meaning)");
    expect_event_exact("{\"userId\":\"1\",\"type\":\"t\",\"data\":[1e400,NaN]}",
                       "invalid_field", "data has a number out of range");
    expect_event_exact("{\"userId\":\"1\",\"type\":\"t\",\"data\":[NaN,1e400]}",
                       "invalid_json", "the body is not valid JSON (data has the number NaN)");
    /* json-c keeps "a" first, with its last value. */
    expect_event_exact("{\"userId\":\"1\",\"type\":\"t\",\"data\":{\"a\":NaN,\"b\":1.,"
                       "\"a\":1e400}}", "invalid_field", "data has a number out of range");
    expect_event("{\"userId\":\"1\",\"type\":\"t\",\"data\":NaN,\"data\":1}", "1", "t", "1");
    /* json-c stops at a NUL: what follows it is still refused. */
    assert_int_equal(body_parse_event("{\"userId\":\"1\",\"type\":\"t\"}\0", 26, &in, &e), -1);
    assert_string_equal(e.code, "invalid_json");
    assert_string_equal(e.message, "the body is data after the JSON value");
    /* What was read before the error is left in the fields, as before. */
    assert_int_equal(event("{\"userId\":\"9\",\"type\":\"gap\"}", &in, &e), -1);
    assert_string_equal(in.user_id, "9");
    assert_string_equal(in.type, "gap");
    assert_null(in.data_json);
}

/* ------------------------------------------------------- header and userId */

static void
test_content_type(void **state)
{
    (void)state;
    assert_true(body_content_type_is_json("application/json"));
    assert_true(body_content_type_is_json("Application/JSON"));
    assert_true(body_content_type_is_json("application/json; charset=utf-8"));
    assert_true(body_content_type_is_json("application/json;charset=UTF-8"));
    assert_true(body_content_type_is_json("application/json ; charset=\"utf-8\""));
    assert_true(body_content_type_is_json("application/json; foo=bar; charset=utf-8"));
    assert_true(body_content_type_is_json("application/json;"));
    assert_true(body_content_type_is_json("application/json "));
    assert_false(body_content_type_is_json(NULL));
    assert_false(body_content_type_is_json(""));
    assert_false(body_content_type_is_json("text/plain"));
    assert_false(body_content_type_is_json("application/jsonp"));
    assert_false(body_content_type_is_json("application/json-patch+json"));
    assert_false(body_content_type_is_json("application/x-www-form-urlencoded"));
    assert_false(body_content_type_is_json("application/json; charset=iso-8859-1"));
    assert_false(body_content_type_is_json("application/json; charset=utf-16"));
    assert_false(body_content_type_is_json("application/json; charset=utf-8x"));
    assert_false(body_content_type_is_json("application/json; charset=\"utf-8"));
    assert_false(body_content_type_is_json("application/json; charset"));
    assert_false(body_content_type_is_json("application/json x"));
}

static void
test_user_id_valid(void **state)
{
    (void)state;
    assert_true(body_user_id_valid("1", 1));
    assert_true(body_user_id_valid("42", 2));
    assert_true(body_user_id_valid("123456789012345678", 18));
    assert_true(body_user_id_valid("12x", 2));          /* only len bytes */
    assert_false(body_user_id_valid("1234567890123456789", 19));
    assert_false(body_user_id_valid("0", 1));
    assert_false(body_user_id_valid("01", 2));
    assert_false(body_user_id_valid("", 0));
    assert_false(body_user_id_valid("1a", 2));
    assert_false(body_user_id_valid("-1", 2));
    assert_false(body_user_id_valid("+1", 2));
    assert_false(body_user_id_valid(" 1", 2));
    assert_false(body_user_id_valid("1\0", 2));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account_ok),
        cmocka_unit_test(test_account_name_length),
        cmocka_unit_test(test_account_rejects_json),
        cmocka_unit_test(test_account_rejects_fields),
        cmocka_unit_test(test_account_is_length_bounded),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_event_ok),
        cmocka_unit_test(test_event_rejects),
        cmocka_unit_test(test_event_topic),
        cmocka_unit_test(test_event_rejects_reserved_types),
        cmocka_unit_test(test_bodies_reject_invalid_text),
        cmocka_unit_test(test_event_rejects_numbers_json_c_would_echo),
        cmocka_unit_test(test_event_is_length_bounded),
        cmocka_unit_test(test_event_data_copied),
        cmocka_unit_test(test_event_data_escapes_copied),
        cmocka_unit_test(test_event_data_fallbacks),
        cmocka_unit_test(test_event_user_id_forms),
        cmocka_unit_test(test_event_error_precedence),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_user_id_valid),
        cmocka_unit_test(test_token_request),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
