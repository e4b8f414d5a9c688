/* eventid.c -- event ids are Redis stream ids, "<ms>-<seq>": two unsigned
 * 64-bit numbers compared in that order. Owns nothing; pure. */
#include <stdio.h>
#include <string.h>

#include "eventid.h"

/* Exactly len decimal digits, no sign or space, and no overflow. */
static int
eventid_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > EVENTID_PART_MAX_DIGITS)
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
    const char *dash = len > 0 ? memchr(s, '-', len) : NULL;
    size_t ms_len = dash != NULL ? (size_t)(dash - s) : len;

    if (eventid_parse_u64(s, ms_len, &id.ms) == -1)
        return -1;
    /* "<ms>" alone is what XRANGE accepts too: sequence 0. */
    if (dash != NULL &&
        eventid_parse_u64(dash + 1, len - ms_len - 1, &id.seq) == -1)
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
    int n;

    if (cap == 0)
        return -1;
    n = snprintf(buf, cap, "%llu-%llu", (unsigned long long)id->ms,
                 (unsigned long long)id->seq);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

void
eventid_show_foreign(const char *raw, char *out, size_t cap)
{
    size_t n = 0;

    if (cap == 0)
        return;
    for (; *raw != '\0' && n + 1 < cap && n < EVENTID_FOREIGN_MAX; raw++) {
        unsigned char ch = (unsigned char)*raw;

        out[n++] = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? (char)ch : '?';
    }
    out[n] = '\0';
}
