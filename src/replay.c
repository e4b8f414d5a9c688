/* replay.c -- history into streams, a page at a time, and the replay
 * reader. Owns the reader's pipeline (one pipelined Redis connection,
 * driven by the main loop: evpipe.h), its jobs (one per stream
 * it reads for, each holding a reference to its stream) and the reads in
 * flight. The frames store.c builds for a page are borrowed by
 * stream_replay_page (which takes its own references) and dropped here.
 *
 * Why a reader of its own, and why pages: a stream resuming from an old
 * id used to read its whole history in one script reply (up to 10,063
 * events for the firehose, held whole in Redis, hiredis and frames), a
 * resume storm sent thousands of such reads at once until the oldest
 * passed REDIS_TIMEOUT_MS and every read failed with 503, and recovery
 * after a lost subscription read each stream's history with a blocking
 * round trip on the main thread. Here a page holds at most
 * replay_page_bytes, a stream's next page is read only once its queue
 * has room for it, at most REPLAY_READS_MAX reads are in flight (each
 * with its own deadline, counted from when it was sent), streams at the
 * same place share one read, and a read that fails is read again once
 * Redis answers: the streams wait with their 200 and their hello
 * already sent. Live events keep flowing meanwhile: the main loop serves
 * the subscription between replies. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "clock.h"
#include "config.h"
#include "evpipe.h"
#include "hub.h"
#include "log.h"
#include "pipeline.h"
#include "rconn.h"
#include "replay.h"
#include "sse.h"
#include "store.h"
#include "stream.h"

/* Reads in flight at once. Each costs Redis a millisecond or two at most
 * (a page), so 16 keep it busy without a write waiting long behind them;
 * fewer left it idle between round trips: after a lost subscription, 4
 * caught 10,000 streams up in 232 ms, 16 in 123 ms (bench/run
 * --scenarios recovery). */
#define REPLAY_READS_MAX 16
/* How often streams waiting for room in their queue are looked at. */
#define REPLAY_ROOM_POLL_MS 10

/* One stream the reader reads for. */
struct replay_job {
    TAILQ_ENTRY(replay_job) link;   /* in inbox, ready, parked or a read */
    struct stream *s;               /* a reference */
    struct event_id after;          /* the next page starts after it */
    int has_after;                  /* 0: start at the deployment's last id */
    /* after is where the stream opened, not an id its client had: what
     * history trimmed before it is nothing the client missed (no gap). */
    int no_gap;
    unsigned gen;                   /* stream_replay_gen at the send */
};
TAILQ_HEAD(replay_jobs, replay_job);

/* One page in flight, for every job at the same place of the same
 * history. */
struct replay_read {
    int busy;
    struct replay *rp;
    struct pipeline_req q;
    struct store_cmd cmd;
    char user_id[STREAM_USER_ID_MAX + 1];
    struct event_id after;
    int has_after;
    int topics;                     /* read for a stream on topics: not shared */
    int no_gap;                     /* its job's no_gap: a trim is no gap */
    struct replay_jobs jobs;
};

struct replay {
    struct event_base *base;
    const struct config *cfg;
    struct evpipe *ep;              /* the reader's connection */
    struct pipeline *pipe;          /* evpipe_pipeline(ep) */
    size_t page_bytes;
    struct event *inbox_ev;         /* activated by replay_add */
    pthread_mutex_t inbox_mu;
    struct replay_jobs inbox;       /* added by any thread, under inbox_mu */
    struct replay_jobs ready;       /* waiting for a read */
    struct replay_jobs parked;      /* waiting for room in their queue */
    struct replay_jobs waiting;     /* waiting for their topics' subscription */
    int (*ready_fn)(void *, struct stream *);
    void *ready_arg;
    struct replay_read reads[REPLAY_READS_MAX];
    struct rconn_backoff backoff;   /* after a read failed */
    int64_t retry_ms;               /* no read before (monotonic), 0: none */
};

static void replay_pump(void *arg);

/* ------------------------------------------------------------ one page */

size_t
replay_page_bytes(const struct config *cfg)
{
    size_t half = (size_t)cfg->stream_queue_kib * 1024 / 2;

    return half < (size_t)REPLAY_PAGE_MAX_KIB * 1024 ? half
                                                     : (size_t)REPLAY_PAGE_MAX_KIB * 1024;
}

