/* netaddr.h -- client addresses: an IPv4 or IPv6 address parsed from
 * text or a socket address, CIDR lists (TRUSTED_PROXIES), and which
 * client an X-Forwarded-For header names once the proxies we trust are
 * peeled off it. Pure: no allocation, no I/O; every parser takes bytes
 * and a length, so untrusted input never needs a NUL. */
#ifndef SSEGATE_NETADDR_H
#define SSEGATE_NETADDR_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An IPv4 address lives in bytes[0..3]; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is stored as the IPv4 address it maps, so a proxy
 * listening on both families sees one client as one address. */
struct netaddr {
    uint8_t family;             /* 4 or 6; 0: none */
    uint8_t bytes[16];
};

/* Room for any address as text, with a "/64" suffix (netaddr_format). */
#define NETADDR_STR_MAX 56

/* Longest X-Forwarded-For element we parse: "[v6 address]:port". */
#define NETADDR_TEXT_MAX 64

/* One "address/prefix" of a list; a bare address is a /32 or /128. */
struct netaddr_cidr {
    struct netaddr addr;        /* masked to its prefix */
    unsigned prefix;
};

#define NETADDR_CIDRS_MAX 32
struct netaddr_cidrs {
    unsigned n;
    struct netaddr_cidr v[NETADDR_CIDRS_MAX];
};

/* Parses one address: "1.2.3.4", "2001:db8::1", "::ffff:1.2.3.4".
 * Returns 0, or -1 when s[0..len) is not exactly an address. */
int
netaddr_parse(const char *s, size_t len, struct netaddr *out);

/* The address of an AF_INET or AF_INET6 socket address of len bytes.
 * Returns 0, or -1 for another family or a short len. */
int
netaddr_from_sockaddr(const struct sockaddr *sa, size_t len, struct netaddr *out);

/* Parses a comma-separated list of CIDRs ("127.0.0.1/32,10.0.0.0/8,
 * fd00::/8"; spaces around items allowed; "" is the empty list). Host
 * bits set under the prefix are refused rather than cleared: "10.0.0.1/8"
 * is most likely a typo for a /32. Returns 0, or -1 with one line in err
 * naming the bad item. */
int
netaddr_cidrs_parse(const char *list, struct netaddr_cidrs *out, char *err,
                    size_t errlen);

/* 1 if a is inside one of l's CIDRs (a family never matches the other). */
int
netaddr_cidrs_match(const struct netaddr_cidrs *l, const struct netaddr *a);

/* The client an X-Forwarded-For value (xff[0..len), every header line
 * joined with commas) names, for a request whose TCP peer is a trusted
 * proxy. Proxies append the address they got the request from, so the
 * value is read from the right: the first address that is not itself a
 * trusted proxy is the client. If every address is trusted, the client
 * is the leftmost one read. An element that is not an address ("unknown",
 * garbage, an empty item) ends the walk: what lies left of it was written
 * by nobody we trust, and the client is then the last trusted address
 * read. Elements may carry a port ("1.2.3.4:80", "[2001:db8::1]:80") or
 * brackets. Returns 1 with *out set, or 0 when no element could be read
 * (the caller keeps the peer's address). */
int
netaddr_client_from_xff(const char *xff, size_t len, const struct netaddr_cidrs *trusted,
                        struct netaddr *out);

/* The address limits count by: an IPv4 address as it is, an IPv6 one
 * cut to its /64, which is what one site or one phone gets (a client
 * could otherwise take a fresh address per request from its own /64). */
void
netaddr_client_key(struct netaddr *a);

/* Writes a as text into out (at least NETADDR_STR_MAX bytes): "1.2.3.4",
 * or for IPv6 with prefix 64 "2001:db8:1:2::/64". A family-0 address is
 * "unknown". */
void
netaddr_format(const struct netaddr *a, unsigned prefix, char *out, size_t cap);

/* 1 if a and b are the same address. */
int
netaddr_equal(const struct netaddr *a, const struct netaddr *b);

#endif
