/* strictjson.h -- parsing untrusted JSON (request bodies, channel
 * messages) with every json-c leniency turned off. Pure. */
#ifndef SSEGATE_STRICTJSON_H
#define SSEGATE_STRICTJSON_H

#include <json-c/json.h>
#include <stddef.h>

/* Parses exactly len bytes (not NUL-terminated) as one JSON object:
 * strict grammar (no comments, trailing commas or single quotes), valid
 * UTF-8, nesting at most 32 deep, nothing but white space after it.
 * Returns the object (the caller json_object_put()s it), or NULL with a
 * static reason in *why. */
json_object *
strictjson_parse_object(const char *buf, size_t len, const char **why);

#endif
