/* test_clients.c -- connections per client address: the cap, release
 * and move, no cap at all, and exact counts under threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "clients.h"

static struct netaddr
addr(const char *s)
{
    struct netaddr a;

    assert_int_equal(netaddr_parse(s, strlen(s), &a), 0);
    return a;
}

static void
test_cap(void **state)
{
    struct clients *c = clients_new(3);
    struct netaddr a = addr("192.0.2.1"), b = addr("2001:db8::1");
    struct clients_slot s[4], t = { 0 }, moved = { 0 };

    (void)state;
    assert_non_null(c);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(clients_acquire(c, &a, &s[i]), CLIENTS_OK);
        assert_ptr_equal(s[i].c, c);
    }
    assert_int_equal(clients_count(c, &a), 3);
    assert_int_equal(clients_acquire(c, &a, &s[3]), CLIENTS_FULL);
    assert_null(s[3].c);
    /* Another address has its own count. */
    assert_int_equal(clients_acquire(c, &b, &t), CLIENTS_OK);
    assert_int_equal(clients_count(c, &b), 1);
    /* A release makes room; releasing twice counts once. */
    clients_release(&s[1]);
    assert_null(s[1].c);
    clients_release(&s[1]);
    assert_int_equal(clients_count(c, &a), 2);
    assert_int_equal(clients_acquire(c, &a, &s[1]), CLIENTS_OK);
    assert_int_equal(clients_acquire(c, &a, &s[3]), CLIENTS_FULL);
    /* A move hands the count over: the source releases nothing. */
    clients_move(&moved, &s[0]);
    assert_null(s[0].c);
    clients_release(&s[0]);
    assert_int_equal(clients_count(c, &a), 3);
    clients_release(&moved);
    assert_int_equal(clients_count(c, &a), 2);
    clients_release(&s[1]);
    clients_release(&s[2]);
    clients_release(&t);
    assert_int_equal(clients_count(c, &a), 0);
    assert_int_equal(clients_count(c, &b), 0);
    clients_free(c);
    clients_free(NULL);
}

static void
test_no_cap(void **state)
{
    struct clients *c = clients_new(0);
    struct netaddr a = addr("192.0.2.1");
    struct clients_slot s[100];

    (void)state;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(clients_acquire(c, &a, &s[i]), CLIENTS_OK);
        assert_null(s[i].c);            /* nothing counted, nothing to give back */
    }
    assert_int_equal(clients_count(c, &a), 0);
    for (int i = 0; i < 100; i++)
        clients_release(&s[i]);
    clients_free(c);
}

#define THREADS 4
#define ROUNDS 20000

struct worker {
    struct clients *c;
    struct netaddr a;
    unsigned refused;
    unsigned over;          /* times the count was seen above the cap */
};

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct clients_slot held[2] = { { 0 }, { 0 } };

    for (int i = 0; i < ROUNDS; i++) {
        struct clients_slot *s = &held[i % 2];

        clients_release(s);
        if (clients_acquire(w->c, &w->a, s) == CLIENTS_FULL)
            w->refused++;
        if (clients_count(w->c, &w->a) > 5)
            w->over++;
    }
    clients_release(&held[0]);
    clients_release(&held[1]);
    return NULL;
}

/* Four threads, each holding up to two slots of one address capped at
 * five: the count never passes the cap, some take a refusal, and the
 * count ends at zero with every slot given back. */
static void
test_threads(void **state)
{
    struct clients *c = clients_new(5);
    struct worker w[THREADS];
    pthread_t t[THREADS];
    unsigned refused = 0;

    (void)state;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ c, addr("198.51.100.1"), 0, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        refused += w[i].refused;
        assert_int_equal(w[i].over, 0);
    }
    assert_int_equal(clients_count(c, &w[0].a), 0);
    (void)refused;                      /* how many depends on timing */
    clients_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_no_cap),
        cmocka_unit_test(test_threads),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
