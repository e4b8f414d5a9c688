/* log.h -- leveled, printf-checked logging to stderr, one line per call. */
#ifndef SSEGATE_LOG_H
#define SSEGATE_LOG_H

#include <stddef.h>

enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3
};

/* Room log_excerpt needs for max bytes: four per byte at worst, "...",
 * and the NUL. */
#define LOG_EXCERPT_SIZE(max) (4 * (max) + 4)

/* Writes into out (cap bytes, always NUL-terminated) the first max of
 * the n bytes at s as printable ASCII: a byte outside 0x20..0x7e becomes
 * \xNN and a backslash \\, and "..." follows when something was left
 * out (by max or by cap). For logging untrusted bytes (a malformed
 * channel message): the line stays one line of ASCII whatever they are.
 * Returns out. */
const char *
log_excerpt(char *out, size_t cap, const char *s, size_t n, size_t max);

/* Returns the level for "debug", "info", "warn" or "error", or -1. */
int
log_parse_level(const char *name);

void
log_set_level(enum log_level level);

/* Each call writes one whole line ("2026-11-24T22:41:13.123Z info  ...")
 * with a single write(2), so lines from different threads never mix. */
void
log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void
log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void
log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void
log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
