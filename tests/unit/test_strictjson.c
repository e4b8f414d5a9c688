/* test_strictjson.c -- the one strict UTF-8 decoder against RFC 3629's
 * table and its edge cases, and the text check every untrusted JSON
 * passes first: what json-c 0.16 lets through (overlong forms, encoded
 * surrogates, code points past U+10FFFF, raw control characters in
 * strings, lone surrogates in \u escapes) is refused; everything valid
 * still parses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "strictjson.h"

struct utf8_case {
    const char *bytes;
    size_t len;
    int valid;
    uint32_t cp;            /* the one code point, when valid */
};

#define OK(s, c) { s, sizeof(s) - 1, 1, c }
#define BAD(s) { s, sizeof(s) - 1, 0, 0 }

/* One sequence each, at every boundary of RFC 3629 section 4's table:
 *   00..7F | C2..DF 80..BF | E0 A0..BF 80..BF | E1..EC 80..BF 80..BF
 *   | ED 80..9F 80..BF | EE..EF 80..BF 80..BF | F0 90..BF 80..BF 80..BF
 *   | F1..F3 80..BF 80..BF 80..BF | F4 80..8F 80..BF 80..BF */
static const struct utf8_case utf8_cases[] = {
    OK("\x00", 0x0), OK("\x7f", 0x7f),
    OK("\xc2\x80", 0x80), OK("\xdf\xbf", 0x7ff),
    OK("\xe0\xa0\x80", 0x800), OK("\xe0\xbf\xbf", 0xfff),
    OK("\xe1\x80\x80", 0x1000), OK("\xec\xbf\xbf", 0xcfff),
    OK("\xed\x80\x80", 0xd000), OK("\xed\x9f\xbf", 0xd7ff),
    OK("\xee\x80\x80", 0xe000), OK("\xef\xbf\xbd", 0xfffd), OK("\xef\xbf\xbf", 0xffff),
    OK("\xf0\x90\x80\x80", 0x10000), OK("\xf0\xbf\xbf\xbf", 0x3ffff),
    OK("\xf1\x80\x80\x80", 0x40000), OK("\xf3\xbf\xbf\xbf", 0xfffff),
    OK("\xf4\x80\x80\x80", 0x100000), OK("\xf4\x8f\xbf\xbf", 0x10ffff),
    /* Overlong forms: each the shortest form's code point, written long. */
    BAD("\xc0\x80"), BAD("\xc0\xaf"), BAD("\xc1\xbf"),
    BAD("\xe0\x80\x80"), BAD("\xe0\x9f\xbf"),
    BAD("\xf0\x80\x80\x80"), BAD("\xf0\x8f\xbf\xbf"),
    /* UTF-16 surrogates, encoded: U+D800, U+DBFF, U+DC00, U+DFFF, and a
     * pair written as two (CESU-8). */
    BAD("\xed\xa0\x80"), BAD("\xed\xaf\xbf"), BAD("\xed\xb0\x80"), BAD("\xed\xbf\xbf"),
    BAD("\xed\xa0\xbd\xed\xb8\x80"),
    /* Past U+10FFFF, and the lead bytes that could only start such. */
    BAD("\xf4\x90\x80\x80"), BAD("\xf4\xbf\xbf\xbf"),
    BAD("\xf5\x80\x80\x80"), BAD("\xf7\xbf\xbf\xbf"), BAD("\xf8\x88\x80\x80\x80"),
    BAD("\xfc\x84\x80\x80\x80\x80"), BAD("\xfe"), BAD("\xff"),
    /* A continuation byte alone, a lead byte cut short or interrupted. */
    BAD("\x80"), BAD("\xbf"), BAD("\xc2"), BAD("\xe1\x80"), BAD("\xf1\x80\x80"),
    BAD("\xc2\x41"), BAD("\xe1\x80\x41"), BAD("\xf1\x80\x80\xc0"), BAD("\xe1\xc0\x80"),
};

static void
test_utf8_table(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(utf8_cases) / sizeof(utf8_cases[0]); k++) {
        const struct utf8_case *c = &utf8_cases[k];
        const unsigned char *s = (const unsigned char *)c->bytes;
        size_t i = 0;
        uint32_t cp = 0xdeadbeef;
        int rc = strictjson_utf8_next(s, c->len, &i, &cp);

        if (c->valid) {
            if (rc != 0 || i != c->len || cp != c->cp)
                fail_msg("case %zu: rc %d, read %zu of %zu, U+%04X", k, rc, i,
                         c->len, (unsigned)cp);
        } else if (strictjson_utf8_valid(s, c->len)) {
            fail_msg("case %zu (%02x...) was taken as valid", k, s[0]);
        }
        assert_int_equal(strictjson_utf8_valid(s, c->len), c->valid);
        if (rc == -1)
            assert_int_equal(i, 0);         /* *i left alone */
    }
}

