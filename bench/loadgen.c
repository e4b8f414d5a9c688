/* loadgen.c -- the benchmark's client: holds N SSE streams and publishes
 * events over a few keep-alive connections, on one libevent loop.
 *
 * Every event carries its send time (CLOCK_REALTIME, ns) and a global
 * sequence number in its payload. Each stream records which sequence
 * numbers it saw (a bitmap), so a lost or duplicated delivery is counted,
 * not guessed; latency (send time to the kernel's receive time of the
 * bytes that completed the event, SO_TIMESTAMPNS) goes into a log-bucket
 * histogram. Everything is
 * bounded: a stream count, an event count, and a deadline per phase.
 *
 *   loadgen --port P --api ssegate|nchan --streams N --users U
 *           [--accounts] [--events E] [--rate R] [--duration S]
 *           [--publishers K] [--pad B] [--drain S] [--json FILE]
 *           [--port2 P2] [--idle S] [--max-events M]
 *
 * --api ssegate: GET /events/sse?userId=u, POST /events (also the Node peer)
 * --api nchan:   GET /sub?id=u,            POST /pub?id=u
 * --accounts:    create U accounts first (POST /accounts) and use their ids
 * --port2 P2:    a second instance; odd streams and publishers use it
 * --idle S:      hold the open streams idle S seconds before publishing
 * --rate 0:      publish as fast as responses come back (default)
 * --duration S:  with --events 0, publish for S seconds (at most
 *                --max-events, default 300000: sizes the loss bitmaps)
 * Prints one JSON object with the results: deliveries/s counts every
 * delivery from the first event sent to the last one received, so a
 * server that only queues what it cannot write gets no credit for it. */
/* For strcasestr (bench/run also passes -D_GNU_SOURCE). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (128 * 1024)
#define HIST_BUCKETS 200        /* 20 per decade from 1 us to 10^10 ns */

enum api { API_SSEGATE, API_NCHAN };

struct opts {
    const char *host;
    int port;
    enum api api;
    int port2;                  /* 0, or a second instance: streams and publishers alternate */
    double idle;                /* seconds to hold the streams idle before publishing */
    int streams, users, accounts, publishers, pad;
    long events, max_events;
    double rate, duration, drain, connect_timeout;
    const char *json;
};

/* ------------------------------------------------------------ histogram */

struct hist {
    uint64_t n[HIST_BUCKETS];
    uint64_t count;
    double max_ns;
};

static int
hist_bucket(double ns)
{
    int b = ns < 1000 ? 0 : (int)(log10(ns / 1000.0) * 20.0);

    return b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
}

static void
hist_add(struct hist *h, double ns)
{
    h->n[hist_bucket(ns)]++;
    h->count++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

/* The upper edge of the bucket holding quantile q, in milliseconds. */
static double
hist_quantile_ms(const struct hist *h, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)h->count), seen = 0;

    if (h->count == 0)
        return 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += h->n[b];
        if (seen >= want)
            return 1000.0 * pow(10.0, (b + 1) / 20.0) / 1e6;
    }
    return h->max_ns / 1e6;
}

/* ------------------------------------------------------------- state */

struct stream {
    int fd;
    struct event *ev;
    int index;
    int user;                   /* index into users[] */
    int state;                  /* 0 head, 1 body, 2 closed */
    int chunked;
    int cstate;                 /* chunked: 0 size line, 1 data, 2 CRLF after data */
    long chunk_left;
    char *line;                 /* the response head, then the SSE line being read */
    size_t line_len;
    long long ev_t;             /* fields of the event being read */
    long ev_s;
    long long rx_ns;            /* kernel receive time of the bytes being parsed */
    uint8_t *seen;              /* bitmap over sequence numbers */
    long delivered, dups;
};

struct publisher {
    struct bufferevent *bev;
    int port;
    int busy;
    long seq;                   /* the request in flight */
    int head_done;
    int status;
    long body_left;
};

