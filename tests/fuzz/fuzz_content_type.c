/* fuzz_content_type.c -- libFuzzer target: a request's Content-Type header
 * (body_content_type_is_json, a hand-written RFC 9110 media-type reader).
 * Checks it never reads past the string, and that whatever it calls JSON
 * is application/json with only parameters after it and no charset but
 * UTF-8.
 *
 * fuzz-sources: src/body.c src/strictjson.c src/envelope.c src/eventid.c src/sse.c src/topic.c
 * fuzz-libs: json-c
 * fuzz-covers: src/body.c:body_content_type_is_json
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An independent reading of the accepted form: after the type, only
 * OWS ";" OWS name=value pairs (a value a token or a quoted string with
 * no quote inside) or empty parameters. Returns 1 if s fits it and names
 * no charset other than utf-8. */
static int
reference(const char *s)
{
    size_t i = 16;

    if (strncasecmp(s, "application/json", 16) != 0)
        return 0;
    for (;;) {
        size_t name, name_len, val, val_len;

        while (s[i] == ' ' || s[i] == '\t')
            i++;
        if (s[i] == '\0')
            return 1;
        if (s[i] != ';')
            return 0;
        i++;
        while (s[i] == ' ' || s[i] == '\t')
            i++;
        if (s[i] == ';' || s[i] == '\0')
            continue;
        name = i;
        while (s[i] != '\0' && strchr("=; \t", s[i]) == NULL)
            i++;
        name_len = i - name;
        if (s[i] != '=' || name_len == 0)
            return 0;
        i++;
        if (s[i] == '"') {
            val = ++i;
            while (s[i] != '\0' && s[i] != '"')
                i++;
            if (s[i] != '"')
                return 0;
            val_len = i++ - val;
        } else {
            val = i;
            while (s[i] != '\0' && strchr("; \t", s[i]) == NULL)
                i++;
            val_len = i - val;
        }
        if (name_len == 7 && strncasecmp(s + name, "charset", 7) == 0 &&
            !(val_len == 5 && strncasecmp(s + val, "utf-8", 5) == 0))
            return 0;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_copy(data, size, 1);
    int got = body_content_type_is_json(s);

    FUZZ_CHECK(got == 0 || got == 1);
    FUZZ_CHECK(got == reference(s));
    free(s);
    return 0;
}