/* Every code point, encoded by the book, decodes to itself; every
 * surrogate's encoding is refused. */
static void
test_utf8_every_code_point(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        unsigned char b[4];
        size_t n, i = 0;
        uint32_t got;

        if (cp < 0x80) {
            b[0] = (unsigned char)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xc0 | cp >> 6);
            b[1] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xe0 | cp >> 12);
            b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
            b[2] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 3;
        } else {
            b[0] = (unsigned char)(0xf0 | cp >> 18);
            b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
            b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
            b[3] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 4;
        }
        if (cp >= 0xd800 && cp <= 0xdfff) {
            if (strictjson_utf8_valid(b, n))
                fail_msg("surrogate U+%04X taken", (unsigned)cp);
            continue;
        }
        if (strictjson_utf8_next(b, n, &i, &got) != 0 || got != cp || i != n)
            fail_msg("U+%04X did not decode to itself", (unsigned)cp);
    }
}

static void
test_utf8_sequences(void **state)
{
    static const char mixed[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
    static const char bad_late[] = "valid so far \xc3\xa9 then \xed\xa0\x80";

    (void)state;
    assert_true(strictjson_utf8_valid((const unsigned char *)mixed, sizeof(mixed) - 1));
    assert_false(strictjson_utf8_valid((const unsigned char *)bad_late,
                                       sizeof(bad_late) - 1));
    assert_true(strictjson_utf8_valid((const unsigned char *)"", 0));
}

/* Parses text (sizeof - 1 bytes) and says whether it came back an object. */
static int
parses(const char *text, size_t len, const char **why)
{
    json_object *o = strictjson_parse_object(text, len, why);

    json_object_put(o);
    return o != NULL;
}

#define PARSES(t) parses(t, sizeof(t) - 1, &why)

static void
test_parse_refuses_what_json_c_lets_through(void **state)
{
    static const struct {
        const char *text;
        size_t len;
        const char *why;
    } bad[] = {
#define B(t, w) { t, sizeof(t) - 1, w }
        B("{\"a\":\"\xc0\x80\"}", "not valid UTF-8"),
        B("{\"a\":\"\xe0\x80\x80\"}", "not valid UTF-8"),
        B("{\"a\":\"\xed\xa0\x80\"}", "not valid UTF-8"),
        B("{\"a\":\"\xf4\x90\x80\x80\"}", "not valid UTF-8"),
        B("{\"a\":\"\xf5\x80\x80\x80\"}", "not valid UTF-8"),
        B("{\"\xc0\x80\":1}", "not valid UTF-8"),           /* in a key */
        B("{\"a\":1}\xff", "not valid UTF-8"),              /* after the value */
        B("{\"a\":\"x\ny\"}", "control character"),
        B("{\"a\":\"x\ry\"}", "control character"),
        B("{\"a\":\"x\ty\"}", "control character"),
        B("{\"a\":\"x\x01y\"}", "control character"),
        B("{\"a\":\"\x00\"}", "control character"),
        B("{\"a\\n\nb\":1}", "control character"),          /* in a key */
        B("{\"a\":\"\\ud800\"}", "surrogate"),
        B("{\"a\":\"\\uDBFF\"}", "surrogate"),
        B("{\"a\":\"\\udc00\"}", "surrogate"),
        B("{\"a\":\"\\ud800x\"}", "surrogate"),
        B("{\"a\":\"\\ud800\\u0041\"}", "surrogate"),
        B("{\"a\":\"\\ud800\\ud800\"}", "surrogate"),
        B("{\"a\":\"\\udc00\\ud800\"}", "surrogate"),
        B("{\"a\":\"\\ud800\\", "surrogate"),                /* cut short */
        B("{\"a\":\"\\\\\\ud800\"}", "surrogate"),           /* \\ then \ud800 */
#undef B
    };
    const char *why;

    (void)state;
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        why = NULL;
        if (parses(bad[k].text, bad[k].len, &why))
            fail_msg("case %zu parsed", k);
        if (why == NULL || strstr(why, bad[k].why) == NULL)
            fail_msg("case %zu: why %s, want %s", k, why ? why : "(null)", bad[k].why);
    }
}

