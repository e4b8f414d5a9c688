/* stream.h -- one SSE connection: its bounded queue of shared frames, its
 * replay state and its last delivered id. Thread-safe: every field is
 * guarded by the stream's own mutex. */
#ifndef SSEGATE_STREAM_H
#define SSEGATE_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "eventid.h"

struct MHD_Connection;
struct hub;
struct sse_frame;
struct stream;

/* Creates a stream for user_id (NULL or "" for the firehose) whose
 * queue may hold at most max_bytes of unsent frames, with hello (if not
 * NULL; borrowed) queued first. The caller owns the one reference. The
 * stream starts in replay mode (see stream_finish_replay): live frames
 * pushed before that are held back. */
struct stream *
stream_new(const char *user_id, size_t max_bytes, struct sse_frame *hello);

/* Reference counting: the MHD response holds one reference, the hub
 * borrows (it is told on removal), recovery holds temporary ones. */
struct stream *
stream_ref(struct stream *s);
void
stream_unref(struct stream *s);

/* Sets the connection this stream writes to; called once, before the
 * response is queued, so a later push may resume it. wake(wake_arg) is
 * called, from any thread, after each resume: it must wake the thread
 * that runs conn's daemon. */
void
stream_attach(struct stream *s, struct MHD_Connection *conn,
              void (*wake)(void *), void *wake_arg);

/* Producer side, any thread. Queues a reference to f unless the stream
 * is ending or closed, or f carries an id not after the last one this
 * stream queued (a duplicate from replay or a redelivery). While a replay
 * runs, live frames wait and are released, in order, when it finishes.
 * A stream whose queue would exceed its bound stops taking frames, sends
 * what it holds and ends ("slow consumer"); its client resumes with
 * Last-Event-ID. Resumes the connection if it was parked. */
void
stream_push(struct stream *s, struct sse_frame *f);

/* stream_push of n frames in order, with one write for all of them: a
 * burst of events for one user costs each of its sockets one sendmsg. */
void
stream_push_many(struct stream *s, struct sse_frame *const *f, size_t n);

/* Like stream_push, but only when nothing is queued: a heartbeat behind
 * real data is pointless. */
void
stream_push_heartbeat(struct stream *s, struct sse_frame *f);

/* Enters replay mode (live frames are held back). Calls nest: frames
 * are released when the last replay finishes. Returns the id replay
 * should start after, in *after (0-0 if none known). */
void
stream_begin_replay(struct stream *s, struct event_id *after);

/* Ends one replay: queues gap (if not NULL), then each of the n frames
 * whose id is after the last queued id, then, if no other replay runs,
 * the held-back live frames still after that id. start, if not NULL,
 * raises the last id to at least *start (for a stream that begins "now"
 * at the deployment's current last id). Borrows every frame. */
void
stream_finish_replay(struct stream *s, struct sse_frame *gap,
                     struct sse_frame *const *frames, size_t n,
                     const struct event_id *start);

/* Ends the stream: queued frames are still sent, then the response
 * ends cleanly. reason is logged once (a string literal). */
void
stream_end(struct stream *s, const char *reason);

/* The connection is gone: no more frames, no more resumes. Called from
 * the response's free callback, after MHD stopped using the stream. */
void
stream_close(struct stream *s);

/* The MHD content reader: copies up to max queued bytes into buf and
 * returns the count; returns -1 (end of stream) once the stream ended
 * and its queue is empty; otherwise parks the connection and returns 0.
 * MHD worker thread only. */
ssize_t
stream_read(struct stream *s, char *buf, size_t max);

/* Hand-off mode (STREAM_HANDOFF=1): the stream's socket fd (borrowed:
 * the sink owns it and calls stream_close before closing it) is written
 * by producers directly while it takes data, and otherwise by a writer
 * loop (sink.c). kick(arg) is called, under the stream's lock, when the
 * writer is needed: the socket is full, failed, or the stream ends; it
 * must only schedule work (it may run on any thread). Frames go out as
 * HTTP chunks when chunked (HTTP/1.1), else raw (HTTP/1.0). */
void
stream_attach_sink(struct stream *s, int fd, int chunked,
                   void (*kick)(void *), void *arg);

/* One write of a stream's queued frames, described for sendmsg(2) so that
 * someone else may issue it (sender.c batches a fan-out's writes into one
 * system call). Its iovecs point into the stream's frames, which stay
 * queued until stream_send_done. Never copy one: mh points into it. */
#define STREAM_SEND_FRAMES 64
struct stream_send {
    struct stream *s;
    int fd;
    struct msghdr mh;
    struct iovec iov[3 * STREAM_SEND_FRAMES];
    char prefix[STREAM_SEND_FRAMES][20];    /* "<hex len>\r\n" per chunk */
    size_t plen[STREAM_SEND_FRAMES];
    size_t frames;              /* frames it covers, from the head */
    size_t total;               /* bytes it writes */
};

/* stream_push_many, except that where the frames would be written to the
 * socket now, the write is described in *w instead, the stream is marked
 * in flight and 1 is returned: the caller must then issue
 * sendmsg(w->fd, &w->mh, MSG_NOSIGNAL | MSG_DONTWAIT) and give its result
 * to stream_send_done. Until then producers only queue and the writer
 * loop does not write. Returns 0 when there is nothing to write now.
 * The caller must keep s in the hub until stream_send_done: the sink
 * removes a stream from the hub before it closes the socket, so the fd
 * cannot be closed and reused under the pending write. */
int
stream_push_prepare(struct stream *s, struct sse_frame *const *f, size_t n,
                    struct stream_send *w);

/* Ends a write prepared by stream_push_prepare: res is the byte count
 * written or -errno. Sends what was queued meanwhile; hands the stream to
 * its writer loop if the socket was full or failed. */
void
stream_send_done(struct stream_send *w, ssize_t res);

enum stream_io {
    STREAM_IO_IDLE,         /* everything queued was written */
    STREAM_IO_BLOCKED,      /* the socket is full: wait until writable */
    STREAM_IO_END,          /* ended and flushed: write the terminator, close */
    STREAM_IO_ERROR         /* the peer is gone */
};

/* The writer loop's side: writes queued frames to the attached socket
 * with sendmsg. Returns STREAM_IO_IDLE when all went out, after which
 * producers write directly again until the socket fills. */
enum stream_io
stream_flush_sink(struct stream *s);

/* For logs and the hub. The returned pointer lives as long as s. */
const char *
stream_user_id(const struct stream *s);
uint64_t
stream_serial(const struct stream *s);

/* The hub's bookkeeping; only hub.c touches it, under its locks. */
struct stream_hub_link {
    size_t index;           /* this stream's slot in its bucket's array */
    void *bucket;           /* the hub's bucket holding this stream, NULL if none */
    struct hub *hub;        /* the hub that indexed it, for the free callback */
};
struct stream_hub_link *
stream_hub_link(struct stream *s);

#endif
