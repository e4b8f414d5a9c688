/* wire.h -- a stream's socket after libmicrohttpd parsed its request: the
 * response head, then each shared frame as one HTTP/1.1 chunk (raw bytes
 * on HTTP/1.0), written with sendmsg straight from the frames, and how far
 * a partial write got. It is given frames and reports bytes written;
 * it knows nothing of streams, queues or libmicrohttpd. Not thread-safe:
 * its owner (the stream) serialises every call. */
#ifndef SSEGATE_WIRE_H
#define SSEGATE_WIRE_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct event;
struct sse_frame;

/* Frames one write covers at most. */
#define WIRE_FRAMES 64
/* "<hex length>\r\n" of one chunk, with room to spare. */
#define WIRE_CHUNK_PREFIX_MAX 20

struct wire {
    int fd;                 /* owned once opened; -1 before */
    int chunked;            /* frames go out as HTTP chunks */
    int finished;           /* the body's end was written */
    char *head;             /* owned: the response head, until all written */
    size_t head_len;
    size_t off;             /* bytes of the head, or else of the first
                             * frame's chunk, already written */
    struct event *wake;     /* borrowed: the writer loop's event */
};

/* One write, described for sendmsg(2) so that someone else may issue it
 * (sender.c batches a fan-out's writes into one system call). Its iovecs
 * point into the frames and the head, which must stay untouched until
 * wire_apply. Never copy one: mh points into it. */
struct wire_write {
    void *owner;                /* who prepared it (stream.c) */
    int fd;
    struct msghdr mh;
    struct iovec iov[1 + 3 * WIRE_FRAMES];
    struct sse_frame *frame[WIRE_FRAMES];   /* borrowed, oldest first */
    size_t frames;              /* frames it covers */
    char prefix[WIRE_FRAMES][WIRE_CHUNK_PREFIX_MAX];
    size_t plen[WIRE_FRAMES];
    size_t total;               /* bytes it writes */
    ssize_t res;                /* once issued: bytes written, or -errno */
};

/* An unopened wire (fd -1). */
void
wire_init(struct wire *w);

/* Takes fd (non-blocking) over and copies head, written before any frame.
 * wake (borrowed, may be NULL) is what wire_wake activates. Returns 0, or
 * -1 when out of memory (fd is not taken then). */
int
wire_open(struct wire *w, int fd, int chunked, const char *head, size_t head_len,
          struct event *wake);

/* 1 once opened and until closed. */
int
wire_is_open(const struct wire *w);

/* 1 while something of the head is still to be written. */
int
wire_head_pending(const struct wire *w);

/* Describes in ww the next write: the rest of the head, then the frames
 * ww->frame[0..ww->frames), the first from w->off on. */
void
wire_prepare(const struct wire *w, struct wire_write *ww);

/* Issues ww with sendmsg now (never blocks, never raises SIGPIPE) and
 * stores the outcome in ww->res. */
void
wire_issue(struct wire_write *ww);

/* n bytes of ww went out: returns how many of its frames are now wholly
 * written (their chunks included), keeping the offset into the next. */
size_t
wire_apply(struct wire *w, const struct wire_write *ww, size_t n);

/* Ends the body, best effort and once: the chunked terminator, then FIN. */
void
wire_finish(struct wire *w);

/* Asks the writer loop to take over (the socket is full, failed, or the
 * stream ends). Any thread; libevent coalesces. */
void
wire_wake(const struct wire *w);

/* Closes the socket and frees the head. Safe on an unopened wire. */
void
wire_close(struct wire *w);

#endif
