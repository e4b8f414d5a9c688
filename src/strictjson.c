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
        /* A tokener that stopped inside a text is freed, not reset for
         * the next: json-c 0.16's json_tokener_reset leaves a pending high
         * surrogate behind (and its \u escape's position), so the next
         * text's first \u escape would gain a U+FFFD, or a key an unknown
         * name. Refused texts are the rare case; a new tokener costs one
         * allocation then. */
        strictjson_thread_end();
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

int
strictjson_parse_value(const char *buf, size_t len, json_object **out)
{
    json_tokener *tok;
    json_object *o;

    *out = NULL;
    if (len > INT_MAX || (tok = strictjson_tokener()) == NULL)
        return -1;
    o = json_tokener_parse_ex(tok, buf, (int)len);
    /* json-c ends a number or a word only at the byte after it, and
     * waits for more at the end of the input; a NUL ends it as the
     * text's next byte (white space, ',', ']' or '}') did. */
    if (o == NULL && json_tokener_get_error(tok) == json_tokener_continue)
        o = json_tokener_parse_ex(tok, "", 1);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        strictjson_thread_end();        /* as above: never reset */
        json_object_put(o);
        return -1;
    }
    *out = o;
    return 0;
}

/* ---- The allocation-free reader ----------------------------------------
 * A grammar check that follows json-c 0.16's tokener (json_tokener.c) in
 * strict mode state for state, doing strictjson_check_text's checks in
 * the same pass: where json-c is lenient in strict mode, so is this (see
 * strictjson.h), because accepting exactly what strictjson_parse_object
 * accepts is the point. Containers are tracked in a bit stack, never by
 * recursion. */

/* What json_tokener_parse_ex's outcome becomes in strictjson_parse_object. */
enum strictjson_scan_result { STRICTJSON_SCAN_OK, STRICTJSON_SCAN_INVALID, STRICTJSON_SCAN_TRAILING, STRICTJSON_SCAN_NOT_OBJECT };

struct strictjson_scanner {
    const unsigned char *s;
    size_t n, i;
    int depth;                      /* open containers */
    /* A single-quoted key was read: strictjson_check_text's idea of what
     * is a string (it knows only '"') may differ from here on, so strings
     * are read as leniently as json-c reads them and check_text runs on
     * the whole text afterwards. */
    int lenient;
    uint32_t arrays;                /* bit d-1 set: container d is an array */
};

static int
strictjson_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void
strictjson_skip_ws(struct strictjson_scanner *p)
{
    while (p->i < p->n && strictjson_ws(p->s[p->i]))
        p->i++;
}

/* After "\u" at s[i]: moves past the four hex digits, and then (unless
 * lenient) applies strictjson_skip_escape's surrogate rule: a high
 * surrogate's escape must be followed at once by a low one's, which is
 * read with it; a low one alone is refused. */
static int
strictjson_unicode_escape(struct strictjson_scanner *p)
{
    long u, u2;

    if (p->n - p->i < 4 || (u = strictjson_hex4(p->s + p->i)) < 0)
        return -1;
    p->i += 4;
    if (p->lenient || u < 0xd800 || u > 0xdfff)
        return 0;
    if (u >= 0xdc00 || p->n - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
        (u2 = strictjson_hex4(p->s + p->i + 2)) < 0xdc00 || u2 > 0xdfff)
        return -1;
    p->i += 6;
    return 0;
}

/* The body of a string or key opened by quote at s[i - 1]: moves past the
 * closing quote. json-c takes every byte but NUL literally, and of
 * escapes only \" \\ \/ \b \f \n \r \t and \u with four hex digits.
 * Unless lenient, what strictjson_check_text refuses in a string is
 * refused here too (a raw control character, invalid UTF-8, a lone
 * surrogate), so a text read without error needs no second pass. */
