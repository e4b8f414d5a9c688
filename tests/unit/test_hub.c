/* test_hub.c -- the index and the one teardown: streams are found under
 * their user while indexed, hub_drop_stream unindexes each and counts it
 * under its reason, and a dropped stream is not reached by a publish.
 * Real streams; no sockets needed (a stream not yet attached only
 * queues). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

#include "hub.h"
#include "log.h"
#include "sse.h"
#include "stream.h"

static void
test_drop_counts_each_reason(void **state)
{
    struct hub *h = hub_new(NULL, 0);
    struct stream *s[3];

    (void)state;
    assert_non_null(h);
    for (int i = 0; i < 3; i++) {
        assert_non_null(s[i] = stream_new(i == 2 ? "" : "7", 1 << 20, NULL));
        assert_int_equal(hub_add(h, s[i]), 0);
    }
    assert_int_equal(hub_count(h), 3);
    assert_int_equal(hub_add(h, s[0]), -1);         /* indexed once */
    hub_drop_stream(h, s[0], STREAM_END_CLIENT);
    hub_drop_stream(h, s[1], STREAM_END_SLOW_CONSUMER);
    hub_drop_stream(h, s[2], STREAM_END_CLIENT);
    assert_int_equal(hub_count(h), 0);
    assert_int_equal(hub_ended(h, STREAM_END_CLIENT), 2);
    assert_int_equal(hub_ended(h, STREAM_END_SLOW_CONSUMER), 1);
    for (int r = 0; r < STREAM_END_COUNT; r++) {
        if (r != STREAM_END_CLIENT && r != STREAM_END_SLOW_CONSUMER)
            assert_int_equal(hub_ended(h, (enum stream_end)r), 0);
    }
    hub_free(h);
}

/* A stream the hub still holds gets a publish (its reference count shows
 * the queued frame); a dropped one does not. */
static void
test_dropped_stream_gets_nothing(void **state)
{
    struct hub *h = hub_new(NULL, 0);
    struct stream *kept, *gone;
    struct event_id id = { 1, 0 }, next;
    struct sse_frame *f = sse_frame_new_event(&id, "t", "x", 1);

    (void)state;
    assert_non_null(h);
    assert_non_null(f);
    assert_non_null(kept = stream_new("7", 1 << 20, NULL));
    assert_non_null(gone = stream_new("7", 1 << 20, NULL));
    stream_replay_page(kept, NULL, NULL, 0, NULL, 0, stream_replay_gen(kept), &next);
    stream_replay_page(gone, NULL, NULL, 0, NULL, 0, stream_replay_gen(gone), &next);
    assert_int_equal(hub_add(h, kept), 0);
    assert_int_equal(hub_add(h, gone), 0);
    hub_drop_stream(h, gone, STREAM_END_SHUTDOWN);
    hub_publish(h, "7", &f, 1);
    assert_int_equal(atomic_load(&f->refcount), 2);     /* ours + kept's queue */
    assert_int_equal(hub_ended(h, STREAM_END_SHUTDOWN), 1);
    hub_drop_stream(h, kept, STREAM_END_CLIENT);
    assert_int_equal(atomic_load(&f->refcount), 1);     /* the queue was dropped */
    sse_frame_unref(f);
    hub_free(h);
}

/* MAX_STREAMS_PER_USER: a user at the limit gets no more until one of
 * its streams goes; other users and the firehose are not limited by it. */
static void
test_limit_per_user(void **state)
{
    struct hub *h = hub_new(NULL, 0);
    struct stream *s[6];

    (void)state;
    assert_non_null(h);
    for (int i = 0; i < 6; i++)
        assert_non_null(s[i] = stream_new(i < 3 ? "7" : i == 3 ? "8" : "", 1 << 20, NULL));
    assert_int_equal(hub_add_limited(h, s[0], 2), 0);
    assert_int_equal(hub_add_limited(h, s[1], 2), 0);
    assert_int_equal(hub_add_limited(h, s[2], 2), HUB_ADD_FULL);
    assert_int_equal(hub_add_limited(h, s[3], 2), 0);          /* user 8 */
    assert_int_equal(hub_add_limited(h, s[4], 1), 0);          /* the firehose */
    assert_int_equal(hub_add_limited(h, s[5], 1), 0);
    assert_int_equal(hub_count(h), 5);
    hub_drop_stream(h, s[0], STREAM_END_CLIENT);
    assert_int_equal(hub_add_limited(h, s[2], 2), 0);
    assert_int_equal(hub_add_limited(h, s[2], 0), -1);         /* indexed once */
    hub_drop_stream(h, s[1], STREAM_END_CLIENT);
    hub_drop_stream(h, s[2], STREAM_END_CLIENT);
    hub_drop_stream(h, s[3], STREAM_END_CLIENT);
    hub_drop_stream(h, s[4], STREAM_END_CLIENT);
    hub_drop_stream(h, s[5], STREAM_END_CLIENT);
    assert_int_equal(hub_count(h), 0);
    hub_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drop_counts_each_reason),
        cmocka_unit_test(test_dropped_stream_gets_nothing),
        cmocka_unit_test(test_limit_per_user),
    };

    alarm(60);
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
