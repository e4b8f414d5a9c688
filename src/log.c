/* log.c -- leveled log lines on stderr. Owns the process-wide level (an
 * atomic, so any thread may log while another changes it). Each line is
 * formatted into a bounded buffer on the caller's stack and written with
 * one write(2), so lines from the HTTP threads and the event loop never
 * interleave and no lock is needed. */
#include <errno.h>
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

/* Writes all n bytes, retrying after a signal or a short write; a log
 * line is never worth failing the caller, so other errors drop it. */
static void
log_write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void
log_vwrite(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    size_t n, msg;
    int k, saved_errno = errno;

    if ((int)level < atomic_load(&log_min_level))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
                 ts.tv_nsec / 1000000L, log_names[level]);
    if (k > 0)
        n += (size_t)k;
    msg = n;
    /* Leave room for the newline; a longer message is cut and marked. */
    k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (k > 0 && (size_t)k >= sizeof(line) - n - 1) {
        n = sizeof(line) - 2;
        memcpy(line + n - 3, "...", 3);
    } else if (k > 0) {
        n += (size_t)k;
    }
    /* A value that contains a newline (a header, a Redis error string)
     * must not be able to forge a second log line. */
    for (size_t i = msg; i < n; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    }
    line[n++] = '\n';
    log_write_all(line, n);
    errno = saved_errno;        /* callers may still want the errno they logged */
}

void
log_debug(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_DEBUG, fmt, ap);
    va_end(ap);
}

void
log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_INFO, fmt, ap);
    va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_WARN, fmt, ap);
    va_end(ap);
}

void
log_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_ERROR, fmt, ap);
    va_end(ap);
}