size_t
replay_open_page_bytes(const struct config *cfg)
{
    size_t page = replay_page_bytes(cfg);

    return page < (size_t)REPLAY_OPEN_PAGE_KIB * 1024 ? page
                                                      : (size_t)REPLAY_OPEN_PAGE_KIB * 1024;
}

/* The "gap" event has no id: the client keeps its Last-Event-ID, and the
 * data says from where events may be missing so it can reload over REST.
 * id is the client's own (already an event id, or printable ASCII). */
static struct sse_frame *
replay_gap_frame(const char *id, const char *why)
{
    char data[256];
    int n = snprintf(data, sizeof(data),
                     "{\"type\":\"gap\",\"lastEventId\":\"%s\",\"message\":\"%s; "
                     "reload state over REST\"}", id, why);

    if (n < 0 || (size_t)n >= sizeof(data))
        return NULL;
    return sse_frame_new_event(NULL, "gap", data, (size_t)n);
}

/* A Last-Event-ID that is not one of ours (an id from an earlier system,
 * a trailing space), shown safely (eventid_show_foreign). */
struct sse_frame *
replay_foreign_gap(const char *raw_id)
{
    char id[EVENTID_FOREIGN_MAX + 1];

    eventid_show_foreign(raw_id, id, sizeof(id));
    return replay_gap_frame(id, "this id is not an event id of this service, "
                                "so events before this stream may be missing");
}

enum stream_replay
replay_apply(struct stream *s, const struct event_id *after,
             struct store_replay *r, unsigned gen, struct event_id *next)
{
    struct sse_frame *gap = NULL;
    enum stream_replay rc;
    char id[EVENTID_STR_MAX];
    const char *why = NULL;

    memset(next, 0, sizeof(*next));
    /* An id past the deployment's newest was never handed out (taken from
     * a message someone else published with an id, by a gateway of a
     * version that trusted ids on REDIS_CHANNEL; or Redis lost its data):
     * said like a trimmed one, so the client reloads rather than trusting
     * nothing is missing. */
    if (after != NULL && r->has_start && eventid_cmp(after, &r->start) > 0)
        why = "this id is past every event of this service";
    else if (after != NULL && r->gap)
        why = "events after this id were trimmed from history";
    if (why != NULL) {
        eventid_format(after, id, sizeof(id));
        if ((gap = replay_gap_frame(id, why)) == NULL) {
            store_replay_clear(r);
            stream_end(s, STREAM_END_OUT_OF_MEMORY);
            return STREAM_REPLAY_OVER;
        }
    }
    rc = stream_replay_page(s, gap, r->frames, r->n, r->has_start ? &r->start : NULL,
                            r->more, gen, next);
    sse_frame_unref(gap);
    store_replay_clear(r);
    return rc;
}

/* ---------------------------------------------------------------- jobs */

static void
replay_job_free(struct replay_job *j)
{
    stream_unref(j->s);
    free(j);
}

static struct replay_job *
replay_job_new(struct stream *s, const struct event_id *after)
{
    struct replay_job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return NULL;
    j->s = stream_ref(s);
    if (after != NULL) {
        j->after = *after;
        j->has_after = 1;
    }
    return j;
}

static int
replay_add_job(struct replay *rp, struct stream *s, const struct event_id *after, int no_gap)
{
    struct replay_job *j = replay_job_new(s, after);

    if (j == NULL) {
        stream_end(s, STREAM_END_OUT_OF_MEMORY);
        return -1;
    }
    j->no_gap = no_gap;
    pthread_mutex_lock(&rp->inbox_mu);
    TAILQ_INSERT_TAIL(&rp->inbox, j, link);
    pthread_mutex_unlock(&rp->inbox_mu);
    event_active(rp->inbox_ev, EV_READ, 0);
    return 0;
}

int
replay_add(struct replay *rp, struct stream *s, const struct event_id *after)
{
    return replay_add_job(rp, s, after, 0);
}

int
replay_add_opened(struct replay *rp, struct stream *s, const struct event_id *after)
{
    return replay_add_job(rp, s, after, 1);
}

