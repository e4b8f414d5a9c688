/* fuzz_token.c -- libFuzzer target: a stream token, from where a request
 * carries it (token_find over an Authorization header, a token query
 * parameter and a cookie) up to the library call: the header (which picks
 * the algorithm and so the key) and the claims, with issuer and audience
 * rules. Checks nothing is read past the input, and that what is accepted
 * is what the API promises: a token found is a part of its place, a sub
 * is 1..TOKEN_SUB_MAX visible ASCII, a parse that fails says why.
 *
 * fuzz-sources: src/token.c src/strictjson.c src/topic.c
 * fuzz-libs: json-c
 * fuzz-covers: src/token.c
 */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits the input at its first two NUL bytes into the three places. */
static void
split(const char *s, size_t size, const char *p[3])
{
    size_t at = 0;

    for (int i = 0; i < 3; i++) {
        p[i] = at <= size ? s + at : NULL;
        at += (p[i] != NULL ? strlen(p[i]) : 0) + 1;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_copy(data, size, 1);
    const char *place[3], *tok, *why;
    size_t len;
    enum token_alg alg;
    struct token_claims c;
    struct token_rules rules = { "https://idp.test", "ssegate" };

    split(s, size, place);
    if (token_find(place[0], place[1], place[2], &tok, &len) != TOKEN_PLACE_NONE) {
        FUZZ_CHECK(tok != NULL && len > 0);
        FUZZ_CHECK(tok >= s && tok + len <= s + size);
    }
    /* The whole input as a token, as the library would be handed it. */
    why = NULL;
    if (token_parse_header(s, size, &alg, &why) != TOKEN_PARSE_OK)
        FUZZ_CHECK(why != NULL);
    why = NULL;
    memset(&c, 0, sizeof(c));
    if (token_parse_claims(s, size, size % 2 ? &rules : NULL, &c, &why) == TOKEN_PARSE_OK) {
        size_t n = strlen(c.sub);

        FUZZ_CHECK(n >= 1 && n <= TOKEN_SUB_MAX);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(c.sub[i] > 0x20 && c.sub[i] < 0x7f);
        (void)token_check_time(&c, 1796570000000);
        (void)token_allows(&c, "42");
    } else {
        FUZZ_CHECK(why != NULL);
    }
    free(s);
    return 0;
}
