/* sender.c -- a batch of socket writes in one system call. Owns one
 * io_uring and its slots of prepared writes (struct wire_write); what a
 * write points to (frames, the socket) is kept alive by whoever prepared
 * it until it has handled the result.
 *
 * Why: on a paravirtualised VM a system call's entry and exit cost about
 * 2 us, a third of a small loopback send, and a fan-out to 1,000 streams
 * is 1,000 sends. io_uring takes a whole chunk of them in one
 * io_uring_enter (bench/sendfloor: 4.3 us per send against 7.8).
 *
 * Every write carries MSG_DONTWAIT, so the kernel issues it inline
 * during io_uring_enter and never parks it: a full socket completes at
 * once with -EAGAIN, as after a plain send. So sender_flush never waits
 * for a slow client. */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "sender.h"
#include "wire.h"

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
    size_t used;                /* slots queued in the ring since the last reset */
    int broken;                 /* submission failed: plain sends from now on */
    struct wire_write slot[SENDER_SLOTS];  /* slot i < used waits in the ring */
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

struct wire_write *
sender_slot(struct sender *sd)
{
    return &sd->slot[sd->used];
}

enum sender_queued
sender_queue(struct sender *sd)
{
    struct wire_write *w = &sd->slot[sd->used];
    struct io_uring_sqe *sqe;

    /* Handled at once, in the same slot: a fan-out of long runs (every
     * write over SENDER_MAX_IOV) then keeps one slot warm in the cache
     * instead of walking all of them (measured: 15% of fan-out max). */
    if (sd->broken || w->mh.msg_iovlen > SENDER_MAX_IOV) {
        wire_issue(w);
        return SENDER_ISSUED;
    }
    /* The ring has an entry per slot and is flushed when they run out,
     * so there is always an entry. */
    sqe = io_uring_get_sqe(&sd->ring);
    io_uring_prep_sendmsg(sqe, w->fd, &w->mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data(sqe, w);
    return ++sd->used == SENDER_SLOTS ? SENDER_FULL : SENDER_QUEUED;
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
        wire_issue(&sd->slot[i]);
}

size_t
sender_flush(struct sender *sd)
{
    size_t taken = 0;
    int err = 0;

    /* Entries are taken in order, so the first `taken` are in. */
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
        struct wire_write *w;
        int rc;

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
        w->res = cqe->res;
        io_uring_cqe_seen(&sd->ring, cqe);
    }
    if (err != 0)
        sender_fail(sd, taken, err);
    return sd->used;
}

struct wire_write *
sender_written(struct sender *sd, size_t i)
{
    return &sd->slot[i];
}

void
sender_reset(struct sender *sd)
{
    sd->used = 0;
}
