/* log.h -- leveled, printf-checked logging to stderr, one line per call. */
#ifndef SSEGATE_LOG_H
#define SSEGATE_LOG_H

enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3
};

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
