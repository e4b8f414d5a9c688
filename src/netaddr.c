/* netaddr.c -- client addresses, CIDR lists and X-Forwarded-For: the pure
 * parsing and matching behind TRUSTED_PROXIES, the per-client limits and
 * the rate limits. Owns nothing; every input is bytes and a length,
 * copied into bounded buffers before libc sees it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "netaddr.h"

/* ::ffff:0:0/96 -- an IPv4 address seen through an IPv6 socket. */
static const uint8_t netaddr_v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Stores a 16-byte IPv6 address, unwrapping an IPv4-mapped one. */
static void
netaddr_set6(struct netaddr *out, const uint8_t b[16])
{
    memset(out, 0, sizeof(*out));
    if (memcmp(b, netaddr_v4mapped, sizeof(netaddr_v4mapped)) == 0) {
        out->family = 4;
        memcpy(out->bytes, b + 12, 4);
        return;
    }
    out->family = 6;
    memcpy(out->bytes, b, 16);
}

int
netaddr_parse(const char *s, size_t len, struct netaddr *out)
{
    char buf[NETADDR_TEXT_MAX + 1];
    uint8_t b[16];

    if (len == 0 || len > NETADDR_TEXT_MAX || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, b) == 1) {
        memset(out, 0, sizeof(*out));
        out->family = 4;
        memcpy(out->bytes, b, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, b) == 1) {
        netaddr_set6(out, b);
        return 0;
    }
    return -1;
}

int
netaddr_from_sockaddr(const struct sockaddr *sa, size_t len, struct netaddr *out)
{
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

        memset(out, 0, sizeof(*out));
        out->family = 4;
        memcpy(out->bytes, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

        netaddr_set6(out, in6->sin6_addr.s6_addr);
        return 0;
    }
    return -1;
}

int
netaddr_equal(const struct netaddr *a, const struct netaddr *b)
{
    return a->family == b->family &&
           memcmp(a->bytes, b->bytes, a->family == 4 ? 4 : 16) == 0;
}

/* Clears every bit of a after its first prefix bits. */
static void
netaddr_mask(struct netaddr *a, unsigned prefix)
{
    unsigned total = a->family == 4 ? 32 : 128;

    for (unsigned bit = prefix; bit < total; bit++)
        a->bytes[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
}

/* -------------------------------------------------------------- CIDRs */

static int
netaddr_is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims spaces and tabs around s[0..*len); returns the new start. */
static const char *
netaddr_trim(const char *s, size_t *len)
{
    while (*len > 0 && netaddr_is_space(s[0])) {
        s++;
        (*len)--;
    }
    while (*len > 0 && netaddr_is_space(s[*len - 1]))
        (*len)--;
    return s;
}

/* One "address[/prefix]" item. Returns 0, or -1 with why in err. */
static int
netaddr_cidr_parse(const char *s, size_t len, struct netaddr_cidr *out,
                   char *err, size_t errlen)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - s) : len;
    unsigned max, prefix = 0;
    struct netaddr masked;

    if (netaddr_parse(s, alen, &out->addr) == -1) {
        snprintf(err, errlen, "'%.*s' is not an IPv4 or IPv6 address",
                 (int)(alen > NETADDR_TEXT_MAX ? NETADDR_TEXT_MAX : alen), s);
        return -1;
    }
    max = out->addr.family == 4 ? 32 : 128;
    if (slash == NULL) {
        out->prefix = max;
        return 0;
    }
    /* An IPv4-mapped address was stored as IPv4: its prefix counted the
     * 96 bits of the mapping. */
    if (len - alen - 1 == 0 || len - alen - 1 > 3) {
        snprintf(err, errlen, "'%.*s': the prefix is not a number in 0..%u",
                 (int)(len > NETADDR_TEXT_MAX ? NETADDR_TEXT_MAX : len), s, max);
        return -1;
    }
    for (const char *p = slash + 1; p < s + len; p++) {
        if (*p < '0' || *p > '9') {
            snprintf(err, errlen, "'%.*s': the prefix is not a number in 0..%u",
                     (int)(len > NETADDR_TEXT_MAX ? NETADDR_TEXT_MAX : len), s, max);
            return -1;
        }
        prefix = prefix * 10 + (unsigned)(*p - '0');
    }
    if (out->addr.family == 4 && memchr(s, ':', alen) != NULL) {
        if (prefix < 96) {
            snprintf(err, errlen, "'%.*s': an IPv4-mapped prefix must be 96..128",
                     (int)(len > NETADDR_TEXT_MAX ? NETADDR_TEXT_MAX : len), s);
            return -1;
        }
        prefix -= 96;
    }
    if (prefix > max) {
        snprintf(err, errlen, "'%.*s': the prefix is not a number in 0..%u",
                 (int)(len > NETADDR_TEXT_MAX ? NETADDR_TEXT_MAX : len), s, max);
        return -1;
    }
    masked = out->addr;
    netaddr_mask(&masked, prefix);
    if (!netaddr_equal(&masked, &out->addr)) {
        snprintf(err, errlen, "'%.*s' has bits set past its /%u",
                 (int)(len > NETADDR_TEXT_MAX ? NETADDR_TEXT_MAX : len), s, prefix);
        return -1;
    }
    out->prefix = prefix;
    return 0;
}

