/* strictjson.h -- parsing untrusted JSON (request bodies, channel
 * messages) with every json-c leniency turned off, and the one strict
 * UTF-8 decoder everything else uses. Pure. */
#ifndef SSEGATE_STRICTJSON_H
#define SSEGATE_STRICTJSON_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
