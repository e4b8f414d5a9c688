/* test_sse.c -- SSE framing: the exact bytes of every frame shape, line
 * splitting as EventSource parses it, and reference counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sse.h"

/* Checks f's bytes, length and NUL, then drops the test's reference. */
static void
assert_frame(struct sse_frame *f, const char *want)
{
    assert_non_null(f);
    assert_int_equal(f->len, strlen(want));
    assert_memory_equal(f->bytes, want, f->len);
    assert_int_equal(f->bytes[f->len], '\0');
    sse_frame_unref(f);
}

static void
test_event_with_id(void **state)
{
    struct event_id id = { 5, 1 };
    struct sse_frame *f;

    (void)state;
    f = sse_frame_new_event(&id, "x", "a\nb", 3);
    assert_non_null(f);
    assert_int_equal(f->has_id, 1);
    assert_int_equal(f->id.ms, 5);
    assert_int_equal(f->id.seq, 1);
    assert_int_equal(atomic_load(&f->refcount), 1);
    assert_frame(f, "id: 5-1\nevent: x\ndata: a\ndata: b\n\n");
}

static void
test_no_id_no_event(void **state)
{
    struct sse_frame *f;

    (void)state;
    f = sse_frame_new_event(NULL, "x", "{}", 2);
    assert_non_null(f);
    assert_int_equal(f->has_id, 0);
    assert_frame(f, "event: x\ndata: {}\n\n");
    /* NULL and "" both mean no event line (the client sees "message"). */
    assert_frame(sse_frame_new_event(NULL, NULL, "{}", 2), "data: {}\n\n");
    assert_frame(sse_frame_new_event(NULL, "", "{}", 2), "data: {}\n\n");
}