static int
strictjson_string(struct strictjson_scanner *p, unsigned char quote)
{
    while (p->i < p->n) {
        unsigned char c = p->s[p->i];
        uint32_t cp;

        if (c == quote) {
            p->i++;
            return 0;
        }
        if (c == '\0' || (!p->lenient && c < 0x20))
            return -1;
        if (c >= 0x80 && !p->lenient) {
            if (strictjson_utf8_next(p->s, p->n, &p->i, &cp) == -1)
                return -1;
            continue;
        }
        p->i++;
        if (c != '\\')
            continue;
        if (p->i >= p->n)
            return -1;
        c = p->s[p->i++];
        if (c == 'u') {
            if (strictjson_unicode_escape(p) == -1)
                return -1;
        } else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
            return -1;
        }
    }
    return -1;                      /* cut short */
}

/* A literal word at s[i]. json-c compares one byte at a time and wants
 * one more byte (any byte) before it makes the value. */
static int
strictjson_word(struct strictjson_scanner *p, const char *word)
{
    size_t w = strlen(word);

    if (p->n - p->i <= w || memcmp(p->s + p->i, word, w) != 0)
        return -1;
    p->i += w;
    return 0;
}

/* The double json-c's strtod reads whole: -?(D+(.D*)?|.D+)([eE][+-]?D+)? */
static int
strictjson_double_ok(const unsigned char *t, size_t n)
{
    size_t i = 0, mant = 0;

    if (i < n && t[i] == '-')
        i++;
    for (; i < n && t[i] >= '0' && t[i] <= '9'; i++)
        mant++;
    if (i < n && t[i] == '.') {
        for (i++; i < n && t[i] >= '0' && t[i] <= '9'; i++)
            mant++;
    }
    if (mant == 0)
        return 0;
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        size_t exp = 0;

        i++;
        if (i < n && (t[i] == '+' || t[i] == '-'))
            i++;
        for (; i < n && t[i] >= '0' && t[i] <= '9'; i++)
            exp++;
        if (exp == 0)
            return 0;
    }
    return i == n;
}

/* A number at s[i] (a digit or '-'), json_tokener_state_number's way:
 * the token runs over the bytes its loop takes, then is read by strtoll,
 * strtoull or strtod. Sets *kind. */
static int
strictjson_number(struct strictjson_scanner *p, enum strictjson_kind *kind)
{
    size_t start = p->i;
    int is_double = 0, is_exp = 0, neg_ok = 1, pos_ok = 0;
    const unsigned char *t = p->s + start;
    unsigned char c;
    size_t n;

    while (p->i < p->n) {
        c = p->s[p->i];
        if (!((c >= '0' && c <= '9') || (!is_exp && (c == 'e' || c == 'E')) ||
              (neg_ok && c == '-') || (pos_ok && c == '+') || (!is_double && c == '.')))
            break;
        neg_ok = pos_ok = 0;
        if (c == '.' || c == 'e' || c == 'E') {
            is_double = 1;
            is_exp |= c != '.';
            neg_ok = pos_ok = 1;
        }
        p->i++;
    }
    if (p->i == p->n)
        return -1;                  /* json-c waits for more input */
    c = p->s[p->i];
    n = p->i - start;
    /* Inside a container json-c refuses at once what cannot follow. */
    if (p->depth > 0 && !strictjson_ws(c) && strchr(",]}/Ii", c) == NULL)
        return -1;
    if (n == 1 && t[0] == '-' && (c == 'I' || c == 'i')) {
        *kind = STRICTJSON_DOUBLE;
        return strictjson_word(p, "Infinity");
    }
    if (is_double) {
        *kind = STRICTJSON_DOUBLE;
        return strictjson_double_ok(t, n) ? 0 : -1;
    }
    *kind = STRICTJSON_INT;
    if (t[0] == '-')
        return n > 1 ? 0 : -1;      /* strtoll needs a digit */
    if (t[0] == '0') {
        /* strict mode refuses a leading zero only if the value (which
         * strtoull saturates) is not 0: "00" is 0. */
        for (size_t k = 1; k < n; k++) {
            if (t[k] != '0')
                return -1;
        }
    }
    return 0;
}

