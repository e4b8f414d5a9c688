/* bodycost.c -- how many instructions body_parse_event takes per body,
 * to compare two versions of body.c where timing is noise (a shared
 * machine): callgrind counts instructions, which repeat run to run.
 * Build it once against each version's sources, e.g. main's in a
 * worktree, and run each under callgrind:
 *
 *   cc -std=c11 -O2 -g -D_GNU_SOURCE -Isrc bench/bodycost.c src/body.c \
 *      src/strictjson.c src/envelope.c src/eventid.c src/sse.c src/topic.c \
 *      $(pkg-config --cflags --libs json-c) -lm -o bodycost
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *      --toggle-collect=bodycost_one ./bodycost unicast 100000
 *
 * "Collected" divided by the count is one call: the parse and freeing
 * what it returned (data_json), nothing of the loop. BODY is one of the
 * names below (the shapes bench/loadgen.c posts, and others) or a body
 * of its own. Not part of the build or of make check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

static const struct {
    const char *name, *body;
} bodycost_bodies[] = {
    /* loadgen's unicast body (--pad 64), its send time in ns. */
    { "unicast", "{\"userId\":\"123\",\"type\":\"b\",\"data\":{\"t\":1733500000000000000,"
                 "\"s\":4242,\"p\":\"................................................"
                 "................\"}}" },
    /* loadgen's topic body. */
    { "topic", "{\"topic\":\"room1\",\"type\":\"chat.message\",\"data\":{\"t\":"
               "1733500000000000000,\"s\":4242,\"p\":\"................................"
               "................................\"}}" },
    { "small", "{\"userId\":\"123\",\"type\":\"b\",\"data\":{\"t\":1733500000000,\"k\":42,"
               "\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}}" },
    /* Python's json.dumps, with its spaces. */
    { "python", "{\"userId\": \"123\", \"type\": \"b\", \"data\": {\"t\": 1, \"msg\": \"hello\"}}" },
    /* Data json-c has to read: a double and an escape. */
    { "double", "{\"userId\":\"123\",\"type\":\"b\",\"data\":{\"price\":1.5,"
                "\"msg\":\"caf\\u00e9\"}}" },
    /* A chat message with escapes (quotes, a newline, Python's
     * ensure_ascii \u escapes): copied, unescaped and escaped again. */
    { "chat", "{\"topic\":\"room:1\",\"type\":\"chat.message\",\"data\":{\"from\":"
              "\"ada\",\"text\":\"He said \\\"hi\\\"\\nthen left \\u00e9\\ud83d\\ude00\"}}" },
};

/* One call, kept out of line so callgrind can count it alone. */
__attribute__((noinline)) static int
bodycost_one(const char *body, size_t len)
{
    struct event_input in;
    struct body_error e;
    int rc = body_parse_event(body, len, &in, &e);

    if (rc == 0)
        event_input_clear(&in);
    return rc;
}

int
main(int argc, char **argv)
{
    const char *body;
    long n;

    if (argc != 3 || (n = atol(argv[2])) <= 0) {
        fprintf(stderr, "usage: bodycost BODY COUNT (BODY: a name or a JSON body)\n");
        return 2;
    }
    body = argv[1];
    for (size_t i = 0; i < sizeof(bodycost_bodies) / sizeof(bodycost_bodies[0]); i++) {
        if (strcmp(body, bodycost_bodies[i].name) == 0)
            body = bodycost_bodies[i].body;
    }
    for (long i = 0; i < n; i++) {
        if (bodycost_one(body, strlen(body)) != 0) {
            fprintf(stderr, "bodycost: the body is refused: %s\n", body);
            return 1;
        }
    }
    printf("%ld calls: %s\n", n, body);
    return 0;
}
