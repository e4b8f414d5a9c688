/* metrics.h -- the process's counters and histograms for Prometheus, kept
 * per thread so that counting costs no lock and no cache line shared
 * between threads, and their rendering in the text format (0.0.4). Knows
 * nothing of HTTP, streams or Redis: callers say what happened, and the
 * scrape passes in the values other modules keep (struct metrics_view). */
#ifndef SSEGATE_METRICS_H
#define SSEGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Counters each thread adds to its own block. */
enum metrics_counter {
    METRICS_EVENTS_RECEIVED,    /* channel messages taken from Redis */
    METRICS_DELIVERIES,         /* events wholly written to a stream */
    METRICS_SENT_BYTES,         /* bytes written to stream sockets */
    METRICS_REPLAYED_EVENTS,    /* events queued from history */
    METRICS_GAPS,               /* gap events queued */
    METRICS_RATE_LIMITED,       /* requests answered 429 rate_limited */
    METRICS_SUBSCRIPTIONS,      /* times the subscription came up */
    METRICS_COUNTERS
};

/* Adds n to counter c of the calling thread. No lock; no system call. */
void
metrics_add(enum metrics_counter c, uint64_t n);

/* One stream write: bytes went out and events were wholly written. */
void
metrics_note_write(uint64_t bytes, uint64_t events);

/* One event written delay_us after its envelope's ts. */
void
metrics_observe_delivery_delay(int64_t delay_us);

/* The route labels of ssegate_http_requests_total: names[i] for route i
 * (copied pointers; the strings must outlive the process's metrics), and
 * "unmatched" for route n. Call once, before any request is observed.
 * Returns 0, or -1 when out of memory. */
int
metrics_set_routes(const char *const *names, size_t n);

/* One request answered with status after duration_us; route as given to
 * metrics_set_routes (n: no route). */
void
metrics_observe_request(size_t route, unsigned status, int64_t duration_us);

/* ------------------------------------------------------------ the scrape */

#define METRICS_LABELS_MAX 16

/* A labelled value another module keeps. */
struct metrics_labelled {
    const char *label;
    uint64_t value;
};

/* What the scrape reads elsewhere (the hub, the subscriber). */
struct metrics_view {
    struct metrics_labelled streams[METRICS_LABELS_MAX];    /* by kind */
    size_t nstreams;
    uint64_t streams_opened;
    struct metrics_labelled closed[METRICS_LABELS_MAX];     /* by reason */
    size_t nclosed;
    int redis_up;
    int64_t publish_backlog;
    uint64_t bodies_pending;    /* bytes, within MAX_PENDING_BODY_KIB */
};

/* Renders every metric: view, the sums of every thread's counters and
 * histograms, and the process's own figures (/proc/self). Returns a
 * malloc'd text the caller frees, with its length in *len, or NULL when
 * out of memory. */
char *
metrics_render(const struct metrics_view *view, size_t *len);

/* -------------------------------------------- the text format (pure) */

/* A growing text; failed once an allocation failed (then s is freed by
 * metrics_text_take, which returns NULL). */
struct metrics_text {
    char *s;
    size_t len, cap;
    int failed;
};

/* "# HELP name help\n# TYPE name type\n", help escaped. */
void
metrics_text_family(struct metrics_text *t, const char *name, const char *type,
                    const char *help);

/* "name{label="value"} v\n" (no braces when label is NULL), the value
 * escaped (\\, \", \n). */
void
metrics_text_u64(struct metrics_text *t, const char *name, const char *label,
                 const char *value, uint64_t v);
void
metrics_text_f64(struct metrics_text *t, const char *name, const char *label,
                 const char *value, double v);
/* The same with two labels. */
void
metrics_text_u64_2(struct metrics_text *t, const char *name, const char *label1,
                   const char *value1, const char *label2, const char *value2, uint64_t v);

/* A histogram's samples: name_bucket{[label="value",]le="b"} for each of
 * the nbounds bounds (seconds) and +Inf, cumulative, then name_sum and
 * name_count. counts holds nbounds + 1 per-bucket counts (not
 * cumulative; the last is past every bound). */
void
metrics_text_histogram(struct metrics_text *t, const char *name, const char *label,
                       const char *value, const double *bounds, const uint64_t *counts,
                       size_t nbounds, double sum);

/* The text, NUL-terminated (the caller frees it), or NULL if any
 * allocation failed. */
char *
metrics_text_take(struct metrics_text *t, size_t *len);

#endif
