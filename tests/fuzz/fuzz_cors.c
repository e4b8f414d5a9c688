/* fuzz_cors.c -- libFuzzer target: CORS. The input's first line is a
 * CORS_ORIGINS list (cors_parse, as config.c reads it), the rest a
 * request's Origin header (cors_allow). Checks nothing is read past the
 * input, and that an origin allowed is one of the list's (or the list is
 * "*", and then without credentials).
 *
 * fuzz-sources: src/cors.c
 * fuzz-libs:
 * fuzz-covers: src/cors.c
 */
#include <stdint.h>
#include <string.h>

#include "cors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_copy(data, size, 1);
    char *nl = memchr(s, '\n', size);
    const char *origin;
    size_t origin_len;
    struct cors_origins c;
    char err[128];
    int cred = -1;

    if (nl == NULL) {
        free(s);
        return 0;
    }
    *nl = '\0';
    origin = nl + 1;
    origin_len = size - (size_t)(origin - s);
    memset(&c, 0, sizeof(c));
    if (cors_parse(s, &c, err, sizeof(err)) == -1) {
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        free(s);
        return 0;
    }
    if (cors_allow(&c, origin, origin_len, &cred)) {
        FUZZ_CHECK(cors_enabled(&c));
        FUZZ_CHECK(cred == 0 || cred == 1);
        /* Credentials only for an origin named exactly in the list. */
        if (cred)
            FUZZ_CHECK(origin_len > 0 && strstr(s, origin) != NULL);
    }
    free(s);
    return 0;
}
