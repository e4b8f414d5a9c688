/* fuzz_netaddr.c -- libFuzzer target: who a request's client is. The
 * input's first line is a TRUSTED_PROXIES list (netaddr_cidrs_parse, as
 * config.c reads it), the rest an X-Forwarded-For value
 * (netaddr_client_from_xff), every address read formatted back. Checks
 * nothing is read past the input, that a client read from the header
 * formats and reads back as itself, and that its limits key (an IPv6
 * /64) is stable.
 *
 * fuzz-sources: src/netaddr.c
 * fuzz-libs:
 * fuzz-covers: src/netaddr.c
 */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "netaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_copy(data, size, 1);
    char *nl = memchr(s, '\n', size);
    const char *xff = nl != NULL ? nl + 1 : s;
    size_t xff_len = nl != NULL ? size - (size_t)(nl + 1 - s) : size;
    struct netaddr_cidrs trusted;
    struct netaddr a, back, key;
    char err[128], text[NETADDR_STR_MAX];

    memset(&trusted, 0, sizeof(trusted));
    if (nl != NULL) {
        *nl = '\0';
        if (netaddr_cidrs_parse(s, &trusted, err, sizeof(err)) == -1) {
            FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
            memset(&trusted, 0, sizeof(trusted));
        }
    }
    if (netaddr_client_from_xff(xff, xff_len, &trusted, &a) == 1) {
        netaddr_format(&a, 128, text, sizeof(text));
        FUZZ_CHECK(netaddr_parse(text, strlen(text), &back) == 0);
        FUZZ_CHECK(netaddr_equal(&a, &back));
        key = a;
        netaddr_client_key(&key);
        back = key;
        netaddr_client_key(&back);
        FUZZ_CHECK(netaddr_equal(&key, &back));
        (void)netaddr_cidrs_match(&trusted, &a);
    }
    if (netaddr_parse(xff, xff_len, &a) == 0) {
        netaddr_format(&a, 128, text, sizeof(text));
        FUZZ_CHECK(netaddr_parse(text, strlen(text), &back) == 0 && netaddr_equal(&a, &back));
    }
    free(s);
    return 0;
}