static struct opts o = {
    .host = "127.0.0.1", .port = 3000, .api = API_SSEGATE, .streams = 100,
    .users = 100, .publishers = 4, .pad = 64, .max_events = 300000,
    .drain = 10, .connect_timeout = 30,
};
static struct event_base *base;
static struct stream *streams;
static struct publisher *pubs;
static char (*users)[32];
static long *user_accepted;     /* accepted events per user */
static uint8_t *accepted_bit;   /* per sequence number */
static int *event_user;         /* per sequence number */
static long long *event_sent;   /* ns, per sequence number */
static long long *event_first;  /* ns of the first delivery, per sequence */
static long long *event_last;   /* ns of the last delivery, per sequence */
static int *event_recv;         /* deliveries, per sequence */
static long max_events;         /* capacity of the per-event arrays */
static long next_seq, accepted, rejected, outstanding, reconnects;
static int streams_open, streams_failed, streams_closed;
static struct hist lat;
static long long t_pub_start, t_pub_end;
static long long t_first_sent, t_last_rx;   /* wall clock: deliveries/s spans these */
static int publishing_done;
static uint64_t rng = 88172645463325252ULL;

static long long
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Event stamps use the wall clock, the clock of SO_TIMESTAMPNS. */
static long long
wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t
xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void
die(const char *what)
{
    fprintf(stderr, "loadgen: %s\n", what);
    exit(2);
}

static struct bufferevent *
connect_to(int port)
{
    struct sockaddr_in sin;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, o.host, &sin.sin_addr);
    if (bev == NULL || bufferevent_socket_connect(bev, (struct sockaddr *)&sin, sizeof(sin)) != 0)
        die("cannot connect");
    return bev;
}

/* ------------------------------------------------------------ streams */
/* Streams read their sockets directly (recvmsg), not through
 * bufferevents: each read carries the kernel's receive time
 * (SO_TIMESTAMPNS, CLOCK_REALTIME), and every event completed by that
 * read is timed with it. Latencies then measure when the server's bytes
 * reached the client's socket, not how long this one client thread took
 * to get round to reading thousands of sockets after a fan-out. */

static void
stream_event_done(struct stream *s)
{
    long long now = s->rx_ns;
    long q = s->ev_s;

    if (q < 0 || q >= max_events || s->ev_t <= 0)
        return;
    if (s->seen[q >> 3] & (1u << (q & 7))) {
        s->dups++;
        return;
    }
    s->seen[q >> 3] |= (uint8_t)(1u << (q & 7));
    s->delivered++;
    hist_add(&lat, now > s->ev_t ? (double)(now - s->ev_t) : 0);
    event_recv[q]++;
    if (event_first[q] == 0 || now < event_first[q])
        event_first[q] = now;
    if (now > event_last[q])
        event_last[q] = now;
    if (now > t_last_rx)
        t_last_rx = now;
}

/* One SSE line (no newline). Our payloads carry "t":<ns> and "s":<seq>. */
static void
stream_line(struct stream *s, char *line, size_t len)
{
    char *p;

    if (len == 0) {
        stream_event_done(s);
        s->ev_t = 0;
        s->ev_s = -1;
        return;
    }
    if (len < 5 || strncmp(line, "data:", 5) != 0)
        return;
    line[len] = '\0';
    if ((p = strstr(line, "\"t\":")) != NULL)
        s->ev_t = strtoll(p + 4, NULL, 10);
    if ((p = strstr(line, "\"s\":")) != NULL)
        s->ev_s = strtol(p + 4, NULL, 10);
}

static void
stream_body(struct stream *s, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '\n') {
            size_t l = s->line_len;

            if (l > 0 && s->line[l - 1] == '\r')
                l--;
            stream_line(s, s->line, l);
            s->line_len = 0;
        } else if (s->line_len < MAX_LINE - 1) {
            s->line[s->line_len++] = d[i];
        }
    }
}

