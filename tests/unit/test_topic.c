/* test_topic.c -- topic names, a token's topic grants and what they
 * cover, and the repeatable query parameter that names a stream's
 * topics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

#include "query.h"
#include "token.h"
#include "topic.h"

#define VALID(s) topic_name_valid(s, strlen(s))
#define GRANT(s) topic_grant_valid(s, strlen(s))

static void
test_names(void **state)
{
    char longest[TOPIC_NAME_MAX + 2];

    (void)state;
    assert_true(VALID("room-1"));
    assert_true(VALID("a"));
    assert_true(VALID("chat/eu:room_1.v2-x"));
    assert_true(VALID("ABCxyz0189"));
    assert_false(VALID(""));
    assert_false(VALID("room 1"));
    assert_false(VALID("room*"));
    assert_false(VALID("é"));
    assert_false(VALID("a\"b"));
    assert_false(VALID("a\\b"));
    assert_false(VALID("a?b"));
    assert_false(VALID("a%00"));
    assert_false(topic_name_valid("a\0b", 3));
    assert_false(topic_name_valid(NULL, 0));
    memset(longest, 'x', TOPIC_NAME_MAX);
    longest[TOPIC_NAME_MAX] = '\0';
    assert_true(VALID(longest));
    longest[TOPIC_NAME_MAX] = 'x';
    longest[TOPIC_NAME_MAX + 1] = '\0';
    assert_false(VALID(longest));
}

static void
test_grants(void **state)
{
    (void)state;
    assert_true(GRANT("room-1"));
    assert_true(GRANT("chat/*"));
    assert_true(GRANT("*"));
    assert_false(GRANT(""));
    assert_false(GRANT("**"));
    assert_false(GRANT("chat/*x"));
    assert_false(GRANT("a b*"));

    assert_true(topic_grant_covers("room-1", "room-1"));
    assert_false(topic_grant_covers("room-1", "room-10"));
    assert_false(topic_grant_covers("room-1", "room-"));
    assert_true(topic_grant_covers("chat/*", "chat/eu"));
    assert_true(topic_grant_covers("chat/*", "chat/"));
    assert_false(topic_grant_covers("chat/*", "chat"));
    assert_false(topic_grant_covers("chat/*", "chatter"));
    assert_true(topic_grant_covers("*", "anything"));
}

static void
test_claims(void **state)
{
    struct token_claims c;

    (void)state;
    memset(&c, 0, sizeof(c));
    assert_false(token_allows_topic(&c, "room-1"));
    c.firehose = 1;                 /* the firehose is users', not topics' */
    assert_false(token_allows_topic(&c, "room-1"));
    strcpy(c.topics[0], "room-1");
    strcpy(c.topics[1], "chat/*");
    c.ntopics = 2;
    assert_true(token_allows_topic(&c, "room-1"));
    assert_true(token_allows_topic(&c, "chat/eu"));
    assert_false(token_allows_topic(&c, "room-2"));
    assert_false(token_allows_topic(&c, "chat"));
}

struct seen {
    char v[4][16];
    int n;
};

static int
collect(const char *value, size_t len, void *arg)
{
    struct seen *s = arg;

    if (len >= sizeof(s->v[0]) || strcmp(value, "stop") == 0)
        return -1;
    memcpy(s->v[s->n], value, len);
    s->v[s->n++][len] = '\0';
    return 0;
}

#define ARG(k, v) { k, sizeof(k) - 1, v, sizeof(v) - 1 }
#define NOVALUE(k) { k, sizeof(k) - 1, NULL, 0 }

static void
test_query_each(void **state)
{
    const struct query_arg two[] = { ARG("topic", "a"), ARG("userId", "1"), ARG("Topic", "b") };
    const struct query_arg bare[] = { ARG("topic", "a"), NOVALUE("topic") };
    const struct query_arg nul[] = { { "topic", 5, "a\0b", 3 } };
    const struct query_arg refused[] = { ARG("topic", "a"), ARG("topic", "stop") };
    struct seen s;

    (void)state;
    memset(&s, 0, sizeof(s));
    assert_int_equal(query_each(two, 3, "topic", collect, &s), 2);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0], "a");
    assert_string_equal(s.v[1], "b");
    memset(&s, 0, sizeof(s));
    assert_int_equal(query_each(two, 3, "none", collect, &s), 0);
    assert_int_equal(query_each(bare, 2, "topic", collect, &s), -1);
    assert_int_equal(query_each(nul, 1, "topic", collect, &s), -1);
    assert_int_equal(query_each(refused, 2, "topic", collect, &s), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_grants),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_query_each),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
