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
 *           [--port2 P2] [--port3 P3] [--idle S] [--max-events M]
 *           [--topic NAME] [--serial]
 *
 * --api ssegate: GET /events/sse?userId=u, POST /events (also the Node peer)
 * --api nchan:   GET /sub?id=u,            POST /pub?id=u
 * --accounts:    create U accounts first (POST /accounts) and use their ids
 * --port2 P2:    a second instance; odd streams and publishers use it
 * --port3 P3:    a third (with --port2): stream and publisher i use
 *                instance i % 3
 * --topic NAME:  a room: every stream names topic NAME (ssegate:
 *                GET /events/sse?topic=NAME, events POSTed with "topic";
 *                nchan: the channel NAME), and --users is 1
 * --serial:      one publish in flight at a time, publisher seq % K next
 *                (so events alternate over the instances): the publish
 *                order is then the order every stream must see, and a
 *                stream seeing a sequence number below one it already
 *                saw counts it out of order (a failure)
 * --idle S:      hold the open streams idle S seconds before publishing
 * --rate 0:      publish as fast as responses come back (default)
 * --duration S:  with --events 0, publish for S seconds (at most
 *                --max-events, default 300000: sizes the loss bitmaps)
 * Prints one JSON object with the results: deliveries/s counts every
 * delivery from the first event sent to the last one received, so a
 * server that only queues what it cannot write gets no credit for it.
 *
 * More modes (--mode; ssegate's API only) measure the recovery paths (a
 * lost subscription and a storm of resuming clients) and topics opening
 * and closing (churn). They are described with their code further down:
 *
 *   --mode recovery  [--redis-port RP] [--restart] [--outage S] [--rate R]
 *                    [--warmup S] [--after S] [--deadline S]
 *   --mode prepare   --users U --history H --users-file F   (set-up)
 *   --mode storm     --users-file F --history H [--rate R] [--warmup S]
 *                    [--after S] [--deadline S] [--observers N]
 *   --mode churn     --port2 P2 --redis-port RP --topics T --rate R
 *                    --duration S [--churn-rate C] [--hold S] [--grace S]
 *                    [--bytes-events N] */
/* For strcasestr (bench/run also passes -D_GNU_SOURCE). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
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
enum mode { MODE_LOAD, MODE_RECOVERY, MODE_PREPARE, MODE_STORM, MODE_CHURN };

struct opts {
    const char *host;
    int port;
    enum api api;
    int port2;                  /* 0, or a second instance: streams and publishers alternate */
    int port3;                  /* 0, or a third (needs port2) */
    const char *topic;          /* a room: streams and events name this topic */
    int serial;                 /* one publish in flight; order checked */
    double idle;                /* seconds to hold the streams idle before publishing */
    int streams, users, accounts, publishers, pad;
    long events, max_events;
    double rate, duration, drain, connect_timeout;
    const char *json;
    /* The recovery modes (the end of this file). */
    enum mode mode;
    int redis_port;             /* recovery: the Redis to break the subscription on */
    const char *redis_channel;  /* recovery: the gateway's REDIS_CHANNEL */
    int restart;                /* recovery: the runner restarts Redis instead */
    double outage;              /* recovery: refuse SUBSCRIBE this long (ACL) */
    double warmup, after, deadline;
    int history;                /* prepare, storm: events per user in history */
    int observers;              /* storm: live-only streams opened before it */
    const char *users_file;     /* prepare writes it, storm reads it */
    int topics;                 /* churn: topics, two streams each */
    double churn_rate, hold, grace;     /* churn: closes/s; reopen delay; owed-until slack */
    long bytes_events;          /* churn: events per bytes burst */
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
    size_t line_len, line_cap;  /* line_cap: line's size (MAX_LINE, less for churn) */
    long long ev_t;             /* fields of the event being read */
    long ev_s;
    long long rx_ns;            /* kernel receive time of the bytes being parsed */
    uint8_t *seen;              /* bitmap over sequence numbers */
    long delivered, dups;
    long last_s, ooo;           /* --serial: the highest sequence seen; below it: out of order */
    /* The recovery modes only. */
    const char *resume;         /* Last-Event-ID to send, or NULL */
    int status;                 /* the response's status (0: none yet) */
    int server_closed;          /* the server ended it after its head */
    long long t_head;           /* wall ns of the response head */
    int ev_has_id, ev_gap;      /* the event being read: an id: line, event: gap */
    unsigned long long ev_ms, ev_seq;
    long ev_k;                  /* its "k" (a prepared history event), or -1 */
    unsigned long long last_ms, last_seq;   /* the last id seen */
    long id_regress, gaps;      /* ids not increasing; gap events */
    long next_k, k_missing, k_dups;         /* history replay, in order */
    long long t_replay_done;    /* wall ns of the last replayed event */
    /* --mode churn only: this connection's instance and what it saw of its
     * topic, by "k" (the topic's own event index, in id order). */
    int port;
    int stable;                 /* never closed by the client */
    size_t ev_len;              /* the event being read: its data line's length */
    long c_first_k, c_last_k, c_got, c_holes, c_dups, c_ooo, c_wrong;
};

struct publisher {
    struct bufferevent *bev;
    int port;
    int busy;
    long seq;                   /* the request in flight */
    int head_done;
    int status;
    long body_left;
    char body[512];             /* the response body (recovery modes) */
    long pos;                   /* prepare: this connection's next write */
};

