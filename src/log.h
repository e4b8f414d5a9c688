/* log.h -- leveled, printf-checked logging, one line per call: text or
 * JSON lines, to stderr or LOG_FILE (reopened on SIGHUP). */
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

/* LOG_FORMAT: plain text (the default) or one JSON object a line. */
enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1
};

/* A structured field of a record (log_fields). In text it follows the
 * message as key=value (quoted when empty or when it holds a space or a quote);
 * in JSON it is a member of the line's object. json_only: the message
 * already says it in text. */
enum log_field_kind { LOG_FIELD_STR, LOG_FIELD_INT, LOG_FIELD_NUM };
struct log_field {
    const char *key;
    enum log_field_kind kind;
    int json_only;
    const char *s;              /* LOG_FIELD_STR; NULL is "" */
    long long i;                /* LOG_FIELD_INT */
    double d;                   /* LOG_FIELD_NUM: three decimals */
};
#define LOG_STR(k, v) { (k), LOG_FIELD_STR, 0, (v), 0, 0.0 }
#define LOG_INT(k, v) { (k), LOG_FIELD_INT, 0, NULL, (long long)(v), 0.0 }
#define LOG_NUM(k, v) { (k), LOG_FIELD_NUM, 0, NULL, 0, (double)(v) }
#define LOG_STR_JSON(k, v) { (k), LOG_FIELD_STR, 1, (v), 0, 0.0 }
#define LOG_INT_JSON(k, v) { (k), LOG_FIELD_INT, 1, NULL, (long long)(v), 0.0 }

/* Returns the format for "text" or "json", or -1. */
int
log_parse_format(const char *name);

void
log_set_format(enum log_format format);

/* The server_id every JSON line carries (copied; cut at 127 bytes). */
void
log_set_server_id(const char *id);

/* Logs go to path from now on (opened for appending, created 0640 if
 * need be); "" keeps stderr. Returns 0, or -1 with errno set. Call
 * before any thread starts. */
int
log_open_file(const char *path);

/* Reopens the log file (after logrotate moved it), in place: the lines
 * being written meanwhile land whole in the old file or the new one.
 * Returns 1 when reopened, 0 when logging to stderr, -1 with errno set
 * when the file cannot be opened (logs keep going to the old one). Any
 * thread. */
int
log_reopen(void);

/* 1 when a record of level would be written. */
int
log_enabled(enum log_level level);

/* Returns the level for "debug", "info", "warn" or "error", or -1. */
int
log_parse_level(const char *name);

void
log_set_level(enum log_level level);

/* Each call writes one whole line ("2026-11-24T22:41:13.123Z info  ...",
 * or {"ts":...,"level":...,"server_id":...,"msg":...}) with a single
 * write(2), so lines from different threads never mix. */
void
log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void
log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void
log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void
log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One record at level with the n fields f after its message. */
void
log_fields(enum log_level level, const struct log_field *f, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
