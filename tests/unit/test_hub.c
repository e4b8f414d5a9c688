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
#include <stdio.h>
#include <stdlib.h>
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


/* What the topic hooks heard. */
struct heard {
    int first, last, join, leave, done;
    char last_topic[64];
};

static void
on_first(void *arg, const char *topic)
{
    ((struct heard *)arg)->first++;
    (void)topic;
}

static void
on_last(void *arg, const char *topic)
{
    struct heard *hd = arg;

    hd->last++;
    snprintf(hd->last_topic, sizeof(hd->last_topic), "%s", topic);
}

static void
on_join(void *arg, const char *topic, const char *user_id)
{
    (void)topic;
    (void)user_id;
    ((struct heard *)arg)->join++;
}

static void
on_leave(void *arg, const char *topic, const char *user_id)
{
    (void)topic;
    (void)user_id;
    ((struct heard *)arg)->leave++;
}

static void
on_done(void *arg)
{
    ((struct heard *)arg)->done++;
}

/* A stream on topics sits in each topic's bucket (and its user's, if
 * any; never the firehose); a topic's publish reaches only its streams,
 * once each; the first and last stream of a topic call the hooks; the
 * teardown takes the stream out of every bucket. */
static void
test_topics(void **state)
{
    static const struct hub_topic_hooks hooks = { on_first, on_last, on_join, on_leave,
                                                  on_done };
    struct hub *h = hub_new(NULL, 0);
    struct heard hd;
    struct stream *both, *room, *fire;
    const char *ab[] = { "room-a", "room-b" }, *a[] = { "room-a" };
    struct event_id id = { 1, 0 }, next;
    struct sse_frame *f = sse_frame_new_event(&id, "t", "x", 1);
    struct stream **all;
    size_t n;

    (void)state;
    memset(&hd, 0, sizeof(hd));
    assert_non_null(h);
    assert_non_null(f);
    assert_int_equal(hub_add_topic_hooks(h, &hooks, &hd), 0);
    assert_non_null(both = stream_new("7", 1 << 20, NULL));
    assert_non_null(room = stream_new("", 1 << 20, NULL));
    assert_non_null(fire = stream_new("", 1 << 20, NULL));
    assert_int_equal(stream_set_topics(both, ab, 2, "7"), 0);
    assert_int_equal(stream_set_topics(room, a, 1, NULL), 0);
    stream_replay_page(both, NULL, NULL, 0, NULL, 0, stream_replay_gen(both), &next);
    stream_replay_page(room, NULL, NULL, 0, NULL, 0, stream_replay_gen(room), &next);
    stream_replay_page(fire, NULL, NULL, 0, NULL, 0, stream_replay_gen(fire), &next);
    assert_int_equal(hub_add(h, both), 0);
    assert_int_equal(hub_add(h, room), 0);
    assert_int_equal(hub_add(h, fire), 0);
    assert_int_equal(hub_count(h), 3);
    assert_int_equal(hd.first, 2);                      /* room-a, room-b */
    assert_int_equal(hd.join, 3);
    assert_int_equal(hd.done, 2);
    hub_publish_topic(h, "room-a", &f, 1);
    assert_int_equal(atomic_load(&f->refcount), 3);     /* ours, both, room */
    hub_publish_topic(h, "room-c", &f, 1);
    assert_int_equal(atomic_load(&f->refcount), 3);
    all = hub_snapshot(h, &n);
    assert_int_equal(n, 3);                             /* each stream once */
    for (size_t i = 0; i < n; i++)
        stream_unref(all[i]);
    free(all);
    hub_drop_stream(h, room, STREAM_END_CLIENT);
    assert_int_equal(hd.last, 0);
    hub_drop_stream(h, both, STREAM_END_CLIENT);
    assert_int_equal(hd.last, 2);
    assert_int_equal(hd.leave, 3);
    assert_int_equal(atomic_load(&f->refcount), 1);
    assert_int_equal(hub_count(h), 1);
    hub_drop_stream(h, fire, STREAM_END_CLIENT);
    assert_int_equal(hub_count(h), 0);
    sse_frame_unref(f);
    hub_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drop_counts_each_reason),
        cmocka_unit_test(test_dropped_stream_gets_nothing),
        cmocka_unit_test(test_limit_per_user),
        cmocka_unit_test(test_topics),
    };

    alarm(60);
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