void
replay_recover(struct replay *rp, struct hub *hub)
{
    size_t n, started = 0;
    struct stream **v = hub_snapshot(hub, &n);
    struct event_id after;
    struct replay_job *j;

    if (v == NULL) {
        if (n == (size_t)-1) {
            /* Each client resumes from its last id; new streams are
             * still welcome. */
            log_error("out of memory listing streams; ending them all");
            hub_end_all(hub, STREAM_END_OUT_OF_MEMORY);
        }
        return;
    }
    /* Redis answers again: reads waiting out a back-off go now. */
    rp->retry_ms = 0;
    rconn_backoff_reset(&rp->backoff);
    for (size_t i = 0; i < n; i++) {
        /* A stream already replaying reads on past what it missed. */
        if (stream_begin_replay(v[i], &after)) {
            if ((j = replay_job_new(v[i], &after)) == NULL)
                stream_end(v[i], STREAM_END_OUT_OF_MEMORY);
            else {
                TAILQ_INSERT_TAIL(&rp->ready, j, link);
                started++;
            }
        }
        stream_unref(v[i]);
    }
    free(v);
    log_info("redis: catching up %zu of %zu open streams from history", started, n);
    replay_pump(rp);
}

/* ------------------------------------------------------------- reading */

/* A read failed (Redis down, slow, loading, busy): its jobs wait at the
 * front, in order, and nothing is read until the back-off has passed. */
static void
replay_retry_later(struct replay *rp, struct replay_read *rd)
{
    struct replay_job *j;

    while ((j = TAILQ_LAST(&rd->jobs, replay_jobs)) != NULL) {
        TAILQ_REMOVE(&rd->jobs, j, link);
        TAILQ_INSERT_HEAD(&rp->ready, j, link);
    }
    if (rp->retry_ms == 0)
        rp->retry_ms = clock_mono_ms() + rconn_backoff_fail(&rp->backoff);
}

/* One page answered: each job sharing it queues its frames (each stream
 * takes its own references to the same frames). */
static void
replay_on_page(void *arg, const struct redisReply *reply)
{
    struct replay_read *rd = arg;
    struct replay *rp = rd->rp;
    struct store_replay page;
    struct sse_frame *gap = NULL;
    struct replay_job *j;
    enum store_result rc;
    struct event_id next;
    char id[EVENTID_STR_MAX];

    rc = store_stream_result(reply, &rd->cmd, &page);
    store_command_clear(&rd->cmd);
    rd->busy = 0;
    if (rc == STORE_UNAVAILABLE || rc == STORE_ERROR) {
        replay_retry_later(rp, rd);
        return;                         /* the next pump reads again */
    }
    rconn_backoff_reset(&rp->backoff);
    rp->retry_ms = 0;
    if (rd->no_gap)
        page.gap = 0;
    if (rc == STORE_OK && page.gap && rd->has_after) {
        eventid_format(&rd->after, id, sizeof(id));
        gap = replay_gap_frame(id, "events after this id were trimmed from history");
    }
    while ((j = TAILQ_FIRST(&rd->jobs)) != NULL) {
        TAILQ_REMOVE(&rd->jobs, j, link);
        if (rc == STORE_NOT_FOUND) {
            /* Opened while Redis was away, for an account that does not
             * exist: the client's next open gets its 404. */
            stream_end(j->s, STREAM_END_OPEN_FAILED);
            replay_job_free(j);
            continue;
        }
        if (page.gap && rd->has_after && gap == NULL) {
            stream_end(j->s, STREAM_END_OUT_OF_MEMORY);
            replay_job_free(j);
            continue;
        }
        switch (stream_replay_page(j->s, gap, page.frames, page.n,
                                   page.has_start ? &page.start : NULL,
                                   page.more, j->gen, &next)) {
        case STREAM_REPLAY_MORE:
            j->after = next;
            j->has_after = 1;
            j->no_gap = 0;          /* a real place in history from now on */
            TAILQ_INSERT_TAIL(&rp->ready, j, link);
            break;
        case STREAM_REPLAY_DONE:
        case STREAM_REPLAY_OVER:
            replay_job_free(j);
            break;
        }
    }
    sse_frame_unref(gap);
    store_replay_clear(&page);
}

/* The read in flight that j can share (same history, same place), or
 * else a free one, or NULL when REPLAY_READS_MAX are in flight. */
