/* test_sender.c -- a fan-out's writes batched through io_uring, through
 * the hub that drives them (hub_publish): every stream gets exactly its frames, in one write
 * each, across more streams than the sender holds at once; a full socket
 * comes back at once (the flush never waits for a slow client) and its
 * writer sends the rest.
 * A real io_uring and real AF_UNIX sockets; nothing is mocked. Skipped
 * where the kernel refuses io_uring. */
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

#include "hub.h"
#include "log.h"
#include "sender.h"
#include "sse.h"
#include "stream.h"
#include "wire.h"

#define STREAMS 100             /* more than a sender's slots */

struct peer {
    int w, r;           /* the stream writes w (and closes it) */
    int kicks;
    struct stream *s;
    struct event *wake;
};

static struct event_base *base;

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ((struct peer *)arg)->kicks++;
}

/* The wake-ups of p's stream that ran so far (runs those pending). */
static int
kicks(struct peer *p)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
    return p->kicks;
}

/* The hub the peers' streams are indexed in (user "7"), with its
 * io_uring senders: a fan-out is hub_publish, as the subscriber does it. */
static struct hub *hub;

static void
fan_out(struct sse_frame *const *f, size_t nf)
{
    hub_publish(hub, "7", f, nf);
}

/* A stream past its opening replay, attached to a fresh socketpair of
 * the given type, its first flush done (producers may write). */
static void
peer_open(struct peer *p, int type)
{
    int sv[2];
    struct event_id next;

    assert_int_equal(socketpair(AF_UNIX, type, 0, sv), 0);
    p->w = sv[0];
    p->r = sv[1];
    p->kicks = 0;
    assert_non_null(p->wake = event_new(base, -1, 0, on_wake, p));
    assert_int_equal(fcntl(p->w, F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(p->r, F_SETFL, O_NONBLOCK), 0);
    assert_non_null(p->s = stream_new("7", 1 << 20, NULL));
    stream_replay_page(p->s, NULL, NULL, 0, NULL, 0, stream_replay_gen(p->s), &next);
    assert_int_equal(stream_attach(p->s, p->w, 1, "", 0, p->wake), 0);
    assert_int_equal(stream_flush(p->s), STREAM_IO_IDLE);
    assert_int_equal(hub_add(hub, p->s), 0);
}

static void
peer_close(struct peer *p)
{
    hub_drop_stream(hub, p->s, STREAM_END_CLIENT);     /* closes p->w */
    event_free(p->wake);
    close(p->r);
}

static struct sse_frame *
event(uint64_t ms, const char *data)
{
    struct event_id id = { ms, 0 };
    struct sse_frame *f = sse_frame_new_event(&id, "t", data, strlen(data));

    assert_non_null(f);
    return f;
}

static int
setup(void **state)
{
    struct sender *sd = sender_new();

    (void)state;
    if (sd == NULL) {
        fprintf(stderr, "io_uring unavailable: %s\n", strerror(errno));
        skip();
    }
    sender_free(sd);            /* the hub makes its own */
    assert_non_null(base = event_base_new());
    assert_non_null(hub = hub_new(NULL, 1));
    alarm(20);                  /* a flush that waits on a client hangs */
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    hub_free(hub);
    event_base_free(base);
    alarm(0);
    return 0;
}

/* Two events to 100 streams: each socket gets both, in order, in one
 * write (SOCK_SEQPACKET keeps each sendmsg one record), and nothing
 * more; no stream needed its writer loop. */
static void
test_every_stream_once_in_one_write(void **state)
{
    (void)state;
    static struct peer p[STREAMS];
    struct sse_frame *f[2] = { event(1, "a"), event(2, "b") };
    char want[256], buf[256];

    snprintf(want, sizeof(want), "%zx\r\n%s\r\n%zx\r\n%s\r\n",
             f[0]->len, f[0]->bytes, f[1]->len, f[1]->bytes);
    for (int i = 0; i < STREAMS; i++)
        peer_open(&p[i], SOCK_SEQPACKET);
    fan_out(f, 2);
    sse_frame_unref(f[0]);
    sse_frame_unref(f[1]);
    for (int i = 0; i < STREAMS; i++) {
        ssize_t n = read(p[i].r, buf, sizeof(buf) - 1);

        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, want);
        assert_int_equal(read(p[i].r, buf, sizeof(buf)), -1);
        assert_int_equal(errno, EAGAIN);
        assert_int_equal(kicks(&p[i]), 0);
        peer_close(&p[i]);
    }
}

/* A client that reads nothing: its socket is full before the fan-out.
 * The flush returns at once (-EAGAIN from the kernel), the stream goes
 * to its writer, and once the client reads, the writer sends the event
 * whole; the other stream of the same fan-out got it directly. */
static void
test_full_socket_goes_to_its_writer(void **state)
{
    (void)state;
    struct peer slow, fast;
    struct sse_frame *f = event(5, "x");
    char junk[4096], want[128], buf[128];
    size_t filled = 0;
    ssize_t n;

    memset(junk, 'j', sizeof(junk));
    snprintf(want, sizeof(want), "%zx\r\n%s\r\n", f->len, f->bytes);
    peer_open(&slow, SOCK_STREAM);
    peer_open(&fast, SOCK_STREAM);
    while ((n = write(slow.w, junk, sizeof(junk))) > 0)
        filled += (size_t)n;
    assert_int_equal(errno, EAGAIN);
    fan_out(&f, 1);
    sse_frame_unref(f);
    assert_int_equal(kicks(&slow), 1);
    assert_int_equal(kicks(&fast), 0);
    n = read(fast.r, buf, sizeof(buf) - 1);
    assert_int_equal(n, (ssize_t)strlen(want));
    buf[n] = '\0';
    assert_string_equal(buf, want);

    while (filled > 0 && (n = read(slow.r, junk, filled < sizeof(junk) ? filled : sizeof(junk))) > 0)
        filled -= (size_t)n;
    assert_int_equal(filled, 0);
    assert_int_equal(stream_flush(slow.s), STREAM_IO_IDLE);
    n = read(slow.r, buf, sizeof(buf) - 1);
    assert_int_equal(n, (ssize_t)strlen(want));
    buf[n] = '\0';
    assert_string_equal(buf, want);
    peer_close(&slow);
    peer_close(&fast);
}

/* A run of four events is 12 pieces, more than the ring takes: each such
 * write is issued at once with sendmsg, in the same slot, and still every
 * stream gets the run whole, once, in one write. */
static void
test_long_runs_issued_at_once(void **state)
{
    (void)state;
    static struct peer p[40];
    struct sse_frame *f[4] = { event(1, "a"), event(2, "b"), event(3, "c"), event(4, "d") };
    char want[512], buf[512];
    size_t len = 0;

    for (int k = 0; k < 4; k++)
        len += (size_t)snprintf(want + len, sizeof(want) - len, "%zx\r\n%s\r\n",
                                f[k]->len, f[k]->bytes);
    for (int i = 0; i < 40; i++) {
        peer_open(&p[i], SOCK_SEQPACKET);
    }
    fan_out(f, 4);
    for (int k = 0; k < 4; k++)
        sse_frame_unref(f[k]);
    for (int i = 0; i < 40; i++) {
        ssize_t n = read(p[i].r, buf, sizeof(buf) - 1);

        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, want);
        assert_int_equal(read(p[i].r, buf, sizeof(buf)), -1);
        assert_int_equal(kicks(&p[i]), 0);
        peer_close(&p[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_stream_once_in_one_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_socket_goes_to_its_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_runs_issued_at_once, setup, teardown),
    };

    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
