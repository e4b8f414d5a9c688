/* stream.h -- one SSE stream: its bounded queue of shared frames, its
 * replay state, its last queued id, and what goes to its socket next.
 * Thread-safe: every field is guarded by the stream's own mutex. The
 * socket itself (framing, writes) is wire.c's; a stream decides what to
 * write and hands the write to the wire (or describes it for a batch,
 * see stream_push_prepare), and nothing below it calls back. */
#ifndef SSEGATE_STREAM_H
#define SSEGATE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "eventid.h"

struct clients_slot;
struct event;
struct hub;
struct sse_frame;
struct stream;
struct wire_write;

/* Why a stream ended; hub_drop_stream counts each. */
enum stream_end {
    STREAM_END_CLIENT,          /* the client closed or its socket failed */
    STREAM_END_SLOW_CONSUMER,   /* its queue passed STREAM_QUEUE_KIB, or its
                                 * socket took nothing for too long */
    STREAM_END_SHUTDOWN,        /* this instance is stopping */
    STREAM_END_OPEN_FAILED,     /* its opening read failed (404, 503), or
                                 * found no account once Redis was back */
    STREAM_END_OUT_OF_MEMORY,
    STREAM_END_TOKEN_EXPIRED,   /* its token's exp came (secure mode) */
    STREAM_END_COUNT
};

/* "client", "slow_consumer", ...: the name in logs (and metrics). */
const char *
stream_end_name(enum stream_end why);

/* Most bytes of a user id a stream keeps: what a channel message may
 * name (the API's ids are 1 to 18 digits). */
#define STREAM_USER_ID_MAX ENVELOPE_USER_MAX

/* Creates a stream for user_id (NULL or "" for the firehose) whose queue
 * may hold at most max_bytes of unsent frames, with hello (if not NULL;
 * borrowed) queued first. The caller owns the one reference. The stream
 * starts replaying (see stream_replay_page): live frames pushed before
 * its history is read are held back. */
struct stream *
stream_new(const char *user_id, size_t max_bytes, struct sse_frame *hello);

/* Gives s the n topics (borrowed, copied) whose events it carries
 * besides its user's, and who it counts as in their presence: member (a
 * user id, a token's sub; NULL or "" for nobody; at most
 * STREAM_MEMBER_MAX bytes, longer counts as nobody). Once, before it is
 * indexed (hub_add); immutable after. Returns 0, or -1 when out of memory
 * (the stream is then to be dropped; its free releases what was
 * copied). */
#define STREAM_MEMBER_MAX 64
int
stream_set_topics(struct stream *s, const char *const *topics, size_t n,
                  const char *member);

/* Reference counting. The stream's owner (the request opening it, then
 * its writer loop) holds one; a write in flight holds one, which keeps
 * the socket open until it completes; recovery holds temporary ones. The
 * last unref closes the socket. */
struct stream *
stream_ref(struct stream *s);
void
stream_unref(struct stream *s);

/* The stream takes over *slot (its client's connection count,
 * MAX_CONNECTIONS_PER_CLIENT) and gives it back when its socket closes,
 * with its last reference: a stream counts as its client's connection
 * after libmicrohttpd has forgotten it. *slot is left empty. Call before
 * the hand-off, from the stream's owner. */
void
stream_hold_client(struct stream *s, struct clients_slot *slot);

/* The hand-off: the stream writes to fd (taken over, non-blocking) from
 * now on, head first; chunked: frames go out as HTTP/1.1 chunks. wake
 * (borrowed) is activated when the writer loop is needed: the socket is
 * full or failed, or the stream has ended. Returns 0, or -1 when out of
 * memory (fd not taken). Call once, on the writer loop's thread. */
int
stream_attach(struct stream *s, int fd, int chunked, const char *head,
              size_t head_len, struct event *wake);

/* Producer side, any thread. Queues a reference to each of the n frames
 * unless the stream is ending or closed, or a frame carries an id not
 * after the last one this stream queued (a duplicate from replay or a
 * redelivery). While a replay runs, live frames wait and are released,
 * in order, when it finishes. A stream whose queue would exceed its bound
 * stops taking frames, sends what it holds and ends (slow consumer); its
 * client resumes with Last-Event-ID. What is queued goes to the socket at
 * once, in one write, if the socket takes it; else the writer loop sends
 * it when there is room. */