static struct opts o = {
    .host = "127.0.0.1", .port = 3000, .api = API_SSEGATE, .streams = 100,
    .users = 100, .publishers = 4, .pad = 64, .max_events = 300000,
    .drain = 10, .connect_timeout = 30,
    .mode = MODE_LOAD, .redis_port = 6379, .redis_channel = "user-events",
    .warmup = 2, .after = 5, .deadline = 40, .history = 1000,
    .topics = 10000, .churn_rate = 200, .hold = 0.5, .grace = 2, .bytes_events = 2000,
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

/* The instance stream or publisher i uses: i % the instances given. */
static int
port_for(int i)
{
    int n = o.port3 ? 3 : o.port2 ? 2 : 1;

    return (i % n) == 0 ? o.port : (i % n) == 1 ? o.port2 : o.port3;
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

static void stream_event_done_x(struct stream *s);
static void churn_event_done(struct stream *s);

static void
stream_event_done(struct stream *s)
{
    long long now = s->rx_ns;
    long q = s->ev_s;

    if (o.mode != MODE_LOAD) {
        stream_event_done_x(s);
        return;
    }
    if (q < 0 || q >= max_events || s->ev_t <= 0)
        return;
    if (s->seen[q >> 3] & (1u << (q & 7))) {
        s->dups++;
        return;
    }
    s->seen[q >> 3] |= (uint8_t)(1u << (q & 7));
    s->delivered++;
    /* Serial publishing: sequence order is publish order, the order every
     * stream must see (a gap is a loss, counted at the end). */
    if (o.serial && q < s->last_s)
        s->ooo++;
    if (q > s->last_s)
        s->last_s = q;
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
        s->ev_k = -1;
        s->ev_has_id = 0;
        s->ev_gap = 0;
        return;
    }
    if (o.mode != MODE_LOAD) {
        /* The recovery modes check order by the frames' ids. */
        if (len > 4 && strncmp(line, "id: ", 4) == 0) {
            line[len] = '\0';
            s->ev_ms = strtoull(line + 4, &p, 10);
            s->ev_seq = *p == '-' ? strtoull(p + 1, NULL, 10) : 0;
            s->ev_has_id = 1;
            return;
        }
        if (len >= 10 && strncmp(line, "event: gap", 10) == 0) {
            s->ev_gap = 1;
            return;
        }
    }
    if (len < 5 || strncmp(line, "data:", 5) != 0)
        return;
    s->ev_len = len - (len > 5 && line[5] == ' ' ? 6 : 5);   /* the envelope's bytes */
    line[len] = '\0';
    if ((p = strstr(line, "\"t\":")) != NULL)
        s->ev_t = strtoll(p + 4, NULL, 10);
    if ((p = strstr(line, "\"s\":")) != NULL)
        s->ev_s = strtol(p + 4, NULL, 10);
    if (o.mode != MODE_LOAD && (p = strstr(line, "\"k\":")) != NULL)
        s->ev_k = strtol(p + 4, NULL, 10);
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
        } else if (s->line_len < s->line_cap - 1) {
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
    else
        s->server_closed = 1;   /* EOF, an error or the body's end after the head */
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
        if (s->line_len >= s->line_cap - 1)
            break;
        s->line[s->line_len++] = d[i];
        if (s->line_len >= 4 && memcmp(s->line + s->line_len - 4, "\r\n\r\n", 4) == 0) {
            s->line[s->line_len] = '\0';
            s->status = s->line_len > 12 ? atoi(s->line + 9) : -1;
            s->t_head = s->rx_ns;
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
                     "Accept: text/event-stream\r\n\r\n", o.topic ? o.topic : users[s->user], o.host);
    else if (o.topic != NULL || o.mode == MODE_CHURN)
        n = snprintf(req, sizeof(req), "GET /events/sse?topic=%s HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: text/event-stream\r\n\r\n", o.topic ? o.topic : users[s->user],
                     o.host);
    else if (s->resume != NULL)
        n = snprintf(req, sizeof(req), "GET /events/sse?userId=%s HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: text/event-stream\r\nLast-Event-ID: %s\r\n\r\n",
                     users[s->user], o.host, s->resume);
    else
        n = snprintf(req, sizeof(req), "GET /events/sse?userId=%s HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: text/event-stream\r\n\r\n", users[s->user], o.host);
    if (n < 0 || n >= (int)sizeof(req) ||
        send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {     /* a fresh socket takes 200 bytes */
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

/* What an event's body is padded with (o.pad bytes of it, at most 256). */
static const char PAD[] =
    "................................................................"
    "................................................................"
    "................................................................"
    "................................................................";

/* Sends body (bl bytes, as snprintf counted it into a buffer of cap) as
 * publisher p's one request in flight, to target ("/events" or Nchan's
 * "/pub?id=..."), for event seq. */
static void
publisher_post(struct publisher *p, const char *target, const char *body, int bl,
               size_t cap, long seq)
{
    char req[4608];
    int rl;

    if (bl < 0 || (size_t)bl >= cap)
        die("an event does not fit its buffer");
    rl = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: %s\r\n"
                  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                  target, o.host, bl, body);
    if (rl < 0 || rl >= (int)sizeof(req))
        die("an event does not fit its buffer");
    p->busy = 1;
    p->seq = seq;
    p->head_done = 0;
    outstanding++;
    bufferevent_write(p->bev, req, (size_t)rl);
}

static void
publisher_send(struct publisher *p, long seq)
{
    char body[4096];
    int u = (int)(xorshift() % (uint64_t)o.users), bl;
    long long t = wall_ns();

    event_user[seq] = u;
    event_sent[seq] = t;
    if (t_first_sent == 0)
        t_first_sent = t;
    if (o.api != API_NCHAN && o.topic != NULL)
        bl = snprintf(body, sizeof(body), "{\"topic\":\"%s\",\"type\":\"chat.message\",\"data\":"
                      "{\"t\":%lld,\"s\":%ld,\"p\":\"%.*s\"}}", o.topic, t, seq, o.pad,
                      PAD);
    else if (o.api == API_NCHAN)
        bl = snprintf(body, sizeof(body), "{\"t\":%lld,\"s\":%ld,\"p\":\"%.*s\"}", t, seq,
                      o.pad, PAD);
    else
        bl = snprintf(body, sizeof(body), "{\"userId\":\"%s\",\"type\":\"b\",\"data\":{\"t\":%lld,"
                      "\"s\":%ld,\"p\":\"%.*s\"}}", users[u], t, seq, o.pad,
                      PAD);
    if (o.api == API_NCHAN) {
        char target[256];

        snprintf(target, sizeof(target), "/pub?id=%s", o.topic ? o.topic : users[u]);
        publisher_post(p, target, body, bl, sizeof(body), seq);
    } else {
        publisher_post(p, "/events", body, bl, sizeof(body), seq);
    }
}

/* The recovery modes: the mode's driver says when to stop; a schedule
 * that fell behind (every connection waiting on a stalled server) skips
 * the missed slots instead of bursting them out afterwards. */
static int pub_stop;
static double pace_slots;
static long pace_skipped, rejected_overloaded, rejected_unavailable;
#define PACE_SLACK 8

/* Nothing more will be sent: the count or the duration is reached. */
static long pub_limit;          /* churn: > 0, the last sequence number of a counted burst */

static int
publisher_finished(void)
{
    if (next_seq >= max_events || (o.events > 0 && next_seq >= o.events))
        return 1;
    if (pub_limit > 0 && next_seq >= pub_limit)
        return 1;
    if (o.mode != MODE_LOAD)
        return pub_stop;
    return o.events <= 0 && (double)(now_ns() - t_pub_start) / 1e9 >= o.duration;
}

/* Another event may go now (not finished, and within the rate). */
static int
publisher_due(void)
{
    double allowed;

    if (publishing_done || publisher_finished())
        return 0;
    if (o.rate <= 0)
        return 1;
    allowed = o.rate * (double)(now_ns() - t_pub_start) / 1e9;
    if (o.mode == MODE_LOAD)
        return (double)next_seq < allowed;
    if (allowed - pace_slots > PACE_SLACK) {
        pace_skipped += (long)(allowed - pace_slots) - PACE_SLACK;
        pace_slots = floor(allowed) - PACE_SLACK;
    }
    return pace_slots < allowed;
}

static void prepare_next(struct publisher *p);
static void prepare_response(struct publisher *p);
static void churn_publish(struct publisher *p);
static void churn_response(struct publisher *p);

static void
publisher_next(struct publisher *p)
{
    if (o.mode == MODE_PREPARE) {
        prepare_next(p);
        return;
    }
    if (o.mode == MODE_CHURN) {
        churn_publish(p);
        return;
    }
    /* --serial: one request in flight, and publisher seq % K sends it. */
    if (o.serial && (outstanding > 0 || p - pubs != next_seq % o.publishers))
        return;
    if (!p->busy && publisher_due()) {
        pace_slots += 1;
        publisher_send(p, next_seq++);
    }
}

static void
publisher_response(struct publisher *p)
{
    long seq = p->seq;

    if (o.mode == MODE_PREPARE) {
        prepare_response(p);
        return;
    }
    outstanding--;
    p->busy = 0;
    if (o.mode != MODE_LOAD && p->status == 503) {
        /* overloaded: nothing was written; redis_unavailable: maybe. */
        if (strstr(p->body, "overloaded") != NULL)
            rejected_overloaded++;
        else if (strstr(p->body, "redis_unavailable") != NULL)
            rejected_unavailable++;
    }
    if (p->status >= 200 && p->status < 300) {
        accepted++;
        accepted_bit[seq >> 3] |= (uint8_t)(1u << (seq & 7));
        user_accepted[event_user[seq]]++;
    } else {
        rejected++;
    }
    if (o.mode == MODE_CHURN)
        churn_response(p);
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
        p->body[0] = '\0';
        if (o.mode != MODE_LOAD && p->body_left < (long)sizeof(p->body)) {
            evbuffer_remove(in, p->body, (size_t)p->body_left);
            p->body[p->body_left] = '\0';
        } else {
            evbuffer_drain(in, (size_t)p->body_left);
        }
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
    if (p->busy && o.mode == MODE_CHURN)
        churn_response(p);      /* frees its topic; the request counts as rejected */
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

/* ======================================================= recovery modes
 *
 * --mode recovery: U accounts (--accounts), N streams (N/U per user)
 * opened without Last-Event-ID, and a publisher at --rate to random users.
 * After --warmup seconds the gateway loses its subscription: the
 * connection this client holds to Redis (--redis-port) sends
 * CLIENT KILL TYPE pubsub (with --outage S, SUBSCRIBE is first refused
 * for S seconds, ACL SETUSER default -subscribe, so the outage lasts
 * longer than one back-off); with --restart this client instead prints
 * "phase redis-restart" and the runner (bench/run) restarts redis-server
 * on the same port, its history kept in its append-only file. The
 * resubscribe is seen from Redis's side: PUBSUB NUMSUB on the channel,
 * polled every 2 ms, going from 0 (or the connection lost) back to 1.
 * Publishing goes on --after seconds past the resubscribe (at most
 * --deadline seconds past the kill), then every stream is drained.
 * Reported: the resubscribe (ms after the kill); the catch-up, i.e. when
 * every event sent before the resubscribe had reached every open stream
 * of its user (ms after the resubscribe and after the kill); the latency
 * of live events sent after the resubscribe (during the catch-up, and
 * all of them); lost and duplicated deliveries, ids out of order, and
 * the streams the gateway ended (a failure: their client would have to
 * resume).
 *
 * --mode prepare (set-up for storm, not a measurement): U accounts, then
 * --history events per user, each user's in order (a user's next event
 * is posted once its previous one is answered, so ids follow "k", its
 * index), over --publishers keep-alive connections as fast as they are
 * answered (503 overloaded is retried: nothing was written). Writes
 * "<userId> <id of the user's event k=0>" per line to --users-file.
 *
 * --mode storm: the users of --users-file, one stream each, all opened at
 * once with Last-Event-ID: the id of the user's k=0 event, so each has
 * --history - 1 events to replay, while a publisher posts live events at
 * --rate to those users (from --warmup seconds before the storm until
 * --after seconds after every stream is resolved, at most --deadline
 * seconds after the storm). Reported: the responses (200, 503, other),
 * when every 200 stream had its whole replay (exactly once, in order:
 * k = 1 .. history-1, ids increasing), the live events' losses,
 * duplicates and latency. --observers N more streams, for the first N
 * users, are opened before the publisher starts, without Last-Event-ID:
 * their live events' latency during the storm is what the storm costs
 * the streams that are not part of it (and the only live latency there
 * is when every storm stream is refused). */

#define OPEN_WAVE 1000          /* stream opens in flight at once (set-up) */

struct delivery {
    long q;                     /* sequence number */
    int stream;
    long long rx;               /* wall ns */
};

static struct delivery *dlv;
static size_t ndlv, capdlv;
static long replay_events;
static char (*resume_ids)[48];  /* storm: per user; prepare: filled in */
static long prepare_retries;

static void
record_delivery(long q, int stream, long long rx)
{
    if (ndlv == capdlv) {
        size_t ncap = capdlv ? capdlv * 2 : 65536;
        struct delivery *n = realloc(dlv, ncap * sizeof(*n));

        if (n == NULL)
            die("out of memory");
        dlv = n;
        capdlv = ncap;
    }
    dlv[ndlv].q = q;
    dlv[ndlv].stream = stream;
    dlv[ndlv].rx = rx;
    ndlv++;
}

/* One event completed on a stream (these modes): a prepared history event
 * ("k") is checked for order, a live one ("s") against its bitmap; every
 * event with an id must come after the last one. */
static void
stream_event_done_x(struct stream *s)
{
    long q = s->ev_s;
    int dup = 0, counted = 0;

    if (o.mode == MODE_CHURN) {
        churn_event_done(s);
        return;
    }
    if (s->ev_gap)
        s->gaps++;
    if (s->ev_k >= 0) {
        counted = 1;
        if (s->ev_k < s->next_k) {
            s->k_dups++;
            dup = 1;
        } else {
            if (s->ev_k > s->next_k)
                s->k_missing += s->ev_k - s->next_k;
            s->next_k = s->ev_k + 1;
            replay_events++;
            if (s->next_k >= o.history && s->t_replay_done == 0)
                s->t_replay_done = s->rx_ns;
        }
    } else if (s->ev_t > 0 && q >= 0 && q < max_events) {
        counted = 1;
        if (s->seen[q >> 3] & (1u << (q & 7))) {
            s->dups++;
            dup = 1;
        } else {
            s->seen[q >> 3] |= (uint8_t)(1u << (q & 7));
            s->delivered++;
            event_recv[q]++;
            if (event_first[q] == 0 || s->rx_ns < event_first[q])
                event_first[q] = s->rx_ns;
            if (s->rx_ns > event_last[q])
                event_last[q] = s->rx_ns;
            if (s->rx_ns > t_last_rx)
                t_last_rx = s->rx_ns;
            record_delivery(q, s->index, s->rx_ns);
        }
    }
    if (counted && s->ev_has_id && !dup) {
        if (s->last_ms > s->ev_ms || (s->last_ms == s->ev_ms && s->last_seq >= s->ev_seq))
            s->id_regress++;
        else {
            s->last_ms = s->ev_ms;
            s->last_seq = s->ev_seq;
        }
    }
}

static void
phase(const char *name)
{
    fprintf(stderr, "phase %s\n", name);
    fflush(stderr);
}

/* Quantiles are their bucket's upper edge (within 12 %), never above the
 * largest value seen. */
static void
hist_json(FILE *f, const char *name, const struct hist *h, int comma)
{
    double mx = h->max_ns / 1e6, p50 = hist_quantile_ms(h, 0.5), p99 = hist_quantile_ms(h, 0.99);

    fprintf(f, "\"%s\":{\"n\":%" PRIu64 ",\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}%s", name,
            h->count, p50 < mx ? p50 : mx, p99 < mx ? p99 : mx, mx, comma ? "," : "");
}

/* A JSON number of milliseconds, or null. */
static void
ms_json(FILE *f, const char *name, double ms, int valid, int comma)
{
    if (valid)
        fprintf(f, "\"%s\":%.3f%s", name, ms, comma ? "," : "");
    else
        fprintf(f, "\"%s\":null%s", name, comma ? "," : "");
}

static void
start_publishers(void)
{
    static struct event *tick_ev;
    struct timeval ms = { 0, 1000 };

    for (int i = 0; i < o.publishers; i++) {
        pubs[i].port = port_for(i);
        pubs[i].bev = connect_to(pubs[i].port);
        bufferevent_setcb(pubs[i].bev, publisher_on_read, NULL, publisher_on_event, &pubs[i]);
        bufferevent_enable(pubs[i].bev, EV_READ);
    }
    tick_ev = event_new(base, -1, EV_PERSIST, tick, NULL);
    if (tick_ev == NULL || event_add(tick_ev, &ms) != 0)
        die("out of memory");
    t_pub_start = now_ns();
}

static void
stream_init(struct stream *s, int i, int user)
{
    s->index = i;
    s->user = user;
    s->ev_s = -1;
    s->ev_k = -1;
    s->line = malloc(MAX_LINE);
    s->line_cap = MAX_LINE;
    s->seen = calloc((size_t)max_events / 8 + 1, 1);
    if (!s->line || !s->seen)
        die("out of memory");
}

/* Stops the publisher and lets the last answers come back. */
static void
stop_publishing(void)
{
    pub_stop = 1;
    if (run_until(publishing_finished, 30) == -1)
        fprintf(stderr, "loadgen: publishing did not finish in time\n");
    phase("publish-done");
}

/* Whether an event must reach a user's open streams: accepted, or
 * answered otherwise (503 redis_unavailable is "maybe") but delivered
 * somewhere, i.e. written after all. */
static int
event_expected(long q)
{
    return (accepted_bit[q >> 3] & (1u << (q & 7))) || event_recv[q] > 0;
}

static int *open_per_user;      /* open streams per user, at the end */

static void
count_open_per_user(void)
{
    if (open_per_user == NULL && (open_per_user = calloc((size_t)o.users, sizeof(int))) == NULL)
        die("out of memory");
    memset(open_per_user, 0, (size_t)o.users * sizeof(int));
    for (int i = 0; i < o.streams; i++) {
        if (streams[i].state == 1)
            open_per_user[streams[i].user]++;
    }
}

/* Drained: every expected event on every open stream of its user. Scans
 * every 20 ms, not every loop pass. */
static int
all_live_delivered(void)
{
    static long long next_scan;
    long long now = now_ns();

    if (now < next_scan)
        return 0;
    next_scan = now + 20000000LL;
    count_open_per_user();
    for (long q = 0; q < next_seq; q++) {
        if (event_expected(q) && event_recv[q] < open_per_user[event_user[q]])
            return 0;
    }
    return 1;
}

/* Per event, its deliveries to streams still open at the end. */
static int *
recv_on_open(void)
{
    int *r = calloc((size_t)(next_seq ? next_seq : 1), sizeof(int));

    if (r == NULL)
        die("out of memory");
    for (size_t i = 0; i < ndlv; i++) {
        if (streams[dlv[i].stream].state == 1)
            r[dlv[i].q]++;
    }
    return r;
}

/* -------------------------------------------- the Redis side (recovery) */

static redisAsyncContext *rac;
static int rac_up, rac_numsub_busy, rac_seen_down, rac_watch;
static long long t_kill, t_resub, t_numsub_sent, rac_next_connect;
static struct event *rac_ev, *rac_allow_ev;

static void rac_connect(void);

static void
rac_on_connect(const redisAsyncContext *ac, int status)
{
    (void)ac;
    if (status != REDIS_OK) {
        rac = NULL;             /* hiredis frees it */
        rac_seen_down |= rac_watch;
        return;
    }
    rac_up = 1;
}

static void
rac_on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)ac;
    (void)status;
    rac = NULL;
    rac_up = 0;
    rac_numsub_busy = 0;
    rac_seen_down |= rac_watch;
}

static void
rac_connect(void)
{
    rac_next_connect = now_ns() + 5000000LL;
    rac = redisAsyncConnect(o.host, o.redis_port);
    if (rac == NULL || rac->err) {
        if (rac != NULL)
            redisAsyncFree(rac);
        rac = NULL;
        return;
    }
    redisLibeventAttach(rac, base);
    redisAsyncSetConnectCallback(rac, rac_on_connect);
    redisAsyncSetDisconnectCallback(rac, rac_on_disconnect);
}

static void
rac_on_reply(redisAsyncContext *ac, void *r, void *what)
{
    redisReply *reply = r;

    (void)ac;
    if (reply == NULL)
        fprintf(stderr, "loadgen: redis: %s: no reply\n", (const char *)what);
    else if (reply->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "loadgen: redis: %s: %s\n", (const char *)what, reply->str);
}

static void
rac_on_numsub(redisAsyncContext *ac, void *r, void *arg)
{
    redisReply *reply = r;
    long long n;

    (void)ac;
    (void)arg;
    rac_numsub_busy = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[1]->type != REDIS_REPLY_INTEGER || !rac_watch)
        return;
    n = reply->element[1]->integer;
    if (n == 0) {
        rac_seen_down = 1;
    } else if (rac_seen_down && t_resub == 0) {
        /* SUBSCRIBE ran in Redis between the previous poll and this one. */
        t_resub = t_numsub_sent;
        phase("resubscribed");
    }
}

/* Every 2 ms: reconnect if need be, and poll the channel's subscribers
 * while waiting for the resubscribe. */
static void
rac_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (rac == NULL) {
        if (now_ns() >= rac_next_connect)
            rac_connect();
        return;
    }
    if (rac_up && rac_watch && t_resub == 0 && !rac_numsub_busy) {
        rac_numsub_busy = 1;
        t_numsub_sent = wall_ns();
        redisAsyncCommand(rac, rac_on_numsub, NULL, "PUBSUB NUMSUB %s", o.redis_channel);
    }
}

