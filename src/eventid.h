/* eventid.h -- Redis stream ids ("<ms>-<seq>") as event ids: parse,
 * compare, format. Pure: no I/O, no allocation. */
#ifndef SSEGATE_EVENTID_H
#define SSEGATE_EVENTID_H

#include <stddef.h>
#include <stdint.h>

/* "18446744073709551615-18446744073709551615" plus the NUL. */
#define EVENTID_STR_MAX 42

struct event_id {
    uint64_t ms;
    uint64_t seq;
};

/* Parses exactly len bytes of "<ms>-<seq>" or "<ms>" (seq 0), decimal
 * digits only, no sign, no spaces, each part at most 20 digits and in
 * range. Returns 0, or -1 (out untouched) for anything else. */
int
eventid_parse(const char *s, size_t len, struct event_id *out);

/* Returns <0, 0, >0 like strcmp. */
int
eventid_cmp(const struct event_id *a, const struct event_id *b);

/* Writes "<ms>-<seq>" and a NUL. Returns the length, or -1 if cap is
 * too small (buf then holds ""). */
int
eventid_format(const struct event_id *id, char *buf, size_t cap);

#endif