static void
stream_close(struct stream *s)
{
    if (s->state == 2)
        return;
    if (s->state == 0)
        streams_failed++;
    s->state = 2;
    streams_closed++;
    event_free(s->ev);
    s->ev = NULL;
    close(s->fd);
    s->fd = -1;
}

/* The response head, accumulated in s->line. Returns the bytes of d it
 * used, or -1 if the stream was refused and closed. */
static long
stream_head(struct stream *s, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s->line_len >= MAX_LINE - 1)
            break;
        s->line[s->line_len++] = d[i];
        if (s->line_len >= 4 && memcmp(s->line + s->line_len - 4, "\r\n\r\n", 4) == 0) {
            s->line[s->line_len] = '\0';
            if (strncmp(s->line, "HTTP/1.1 200", 12) != 0 &&
                strncmp(s->line, "HTTP/1.0 200", 12) != 0) {
                stream_close(s);
                return -1;
            }
            s->chunked = strcasestr(s->line, "transfer-encoding: chunked") != NULL;
            s->cstate = 0;
            s->chunk_left = 0;
            s->line_len = 0;
            s->state = 1;
            streams_open++;
            return (long)i + 1;
        }
    }
    return (long)n;
}

/* Body bytes: de-chunked (a small state machine) into stream_body. */
static void
stream_feed(struct stream *s, const char *d, size_t n)
{
    size_t i = 0;

    if (!s->chunked) {
        stream_body(s, d, n);
        return;
    }
    while (i < n && s->state == 1) {
        switch (s->cstate) {
        case 0: {                   /* "<hex>[;ext]\r\n" */
            char c = d[i++];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

            if (v >= 0 && s->chunk_left >= 0)
                s->chunk_left = s->chunk_left * 16 + v;
            else if (c == ';')
                s->chunk_left = -1 - s->chunk_left;     /* extensions: stop counting */
            else if (c == '\n') {
                if (s->chunk_left < 0)
                    s->chunk_left = -1 - s->chunk_left;
                if (s->chunk_left == 0) {               /* the server ended the stream */
                    stream_close(s);
                    return;
                }
                s->cstate = 1;
            }
            break;
        }
        case 1: {
            size_t take = n - i < (size_t)s->chunk_left ? n - i : (size_t)s->chunk_left;

            stream_body(s, d + i, take);
            i += take;
            s->chunk_left -= (long)take;
            if (s->chunk_left == 0)
                s->cstate = 2;
            break;
        }
        case 2:                     /* "\r\n" */
            if (d[i++] == '\n')
                s->cstate = 0;
            break;
        }
    }
}

static void
stream_on_read(evutil_socket_t fd, short what, void *arg)
{
    static char buf[256 * 1024];
    struct stream *s = arg;
    char cbuf[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = { buf, sizeof(buf) };
    struct msghdr mh;
    struct cmsghdr *cm;
    ssize_t n;
    long used = 0;

    (void)what;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof(cbuf);
    n = recvmsg(fd, &mh, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        stream_close(s);
        return;
    }
    s->rx_ns = 0;
    for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;

            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            s->rx_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    }
    if (s->rx_ns == 0)
        s->rx_ns = wall_ns();
    if (s->state == 0 && (used = stream_head(s, buf, (size_t)n)) < 0)
        return;
    if (s->state == 1)
        stream_feed(s, buf + used, (size_t)(n - used));
}

/* Connected (or failed): send the request, then read. */
static void
stream_on_connect(evutil_socket_t fd, short what, void *arg)
{
    struct stream *s = arg;
    char req[256];
    int err = 0, n;
    socklen_t el = sizeof(err);

    (void)what;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        stream_close(s);
        return;
    }
    if (o.api == API_NCHAN)
        n = snprintf(req, sizeof(req), "GET /sub?id=%s HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: text/event-stream\r\n\r\n", users[s->user], o.host);
    else
        n = snprintf(req, sizeof(req), "GET /events/sse?userId=%s HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: text/event-stream\r\n\r\n", users[s->user], o.host);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {     /* a fresh socket takes 200 bytes */
        stream_close(s);
        return;
    }
    event_free(s->ev);
    s->ev = event_new(base, fd, EV_READ | EV_PERSIST, stream_on_read, s);
    if (s->ev == NULL || event_add(s->ev, NULL) != 0)
        die("out of memory");
}