static void
rac_allow(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (rac != NULL)
        redisAsyncCommand(rac, rac_on_reply, "ACL SETUSER +subscribe",
                          "ACL SETUSER default +subscribe");
    else
        fprintf(stderr, "loadgen: redis: cannot allow SUBSCRIBE again (no connection)\n");
}

static int
rac_ready(void)
{
    return rac_up;
}

static int
resubscribed(void)
{
    return t_resub != 0;
}

static long long recovery_end;  /* mono ns: publishing stops */

static int
recovery_over(void)
{
    return now_ns() >= recovery_end;
}

static int waves_target;

static int
waves_done(void)
{
    return streams_open + streams_failed >= waves_target;
}

/* Opens streams [first, first + n) at most OPEN_WAVE at a time (a burst
 * of thousands of opening reads is not these scenarios' subject); 0 once
 * every one is open. */
static int
open_in_waves(int first, int n)
{
    long long deadline = now_ns() + (long long)(o.connect_timeout * 1e9);
    int issued = first, base_done = streams_open + streams_failed;

    waves_target = base_done + n;
    while (!waves_done()) {
        while (issued < first + n &&
               (issued - first) - (streams_open + streams_failed - base_done) < OPEN_WAVE) {
            struct stream *w = &streams[issued++];

            stream_connect(w, w->port ? w->port : o.port);
        }
        if (now_ns() > deadline)
            break;
        run_until(waves_done, 0.002);
    }
    if (streams_failed > 0 || streams_open < waves_target) {
        fprintf(stderr, "loadgen: %d of %d streams open, %d failed\n", streams_open,
                waves_target, streams_failed);
        return -1;
    }
    return 0;
}