static struct replay_read *
replay_read_for(struct replay *rp, const struct replay_job *j, int *shared)
{
    struct replay_read *free_rd = NULL;
    const char *uid = stream_user_id(j->s);

    *shared = 0;
    for (int i = 0; i < REPLAY_READS_MAX; i++) {
        struct replay_read *rd = &rp->reads[i];

        /* A stream on topics reads its own sources: never shared. */
        if (!rd->busy) {
            if (free_rd == NULL)
                free_rd = rd;
        } else if (stream_topic_count(j->s) == 0 && !rd->topics && !j->no_gap &&
                   !rd->no_gap &&
                   rd->has_after == j->has_after && strcmp(rd->user_id, uid) == 0 &&
                   (!j->has_after || eventid_cmp(&rd->after, &j->after) == 0)) {
            *shared = 1;
            return rd;
        }
    }
    return free_rd;
}

/* Sends the page j needs, or joins a read of the same page in flight.
 * Returns 0, or -1 with nothing sent (no read free, or Redis known to be
 * down: the caller keeps j). */
static int
replay_dispatch(struct replay *rp, struct replay_job *j)
{
    int shared;
    struct replay_read *rd = replay_read_for(rp, j, &shared);
    const char *uid = stream_user_id(j->s);

    if (rd == NULL)
        return -1;
    j->gen = stream_replay_gen(j->s);
    if (!shared) {
        snprintf(rd->user_id, sizeof(rd->user_id), "%s", uid);
        rd->after = j->after;
        rd->has_after = j->has_after;
        rd->topics = stream_topic_count(j->s) > 0;
        rd->no_gap = j->no_gap;
        if (store_read_command(&rd->cmd, uid[0] ? uid : NULL, stream_topics(j->s),
                               stream_topic_count(j->s), j->has_after ? &j->after : NULL,
                               rp->page_bytes) == -1 ||
            pipeline_send(rp->pipe, &rd->q, &rd->cmd, replay_on_page, rd) == -1) {
            store_command_clear(&rd->cmd);
            if (rp->retry_ms == 0)
                rp->retry_ms = clock_mono_ms() + rconn_backoff_fail(&rp->backoff);
            return -1;
        }
        rd->busy = 1;
        TAILQ_INIT(&rd->jobs);
    }
    TAILQ_INSERT_TAIL(&rd->jobs, j, link);
    return 0;
}

/* ---------------------------------------------------------------- loop */

/* Moves what other threads added to the ready list. */
static void
replay_take_inbox(struct replay *rp)
{
    struct replay_job *j;

    pthread_mutex_lock(&rp->inbox_mu);
    while ((j = TAILQ_FIRST(&rp->inbox)) != NULL) {
        TAILQ_REMOVE(&rp->inbox, j, link);
        TAILQ_INSERT_TAIL(&rp->ready, j, link);
    }
    pthread_mutex_unlock(&rp->inbox_mu);
}

void
replay_set_ready(struct replay *rp, int (*fn)(void *arg, struct stream *s), void *arg)
{
    rp->ready_fn = fn;
    rp->ready_arg = arg;
}

void
replay_kick(struct replay *rp)
{
    event_active(rp->inbox_ev, EV_READ, 0);
}

/* Whether j's history may be read now: a stream on topics only once
 * they are subscribed (a read before would miss what comes live between
 * the read and the subscription). */
static int
replay_job_ready(struct replay *rp, const struct replay_job *j)
{
    return stream_topic_count(j->s) == 0 || rp->ready_fn == NULL ||
           rp->ready_fn(rp->ready_arg, j->s);
}

/* Waiting jobs whose topics are subscribed now go back to the ready
 * list (the subscriber kicks the reader as each topic is confirmed). */
static void
replay_unwait(struct replay *rp)
{
    struct replay_job *j, *nj;

    for (j = TAILQ_FIRST(&rp->waiting); j != NULL; j = nj) {
        nj = TAILQ_NEXT(j, link);
        if (stream_replay_room(j->s, 0) < 0) {
            TAILQ_REMOVE(&rp->waiting, j, link);
            replay_job_free(j);
        } else if (replay_job_ready(rp, j)) {
            TAILQ_REMOVE(&rp->waiting, j, link);
            TAILQ_INSERT_TAIL(&rp->ready, j, link);
        }
    }
}

/* Parked jobs whose stream has room now go back to the ready list. */
static void
replay_unpark(struct replay *rp)
{
    struct replay_job *j, *nj;

    for (j = TAILQ_FIRST(&rp->parked); j != NULL; j = nj) {
        nj = TAILQ_NEXT(j, link);
        switch (stream_replay_room(j->s, rp->page_bytes)) {
        case 0:
            break;
        case 1:
            TAILQ_REMOVE(&rp->parked, j, link);
            TAILQ_INSERT_TAIL(&rp->ready, j, link);
            break;
        default:
            TAILQ_REMOVE(&rp->parked, j, link);
            replay_job_free(j);
            break;
        }
    }
}