static void
test_parse_takes_valid_text(void **state)
{
    const char *why = NULL;

    (void)state;
    assert_true(PARSES("{\"a\":\"\\ud83d\\ude00\"}"));      /* a pair */
    assert_true(PARSES("{\"a\":\"\xf0\x9f\x98\x80 \xc3\xa9\"}"));
    assert_true(PARSES("{\"a\":\"\\n\\r\\t\\\"\\\\\\/\\b\\f\"}"));
    assert_true(PARSES("{\"a\":\"\\u0000\\u001f\\uffff\\ud7ff\\ue000\"}"));
    assert_true(PARSES("{\"a\":\"x\x7fy\"}"));              /* DEL is not C0 */
    assert_true(PARSES(" {\"a\" : [1, \"\\\\\", {\"b\":\"\\\"\"}]}\n\t"));
    /* White space between tokens may be CR and LF: only strings may not
     * hold raw control characters. */
    assert_true(PARSES("{\r\n\"a\":\r\n1}"));
    /* \u escapes of surrogates that are not text: the \\ is escaped. */
    assert_true(PARSES("{\"a\":\"\\\\ud800\"}"));
}

/* The thread's tokener is reused from text to text; a text refused
 * while a \u escape of a high surrogate waited for its low half must not
 * leave it waiting (json_tokener_reset does not clear it): the next
 * text's first \u escape would gain a U+FFFD. */
static void
test_parse_after_a_refused_text(void **state)
{
    static const char *const cut[] = {
        "{'\\ud83d", "{'\\ud83d'", "{\"a\":1,'\\ud83d\\u", "{'\\ud83d\\u00",
    };
    const char *why = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        const char *next = "{\"\\u00e9\":\"\\u00e9\"}";
        json_object *o, *v;

        assert_null(strictjson_parse_object(cut[i], strlen(cut[i]), &why));
        o = strictjson_parse_object(next, strlen(next), &why);
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "\xc3\xa9", &v));
        assert_string_equal(json_object_get_string(v), "\xc3\xa9");
        json_object_put(o);
    }
}

/* strictjson_string_unescape gives json-c's bytes, its quirk included:
 * the code point a surrogate pair decodes to is classified by its low 16
 * bits, so U+1DE00 (\ud837\ude00) becomes U+FFFD and U+1D800 waits
 * for a low surrogate as a high one does. */
static void
test_unescape_surrogates_as_json_c(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "\\ud83d\\ude00", "\xf0\x9f\x98\x80" },
        { "\\ud800\\udc00", "\xf0\x90\x80\x80" },
        { "\\udbff\\udfff", "\xf4\x8f\xbf\xbf" },
        { "\\ud837\\ude00", "\xef\xbf\xbd" },
        { "p\\ud837\\ude00q", "p\xef\xbf\xbdq" },
        { "\\ud836\\udc00", "\xef\xbf\xbd" },
        { "\\ud836\\udc00\\udc01", "\xf0\x90\x80\x81" },
        { "\\ud836\\udc00x", "\xef\xbf\xbdx" },
        { "\\ud836\\udc00\\n", "\xef\xbf\xbd\n" },
        { "\\ud800", "\xef\xbf\xbd" },
        { "\\udc00", "\xef\xbf\xbd" },
        { "\\ud800\\u0041", "\xef\xbf\xbd" "A" },
    };
    char out[32];
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct strictjson_span sp = { cases[i].in, strlen(cases[i].in) };

        assert_int_equal(strictjson_string_unescape(sp, out, sizeof(out), &n), 0);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, n);
    }
}

static void
test_check_text_without_grammar(void **state)
{
    const char *why = NULL;

    (void)state;
    /* The check tracks strings only; grammar is the tokener's. */
    assert_int_equal(strictjson_check_text("\"a\" \"b", 6, &why), 0);
    assert_int_equal(strictjson_check_text("\"\\", 2, &why), 0);
    assert_int_equal(strictjson_check_text("\"\\u12", 5, &why), 0);
    assert_int_equal(strictjson_check_text("\"\\uzzzz\"", 8, &why), 0);
    assert_int_equal(strictjson_check_text("\n\x01", 2, &why), 0);   /* outside a string */
    assert_int_equal(strictjson_check_text("\"\x01", 2, &why), -1);
    assert_int_equal(strictjson_check_text("", 0, &why), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_table),
        cmocka_unit_test(test_utf8_every_code_point),
        cmocka_unit_test(test_utf8_sequences),
        cmocka_unit_test(test_parse_refuses_what_json_c_lets_through),
        cmocka_unit_test(test_parse_takes_valid_text),
        cmocka_unit_test(test_check_text_without_grammar),
        cmocka_unit_test(test_parse_after_a_refused_text),
        cmocka_unit_test(test_unescape_surrogates_as_json_c),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
