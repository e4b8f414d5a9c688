/* cors.h -- which browser origins may call the API (CORS_ORIGINS): the
 * list, parsed once, and what a request's Origin header gets. Pure. */
#ifndef SSEGATE_CORS_H
#define SSEGATE_CORS_H

#include <stddef.h>

#define CORS_ORIGINS_MAX 16
/* Longest origin: "https://" and a 253-byte host name with a port fit. */
#define CORS_ORIGIN_MAX 270

/* What a preflight allows besides the simple headers: the headers our
 * endpoints read, and how long a browser may cache the answer. */
#define CORS_ALLOW_HEADERS "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"
#define CORS_MAX_AGE "600"
/* Response headers a page's script may read besides the safe ones. */
#define CORS_EXPOSE_HEADERS "Location, Retry-After"

struct cors_origins {
    unsigned n;
    int any;                    /* "*" was listed */
    char v[CORS_ORIGINS_MAX][CORS_ORIGIN_MAX + 1];
};

/* Parses a comma-separated list of exact origins ("https://app.example.com",
 * "http://localhost:8080": a scheme, "://", a host and an optional port,
 * nothing after) and "*" ("" is the empty list: CORS off). Returns 0, or
 * -1 with one line in err naming the bad item. */
int
cors_parse(const char *list, struct cors_origins *out, char *err, size_t errlen);

/* 1 if any origin is allowed at all (then every response varies on
 * Origin). */
int
cors_enabled(const struct cors_origins *c);

/* What a request whose Origin header is origin[0..len) gets: NULL when
 * it is not allowed (no Access-Control-* header at all), else the value
 * of Access-Control-Allow-Origin: the listed origin itself (*credentials
 * set to 1: a page may send cookies, EventSource withCredentials) or "*"
 * (*credentials 0: browsers refuse credentials with "*"). An exact entry
 * wins over "*". The string lives as long as c. */
const char *
cors_allow(const struct cors_origins *c, const char *origin, size_t len, int *credentials);

#endif
