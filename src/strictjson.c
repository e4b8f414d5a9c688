/* strictjson.c -- one strict json-c tokener setup for all untrusted input.
 * json_tokener_parse() would accept trailing garbage and stop at a NUL;
 * this does neither. */
#include <limits.h>
#include <string.h>

#include "strictjson.h"

#define STRICTJSON_MAX_DEPTH 32

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
    if ((tok = json_tokener_new_ex(STRICTJSON_MAX_DEPTH)) == NULL) {
        *why = "out of memory";
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
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
    json_tokener_free(tok);
    return o;
err:
    json_object_put(o);
    json_tokener_free(tok);
    return NULL;
}