/* A scalar at s[i]: sets *kind and moves past it. */
static int
strictjson_scalar(struct strictjson_scanner *p, enum strictjson_kind *kind)
{
    unsigned char c = p->s[p->i];

    switch (c) {
    case '"':
        *kind = STRICTJSON_STRING;
        p->i++;
        return strictjson_string(p, '"');
    case 't':
        *kind = STRICTJSON_BOOL;
        return strictjson_word(p, "true");
    case 'f':
        *kind = STRICTJSON_BOOL;
        return strictjson_word(p, "false");
    case 'n':
        *kind = STRICTJSON_NULL;
        return strictjson_word(p, "null");
    case 'N':
        *kind = STRICTJSON_DOUBLE;
        return strictjson_word(p, "NaN");
    case 'I':
        *kind = STRICTJSON_DOUBLE;
        return strictjson_word(p, "Infinity");
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return strictjson_number(p, kind);
        return -1;                  /* ' [single quotes], i, ... */
    }
}

/* After '{' or ',' in an object: a key ('"' or, json-c's leniency even
 * in strict mode, '\''), ':' and white space. */
static int
strictjson_key(struct strictjson_scanner *p, struct strictjson_span *key)
{
    unsigned char q;

    if (p->i >= p->n || (p->s[p->i] != '"' && p->s[p->i] != '\''))
        return -1;
    q = p->s[p->i++];
    p->lenient |= q == '\'';
    key->p = (const char *)p->s + p->i;
    if (strictjson_string(p, q) == -1)
        return -1;
    key->n = (size_t)((const char *)p->s + p->i - 1 - key->p);
    strictjson_skip_ws(p);
    if (p->i >= p->n || p->s[p->i] != ':')
        return -1;
    p->i++;
    strictjson_skip_ws(p);
    return 0;
}

/* Opens a container at s[i] ('{' or '['). */
static void
strictjson_push(struct strictjson_scanner *p, int array)
{
    p->depth++;
    if (array)
        p->arrays |= 1u << (p->depth - 1);
    else
        p->arrays &= ~(1u << (p->depth - 1));
    p->i++;
    strictjson_skip_ws(p);
}

static int
strictjson_in_array(const struct strictjson_scanner *p)
{
    return (p->arrays >> (p->depth - 1)) & 1u;
}

static enum strictjson_scan_result
strictjson_scan(struct strictjson_scanner *p, strictjson_member_fn *member, void *ctx)
{
    struct strictjson_member m = { { NULL, 0 }, STRICTJSON_NULL, { NULL, 0 } };
    struct strictjson_span nested_key;  /* a key below the top level */
    enum strictjson_kind top = STRICTJSON_NULL;
    enum strictjson_kind kind;

    strictjson_skip_ws(p);
    goto value;
next_member:                        /* at a key, s[i] after '{' or ',' */
    if (strictjson_key(p, p->depth == 1 ? &m.key : &nested_key) == -1)
        return STRICTJSON_SCAN_INVALID;
value:                              /* at a value, white space skipped */
    /* json-c refuses a value at tokener depth max_depth - 1: the top
     * level is depth 0, so 32 containers may nest, the innermost empty. */
    if (p->depth >= STRICTJSON_MAX_DEPTH || p->i >= p->n)
        return STRICTJSON_SCAN_INVALID;
    {
        size_t at = p->i;
        unsigned char c = p->s[p->i];

        if (c == '{' || c == '[') {
            if (p->depth == 0)
                top = c == '{' ? STRICTJSON_OBJECT : STRICTJSON_ARRAY;
            if (p->depth == 1) {
                m.kind = c == '{' ? STRICTJSON_OBJECT : STRICTJSON_ARRAY;
                m.value.p = (const char *)p->s + at;
            }
            strictjson_push(p, c == '[');
            if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) {
                p->i++;
                goto close;
            }
            if (c == '{')
                goto next_member;
            goto value;
        }
        if (strictjson_scalar(p, &kind) == -1)
            return STRICTJSON_SCAN_INVALID;
        if (p->depth == 0)
            top = kind;
        if (p->depth == 1) {
            m.kind = kind;
            m.value.p = (const char *)p->s + at;
            m.value.n = p->i - at;
            if (kind == STRICTJSON_STRING) {
                m.value.p++;
                m.value.n -= 2;
            }
            if (!strictjson_in_array(p))
                member(ctx, &m);
        }
        goto after;
    }