static void
stream_connect(struct stream *s, int port)
{
    struct sockaddr_in sin;
    int one = 1;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, o.host, &sin.sin_addr);
    if ((s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        die("cannot open a socket (file descriptor limit?)");
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    if (connect(s->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 && errno != EINPROGRESS)
        die("cannot connect");
    s->ev = event_new(base, s->fd, EV_WRITE, stream_on_connect, s);
    if (s->ev == NULL || event_add(s->ev, NULL) != 0)
        die("out of memory");
}

/* ----------------------------------------------------------- publishers */

static void publisher_next(struct publisher *p);
static void publisher_on_read(struct bufferevent *bev, void *arg);

static void
publisher_send(struct publisher *p, long seq)
{
    char body[4096], req[4608];
    int u = (int)(xorshift() % (uint64_t)o.users), bl, rl;
    long long t = wall_ns();

    event_user[seq] = u;
    event_sent[seq] = t;
    if (t_first_sent == 0)
        t_first_sent = t;
    if (o.api == API_NCHAN)
        bl = snprintf(body, sizeof(body), "{\"t\":%lld,\"s\":%ld,\"p\":\"%.*s\"}", t, seq,
                      o.pad, "................................................................"
                      "................................................................"
                      "................................................................"
                      "................................................................");
    else
        bl = snprintf(body, sizeof(body), "{\"userId\":\"%s\",\"type\":\"b\",\"data\":{\"t\":%lld,"
                      "\"s\":%ld,\"p\":\"%.*s\"}}", users[u], t, seq, o.pad,
                      "................................................................"
                      "................................................................"
                      "................................................................"
                      "................................................................");
    if (o.api == API_NCHAN)
        rl = snprintf(req, sizeof(req), "POST /pub?id=%s HTTP/1.1\r\nHost: %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      users[u], o.host, bl, body);
    else
        rl = snprintf(req, sizeof(req), "POST /events HTTP/1.1\r\nHost: %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      o.host, bl, body);
    p->busy = 1;
    p->seq = seq;
    p->head_done = 0;
    outstanding++;
    bufferevent_write(p->bev, req, (size_t)rl);
}

/* Nothing more will be sent: the count or the duration is reached. */
static int
publisher_finished(void)
{
    if (next_seq >= max_events || (o.events > 0 && next_seq >= o.events))
        return 1;
    return o.events <= 0 && (double)(now_ns() - t_pub_start) / 1e9 >= o.duration;
}

/* Another event may go now (not finished, and within the rate). */
static int
publisher_due(void)
{
    if (publishing_done || publisher_finished())
        return 0;
    return o.rate <= 0 ||
           (double)next_seq < o.rate * (double)(now_ns() - t_pub_start) / 1e9;
}

static void
publisher_next(struct publisher *p)
{
    if (!p->busy && publisher_due())
        publisher_send(p, next_seq++);
}

static void
publisher_response(struct publisher *p)
{
    long seq = p->seq;

    outstanding--;
    p->busy = 0;
    if (p->status >= 200 && p->status < 300) {
        accepted++;
        accepted_bit[seq >> 3] |= (uint8_t)(1u << (seq & 7));
        user_accepted[event_user[seq]]++;
    } else {
        rejected++;
    }
    t_pub_end = now_ns();
    publisher_next(p);
}

static void
publisher_on_read(struct bufferevent *bev, void *arg)
{
    struct publisher *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    for (;;) {
        if (!p->head_done) {
            struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
            char *head, *cl;
            size_t hl;

            if (end.pos < 0)
                return;
            hl = (size_t)end.pos + 4;
            head = malloc(hl + 1);
            evbuffer_remove(in, head, hl);
            head[hl] = '\0';
            p->status = atoi(head + 9);
            cl = strcasestr(head, "content-length:");
            p->body_left = cl ? strtol(cl + 15, NULL, 10) : 0;
            free(head);
            p->head_done = 1;
        }
        if ((long)evbuffer_get_length(in) < p->body_left)
            return;
        evbuffer_drain(in, (size_t)p->body_left);
        p->head_done = 0;
        publisher_response(p);
        if (evbuffer_get_length(in) == 0)
            return;
    }
}

static void publisher_on_event(struct bufferevent *bev, short what, void *arg);

/* A server may close a keep-alive connection (a request limit, an idle
 * timeout): open a new one. A request in flight then is unknown and
 * counted as rejected, never as delivered-or-lost. */
static void
publisher_reconnect(struct publisher *p)
{
    int port = p->port;

    bufferevent_free(p->bev);
    if (p->busy) {
        outstanding--;
        rejected++;
        p->busy = 0;
    }
    p->head_done = 0;
    p->bev = connect_to(port);
    bufferevent_setcb(p->bev, publisher_on_read, NULL, publisher_on_event, p);
    bufferevent_enable(p->bev, EV_READ);
    reconnects++;
}

static void
publisher_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct publisher *p = arg;

    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;

        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (reconnects > 1000)
            die("publisher connections keep closing");
        publisher_reconnect(p);
    }
}

/* ------------------------------------------------------------- phases */

static void
tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (int i = 0; i < o.publishers; i++)
        publisher_next(&pubs[i]);
    if (publisher_finished() && outstanding == 0)
        publishing_done = 1;
}

/* Runs the loop until done() or the deadline (seconds). */
static int
run_until(int (*done)(void), double seconds)
{
    long long deadline = now_ns() + (long long)(seconds * 1e9);
    struct timeval slice = { 0, 1000 };

    while (!done()) {
        if (now_ns() > deadline)
            return -1;
        event_base_loopexit(base, &slice);
        event_base_dispatch(base);
    }
    return 0;
}

static int
never(void)
{
    return 0;
}

static int
all_streams_ready(void)
{
    return streams_open + streams_failed >= o.streams;
}

static int
publishing_finished(void)
{
    return publishing_done;
}

static long expected_total;

static int
all_delivered(void)
{
    long got = 0;

    for (int i = 0; i < o.streams; i++)
        got += streams[i].delivered;
    return got >= expected_total;
}

/* POST /accounts U times on one blocking socket (set-up, not measured). */
static void
create_accounts(void)
{
    for (int u = 0; u < o.users; u++) {
        struct sockaddr_in sin;
        char req[256], resp[2048];
        int fd = socket(AF_INET, SOCK_STREAM, 0), n, got = 0;
        char *id;

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)o.port);
        inet_pton(AF_INET, o.host, &sin.sin_addr);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
            die("cannot connect to create accounts");
        n = snprintf(req, sizeof(req), "POST /accounts HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"name\":\"bench\"}",
                     o.host);
        if (write(fd, req, (size_t)n) != n)
            die("write");
        while (got < (int)sizeof(resp) - 1 && (n = (int)read(fd, resp + got, sizeof(resp) - 1 - (size_t)got)) > 0)
            got += n;
        resp[got] = '\0';
        close(fd);
        if ((id = strstr(resp, "{\"id\":\"")) == NULL)
            die("account creation failed");
        snprintf(users[u], sizeof(users[u]), "%.*s", (int)strcspn(id + 7, "\""), id + 7);
    }
}