int
netaddr_cidrs_parse(const char *list, struct netaddr_cidrs *out, char *err,
                    size_t errlen)
{
    const char *p = list;

    memset(out, 0, sizeof(*out));
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        const char *item = netaddr_trim(p, &len);

        if (len == 0) {
            snprintf(err, errlen, "an empty item in the list");
            return -1;
        }
        if (out->n == NETADDR_CIDRS_MAX) {
            snprintf(err, errlen, "more than %d items", NETADDR_CIDRS_MAX);
            return -1;
        }
        if (netaddr_cidr_parse(item, len, &out->v[out->n], err, errlen) == -1)
            return -1;
        out->n++;
        if (comma == NULL)
            break;
        p = comma + 1;
        if (*p == '\0') {
            snprintf(err, errlen, "an empty item in the list");
            return -1;
        }
    }
    return 0;
}

int
netaddr_cidrs_match(const struct netaddr_cidrs *l, const struct netaddr *a)
{
    for (unsigned i = 0; i < l->n; i++) {
        const struct netaddr_cidr *c = &l->v[i];
        struct netaddr m;

        if (c->addr.family != a->family)
            continue;
        m = *a;
        netaddr_mask(&m, c->prefix);
        if (netaddr_equal(&m, &c->addr))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------ X-Forwarded-For */

static int
netaddr_is_port(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* One element: an address, "[v6]", "[v6]:port" or "v4:port". */
static int
netaddr_parse_element(const char *s, size_t len, struct netaddr *out)
{
    const char *colon;

    s = netaddr_trim(s, &len);
    if (len == 0)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        size_t rest;

        if (close == NULL)
            return -1;
        rest = len - (size_t)(close - s) - 1;
        if (rest != 0 && (close[1] != ':' || !netaddr_is_port(close + 2, rest - 1)))
            return -1;
        if (netaddr_parse(s + 1, (size_t)(close - s) - 1, out) == -1 || out->family != 6)
            return -1;
        return 0;
    }
    /* Exactly one colon: an IPv4 address and a port (an IPv6 address
     * has at least two). */
    colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) == NULL) {
        if (!netaddr_is_port(colon + 1, len - (size_t)(colon - s) - 1))
            return -1;
        if (netaddr_parse(s, (size_t)(colon - s), out) == -1 || out->family != 4)
            return -1;
        return 0;
    }
    return netaddr_parse(s, len, out);
}

int
netaddr_client_from_xff(const char *xff, size_t len, const struct netaddr_cidrs *trusted,
                        struct netaddr *out)
{
    size_t end = len;
    int found = 0;

    /* Right to left, one comma-separated element at a time. */
    for (;;) {
        size_t start = end;
        struct netaddr a;

        while (start > 0 && xff[start - 1] != ',')
            start--;
        if (netaddr_parse_element(xff + start, end - start, &a) == -1)
            return found;
        *out = a;
        found = 1;
        if (!netaddr_cidrs_match(trusted, &a) || start == 0)
            return 1;
        end = start - 1;            /* before the comma */
    }
}

/* ------------------------------------------------------------- output */

void
netaddr_client_key(struct netaddr *a)
{
    if (a->family == 6)
        netaddr_mask(a, 64);
}

void
netaddr_format(const struct netaddr *a, unsigned prefix, char *out, size_t cap)
{
    char buf[INET6_ADDRSTRLEN];

    if (a->family == 4 && inet_ntop(AF_INET, a->bytes, buf, sizeof(buf)) != NULL)
        snprintf(out, cap, "%s", buf);
    else if (a->family == 6 && inet_ntop(AF_INET6, a->bytes, buf, sizeof(buf)) != NULL &&
             prefix < 128)
        snprintf(out, cap, "%s/%u", buf, prefix);
    else if (a->family == 6 && inet_ntop(AF_INET6, a->bytes, buf, sizeof(buf)) != NULL)
        snprintf(out, cap, "%s", buf);
    else
        snprintf(out, cap, "unknown");
}