static int
run_recovery(FILE *out)
{
    struct timeval every = { 0, 2000 };
    long long t_end, max_rx = 0;
    int closed = 0, *recv;
    long lost = 0, dups = 0, regress = 0, gaps = 0, delivered = 0, expected = 0;
    long missing_pre = 0, outage_events = 0, maybe_delivered = 0;
    struct hist live_catchup = { { 0 }, 0, 0 }, live_after = { { 0 }, 0, 0 };
    struct hist outage_lat = { { 0 }, 0, 0 };
    double catchup_ms = 0;
    int caught_up;

    for (int i = 0; i < o.streams; i++)
        stream_init(&streams[i], i, i % o.users);
    if (open_in_waves(0, o.streams) == -1)
        return 1;
    phase("streams-open");
    rac_ev = event_new(base, -1, EV_PERSIST, rac_tick, NULL);
    rac_allow_ev = evtimer_new(base, rac_allow, NULL);
    if (rac_ev == NULL || rac_allow_ev == NULL || event_add(rac_ev, &every) != 0)
        die("out of memory");
    rac_connect();
    if (run_until(rac_ready, 5) == -1)
        die("cannot connect to Redis");
    start_publishers();
    run_until(never, o.warmup);
    rac_watch = 1;
    t_kill = wall_ns();
    if (o.restart) {
        phase("redis-restart");     /* first: the runner acts on it at once */
        phase("outage");
    } else {
        phase("outage");
        if (o.outage > 0) {
            struct timeval tv = { (time_t)o.outage, (suseconds_t)((o.outage - floor(o.outage)) * 1e6) };

            redisAsyncCommand(rac, rac_on_reply, "ACL SETUSER -subscribe",
                              "ACL SETUSER default -subscribe");
            evtimer_add(rac_allow_ev, &tv);
        }
        redisAsyncCommand(rac, rac_on_reply, "CLIENT KILL", "CLIENT KILL TYPE pubsub");
    }
    if (run_until(resubscribed, o.deadline) == -1)
        fprintf(stderr, "loadgen: the gateway did not subscribe again within %.0f s\n", o.deadline);
    /* Publishing goes on --after seconds past the resubscribe, within the
     * deadline counted from the kill. */
    t_end = t_resub ? t_resub + (long long)(o.after * 1e9) : t_kill + (long long)(o.deadline * 1e9);
    if (t_end > t_kill + (long long)(o.deadline * 1e9))
        t_end = t_kill + (long long)(o.deadline * 1e9);
    recovery_end = now_ns() + (t_end - wall_ns());
    run_until(recovery_over, o.deadline + 1);
    stop_publishing();
    run_until(all_live_delivered, o.drain);
    phase("drained");

    /* Every expected event on every stream still open; the catch-up is
     * when the last open stream had the last event sent before the
     * resubscribe. */
    count_open_per_user();
    recv = recv_on_open();
    for (int i = 0; i < o.streams; i++) {
        closed += streams[i].server_closed;
        dups += streams[i].dups;
        regress += streams[i].id_regress;
        gaps += streams[i].gaps;
    }
    for (long q = 0; q < next_seq; q++) {
        long want;

        if (!event_expected(q))
            continue;
        if (!(accepted_bit[q >> 3] & (1u << (q & 7))))
            maybe_delivered++;
        want = open_per_user[event_user[q]];
        expected += want;
        delivered += recv[q] < want ? recv[q] : want;
        lost += recv[q] < want ? want - recv[q] : 0;
        if (t_resub && event_sent[q] < t_resub) {
            if (event_sent[q] >= t_kill)
                outage_events++;
            if (recv[q] < want)
                missing_pre++;
        }
    }
    for (size_t i = 0; i < ndlv; i++) {
        long q = dlv[i].q;

        if (streams[dlv[i].stream].state != 1 || !t_resub || event_sent[q] >= t_resub)
            continue;
        if (dlv[i].rx > max_rx)
            max_rx = dlv[i].rx;
        if (event_sent[q] >= t_kill)
            hist_add(&outage_lat, (double)(dlv[i].rx - event_sent[q]));
    }
    /* Caught up: every stream (none ended by the gateway) has everything
     * sent before the resubscribe. */
    caught_up = t_resub != 0 && missing_pre == 0 && closed == 0 && max_rx > 0;
    catchup_ms = max_rx > t_resub ? (double)(max_rx - t_resub) / 1e6 : 0;
    for (size_t i = 0; i < ndlv; i++) {
        long q = dlv[i].q;
        double l = dlv[i].rx > event_sent[q] ? (double)(dlv[i].rx - event_sent[q]) : 0;

        if (!t_resub || event_sent[q] < t_resub)
            continue;
        hist_add(&live_after, l);
        /* During the catch-up: sent before the last pre-resubscribe
         * event reached the last open stream (so far as it got). */
        if (event_sent[q] <= max_rx)
            hist_add(&live_catchup, l);
    }
    fprintf(out, "{\"mode\":\"recovery\",\"restart\":%d,\"outage_s\":%.3f,\"streams\":%d,\"users\":%d,"
            "\"t_kill_ns\":%lld,\"t_resub_ns\":%lld,", o.restart, o.outage, o.streams, o.users,
            t_kill, t_resub);
    ms_json(out, "resubscribe_ms", (double)(t_resub - t_kill) / 1e6, t_resub != 0, 1);
    ms_json(out, "catchup_from_resub_ms", catchup_ms, caught_up, 1);
    ms_json(out, "catchup_from_kill_ms", (double)(max_rx - t_kill) / 1e6, caught_up, 1);
    fprintf(out, "\"caught_up\":%d,\"missing_before_resub\":%ld,\"outage_events\":%ld,",
            caught_up, missing_pre, outage_events);
    hist_json(out, "outage_event_ms", &outage_lat, 1);
    hist_json(out, "live_catchup_ms", &live_catchup, 1);
    hist_json(out, "live_after_resub_ms", &live_after, 1);
    fprintf(out, "\"published\":%ld,\"accepted\":%ld,\"rejected\":%ld,\"rejected_overloaded\":%ld,"
            "\"rejected_unavailable\":%ld,\"maybe_delivered\":%ld,\"skipped_slots\":%ld,"
            "\"reconnects\":%ld,\"expected_deliveries\":%ld,\"delivered\":%ld,\"lost\":%ld,"
            "\"duplicates\":%ld,\"out_of_order\":%ld,\"gap_events\":%ld,"
            "\"streams_closed_by_server\":%d}\n",
            next_seq, accepted, rejected, rejected_overloaded, rejected_unavailable,
            maybe_delivered, pace_skipped, reconnects, expected, delivered, lost, dups, regress,
            gaps, closed);
    free(recv);
    return lost || dups || regress || gaps || closed || !caught_up ? 3 : 0;
}

/* ------------------------------------------------------------ prepare */

static long
prepare_count(int pi)
{
    /* publisher pi writes for the users pi, pi + K, pi + 2K, ... */
    return pi < o.users ? (o.users - 1 - pi) / o.publishers + 1 : 0;
}

static void
prepare_next(struct publisher *p)
{
    int pi = (int)(p - pubs);
    long n = prepare_count(pi), k;
    int u, bl;
    char body[1024];

    if (p->busy || n == 0 || p->pos >= n * o.history)
        return;
    u = pi + o.publishers * (int)(p->pos % n);
    k = p->pos / n;
    bl = snprintf(body, sizeof(body), "{\"userId\":\"%s\",\"type\":\"h\",\"data\":{\"k\":%ld,"
                  "\"p\":\"%.*s\"}}", users[u], k, o.pad,
                  PAD);
    publisher_post(p, "/events", body, bl, sizeof(body), u);
}

static void
prepare_response(struct publisher *p)
{
    int pi = (int)(p - pubs), u = (int)p->seq;
    long n = prepare_count(pi);
    char *id;

    outstanding--;
    p->busy = 0;
    if (p->status == 202) {
        if (p->pos / n == 0) {
            if ((id = strstr(p->body, "\"id\":\"")) == NULL)
                die("prepare: no id in a 202");
            snprintf(resume_ids[u], sizeof(resume_ids[u]), "%.*s", (int)strcspn(id + 6, "\""), id + 6);
        }
        p->pos++;
        accepted++;
    } else if (p->status == 503 && strstr(p->body, "overloaded") != NULL) {
        prepare_retries++;      /* nothing was written: the same event again */
    } else {
        fprintf(stderr, "loadgen: prepare: status %d: %s\n", p->status, p->body);
        die("prepare: a write failed");
    }
    prepare_next(p);
}

static int
prepare_finished(void)
{
    for (int i = 0; i < o.publishers; i++) {
        if (pubs[i].pos < prepare_count(i) * o.history || pubs[i].busy)
            return 0;
    }
    return 1;
}

static int
run_prepare(FILE *out)
{
    long long t0, next_note;
    long total = (long)o.users * o.history;
    double secs;
    FILE *f;

    if ((resume_ids = calloc((size_t)o.users, sizeof(*resume_ids))) == NULL)
        die("out of memory");
    start_publishers();
    t0 = now_ns();
    next_note = t0 + 5000000000LL;
    while (!prepare_finished()) {
        if (run_until(prepare_finished, 1) == 0)
            break;
        if (now_ns() > t0 + (long long)(o.deadline * 1e9))
            die("prepare: did not finish within the deadline");
        if (now_ns() >= next_note) {
            fprintf(stderr, "loadgen: prepare: %ld of %ld events written\n", accepted, total);
            fflush(stderr);
            next_note += 5000000000LL;
        }
    }
    secs = (double)(now_ns() - t0) / 1e9;
    if ((f = fopen(o.users_file, "w")) == NULL)
        die("cannot write the users file");
    for (int u = 0; u < o.users; u++)
        fprintf(f, "%s %s\n", users[u], resume_ids[u]);
    fclose(f);
    fprintf(out, "{\"mode\":\"prepare\",\"users\":%d,\"history\":%d,\"events\":%ld,\"secs\":%.3f,"
            "\"per_sec\":%.1f,\"retries\":%ld}\n", o.users, o.history, accepted, secs,
            secs > 0 ? (double)accepted / secs : 0, prepare_retries);
    return 0;
}

/* -------------------------------------------------------------- storm */

/* Reads "<userId> <resume id>" lines; sets o.users and o.streams. */
static void
storm_read_users(void)
{
    FILE *f = fopen(o.users_file, "r");
    char a[32], b[48];
    int n = 0;

    if (f == NULL)
        die("cannot read the users file");
    while (fscanf(f, "%31s %47s", a, b) == 2)
        n++;
    if (n == 0)
        die("the users file is empty");
    rewind(f);
    o.users = n;
    o.streams = n + o.observers;
    users = calloc((size_t)n, sizeof(*users));
    resume_ids = calloc((size_t)n, sizeof(*resume_ids));
    if (users == NULL || resume_ids == NULL)
        die("out of memory");
    for (int u = 0; u < n && fscanf(f, "%31s %47s", a, b) == 2; u++) {
        snprintf(users[u], sizeof(users[u]), "%s", a);
        snprintf(resume_ids[u], sizeof(resume_ids[u]), "%s", b);
    }
    fclose(f);
}

static int
storm_resolved(void)
{
    for (int i = 0; i < o.users; i++) {
        const struct stream *s = &streams[i];

        if (s->state == 0 || (s->state == 1 && s->next_k < o.history))
            return 0;
    }
    return 1;
}

