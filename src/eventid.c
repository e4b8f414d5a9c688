/* eventid.c -- event ids are Redis stream ids, "<ms>-<seq>", two unsigned
 * 64-bit numbers compared in order. Pure. */
#include <stdio.h>

#include "eventid.h"

/* Exactly len decimal digits, at most 20, no overflow. */
static int
eventid_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return -1;
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int
eventid_parse(const char *s, size_t len, struct event_id *out)
{
    struct event_id id = { 0, 0 };
    size_t dash = len;

    for (size_t i = 0; i < len; i++)
        if (s[i] == '-') { dash = i; break; }
    if (eventid_parse_u64(s, dash, &id.ms) == -1)
        return -1;
    if (dash < len && eventid_parse_u64(s + dash + 1, len - dash - 1, &id.seq) == -1)
        return -1;
    *out = id;
    return 0;
}

int
eventid_cmp(const struct event_id *a, const struct event_id *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

int
eventid_format(const struct event_id *id, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%llu-%llu", (unsigned long long)id->ms,
                     (unsigned long long)id->seq);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return -1;
    }
    return n;
}
