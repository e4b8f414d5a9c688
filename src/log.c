/* log.c -- leveled log lines, as text or JSON lines, on stderr or in
 * LOG_FILE. Owns the process-wide level, format and server id (set once
 * at start-up; the level is an atomic, so any thread may log while
 * another changes it) and the log's descriptor. Each line is formatted
 * into a bounded buffer on the caller's stack and written with one
 * write(2), so lines from the HTTP threads and the event loop never
 * interleave and no lock is needed. SIGHUP reopens LOG_FILE with dup3
 * onto the same descriptor number: a thread writing meanwhile writes
 * whole into the old file or the new, never into a descriptor that was
 * closed and reused for a socket. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Below PIPE_BUF (4096 on Linux), so a line sent to a pipe or a container
 * log driver arrives whole even when several threads write at once. */
#define LOG_LINE_MAX 2048

static atomic_int log_min_level = LOG_LEVEL_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;
static char log_server_id[128];
/* stderr, or LOG_FILE: its number never changes once set (log_reopen). */
static atomic_int log_fd = STDERR_FILENO;
static char log_path[1024];

/* Indexed by enum log_level. */
static const char *const log_names[] = { "debug", "info", "warn", "error" };

#define LOG_NLEVELS (sizeof(log_names) / sizeof(log_names[0]))

