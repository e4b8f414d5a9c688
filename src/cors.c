/* cors.c -- CORS_ORIGINS: parsing the list of origins a browser page may
 * call the API from, and matching a request's Origin against it. Exact
 * byte comparison, as browsers serialise an origin one way only (lower
 * case scheme and host, no default port, no trailing slash); the parser
 * refuses what no browser would send, so a typo in the list fails at
 * start-up instead of silently matching nothing. Pure. */
#include <stdio.h>
#include <string.h>

#include "cors.h"

/* A host or port character of an origin: letters, digits, '.', '-',
 * and for "[v6]:port" the brackets and colons. */
static int
cors_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '[' || c == ']' || c == ':';
}

/* One "scheme://host[:port]", lower case. Returns 0 or -1. */
static int
cors_origin_valid(const char *s, size_t len)
{
    const char *sep = NULL;
    size_t i;

    for (i = 0; i + 3 <= len; i++) {
        if (memcmp(s + i, "://", 3) == 0) {
            sep = s + i;
            break;
        }
    }
    if (sep == NULL || sep == s || (size_t)(sep - s) + 3 == len)
        return -1;
    for (const char *p = s; p < sep; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (p > s && ((*p >= '0' && *p <= '9') ||
                                                      *p == '+' || *p == '-' || *p == '.'))))
            return -1;
    }
    for (const char *p = sep + 3; p < s + len; p++) {
        if (!cors_host_char(*p))
            return -1;
    }
    return 0;
}

int
cors_parse(const char *list, struct cors_origins *out, char *err, size_t errlen)
{
    const char *p = list;

    memset(out, 0, sizeof(*out));
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0) {
            snprintf(err, errlen, "an empty item in the list");
            return -1;
        }
        if (len == 1 && p[0] == '*') {
            out->any = 1;
        } else if (len > CORS_ORIGIN_MAX || cors_origin_valid(p, len) == -1) {
            snprintf(err, errlen, "'%.*s' is not an origin like https://app.example.com "
                     "(lower case, no path, no trailing slash) or *",
                     (int)(len > 80 ? 80 : len), p);
            return -1;
        } else if (out->n == CORS_ORIGINS_MAX) {
            snprintf(err, errlen, "more than %d origins", CORS_ORIGINS_MAX);
            return -1;
        } else {
            memcpy(out->v[out->n], p, len);
            out->v[out->n][len] = '\0';
            out->n++;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
        if (*p == '\0') {
            snprintf(err, errlen, "an empty item in the list");
            return -1;
        }
    }
    return 0;
}

int
cors_enabled(const struct cors_origins *c)
{
    return c->any || c->n > 0;
}

const char *
cors_allow(const struct cors_origins *c, const char *origin, size_t len, int *credentials)
{
    *credentials = 0;
    if (origin == NULL)
        return NULL;
    for (unsigned i = 0; i < c->n; i++) {
        if (strlen(c->v[i]) == len && memcmp(c->v[i], origin, len) == 0) {
            *credentials = 1;
            return c->v[i];
        }
    }
    return c->any ? "*" : NULL;
}
