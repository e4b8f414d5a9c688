/* strictjson.h -- parsing untrusted JSON (request bodies) with every
 * json-c leniency turned off, an allocation-free scanner that accepts
 * exactly the same texts (event bodies and channel messages, read on
 * every event), and
 * the one strict UTF-8 decoder everything else uses. Pure. */
#ifndef SSEGATE_STRICTJSON_H
#define SSEGATE_STRICTJSON_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Parses exactly len bytes (not NUL-terminated) as one JSON object:
 * strict grammar (no comments, trailing commas or single quotes), valid
 * UTF-8 (strictjson_utf8_valid, which json-c's own check is not), no raw
 * control character (U+0000..U+001F) inside a string, no \u escape that
 * is half of a surrogate pair on its own, nesting at most 32 deep, nothing
 * but white space after it. Returns the object (the caller
 * json_object_put()s it), or NULL with a static reason in *why ("out of
 * memory" when that is the reason: the caller tells it apart). */
json_object *
strictjson_parse_object(const char *buf, size_t len, const char **why);

/* Frees this thread's tokener (strictjson_parse_object keeps one per
 * thread). Every thread that parses calls it before it ends. */
void
strictjson_thread_end(void);

/* Decodes the UTF-8 sequence at s[*i] (s has n bytes) into *cp and moves
 * *i past it. RFC 3629 strictly: the shortest form only (no C0 80, no
 * E0 80 80), no surrogate (ED A0 80 .. ED BF BF), nothing above U+10FFFF
 * (F4 90 80 80, F5..FF), every continuation byte present. Returns 0, or
 * -1 leaving *i alone. */
int
strictjson_utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp);

/* 1 if the n bytes at s are valid UTF-8 as strictjson_utf8_next reads it. */
int
strictjson_utf8_valid(const unsigned char *s, size_t n);

/* Checks the text of a JSON document (n bytes) for what json-c lets
 * through: invalid UTF-8 anywhere, a raw control character inside a
 * string, a lone surrogate in a \u escape. Only string boundaries are
 * tracked; the grammar is the tokener's job, and a text this passes may
 * still be invalid JSON. Returns 0, or -1 with a static reason in *why. */
int
strictjson_check_text(const char *buf, size_t n, const char **why);

/* The allocation-free reader (strictjson_scan_object) accepts and refuses
 * exactly what strictjson_parse_object does, with the same reasons, so
 * a per-event path can read a few top-level members without json-c's
 * per-call locale switch and one allocation per key and value. That
 * means json-c 0.16's strict-mode quirks too: NaN, Infinity, -Infinity,
 * "1.", "-.5", "00" and "-01" are numbers; a key may be in single quotes
 * (which strictjson_check_text does not see as a string); a key ends at
 * its first \u0000; a lone surrogate in a \u escape that check_text did
 * not see becomes U+FFFD; a NUL after the value is "data after the JSON
 * value", other trailing bytes "not valid JSON". */
#define STRICTJSON_MAX_DEPTH 32

enum strictjson_kind {
    STRICTJSON_NULL,
    STRICTJSON_BOOL,
    STRICTJSON_INT,         /* json-c's json_type_int: -?digits, no . or e */
    STRICTJSON_DOUBLE,      /* a number with . or e, NaN, Infinity, -Infinity */
    STRICTJSON_STRING,
    STRICTJSON_ARRAY,
    STRICTJSON_OBJECT
};

/* Bytes of the text: for a string or key, what is between its quotes,
 * still escaped. */
struct strictjson_span {
    const char *p;
    size_t n;
};

/* One top-level member, as the text has it. */
struct strictjson_member {
    struct strictjson_span key;
    enum strictjson_kind kind;
    struct strictjson_span value;
};

/* Called for each top-level member in text order; a later member with
 * the same key replaces an earlier one, as in json-c. Members are
 * reported while the text is still being read: use them only when
 * strictjson_scan_object returns 0. */
typedef void strictjson_member_fn(void *ctx, const struct strictjson_member *m);

/* Reads exactly len bytes as strictjson_parse_object does, calling
 * member for each top-level member; allocates nothing, no recursion,
 * one pass over a valid text (strictjson_check_text runs on its own only
 * for a text refused, or with a single-quoted key).
 * Returns 0, or -1 with the reason strictjson_parse_object would give
 * in *why. */
int
strictjson_scan_object(const char *buf, size_t len, strictjson_member_fn *member,
                       void *ctx, const char **why);

/* Unescapes a string value's span into out (cap bytes), as json-c does
 * (an escaped \u0000 is kept, as json_object_get_string_len sees it;
 * a lone surrogate is U+FFFD; a pair that decodes to a code point whose
 * low 16 bits are a surrogate's is U+FFFD or waits for a low surrogate,
 * as json-c 0.16 reads it), and NUL-terminates it. *outlen is the
 * unescaped length without the NUL. Returns 0, or -1 if it does not fit
 * (out then holds, NUL-terminated, the characters that fit). */
int
strictjson_string_unescape(struct strictjson_span s, char *out, size_t cap,
                           size_t *outlen);

/* 1 if a key's span, unescaped and cut at its first NUL (json-c strdup()s
 * keys), is name. */
int
strictjson_key_is(struct strictjson_span key, const char *name);

/* Parses with json-c one value that strictjson_scan_object has read
 * inside a text it accepted (a member's value span; a string's with its
 * quotes), with the tokener strictjson_parse_object uses, giving the
 * object json-c built for it inside that text. For a reader that needs
 * json-c's object for one member only. On its own the value sits one
 * level higher than in the text, which the text's depth limit already
 * covers; a number or word at the span's end is ended as the text's
 * next byte ended it. The text checks do not run again: the whole text
 * passed them, and a span on its own may not (a single-quoted key before
 * it moves where strictjson_check_text sees strings). Returns 0 with
 * *out (NULL for null; the caller json_object_put()s it), or -1 (out of
 * memory, or a span not read that way). */
int
strictjson_parse_value(const char *buf, size_t len, json_object **out);

/* What json_object_get_int64 and json_object_get_uint64 return for an
 * STRICTJSON_INT span: json-c saturates out-of-range values (to
 * INT64_MIN below; to UINT64_MAX above, which get_int64 reads as
 * INT64_MAX), and a negative number's get_uint64 is 0. */
void
strictjson_int_value(struct strictjson_span num, int64_t *i64, uint64_t *u64);

/* How json-c 0.16 writes byte c of a string back (json_escape_str with
 * JSON_C_TO_STRING_NOSLASHESCAPE): \" \\ \b \f \n \r \t, \u00xx
 * (lower-case hex) for the other bytes below 0x20, NUL included (a string
 * value json-c read keeps its escaped NULs), and every other byte as it
 * is ("/", DEL, bytes of UTF-8). Writes it at esc and returns its length.
 * The one escaper of envelopes and of event data, byte for byte json-c's
 * so what the gateway writes is what it always wrote; inline because
 * both run it on every byte of every write. */
static inline size_t
strictjson_escape_byte(unsigned char c, char esc[6])
{
    static const char hex[] = "0123456789abcdef";

    if (c >= 0x20 && c != '"' && c != '\\') {
        esc[0] = (char)c;
        return 1;
    }
    esc[0] = '\\';
    switch (c) {
    case '"':  esc[1] = '"';  return 2;
    case '\\': esc[1] = '\\'; return 2;
    case '\b': esc[1] = 'b'; return 2;
    case '\f': esc[1] = 'f'; return 2;
    case '\n': esc[1] = 'n'; return 2;
    case '\r': esc[1] = 'r'; return 2;
    case '\t': esc[1] = 't'; return 2;
    default:
        break;
    }
    memcpy(esc + 1, "u00", 3);
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 0xf];
    return 6;
}

#endif
