/* pipeline.h -- one HTTP thread's pipelined Redis connection, for every
 * Redis call of an HTTP thread (writes, stream opens, account reads): the
 * request waits suspended while its command is in flight, so the thread
 * serves other requests meanwhile (/health included) and the commands of
 * concurrent requests share writes and reads. Not thread-safe: one per
 * HTTP thread, driven by that thread's poll loop (http.c), and one for
 * the replay reader, driven by the main loop (replay.c). */
#ifndef SSEGATE_PIPELINE_H
#define SSEGATE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct config;
struct pipeline;
struct redisReply;

/* Called once per pipeline_send that returned 0, on the pipeline's
 * thread, with Redis's reply (NULL: no answer, the connection failed or
 * timed out); the reply lives only during the call. With
 * REDIS_WAIT_REPLICAS, a write script's successful reply comes only once
 * that many replicas acknowledged it; else an error reply whose code is
 * RCONN_NOT_REPLICATED (rconn_is_not_replicated): written on the master,
 * not known to be on enough replicas. */
typedef void (*pipeline_done_fn)(void *arg, const struct redisReply *r);

/* One command in flight; the caller provides it (inside its request) and
 * keeps it, and the command it names, untouched until done is called. */
struct pipeline_req {
    struct pipeline_req *next;      /* sent after this one */
    int64_t deadline_ms;            /* monotonic: fail if not answered by then */
    int as_eval;                    /* sent with the script's text */
    struct store_cmd *cmd;          /* borrowed; argv[0..1] are ours */
    pipeline_done_fn done;
    void *arg;
    /* A write with REDIS_WAIT_REPLICAS: "WAIT n timeout" goes right
     * behind it, and done hears the write's reply (kept meanwhile) only
     * with WAIT's answer; pipeline.c's own. */
    unsigned wait_n;                /* replicas to wait for; 0: no WAIT */
    int wait_sent;                  /* a WAIT follows the last send */
    int wait_missing;               /* the last send's WAIT could not be queued */
    int wait_skip;                  /* WAIT replies of an earlier send to ignore */
    struct redisReply *held;        /* owned: the write's reply, until WAIT's */
};

/* Returns a pipeline for cfg's Redis (connected on first use), or NULL
 * when out of memory. */
struct pipeline *
pipeline_new(const struct config *cfg);

/* Fails every write in flight (done with STORE_UNAVAILABLE), closes the
 * connection and frees p. NULL is ignored. */
void
pipeline_free(struct pipeline *p);

/* Sends cmd (a script or a plain command, built by store.h). Returns 0:
 * done will be called later, from pipeline_handle or pipeline_free (a
 * done callback may send again); or -1: nothing was sent (Redis is known
 * to be down, or out of memory), and done will not be called. Never
 * re-sends cmd on its own but after NOSCRIPT (the script did not run). */
int
pipeline_send(struct pipeline *p, struct pipeline_req *q, struct store_cmd *cmd,
              pipeline_done_fn done, void *arg);

/* For the thread's poll(): the socket (-1: none), the events to wait
 * for, and how long the loop may sleep (-1: no deadline). */
int
pipeline_fd(const struct pipeline *p);
short
pipeline_events(const struct pipeline *p);
int
pipeline_timeout_ms(const struct pipeline *p);

/* Changes with every new connection, so an event loop that watches the
 * socket can tell a new connection that reuses a closed one's number. */
unsigned
pipeline_conn_serial(const struct pipeline *p);

/* 1 if Redis gave this connection a good reply within REDIS_TIMEOUT_MS
 * plus the PING interval (the pipeline PINGs after a second without
 * one); never waits. For /health, on the pipeline's thread. */
int
pipeline_is_up(const struct pipeline *p);

/* After poll(): handles revents on the socket (replies run their done
 * callbacks), fails commands past their deadline, and sends a PING when
 * one is due. */
void
pipeline_handle(struct pipeline *p, short revents);

/* Writes what the commands sent since the last poll left in the output
 * buffer now, so one loop pass costs one write, not one poll more. */
void
pipeline_flush(struct pipeline *p);

#endif