close:                              /* just past a container's last byte */
    p->depth--;
    if (p->depth == 1 && !strictjson_in_array(p)) {
        m.value.n = (size_t)((const char *)p->s + p->i - m.value.p);
        member(ctx, &m);
    }
after:                              /* after a value */
    strictjson_skip_ws(p);
    if (p->depth == 0) {
        /* json-c's null is a NULL object: "not valid JSON" whatever
         * follows. It stops at a NUL, still a success. */
        if (top == STRICTJSON_NULL || (p->i < p->n && p->s[p->i] != '\0'))
            return STRICTJSON_SCAN_INVALID;
        if (p->i < p->n)
            return STRICTJSON_SCAN_TRAILING;
        return top == STRICTJSON_OBJECT ? STRICTJSON_SCAN_OK : STRICTJSON_SCAN_NOT_OBJECT;
    }
    if (p->i >= p->n)
        return STRICTJSON_SCAN_INVALID;
    if (p->s[p->i] == (strictjson_in_array(p) ? ']' : '}')) {
        p->i++;
        goto close;
    }
    if (p->s[p->i] != ',')
        return STRICTJSON_SCAN_INVALID;
    p->i++;
    strictjson_skip_ws(p);
    if (strictjson_in_array(p))
        goto value;
    goto next_member;
}

int
strictjson_scan_object(const char *buf, size_t len, strictjson_member_fn *member,
                       void *ctx, const char **why)
{
    struct strictjson_scanner p = { (const unsigned char *)buf, len, 0, 0, 0, 0 };
    enum strictjson_scan_result r;

    if (len > INT_MAX) {
        *why = "the JSON is too large";
        return -1;
    }
    r = strictjson_scan(&p, member, ctx);
    /* One pass read the text and did check_text's checks on the way. A
     * text it refused, or read leniently, gets check_text's own pass:
     * its reason comes first, as in strictjson_parse_object. */
    if (r == STRICTJSON_SCAN_OK && !p.lenient)
        return 0;
    if (strictjson_check_text(buf, len, why) == -1)
        return -1;
    switch (r) {
    case STRICTJSON_SCAN_OK:
        return 0;
    case STRICTJSON_SCAN_TRAILING:
        *why = "data after the JSON value";
        return -1;
    case STRICTJSON_SCAN_NOT_OBJECT:
        *why = "not a JSON object";
        return -1;
    default:
        *why = "not valid JSON";
        return -1;
    }
}

/* Appends the UTF-8 form of cp (below 0x110000, not a surrogate). */
static int
strictjson_put_utf8(char *out, size_t cap, size_t *o, uint32_t cp)
{
    unsigned char b[4];
    size_t k;

    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | ((cp >> 18) & 0x07));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        k = 4;
    }
    if (cap - *o <= k) {            /* room for the NUL too */
        out[*o] = '\0';
        return -1;
    }
    memcpy(out + *o, b, k);
    *o += k;
    return 0;
}

#define SJ_FFFD 0xfffdu

