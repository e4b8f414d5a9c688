/* query.c -- which value (or values) of a query parameter the API reads. libmicrohttpd
 * hands a parameter over as a C string and answers a lookup with its
 * first occurrence, so "userId=1%00x" read as user 1 and "?userId" (no
 * "=", no value) as no userId at all: the firehose. Names match in any
 * case, as libmicrohttpd's lookups do. Here a name stands
 * for one value or none, never for a truncated or an arbitrary one.
 * Pure; owns nothing. */
#include <string.h>
#include <strings.h>

#include "query.h"

const char *
query_value(const struct query_arg *args, size_t n, const char *name)
{
    size_t name_len = strlen(name);
    const struct query_arg *found = NULL;

    for (size_t i = 0; i < n; i++) {
        /* In any case, as libmicrohttpd's own lookups match names: a
         * "userid" beside a "userId" is the name given twice. */
        if (args[i].key_len != name_len || strncasecmp(args[i].key, name, name_len) != 0)
            continue;
        if (found != NULL)
            return "";          /* given twice: which one would a proxy read? */
        found = &args[i];
    }
    if (found == NULL)
        return NULL;
    if (found->value == NULL || memchr(found->value, '\0', found->value_len) != NULL)
        return "";
    return found->value;
}

int
query_each(const struct query_arg *args, size_t n, const char *name,
           int (*fn)(const char *value, size_t len, void *arg), void *arg)
{
    size_t name_len = strlen(name);
    int count = 0;

    for (size_t i = 0; i < n; i++) {
        if (args[i].key_len != name_len || strncasecmp(args[i].key, name, name_len) != 0)
            continue;
        if (args[i].value == NULL || memchr(args[i].value, '\0', args[i].value_len) != NULL)
            return -1;
        if (fn(args[i].value, args[i].value_len, arg) == -1)
            return -1;
        count++;
    }
    return count;
}