int
log_parse_level(const char *name)
{
    for (size_t i = 0; i < LOG_NLEVELS; i++) {
        if (strcmp(name, log_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

const char *
log_excerpt(char *out, size_t cap, const char *s, size_t n, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    if (cap == 0)
        return out;
    for (i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c == '\\' ? 2 : c < 0x20 || c > 0x7e ? 4 : 1;

        if (o + need + 4 > cap)     /* keep room for "..." and the NUL */
            break;
        if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (need == 4) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0xf];
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < n && o + 4 <= cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < cap ? o : cap - 1] = '\0';
    return out;
}

void
log_set_level(enum log_level level)
{
    atomic_store(&log_min_level, (int)level);
}

int
log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&log_min_level);
}

int
log_parse_format(const char *name)
{
    if (strcmp(name, "text") == 0)
        return LOG_FORMAT_TEXT;
    if (strcmp(name, "json") == 0)
        return LOG_FORMAT_JSON;
    return -1;
}

void
log_set_format(enum log_format format)
{
    log_format = format;
}

void
log_set_server_id(const char *id)
{
    snprintf(log_server_id, sizeof(log_server_id), "%s", id);
}

static int
log_open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int
log_open_file(const char *path)
{
    int fd;

    if (path[0] == '\0')
        return 0;
    if (strlen(path) >= sizeof(log_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if ((fd = log_open_path(path)) < 0)
        return -1;
    memcpy(log_path, path, strlen(path) + 1);
    atomic_store(&log_fd, fd);
    return 0;
}

int
log_reopen(void)
{
    int fd, e;

    if (log_path[0] == '\0')
        return 0;
    if ((fd = log_open_path(log_path)) < 0)
        return -1;
    /* Atomic for the writers: the number keeps meaning a log file. */
    if (dup3(fd, atomic_load(&log_fd), O_CLOEXEC) < 0) {
        e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 1;
}

/* Writes all n bytes, retrying after a signal or a short write; a log
 * line is never worth failing the caller, so other errors drop it. */
static void
log_write_all(const char *p, size_t n)
{
    int fd = atomic_load(&log_fd);

    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* ------------------------------------------------------------ text */

/* Appends s (n bytes) at out[*o] if it fits below cap; returns 0 or -1. */
static int
log_put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
    if (*o + n >= cap)
        return -1;
    memcpy(out + *o, s, n);
    *o += n;
    return 0;
}

/* A text field's value: bare, or quoted (with \" and \\) when it is
 * empty or holds a space or a quote. Control bytes are replaced
 * later, with the rest of the line. */
static int
log_put_text_value(char *out, size_t cap, size_t *o, const char *v)
{
    size_t n = strlen(v), start = *o;

    if (n > 0 && strpbrk(v, " \"") == NULL)
        return log_put(out, cap, o, v, n);
    if (log_put(out, cap, o, "\"", 1) == -1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((v[i] == '"' || v[i] == '\\') && log_put(out, cap, o, "\\", 1) == -1)
            goto full;
        if (log_put(out, cap, o, v + i, 1) == -1)
            goto full;
    }
    if (log_put(out, cap, o, "\"", 1) == 0)
        return 0;
full:
    *o = start;
    return -1;
}

/* ------------------------------------------------------------ JSON */

/* How many bytes the UTF-8 sequence at s (n left) takes, or 0 when it
 * is not well-formed (RFC 3629: no overlong form, no surrogate, nothing
 * past U+10FFFF). */
static size_t
log_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;

    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return len;
}

/* Appends s as a JSON string (quotes included), whatever its bytes: a
 * control byte as \u00XX, a byte that is not UTF-8 as U+FFFD. Returns
 * 0, or -1 (nothing appended) when it does not fit below cap. */
static int
log_put_json_string(char *out, size_t cap, size_t *o, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str), start = *o, k;
    char esc[8];

    if (log_put(out, cap, o, "\"", 1) == -1)
        return -1;
    for (size_t i = 0; i < n; i += k) {
        const char *p = (const char *)s + i;
        size_t m;

        k = 1;
        if (s[i] == '"' || s[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)s[i];
            p = esc;
            m = 2;
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[s[i] >> 4];
            esc[5] = hex[s[i] & 0xf];
            p = esc;
            m = 6;
        } else if (s[i] < 0x80) {
            m = 1;
        } else if ((k = log_utf8_len(s + i, n - i)) > 0) {
            m = k;
        } else {
            k = 1;
            p = "\\ufffd";
            m = 6;
        }
        if (log_put(out, cap, o, p, m) == -1)
            goto full;
    }
    if (log_put(out, cap, o, "\"", 1) == 0)
        return 0;
full:
    *o = start;
    return -1;
}

/* ------------------------------------------------------------ records */

/* The line's budget: what is left for "}\n" (JSON) or "\n" (text). */
#define LOG_TAIL 3

static size_t
log_text_record(char *line, size_t cap, enum log_level level, const char *ts,
                const char *msg, const struct log_field *f, size_t n)
{
    size_t o = 0, body;
    char num[64];

    if (snprintf(line, cap, "%s %-5s ", ts, log_names[level]) < 0)
        return 0;
    o = strlen(line);
    body = o;
    if (log_put(line, cap - 1, &o, msg, strlen(msg)) == -1) {
        /* A longer message is cut and marked. */
        size_t room = cap - 2 - o;
        size_t take = strlen(msg) < room ? strlen(msg) : room;

        memcpy(line + o, msg, take);
        o += take;
        if (o >= body + 3)
            memcpy(line + o - 3, "...", 3);
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        size_t mark = o;

        if (f[i].json_only)
            continue;
        if (log_put(line, cap - 1, &o, " ", 1) == -1 ||
            log_put(line, cap - 1, &o, f[i].key, strlen(f[i].key)) == -1 ||
            log_put(line, cap - 1, &o, "=", 1) == -1) {
            o = mark;
            break;
        }
        if (f[i].kind == LOG_FIELD_STR) {
            if (log_put_text_value(line, cap - 1, &o, f[i].s ? f[i].s : "") == -1) {
                o = mark;
                break;
            }
            continue;
        }
        if (f[i].kind == LOG_FIELD_INT)
            snprintf(num, sizeof(num), "%lld", f[i].i);
        else
            snprintf(num, sizeof(num), "%.3f", f[i].d);
        if (log_put(line, cap - 1, &o, num, strlen(num)) == -1) {
            o = mark;
            break;
        }
    }
    /* A value that contains a newline (a header, a Redis error string)
     * must not be able to forge a second log line. */
    for (size_t i = body; i < o; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    }
    line[o++] = '\n';
    return o;
}

static size_t
log_json_record(char *line, size_t cap, enum log_level level, const char *ts,
                const char *msg, const struct log_field *f, size_t n)
{
    size_t o = 0;
    char num[64];
    /* Room kept for the fields: a long message gives way to them. */
    size_t msg_cap = cap > 1024 ? cap - 512 : cap;

    log_put(line, cap, &o, "{\"ts\":\"", 7);
    log_put(line, cap, &o, ts, strlen(ts));
    log_put(line, cap, &o, "\",\"level\":\"", 11);
    log_put(line, cap, &o, log_names[level], strlen(log_names[level]));
    log_put(line, cap, &o, "\",\"server_id\":", 14);
    if (log_put_json_string(line, cap, &o, log_server_id) == -1)
        log_put(line, cap, &o, "\"\"", 2);
    log_put(line, cap, &o, ",\"msg\":", 7);
    if (log_put_json_string(line, msg_cap, &o, msg) == -1) {
        /* Cut at a character's end: the message without its tail. */
        char cut[LOG_LINE_MAX];
        size_t k = msg_cap > o + 16 ? (msg_cap - o - 16) / 6 : 0;

        snprintf(cut, sizeof(cut), "%.*s...", (int)k, msg);
        while (k > 0 && ((unsigned char)cut[k - 1] & 0xc0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)cut[k - 1] >= 0xc0)
            k--;
        memcpy(cut + k, "...", 4);
        if (log_put_json_string(line, msg_cap, &o, cut) == -1)
            log_put(line, cap, &o, "\"...\"", 5);
    }
    for (size_t i = 0; i < n; i++) {
        size_t mark = o;
        int bad = log_put(line, cap - LOG_TAIL, &o, ",", 1) == -1 ||
                  log_put_json_string(line, cap - LOG_TAIL, &o, f[i].key) == -1 ||
                  log_put(line, cap - LOG_TAIL, &o, ":", 1) == -1;

        if (!bad && f[i].kind == LOG_FIELD_STR) {
            bad = log_put_json_string(line, cap - LOG_TAIL, &o, f[i].s ? f[i].s : "") == -1;
        } else if (!bad) {
            if (f[i].kind == LOG_FIELD_INT)
                snprintf(num, sizeof(num), "%lld", f[i].i);
            else
                snprintf(num, sizeof(num), "%.3f", f[i].d);
            bad = log_put(line, cap - LOG_TAIL, &o, num, strlen(num)) == -1;
        }
        if (bad) {
            o = mark;           /* a field that does not fit is left out */
            break;
        }
    }
    line[o++] = '}';
    line[o++] = '\n';
    return o;
}

static void
log_vwrite(enum log_level level, const struct log_field *f, size_t n, const char *fmt,
           va_list ap) __attribute__((format(printf, 4, 0)));

static void
log_vwrite(enum log_level level, const struct log_field *f, size_t n, const char *fmt,
           va_list ap)
{
    char line[LOG_LINE_MAX], msg[LOG_LINE_MAX], ts[40];
    struct timespec now;
    struct tm tm;
    size_t len;
    int saved_errno = errno;

    if ((int)level < atomic_load(&log_min_level))
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    len = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + len, sizeof(ts) - len, ".%03ldZ", now.tv_nsec / 1000000L);
    /* A longer message is cut here, and marked when the line is made. */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (log_format == LOG_FORMAT_JSON)
        len = log_json_record(line, sizeof(line), level, ts, msg, f, n);
    else
        len = log_text_record(line, sizeof(line), level, ts, msg, f, n);
    if (len > 0)
        log_write_all(line, len);
    errno = saved_errno;        /* callers may still want the errno they logged */
}

void
log_fields(enum log_level level, const struct log_field *f, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level, f, n, fmt, ap);
    va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_DEBUG, NULL, 0, fmt, ap);
    va_end(ap);
}

void
log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_INFO, NULL, 0, fmt, ap);
    va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_WARN, NULL, 0, fmt, ap);
    va_end(ap);
}

void
log_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_ERROR, NULL, 0, fmt, ap);
    va_end(ap);
}