static int
run_storm(FILE *out)
{
    long long t_storm, t_resolved, t_end;
    int ok = 0, r503 = 0, rother = 0, none = 0, closed = 0, complete = 0, *recv;
    long k_missing = 0, k_dups = 0, regress = 0, gaps = 0, lost = 0, dups = 0;
    long expected = 0, delivered = 0, maybe_delivered = 0, incomplete = 0;
    struct hist head = { { 0 }, 0, 0 }, done = { { 0 }, 0, 0 };
    struct hist live = { { 0 }, 0, 0 }, live_storm = { { 0 }, 0, 0 };
    struct hist obs = { { 0 }, 0, 0 }, obs_storm = { { 0 }, 0, 0 };
    int resolved, obs_closed = 0;

    for (int i = 0; i < o.users; i++) {
        stream_init(&streams[i], i, i);
        streams[i].resume = resume_ids[i];
        streams[i].next_k = 1;
    }
    for (int i = o.users; i < o.streams; i++)
        stream_init(&streams[i], i, (i - o.users) % o.users);
    if (open_in_waves(o.users, o.observers) == -1)
        return 1;
    phase("streams-open");
    start_publishers();
    run_until(never, o.warmup);
    phase("storm");
    t_storm = wall_ns();
    for (int i = 0; i < o.users; i++)
        stream_connect(&streams[i], o.port);
    resolved = run_until(storm_resolved, o.deadline) == 0;
    t_resolved = wall_ns();
    phase("storm-resolved");
    t_end = t_resolved + (long long)(o.after * 1e9);
    if (t_end > t_storm + (long long)(o.deadline * 1e9))
        t_end = t_storm + (long long)(o.deadline * 1e9);
    recovery_end = now_ns() + (t_end - wall_ns());
    run_until(recovery_over, o.deadline + 1);
    stop_publishing();
    run_until(all_live_delivered, o.drain);
    phase("drained");

    count_open_per_user();
    recv = recv_on_open();
    for (int i = o.users; i < o.streams; i++) {
        obs_closed += streams[i].server_closed;
        dups += streams[i].dups;
        regress += streams[i].id_regress;
        gaps += streams[i].gaps;
    }
    for (int i = 0; i < o.users; i++) {
        const struct stream *s = &streams[i];

        if (s->status == 200)
            ok++;
        else if (s->status == 503)
            r503++;
        else if (s->status != 0)
            rother++;
        else
            none++;
        if (s->status != 200)
            continue;
        hist_add(&head, (double)(s->t_head - t_storm));
        closed += s->server_closed;
        k_missing += s->k_missing + (s->next_k < o.history ? o.history - s->next_k : 0);
        k_dups += s->k_dups;
        dups += s->dups;
        regress += s->id_regress;
        gaps += s->gaps;
        if (s->next_k >= o.history && s->k_missing == 0) {
            complete++;
            hist_add(&done, (double)(s->t_replay_done - t_storm));
        } else {
            incomplete++;
        }
    }
    for (long q = 0; q < next_seq; q++) {
        long want;

        if (!event_expected(q))
            continue;
        if (!(accepted_bit[q >> 3] & (1u << (q & 7))))
            maybe_delivered++;
        want = open_per_user[event_user[q]];
        expected += want;
        delivered += recv[q] < want ? recv[q] : want;
        lost += recv[q] < want ? want - recv[q] : 0;
    }
    for (size_t i = 0; i < ndlv; i++) {
        long q = dlv[i].q;
        double l = dlv[i].rx > event_sent[q] ? (double)(dlv[i].rx - event_sent[q]) : 0;

        int observer = dlv[i].stream >= o.users;

        if (event_sent[q] < t_storm)
            continue;
        hist_add(observer ? &obs : &live, l);
        if (event_sent[q] <= t_resolved)
            hist_add(observer ? &obs_storm : &live_storm, l);
    }
    fprintf(out, "{\"mode\":\"storm\",\"streams\":%d,\"observers\":%d,\"history\":%d,"
            "\"status_200\":%d,\"status_503\":%d,\"status_other\":%d,\"no_response\":%d,"
            "\"streams_closed_by_server\":%d,\"observers_closed_by_server\":%d,"
            "\"replay_complete\":%d,\"replay_incomplete\":%ld,",
            o.users, o.observers, o.history, ok, r503, rother, none, closed, obs_closed, complete,
            incomplete);
    ms_json(out, "all_replayed_ms", done.max_ns / 1e6, complete == ok && ok > 0, 1);
    ms_json(out, "resolved_ms", (double)(t_resolved - t_storm) / 1e6, resolved, 1);
    hist_json(out, "head_ms", &head, 1);
    hist_json(out, "replay_done_ms", &done, 1);
    hist_json(out, "live_storm_ms", &live_storm, 1);
    hist_json(out, "live_ms", &live, 1);
    hist_json(out, "observer_storm_ms", &obs_storm, 1);
    hist_json(out, "observer_ms", &obs, 1);
    fprintf(out, "\"replayed_events\":%ld,\"replay_missing\":%ld,\"replay_duplicates\":%ld,"
            "\"published\":%ld,\"accepted\":%ld,\"rejected\":%ld,\"rejected_overloaded\":%ld,"
            "\"rejected_unavailable\":%ld,\"maybe_delivered\":%ld,\"skipped_slots\":%ld,"
            "\"reconnects\":%ld,\"expected_deliveries\":%ld,\"delivered\":%ld,\"lost\":%ld,"
            "\"duplicates\":%ld,\"out_of_order\":%ld,\"gap_events\":%ld}\n",
            replay_events, k_missing, k_dups, next_seq, accepted, rejected, rejected_overloaded,
            rejected_unavailable, maybe_delivered, pace_skipped, reconnects, expected, delivered,
            lost, dups, regress, gaps);
    free(recv);
    return lost || dups || regress || gaps || closed || obs_closed || k_missing || k_dups ? 3 : 0;
}

/* -------------------------------------------------------------- churn
 *
 * --mode churn: --topics T topics, bench-t0 .. bench-t<T-1>, on two
 * instances (--port, --port2), with two streams each:
 *   - a stable stream, on instance t % 2, opened before publishing and
 *     never closed by this client: it must get exactly every accepted
 *     event of its topic, once, in order;
 *   - a churned stream, on the same instance for t % 4 < 2 (a second
 *     stream joining and leaving a held topic) and on the other one
 *     otherwise (the instance's only stream on the topic: each close
 *     makes it UNSUBSCRIBE, each open SUBSCRIBE again).
 * For --duration seconds a publisher posts --rate events/s to random
 * topics (over --publishers keep-alive connections alternating the two
 * instances; one request in flight per topic, so a topic's events get
 * increasing ids in the order they are sent and carry "k", the topic's
 * own index), while --churn-rate times a second a random open churned
 * stream is closed: every fourth is opened again at once, the others
 * --hold seconds later. Each connection of a churned stream is a
 * session, checked at the end:
 *   - what it got is one run of its topic's events: k going up by one
 *     (a step back is a duplicate, or out of order if it had a hole;
 *     a step over is a hole: lost), ids increasing, none of another topic
 *     and no gap event;
 *   - owed: every accepted event of its topic sent after its response
 *     head arrived (the API's promise: nothing published after the 200
 *     is missed), up to the last one acknowledged (202) at least --grace
 *     seconds before this client closed it; a session still open at the
 *     end is owed all of them. An owed event not received is lost.
 * Events sent before a session's head may arrive (its history starts at
 * the newest id at its open): not owed, not an error.
 * Redis's side, from --redis-port: the two gateways' subscriber
 * connections (told apart first by a probe stream per instance on a
 * topic of its own); after the churn, with the streams settled, the
 * channels ssegate:events:* and ssegate:topic:* must be exactly the
 * topics with an open stream, each with NUMSUB equal to the number of
 * instances holding one, and each instance's subscription count must be
 * its starting count plus two per topic it holds; after every stream is
 * closed, no topic channel may remain and each count must be back.
 * Bytes: --bytes-events events posted to topics nobody holds, then as
 * many to the held topics (churn stopped), each burst's Redis
 * total_net_output_bytes (INFO stats) counted: the difference is what
 * the held topics' pub/sub messages cost, set beside a single channel
 * carrying every event to every instance. */

#define CHURN_GHOSTS 64         /* topics nobody holds (the bytes baseline) */
#define CHURN_PROBES 2          /* one probe topic per instance */
#define CHURN_LINE 16384        /* a churn stream's line buffer */
#define SUB_MAX 8               /* subscriber connections expected (2) and then some */

struct session {
    int topic, stable, server_closed;
    long long t_head, t_close;  /* wall ns; t_close 0: open at the end */
    long first_k, last_k, got, holes, dups, ooo, wrong, regress;
};

static int churn_topics;        /* T */
static int *topic_busy;         /* a request in flight for the topic */
static long *topic_next_k;      /* the topic's next "k" */
static long *event_k;           /* per sequence number */
static long long *event_ack;    /* wall ns of the 202, per sequence number */
static size_t *event_env;       /* the envelope's length, from a delivery */
static struct session *sessions;
static size_t nsessions, capsessions;
static int *reopen_slot;        /* a ring of closed churned streams */
static long long *reopen_at;
static long reopen_head, reopen_len;
static long churn_ops, churn_closes, churn_reopens, churn_skipped, opens_failed;
static int churning, bytes_phase;   /* bytes_phase 1: ghost topics */
static long long churn_t0;
static struct hist churn_lat;

static void
session_record(struct stream *s, long long t_close)
{
    struct session *x;

    if (nsessions == capsessions) {
        size_t ncap = capsessions ? capsessions * 2 : 4096;
        struct session *n = realloc(sessions, ncap * sizeof(*n));

        if (n == NULL)
            die("out of memory");
        sessions = n;
        capsessions = ncap;
    }
    x = &sessions[nsessions++];
    x->topic = s->user;
    x->stable = s->stable;
    x->server_closed = s->server_closed;
    x->t_head = s->t_head;
    x->t_close = t_close;
    x->first_k = s->c_first_k;
    x->last_k = s->c_last_k;
    x->got = s->c_got;
    x->holes = s->c_holes;
    x->dups = s->c_dups;
    x->ooo = s->c_ooo;
    x->wrong = s->c_wrong;
    x->regress = s->id_regress;
}

/* One event completed on a churn stream. */
static void
churn_event_done(struct stream *s)
{
    long q = s->ev_s, k = s->ev_k;
    int dup = 0;

    if (s->ev_gap) {
        s->c_wrong++;           /* a fresh open has nothing to miss: no gap */
        return;
    }
    if (s->ev_t <= 0 || q < 0 || q >= next_seq || k < 0)
        return;
    if (event_user[q] != s->user || event_k[q] != k) {
        s->c_wrong++;           /* another topic's event, or a garbled one */
        return;
    }
    if (event_env[q] == 0)
        event_env[q] = s->ev_len;
    if (s->c_got == 0) {
        s->c_first_k = s->c_last_k = k;
    } else if (k > s->c_last_k) {
        s->c_holes += k - s->c_last_k - 1;
        s->c_last_k = k;
    } else {
        /* A step back: certainly a duplicate while the run had no hole. */
        if (s->c_holes == 0 && k >= s->c_first_k)
            s->c_dups++;
        else
            s->c_ooo++;
        dup = 1;
    }
    if (dup)
        return;
    s->c_got++;
    event_recv[q]++;
    hist_add(&churn_lat, s->rx_ns > event_sent[q] ? (double)(s->rx_ns - event_sent[q]) : 0);
    if (s->ev_has_id) {
        if (s->last_ms > s->ev_ms || (s->last_ms == s->ev_ms && s->last_seq >= s->ev_seq))
            s->id_regress++;
        s->last_ms = s->ev_ms;
        s->last_seq = s->ev_seq;
    }
}

/* A topic with no request in flight (of the ghosts in the bytes
 * baseline), or -1: the slot waits for the next tick. */
static int
churn_pick_topic(void)
{
    for (int tries = 0; tries < 16; tries++) {
        int t = bytes_phase == 1 ? churn_topics + (int)(xorshift() % CHURN_GHOSTS)
                                 : (int)(xorshift() % (uint64_t)churn_topics);

        if (!topic_busy[t])
            return t;
    }
    return -1;
}

