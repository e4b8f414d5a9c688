/* pipeline.h -- one HTTP thread's pipelined Redis connection, for
 * POST /events: the request waits suspended while its write script is in
 * flight, so the thread serves other requests meanwhile and the scripts
 * of concurrent requests share writes and reads. Not thread-safe: one per
 * HTTP thread, driven by that thread's poll loop (http.c). */
#ifndef SSEGATE_PIPELINE_H
#define SSEGATE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct config;
struct pipeline;

/* Called once per pipeline_publish that returned 0, on the pipeline's
 * thread: rc as store_event_publish would return it; id (the event id on
 * STORE_OK) lives only during the call. */
typedef void (*pipeline_done_fn)(void *arg, enum store_result rc, const char *id);

/* One write in flight; the caller provides it (inside its request) and
 * keeps it, untouched, until done is called. */
struct pipeline_req {
    struct pipeline_req *next;      /* sent after this one */
    int64_t deadline_ms;            /* monotonic: fail if not answered by then */
    int as_eval;                    /* sent with the script's text */
    struct store_event_cmd cmd;
    pipeline_done_fn done;
    void *arg;
};

/* Returns a pipeline for cfg's Redis (connected on first use), or NULL
 * when out of memory. */
struct pipeline *
pipeline_new(const struct config *cfg);

/* Fails every write in flight (done with STORE_UNAVAILABLE), closes the
 * connection and frees p. NULL is ignored. */
void
pipeline_free(struct pipeline *p);

/* Sends the write script for an event of user_id (type borrowed until
 * done). Returns 0: done will be called later, from pipeline_handle or
 * pipeline_free; or -1: nothing was sent (Redis is known to be down, or
 * out of memory), and done will not be called. */
int
pipeline_publish(struct pipeline *p, struct pipeline_req *q,
                 const char *user_id, const char *type,
                 const char *data_json, size_t data_len,
                 pipeline_done_fn done, void *arg);

/* For the thread's poll(): the socket (-1: none), the events to wait
 * for, and how long the loop may sleep (-1: no deadline). */
int
pipeline_fd(const struct pipeline *p);
short
pipeline_events(const struct pipeline *p);
int
pipeline_timeout_ms(const struct pipeline *p);

/* After poll(): handles revents on the socket (replies run their done
 * callbacks) and fails writes past their deadline. */
void
pipeline_handle(struct pipeline *p, short revents);

/* Writes what the commands sent since the last poll left in the output
 * buffer now, so one loop pass costs one write, not one poll more. */
void
pipeline_flush(struct pipeline *p);

#endif
