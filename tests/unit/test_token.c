/* test_token.c -- token.c: which place a request's token comes from, the
 * form and header of a token (the algorithm it names), its claims, the
 * time window and what the claims allow. No signature here: auth.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "token.h"

/* ------------------------------------------------------------- helpers */

/* Unpadded base64url of n bytes of in, into out (NUL-terminated). */
static void
b64url(const char *in, size_t n, char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;

        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = abc[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
}

/* header.payload.sig from two JSON texts. */
static char *
make(char *buf, const char *header, const char *payload, const char *sig)
{
    char h[1024], p[6000];

    b64url(header, strlen(header), h);
    b64url(payload, strlen(payload), p);
    sprintf(buf, "%s.%s.%s", h, p, sig);
    return buf;
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* Both steps, as auth.c takes them (with the signature in between). */
static enum token_parse
parse_n(const char *tok, size_t len, const struct token_rules *rules, enum token_alg *alg,
        struct token_claims *c, const char **why)
{
    enum token_parse rc;

    memset(c, 0, sizeof(*c));
    if ((rc = token_parse_header(tok, len, alg, why)) != TOKEN_PARSE_OK)
        return rc;
    return token_parse_claims(tok, len, rules, c, why);
}

static enum token_parse
parse(const char *tok, const struct token_rules *rules, enum token_alg *alg,
      struct token_claims *c, const char **why)
{
    return parse_n(tok, strlen(tok), rules, alg, c, why);
}

/* Expects tok to be malformed, for the reason want. */
static void
expect_malformed(const char *tok, const struct token_rules *rules, const char *want)
{
    enum token_alg alg;
    struct token_claims c;
    const char *why = NULL;

    assert_int_equal(parse(tok, rules, &alg, &c, &why), TOKEN_PARSE_MALFORMED);
    assert_string_equal(why, want);
    assert_string_equal(c.sub, "");        /* nothing half-read is left */
}

/* ------------------------------------------------------------ the place */

static void
test_find_order(void **state)
{
    const char *tok;
    size_t len;

    (void)state;
    assert_int_equal(token_find("Bearer aaa", "bbb", "ccc", &tok, &len), TOKEN_PLACE_HEADER);
    assert_int_equal(len, 3);
    assert_memory_equal(tok, "aaa", 3);
    assert_int_equal(token_find(NULL, "bbb", "ccc", &tok, &len), TOKEN_PLACE_QUERY);
    assert_string_equal(tok, "bbb");
    assert_int_equal(token_find(NULL, NULL, "ccc", &tok, &len), TOKEN_PLACE_COOKIE);
    assert_string_equal(tok, "ccc");
    assert_int_equal(token_find(NULL, NULL, NULL, &tok, &len), TOKEN_PLACE_NONE);
    assert_null(tok);
    assert_int_equal(len, 0);
}

static void
test_find_bearer_forms(void **state)
{
    const char *tok;
    size_t len;

    (void)state;
    /* The scheme in any case, spaces around the token dropped. */
    assert_int_equal(token_find("  bearer \t x.y.z  ", NULL, NULL, &tok, &len),
                     TOKEN_PLACE_HEADER);
    assert_int_equal(len, 5);
    assert_memory_equal(tok, "x.y.z", 5);
    assert_int_equal(token_find("BEARER x", NULL, NULL, &tok, &len), TOKEN_PLACE_HEADER);
    /* Another scheme is someone else's: the next place counts. */
    assert_int_equal(token_find("Basic dXNlcjpwdw==", "q", NULL, &tok, &len), TOKEN_PLACE_QUERY);
    assert_string_equal(tok, "q");
    assert_int_equal(token_find("Bearerx", NULL, "c", &tok, &len), TOKEN_PLACE_COOKIE);
    /* A Bearer with nothing after it, an empty parameter or cookie: absent. */
    assert_int_equal(token_find("Bearer   ", "", "\"\"", &tok, &len), TOKEN_PLACE_NONE);
    assert_int_equal(token_find("Bearer", NULL, NULL, &tok, &len), TOKEN_PLACE_NONE);
}

static void
test_find_quoted_cookie(void **state)
{
    const char *tok;
    size_t len;

    (void)state;
    assert_int_equal(token_find(NULL, NULL, "\"a.b.c\"", &tok, &len), TOKEN_PLACE_COOKIE);
    assert_int_equal(len, 5);
    assert_memory_equal(tok, "a.b.c", 5);
}

/* -------------------------------------------------------------- the form */

static void
test_parse_valid(void **state)
{
    char tok[8192];
    enum token_alg alg;
    struct token_claims c;
    const char *why = NULL;

    (void)state;
    make(tok, HS, "{\"sub\":\"42\",\"exp\":1700000000,\"nbf\":1600000000.25,"
                  "\"firehose\":true,\"iat\":1,\"other\":[1,{}]}", "c2ln");
    assert_int_equal(parse(tok, NULL, &alg, &c, &why), TOKEN_PARSE_OK);
    assert_int_equal(alg, TOKEN_ALG_HS256);
    assert_string_equal(c.sub, "42");
    assert_true(c.has_exp);
    assert_int_equal(c.exp_ms, 1700000000000LL);
    assert_true(c.has_nbf);
    assert_int_equal(c.nbf_ms, 1600000000250LL);
    assert_true(c.firehose);

    make(tok, "{\"alg\":\"RS256\",\"kid\":\"k1\"}", "{\"sub\":\"7\",\"firehose\":false}", "c2ln");
    assert_int_equal(parse(tok, NULL, &alg, &c, &why), TOKEN_PARSE_OK);
    assert_int_equal(alg, TOKEN_ALG_RS256);
    assert_false(c.has_exp);
    assert_false(c.has_nbf);
    assert_false(c.firehose);

    make(tok, "{\"alg\":\"ES256\",\"typ\":\"jwt\"}", "{\"sub\":\"svc-a\"}", "c2ln");
    assert_int_equal(parse(tok, NULL, &alg, &c, &why), TOKEN_PARSE_OK);
    assert_int_equal(alg, TOKEN_ALG_ES256);
}

/* The algorithm is reported, not judged: auth.c refuses "none" and the
 * others, but must first know which was named. */
static void
test_parse_algorithms(void **state)
{
    char tok[8192];
    enum token_alg alg;
    struct token_claims c;
    const char *why;

    (void)state;
    make(tok, "{\"alg\":\"none\"}", "{\"sub\":\"1\"}", "");
    assert_int_equal(parse(tok, NULL, &alg, &c, &why), TOKEN_PARSE_OK);
    assert_int_equal(alg, TOKEN_ALG_NONE);
    make(tok, "{\"alg\":\"NoNe\"}", "{\"sub\":\"1\"}", "c2ln");
    assert_int_equal(parse(tok, NULL, &alg, &c, &why), TOKEN_PARSE_OK);
    assert_int_equal(alg, TOKEN_ALG_NONE);
    for (const char *const *a = (const char *const[]){ "hs256", "HS512", "RS384", "PS256",
                                                      "ES512", "", NULL }; *a; a++) {
        char h[64];

        snprintf(h, sizeof(h), "{\"alg\":\"%s\"}", *a);
        make(tok, h, "{\"sub\":\"1\"}", "c2ln");
        assert_int_equal(parse(tok, NULL, &alg, &c, &why), TOKEN_PARSE_OK);
        assert_int_equal(alg, TOKEN_ALG_OTHER);
    }
    assert_string_equal(token_alg_name(TOKEN_ALG_HS256), "HS256");
    assert_string_equal(token_alg_name(TOKEN_ALG_ES256), "ES256");
}

static void
test_parse_bad_form(void **state)
{
    char tok[8192], big[TOKEN_MAX + 2];
    enum token_alg alg;
    struct token_claims c;
    const char *why;
    char h[64], p[64];

    (void)state;
    b64url(HS, strlen(HS), h);
    b64url("{\"sub\":\"1\"}", 11, p);
    expect_malformed("", NULL, "the token is empty");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(parse_n(big, TOKEN_MAX + 1, NULL, &alg, &c, &why),
                     TOKEN_PARSE_MALFORMED);
    assert_string_equal(why, "the token is longer than 4096 bytes");
    expect_malformed("abc", NULL, "the token is not three dot-separated parts");
    sprintf(tok, "%s.%s", h, p);
    expect_malformed(tok, NULL, "the token is not three dot-separated parts");
    sprintf(tok, "%s.%s.c2ln.c2ln", h, p);
    expect_malformed(tok, NULL, "the token is not three dot-separated parts");
    /* base64 with padding or the standard alphabet is not base64url. */
    sprintf(tok, "%s.%s.c2ln=", h, p);
    expect_malformed(tok, NULL, "a part of the token is not base64url");
    sprintf(tok, "%s+.%s.c2ln", h, p);
    expect_malformed(tok, NULL, "a part of the token is not base64url");
    /* One character too many, and leftover bits that are not zero. */
    sprintf(tok, "%sA.%s.c2ln", h, p);
    expect_malformed(tok, NULL, "a part of the token is not base64url");
    sprintf(tok, "eyJ.%s.c2ln", p);
    expect_malformed(tok, NULL, "a part of the token is not base64url");
    sprintf(tok, "%s.%s.", h, p);
    expect_malformed(tok, NULL, "the token has no signature");
    /* The length is the caller's: a NUL in the middle is just a byte. */
    sprintf(tok, "%s.%s.c2ln", h, p);
    tok[3] = '\0';
    assert_int_equal(parse_n(tok, strlen(h) + strlen(p) + 6, NULL, &alg, &c, &why),
                     TOKEN_PARSE_MALFORMED);
}

static void
test_parse_bad_header(void **state)
{
    char tok[8192];

    (void)state;
    expect_malformed(make(tok, "not json", "{\"sub\":\"1\"}", "c2ln"), NULL,
                     "a part of the token is not a JSON object");
    expect_malformed(make(tok, "[\"HS256\"]", "{\"sub\":\"1\"}", "c2ln"), NULL,
                     "a part of the token is not a JSON object");
    expect_malformed(make(tok, "{\"typ\":\"JWT\"}", "{\"sub\":\"1\"}", "c2ln"), NULL,
                     "the token's header names no alg");
    expect_malformed(make(tok, "{\"alg\":256}", "{\"sub\":\"1\"}", "c2ln"), NULL,
                     "the token's header names no alg");
    expect_malformed(make(tok, "{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", "{\"sub\":\"1\"}", "c2ln"),
                     NULL, "the token's typ is not JWT");
    expect_malformed(make(tok, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}",
                          "{\"sub\":\"1\"}", "c2ln"),
                     NULL, "the token's header has crit extensions, which are not supported");
    expect_malformed(make(tok, "{\"alg\":\"HS256\"} x", "{\"sub\":\"1\"}", "c2ln"), NULL,
                     "a part of the token is not a JSON object");
}

static void
test_parse_bad_claims(void **state)
{
    char tok[8192], p[256];

    (void)state;
    expect_malformed(make(tok, HS, "{}", "c2ln"), NULL, "the token has no sub");
    expect_malformed(make(tok, HS, "{\"sub\":42}", "c2ln"), NULL, "the token has no sub");
    expect_malformed(make(tok, HS, "\"sub\"", "c2ln"), NULL,
                     "a part of the token is not a JSON object");
    expect_malformed(make(tok, HS, "{\"sub\":\"\"}", "c2ln"), NULL,
                     "the token's sub is not 1 to 64 visible ASCII characters");
    expect_malformed(make(tok, HS, "{\"sub\":\"a b\"}", "c2ln"), NULL,
                     "the token's sub is not 1 to 64 visible ASCII characters");
    expect_malformed(make(tok, HS, "{\"sub\":\"\\u00e9\"}", "c2ln"), NULL,
                     "the token's sub is not 1 to 64 visible ASCII characters");
    snprintf(p, sizeof(p), "{\"sub\":\"%065d\"}", 1);
    expect_malformed(make(tok, HS, p, "c2ln"), NULL,
                     "the token's sub is not 1 to 64 visible ASCII characters");
    snprintf(p, sizeof(p), "{\"sub\":\"%064d\"}", 1);
    {
        enum token_alg alg;
        struct token_claims c;
        const char *why;

        assert_int_equal(parse(make(tok, HS, p, "c2ln"), NULL, &alg, &c, &why), TOKEN_PARSE_OK);
        assert_int_equal(strlen(c.sub), 64);
    }
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"exp\":\"1700000000\"}", "c2ln"), NULL,
                     "the token's exp is not a time in seconds");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"exp\":-1}", "c2ln"), NULL,
                     "the token's exp is not a time in seconds");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"exp\":1e300}", "c2ln"), NULL,
                     "the token's exp is not a time in seconds");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"exp\":99999999999999999999}", "c2ln"),
                     NULL, "the token's exp is not a time in seconds");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"nbf\":null}", "c2ln"), NULL,
                     "the token's nbf is not a time in seconds");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"firehose\":\"true\"}", "c2ln"), NULL,
                     "the token's firehose is not a boolean");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"firehose\":1}", "c2ln"), NULL,
                     "the token's firehose is not a boolean");
}