static void
test_line_endings(void **state)
{
    (void)state;
    /* CRLF, lone CR and LF all end a line, as the SSE parser reads them. */
    assert_frame(sse_frame_new_event(NULL, "t", "a\r\nb", 4),
                 "event: t\ndata: a\ndata: b\n\n");
    assert_frame(sse_frame_new_event(NULL, "t", "a\rb", 3),
                 "event: t\ndata: a\ndata: b\n\n");
    assert_frame(sse_frame_new_event(NULL, "t", "a\r\nb\rc\nd", 8),
                 "event: t\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    /* "\n\r" is two line ends, "\r\r\n" too. */
    assert_frame(sse_frame_new_event(NULL, "t", "a\n\rb", 4),
                 "event: t\ndata: a\ndata: \ndata: b\n\n");
    assert_frame(sse_frame_new_event(NULL, "t", "a\r\r\nb", 5),
                 "event: t\ndata: a\ndata: \ndata: b\n\n");
    /* A trailing line end leaves an empty last line, so the client's
     * data ends in "\n" exactly as sent. */
    assert_frame(sse_frame_new_event(NULL, "t", "a\n", 2),
                 "event: t\ndata: a\ndata: \n\n");
    assert_frame(sse_frame_new_event(NULL, "t", "a\r\n", 3),
                 "event: t\ndata: a\ndata: \n\n");
    assert_frame(sse_frame_new_event(NULL, "t", "\n\n", 2),
                 "event: t\ndata: \ndata: \ndata: \n\n");
    /* Leading spaces survive: only the one after "data:" is eaten. */
    assert_frame(sse_frame_new_event(NULL, NULL, " x", 2), "data:  x\n\n");
}

static void
test_empty_data(void **state)
{
    (void)state;
    assert_frame(sse_frame_new_event(NULL, NULL, "", 0), "data: \n\n");
    assert_frame(sse_frame_new_event(NULL, "e", NULL, 0), "event: e\ndata: \n\n");
}

static void
test_data_is_length_bounded(void **state)
{
    const char buf[] = { 'a', 'b', 'X', '\n', 'Y' };
    const char with_nul[] = { 'a', '\0', 'b' };
    struct sse_frame *f;

    (void)state;
    assert_frame(sse_frame_new_event(NULL, "e", buf, 2), "event: e\ndata: ab\n\n");
    /* A NUL inside data is copied, not taken as the end. */
    f = sse_frame_new_event(NULL, NULL, with_nul, 3);
    assert_non_null(f);
    assert_int_equal(f->len, 11);
    assert_memory_equal(f->bytes, "data: a\0b\n\n", 12);
    sse_frame_unref(f);
}

static void
test_bad_event_names(void **state)
{
    char name[SSE_EVENT_MAX + 2];
    char want[SSE_EVENT_MAX + 32];

    (void)state;
    assert_null(sse_frame_new_event(NULL, "a\nb", "x", 1));
    assert_null(sse_frame_new_event(NULL, "a\rb", "x", 1));
    assert_null(sse_frame_new_event(NULL, "\n", "x", 1));
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';                  /* 65 characters */
    assert_null(sse_frame_new_event(NULL, name, "x", 1));
    name[SSE_EVENT_MAX] = '\0';                     /* 64 is allowed */
    snprintf(want, sizeof(want), "event: %s\ndata: x\n\n", name);
    assert_frame(sse_frame_new_event(NULL, name, "x", 1), want);
}

static void
test_largest_id(void **state)
{
    struct event_id id = { UINT64_MAX, UINT64_MAX };
    struct sse_frame *f = sse_frame_new_event(&id, NULL, "1", 1);

    (void)state;
    assert_frame(f, "id: 18446744073709551615-18446744073709551615\ndata: 1\n\n");
}

static void
test_encode_sizes_and_bounds(void **state)
{
    static const char want[] = "id: 1732484473123-0\nevent: snapshot\ndata: {}\n\n";
    struct event_id id = { 1732484473123ULL, 0 };
    char buf[64];
    size_t n;

    (void)state;
    n = sse_encode_event(NULL, 0, &id, "snapshot", "{}", 2);
    assert_int_equal(n, strlen(want));
    /* A short buffer gets exactly cap bytes of prefix and the full length. */
    for (size_t cap = 0; cap <= n; cap++) {
        memset(buf, '#', sizeof(buf));
        assert_int_equal(sse_encode_event(buf, cap, &id, "snapshot", "{}", 2), n);
        assert_memory_equal(buf, want, cap);
        assert_int_equal(buf[cap], '#');
    }
}

static void
test_raw_frame(void **state)
{
    struct sse_frame *f = sse_frame_new_raw(": ping\n\n", 8);

    (void)state;
    assert_non_null(f);
    assert_int_equal(f->has_id, 0);
    assert_frame(f, ": ping\n\n");
    assert_frame(sse_frame_new_raw("retry: 3000\n\n", 13), "retry: 3000\n\n");
    assert_frame(sse_frame_new_raw(NULL, 0), "");
}

static void
test_refcount(void **state)
{
    struct sse_frame *f = sse_frame_new_raw(": ping\n\n", 8);

    (void)state;
    assert_non_null(f);
    assert_int_equal(atomic_load(&f->refcount), 1);
    assert_ptr_equal(sse_frame_ref(f), f);
    assert_ptr_equal(sse_frame_ref(f), f);
    assert_int_equal(atomic_load(&f->refcount), 3);
    sse_frame_unref(f);
    sse_frame_unref(f);
    assert_int_equal(atomic_load(&f->refcount), 1);
    sse_frame_unref(NULL);                          /* ignored */
    assert_frame(f, ": ping\n\n");                  /* the last unref frees */
}

#define SSE_TEST_THREADS 4
#define SSE_TEST_ROUNDS 10000

static void *
ref_unref_thread(void *arg)
{
    struct sse_frame *f = arg;

    for (int i = 0; i < SSE_TEST_ROUNDS; i++) {
        sse_frame_ref(f);
        sse_frame_unref(f);
    }
    sse_frame_unref(f);             /* the reference main took for us */
    return NULL;
}

/* Any thread may drop a reference: the count stays exact and the frame is
 * freed once (ASan or valgrind would report a double free or a leak). */
static void
test_refcount_across_threads(void **state)
{
    struct sse_frame *f = sse_frame_new_raw("x", 1);
    pthread_t t[SSE_TEST_THREADS];

    (void)state;
    assert_non_null(f);
    for (int i = 0; i < SSE_TEST_THREADS; i++) {
        sse_frame_ref(f);
        assert_int_equal(pthread_create(&t[i], NULL, ref_unref_thread, f), 0);
    }
    for (int i = 0; i < SSE_TEST_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(atomic_load(&f->refcount), 1);
    assert_frame(f, "x");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_with_id),
        cmocka_unit_test(test_no_id_no_event),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_empty_data),
        cmocka_unit_test(test_data_is_length_bounded),
        cmocka_unit_test(test_bad_event_names),
        cmocka_unit_test(test_largest_id),
        cmocka_unit_test(test_encode_sizes_and_bounds),
        cmocka_unit_test(test_raw_frame),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_refcount_across_threads),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
