/* fuzz_query.c -- libFuzzer target: the query of GET /events/sse as the
 * API reads it. libmicrohttpd 0.9.75 splits and decodes the query (its
 * MHD_parse_arguments_ is internal, so its splitting is modelled here
 * line for line, and its exported decoder MHD_http_unescape is the real
 * one); query_value picks each parameter's value, and api.c validates
 * userId (body_user_id_valid) and the resume id (eventid_parse, else
 * eventid_show_foreign). Checks that the userId a stream is opened for is
 * exactly the one the client sent, once, whole; that query_each hands
 * over every topic exactly as sent, in order; and that the access log's
 * copy of the target (query_redact) keeps no token value.
 *
 * fuzz-sources: src/query.c src/body.c src/strictjson.c src/envelope.c src/eventid.c src/sse.c src/topic.c
 * fuzz-libs: json-c libmicrohttpd
 * fuzz-covers: src/query.c src/body.c:body_user_id_valid src/eventid.c:eventid_parse src/eventid.c:eventid_show_foreign src/topic.c:topic_name_valid
 */
#include <microhttpd.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "eventid.h"
#include "fuzz.h"
#include "query.h"
#include "topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* http.c's bound: a query of more parameters is answered 414. */
#define QUERY_MAX 32

struct args {
    struct query_arg v[QUERY_MAX];
    size_t n;
};

static void
add(struct args *a, char *key, char *value)
{
    size_t klen, vlen = 0;

    for (char *p = key; (p = strchr(p, '+')) != NULL; p++)
        *p = ' ';
    klen = MHD_http_unescape(key);
    if (value != NULL) {
        for (char *p = value; (p = strchr(p, '+')) != NULL; p++)
            *p = ' ';
        vlen = MHD_http_unescape(value);
    }
    FUZZ_CHECK(a->n < QUERY_MAX);
    a->v[a->n++] = (struct query_arg){ key, klen, value, vlen };
}

/* 0.9.75 internal.c, MHD_parse_arguments_. */
static void
parse(char *args, struct args *a)
{
    while (args != NULL && args[0] != '\0') {
        char *equals = strchr(args, '='), *amper = strchr(args, '&');

        if (amper == NULL) {
            if (equals != NULL)
                *equals++ = '\0';
            add(a, args, equals);
            return;
        }
        *amper++ = '\0';
        if (equals == NULL || equals >= amper) {
            add(a, args, NULL);
        } else {
            *equals++ = '\0';
            add(a, args, equals);
        }
        args = amper;
    }
}

/* The argument named name that query_value read, if it is one. */
static const struct query_arg *
only(const struct args *a, const char *name, int *count)
{
    const struct query_arg *found = NULL;

    *count = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].key_len == strlen(name) && strncasecmp(a->v[i].key, name, a->v[i].key_len) == 0) {
            found = &a->v[i];
            (*count)++;
        }
    }
    return found;
}

static void
check_name(const struct args *a, const char *name)
{
    const char *v = query_value(a->v, a->n, name);
    int count;
    const struct query_arg *arg = only(a, name, &count);

    if (count == 0) {
        FUZZ_CHECK(v == NULL);
        return;
    }
    FUZZ_CHECK(v != NULL);
    if (v[0] == '\0')
        return;             /* refused by every validator, as "" */
    /* A value read is the only one, whole. */
    FUZZ_CHECK(count == 1 && v == arg->value && strlen(v) == arg->value_len);
}

/* query_each's walk: each topic value, in order, must be the next
 * argument named topic, whole. */
struct each {
    const struct args *a;
    size_t next;            /* the argument to look at next */
    int seen;
};

static int
each_topic(const char *value, size_t len, void *arg)
{
    struct each *e = arg;

    while (e->next < e->a->n &&
           !(e->a->v[e->next].key_len == 5 &&
             strncasecmp(e->a->v[e->next].key, "topic", 5) == 0))
        e->next++;
    FUZZ_CHECK(e->next < e->a->n);
    FUZZ_CHECK(value == e->a->v[e->next].value && len == e->a->v[e->next].value_len);
    FUZZ_CHECK(strlen(value) == len);
    e->next++;
    e->seen++;
    /* api_stream_topic_one's check; its answer does not change the walk. */
    (void)topic_name_valid(value, len);
    return 0;
}

/* What query_redact left of target: no parameter named token keeps a
 * value (unless the copy was cut short, "...", where nothing is parsed). */
static void
check_redact(const char *query)
{
    char target[4200], out[512], *copy;
    struct args a = { .n = 0 };
    size_t n;

    snprintf(target, sizeof(target), "/events/sse?%s", query);
    query_redact(target, "token", out, sizeof(out));
    n = strlen(out);
    FUZZ_CHECK(n < sizeof(out));
    if (n >= 3 && strcmp(out + n - 3, "...") == 0)
        return;
    FUZZ_CHECK(strncmp(out, "/events/sse?", 12) == 0);
    copy = strdup(out + 12);
    FUZZ_CHECK(copy != NULL);
    {
        unsigned k = 1;

        for (const char *p = copy; *p != '\0'; p++)
            k += *p == '&';
        if (k > QUERY_MAX) {
            free(copy);
            return;
        }
    }
    parse(copy, &a);
    for (size_t i = 0; i < a.n; i++) {
        if (a.v[i].key_len == 5 && strncasecmp(a.v[i].key, "token", 5) == 0)
            FUZZ_CHECK(a.v[i].value == NULL || a.v[i].value_len == 0);
    }
    free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The request target is a C string; this is what follows its "?". */
    char *q = fuzz_copy(data, size, 1);
    struct args a = { .n = 0 };
    const char *uid, *resume;
    unsigned n = 1;
    struct event_id after;

    for (const char *p = q; *p != '\0'; p++)
        n += *p == '&';
    if (n > QUERY_MAX) {            /* http_on_uri: 414 */
        free(q);
        return 0;
    }
    if (size < 4000 && memchr(data, '\0', size) == NULL)
        check_redact(q);
    parse(q, &a);
    check_name(&a, "userId");
    {
        struct each e = { &a, 0, 0 };
        int r = query_each(a.v, a.n, "topic", each_topic, &e), count;

        (void)only(&a, "topic", &count);
        FUZZ_CHECK(r == -1 || (r == count && e.seen == count));
    }
    check_name(&a, "lastEventId");
    check_name(&a, "last_event_id");

    /* api_stream_open: a userId given must be 1..18 digits. */
    uid = query_value(a.v, a.n, "userId");
    if (uid != NULL && body_user_id_valid(uid, strlen(uid))) {
        size_t len = strlen(uid);

        FUZZ_CHECK(len >= 1 && len <= BODY_USER_ID_MAX_DIGITS && uid[0] != '0');
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK(uid[i] >= '0' && uid[i] <= '9');
    }
    /* api_resume_id (the header is absent here). */
    resume = query_value(a.v, a.n, "lastEventId");
    if (resume == NULL || resume[0] == '\0')
        resume = query_value(a.v, a.n, "last_event_id");
    if (resume != NULL && resume[0] != '\0' &&
        eventid_parse(resume, strlen(resume), &after) == -1) {
        char shown[EVENTID_FOREIGN_MAX + 1];

        eventid_show_foreign(resume, shown, sizeof(shown));
        FUZZ_CHECK(strchr(shown, '"') == NULL && strchr(shown, '\\') == NULL);
    }
    free(q);
    return 0;
}
