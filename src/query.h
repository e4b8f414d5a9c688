/* query.h -- which value of a request's query parameter the API reads.
 * Pure: no I/O, no allocation. */
#ifndef SSEGATE_QUERY_H
#define SSEGATE_QUERY_H

#include <stddef.h>

/* One query argument as libmicrohttpd decoded it ("%xx" and "+" undone),
 * with its lengths: a decoded "%00" puts a NUL inside key or value. */
struct query_arg {
    const char *key;
    size_t key_len;
    const char *value;          /* NULL: the name came without "=" */
    size_t value_len;
};

/* The value of name (matched in any case) among the n arguments: NULL
 * when none has that name;
 * "" when they do not give it exactly one value (the name twice, without
 * "=", or a NUL inside the value), which no validator accepts; else the
 * value, a NUL-terminated string of exactly its value_len bytes. */
const char *
query_value(const struct query_arg *args, size_t n, const char *name);

/* Copies the request target (path and raw query, as sent) into out (cap
 * bytes, always NUL-terminated) with the value of every parameter named
 * name dropped ("token=abc" becomes "token="), the name compared once
 * "%xx" and "+" are undone, in any case, as query_value matches it. A
 * target that does not fit ends in "...". For logs: a secret in the
 * query never reaches them. Returns out. */
const char *
query_redact(const char *target, const char *name, char *out, size_t cap);

/* Every value of name (matched in any case) among the n arguments, in
 * order: fn(value, value_len, arg) for each. For a repeatable parameter
 * (topic). Returns how many there were, or -1 at once when one of them
 * has no "=" or a NUL inside its value (which no validator may see cut
 * short), or fn returned -1. */
int
query_each(const struct query_arg *args, size_t n, const char *name,
           int (*fn)(const char *value, size_t len, void *arg), void *arg);

#endif
