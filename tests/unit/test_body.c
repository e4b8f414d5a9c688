/* test_body.c -- what request bodies are accepted, and what each rejection says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "body.h"

static int
account(const char *json, struct account_input *in, struct body_error *e)
{
    return body_parse_account(json, strlen(json), in, e);
}

static void
expect_account_error(const char *json, const char *code)
{
    struct account_input in;
    struct body_error e;

    if (account(json, &in, &e) != -1)
        fail_msg("accepted: %s", json);
    if (strcmp(e.code, code) != 0)
        fail_msg("%s: code %s, want %s", json, e.code, code);
    assert_true(strlen(e.message) > 0);
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
    assert_int_equal(account(" {\"name\":\"B\"} \n", &in, &e), 0);
    assert_int_equal(in.balance, 0);
    assert_int_equal(account("{\"name\":\"x\",\"balance\":9007199254740991}", &in, &e), 0);
    assert_int_equal(in.balance, BODY_BALANCE_MAX);
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
    name[100] = 'a';
    name[101] = '\0';
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    expect_account_error(json, "invalid_field");
    /* 100 characters of two bytes each are still 100 characters. */
    name[0] = '\0';
    for (int i = 0; i < 100; i++)
        strcat(name, "\xc3\xa9");
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    assert_int_equal(account(json, &in, &e), 0);
    assert_string_equal(in.name, name);
    strcat(name, "\xc3\xa9");
    snprintf(json, sizeof(json), "{\"name\":\"%s\"}", name);
    expect_account_error(json, "invalid_field");
}

static void
test_account_rejects(void **state)
{
    (void)state;
    expect_account_error("", "invalid_json");
    expect_account_error("{\"name\":\"a\"} xyz", "invalid_json");
    expect_account_error("{\"name\":\"a\"", "invalid_json");
    expect_account_error("[1]", "invalid_json");
    expect_account_error("null", "invalid_json");
    expect_account_error("{\"name\":\"a\",}", "invalid_json");
    expect_account_error("{\"name\":\"\xff\"}", "invalid_json");
    expect_account_error("{}", "missing_field");
    expect_account_error("{\"name\":\"\"}", "invalid_field");
    expect_account_error("{\"name\":\"   \"}", "invalid_field");
    expect_account_error("{\"name\":5}", "invalid_field");
    expect_account_error("{\"name\":\"a\\u0000b\"}", "invalid_field");
    expect_account_error("{\"name\":\"a\\nb\"}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":-1}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":1.5}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":100.0}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":1e3}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":\"100\"}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":true}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":null}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":99999999999999999999}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"balance\":9007199254740992}", "invalid_field");
    expect_account_error("{\"name\":\"a\",\"nmae\":\"b\"}", "unknown_field");
}

static void
test_snapshot(void **state)
{
    struct snapshot_input in;
    struct body_error e;

    (void)state;
    assert_int_equal(body_parse_snapshot("", 0, &in, &e), 0);
    assert_int_equal(in.has_balance, 0);
    assert_int_equal(body_parse_snapshot("{}", 2, &in, &e), 0);
    assert_int_equal(in.has_balance, 0);
    assert_int_equal(body_parse_snapshot("{\"balance\":120000}", 18, &in, &e), 0);
    assert_int_equal(in.has_balance, 1);
    assert_int_equal(in.balance, 120000);
    assert_int_equal(body_parse_snapshot("{\"balance\":-2}", 14, &in, &e), -1);
    assert_string_equal(e.code, "invalid_field");
    assert_int_equal(body_parse_snapshot("{\"x\":1}", 7, &in, &e), -1);
    assert_string_equal(e.code, "unknown_field");
}

static int
event(const char *json, struct event_input *in, struct body_error *e)
{
    return body_parse_event(json, strlen(json), in, e);
}

