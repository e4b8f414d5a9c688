/* test_metrics.c -- the Prometheus text: label values escaped, HELP and
 * TYPE lines, histogram buckets cumulative up to +Inf with _sum and
 * _count; and counters added on several threads summed exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

static char *
take(struct metrics_text *t)
{
    size_t len;
    char *s = metrics_text_take(t, &len);

    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

static void
test_escaping(void **state)
{
    struct metrics_text t = { NULL, 0, 0, 0 };
    char *s;

    (void)state;
    metrics_text_family(&t, "x_total", "counter", "back\\slash and\nnewline \"kept\"");
    metrics_text_u64(&t, "x_total", "route", "a\"b\\c\nd", 7);
    metrics_text_u64(&t, "x_total", NULL, NULL, 18446744073709551615ull);
    metrics_text_u64_2(&t, "x_total", "route", "/events", "code", "202", 3);
    metrics_text_f64(&t, "y", NULL, NULL, 0.25);
    s = take(&t);
    assert_string_equal(s,
                        "# HELP x_total back\\\\slash and\\nnewline \"kept\"\n"
                        "# TYPE x_total counter\n"
                        "x_total{route=\"a\\\"b\\\\c\\nd\"} 7\n"
                        "x_total 18446744073709551615\n"
                        "x_total{route=\"/events\",code=\"202\"} 3\n"
                        "y 0.250000\n");
    free(s);
}

static void
test_histogram(void **state)
{
    static const double bounds[] = { 0.001, 0.0025, 1 };
    static const uint64_t counts[] = { 2, 0, 3, 1 };    /* per bucket; last: +Inf */
    struct metrics_text t = { NULL, 0, 0, 0 };
    char *s;

    (void)state;
    metrics_text_histogram(&t, "d_seconds", "route", "/health", bounds, counts, 3, 12.5);
    metrics_text_histogram(&t, "e_seconds", NULL, NULL, bounds, counts, 3, 0);
    s = take(&t);
    assert_string_equal(s,
                        "d_seconds_bucket{route=\"/health\",le=\"0.001\"} 2\n"
                        "d_seconds_bucket{route=\"/health\",le=\"0.0025\"} 2\n"
                        "d_seconds_bucket{route=\"/health\",le=\"1\"} 5\n"
                        "d_seconds_bucket{route=\"/health\",le=\"+Inf\"} 6\n"
                        "d_seconds_sum{route=\"/health\"} 12.500000\n"
                        "d_seconds_count{route=\"/health\"} 6\n"
                        "e_seconds_bucket{le=\"0.001\"} 2\n"
                        "e_seconds_bucket{le=\"0.0025\"} 2\n"
                        "e_seconds_bucket{le=\"1\"} 5\n"
                        "e_seconds_bucket{le=\"+Inf\"} 6\n"
                        "e_seconds_sum 0.000000\n"
                        "e_seconds_count 6\n");
    free(s);
}

#define THREADS 4
#define ADDS 100000

static void *
adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < ADDS; i++)
        metrics_note_write(3, 1);
    metrics_observe_delivery_delay(2000);       /* 2 ms: the 0.0025 bucket */
    metrics_observe_request(0, 202, 700);
    return NULL;
}

/* The value of the sample line that starts with prefix + " ". */
static unsigned long long
sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);

    while ((p = strstr(p, prefix)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtoull(p + n + 1, NULL, 10);
        p += n;
    }
    fail_msg("no sample %s in:\n%s", prefix, text);
    return 0;
}

static void
test_threads_summed(void **state)
{
    static const char *const routes[] = { "/events", "/health" };
    pthread_t th[THREADS];
    struct metrics_view v;
    size_t len;
    char *s;

    (void)state;
    assert_int_equal(metrics_set_routes(routes, 2), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, adder, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    memset(&v, 0, sizeof(v));
    v.streams[v.nstreams++] = (struct metrics_labelled){ "user", 5 };
    v.closed[v.nclosed++] = (struct metrics_labelled){ "client", 2 };
    v.streams_opened = 7;
    v.redis_up = 1;
    assert_non_null(s = metrics_render(&v, &len));
    assert_int_equal(sample(s, "ssegate_deliveries_total"), THREADS * ADDS);
    assert_int_equal(sample(s, "ssegate_sent_bytes_total"), 3ull * THREADS * ADDS);
    assert_int_equal(sample(s, "ssegate_streams{kind=\"user\"}"), 5);
    assert_int_equal(sample(s, "ssegate_streams_closed_total{reason=\"client\"}"), 2);
    assert_int_equal(sample(s, "ssegate_streams_opened_total"), 7);
    assert_int_equal(sample(s, "ssegate_redis_up"), 1);
    assert_int_equal(sample(s, "ssegate_delivery_delay_seconds_bucket{le=\"0.001\"}"), 0);
    assert_int_equal(sample(s, "ssegate_delivery_delay_seconds_bucket{le=\"0.0025\"}"), THREADS);
    assert_int_equal(sample(s, "ssegate_delivery_delay_seconds_bucket{le=\"+Inf\"}"), THREADS);
    assert_int_equal(sample(s, "ssegate_delivery_delay_seconds_count"), THREADS);
    assert_int_equal(
        sample(s, "ssegate_http_requests_total{route=\"/events\",code=\"202\"}"), THREADS);
    assert_int_equal(
        sample(s, "ssegate_http_request_duration_seconds_bucket{route=\"/events\",le=\"0.001\"}"),
        THREADS);
    assert_null(strstr(s, "route=\"/health\""));    /* nothing observed: no samples */
    assert_non_null(strstr(s, "# TYPE process_open_fds gauge\nprocess_open_fds "));
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_threads_summed),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
