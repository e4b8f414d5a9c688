/* trim.c -- gives the heap's free pages back to the kernel once a load has
 * gone. Owns one timer of the main loop and the peak it compares with.
 *
 * Why: thousands of connections and streams leave glibc's free lists
 * holding their small allocations' pages after they close (big ones are
 * mmap'd and go back by themselves: main.c's M_MMAP_THRESHOLD). A
 * bench/hostile storm left 8 MiB resident over a 6 MiB baseline.
 * malloc_trim(0) hands those pages back (MADV_DONTNEED), but it walks
 * every arena under that arena's lock: a thread allocating meanwhile
 * waits. So it is called only when the load has mostly gone, not on a
 * clock: when the connections and streams held have fallen to at most
 * half their peak since the last trim and by at least TRIM_MIN_DROP.
 * A steady load, high or low, never trims (the count does not fall); a
 * load that keeps within half of its peak never trims; after a trim the
 * peak starts again from the count then, so each trim needs a new rise
 * and fall. Below TRIM_MIN_DROP connections the lists hold too little
 * to be worth the walk. A load that comes and goes within one period is
 * not seen: its pages stay on the lists for the next load. */
#include <event2/event.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "trim.h"

#define TRIM_PERIOD_MS 2000
/* About 1-2 KiB of small allocations a connection or stream: below this,
 * a few MiB at most. */
#define TRIM_MIN_DROP 1000

struct trim {
    struct event *ev;
    struct http *http;          /* borrowed */
    struct hub *hub;            /* borrowed */
    size_t peak;                /* most held at a tick since the last trim */
};

/* Resident KiB (/proc/self/statm), or 0 when it cannot be read. */
static unsigned long
trim_rss_kib(void)
{
    unsigned long size, pages = 0;
    long page = sysconf(_SC_PAGESIZE);
    FILE *f;

    if ((f = fopen("/proc/self/statm", "re")) == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &pages) != 2)
        pages = 0;
    fclose(f);
    return page > 0 ? pages * (unsigned long)page / 1024 : 0;
}

static void
trim_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct trim *t = arg;
    size_t held = (size_t)http_connections(t->http) + hub_count(t->hub), peak;
    unsigned long before, after;
    int64_t start, took;

    (void)fd;
    (void)what;
    if (held > t->peak)
        t->peak = held;
    if (t->peak < held + TRIM_MIN_DROP || held > t->peak / 2)
        return;
    peak = t->peak;
    t->peak = held;
    if (!log_enabled(LOG_LEVEL_DEBUG)) {
        malloc_trim(0);
        return;
    }
    /* What it gave back and what it cost, only for whoever reads debug. */
    before = trim_rss_kib();
    start = clock_mono_us();
    malloc_trim(0);
    took = clock_mono_us() - start;
    after = trim_rss_kib();
    log_debug("malloc_trim: %lld us, RSS %lu -> %lu KiB (connections and streams %zu, "
              "peak %zu)", (long long)took, before, after, held, peak);
}

struct trim *
trim_new(struct event_base *base, struct http *h, struct hub *hub)
{
    struct timeval period = { TRIM_PERIOD_MS / 1000, (TRIM_PERIOD_MS % 1000) * 1000 };
    struct trim *t;

    if ((t = calloc(1, sizeof(*t))) == NULL)
        return NULL;
    t->http = h;
    t->hub = hub;
    if ((t->ev = event_new(base, -1, EV_PERSIST, trim_on_tick, t)) == NULL ||
        event_add(t->ev, &period) == -1)
        goto err;
    return t;
err:
    if (t->ev != NULL)
        event_free(t->ev);
    free(t);
    return NULL;
}

void
trim_free(struct trim *t)
{
    if (t == NULL)
        return;
    event_free(t->ev);
    free(t);
}
