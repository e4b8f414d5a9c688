/* sender.h -- many prepared socket writes in one system call (io_uring).
 * It issues wire_writes and reports each one's outcome in its res; it
 * knows nothing of the streams that prepared them. One sender per
 * thread: it is not thread-safe. */
#ifndef SSEGATE_SENDER_H
#define SSEGATE_SENDER_H

#include <stddef.h>

struct sender;
struct wire_write;

/* Returns a sender, or NULL with errno set when io_uring is not
 * available (an old kernel, a seccomp filter, kernel.io_uring_disabled):
 * the caller then issues each write itself (wire_issue). */
struct sender *
sender_new(void);

/* Frees sd; nothing may be queued (sender_flush first). NULL is ignored. */
void
sender_free(struct sender *sd);

/* The slot to prepare the next write in; valid until sender_queue or
 * sender_reset. */
struct wire_write *
sender_slot(struct sender *sd);

enum sender_queued {
    SENDER_QUEUED,          /* in the ring, issued by sender_flush */
    SENDER_FULL,            /* in the ring, which is now full: flush */
    SENDER_ISSUED           /* issued at once with sendmsg (too many pieces
                             * for the ring): its res is set, handle it now;
                             * the slot is free again */
};

/* Queues (or issues) the write prepared in sender_slot's slot. */
enum sender_queued
sender_queue(struct sender *sd);

/* Issues every queued write (one io_uring_enter) and waits for all their
 * outcomes, which it stores in each write's res. Returns how many writes
 * there are; sender_written(sd, i) gives each, in queue order. */
size_t
sender_flush(struct sender *sd);

struct wire_write *
sender_written(struct sender *sd, size_t i);

/* Empties the queue, once every flushed write was handled. */
void
sender_reset(struct sender *sd);

#endif
