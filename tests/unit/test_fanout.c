/* test_fanout.c -- the parallel fan-out: every item exactly once, runs
 * that end only when every item is done (the barrier that keeps one
 * event's sends from overtaking the previous one's), serial runs below
 * the threshold, and helpers that really take part.
 * Real threads; nothing is mocked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanout.h"

#define ITEMS 4000

struct slot {
    atomic_int calls;
    pthread_t by;
    size_t order;                 /* position among the run's calls */
};

struct run {
    pthread_t caller;
    atomic_size_t done;
    atomic_int on_helper;
    atomic_int bad_worker;        /* worker 0 off the caller, or the reverse */
    unsigned workers;             /* fanout_workers: every worker is below */
    unsigned spin;                /* busy work per item, so runs overlap */
};

static struct slot slots[ITEMS];
static void *items[ITEMS];

static void
call_one(void *item, void *arg)
{
    struct slot *s = item;
    struct run *r = arg;
    volatile unsigned x = 0;

    for (unsigned i = 0; i < r->spin; i++)
        x += i;
    s->by = pthread_self();
    s->order = atomic_fetch_add(&r->done, 1);
    if (!pthread_equal(s->by, r->caller))
        atomic_store(&r->on_helper, 1);
    atomic_fetch_add(&s->calls, 1);
}

static void
call_chunk(void *const *chunk, size_t n, unsigned worker, void *arg)
{
    struct run *r = arg;

    if ((worker == 0) != pthread_equal(pthread_self(), r->caller) || worker >= r->workers)
        atomic_store(&r->bad_worker, 1);
    for (size_t i = 0; i < n; i++)
        call_one(chunk[i], arg);
}

static void
run_reset(struct run *r, size_t n, unsigned spin)
{
    for (size_t i = 0; i < n; i++) {
        atomic_store(&slots[i].calls, 0);
        slots[i].order = (size_t)-1;
        items[i] = &slots[i];
    }
    r->caller = pthread_self();
    atomic_store(&r->done, 0);
    atomic_store(&r->on_helper, 0);
    atomic_store(&r->bad_worker, 0);
    r->workers = 1;
    r->spin = spin;
}

/* Every item exactly once, and all of them done when fanout_run returns:
 * without the barrier a helper's last chunk would still be running. */
static void
check_runs(unsigned helpers)
{
    struct fanout *fo = fanout_new(helpers, 1);
    struct run r;

    assert_non_null(fo);
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(round % 7 == 0 ? 1 : ITEMS - (size_t)round);

        run_reset(&r, n, round % 2 ? 200 : 0);
        r.workers = fanout_workers(fo);
        fanout_run(fo, items, n, call_chunk, &r);
        assert_int_equal(atomic_load(&r.bad_worker), 0);
        assert_int_equal(atomic_load(&r.done), n);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(atomic_load(&slots[i].calls), 1);
    }
    fanout_free(fo);
}

static void
test_every_item_once_one_helper(void **state)
{
    (void)state;
    check_runs(1);
}

static void
test_every_item_once_three_helpers(void **state)
{
    (void)state;
    check_runs(3);
}

static void
test_no_helpers_is_serial_in_order(void **state)
{
    struct fanout *fo = fanout_new(0, 0);
    struct run r;

    (void)state;
    assert_non_null(fo);
    run_reset(&r, ITEMS, 0);
    r.workers = fanout_workers(fo);
    fanout_run(fo, items, ITEMS, call_chunk, &r);
    assert_int_equal(atomic_load(&r.bad_worker), 0);
    for (size_t i = 0; i < ITEMS; i++) {
        assert_int_equal(slots[i].order, i);
        assert_true(pthread_equal(slots[i].by, r.caller));
    }
    fanout_free(fo);
}

/* Below the threshold the caller sends alone, in order: waking a helper
 * for a handful of streams costs more than it saves. */
static void
test_small_runs_stay_on_the_caller(void **state)
{
    struct fanout *fo = fanout_new(2, 128);
    struct run r;

    (void)state;
    assert_non_null(fo);
    for (int round = 0; round < 50; round++) {
        run_reset(&r, 127, 2000);
        r.workers = fanout_workers(fo);
        fanout_run(fo, items, 127, call_chunk, &r);
        assert_int_equal(atomic_load(&r.bad_worker), 0);
        assert_int_equal(atomic_load(&r.on_helper), 0);
        for (size_t i = 0; i < 127; i++)
            assert_int_equal(slots[i].order, i);
    }
    fanout_free(fo);
}

/* A large run is shared: in some round a helper takes a chunk. (Each
 * round keeps the caller busy for milliseconds; a helper that never
 * joins in 50 rounds is broken, not slow.) */
static void
test_helpers_take_part(void **state)
{
    struct fanout *fo = fanout_new(1, 128);
    struct run r;
    int helped = 0;

    (void)state;
    assert_non_null(fo);
    for (int round = 0; round < 50 && !helped; round++) {
        run_reset(&r, ITEMS, 2000);
        r.workers = fanout_workers(fo);
        fanout_run(fo, items, ITEMS, call_chunk, &r);
        assert_int_equal(atomic_load(&r.bad_worker), 0);
        assert_int_equal(atomic_load(&r.done), ITEMS);
        helped = atomic_load(&r.on_helper);
    }
    assert_true(helped);
    fanout_free(fo);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_item_once_one_helper),
        cmocka_unit_test(test_every_item_once_three_helpers),
        cmocka_unit_test(test_no_helpers_is_serial_in_order),
        cmocka_unit_test(test_small_runs_stay_on_the_caller),
        cmocka_unit_test(test_helpers_take_part),
    };

    /* A hang (a deadlock, an endless loop) must fail the test, not stall
     * CI: nothing here catches SIGALRM, so it kills the process and the
     * TAP driver reports it. The run takes under a second, even with ASan. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
