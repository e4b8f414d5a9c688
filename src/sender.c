/* sender.c -- a fan-out's socket writes in one system call. Owns one
 * io_uring and its slots of prepared writes; borrows each stream from
 * sender_add to sender_flush, while the caller keeps it in the hub.
 *
 * Why: on a paravirtualised VM a system call's entry and exit cost about
 * 2 us, a third of a small loopback send, and a fan-out to 1,000 streams
 * is 1,000 sends. io_uring takes a whole chunk of them in one
 * io_uring_enter (bench/sendfloor: 4.3 us per send against 7.8).
 *
 * Every write carries MSG_DONTWAIT, so the kernel issues it inline
 * during io_uring_enter and never parks it: a full socket completes at
 * once with -EAGAIN and its stream goes to its writer loop, as after a
 * plain send. So sender_flush never waits for a slow client. */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "sender.h"
#include "stream.h"

#define SENDER_SLOTS 32         /* writes per io_uring_enter at most */
/* A write of more pieces than this goes out with sendmsg at once: the
 * kernel keeps up to 8 iovecs (UIO_FASTIOV) inline, but io_uring copies a
 * longer array into memory of its own for every write. Measured: with
 * every write through the ring, fan-out max (runs of many events per
 * socket, 3 pieces per event) fell from about 450k to 340k deliveries/s,
 * while one-event writes (3 pieces) gained. */
#define SENDER_MAX_IOV 8

struct sender {
    struct io_uring ring;
    size_t used;                /* slots prepared since the last flush */
    int broken;                 /* submission failed: plain sends from now on */
    struct stream_send slot[SENDER_SLOTS];
};

struct sender *
sender_new(void)
{
    struct sender *sd = malloc(sizeof(*sd));
    int rc;

    if (sd == NULL)
        return NULL;
    sd->used = 0;
    sd->broken = 0;
    /* SUBMIT_ALL: one bad entry must not hold back the rest of a batch
     * (kernel 5.18); older kernels refuse the flag, so retry without. */
    rc = io_uring_queue_init(SENDER_SLOTS, &sd->ring, IORING_SETUP_SUBMIT_ALL);
    if (rc == -EINVAL)
        rc = io_uring_queue_init(SENDER_SLOTS, &sd->ring, 0);
    if (rc < 0) {
        free(sd);
        errno = -rc;
        return NULL;
    }
    return sd;
}

void
sender_free(struct sender *sd)
{
    if (sd == NULL)
        return;
    io_uring_queue_exit(&sd->ring);
    free(sd);
}

/* Issues a prepared write with sendmsg, now, and finishes it. */
static void
sender_send_now(struct stream_send *w)
{
    ssize_t n = sendmsg(w->fd, &w->mh, MSG_NOSIGNAL | MSG_DONTWAIT);

    stream_send_done(w, n < 0 ? -errno : n);
}

void
sender_add(struct sender *sd, struct stream *s, struct sse_frame *const *f, size_t n)
{
    struct stream_send *w;
    struct io_uring_sqe *sqe;

    if (sd == NULL || sd->broken) {
        stream_push_many(s, f, n);
        return;
    }
    w = &sd->slot[sd->used];
    if (!stream_push_prepare(s, f, n, w))
        return;
    if (w->mh.msg_iovlen > SENDER_MAX_IOV) {
        sender_send_now(w);
        return;
    }
    /* The ring has a slot per entry and is flushed when they run out,
     * so there is always an entry. */
    sqe = io_uring_get_sqe(&sd->ring);
    io_uring_prep_sendmsg(sqe, w->fd, &w->mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data(sqe, w);
    if (++sd->used == SENDER_SLOTS)
        sender_flush(sd);
}

/* io_uring_enter took only the first `taken` writes (in practice none:
 * the ring is out of kernel memory). Issues the others one by one and
 * stops using the ring: its untaken entries are dropped with it. */
static void
sender_fail(struct sender *sd, size_t taken, int err)
{
    log_error("io_uring submit failed (%s): sending with sendmsg from now on",
              strerror(err));
    sd->broken = 1;
    for (size_t i = taken; i < sd->used; i++)
        sender_send_now(&sd->slot[i]);
}

void
sender_flush(struct sender *sd)
{
    size_t taken = 0;
    int err = 0;

    if (sd == NULL)
        return;
    /* Entries are taken in order, so the first `taken` slots are in. */
    while (taken < sd->used) {
        int rc = io_uring_submit(&sd->ring);

        if (rc == -EINTR)
            continue;
        if (rc <= 0) {
            err = rc < 0 ? -rc : EIO;
            break;
        }
        taken += (size_t)rc;
    }
    for (size_t i = 0; i < taken; i++) {
        struct io_uring_cqe *cqe;
        struct stream_send *w;
        int res, rc;

        while ((rc = io_uring_wait_cqe(&sd->ring, &cqe)) == -EINTR)
            ;
        if (rc < 0) {
            /* A write's fate unknown: carrying on could send a frame
             * twice or cut one. Never seen; the kernel posts every
             * completion of a taken entry. */
            log_error("io_uring wait: %s", strerror(-rc));
            abort();
        }
        w = io_uring_cqe_get_data(cqe);
        res = cqe->res;
        io_uring_cqe_seen(&sd->ring, cqe);
        stream_send_done(w, res);
    }
    if (err != 0)
        sender_fail(sd, taken, err);
    sd->used = 0;
}
