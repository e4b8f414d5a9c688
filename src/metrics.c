/* metrics.c -- the process's counters and histograms, and the Prometheus
 * text they are scraped as. Owns one block of counters per thread that
 * ever counted (struct metrics_local: made on the thread's first count,
 * linked into a list under a mutex, never freed while the process runs,
 * so a stopped thread's counts stay in the sums) and the route labels.
 *
 * Why per thread: a delivery is counted by whichever thread wrote it (the
 * subscriber, a fan-out helper, a writer loop), thousands of times per
 * fan-out. One shared atomic would be a cache line bounced between every
 * core at every write. Each block has one writer, its thread, which adds
 * with a relaxed load and store (no lock prefix, no fence: a plain add);
 * the scrape sums the blocks with relaxed loads, so it may see a thread's
 * counts a moment late, never torn, never going down. Blocks are aligned
 * to a cache line so no two threads' counts share one. */
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics.h"

#define METRICS_LINE 64
/* Statuses 100..599, one slot each. */
#define METRICS_STATUS_MIN 100
#define METRICS_STATUSES 500

/* Histogram bounds, in microseconds (rendered in seconds): from half a
 * millisecond, a request answered from memory or a delivery on an idle
 * instance, to ten seconds, a Redis timeout or a stream stuck behind a
 * slow fan-out. */
static const int64_t metrics_bounds_us[] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};
#define METRICS_BUCKETS (sizeof(metrics_bounds_us) / sizeof(metrics_bounds_us[0]))

typedef _Atomic uint64_t metrics_u64;

struct metrics_hist {
    metrics_u64 bucket[METRICS_BUCKETS + 1];    /* per bucket; the last: +Inf */
    metrics_u64 sum_us;
};

/* One thread's counts. Only its thread writes them. */
struct metrics_local {
    struct metrics_local *next;         /* in metrics_all, under metrics_mu */
    int shared;                         /* the fallback block: several writers */
    metrics_u64 c[METRICS_COUNTERS];
    struct metrics_hist delay;
    /* Made on the thread's first request (HTTP threads only): per route
     * (metrics_nroutes + 1), statuses and durations. */
    _Atomic(metrics_u64 *) status;
    _Atomic(struct metrics_hist *) duration;
};

static pthread_mutex_t metrics_mu = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_local *metrics_all;
/* Counts of threads that could not get a block of their own. */
static struct metrics_local metrics_fallback = { .shared = 1 };
static _Thread_local struct metrics_local *metrics_self;

/* Set before the HTTP threads start; read-only after. */
static const char **metrics_routes;
static size_t metrics_nroutes;

/* ------------------------------------------------------------ counting */

static struct metrics_local *
metrics_local(void)
{
    struct metrics_local *m = metrics_self;
    void *p;
    size_t size;

    if (m != NULL)
        return m;
    size = (sizeof(*m) + METRICS_LINE - 1) / METRICS_LINE * METRICS_LINE;
    if (posix_memalign(&p, METRICS_LINE, size) != 0) {
        metrics_self = &metrics_fallback;
        return metrics_self;
    }
    m = memset(p, 0, size);
    pthread_mutex_lock(&metrics_mu);
    m->next = metrics_all;
    metrics_all = m;
    pthread_mutex_unlock(&metrics_mu);
    metrics_self = m;
    return m;
}

