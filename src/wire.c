/* wire.c -- a stream's socket: HTTP chunk framing over shared frames and
 * the sendmsg calls. Owns the socket and the unwritten response head from
 * wire_open to wire_close; borrows the frames of each write. Each frame
 * goes out as "<hex len>\r\n" frame "\r\n" with no copy: the iovecs point
 * into the shared frame. */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sse.h"
#include "wire.h"

void
wire_init(struct wire *w)
{
    memset(w, 0, sizeof(*w));
    w->fd = -1;
}

int
wire_open(struct wire *w, int fd, int chunked, const char *head, size_t head_len,
          struct event *wake)
{
    char *h = NULL;

    if (head_len > 0) {
        if ((h = malloc(head_len)) == NULL)
            return -1;
        memcpy(h, head, head_len);
    }
    w->fd = fd;
    w->chunked = chunked;
    w->finished = 0;
    w->head = h;
    w->head_len = head_len;
    w->off = 0;
    w->wake = wake;
    return 0;
}

int
wire_is_open(const struct wire *w)
{
    return w->fd >= 0;
}

int
wire_head_pending(const struct wire *w)
{
    return w->head != NULL;
}

/* Adds the part of seg after *skip to ww's iovecs; *skip shrinks by what
 * the segment held. */
static void
wire_add(struct wire_write *ww, const char *seg, size_t len, size_t *skip)
{
    struct iovec *v;

    if (*skip >= len) {
        *skip -= len;
        return;
    }
    v = &ww->iov[ww->mh.msg_iovlen++];
    v->iov_base = (void *)(uintptr_t)(seg + *skip);
    v->iov_len = len - *skip;
    ww->total += len - *skip;
    *skip = 0;
}

void
wire_prepare(const struct wire *w, struct wire_write *ww)
{
    size_t skip = w->off;

    memset(&ww->mh, 0, sizeof(ww->mh));
    ww->mh.msg_iov = ww->iov;
    ww->fd = w->fd;
    ww->total = 0;
    ww->res = 0;
    if (w->head != NULL) {
        wire_add(ww, w->head, w->head_len, &skip);
        skip = 0;
    }
    for (size_t i = 0; i < ww->frames; i++) {
        const struct sse_frame *f = ww->frame[i];

        ww->plen[i] = 0;
        if (w->chunked)
            ww->plen[i] = (size_t)snprintf(ww->prefix[i], sizeof(ww->prefix[i]),
                                           "%zx\r\n", f->len);
        wire_add(ww, ww->prefix[i], ww->plen[i], &skip);
        wire_add(ww, f->bytes, f->len, &skip);
        if (w->chunked)
            wire_add(ww, "\r\n", 2, &skip);
    }
}

void
wire_issue(struct wire_write *ww)
{
    /* sendmsg, not writev: a socket call skips the file layer (vfs_writev,
     * fdget_pos: about 9% of a fan-out's CPU in perf), and MSG_NOSIGNAL
     * makes a gone client an error, not SIGPIPE. */
    ssize_t n = sendmsg(ww->fd, &ww->mh, MSG_NOSIGNAL | MSG_DONTWAIT);

    ww->res = n < 0 ? -errno : n;
}

size_t
wire_apply(struct wire *w, const struct wire_write *ww, size_t n)
{
    size_t left = n + w->off, done = 0;
    size_t extra = w->chunked ? 2 : 0;

    if (w->head != NULL) {
        if (left < w->head_len) {
            w->off = left;
            return 0;
        }
        left -= w->head_len;
        free(w->head);
        w->head = NULL;
        w->head_len = 0;
    }
    w->off = 0;
    for (; done < ww->frames; done++) {
        size_t clen = ww->plen[done] + ww->frame[done]->len + extra;

        if (left < clen) {
            w->off = left;
            break;
        }
        left -= clen;
    }
    return done;
}

void
wire_finish(struct wire *w)
{
    if (w->finished || w->fd < 0)
        return;
    w->finished = 1;
    /* Best effort: the client may be gone, and resumes either way. */
    if (w->chunked)
        (void)!send(w->fd, "0\r\n\r\n", 5, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(w->fd, SHUT_WR);
}

void
wire_wake(const struct wire *w)
{
    if (w->wake != NULL)
        event_active(w->wake, EV_WRITE, 0);
}

void
wire_close(struct wire *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->head);
    wire_init(w);
}
