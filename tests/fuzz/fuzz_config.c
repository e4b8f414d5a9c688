/* fuzz_config.c -- libFuzzer target: settings from the environment and
 * the command line (config_load). The input is lines: "NAME=value" sets
 * a variable, anything else is one argv word. Checks that a loaded
 * config holds only values in range, and that an error is one bounded,
 * printable line.
 *
 * fuzz-sources: src/config.c src/log.c src/netaddr.c src/cors.c src/topic.c
 * fuzz-libs:
 * fuzz-covers: src/config.c
 */
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WORDS 16
#define MAX_VARS 16

static struct {
    const char *name[MAX_VARS];
    size_t name_len[MAX_VARS];
    const char *value[MAX_VARS];
    size_t n;
} env;

/* The last setting wins, as in a shell. */
static const char *
fake_getenv(const char *name)
{
    const char *v = NULL;

    for (size_t i = 0; i < env.n; i++) {
        if (env.name_len[i] == strlen(name) && memcmp(env.name[i], name, env.name_len[i]) == 0)
            v = env.value[i];
    }
    return v;
}

static void
check_string(const char *s, size_t cap)
{
    FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size, 1);
    char *argv[MAX_WORDS + 2];
    int argc = 0;
    struct config cfg;
    char err[256];
    enum config_result r;
    char *line = buf;

    argv[argc++] = "ssegate";
    env.n = 0;
    while (line != NULL) {
        char *next = strchr(line, '\n'), *eq;

        if (next != NULL)
            *next++ = '\0';
        eq = strchr(line, '=');
        if (eq != NULL && line[0] != '-' && env.n < MAX_VARS) {
            env.name[env.n] = line;
            env.name_len[env.n] = (size_t)(eq - line);
            env.value[env.n++] = eq + 1;
        } else if (argc < MAX_WORDS + 1) {
            argv[argc++] = line;
        }
        line = next;
    }
    argv[argc] = NULL;

    memset(err, 'x', sizeof(err));
    r = config_load(&cfg, argc, argv, fake_getenv, err, sizeof(err));
    switch (r) {
    case CONFIG_OK:
        FUZZ_CHECK(cfg.port >= 1 && cfg.redis_port >= 1);
        FUZZ_CHECK(cfg.http_threads >= 1 && cfg.http_threads <= 64);
        FUZZ_CHECK(cfg.writer_threads >= 1 && cfg.writer_threads <= 64);
        FUZZ_CHECK(cfg.fanout_threads <= 64 && cfg.fanout_uring <= 1);
        FUZZ_CHECK(cfg.max_connections >= 16 && cfg.stream_queue_kib >= 16);
        FUZZ_CHECK(cfg.heartbeat_secs >= 1 && cfg.heartbeat_secs <= 3600);
        FUZZ_CHECK(cfg.request_timeout_ms >= 100 && cfg.redis_timeout_ms >= 10);
        check_string(cfg.listen_addr, sizeof(cfg.listen_addr));
        check_string(cfg.server_id, sizeof(cfg.server_id));
        check_string(cfg.redis_host, sizeof(cfg.redis_host));
        check_string(cfg.redis_password, sizeof(cfg.redis_password));
        check_string(cfg.redis_channel, sizeof(cfg.redis_channel));
        FUZZ_CHECK(cfg.server_id[0] != '\0' && cfg.redis_channel[0] != '\0');
        break;
    case CONFIG_ERROR: {
        size_t n;

        /* One line naming the setting: main.c prints it as it is. */
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        n = strlen(err);
        FUZZ_CHECK(n > 0);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)err[i] >= 0x20 && err[i] != 0x7f);
        break;
    }
    case CONFIG_HELP:
    case CONFIG_VERSION:
        break;
    default:
        FUZZ_CHECK(0);
    }
    free(buf);
    return 0;
}
