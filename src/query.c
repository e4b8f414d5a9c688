/* query.c -- which value (or values) of a query parameter the API reads,
 * and a request target with a parameter's value left out, for logs. libmicrohttpd
 * hands a parameter over as a C string and answers a lookup with its
 * first occurrence, so "userId=1%00x" read as user 1 and "?userId" (no
 * "=", no value) as no userId at all: the firehose. Names match in any
 * case, as libmicrohttpd's lookups do. Here a name stands
 * for one value or none, never for a truncated or an arbitrary one.
 * Pure; owns nothing. */
#include <ctype.h>
#include <stdio.h>
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

static int
query_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 1 if the raw key (n bytes) decodes to name, in any case. */
static int
query_key_is(const char *key, size_t n, const char *name)
{
    size_t j = 0, len = strlen(name);

    for (size_t i = 0; i < n; i++, j++) {
        char c = key[i];
        int hi, lo;

        if (c == '%' && i + 2 < n &&
            (hi = query_hex(key[i + 1])) >= 0 && (lo = query_hex(key[i + 2])) >= 0) {
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (j >= len || tolower((unsigned char)c) != tolower((unsigned char)name[j]))
            return 0;
    }
    return j == len;
}

const char *
query_redact(const char *target, const char *name, char *out, size_t cap)
{
    const char *q = strchr(target, '?'), *p;
    size_t o = 0;

    if (cap == 0)
        return out;
    /* Appends n bytes of s, or marks the cut and stops. */
#define QUERY_PUT(s, n)                                                        \
    do {                                                                       \
        if (o + (n) + 4 > cap) {                                               \
            snprintf(out + o, cap - o, "%s", cap - o >= 4 ? "..." : "");       \
            return out;                                                        \
        }                                                                      \
        memcpy(out + o, (s), (n));                                             \
        o += (n);                                                              \
    } while (0)
    if (q == NULL) {
        QUERY_PUT(target, strlen(target));
        out[o] = '\0';
        return out;
    }
    QUERY_PUT(target, (size_t)(q - target) + 1);
    for (p = q + 1; *p != '\0';) {
        size_t n = strcspn(p, "&"), k = strcspn(p, "=");

        if (k > n)
            k = n;
        if (k < n && query_key_is(p, k, name))
            QUERY_PUT(p, k + 1);            /* "name=", the value left out */
        else
            QUERY_PUT(p, n);
        p += n;
        if (*p == '&') {
            QUERY_PUT("&", 1);
            p++;
        }
    }
#undef QUERY_PUT
    out[o] = '\0';
    return out;
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
