/* sender.h -- a fan-out's socket writes, many in one system call
 * (io_uring). One sender per thread: it is not thread-safe. */
#ifndef SSEGATE_SENDER_H
#define SSEGATE_SENDER_H

#include <stddef.h>

struct sender;
struct sse_frame;
struct stream;

/* Returns a sender, or NULL with errno set when io_uring is not
 * available (an old kernel, a seccomp filter, kernel.io_uring_disabled):
 * the caller then pushes with stream_push_many. */
struct sender *
sender_new(void);

/* Frees sd; nothing may be pending (sender_flush first). NULL is
 * ignored. */
void
sender_free(struct sender *sd);

/* stream_push_many(s, f, n), except that the write it would do now is
 * queued in sd and issued, with the others, by sender_flush (or when sd
 * is full). s must stay in the hub until then. With sd NULL (no
 * io_uring) it is stream_push_many. */
void
sender_add(struct sender *sd, struct stream *s, struct sse_frame *const *f, size_t n);

/* Issues every queued write in one io_uring_enter and finishes each
 * (stream_send_done). NULL is ignored. */
void
sender_flush(struct sender *sd);

#endif
