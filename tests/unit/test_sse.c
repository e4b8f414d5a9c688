/* test_sse.c -- SSE framing: exact bytes, line splitting, refcounts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "sse.h"

static void
assert_frame(struct sse_frame *f, const char *want)
{
    assert_non_null(f);
    assert_int_equal(f->len, strlen(want));
    assert_string_equal(f->bytes, want);
    sse_frame_unref(f);
}

static void
test_event_with_id(void **state)
{
    struct event_id id = { 5, 1 };

    (void)state;
    struct sse_frame *f = sse_frame_new_event(&id, "x", "a\nb", 3);
    assert_int_equal(f->has_id, 1);
    assert_int_equal(f->id.ms, 5);
    assert_int_equal(f->id.seq, 1);
    assert_frame(f, "id: 5-1\nevent: x\ndata: a\ndata: b\n\n");
}

static void
test_line_endings(void **state)
{
    (void)state;
    assert_frame(sse_frame_new_event(NULL, "t", "a\r\nb\rc\nd", 8),
                 "event: t\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    assert_frame(sse_frame_new_event(NULL, "t", "a\n", 2),
                 "event: t\ndata: a\ndata: \n\n");
    assert_frame(sse_frame_new_event(NULL, "t", "\n\n", 2),
                 "event: t\ndata: \ndata: \ndata: \n\n");
}

static void
test_empty_and_no_event(void **state)
{
    struct sse_frame *f;

    (void)state;
    f = sse_frame_new_event(NULL, NULL, "", 0);
    assert_int_equal(f->has_id, 0);
    assert_frame(f, "data: \n\n");
    assert_frame(sse_frame_new_event(NULL, "", "{}", 2), "data: {}\n\n");
}

static void
test_data_not_nul_terminated(void **state)
{
    const char buf[] = { 'a', 'b', 'X' };

    (void)state;
    assert_frame(sse_frame_new_event(NULL, "e", buf, 2), "event: e\ndata: ab\n\n");
}

static void
test_bad_event_names(void **state)
{
    char long_name[SSE_EVENT_MAX + 2];

    (void)state;
    assert_null(sse_frame_new_event(NULL, "a\nb", "x", 1));
    assert_null(sse_frame_new_event(NULL, "a\rb", "x", 1));
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_null(sse_frame_new_event(NULL, long_name, "x", 1));
    long_name[SSE_EVENT_MAX] = '\0';
    sse_frame_unref(sse_frame_new_event(NULL, long_name, "x", 1));
}

static void
test_encode_sizes(void **state)
{
    struct event_id id = { 1732484473123ULL, 0 };
    char buf[8];
    size_t n;

    (void)state;
    n = sse_encode_event(NULL, 0, &id, "snapshot", "{}", 2);
    assert_int_equal(n, strlen("id: 1732484473123-0\nevent: snapshot\ndata: {}\n\n"));
    /* A short buffer gets a prefix and the full length. */
    assert_int_equal(sse_encode_event(buf, sizeof(buf), &id, "snapshot", "{}", 2), n);
    assert_memory_equal(buf, "id: 1732", 8);
}

static void
test_raw_and_refcount(void **state)
{
    struct sse_frame *f = sse_frame_new_raw(": ping\n\n", 8);

    (void)state;
    assert_int_equal(f->has_id, 0);
    assert_int_equal(atomic_load(&f->refcount), 1);
    assert_ptr_equal(sse_frame_ref(f), f);
    assert_int_equal(atomic_load(&f->refcount), 2);
    sse_frame_unref(f);
    assert_int_equal(atomic_load(&f->refcount), 1);
    sse_frame_unref(NULL);
    assert_frame(f, ": ping\n\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_with_id),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_empty_and_no_event),
        cmocka_unit_test(test_data_not_nul_terminated),
        cmocka_unit_test(test_bad_event_names),
        cmocka_unit_test(test_encode_sizes),
        cmocka_unit_test(test_raw_and_refcount),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
