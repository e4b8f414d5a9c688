/* eventid.h -- Redis stream ids ("<ms>-<seq>") as event ids: parse,
 * compare, format. Pure: no I/O, no allocation. */
#ifndef SSEGATE_EVENTID_H
#define SSEGATE_EVENTID_H

#include <stddef.h>
#include <stdint.h>

/* Most digits in either part: UINT64_MAX has 20. */
#define EVENTID_PART_MAX_DIGITS 20
/* The longest id, "18446744073709551615-18446744073709551615", plus the
 * NUL: the buffer eventid_format() always fits. */
#define EVENTID_STR_MAX (2 * EVENTID_PART_MAX_DIGITS + 2)

struct event_id {
    uint64_t ms;
    uint64_t seq;
};

/* Parses exactly len bytes of "<ms>-<seq>" or "<ms>" (seq 0), decimal
 * digits only, no sign, no spaces, each part at most
 * EVENTID_PART_MAX_DIGITS digits and in range. Returns 0, or -1 (out
 * untouched) for anything else. */
int
eventid_parse(const char *s, size_t len, struct event_id *out);

/* Returns <0, 0, >0 like strcmp. */
int
eventid_cmp(const struct event_id *a, const struct event_id *b);

/* Writes "<ms>-<seq>" and a NUL. Returns the length, or -1 if cap is
 * too small (buf then holds ""). */
int
eventid_format(const struct event_id *id, char *buf, size_t cap);

/* Most bytes of a foreign id eventid_show_foreign keeps. */
#define EVENTID_FOREIGN_MAX 64

/* A client's resume id that is not an event id (a UUID, an id of an
 * earlier system), made safe to quote inside a JSON string and a log
 * line: its first EVENTID_FOREIGN_MAX bytes (fewer if cap - 1 is
 * smaller), each byte outside printable ASCII, and '"' and '\\', as '?'.
 * Always writes a NUL (cap > 0). */
void
eventid_show_foreign(const char *raw, char *out, size_t cap);

#endif