void
stream_push_many(struct stream *s, struct sse_frame *const *f, size_t n);

/* Like stream_push_many, but where it would write now it describes the
 * write in *w instead, takes a reference for it (which keeps the socket
 * open) and returns 1: the caller issues it (wire_issue, or a batch of
 * them through sender.c) and then calls stream_push_complete(w). Until
 * then producers only queue and the writer loop does not write. Returns
 * 0 when there is nothing to write now. */
int
stream_push_prepare(struct stream *s, struct sse_frame *const *f, size_t n,
                    struct wire_write *w);

/* Ends a write prepared by stream_push_prepare, with its outcome in
 * w->res: drops what went out, writes what came meanwhile, hands the
 * stream to its writer loop if the socket was full or failed, and drops
 * the write's reference. */
void
stream_push_complete(struct wire_write *w);

/* Heartbeats. A stream is due one when it has carried nothing (no byte
 * taken by its socket, nothing waiting to be sent) for period_ms; one
 * that carries events never gets one. Within this many ms of due counts
 * as due, so a timer that fires a tick early does not wait a whole
 * period. */
#define STREAM_HEARTBEAT_SLACK_MS 20

/* The rule, pure: how many ms from now_ms until a stream last active at
 * active_ms is due a heartbeat (0: now). busy: it has something waiting
 * to be sent (then no heartbeat; asks again in a period). */
unsigned
stream_heartbeat_wait(int64_t now_ms, int64_t active_ms, unsigned period_ms, int busy);

/* Queues f (the heartbeat, borrowed) if s is due one at now_ms
 * (clock_coarse_ms()) and sends it like any frame. Returns the ms until
 * the stream should be asked again, or 0 once it is ending or closed. */
unsigned
stream_heartbeat(struct stream *s, struct sse_frame *f, int64_t now_ms, unsigned period_ms);

/* Token expiry (secure mode). The stream ends at at_ms (on
 * clock_coarse_ms()'s clock): set once, before the hand-off. */
void
stream_set_expiry(struct stream *s, int64_t at_ms);

/* At now_ms (clock_coarse_ms()): if s's expiry has come, queues f (the
 * token-expired event, borrowed) past the queue's bound, as a last
 * frame, ends the stream (STREAM_END_TOKEN_EXPIRED: what is queued is
 * sent, then the body ends cleanly) and returns 0; if it is already
 * ending or closed, returns 0. Otherwise returns the ms until the
 * expiry, at most cap_ms (cap_ms when there is none). */
unsigned
stream_expire(struct stream *s, struct sse_frame *f, int64_t now_ms, unsigned cap_ms);

/* Pacing, pure: at most STREAM_BEATS_PER_SLOT heartbeat checks per
 * STREAM_BEAT_SLOT_MS per loop. Streams opened together (a deploy, a
 * reconnect storm) are due together; the excess waits for the following
 * slots instead of going out in one burst that takes the cores from
 * deliveries. 256 per 10 ms is 25,600/s per loop, where 100,000 idle
 * streams at HEARTBEAT_SECS=15 need 6,700/s in all; 4,000 streams due at
 * once are spread over 160 ms. */
#define STREAM_BEAT_SLOT_MS 10
#define STREAM_BEATS_PER_SLOT 256

struct stream_beat_pace {
    int64_t slot;               /* the current slot: now_ms / STREAM_BEAT_SLOT_MS */
    unsigned count;             /* checks served or put off in it */
};

/* Counts one heartbeat check at now_ms against pace (zeroed to start).
 * Returns 0 to go ahead, or the ms to put it off: into the first slot
 * with room, given how many are already put off. */
unsigned
stream_heartbeat_pace(struct stream_beat_pace *pace, int64_t now_ms);

/* How long (ms, at now_ms) the stream has waited for its socket: since
 * the socket last took a byte or, if later, since the stream began to
 * have something to send. Meaningful while a flush reports
 * STREAM_IO_BLOCKED. */
int64_t
stream_stalled_ms(struct stream *s, int64_t now_ms);

/* Queues f (borrowed) at once, ahead of any replay: the gap event of a
 * stream whose Last-Event-ID is not one of ours. */