static void
churn_publish(struct publisher *p)
{
    char body[1024];
    long seq;
    long long t;
    int bl, tp;

    if (p->busy || !publisher_due() || (tp = churn_pick_topic()) < 0)
        return;
    pace_slots += 1;
    seq = next_seq++;
    t = wall_ns();
    event_user[seq] = tp;
    event_k[seq] = topic_next_k[tp]++;
    event_sent[seq] = t;
    topic_busy[tp] = 1;
    bl = snprintf(body, sizeof(body), "{\"topic\":\"%s\",\"type\":\"b\",\"data\":{\"t\":%lld,"
                  "\"s\":%ld,\"k\":%ld,\"p\":\"%.*s\"}}", users[tp], t, seq, event_k[seq], o.pad,
                  PAD);
    publisher_post(p, "/events", body, bl, sizeof(body), seq);
}

/* The answer to p's request (or its loss): the topic is free again. */
static void
churn_response(struct publisher *p)
{
    long q = p->seq;

    topic_busy[event_user[q]] = 0;
    if (accepted_bit[q >> 3] & (1u << (q & 7)))
        event_ack[q] = wall_ns();
}

/* A churn stream's state back to "not yet answered", then connect. */
static void
churn_open(struct stream *s)
{
    s->state = 0;
    s->line_len = 0;
    s->chunked = s->cstate = 0;
    s->chunk_left = 0;
    s->ev_t = 0;
    s->ev_s = s->ev_k = -1;
    s->ev_has_id = s->ev_gap = 0;
    s->last_ms = s->last_seq = 0;
    s->id_regress = 0;
    s->status = s->server_closed = 0;
    s->t_head = 0;
    s->c_first_k = s->c_last_k = -1;
    s->c_got = s->c_holes = s->c_dups = s->c_ooo = s->c_wrong = 0;
    stream_connect(s, s->port);
}

/* This client ends a stream: its session is recorded as it stands. */
static void
churn_close(struct stream *s)
{
    session_record(s, wall_ns());
    event_free(s->ev);
    s->ev = NULL;
    close(s->fd);
    s->fd = -1;
    s->state = 3;
}

/* One churn step: a random open churned stream (2t + 1) closed; every
 * fourth opened again at once, the others queued for --hold seconds. */
static void
churn_op(void)
{
    struct stream *s = NULL;

    churn_ops++;
    for (int tries = 0; tries < 32 && s == NULL; tries++) {
        struct stream *c = &streams[2 * (int)(xorshift() % (uint64_t)churn_topics) + 1];

        if (c->state == 1)
            s = c;
    }
    if (s == NULL) {
        churn_skipped++;
        return;
    }
    churn_close(s);
    churn_closes++;
    if (churn_ops % 4 == 0) {
        churn_open(s);
        churn_reopens++;
    } else if (reopen_len < churn_topics) {
        long at = (reopen_head + reopen_len) % churn_topics;

        reopen_slot[at] = s->index;
        reopen_at[at] = now_ns() + (long long)(o.hold * 1e9);
        reopen_len++;
    }
}

static void
churn_tick(evutil_socket_t fd, short what, void *arg)
{
    long due;

    (void)fd;
    (void)what;
    (void)arg;
    if (!churning)
        return;
    due = (long)(o.churn_rate * (double)(now_ns() - churn_t0) / 1e9);
    while (churn_ops < due)
        churn_op();
    while (reopen_len > 0 && reopen_at[reopen_head] <= now_ns()) {
        churn_open(&streams[reopen_slot[reopen_head]]);
        churn_reopens++;
        reopen_head = (reopen_head + 1) % churn_topics;
        reopen_len--;
    }
}

static int
churn_opens_resolved(void)
{
    for (int i = 0; i < 2 * churn_topics; i++) {
        if (streams[i].state == 0)
            return 0;
    }
    return 1;
}

/* The newest accepted event per topic, for the drain. */
static long *topic_last_q;

static void
churn_last_events(void)
{
    for (int t = 0; t < o.users; t++)
        topic_last_q[t] = -1;
    for (long q = 0; q < next_seq; q++) {
        if (accepted_bit[q >> 3] & (1u << (q & 7)))
            topic_last_q[event_user[q]] = q;
    }
}

/* Drained: every open stream has its topic's newest event, if that was
 * sent after its head (scanned every 20 ms). */
static int
churn_drained(void)
{
    static long long next_scan;
    long long now = now_ns();

    if (now < next_scan)
        return 0;
    next_scan = now + 20000000LL;
    churn_last_events();
    for (int i = 0; i < 2 * churn_topics; i++) {
        const struct stream *s = &streams[i];
        long q = topic_last_q[s->user];

        if (s->state == 1 && q >= 0 && event_sent[q] > s->t_head && s->c_last_k < event_k[q])
            return 0;
    }
    return 1;
}

/* ---- Redis, from this client (blocking: only between phases) */

static redisContext *rsync;

static redisReply *
redis_cmd(const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(rsync, fmt, ap);
    va_end(ap);
    if (r == NULL)
        die("redis: no answer");
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "loadgen: redis: %s\n", r->str);
        die("redis: an error");
    }
    return r;
}

struct subclient {
    long long id;
    long sub;
};

/* The subscriber connections (flags with P) and their channel counts. */
static int
sub_clients(struct subclient *out, int max)
{
    redisReply *r = redis_cmd("CLIENT LIST");
    int n = 0;
    char *line = r->type == REDIS_REPLY_STRING ? r->str : NULL;

    while (line != NULL && *line != '\0') {
        char *end = strchr(line, '\n'), *f, *sb, *id;

        if (end != NULL)
            *end = '\0';
        f = strstr(line, " flags=");
        sb = strstr(line, " sub=");
        id = strstr(line, "id=");
        if (f != NULL && sb != NULL && id == line && f[7 + strcspn(f + 7, "P ")] == 'P') {
            if (n < max) {
                out[n].id = strtoll(id + 3, NULL, 10);
                out[n].sub = strtol(sb + 5, NULL, 10);
            }
            n++;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    freeReplyObject(r);
    return n;
}

static long long inst_client[2];    /* each instance's subscriber connection id */
static long inst_base[2];           /* and its channel count with no topic */

static long
inst_sub(int j)
{
    struct subclient c[SUB_MAX];
    int n = sub_clients(c, SUB_MAX);

    for (int i = 0; i < n && i < SUB_MAX; i++) {
        if (c[i].id == inst_client[j])
            return c[i].sub;
    }
    return -1;                  /* gone: the instance reconnected */
}

static void
run_for(double secs)
{
    run_until(never, secs);
}

/* Tells the two instances' subscriber connections apart: a probe stream
 * on a topic of its own to instance j makes j's count go up by two. */
static void
identify_instances(void)
{
    struct subclient before[SUB_MAX], after[SUB_MAX];
    int nb = sub_clients(before, SUB_MAX);

    if (nb != 2)
        die("expected two subscriber connections in Redis (one per instance)");
    for (int j = 0; j < 2; j++) {
        struct stream *pr = &streams[2 * churn_topics + j];
        int found = 0;

        churn_open(pr);
        for (int w = 0; w < 250 && !found; w++) {
            run_for(0.02);
            if (sub_clients(after, SUB_MAX) != 2)
                continue;
            for (int a = 0; a < 2; a++) {
                for (int b = 0; b < 2; b++) {
                    if (after[a].id == before[b].id && after[a].sub == before[b].sub + 2) {
                        inst_client[j] = after[a].id;
                        inst_base[j] = before[b].sub;
                        found = 1;
                    }
                }
            }
        }
        if (!found || pr->state != 1)
            die("a probe stream did not show on one subscriber connection");
        event_free(pr->ev);
        pr->ev = NULL;
        close(pr->fd);
        pr->fd = -1;
        pr->state = 3;
        for (int w = 0; w < 250 && inst_sub(j) != inst_base[j]; w++)
            run_for(0.02);
        if (inst_sub(j) != inst_base[j])
            die("a probe stream's topic stayed subscribed");
    }
}

struct subs_result {
    double settled_ms;          /* until the channels matched, or -1 */
    long channels, expected, topic_mismatch, foreign, inst_mismatch;
};

static long
pattern_count(const char *pattern, long *foreign)
{
    redisReply *r = redis_cmd("PUBSUB CHANNELS %s", pattern);
    long n = 0;

    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        n++;
        if (foreign != NULL && strstr(r->element[i]->str, ":bench-t") == NULL)
            (*foreign)++;
    }
    freeReplyObject(r);
    return n;
}

/* Redis's subscriptions against the streams open now (state 1). */
static struct subs_result
subs_check(void)
{
    struct subs_result res = { -1, 0, 0, 0, 0, 0 };
    int *want = calloc((size_t)churn_topics, sizeof(int));
    long held[2] = { 0, 0 };
    long long t0 = now_ns();
    const char *prefix[2] = { "ssegate:events:", "ssegate:topic:" };

    if (want == NULL)
        die("out of memory");
    /* want[t]: a bit per instance holding an open stream on t. */
    for (int i = 0; i < 2 * churn_topics; i++) {
        if (streams[i].state == 1)
            want[streams[i].user] |= streams[i].port == o.port ? 1 : 2;
    }
    for (int t = 0; t < churn_topics; t++) {
        res.expected += want[t] != 0;
        held[0] += want[t] & 1;
        held[1] += (want[t] & 2) >> 1;
    }
    /* Subscribing and unsubscribing go in batches: wait (at most 10 s)
     * until the channel count matches, then compare channel by channel. */
    for (;;) {
        long e = pattern_count("ssegate:events:*", NULL), tc = pattern_count("ssegate:topic:*", NULL);

        if (e == res.expected && tc == res.expected) {
            res.settled_ms = (double)(now_ns() - t0) / 1e6;
            break;
        }
        if (now_ns() - t0 > 10000000000LL)
            break;
        run_for(0.02);
    }
    res.channels = pattern_count("ssegate:events:*", &res.foreign);
    res.channels += pattern_count("ssegate:topic:*", &res.foreign);
    for (int pf = 0; pf < 2; pf++) {
        for (int t0i = 0; t0i < churn_topics; t0i += 500) {
            int n = churn_topics - t0i < 500 ? churn_topics - t0i : 500;
            const char **argv = malloc((size_t)(n + 2) * sizeof(*argv));
            char (*names)[96] = malloc((size_t)n * sizeof(*names));
            redisReply *r;

            if (argv == NULL || names == NULL)
                die("out of memory");
            argv[0] = "PUBSUB";
            argv[1] = "NUMSUB";
            for (int i = 0; i < n; i++) {
                snprintf(names[i], sizeof(names[i]), "%s%s", prefix[pf], users[t0i + i]);
                argv[i + 2] = names[i];
            }
            r = redisCommandArgv(rsync, n + 2, argv, NULL);
            if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)(2 * n))
                die("redis: PUBSUB NUMSUB failed");
            for (int i = 0; i < n; i++) {
                int w = want[t0i + i];

                if (r->element[2 * i + 1]->integer != (w & 1) + ((w & 2) >> 1))
                    res.topic_mismatch++;
            }
            freeReplyObject(r);
            free(argv);
            free(names);
        }
    }
    for (int j = 0; j < 2; j++) {
        if (inst_sub(j) != inst_base[j] + 2 * held[j])
            res.inst_mismatch++;
    }
    free(want);
    return res;
}