static void
test_event_ok(void **state)
{
    struct event_input in;
    struct body_error e;

    (void)state;
    assert_int_equal(event("{\"userId\":\"42\",\"type\":\"order.shipped\","
                           "\"data\":{ \"a\" : [1, 2],\n \"u\":\"http://x/y\"}}", &in, &e), 0);
    assert_string_equal(in.user_id, "42");
    assert_string_equal(in.type, "order.shipped");
    assert_string_equal(in.data_json, "{\"a\":[1,2],\"u\":\"http://x/y\"}");
    assert_int_equal(in.data_len, strlen(in.data_json));
    event_input_clear(&in);
    assert_int_equal(event("{\"userId\":42,\"type\":\"t\"}", &in, &e), 0);
    assert_string_equal(in.user_id, "42");
    assert_string_equal(in.data_json, "null");
    event_input_clear(&in);
    assert_int_equal(event("{\"userId\":\"1\",\"type\":\"t\",\"data\":\"a\\nb\"}", &in, &e), 0);
    assert_null(strchr(in.data_json, '\n'));       /* one line, escaped */
    event_input_clear(&in);
}

static void
expect_event_error(const char *json, const char *code)
{
    struct event_input in;
    struct body_error e;

    if (event(json, &in, &e) != -1)
        fail_msg("accepted: %s", json);
    if (strcmp(e.code, code) != 0)
        fail_msg("%s: code %s, want %s", json, e.code, code);
    assert_null(in.data_json);
}

static void
test_event_rejects(void **state)
{
    char json[256], type[70];

    (void)state;
    expect_event_error("{\"type\":\"t\"}", "missing_field");
    expect_event_error("{\"userId\":\"1\"}", "missing_field");
    expect_event_error("{\"userId\":\"01\",\"type\":\"t\"}", "invalid_field");
    expect_event_error("{\"userId\":\"\",\"type\":\"t\"}", "invalid_field");
    expect_event_error("{\"userId\":\"1234567890123456789\",\"type\":\"t\"}", "invalid_field");
    expect_event_error("{\"userId\":0,\"type\":\"t\"}", "invalid_field");
    expect_event_error("{\"userId\":1.0,\"type\":\"t\"}", "invalid_field");
    expect_event_error("{\"userId\":\"1\",\"type\":\"a b\"}", "invalid_field");
    expect_event_error("{\"userId\":\"1\",\"type\":7}", "invalid_field");
    memset(type, 'a', 65);
    type[65] = '\0';
    snprintf(json, sizeof(json), "{\"userId\":\"1\",\"type\":\"%s\"}", type);
    expect_event_error(json, "invalid_field");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"extra\":1}", "unknown_field");
    expect_event_error("{\"userId\":\"1\",\"type\":\"t\",\"data\":[1,]}", "invalid_json");
}

static void
test_content_type_and_user_id(void **state)
{
    (void)state;
    assert_true(body_content_type_is_json("application/json"));
    assert_true(body_content_type_is_json("Application/JSON; charset=utf-8"));
    assert_false(body_content_type_is_json("text/plain"));
    assert_false(body_content_type_is_json("application/jsonp"));
    assert_false(body_content_type_is_json("application/x-www-form-urlencoded"));
    assert_false(body_content_type_is_json("application/json; charset=iso-8859-1"));
    assert_true(body_content_type_is_json("application/json;charset=UTF-8"));
    assert_true(body_user_id_valid("1", 1));
    assert_true(body_user_id_valid("123456789012345678", 18));
    assert_false(body_user_id_valid("1234567890123456789", 19));
    assert_false(body_user_id_valid("0", 1));
    assert_false(body_user_id_valid("", 0));
    assert_false(body_user_id_valid("1a", 2));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account_ok),
        cmocka_unit_test(test_account_name_length),
        cmocka_unit_test(test_account_rejects),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_event_ok),
        cmocka_unit_test(test_event_rejects),
        cmocka_unit_test(test_content_type_and_user_id),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