/* When the pump must run again though Redis says nothing: the next look
 * at parked streams, or the retry (-1: neither). */
static int
replay_wake_ms(const struct replay *rp)
{
    int ms = -1;
    int64_t now = clock_mono_ms();

    if (!TAILQ_EMPTY(&rp->parked))
        ms = REPLAY_ROOM_POLL_MS;
    if (rp->retry_ms != 0 && !TAILQ_EMPTY(&rp->ready)) {
        int left = rp->retry_ms > now ? (int)(rp->retry_ms - now) : 0;

        if (ms < 0 || left < ms)
            ms = left;
    }
    return ms;
}

/* Reads what can be read now, then re-arms. */
static void
replay_pump(void *arg)
{
    struct replay *rp = arg;
    struct replay_job *j;

    replay_take_inbox(rp);
    replay_unwait(rp);
    replay_unpark(rp);
    if (rp->retry_ms != 0 && clock_mono_ms() >= rp->retry_ms)
        rp->retry_ms = 0;
    while (rp->retry_ms == 0 && (j = TAILQ_FIRST(&rp->ready)) != NULL) {
        int room = stream_replay_room(j->s, rp->page_bytes);

        TAILQ_REMOVE(&rp->ready, j, link);
        if (room < 0) {
            replay_job_free(j);
            continue;
        }
        if (room == 0) {
            TAILQ_INSERT_TAIL(&rp->parked, j, link);
            continue;
        }
        if (!replay_job_ready(rp, j)) {
            TAILQ_INSERT_TAIL(&rp->waiting, j, link);
            continue;
        }
        if (replay_dispatch(rp, j) == -1) {
            TAILQ_INSERT_HEAD(&rp->ready, j, link);
            break;
        }
    }
    evpipe_arm(rp->ep, replay_wake_ms(rp));
}

static void
replay_on_inbox(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replay_pump(arg);
}

/* ----------------------------------------------------------- lifecycle */

struct replay *
replay_new(struct event_base *base, const struct config *cfg)
{
    struct replay *rp = calloc(1, sizeof(*rp));

    if (rp == NULL)
        return NULL;
    rp->base = base;
    rp->cfg = cfg;
    rp->page_bytes = replay_page_bytes(cfg);
    TAILQ_INIT(&rp->inbox);
    TAILQ_INIT(&rp->ready);
    TAILQ_INIT(&rp->parked);
    TAILQ_INIT(&rp->waiting);
    rconn_backoff_init(&rp->backoff);
    for (int i = 0; i < REPLAY_READS_MAX; i++) {
        rp->reads[i].rp = rp;
        TAILQ_INIT(&rp->reads[i].jobs);
    }
    if (pthread_mutex_init(&rp->inbox_mu, NULL) != 0) {
        free(rp);
        return NULL;
    }
    if ((rp->ep = evpipe_new(base, cfg, replay_pump, rp)) == NULL ||
        (rp->inbox_ev = event_new(base, -1, 0, replay_on_inbox, rp)) == NULL) {
        replay_free(rp);
        return NULL;
    }
    rp->pipe = evpipe_pipeline(rp->ep);
    return rp;
}

static void
replay_free_jobs(struct replay_jobs *l)
{
    struct replay_job *j;

    while ((j = TAILQ_FIRST(l)) != NULL) {
        TAILQ_REMOVE(l, j, link);
        replay_job_free(j);
    }
}

void
replay_free(struct replay *rp)
{
    if (rp == NULL)
        return;
    /* Fails the reads in flight: their jobs go back to the ready list. */
    evpipe_free(rp->ep);
    for (int i = 0; i < REPLAY_READS_MAX; i++)
        replay_free_jobs(&rp->reads[i].jobs);
    replay_free_jobs(&rp->inbox);
    replay_free_jobs(&rp->ready);
    replay_free_jobs(&rp->parked);
    replay_free_jobs(&rp->waiting);
    if (rp->inbox_ev != NULL)
        event_free(rp->inbox_ev);
    pthread_mutex_destroy(&rp->inbox_mu);
    free(rp);
}