/* One writer: a plain add, published with a relaxed store. */
static inline void
metrics_bump(const struct metrics_local *m, metrics_u64 *x, uint64_t n)
{
    if (m->shared)
        atomic_fetch_add_explicit(x, n, memory_order_relaxed);
    else
        atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

void
metrics_add(enum metrics_counter c, uint64_t n)
{
    struct metrics_local *m = metrics_local();

    metrics_bump(m, &m->c[c], n);
}

void
metrics_note_write(uint64_t bytes, uint64_t events)
{
    struct metrics_local *m = metrics_local();

    metrics_bump(m, &m->c[METRICS_SENT_BYTES], bytes);
    if (events > 0)
        metrics_bump(m, &m->c[METRICS_DELIVERIES], events);
}

static void
metrics_hist_observe(const struct metrics_local *m, struct metrics_hist *h, int64_t us)
{
    size_t i = 0;

    if (us < 0)
        us = 0;             /* another instance's clock, a little ahead */
    while (i < METRICS_BUCKETS && us > metrics_bounds_us[i])
        i++;
    metrics_bump(m, &h->bucket[i], 1);
    metrics_bump(m, &h->sum_us, (uint64_t)us);
}

void
metrics_observe_delivery_delay(int64_t delay_us)
{
    struct metrics_local *m = metrics_local();

    metrics_hist_observe(m, &m->delay, delay_us);
}

int
metrics_set_routes(const char *const *names, size_t n)
{
    const char **v = calloc(n + 1, sizeof(*v));

    if (v == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i] = names[i];
    v[n] = "unmatched";
    free(metrics_routes);
    metrics_routes = v;
    metrics_nroutes = n;
    return 0;
}

void
metrics_observe_request(size_t route, unsigned status, int64_t duration_us)
{
    struct metrics_local *m = metrics_local();
    metrics_u64 *st = atomic_load_explicit(&m->status, memory_order_relaxed);
    struct metrics_hist *d = atomic_load_explicit(&m->duration, memory_order_relaxed);

    if (metrics_routes == NULL || m->shared)
        return;
    if (route > metrics_nroutes)
        route = metrics_nroutes;
    if (st == NULL || d == NULL) {
        /* The scrape may read the pointers at any time: published zeroed,
         * with release. Out of memory, this request goes uncounted. */
        st = calloc((metrics_nroutes + 1) * METRICS_STATUSES, sizeof(*st));
        d = calloc(metrics_nroutes + 1, sizeof(*d));
        if (st == NULL || d == NULL) {
            free(st);
            free(d);
            return;
        }
        atomic_store_explicit(&m->status, st, memory_order_release);
        atomic_store_explicit(&m->duration, d, memory_order_release);
    }
    if (status >= METRICS_STATUS_MIN && status < METRICS_STATUS_MIN + METRICS_STATUSES)
        metrics_bump(m, &st[route * METRICS_STATUSES + (status - METRICS_STATUS_MIN)], 1);
    metrics_hist_observe(m, &d[route], duration_us);
}

/* ------------------------------------------------------------ the text */

static void
metrics_text_put(struct metrics_text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t ncap = t->cap ? t->cap : 4096;
        char *ns;

        while (ncap < t->len + n + 1)
            ncap *= 2;
        if ((ns = realloc(t->s, ncap)) == NULL) {
            t->failed = 1;
            return;
        }
        t->s = ns;
        t->cap = ncap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void
metrics_text_puts(struct metrics_text *t, const char *s)
{
    metrics_text_put(t, s, strlen(s));
}

/* s escaped as the format wants: a label value escapes \, " and newline;
 * HELP text (quote 0) only \ and newline. */
static void
metrics_text_escaped(struct metrics_text *t, const char *s, int quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            metrics_text_put(t, "\\\\", 2);
        else if (*s == '\n')
            metrics_text_put(t, "\\n", 2);
        else if (*s == '"' && quote)
            metrics_text_put(t, "\\\"", 2);
        else
            metrics_text_put(t, s, 1);
    }
}

void
metrics_text_family(struct metrics_text *t, const char *name, const char *type,
                    const char *help)
{
    metrics_text_puts(t, "# HELP ");
    metrics_text_puts(t, name);
    metrics_text_puts(t, " ");
    metrics_text_escaped(t, help, 0);
    metrics_text_puts(t, "\n# TYPE ");
    metrics_text_puts(t, name);
    metrics_text_puts(t, " ");
    metrics_text_puts(t, type);
    metrics_text_puts(t, "\n");
}

/* name{k0="v0",k1="v1"} num: n labels, none without braces. */
static void
metrics_text_sample(struct metrics_text *t, const char *name, const char *const *keys,
                    const char *const *values, size_t n, const char *num)
{
    metrics_text_puts(t, name);
    for (size_t i = 0; i < n; i++) {
        metrics_text_puts(t, i == 0 ? "{" : ",");
        metrics_text_puts(t, keys[i]);
        metrics_text_puts(t, "=\"");
        metrics_text_escaped(t, values[i], 1);
        metrics_text_puts(t, "\"");
    }
    metrics_text_puts(t, n > 0 ? "} " : " ");
    metrics_text_puts(t, num);
    metrics_text_puts(t, "\n");
}

void
metrics_text_u64(struct metrics_text *t, const char *name, const char *label,
                 const char *value, uint64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "%" PRIu64, v);
    metrics_text_sample(t, name, &label, &value, label != NULL, num);
}