static void
test_parse_rules(void **state)
{
    char tok[8192];
    struct token_rules iss = { "https://idp.example", NULL };
    struct token_rules aud = { "", "ssegate" };
    struct token_rules none = { "", "" };
    enum token_alg alg;
    struct token_claims c;
    const char *why;

    (void)state;
    assert_int_equal(parse(make(tok, HS, "{\"sub\":\"1\",\"iss\":\"https://idp.example\"}", "c2ln"),
                           &iss, &alg, &c, &why), TOKEN_PARSE_OK);
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"iss\":\"https://other\"}", "c2ln"), &iss,
                     "the token is not from the expected issuer");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\"}", "c2ln"), &iss,
                     "the token is not from the expected issuer");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"iss\":[\"https://idp.example\"]}", "c2ln"),
                     &iss, "the token is not from the expected issuer");
    assert_int_equal(parse(make(tok, HS, "{\"sub\":\"1\",\"aud\":\"ssegate\"}", "c2ln"),
                           &aud, &alg, &c, &why), TOKEN_PARSE_OK);
    assert_int_equal(parse(make(tok, HS, "{\"sub\":\"1\",\"aud\":[\"x\",7,\"ssegate\"]}", "c2ln"),
                           &aud, &alg, &c, &why), TOKEN_PARSE_OK);
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"aud\":[\"x\",\"y\"]}", "c2ln"), &aud,
                     "the token is not for this audience");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\",\"aud\":\"ssegate2\"}", "c2ln"), &aud,
                     "the token is not for this audience");
    expect_malformed(make(tok, HS, "{\"sub\":\"1\"}", "c2ln"), &aud,
                     "the token is not for this audience");
    /* Empty rules, like none at all, take any iss and aud. */
    assert_int_equal(parse(make(tok, HS, "{\"sub\":\"1\",\"iss\":5,\"aud\":{}}", "c2ln"),
                           &none, &alg, &c, &why), TOKEN_PARSE_OK);
}