static void
usage(void)
{
    fprintf(stderr, "usage: loadgen --port P [--host H] [--api ssegate|nchan] [--streams N] [--users U]\n"
                    "       [--accounts] [--events E | --duration S] [--rate R] [--publishers K]\n"
                    "       [--pad B] [--drain S] [--json FILE]\n");
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        { "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "api", 1, 0, 'a' },
        { "streams", 1, 0, 'n' }, { "users", 1, 0, 'u' }, { "accounts", 0, 0, 'A' },
        { "events", 1, 0, 'e' }, { "rate", 1, 0, 'r' }, { "duration", 1, 0, 'd' },
        { "publishers", 1, 0, 'k' }, { "pad", 1, 0, 'P' }, { "drain", 1, 0, 'D' },
        { "json", 1, 0, 'j' }, { "max-events", 1, 0, 'M' }, { "port2", 1, 0, '2' },
        { "idle", 1, 0, 'I' }, { 0, 0, 0, 0 }
    };
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': o.host = optarg; break;
        case 'p': o.port = atoi(optarg); break;
        case 'a': o.api = strcmp(optarg, "nchan") == 0 ? API_NCHAN : API_SSEGATE; break;
        case 'n': o.streams = atoi(optarg); break;
        case 'u': o.users = atoi(optarg); break;
        case 'A': o.accounts = 1; break;
        case 'e': o.events = atol(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'd': o.duration = atof(optarg); break;
        case 'k': o.publishers = atoi(optarg); break;
        case 'P': o.pad = atoi(optarg); break;
        case 'D': o.drain = atof(optarg); break;
        case 'j': o.json = optarg; break;
        case 'M': o.max_events = atol(optarg); break;
        case '2': o.port2 = atoi(optarg); break;
        case 'I': o.idle = atof(optarg); break;
        default: usage();
        }
    }
    if (o.port <= 0 || o.streams < 0 || o.users <= 0 || o.publishers <= 0 ||
        o.pad < 0 || o.pad > 256 || (o.events <= 0 && o.duration <= 0) ||
        o.max_events <= 0)
        usage();
}

