/* strictjson.c -- one strict json-c tokener setup for all untrusted input,
 * and the one strict UTF-8 decoder. json_tokener_parse() would accept
 * trailing garbage and stop at a NUL; this does neither. json-c's own
 * UTF-8 check (0.16) passes overlong forms, encoded surrogates, code
 * points above U+10FFFF and F5..F7 lead bytes; its strict mode passes raw
 * control characters inside strings, and it turns a lone surrogate in a
 * \u escape into U+FFFD without a word. Every such text is refused here,
 * before the tokener sees it, so none can reach a stream verbatim (a
 * channel message is framed as it came) or be altered on the way. */
#include <limits.h>
#include <string.h>

#include "strictjson.h"

#define STRICTJSON_MAX_DEPTH 32

int
strictjson_utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp)
{
    unsigned char b = s[*i];
    unsigned char lo = 0x80, hi = 0xbf;     /* the second byte's range */
    size_t extra;
    uint32_t c;

    if (b < 0x80) {
        *cp = b;
        (*i)++;
        return 0;
    }
    /* RFC 3629 section 4: the lead byte fixes the length and narrows the
     * second byte's range, which is what rules out overlong forms (C0,
     * C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points
     * past U+10FFFF (F4 90..BF, F5..FF). */
    if (b >= 0xc2 && b <= 0xdf) {
        extra = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
        extra = 2;
        if (b == 0xe0)
            lo = 0xa0;
        else if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        extra = 3;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;
    } else {
        return -1;                  /* 80..C1 or F5..FF: never a lead byte */
    }
    if (extra >= n - *i)
        return -1;                  /* cut short */
    if (s[*i + 1] < lo || s[*i + 1] > hi)
        return -1;
    c = b & (0x3fu >> extra);
    for (size_t k = 1; k <= extra; k++) {
        if ((s[*i + k] & 0xc0) != 0x80)
            return -1;
        c = (c << 6) | (s[*i + k] & 0x3fu);
    }
    *i += extra + 1;
    *cp = c;
    return 0;
}

int
strictjson_utf8_valid(const unsigned char *s, size_t n)
{
    uint32_t cp;

    for (size_t i = 0; i < n;) {
        if (strictjson_utf8_next(s, n, &i, &cp) == -1)
            return 0;
    }
    return 1;
}

/* The value of the four hex digits at s (at least 4 bytes), or -1. */
static long
strictjson_hex4(const unsigned char *s)
{
    long v = 0;

    for (int k = 0; k < 4; k++) {
        unsigned char c = s[k];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* At s[*i], inside a string, a backslash: moves *i past the escape. A
 * high surrogate must be followed at once by a low one (the pair is one
 * code point); a low one must not stand alone. Anything malformed that is
 * not a surrogate is left to the tokener. */
static int
strictjson_skip_escape(const unsigned char *s, size_t n, size_t *i)
{
    long u, u2;

    if (*i + 1 >= n || s[*i + 1] != 'u' || n - *i < 6 ||
        (u = strictjson_hex4(s + *i + 2)) < 0) {
        *i += 2;                    /* \" \\ \n ..., or the tokener's error */
        return 0;
    }
    *i += 6;
    if (u >= 0xdc00 && u <= 0xdfff)
        return -1;
    if (u < 0xd800 || u > 0xdbff)
        return 0;
    if (n - *i < 6 || s[*i] != '\\' || s[*i + 1] != 'u' ||
        (u2 = strictjson_hex4(s + *i + 2)) < 0xdc00 || u2 > 0xdfff)
        return -1;
    *i += 6;
    return 0;
}

int
strictjson_check_text(const char *buf, size_t n, const char **why)
{
    const unsigned char *s = (const unsigned char *)buf;
    int in_string = 0;
    uint32_t cp;

    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];

        if (c >= 0x80) {
            if (strictjson_utf8_next(s, n, &i, &cp) == -1) {
                *why = "not valid JSON (not valid UTF-8)";
                return -1;
            }
            continue;
        }
        if (!in_string) {
            in_string = c == '"';
            i++;
        } else if (c == '"') {
            in_string = 0;
            i++;
        } else if (c < 0x20) {
            *why = "not valid JSON (a control character in a string must be escaped)";
            return -1;
        } else if (c == '\\') {
            if (strictjson_skip_escape(s, n, &i) == -1) {
                *why = "not valid JSON (a \\u escape is half of a surrogate pair)";
                return -1;
            }
        } else {
            i++;
        }
    }
    return 0;
}

/* One tokener per thread, reset between texts: json_tokener_new_ex
 * allocates the tokener, its depth stack and a print buffer, and this is
 * on every write's path (the body) and every stream open's in secure mode
 * (the token's claims). The thread that parsed frees it at its end
 * (strictjson_thread_end). */
static _Thread_local json_tokener *strictjson_tok;

static json_tokener *
strictjson_tokener(void)
{
    if (strictjson_tok != NULL) {
        json_tokener_reset(strictjson_tok);     /* the flags stay */
        return strictjson_tok;
    }
    if ((strictjson_tok = json_tokener_new_ex(STRICTJSON_MAX_DEPTH)) != NULL)
        json_tokener_set_flags(strictjson_tok,
                               JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    return strictjson_tok;
}

void
strictjson_thread_end(void)
{
    if (strictjson_tok != NULL)
        json_tokener_free(strictjson_tok);
    strictjson_tok = NULL;
}

json_object *
strictjson_parse_object(const char *buf, size_t len, const char **why)
{
    json_tokener *tok;
    json_object *o;
    size_t end;

    if (len > INT_MAX) {
        *why = "the JSON is too large";
        return NULL;
    }
    if (strictjson_check_text(buf, len, why) == -1)
        return NULL;
    if ((tok = strictjson_tokener()) == NULL) {
        *why = "out of memory";
        return NULL;
    }
    o = json_tokener_parse_ex(tok, buf, (int)len);
    /* json_tokener_continue at the end of input means it was cut short. */
    if (o == NULL || json_tokener_get_error(tok) != json_tokener_success) {
        *why = "not valid JSON";
        goto err;
    }
    end = json_tokener_get_parse_end(tok);
    while (end < len && strchr(" \t\r\n", buf[end]) != NULL && buf[end] != '\0')
        end++;
    if (end != len) {
        *why = "data after the JSON value";
        goto err;
    }
    if (!json_object_is_type(o, json_type_object)) {
        *why = "not a JSON object";
        goto err;
    }
    return o;
err:
    json_object_put(o);
    return NULL;
}