void
stream_push_first(struct stream *s, struct sse_frame *f);

/* Replay: history read into the queue, a page at a time (replay.c),
 * while live frames are held back; then the held frames still newer
 * than the last id queued. A new stream starts replaying.
 *
 * stream_begin_replay starts one after a lost subscription and returns
 * 1, or returns 0 when one is already under way (or the stream ends):
 * it then only marks the page in flight as possibly short of events.
 * Either way *after is where the next page starts: after the last id
 * queued (0-0 if none). */
int
stream_begin_replay(struct stream *s, struct event_id *after);

/* What to give stream_replay_page for a page sent now. */
unsigned
stream_replay_gen(struct stream *s);

/* Whether a page of page_bytes fits the queue now: 1 yes, 0 not yet (the
 * client has not read enough), -1 never (the stream is not replaying,
 * or ends). */
int
stream_replay_room(struct stream *s, size_t page_bytes);

enum stream_replay {
    STREAM_REPLAY_DONE,     /* caught up: live from now on */
    STREAM_REPLAY_MORE,     /* read the page after *next */
    STREAM_REPLAY_OVER      /* the stream ends: stop reading */
};

/* Queues one page: gap (if not NULL), then each of the n frames whose id
 * is after the last queued id, unbounded (the page was sized to fit).
 * more: the page stopped short of history's end; start (if not NULL):
 * the deployment's last id when it was read, the last id of a stream
 * that caught up. gen: stream_replay_gen when the page was sent; if live
 * frames may have been missed since, the page is not the last. Borrows
 * every frame. */
enum stream_replay
stream_replay_page(struct stream *s, struct sse_frame *gap,
                   struct sse_frame *const *frames, size_t n,
                   const struct event_id *start, int more, unsigned gen,
                   struct event_id *next);

/* Ends the stream: queued frames are still sent, then the body ends
 * cleanly and the writer loop tears the stream down. The first reason
 * given is kept. */
void
stream_end(struct stream *s, enum stream_end why);
/* The same, with last (borrowed; NULL: none) queued first, after all
 * the stream holds: its last words (a shutdown's retry). */
void
stream_end_with(struct stream *s, enum stream_end why, struct sse_frame *last);

/* The reason given to stream_end (STREAM_END_CLIENT if none). */
enum stream_end
stream_end_reason(struct stream *s);

/* The connection is gone: no more frames, no more writes or wakes once
 * this returns. Only hub_drop_stream calls it. */
void
stream_close(struct stream *s);

enum stream_io {
    STREAM_IO_IDLE,         /* everything queued was written */
    STREAM_IO_BLOCKED,      /* the socket is full: wait until writable */
    STREAM_IO_END,          /* ended, flushed and its body finished */
    STREAM_IO_ERROR         /* the peer is gone */
};

/* The writer loop's side: writes the head and the queued frames. After
 * STREAM_IO_IDLE producers write directly again until the socket fills. */
enum stream_io
stream_flush(struct stream *s);

/* What a stream carried, for its last log line: its age at now_ms
 * (clock_coarse_ms()), the events its socket took whole and the bytes. */
struct stream_stats {
    int64_t age_ms;
    uint64_t events;
    uint64_t bytes;
};
void
stream_stats(struct stream *s, int64_t now_ms, struct stream_stats *out);

/* For logs and the hub. The returned pointer lives as long as s. */
const char *
stream_user_id(const struct stream *s);
/* Who it is in its topics' presence: "" for nobody. */
const char *
stream_member(const struct stream *s);
uint64_t
stream_serial(const struct stream *s);

/* The hub's bookkeeping; only hub.c touches it, under its locks. */
struct stream_hub_link {
    size_t index;           /* this stream's slot in its bucket's array */
    void *bucket;           /* the hub's bucket holding this stream, NULL if none */
};
struct stream_hub_link *
stream_hub_link(struct stream *s);

/* Its topics (stream_set_topics), valid as long as s, and its place in
 * topic i's bucket (hub.c only). */
size_t
stream_topic_count(const struct stream *s);
const char *const *
stream_topics(const struct stream *s);
struct stream_hub_link *
stream_topic_link(struct stream *s, size_t i);

#endif