int
main(int argc, char **argv)
{
    struct rlimit rl;
    struct event *tick_ev;
    struct timeval ms = { 0, 1000 };
    long delivered = 0, dups = 0, lost = 0;
    struct hist first = { { 0 }, 0, 0 }, last = { { 0 }, 0, 0 };
    FILE *out = stdout;
    double pub_secs;

    parse_args(argc, argv);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Sized for the run: the events given, or --max-events for a timed run. */
    max_events = o.events > 0 ? o.events : o.max_events;
    base = event_base_new();
    users = calloc((size_t)o.users, sizeof(*users));
    user_accepted = calloc((size_t)o.users, sizeof(long));
    streams = calloc((size_t)(o.streams ? o.streams : 1), sizeof(*streams));
    pubs = calloc((size_t)o.publishers, sizeof(*pubs));
    accepted_bit = calloc((size_t)max_events / 8 + 1, 1);
    event_user = calloc((size_t)max_events, sizeof(int));
    event_sent = calloc((size_t)max_events, sizeof(long long));
    event_first = calloc((size_t)max_events, sizeof(long long));
    event_last = calloc((size_t)max_events, sizeof(long long));
    event_recv = calloc((size_t)max_events, sizeof(int));
    if (!base || !users || !user_accepted || !streams || !pubs || !accepted_bit ||
        !event_user || !event_sent || !event_first || !event_last || !event_recv)
        die("out of memory");
    for (int u = 0; u < o.users; u++)
        snprintf(users[u], sizeof(users[u]), "%d", u + 1);
    if (o.accounts)
        create_accounts();

    for (int i = 0; i < o.streams; i++) {
        struct stream *s = &streams[i];

        s->index = i;
        s->user = i % o.users;
        s->ev_s = -1;
        s->line = malloc(MAX_LINE);
        s->seen = calloc((size_t)max_events / 8 + 1, 1);
        if (!s->line || !s->seen)
            die("out of memory");
        stream_connect(s, o.port2 && (i & 1) ? o.port2 : o.port);
    }
    if (run_until(all_streams_ready, o.connect_timeout) == -1 || streams_failed > 0) {
        fprintf(stderr, "loadgen: %d of %d streams open, %d failed\n", streams_open, o.streams,
                streams_failed);
        return 1;
    }
    /* Phase markers on stderr let bench/run sample the server's CPU and
     * memory at the right moments. */
    fprintf(stderr, "phase streams-open\n");
    fflush(stderr);
    if (o.idle > 0) {
        run_until(never, o.idle);
        fprintf(stderr, "phase idle-done\n");
        fflush(stderr);
    }
    for (int i = 0; i < o.publishers; i++) {
        pubs[i].port = o.port2 && (i & 1) ? o.port2 : o.port;
        pubs[i].bev = connect_to(pubs[i].port);
        bufferevent_setcb(pubs[i].bev, publisher_on_read, NULL, publisher_on_event, &pubs[i]);
        bufferevent_enable(pubs[i].bev, EV_READ);
    }
    tick_ev = event_new(base, -1, EV_PERSIST, tick, NULL);
    event_add(tick_ev, &ms);
    t_pub_start = now_ns();
    if (run_until(publishing_finished, (o.events > 0 ? (o.rate > 0 ? (double)o.events / o.rate : 60)
                                                     : o.duration) + 30) == -1)
        fprintf(stderr, "loadgen: publishing did not finish in time\n");
    pub_secs = (double)(t_pub_end - t_pub_start) / 1e9;
    fprintf(stderr, "phase publish-done\n");
    fflush(stderr);
    {
        long *per_user = calloc((size_t)o.users, sizeof(long));

        if (per_user == NULL)
            die("out of memory");
        for (int i = 0; i < o.streams; i++)
            per_user[streams[i].user]++;
        for (int u = 0; u < o.users; u++)
            expected_total += user_accepted[u] * per_user[u];
        free(per_user);
    }
    run_until(all_delivered, o.drain);
    fprintf(stderr, "phase drained\n");
    fflush(stderr);
    for (int i = 0; i < o.streams; i++) {
        delivered += streams[i].delivered;
        dups += streams[i].dups;
    }
    lost = expected_total - delivered;
    /* Time until the first and the last recipient had each event: the
     * first is the publish path, the gap to the last is the fan-out. */
    for (long q = 0; q < next_seq; q++) {
        if (event_recv[q] > 0) {
            hist_add(&first, (double)(event_first[q] - event_sent[q]));
            hist_add(&last, (double)(event_last[q] - event_sent[q]));
        }
    }
    if (o.json != NULL && (out = fopen(o.json, "w")) == NULL)
        die("cannot write the JSON file");
    fprintf(out, "{\"streams\":%d,\"streams_closed\":%d,\"users\":%d,\"published\":%ld,\"accepted\":%ld,"
            "\"rejected\":%ld,\"reconnects\":%ld,\"publish_secs\":%.3f,\"accepted_per_sec\":%.1f,"
            "\"expected_deliveries\":%ld,\"delivered\":%ld,\"lost\":%ld,\"duplicates\":%ld,"
            "\"deliveries_per_sec\":%.1f,"
            "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
            "\"first_recipient_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
            "\"last_recipient_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
            o.streams, streams_closed, o.users, next_seq, accepted, rejected, reconnects, pub_secs,
            pub_secs > 0 ? (double)accepted / pub_secs : 0, expected_total, delivered, lost, dups,
            t_last_rx > t_first_sent ? (double)delivered * 1e9 / (double)(t_last_rx - t_first_sent) : 0,
            hist_quantile_ms(&lat, 0.5), hist_quantile_ms(&lat, 0.99), hist_quantile_ms(&lat, 0.999),
            lat.max_ns / 1e6, hist_quantile_ms(&first, 0.5), hist_quantile_ms(&first, 0.99),
            first.max_ns / 1e6, hist_quantile_ms(&last, 0.5), hist_quantile_ms(&last, 0.99),
            last.max_ns / 1e6);
    if (out != stdout)
        fclose(out);
    return lost != 0 || dups != 0 || rejected != 0 ? 3 : 0;
}