static void
subs_json(FILE *f, const char *name, const struct subs_result *r)
{
    fprintf(f, "\"%s\":{", name);
    ms_json(f, "settled_ms", r->settled_ms, r->settled_ms >= 0, 1);
    fprintf(f, "\"channels\":%ld,\"expected_topics\":%ld,\"topic_mismatch\":%ld,\"foreign\":%ld,"
            "\"instance_mismatch\":%ld},", r->channels, r->expected, r->topic_mismatch, r->foreign,
            r->inst_mismatch);
}

static long long
redis_out_bytes(void)
{
    redisReply *r = redis_cmd("INFO stats");
    char *p = r->type == REDIS_REPLY_STRING
            ? strstr(r->str, "total_net_output_bytes:") : NULL;
    long long v;

    if (p == NULL)
        die("redis: no total_net_output_bytes");
    v = strtoll(p + 23, NULL, 10);
    freeReplyObject(r);
    return v;
}

static int
digits(size_t v)
{
    int d = 1;

    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* A pub/sub message as Redis writes it (RESP2): ["message", channel, payload]. */
static size_t
message_bytes(size_t chan, size_t payload)
{
    return 4 + 4 + 9 + 1 + (size_t)digits(chan) + 2 + chan + 2 + 1 + (size_t)digits(payload) + 2 +
           payload + 2;
}

/* Posts n events as fast as they are answered (ghosts: to topics nobody
 * holds) and returns Redis's output bytes meanwhile; *first: the first
 * event's sequence number. */
static long long
bytes_burst(int ghosts, long n, long *first)
{
    long long b0, t0;
    double rate = o.rate;

    run_for(0.2);               /* let every instance go quiet */
    b0 = redis_out_bytes();
    *first = next_seq;
    bytes_phase = ghosts ? 1 : 2;
    pub_limit = next_seq + n;
    pub_stop = 0;
    publishing_done = 0;
    o.rate = 0;
    t0 = now_ns();
    if (run_until(publishing_finished, 60) == -1)
        fprintf(stderr, "loadgen: a bytes burst did not finish in time\n");
    (void)t0;
    if (!ghosts)
        run_until(churn_drained, o.drain);
    run_for(0.2);
    o.rate = rate;
    bytes_phase = 0;
    return redis_out_bytes() - b0;
}

static int
run_churn(FILE *out)
{
    struct timeval ms = { 0, 1000 };
    struct event *cev;
    struct subs_result open_res, closed_res = { -1, 0, 0, 0, 0, 0 };
    long long t_closed;
    long expected = 0, delivered = 0, lost = 0, lost_stable = 0, lost_churned = 0;
    long dups = 0, ooo = 0, regress = 0, wrong = 0, server_closed = 0, not_owed = 0;
    long churned_sessions = 0, *kidx, *koff, ghost_first, held_first, nb;
    long long ghost_bytes, held_bytes;
    double copies = 0, topic_frames = 0, firehose_frames = 0;
    int inst_after_ok = 1;

    churn_topics = o.topics;
    if (o.port2 == 0 || o.port3 != 0)
        die("churn needs exactly two instances (--port, --port2)");
    for (int t = 0; t < churn_topics; t++)
        snprintf(users[t], sizeof(users[t]), "bench-t%d", t);
    for (int g = 0; g < CHURN_GHOSTS; g++)
        snprintf(users[churn_topics + g], sizeof(users[0]), "bench-ghost-%d", g);
    for (int j = 0; j < CHURN_PROBES; j++)
        snprintf(users[churn_topics + CHURN_GHOSTS + j], sizeof(users[0]), "bench-probe-%d", j);
    topic_busy = calloc((size_t)o.users, sizeof(int));
    topic_next_k = calloc((size_t)o.users, sizeof(long));
    topic_last_q = calloc((size_t)o.users, sizeof(long));
    event_k = calloc((size_t)max_events, sizeof(long));
    event_ack = calloc((size_t)max_events, sizeof(long long));
    event_env = calloc((size_t)max_events, sizeof(size_t));
    reopen_slot = calloc((size_t)churn_topics, sizeof(int));
    reopen_at = calloc((size_t)churn_topics, sizeof(long long));
    if (!topic_busy || !topic_next_k || !topic_last_q || !event_k || !event_ack || !event_env ||
        !reopen_slot || !reopen_at)
        die("out of memory");
    for (int i = 0; i < o.streams; i++) {
        struct stream *s = &streams[i];
        int t = i < 2 * churn_topics ? i / 2 : churn_topics + CHURN_GHOSTS + (i - 2 * churn_topics);
        int a = t % 2;

        s->index = i;
        s->user = t;
        s->line_cap = CHURN_LINE;
        if ((s->line = malloc(CHURN_LINE)) == NULL)
            die("out of memory");
        if (i >= 2 * churn_topics)
            s->port = i - 2 * churn_topics == 0 ? o.port : o.port2;     /* probes */
        else if (i % 2 == 0)
            s->port = a == 0 ? o.port : o.port2;                          /* stable */
        else
            s->port = (t % 4 < 2 ? a : 1 - a) == 0 ? o.port : o.port2;    /* churned */
        s->stable = i < 2 * churn_topics && i % 2 == 0;
        s->ev_s = s->ev_k = -1;
        s->c_first_k = s->c_last_k = -1;
    }
    if ((rsync = redisConnect(o.host, o.redis_port)) == NULL || rsync->err)
        die("cannot connect to Redis");
    identify_instances();
    phase("identified");
    /* Every slot, in waves, with its own instance. */
    if (open_in_waves(0, 2 * churn_topics) == -1)
        return 1;
    phase("streams-open");
    cev = event_new(base, -1, EV_PERSIST, churn_tick, NULL);
    if (cev == NULL || event_add(cev, &ms) != 0)
        die("out of memory");
    start_publishers();
    churn_t0 = now_ns();
    churning = 1;
    run_for(o.duration);
    churning = 0;
    stop_publishing();
    phase("churn-done");
    if (run_until(churn_opens_resolved, 10) == -1)
        fprintf(stderr, "loadgen: some churned streams never got an answer\n");
    run_until(churn_drained, o.drain);
    phase("drained");
    open_res = subs_check();
    phase("checked-open");
    /* Bytes: the same count to nobody's topics, then to held ones. */
    nb = o.bytes_events;
    ghost_bytes = bytes_burst(1, nb, &ghost_first);
    held_bytes = bytes_burst(0, nb, &held_first);
    phase("bytes-done");
    for (long q = held_first; q < held_first + nb && q < next_seq; q++) {
        int t = event_user[q], w = 0;
        size_t chan = strlen("ssegate:events:") + strlen(users[t]);

        for (int i = 2 * t; i < 2 * t + 2; i++) {
            if (streams[i].state == 1)
                w |= streams[i].port == o.port ? 1 : 2;
        }
        copies += (w & 1) + ((w & 2) >> 1);
        topic_frames += (double)((w & 1) + ((w & 2) >> 1)) * (double)message_bytes(chan, event_env[q]);
        /* The firehose design: the same envelope on ssegate:events, to both. */
        firehose_frames += 2.0 * (double)message_bytes(strlen("ssegate:events"), event_env[q]);
    }
    /* Every open stream's session as it stands, then all closed. */
    for (int i = 0; i < 2 * churn_topics; i++) {
        struct stream *s = &streams[i];

        if (s->state == 1 || s->state == 2)
            session_record(s, 0);
        else if (s->state == 0)
            opens_failed++;     /* never answered */
        if (s->state == 0 || s->state == 1) {
            event_free(s->ev);
            s->ev = NULL;
            close(s->fd);
            s->fd = -1;
        }
        if (s->state != 2)
            s->state = 3;
    }
    t_closed = now_ns();
    phase("all-closed");
    for (;;) {
        if (pattern_count("ssegate:events:*", NULL) == 0 && pattern_count("ssegate:topic:*", NULL) == 0 &&
            inst_sub(0) == inst_base[0] && inst_sub(1) == inst_base[1]) {
            closed_res.settled_ms = (double)(now_ns() - t_closed) / 1e6;
            break;
        }
        if (now_ns() - t_closed > 10000000000LL)
            break;
        run_for(0.02);
    }
    closed_res.channels = pattern_count("ssegate:events:*", &closed_res.foreign) +
                          pattern_count("ssegate:topic:*", &closed_res.foreign);
    for (int j = 0; j < 2; j++) {
        if (inst_sub(j) != inst_base[j]) {
            closed_res.inst_mismatch++;
            inst_after_ok = 0;
        }
    }
    phase("unsubscribed");

    /* Each topic's events by k: kidx[koff[t] + k] is its sequence number. */
    koff = calloc((size_t)o.users + 1, sizeof(long));
    kidx = calloc((size_t)(next_seq ? next_seq : 1), sizeof(long));
    if (koff == NULL || kidx == NULL)
        die("out of memory");
    for (int t = 0; t < o.users; t++)
        koff[t + 1] = koff[t] + topic_next_k[t];
    for (long q = 0; q < next_seq; q++)
        kidx[koff[event_user[q]] + event_k[q]] = q;
    for (size_t i = 0; i < nsessions; i++) {
        const struct session *x = &sessions[i];
        long owed = 0, miss = 0;

        if (!x->stable)
            churned_sessions++;
        server_closed += x->server_closed;
        dups += x->dups;
        ooo += x->ooo;
        regress += x->regress;
        wrong += x->wrong;
        for (long k = 0; k < topic_next_k[x->topic]; k++) {
            long q = kidx[koff[x->topic] + k];
            int ok = (accepted_bit[q >> 3] & (1u << (q & 7))) != 0;
            int got = x->got > 0 && k >= x->first_k && k <= x->last_k;

            if (!ok || event_sent[q] <= x->t_head ||
                (x->t_close != 0 && event_ack[q] + (long long)(o.grace * 1e9) >= x->t_close)) {
                not_owed += got;
                continue;
            }
            owed++;
            if (!got)
                miss++;
        }
        /* Holes inside the received run are losses too (owed or not). */
        miss += x->holes;
        expected += owed;
        delivered += owed - (miss > owed ? owed : miss);
        lost += miss;
        if (x->stable)
            lost_stable += miss;
        else
            lost_churned += miss;
    }
    fprintf(out, "{\"mode\":\"churn\",\"topics\":%d,\"instances\":2,\"streams\":%d,"
            "\"churn_ops\":%ld,\"churn_closes\":%ld,\"churn_reopens\":%ld,\"churn_skipped\":%ld,"
            "\"opens_failed\":%ld,\"sessions\":%zu,\"churned_sessions\":%ld,"
            "\"published\":%ld,\"accepted\":%ld,\"rejected\":%ld,\"reconnects\":%ld,"
            "\"skipped_slots\":%ld,"
            "\"expected_deliveries\":%ld,\"delivered\":%ld,\"lost\":%ld,\"lost_stable\":%ld,"
            "\"lost_churned\":%ld,\"duplicates\":%ld,\"out_of_order\":%ld,\"id_regress\":%ld,"
            "\"unexpected_events\":%ld,\"streams_closed_by_server\":%ld,\"received_not_owed\":%ld,"
            "\"grace_s\":%.3f,",
            churn_topics, 2 * churn_topics, churn_ops, churn_closes, churn_reopens, churn_skipped,
            opens_failed + streams_failed, nsessions, churned_sessions, next_seq, accepted,
            rejected, reconnects, pace_skipped, expected, delivered, lost, lost_stable, lost_churned, dups, ooo,
            regress, wrong, server_closed, not_owed, o.grace);
    hist_json(out, "latency_ms", &churn_lat, 1);
    subs_json(out, "subs_open", &open_res);
    subs_json(out, "subs_closed", &closed_res);
    fprintf(out, "\"bytes\":{\"events\":%ld,\"ghost_bytes\":%lld,\"held_bytes\":%lld,"
            "\"pubsub_bytes_per_event\":%.1f,\"copies_per_event\":%.3f,"
            "\"computed_bytes_per_event\":%.1f,\"firehose_bytes_per_event\":%.1f}}\n",
            nb, ghost_bytes, held_bytes, nb > 0 ? (double)(held_bytes - ghost_bytes) / (double)nb : 0,
            nb > 0 ? copies / (double)nb : 0, nb > 0 ? topic_frames / (double)nb : 0,
            nb > 0 ? firehose_frames / (double)nb : 0);
    free(koff);
    free(kidx);
    redisFree(rsync);
    return lost || dups || ooo || regress || wrong || server_closed || opens_failed ||
           streams_failed || rejected || open_res.topic_mismatch || open_res.inst_mismatch ||
           open_res.foreign || open_res.settled_ms < 0 || closed_res.settled_ms < 0 ||
           closed_res.channels || !inst_after_ok ? 3 : 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: loadgen --port P [--host H] [--api ssegate|nchan] [--streams N] [--users U]\n"
                    "       [--accounts] [--events E | --duration S] [--rate R] [--publishers K]\n"
                    "       [--pad B] [--drain S] [--json FILE]\n"
                    "       [--mode load|recovery|prepare|storm] [--redis-port RP] [--redis-channel C]\n"
                    "       [--restart] [--outage S] [--warmup S] [--after S] [--deadline S]\n"
                    "       [--history H] [--users-file F] [--observers N]\n"
                    "       [--port2 P2] [--port3 P3] [--topic NAME] [--serial]\n"
                    "       [--mode churn --topics T --churn-rate R --hold S --grace S\n"
                    "        --bytes-events N --redis-port RP]\n");
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
        { "port3", 1, 0, '3' }, { "topic", 1, 0, 'T' }, { "serial", 0, 0, 'S' },
        { "idle", 1, 0, 'I' }, { "mode", 1, 0, 'm' }, { "redis-port", 1, 0, 'R' },
        { "redis-channel", 1, 0, 'C' }, { "restart", 0, 0, 'x' }, { "outage", 1, 0, 'o' },
        { "warmup", 1, 0, 'w' }, { "after", 1, 0, 'f' }, { "deadline", 1, 0, 'l' },
        { "history", 1, 0, 'H' }, { "users-file", 1, 0, 'U' }, { "observers", 1, 0, 'O' },
        { "topics", 1, 0, 't' }, { "churn-rate", 1, 0, 'c' }, { "hold", 1, 0, 'y' },
        { "grace", 1, 0, 'g' }, { "bytes-events", 1, 0, 'b' },
        { 0, 0, 0, 0 }
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
        case '3': o.port3 = atoi(optarg); break;
        case 'T': o.topic = optarg; break;
        case 'S': o.serial = 1; break;
        case 'I': o.idle = atof(optarg); break;
        case 'm':
            o.mode = strcmp(optarg, "recovery") == 0 ? MODE_RECOVERY
                   : strcmp(optarg, "prepare") == 0 ? MODE_PREPARE
                   : strcmp(optarg, "storm") == 0 ? MODE_STORM
                   : strcmp(optarg, "churn") == 0 ? MODE_CHURN
                   : strcmp(optarg, "load") == 0 ? MODE_LOAD : (usage(), MODE_LOAD);
            break;
        case 'R': o.redis_port = atoi(optarg); break;
        case 'C': o.redis_channel = optarg; break;
        case 'x': o.restart = 1; break;
        case 'o': o.outage = atof(optarg); break;
        case 'w': o.warmup = atof(optarg); break;
        case 'f': o.after = atof(optarg); break;
        case 'l': o.deadline = atof(optarg); break;
        case 'H': o.history = atoi(optarg); break;
        case 'U': o.users_file = optarg; break;
        case 'O': o.observers = atoi(optarg); break;
        case 't': o.topics = atoi(optarg); break;
        case 'c': o.churn_rate = atof(optarg); break;
        case 'y': o.hold = atof(optarg); break;
        case 'g': o.grace = atof(optarg); break;
        case 'b': o.bytes_events = atol(optarg); break;
        default: usage();
        }
    }
    if (o.mode != MODE_LOAD) {
        /* These modes stop by their own phases, not by a count. */
        if (o.api != API_SSEGATE || o.history < 2 || o.deadline <= 0 ||
            ((o.mode == MODE_PREPARE || o.mode == MODE_STORM) && o.users_file == NULL))
            usage();
        if (o.events <= 0 && o.duration <= 0)
            o.duration = o.deadline;
    }
    if (o.mode == MODE_CHURN) {
        /* Slots 2t (stable) and 2t + 1 (churned), then a probe per
         * instance; topics, then the ghosts, then the probes' topics. */
        if (o.topics < 4 || o.topics > 1000000 || o.churn_rate < 0 || o.hold < 0 ||
            o.grace < 0 || o.bytes_events < 0 || o.rate <= 0 || o.duration <= 0)
            usage();
        o.streams = 2 * o.topics + CHURN_PROBES;
        o.users = o.topics + CHURN_GHOSTS + CHURN_PROBES;
    }
    if (o.topic != NULL) {
        /* Names go into request lines: ssegate's own alphabet, bounded. */
        size_t tl = strlen(o.topic);

        if (tl == 0 || tl > 64 || strspn(o.topic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                 "0123456789._:-") != tl || o.mode != MODE_LOAD)
            usage();
        o.users = 1;
        o.accounts = 0;
    }
    if (o.port3 && !o.port2)
        usage();
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
    long delivered = 0, dups = 0, lost = 0, ooo = 0;
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
    if (o.mode == MODE_STORM)
        storm_read_users();
    if (o.mode == MODE_RECOVERY || o.mode == MODE_STORM) {
        /* At most the rate over every phase that publishes (the pacing
         * skips rather than bursts), which also bounds the load. */
        long cap = (long)(o.rate * (o.warmup + 2 * o.deadline + o.after + 5)) + 1000;

        if (o.rate <= 0)
            die("these modes need a --rate");
        if (cap < max_events)
            max_events = cap;
    } else if (o.mode == MODE_PREPARE) {
        max_events = 1;
        o.streams = 0;
    } else if (o.mode == MODE_CHURN) {
        /* The churn at --rate (paced: never above it), then two bursts. */
        max_events = (long)(o.rate * (o.duration + 10)) + 2 * o.bytes_events + 1000;
    }
    base = event_base_new();
    if (users == NULL)
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
    if (o.mode != MODE_STORM) {
        for (int u = 0; u < o.users; u++)
            snprintf(users[u], sizeof(users[u]), "%d", u + 1);
    }
    if (o.accounts)
        create_accounts();
    if (o.mode != MODE_LOAD) {
        int rc;

        if (o.json != NULL && (out = fopen(o.json, "w")) == NULL)
            die("cannot write the JSON file");
        rc = o.mode == MODE_RECOVERY ? run_recovery(out)
           : o.mode == MODE_PREPARE ? run_prepare(out)
           : o.mode == MODE_CHURN ? run_churn(out) : run_storm(out);
        if (out != stdout)
            fclose(out);
        return rc;
    }

    for (int i = 0; i < o.streams; i++) {
        struct stream *s = &streams[i];

        s->index = i;
        s->user = i % o.users;
        s->ev_s = -1;
        s->line = malloc(MAX_LINE);
        s->line_cap = MAX_LINE;
        s->last_s = -1;
        s->seen = calloc((size_t)max_events / 8 + 1, 1);
        if (!s->line || !s->seen)
            die("out of memory");
        stream_connect(s, port_for(i));
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
        pubs[i].port = port_for(i);
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
        ooo += streams[i].ooo;
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
            "\"deliveries_per_sec\":%.1f,\"out_of_order\":%ld,\"instances\":%d,"
            "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
            "\"first_recipient_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
            "\"last_recipient_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
            o.streams, streams_closed, o.users, next_seq, accepted, rejected, reconnects, pub_secs,
            pub_secs > 0 ? (double)accepted / pub_secs : 0, expected_total, delivered, lost, dups,
            t_last_rx > t_first_sent ? (double)delivered * 1e9 / (double)(t_last_rx - t_first_sent) : 0,
            ooo, o.port3 ? 3 : o.port2 ? 2 : 1,
            hist_quantile_ms(&lat, 0.5), hist_quantile_ms(&lat, 0.99), hist_quantile_ms(&lat, 0.999),
            lat.max_ns / 1e6, hist_quantile_ms(&first, 0.5), hist_quantile_ms(&first, 0.99),
            first.max_ns / 1e6, hist_quantile_ms(&last, 0.5), hist_quantile_ms(&last, 0.99),
            last.max_ns / 1e6);
    if (out != stdout)
        fclose(out);
    return lost != 0 || dups != 0 || rejected != 0 || ooo != 0 ? 3 : 0;
}
