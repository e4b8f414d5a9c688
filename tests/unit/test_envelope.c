/* test_envelope.c -- building the envelope tail; parsing channel messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

static void
test_build_rest(void **state)
{
    char *rest = envelope_build_rest("order.shipped", "42", "{\"a\":[1,2]}", 11,
                                     "back\"end\n1", 1732484473123LL);
    char full[512];
    json_object *o, *v;

    (void)state;
    assert_non_null(rest);
    assert_string_equal(rest, "\"type\":\"order.shipped\",\"userId\":\"42\","
                              "\"data\":{\"a\":[1,2]},\"serverId\":\"back\\\"end\\n1\","
                              "\"ts\":1732484473123}");
    /* What the publish script makes of it is valid JSON, one line. */
    snprintf(full, sizeof(full), "{\"id\":\"1-0\",%s", rest);
    assert_null(strchr(full, '\n'));
    o = json_tokener_parse(full);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "serverId", &v));
    assert_string_equal(json_object_get_string(v), "back\"end\n1");
    assert_true(json_object_object_get_ex(o, "ts", &v));
    assert_int_equal(json_object_get_int64(v), 1732484473123LL);
    json_object_put(o);
    free(rest);
}

static int
parse(const char *msg, struct envelope_view *v)
{
    char err[128];

    return envelope_parse(msg, strlen(msg), v, err, sizeof(err));
}

static void
test_parse_envelope(void **state)
{
    struct envelope_view v;

    (void)state;
    assert_int_equal(parse("{\"id\":\"17-3\",\"type\":\"snapshot\",\"userId\":\"9\","
                           "\"data\":{},\"serverId\":\"b\",\"ts\":1}", &v), 0);
    assert_int_equal(v.has_id, 1);
    assert_int_equal(v.id.ms, 17);
    assert_int_equal(v.id.seq, 3);
    assert_string_equal(v.type, "snapshot");
    assert_string_equal(v.user_id, "9");
}

static void
test_parse_foreign(void **state)
{
    struct envelope_view v;

    (void)state;
    /* What someone PUBLISHes by hand: no id, maybe no type, int userId. */
    assert_int_equal(parse("{\"userId\":\"1\",\"type\":\"x\",\"data\":{}}", &v), 0);
    assert_int_equal(v.has_id, 0);
    assert_string_equal(v.type, "x");
    assert_int_equal(parse("{\"userId\":7}", &v), 0);
    assert_string_equal(v.user_id, "7");
    assert_string_equal(v.type, "message");
    assert_int_equal(parse(" {\"userId\":\"u\"} \n", &v), 0);
}

static void
test_parse_malformed(void **state)
{
    const char *bad[] = {
        "not json", "[1]", "\"x\"", "{\"type\":\"x\"}", "{\"userId\":\"\"}",
        "{\"userId\":null}", "{\"userId\":-1}", "{\"userId\":\"1\",\"id\":\"abc\"}",
        "{\"userId\":\"1\",\"id\":5}", "{\"userId\":\"1\",\"type\":\"a b\"}",
        "{\"userId\":\"1\",\"type\":\"\"}", "{\"userId\":\"1\"} trailing",
        "{\"userId\":\"1\"", "{\"userId\":\"a\\nb\"}",
    };
    struct envelope_view v;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &v) != -1)
            fail_msg("accepted: %s", bad[i]);
    }
}

static void
test_type_valid(void **state)
{
    char t65[66];

    (void)state;
    assert_true(envelope_type_valid("order.shipped", 13));
    assert_true(envelope_type_valid("A-Z_0.9", 7));
    assert_false(envelope_type_valid("", 0));
    assert_false(envelope_type_valid("a b", 3));
    assert_false(envelope_type_valid("é", 2));
    memset(t65, 'a', 65);
    assert_true(envelope_type_valid(t65, 64));
    assert_false(envelope_type_valid(t65, 65));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_rest),
        cmocka_unit_test(test_parse_envelope),
        cmocka_unit_test(test_parse_foreign),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_type_valid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