/* ------------------------------------------------------ what it allows */

static void
test_time_window(void **state)
{
    struct token_claims c = { .has_exp = 1, .exp_ms = 10000, .has_nbf = 1, .nbf_ms = 5000 };
    struct token_claims forever = { 0 };

    (void)state;
    assert_int_equal(token_check_time(&c, 4999), TOKEN_TIME_NOT_YET);
    assert_int_equal(token_check_time(&c, 5000), TOKEN_TIME_OK);
    assert_int_equal(token_check_time(&c, 9999), TOKEN_TIME_OK);
    assert_int_equal(token_check_time(&c, 10000), TOKEN_TIME_EXPIRED);
    assert_int_equal(token_check_time(&forever, 0), TOKEN_TIME_OK);
    assert_int_equal(token_check_time(&forever, INT64_MAX), TOKEN_TIME_OK);
}

static void
test_allows(void **state)
{
    struct token_claims user = { .sub = "42" };
    struct token_claims fire = { .sub = "ops", .firehose = 1 };

    (void)state;
    assert_true(token_allows(&user, "42"));
    assert_false(token_allows(&user, "43"));
    assert_false(token_allows(&user, "420"));
    assert_false(token_allows(&user, "4"));
    assert_false(token_allows(&user, ""));
    assert_false(token_allows(&user, NULL));
    /* The firehose carries every user's events: a token for it opens any. */
    assert_true(token_allows(&fire, NULL));
    assert_true(token_allows(&fire, ""));
    assert_true(token_allows(&fire, "42"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_order),
        cmocka_unit_test(test_find_bearer_forms),
        cmocka_unit_test(test_find_quoted_cookie),
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_algorithms),
        cmocka_unit_test(test_parse_bad_form),
        cmocka_unit_test(test_parse_bad_header),
        cmocka_unit_test(test_parse_bad_claims),
        cmocka_unit_test(test_parse_rules),
        cmocka_unit_test(test_time_window),
        cmocka_unit_test(test_allows),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