void
metrics_text_u64_2(struct metrics_text *t, const char *name, const char *label1,
                   const char *value1, const char *label2, const char *value2, uint64_t v)
{
    const char *keys[2] = { label1, label2 }, *values[2] = { value1, value2 };
    char num[32];

    snprintf(num, sizeof(num), "%" PRIu64, v);
    metrics_text_sample(t, name, keys, values, 2, num);
}

void
metrics_text_f64(struct metrics_text *t, const char *name, const char *label,
                 const char *value, double v)
{
    char num[64];

    snprintf(num, sizeof(num), "%.6f", v);
    metrics_text_sample(t, name, &label, &value, label != NULL, num);
}

void
metrics_text_histogram(struct metrics_text *t, const char *name, const char *label,
                       const char *value, const double *bounds, const uint64_t *counts,
                       size_t nbounds, double sum)
{
    char sample[128], le[32], num[32];
    const char *keys[2] = { label, "le" }, *values[2] = { value, le };
    size_t nl = label != NULL ? 2 : 1;
    uint64_t total = 0;

    snprintf(sample, sizeof(sample), "%s_bucket", name);
    for (size_t i = 0; i <= nbounds; i++) {
        total += counts[i];
        if (i < nbounds)
            snprintf(le, sizeof(le), "%g", bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(num, sizeof(num), "%" PRIu64, total);
        metrics_text_sample(t, sample, label != NULL ? keys : keys + 1,
                            label != NULL ? values : values + 1, nl, num);
    }
    snprintf(sample, sizeof(sample), "%s_sum", name);
    metrics_text_f64(t, sample, label, value, sum);
    snprintf(sample, sizeof(sample), "%s_count", name);
    metrics_text_u64(t, sample, label, value, total);
}

char *
metrics_text_take(struct metrics_text *t, size_t *len)
{
    char *s = t->s;

    if (t->failed || s == NULL) {
        free(s);
        s = NULL;
    }
    *len = s != NULL ? t->len : 0;
    memset(t, 0, sizeof(*t));
    return s;
}

/* ------------------------------------------------------------ the scrape */

/* Every thread's counts, summed. */
struct metrics_sum {
    uint64_t c[METRICS_COUNTERS];
    uint64_t delay[METRICS_BUCKETS + 1];
    uint64_t delay_sum_us;
    uint64_t *status;               /* (nroutes + 1) * METRICS_STATUSES */
    uint64_t *duration;             /* (nroutes + 1) * (METRICS_BUCKETS + 1) */
    uint64_t *duration_sum_us;      /* nroutes + 1 */
};

static uint64_t
metrics_load(metrics_u64 *x)
{
    return atomic_load_explicit(x, memory_order_relaxed);
}

static void
metrics_sum_one(struct metrics_sum *s, struct metrics_local *m)
{
    metrics_u64 *st = atomic_load_explicit(&m->status, memory_order_acquire);
    struct metrics_hist *d = atomic_load_explicit(&m->duration, memory_order_acquire);
    size_t nr = metrics_nroutes + 1;

    for (size_t i = 0; i < METRICS_COUNTERS; i++)
        s->c[i] += metrics_load(&m->c[i]);
    for (size_t i = 0; i <= METRICS_BUCKETS; i++)
        s->delay[i] += metrics_load(&m->delay.bucket[i]);
    s->delay_sum_us += metrics_load(&m->delay.sum_us);
    if (st == NULL || d == NULL || s->status == NULL)
        return;
    for (size_t i = 0; i < nr * METRICS_STATUSES; i++)
        s->status[i] += metrics_load(&st[i]);
    for (size_t r = 0; r < nr; r++) {
        for (size_t i = 0; i <= METRICS_BUCKETS; i++)
            s->duration[r * (METRICS_BUCKETS + 1) + i] += metrics_load(&d[r].bucket[i]);
        s->duration_sum_us[r] += metrics_load(&d[r].sum_us);
    }
}

static int
metrics_sum(struct metrics_sum *s)
{
    size_t nr = metrics_nroutes + 1;

    memset(s, 0, sizeof(*s));
    s->status = calloc(nr * METRICS_STATUSES, sizeof(*s->status));
    s->duration = calloc(nr * (METRICS_BUCKETS + 1), sizeof(*s->duration));
    s->duration_sum_us = calloc(nr, sizeof(*s->duration_sum_us));
    if (s->status == NULL || s->duration == NULL || s->duration_sum_us == NULL) {
        free(s->status);
        free(s->duration);
        free(s->duration_sum_us);
        return -1;
    }
    pthread_mutex_lock(&metrics_mu);
    for (struct metrics_local *m = metrics_all; m != NULL; m = m->next)
        metrics_sum_one(s, m);
    pthread_mutex_unlock(&metrics_mu);
    metrics_sum_one(s, &metrics_fallback);
    return 0;
}

/* What /proc says of this process. */
struct metrics_proc {
    int ok;
    double cpu_s, start_s;
    uint64_t rss_bytes, open_fds, max_fds;
};

static void
metrics_proc_read(struct metrics_proc *p)
{
    char buf[2048], *q;
    FILE *f;
    size_t n;
    unsigned long long utime, stime, start, btime = 0;
    long rss;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    DIR *d;

    memset(p, 0, sizeof(*p));
    if ((f = fopen("/proc/self/stat", "re")) == NULL)
        return;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The name may hold spaces and parentheses: fields follow the last ')'.
     * After it: state (3), ..., utime (14), stime (15), ..., starttime
     * (22), vsize (23), rss (24). */
    if ((q = strrchr(buf, ')')) == NULL ||
        sscanf(q + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
               "%*d %*d %*d %*d %*d %*d %llu %*u %ld", &utime, &stime, &start, &rss) != 4)
        return;
    if ((f = fopen("/proc/stat", "re")) != NULL) {
        while (fgets(buf, sizeof(buf), f) != NULL) {
            if (sscanf(buf, "btime %llu", &btime) == 1)
                break;
        }
        fclose(f);
    }
    if (tick <= 0)
        tick = 100;
    p->cpu_s = (double)(utime + stime) / (double)tick;
    p->start_s = (double)btime + (double)start / (double)tick;
    p->rss_bytes = rss > 0 && page > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    if ((d = opendir("/proc/self/fd")) != NULL) {
        struct dirent *e;

        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.')
                p->open_fds++;
        }
        closedir(d);
        if (p->open_fds > 0)
            p->open_fds--;          /* opendir's own */
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    p->ok = 1;
}

static void
metrics_counter(struct metrics_text *t, const char *name, const char *help, uint64_t v)
{
    metrics_text_family(t, name, "counter", help);
    metrics_text_u64(t, name, NULL, NULL, v);
}

static void
metrics_gauge(struct metrics_text *t, const char *name, const char *help, uint64_t v)
{
    metrics_text_family(t, name, "gauge", help);
    metrics_text_u64(t, name, NULL, NULL, v);
}

char *
metrics_render(const struct metrics_view *v, size_t *len)
{
    struct metrics_text t = { NULL, 0, 0, 0 };
    struct metrics_sum s;
    struct metrics_proc p;
    double bounds[METRICS_BUCKETS];
    size_t nr = metrics_nroutes + 1;
    uint64_t subs;

    if (metrics_sum(&s) == -1)
        return NULL;
    for (size_t i = 0; i < METRICS_BUCKETS; i++)
        bounds[i] = (double)metrics_bounds_us[i] / 1e6;

    metrics_text_family(&t, "ssegate_streams", "gauge", "Streams open, by kind.");
    for (size_t i = 0; i < v->nstreams; i++)
        metrics_text_u64(&t, "ssegate_streams", "kind", v->streams[i].label,
                         v->streams[i].value);
    metrics_counter(&t, "ssegate_streams_opened_total",
                    "Streams indexed since start; each ends once, counted in "
                    "ssegate_streams_closed_total.", v->streams_opened);
    metrics_text_family(&t, "ssegate_streams_closed_total", "counter",
                        "Streams ended since start, by reason.");
    for (size_t i = 0; i < v->nclosed; i++)
        metrics_text_u64(&t, "ssegate_streams_closed_total", "reason", v->closed[i].label,
                         v->closed[i].value);

    metrics_counter(&t, "ssegate_events_received_total",
                    "Channel messages received from Redis.", s.c[METRICS_EVENTS_RECEIVED]);
    metrics_counter(&t, "ssegate_deliveries_total",
                    "Events wholly written to streams (one per event per stream).",
                    s.c[METRICS_DELIVERIES]);
    metrics_counter(&t, "ssegate_sent_bytes_total",
                    "Bytes written to stream sockets (heads, framing and heartbeats "
                    "included).", s.c[METRICS_SENT_BYTES]);
    metrics_counter(&t, "ssegate_replayed_events_total",
                    "Events queued to streams from history.", s.c[METRICS_REPLAYED_EVENTS]);
    metrics_counter(&t, "ssegate_gaps_total", "Gap events queued to streams.",
                    s.c[METRICS_GAPS]);

    metrics_text_family(&t, "ssegate_http_requests_total", "counter",
                        "HTTP requests answered, by route and status.");
    for (size_t r = 0; r < nr; r++) {
        for (unsigned i = 0; i < METRICS_STATUSES; i++) {
            char code[8];

            if (s.status[r * METRICS_STATUSES + i] == 0)
                continue;
            snprintf(code, sizeof(code), "%u", i + METRICS_STATUS_MIN);
            metrics_text_u64_2(&t, "ssegate_http_requests_total", "route",
                               metrics_routes[r], "code", code,
                               s.status[r * METRICS_STATUSES + i]);
        }
    }
    metrics_text_family(&t, "ssegate_http_request_duration_seconds", "histogram",
                        "Time from a request's head to its answer, by route.");
    for (size_t r = 0; r < nr; r++) {
        const uint64_t *b = &s.duration[r * (METRICS_BUCKETS + 1)];
        uint64_t n = 0;

        for (size_t i = 0; i <= METRICS_BUCKETS; i++)
            n += b[i];
        if (n > 0)
            metrics_text_histogram(&t, "ssegate_http_request_duration_seconds", "route",
                                   metrics_routes[r], bounds, b, METRICS_BUCKETS,
                                   (double)s.duration_sum_us[r] / 1e6);
    }
    metrics_text_family(&t, "ssegate_delivery_delay_seconds", "histogram",
                        "Time from a live event's ts to its write to a stream here.");
    metrics_text_histogram(&t, "ssegate_delivery_delay_seconds", NULL, NULL, bounds,
                           s.delay, METRICS_BUCKETS, (double)s.delay_sum_us / 1e6);

    metrics_gauge(&t, "ssegate_redis_up",
                  "1 while subscribed to both channels, else 0.", (uint64_t)(v->redis_up != 0));
    subs = s.c[METRICS_SUBSCRIPTIONS];
    metrics_counter(&t, "ssegate_redis_reconnects_total",
                    "Times the subscription came back after it was lost.",
                    subs > 0 ? subs - 1 : 0);
    metrics_text_family(&t, "ssegate_publish_backlog", "gauge",
                        "This instance's events accepted, not yet fanned out.");
    metrics_text_f64(&t, "ssegate_publish_backlog", NULL, NULL,
                     (double)(v->publish_backlog > 0 ? v->publish_backlog : 0));
    metrics_gauge(&t, "ssegate_request_bodies_pending_bytes",
                  "Bytes of request bodies being received (MAX_PENDING_BODY_KIB "
                  "bounds them).", v->bodies_pending);
    metrics_counter(&t, "ssegate_rate_limited_total",
                    "Requests refused 429 rate_limited.", s.c[METRICS_RATE_LIMITED]);

    metrics_proc_read(&p);
    if (p.ok) {
        metrics_text_family(&t, "process_cpu_seconds_total", "counter",
                            "Total user and system CPU time spent in seconds.");
        metrics_text_f64(&t, "process_cpu_seconds_total", NULL, NULL, p.cpu_s);
        metrics_gauge(&t, "process_resident_memory_bytes", "Resident memory size in bytes.",
                      p.rss_bytes);
        metrics_gauge(&t, "process_open_fds", "Number of open file descriptors.",
                      p.open_fds);
        metrics_gauge(&t, "process_max_fds", "Maximum number of open file descriptors.",
                      p.max_fds);
        metrics_text_family(&t, "process_start_time_seconds", "gauge",
                            "Start time of the process since unix epoch in seconds.");
        metrics_text_f64(&t, "process_start_time_seconds", NULL, NULL, p.start_s);
    }
    free(s.status);
    free(s.duration);
    free(s.duration_sum_us);
    return metrics_text_take(&t, len);
}