int
strictjson_string_unescape(struct strictjson_span s, char *out, size_t cap,
                           size_t *outlen)
{
    const unsigned char *t = (const unsigned char *)s.p;
    uint32_t high = 0;              /* a high surrogate waiting for its low */
    size_t o = 0;

    if (cap == 0)
        return -1;
    for (size_t i = 0; i < s.n;) {
        uint32_t cp;

        if (t[i] != '\\' || i + 1 >= s.n) {
            cp = t[i++];
        } else if (t[i + 1] != 'u') {
            cp = (uint32_t)"\"\\/\b\f\n\r\t"[strchr("\"\\/bfnrt", t[i + 1]) - "\"\\/bfnrt"];
            i += 2;
        } else {
            cp = (uint32_t)strictjson_hex4(t + i + 2);
            i += 6;
            /* json-c: a pending high surrogate pairs with a low one, or
             * becomes U+FFFD and this escape is read on its own. */
            if (high != 0) {
                if ((cp & 0xfc00) == 0xdc00)
                    cp = ((high & 0x3ff) << 10) + (cp & 0x3ff) + 0x10000;
                else if (strictjson_put_utf8(out, cap, &o, SJ_FFFD) == -1)
                    return -1;
                high = 0;
            }
            /* json-c classifies the code point a pair decodes to as it
             * does a single escape's, by its low 16 bits: U+1D800 waits
             * for a low surrogate like U+D800, U+1DC00 becomes U+FFFD. */
            if ((cp & 0xfc00) == 0xd800) {
                high = cp;
                continue;
            }
            if ((cp & 0xfc00) == 0xdc00)
                cp = SJ_FFFD;
            if (strictjson_put_utf8(out, cap, &o, cp) == -1)
                return -1;
            continue;
        }
        /* Anything but a \u escape ends a pending high surrogate. */
        if (high != 0 && strictjson_put_utf8(out, cap, &o, SJ_FFFD) == -1)
            return -1;
        high = 0;
        if (cap - o <= 1) {
            out[o] = '\0';
            return -1;
        }
        out[o++] = (char)cp;        /* a byte of the text, as it is */
    }
    if (high != 0 && strictjson_put_utf8(out, cap, &o, SJ_FFFD) == -1)
        return -1;
    out[o] = '\0';
    *outlen = o;
    return 0;
}

int
strictjson_key_is(struct strictjson_span key, const char *name)
{
    /* Our names are short; a key too long for buf still matches if its
     * first NUL comes early, and the part that fits shows that. */
    char buf[64];
    size_t n, want = strlen(name);

    if (want >= sizeof(buf) - 4)
        return 0;
    if (memchr(key.p, '\\', key.n) == NULL)   /* no escape: the bytes, no NUL */
        return key.n == want && memcmp(key.p, name, want) == 0;
    (void)strictjson_string_unescape(key, buf, sizeof(buf), &n);
    return strcmp(buf, name) == 0;
}

void
strictjson_int_value(struct strictjson_span num, int64_t *i64, uint64_t *u64)
{
    const unsigned char *t = (const unsigned char *)num.p;
    int neg = num.n > 0 && t[0] == '-';
    uint64_t mag = 0;
    int over = 0;

    for (size_t k = (size_t)neg; k < num.n; k++) {
        unsigned d = (unsigned)(t[k] - '0');

        if (mag > (UINT64_MAX - d) / 10)
            over = 1;
        else
            mag = mag * 10 + d;
    }
    if (neg) {
        /* strtoll: below INT64_MIN is INT64_MIN; get_uint64 of any
         * negative int64 is 0 ("-0" is 0, not negative). */
        if (over || mag > (uint64_t)INT64_MAX + 1)
            *i64 = INT64_MIN;
        else if (mag == (uint64_t)INT64_MAX + 1)
            *i64 = INT64_MIN;
        else
            *i64 = -(int64_t)mag;
        *u64 = *i64 < 0 ? 0 : (uint64_t)*i64;
        return;
    }
    /* strtoull: above UINT64_MAX is UINT64_MAX; json-c keeps a value
     * above INT64_MAX as a uint64, whose get_int64 is INT64_MAX. */
    *u64 = over ? UINT64_MAX : mag;
    *i64 = *u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)*u64;
}
