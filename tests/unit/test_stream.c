/* test_stream.c -- one stream's queue as seen from its socket: the
 * response head first, replay holding and release, deduplication by id,
 * the byte bound, and the exact bytes written (HTTP chunks, or raw for
 * HTTP/1.0), also across partial writes to a full socket; when a stream
 * is due a heartbeat, and how long it has waited for a full socket. The socket is a
 * real AF_UNIX socketpair and the writer's wake-up a real libevent event;
 * nothing is mocked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "sse.h"
#include "stream.h"
#include "wire.h"

struct pair {
    int w, r;           /* the stream writes w (and closes it); the test reads r */
    int kicks;          /* how often the stream's wake-up ran */
    struct event_base *base;
    struct event *wake;
};

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ((struct pair *)arg)->kicks++;
}

/* Runs the wake-ups pending (libevent coalesces them until it runs) and
 * returns how many ran so far. */
static int
kicks(struct pair *p)
{
    event_base_loop(p->base, EVLOOP_NONBLOCK);
    return p->kicks;
}

static void
pair_events(struct pair *p)
{
    assert_non_null(p->base = event_base_new());
    assert_non_null(p->wake = event_new(p->base, -1, 0, on_wake, p));
    p->kicks = 0;
}

static void
pair_open(struct pair *p, int sndbuf)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->w = sv[0];
    p->r = sv[1];
    pair_events(p);
    if (sndbuf > 0)
        assert_int_equal(setsockopt(p->w, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
    assert_int_equal(fcntl(p->w, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(p->r, F_SETFL, O_NONBLOCK), 0);
}

/* The stream closed p->w with its last reference. */
static void
pair_close(struct pair *p)
{
    close(p->r);
    event_free(p->wake);
    event_base_free(p->base);
}

/* Everything readable now, NUL-terminated (the caller frees). */
static char *
pair_drain(struct pair *p)
{
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t n;

    assert_non_null(buf);
    while (len < cap && (n = read(p->r, buf + len, cap - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    return buf;
}

static void
assert_drained(struct pair *p, const char *want)
{
    char *got = pair_drain(p);

    assert_string_equal(got, want);
    free(got);
}

/* The wire form of SSE frames as HTTP chunks: "<hex len>\r\n" frame
 * "\r\n" each; the list ends with NULL. Static buffer. */
static const char *
chunks(const char *frame, ...)
{
    static char buf[4096];
    size_t len = 0;
    va_list ap;

    va_start(ap, frame);
    for (const char *f = frame; f != NULL; f = va_arg(ap, const char *))
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%zx\r\n%s\r\n", strlen(f), f);
    va_end(ap);
    return buf;
}

static struct sse_frame *
event(uint64_t ms, const char *data)
{
    struct event_id id = { ms, 0 };
    struct sse_frame *f = sse_frame_new_event(&id, "t", data, strlen(data));

    assert_non_null(f);
    return f;
}

/* The last page of a replay: asserts the stream caught up. */
static void
replay_last(struct stream *s, struct sse_frame *const *f, size_t n,
            const struct event_id *start)
{
    struct event_id next;

    assert_int_equal(stream_replay_page(s, NULL, f, n, start, 0, stream_replay_gen(s), &next),
                     STREAM_REPLAY_DONE);
}

/* A stream past its opening replay (no history), attached to p. */
static struct stream *
stream_ready(struct pair *p, size_t max_bytes, int chunked)
{
    struct stream *s = stream_new("7", max_bytes, NULL);

    assert_non_null(s);
    replay_last(s, NULL, 0, NULL);
    assert_int_equal(stream_attach(s, p->w, chunked, "", 0, p->wake), 0);
    return s;
}

static void
push_unref(struct stream *s, struct sse_frame *f)
{
    stream_push_many(s, &f, 1);
    sse_frame_unref(f);
}

/* Until the writer's first flush, producers only queue and kick; after
 * it, they write the socket themselves, one chunk per frame. */
static void
test_first_flush_then_direct_writes(void **state)
{
    struct pair p;
    struct stream *s;

    (void)state;
    pair_open(&p, 0);
    s = stream_ready(&p, 1 << 20, 1);
    push_unref(s, event(1, "a"));
    assert_int_equal(kicks(&p), 1);
    assert_drained(&p, "");
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_drained(&p, chunks("id: 1-0\nevent: t\ndata: a\n\n", NULL));
    push_unref(s, event(2, "bc"));
    assert_int_equal(kicks(&p), 1);
    assert_drained(&p, chunks("id: 2-0\nevent: t\ndata: bc\n\n", NULL));
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* Live frames wait while a replay runs; then the replayed frames go
 * first, and a live frame the replay already had is sent once. */
static void
test_replay_holds_and_dedups(void **state)
{
    struct pair p;
    struct stream *s = stream_new("7", 1 << 20, NULL);
    struct sse_frame *hist[2];
    struct event_id start = { 3, 0 };

    (void)state;
    pair_open(&p, 0);
    assert_non_null(s);
    assert_int_equal(stream_attach(s, p.w, 1, "", 0, p.wake), 0);
    push_unref(s, event(3, "live3"));       /* also in the replay */
    push_unref(s, event(4, "live4"));
    hist[0] = event(2, "old2");
    hist[1] = event(3, "live3");
    replay_last(s, hist, 2, &start);
    sse_frame_unref(hist[0]);
    sse_frame_unref(hist[1]);
    push_unref(s, event(4, "again4"));      /* a redelivery: dropped */
    push_unref(s, event(1, "older1"));      /* before the last id: dropped */
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_drained(&p, chunks("id: 2-0\nevent: t\ndata: old2\n\n",
                              "id: 3-0\nevent: t\ndata: live3\n\n",
                              "id: 4-0\nevent: t\ndata: live4\n\n", NULL));
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* A frame without an id (a PUBLISH from outside) cannot be deduplicated
 * and always goes out; HTTP/1.0 streams get raw frames, no chunks. */
static void
test_idless_frames_and_http10(void **state)
{
    struct pair p;
    struct stream *s;
    struct sse_frame *c = sse_frame_new_raw(": x\n\n", 5);

    (void)state;
    assert_non_null(c);
    pair_open(&p, 0);
    s = stream_ready(&p, 1 << 20, 0);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    push_unref(s, event(5, "a"));
    stream_push_many(s, &c, 1);
    stream_push_many(s, &c, 1);
    sse_frame_unref(c);
    assert_drained(&p, "id: 5-0\nevent: t\ndata: a\n\n: x\n\n: x\n\n");
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* A full socket: the producer stops writing and kicks the writer; later
 * flushes resume mid-chunk, so the bytes on the wire are exactly the
 * chunks in order, none cut or repeated. */
static void
test_partial_writes_resume_mid_chunk(void **state)
{
    struct pair p;
    struct stream *s;
    char data[1000], want_frame[1100];
    size_t want_cap = 200 * 1200, want_len = 0, got_len = 0;
    char *want = malloc(want_cap), *got = malloc(want_cap + 1);
    int rounds = 0;

    (void)state;
    assert_non_null(want);
    assert_non_null(got);
    memset(data, 'x', sizeof(data) - 1);
    data[sizeof(data) - 1] = '\0';
    pair_open(&p, 4096);
    s = stream_ready(&p, 1 << 20, 1);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    for (uint64_t i = 1; i <= 200; i++) {
        struct sse_frame *f = event(i, data);
        int n = snprintf(want_frame, sizeof(want_frame), "%zx\r\n", f->len);

        memcpy(want + want_len, want_frame, (size_t)n);
        want_len += (size_t)n;
        memcpy(want + want_len, f->bytes, f->len);
        want_len += f->len;
        memcpy(want + want_len, "\r\n", 2);
        want_len += 2;
        push_unref(s, f);
    }
    assert_true(kicks(&p) > 0);               /* the socket filled up */
    for (;;) {
        char *part = pair_drain(&p);
        size_t n = strlen(part);

        memcpy(got + got_len, part, n);
        got_len += n;
        free(part);
        if (stream_flush(s) == STREAM_IO_IDLE && got_len == want_len)
            break;
        assert_true(++rounds < 10000);
    }
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
    free(want);
    free(got);
}

/* A stream whose unsent bytes would pass its bound ends: what it holds
 * still goes out, then the writer is told to end it. An empty queue
 * always takes one frame, however large. */
static void
test_bound_ends_slow_stream(void **state)
{
    struct pair p;
    struct stream *s;
    char big[300];

    (void)state;
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    pair_open(&p, 0);
    s = stream_ready(&p, 100, 1);
    push_unref(s, event(1, big));           /* over the bound, but alone */
    push_unref(s, event(2, "z"));           /* would pass it: ends */
    push_unref(s, event(3, "after"));       /* ignored: ending */
    assert_true(kicks(&p) > 0);
    assert_int_equal(stream_flush(s), STREAM_IO_END);
    assert_int_equal(stream_end_reason(s), STREAM_END_SLOW_CONSUMER);
    {
        char *out = pair_drain(&p);

        assert_non_null(strstr(out, "id: 1-0\n"));
        assert_null(strstr(out, "id: 2-0\n"));
        assert_null(strstr(out, "id: 3-0\n"));
        /* the body's end: the chunked terminator */
        assert_non_null(strstr(out, "\r\n0\r\n\r\n"));
        free(out);
    }
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* A closed stream takes nothing and never touches its (closed) socket. */
static void
test_closed_stream_is_inert(void **state)
{
    struct pair p;
    struct stream *s;

    (void)state;
    pair_open(&p, 0);
    s = stream_ready(&p, 1 << 20, 1);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    stream_close(s);
    push_unref(s, event(1, "a"));
    assert_int_equal(kicks(&p), 0);
    assert_drained(&p, "");
    assert_int_equal(stream_flush(s), STREAM_IO_END);
    stream_unref(s);
    pair_close(&p);
}

/* A burst of events for one user goes out in one write, in order and
 * deduplicated. SOCK_SEQPACKET keeps each sendmsg one record, so one
 * read returning both events proves they went in one call. */
static void
test_push_many_one_write(void **state)
{
    struct pair p = { -1, -1, 0, NULL, NULL };
    struct stream *s;
    struct sse_frame *f[3];
    int sv[2];
    char buf[4096];
    ssize_t n;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    p.w = sv[0];
    p.r = sv[1];
    pair_events(&p);
    assert_int_equal(fcntl(p.w, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(p.r, F_SETFL, O_NONBLOCK), 0);
    s = stream_ready(&p, 1 << 20, 1);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    f[0] = event(3, "a");
    f[1] = event(2, "older");       /* before the last id: dropped */
    f[2] = event(4, "b");
    stream_push_many(s, f, 3);
    for (int i = 0; i < 3; i++)
        sse_frame_unref(f[i]);
    n = read(p.r, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, chunks("id: 3-0\nevent: t\ndata: a\n\n",
                                    "id: 4-0\nevent: t\ndata: b\n\n", NULL));
    assert_int_equal(read(p.r, buf, sizeof(buf)), -1);     /* nothing more */
    assert_int_equal(kicks(&p), 0);
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* Writes the first k bytes that w describes, as a send cut short by a
 * full socket would. */
static void
write_prefix(int fd, const struct wire_write *w, size_t k)
{
    for (size_t i = 0; i < w->mh.msg_iovlen && k > 0; i++) {
        size_t take = w->iov[i].iov_len < k ? w->iov[i].iov_len : k;

        assert_int_equal(write(fd, w->iov[i].iov_base, take), (ssize_t)take);
        k -= take;
    }
}

/* A prepared write owns the socket until it is done: frames pushed
 * meanwhile only queue, the writer loop writes nothing, and an end waits.
 * When it is done, what came meanwhile follows on the wire, in order. */
static void
test_prepared_write_owns_the_socket(void **state)
{
    struct pair p;
    struct stream *s;
    struct wire_write *w = malloc(sizeof(*w));
    struct sse_frame *f = event(1, "a");
    ssize_t n;

    (void)state;
    assert_non_null(w);
    pair_open(&p, 0);
    s = stream_ready(&p, 1 << 20, 1);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_int_equal(stream_push_prepare(s, &f, 1, w), 1);
    sse_frame_unref(f);
    assert_int_equal(w->fd, p.w);
    assert_int_equal(w->frames, 1);
    push_unref(s, event(2, "b"));
    f = event(3, "c");
    assert_int_equal(stream_push_prepare(s, &f, 1, w), 0);  /* in flight: queued only */
    sse_frame_unref(f);
    assert_drained(&p, "");
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_drained(&p, "");
    stream_end(s, STREAM_END_SHUTDOWN);
    assert_int_equal(kicks(&p), 0);
    n = sendmsg(w->fd, &w->mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    assert_int_equal(n, (ssize_t)w->total);
    w->res = n;
    stream_push_complete(w);
    {
        char want[512];

        /* Then the end: it was due, so the body's terminator follows. */
        snprintf(want, sizeof(want), "%s0\r\n\r\n",
                 chunks("id: 1-0\nevent: t\ndata: a\n\n",
                        "id: 2-0\nevent: t\ndata: b\n\n",
                        "id: 3-0\nevent: t\ndata: c\n\n", NULL));
        assert_drained(&p, want);
    }
    assert_int_equal(kicks(&p), 1);               /* the teardown is the writer's */
    assert_int_equal(stream_flush(s), STREAM_IO_END);
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
    free(w);
}

/* A prepared write cut short, or refused by a full socket, hands the
 * stream to its writer loop, which sends the rest from the exact byte
 * where the write stopped. */
static void
test_prepared_write_short_or_refused(void **state)
{
    struct pair p;
    struct stream *s;
    struct wire_write *w = malloc(sizeof(*w));
    struct sse_frame *f = event(1, "hello");

    (void)state;
    assert_non_null(w);
    pair_open(&p, 0);
    s = stream_ready(&p, 1 << 20, 1);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);

    assert_int_equal(stream_push_prepare(s, &f, 1, w), 1);
    sse_frame_unref(f);
    write_prefix(p.w, w, 7);                    /* into the frame's body */
    w->res = 7;
    stream_push_complete(w);
    assert_int_equal(kicks(&p), 1);
    f = event(2, "more");
    assert_int_equal(stream_push_prepare(s, &f, 1, w), 0); /* the writer's now */
    sse_frame_unref(f);
    assert_int_equal(kicks(&p), 2);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_drained(&p, chunks("id: 1-0\nevent: t\ndata: hello\n\n",
                              "id: 2-0\nevent: t\ndata: more\n\n", NULL));

    f = event(3, "again");
    assert_int_equal(stream_push_prepare(s, &f, 1, w), 1);
    sse_frame_unref(f);
    w->res = -EAGAIN;
    stream_push_complete(w);               /* nothing went out */
    assert_int_equal(kicks(&p), 3);
    assert_drained(&p, "");
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_drained(&p, chunks("id: 3-0\nevent: t\ndata: again\n\n", NULL));
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
    free(w);
}

/* The response head goes out first, on the writer's first flush, also
 * when the socket takes it in pieces; the frames queued before the
 * hand-off follow it, chunked. */
static void
test_head_then_frames(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
    struct pair p;
    struct stream *s = stream_new("7", 1 << 20, NULL);
    struct sse_frame *hello = sse_frame_new_raw(": hi\n\n", 6);
    char want[256];

    (void)state;
    assert_non_null(s);
    assert_non_null(hello);
    pair_open(&p, 0);
    replay_last(s, &hello, 1, NULL);
    sse_frame_unref(hello);
    assert_int_equal(stream_attach(s, p.w, 1, head, sizeof(head) - 1, p.wake), 0);
    push_unref(s, event(1, "a"));               /* not ready yet: queued */
    assert_drained(&p, "");
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    snprintf(want, sizeof(want), "%s%s", head,
             chunks(": hi\n\n", "id: 1-0\nevent: t\ndata: a\n\n", NULL));
    assert_drained(&p, want);
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* A replay comes in pages: a page that stops short, or one read before
 * live frames may have been missed (a resubscribe), is not the last; the
 * held live frames go out once the last page is queued, each once. Pages
 * are queued past the byte bound (the reader sized them), and the reader
 * is told when the next one fits. */
static void
test_replay_pages(void **state)
{
    struct pair p;
    struct stream *s = stream_new("7", 100, NULL);
    struct sse_frame *page1[2], *page2[1];
    struct event_id next, after, start = { 9, 0 };
    unsigned gen;

    (void)state;
    assert_non_null(s);
    pair_open(&p, 0);
    assert_int_equal(stream_attach(s, p.w, 1, "", 0, p.wake), 0);
    push_unref(s, event(4, "live4"));                   /* held */
    page1[0] = event(1, "0123456789012345678901234567890123456789");
    page1[1] = event(2, "0123456789012345678901234567890123456789");
    gen = stream_replay_gen(s);
    assert_int_equal(stream_replay_page(s, NULL, page1, 2, &start, 1, gen, &next),
                     STREAM_REPLAY_MORE);
    assert_true(next.ms == 2 && next.seq == 0);
    assert_int_equal(stream_replay_room(s, 50), 0);     /* over the bound, not ended */
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_int_equal(stream_replay_room(s, 50), 1);
    /* A resubscribe while page 2 is read: it is not the last. */
    gen = stream_replay_gen(s);
    assert_int_equal(stream_begin_replay(s, &after), 0);
    assert_true(after.ms == 2 && after.seq == 0);
    page2[0] = event(3, "three");
    assert_int_equal(stream_replay_page(s, NULL, page2, 1, &start, 0, gen, &next),
                     STREAM_REPLAY_MORE);
    assert_true(next.ms == 9 && next.seq == 0);         /* caught up to start */
    replay_last(s, page2, 1, &start);                   /* dedup: 3 not again */
    sse_frame_unref(page2[0]);
    for (int i = 0; i < 2; i++)
        sse_frame_unref(page1[i]);
    assert_int_equal(stream_replay_room(s, 50), -1);    /* caught up */
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    /* live4 is not after the start (9-0): the history read had it. */
    assert_drained(&p, chunks("id: 1-0\nevent: t\ndata: 0123456789012345678901234567890123456789\n\n",
                              "id: 2-0\nevent: t\ndata: 0123456789012345678901234567890123456789\n\n",
                              "id: 3-0\nevent: t\ndata: three\n\n", NULL));
    push_unref(s, event(10, "live10"));
    assert_drained(&p, chunks("id: 10-0\nevent: t\ndata: live10\n\n", NULL));
    assert_int_equal(stream_end_reason(s), STREAM_END_CLIENT);
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* Live frames held past the bound are dropped, not the stream: the
 * replay reads on (they are in history), and the page read before the
 * drop is not the last. */
static void
test_held_overflow_reads_on(void **state)
{
    struct pair p;
    struct stream *s = stream_new("7", 100, NULL);
    struct sse_frame *page[3];
    struct event_id next;
    unsigned gen;

    (void)state;
    assert_non_null(s);
    pair_open(&p, 0);
    assert_int_equal(stream_attach(s, p.w, 1, "", 0, p.wake), 0);
    for (int i = 0; i < 3; i++)
        page[i] = event((uint64_t)i + 1, "0123456789012345678901234567890123456789");
    gen = stream_replay_gen(s);
    for (int i = 0; i < 3; i++)
        push_unref(s, event((uint64_t)i + 1, "0123456789012345678901234567890123456789"));
    assert_int_not_equal(stream_replay_gen(s), gen);
    assert_int_equal(stream_replay_page(s, NULL, page, 1, NULL, 0, gen, &next),
                     STREAM_REPLAY_MORE);
    assert_true(next.ms == 1);
    /* The queue and the held frame together pass the bound: the held
     * frame is dropped again, and the page after 3 (empty) is the last. */
    gen = stream_replay_gen(s);
    assert_int_equal(stream_replay_page(s, NULL, page + 1, 2, NULL, 0, gen, &next),
                     STREAM_REPLAY_MORE);
    assert_true(next.ms == 3);
    replay_last(s, NULL, 0, NULL);
    for (int i = 0; i < 3; i++)
        sse_frame_unref(page[i]);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_drained(&p, chunks("id: 1-0\nevent: t\ndata: 0123456789012345678901234567890123456789\n\n",
                              "id: 2-0\nevent: t\ndata: 0123456789012345678901234567890123456789\n\n",
                              "id: 3-0\nevent: t\ndata: 0123456789012345678901234567890123456789\n\n",
                              NULL));
    assert_int_equal(stream_end_reason(s), STREAM_END_CLIENT);
    stream_close(s);
    stream_unref(s);
    pair_close(&p);
}

/* The heartbeat rule alone: due after a period with nothing carried (a
 * timer firing a tick early counts), never while data waits. */
static void
test_heartbeat_rule(void **state)
{
    const int64_t a = 1000000;

    (void)state;
    assert_int_equal(stream_heartbeat_wait(a, a, 15000, 0), 15000);
    assert_int_equal(stream_heartbeat_wait(a + 14000, a, 15000, 0), 1000);
    assert_int_equal(stream_heartbeat_wait(a + 15000 - STREAM_HEARTBEAT_SLACK_MS - 1, a, 15000, 0),
                     STREAM_HEARTBEAT_SLACK_MS + 1);
    assert_int_equal(stream_heartbeat_wait(a + 15000 - STREAM_HEARTBEAT_SLACK_MS, a, 15000, 0), 0);
    assert_int_equal(stream_heartbeat_wait(a + 15000, a, 15000, 0), 0);
    assert_int_equal(stream_heartbeat_wait(a + 3600000, a, 15000, 0), 0);
    /* Something waits to be sent: no heartbeat, ask again in a period. */
    assert_int_equal(stream_heartbeat_wait(a + 60000, a, 15000, 1), 15000);
    /* Activity stamped by another thread after this thread read now. */
    assert_int_equal(stream_heartbeat_wait(a - 5, a, 15000, 0), 15000);
}

/* Pacing: a loop serves STREAM_BEATS_PER_SLOT checks per slot and puts
 * the rest off into the following slots, each with room for as many;
 * a new slot starts afresh. */
static void
test_heartbeat_pace(void **state)
{
    struct stream_beat_pace pace = { 0, 0 };
    const int64_t t = 123450;   /* the start of a slot */
    unsigned i;

    (void)state;
    for (i = 0; i < STREAM_BEATS_PER_SLOT; i++)
        assert_int_equal(stream_heartbeat_pace(&pace, t + 3), 0);
    for (i = 0; i < STREAM_BEATS_PER_SLOT; i++)
        assert_int_equal(stream_heartbeat_pace(&pace, t + 5), STREAM_BEAT_SLOT_MS);
    assert_int_equal(stream_heartbeat_pace(&pace, t + 9), 2 * STREAM_BEAT_SLOT_MS);
    /* The next slot: the ones put off by one slot come back and go. */
    for (i = 0; i < STREAM_BEATS_PER_SLOT; i++)
        assert_int_equal(stream_heartbeat_pace(&pace, t + STREAM_BEAT_SLOT_MS), 0);
    assert_int_equal(stream_heartbeat_pace(&pace, t + STREAM_BEAT_SLOT_MS + 1),
                     STREAM_BEAT_SLOT_MS);
    assert_int_equal(stream_heartbeat_pace(&pace, t + 10 * STREAM_BEAT_SLOT_MS), 0);
}

/* On a stream: an idle stream gets a heartbeat once a period has passed
 * since it last carried anything, an event defers it, and the heartbeat
 * is one comment line with no blank line after it. */
static void
test_heartbeat_due_and_skip(void **state)
{
    static const char ping[] = ": ping\n";
    struct sse_frame *hb = sse_frame_new_raw(ping, sizeof(ping) - 1);
    struct pair p;
    struct stream *s;
    int64_t t;
    unsigned w;

    (void)state;
    assert_non_null(hb);
    pair_open(&p, 0);
    s = stream_ready(&p, 1 << 20, 1);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    t = clock_coarse_ms();
    w = stream_heartbeat(s, hb, t, 1000);
    assert_true(w > 900 && w <= 1000);          /* just attached: not due */
    assert_drained(&p, "");
    assert_int_equal(stream_heartbeat(s, hb, t + 1000, 1000), 1000);
    assert_drained(&p, chunks(": ping\n", NULL));
    push_unref(s, event(1, "a"));               /* carries an event now */
    t = clock_coarse_ms();
    w = stream_heartbeat(s, hb, t + 500, 1000);
    assert_true(w >= 400 && w <= 500);
    assert_drained(&p, chunks("id: 1-0\nevent: t\ndata: a\n\n", NULL));
    assert_int_equal(stream_heartbeat(s, hb, t + 1000, 1000), 1000);
    assert_drained(&p, chunks(": ping\n", NULL));
    stream_end(s, STREAM_END_SHUTDOWN);
    assert_int_equal(stream_heartbeat(s, hb, t + 5000, 1000), 0);   /* ending: no more */
    stream_close(s);
    stream_unref(s);
    sse_frame_unref(hb);
    pair_close(&p);
}

/* A full socket: no heartbeat behind the waiting data, and the wait is
 * counted from the last byte the socket took; any progress restarts it. */
static void
test_stalled_socket(void **state)
{
    static const char ping[] = ": ping\n";
    struct sse_frame *hb = sse_frame_new_raw(ping, sizeof(ping) - 1);
    struct pair p;
    struct stream *s;
    char big[4000];
    uint64_t id = 1;
    int64_t t;
    char *out;

    (void)state;
    assert_non_null(hb);
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    pair_open(&p, 4096);
    s = stream_ready(&p, 1 << 22, 1);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    while (stream_flush(s) != STREAM_IO_BLOCKED && id < 1000)
        push_unref(s, event(id++, big));
    assert_int_equal(stream_flush(s), STREAM_IO_BLOCKED);
    t = clock_coarse_ms();
    assert_true(stream_stalled_ms(s, t + 5000) >= 4900);
    assert_int_equal(stream_heartbeat(s, hb, t + 60000, 1000), 1000);   /* busy */
    out = pair_drain(&p);                       /* the client reads again */
    free(out);
    while (stream_flush(s) == STREAM_IO_BLOCKED) {
        out = pair_drain(&p);
        free(out);
    }
    assert_true(stream_stalled_ms(s, clock_coarse_ms()) < 100);
    out = pair_drain(&p);
    assert_null(strstr(out, "ping"));           /* no heartbeat was queued */
    free(out);
    stream_close(s);
    stream_unref(s);
    sse_frame_unref(hb);
    pair_close(&p);
}

/* Token expiry: the wait until exp (capped), then the token-expired
 * frame even past the byte bound, the stream's end with its reason and
 * the chunked body's end; nothing after. A stream without an expiry
 * waits the cap. */
static void
test_token_expiry(void **state)
{
    static const char data[] = "{\"type\":\"token-expired\"}";
    struct sse_frame *ex = sse_frame_new_event(NULL, "token-expired", data, sizeof(data) - 1);
    struct pair p, q;
    struct stream *s, *forever;
    char big[300];

    (void)state;
    assert_non_null(ex);
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    pair_open(&p, 0);
    s = stream_ready(&p, 100, 1);
    stream_set_expiry(s, 10000);
    assert_int_equal(stream_flush(s), STREAM_IO_IDLE);
    assert_int_equal(stream_expire(s, ex, 4000, 15000), 6000);
    assert_int_equal(stream_expire(s, ex, 4000, 1000), 1000);
    assert_int_equal(stream_expire(s, ex, 9999, 1000), 1);
    assert_drained(&p, "");                 /* waiting queues nothing */
    stream_close(s);
    stream_unref(s);
    pair_close(&p);

    /* A queue at its bound (100 bytes) still takes the last frame. */
    pair_open(&p, 0);
    s = stream_ready(&p, 100, 1);
    stream_set_expiry(s, 10000);
    push_unref(s, event(1, big));           /* over the bound, alone */
    assert_int_equal(stream_expire(s, ex, 10000, 1000), 0);
    assert_int_equal(stream_end_reason(s), STREAM_END_TOKEN_EXPIRED);
    assert_int_equal(stream_expire(s, ex, 20000, 1000), 0);     /* ending: once */
    push_unref(s, event(2, "late"));        /* ignored: ending */
    assert_int_equal(stream_flush(s), STREAM_IO_END);
    {
        char *out = pair_drain(&p), *at = strstr(out, "event: token-expired\n");

        assert_non_null(strstr(out, "id: 1-0\n"));
        assert_null(strstr(out, "late"));
        assert_non_null(at);
        assert_string_equal(at, "event: token-expired\ndata: {\"type\":\"token-expired\"}\n\n"
                                "\r\n0\r\n\r\n");
        assert_memory_equal(at - 6, "\r\n35\r\n", 6);   /* its own chunk, no id line */
        free(out);
    }
    stream_close(s);
    stream_unref(s);
    pair_close(&p);

    pair_open(&q, 0);
    forever = stream_ready(&q, 100, 1);
    assert_int_equal(stream_expire(forever, ex, INT64_MAX / 2, 777), 777);
    assert_int_equal(stream_end_reason(forever), STREAM_END_CLIENT);
    assert_string_equal(stream_end_name(STREAM_END_TOKEN_EXPIRED), "token_expired");
    stream_close(forever);
    stream_unref(forever);
    pair_close(&q);
    sse_frame_unref(ex);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_flush_then_direct_writes),
        cmocka_unit_test(test_replay_holds_and_dedups),
        cmocka_unit_test(test_idless_frames_and_http10),
        cmocka_unit_test(test_push_many_one_write),
        cmocka_unit_test(test_partial_writes_resume_mid_chunk),
        cmocka_unit_test(test_bound_ends_slow_stream),
        cmocka_unit_test(test_closed_stream_is_inert),
        cmocka_unit_test(test_prepared_write_owns_the_socket),
        cmocka_unit_test(test_prepared_write_short_or_refused),
        cmocka_unit_test(test_head_then_frames),
        cmocka_unit_test(test_replay_pages),
        cmocka_unit_test(test_held_overflow_reads_on),
        cmocka_unit_test(test_heartbeat_rule),
        cmocka_unit_test(test_heartbeat_pace),
        cmocka_unit_test(test_heartbeat_due_and_skip),
        cmocka_unit_test(test_stalled_socket),
        cmocka_unit_test(test_token_expiry),
    };

    alarm(60);                        /* a hang fails the test, not CI */
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
