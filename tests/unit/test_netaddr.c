/* test_netaddr.c -- client addresses: exact parsing, CIDR lists and
 * matching, the client X-Forwarded-For names through trusted proxies,
 * the /64 key of an IPv6 client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netaddr.h"

static struct netaddr
addr(const char *s)
{
    struct netaddr a;

    assert_int_equal(netaddr_parse(s, strlen(s), &a), 0);
    return a;
}

static const char *
text(const struct netaddr *a, unsigned prefix)
{
    static char buf[NETADDR_STR_MAX];

    netaddr_format(a, prefix, buf, sizeof(buf));
    return buf;
}

static struct netaddr_cidrs
cidrs(const char *list)
{
    struct netaddr_cidrs l;
    char err[160] = "";

    if (netaddr_cidrs_parse(list, &l, err, sizeof(err)) != 0)
        fail_msg("'%s': %s", list, err);
    return l;
}

static void
expect_cidrs_error(const char *list, const char *want)
{
    struct netaddr_cidrs l;
    char err[160] = "";

    assert_int_equal(netaddr_cidrs_parse(list, &l, err, sizeof(err)), -1);
    assert_string_equal(err, want);
}

/* The client of xff (NUL-terminated here) through trusted, as text, or
 * "-" when none is named. */
static const char *
client(const char *xff, const struct netaddr_cidrs *trusted)
{
    struct netaddr a;

    if (!netaddr_client_from_xff(xff, strlen(xff), trusted, &a))
        return "-";
    return text(&a, 128);
}

static void
test_parse(void **state)
{
    struct netaddr a;

    (void)state;
    a = addr("192.0.2.7");
    assert_int_equal(a.family, 4);
    assert_string_equal(text(&a, 128), "192.0.2.7");
    a = addr("2001:db8::1");
    assert_int_equal(a.family, 6);
    assert_string_equal(text(&a, 128), "2001:db8::1");
    /* An IPv4 client seen through an IPv6 socket is that IPv4 client. */
    a = addr("::ffff:192.0.2.7");
    assert_int_equal(a.family, 4);
    assert_true(netaddr_equal(&a, &(struct netaddr){ 0 }) == 0);
    assert_string_equal(text(&a, 128), "192.0.2.7");
    for (const char *const *bad = (const char *const[]){
             "", " 1.2.3.4", "1.2.3.4 ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4/8",
             "[::1]", "::g", "unknown", "1.2.3.4:80", NULL };
         *bad != NULL; bad++)
        assert_int_equal(netaddr_parse(*bad, strlen(*bad), &a), -1);
    /* Only len bytes are read; an embedded NUL is not an address. */
    assert_int_equal(netaddr_parse("10.0.0.1junk", 8, &a), 0);
    assert_string_equal(text(&a, 128), "10.0.0.1");
    assert_int_equal(netaddr_parse("10.0\0.0.1", 9, &a), -1);
    {
        char longer[200];

        memset(longer, '1', sizeof(longer));
        assert_int_equal(netaddr_parse(longer, sizeof(longer), &a), -1);
    }
}

static void
test_from_sockaddr(void **state)
{
    struct sockaddr_in in = { .sin_family = AF_INET };
    struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
    struct sockaddr_un_like { sa_family_t family; char path[20]; } un = { AF_UNIX, "x" };
    struct netaddr a;

    (void)state;
    inet_pton(AF_INET, "198.51.100.9", &in.sin_addr);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&in, sizeof(in), &a), 0);
    assert_string_equal(text(&a, 128), "198.51.100.9");
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&in, 4, &a), -1);
    inet_pton(AF_INET6, "::ffff:198.51.100.9", &in6.sin6_addr);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&in6, sizeof(in6), &a), 0);
    assert_int_equal(a.family, 4);
    inet_pton(AF_INET6, "fe80::1", &in6.sin6_addr);
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)&in6, sizeof(in6), &a), 0);
    assert_string_equal(text(&a, 128), "fe80::1");
    assert_int_equal(netaddr_from_sockaddr((struct sockaddr *)(void *)&un, sizeof(un), &a), -1);
    assert_int_equal(netaddr_from_sockaddr(NULL, 0, &a), -1);
}

static void
test_cidrs(void **state)
{
    struct netaddr_cidrs l;
    struct netaddr a;

    (void)state;
    l = cidrs("");
    assert_int_equal(l.n, 0);
    a = addr("127.0.0.1");
    assert_false(netaddr_cidrs_match(&l, &a));

    l = cidrs("127.0.0.1/32, 10.0.0.0/8 ,192.168.4.0/22,fd00::/8,2001:db8::5");
    assert_int_equal(l.n, 5);
    assert_true(netaddr_cidrs_match(&l, &a));
    a = addr("127.0.0.2");
    assert_false(netaddr_cidrs_match(&l, &a));
    a = addr("10.255.1.2");
    assert_true(netaddr_cidrs_match(&l, &a));
    a = addr("11.0.0.0");
    assert_false(netaddr_cidrs_match(&l, &a));
    a = addr("192.168.7.255");              /* 192.168.4.0 - 192.168.7.255 */
    assert_true(netaddr_cidrs_match(&l, &a));
    a = addr("192.168.8.0");
    assert_false(netaddr_cidrs_match(&l, &a));
    a = addr("fdab::1");
    assert_true(netaddr_cidrs_match(&l, &a));
    a = addr("fe00::1");
    assert_false(netaddr_cidrs_match(&l, &a));
    a = addr("2001:db8::5");                /* a bare address is a /128 */
    assert_true(netaddr_cidrs_match(&l, &a));
    a = addr("2001:db8::6");
    assert_false(netaddr_cidrs_match(&l, &a));
    /* A family never matches the other: 0.0.0.0/0 is not ::/0. */
    l = cidrs("0.0.0.0/0");
    a = addr("::1");
    assert_false(netaddr_cidrs_match(&l, &a));
    a = addr("203.0.113.1");
    assert_true(netaddr_cidrs_match(&l, &a));
    l = cidrs("::/0");
    a = addr("::1");
    assert_true(netaddr_cidrs_match(&l, &a));
    /* An IPv4-mapped CIDR is the IPv4 one. */
    l = cidrs("::ffff:10.0.0.0/104");
    a = addr("10.9.9.9");
    assert_true(netaddr_cidrs_match(&l, &a));
    a = addr("11.9.9.9");
    assert_false(netaddr_cidrs_match(&l, &a));
}

static void
test_cidrs_errors(void **state)
{
    char many[1024] = "";

    (void)state;
    expect_cidrs_error("10.0.0.0/8,", "an empty item in the list");
    expect_cidrs_error(",10.0.0.0/8", "an empty item in the list");
    expect_cidrs_error("10.0.0.0/8,,1.2.3.4", "an empty item in the list");
    expect_cidrs_error("localhost", "'localhost' is not an IPv4 or IPv6 address");
    expect_cidrs_error("10.0.0.0/33", "'10.0.0.0/33': the prefix is not a number in 0..32");
    expect_cidrs_error("10.0.0.0/", "'10.0.0.0/': the prefix is not a number in 0..32");
    expect_cidrs_error("10.0.0.0/x", "'10.0.0.0/x': the prefix is not a number in 0..32");
    expect_cidrs_error("10.0.0.0/-1", "'10.0.0.0/-1': the prefix is not a number in 0..32");
    expect_cidrs_error("::/129", "'::/129': the prefix is not a number in 0..128");
    expect_cidrs_error("10.0.0.1/8", "'10.0.0.1/8' has bits set past its /8");
    expect_cidrs_error("::ffff:10.0.0.0/8", "'::ffff:10.0.0.0/8': an IPv4-mapped prefix must be 96..128");
    for (int i = 0; i <= NETADDR_CIDRS_MAX; i++) {
        char item[32];

        snprintf(item, sizeof(item), "%s10.0.%d.0/24", i ? "," : "", i);
        strcat(many, item);
    }
    expect_cidrs_error(many, "more than 32 items");
}

static void
test_xff(void **state)
{
    struct netaddr_cidrs trusted = cidrs("127.0.0.1/32,10.0.0.0/8");
    struct netaddr_cidrs none = cidrs("");

    (void)state;
    /* nginx appends the address it got the request from. */
    assert_string_equal(client("203.0.113.7", &trusted), "203.0.113.7");
    /* Whatever the client wrote itself is left of that, never read. */
    assert_string_equal(client("1.1.1.1, 203.0.113.7", &trusted), "203.0.113.7");
    assert_string_equal(client("127.0.0.1, 203.0.113.7", &trusted), "203.0.113.7");
    assert_string_equal(client("garbage, 203.0.113.7", &trusted), "203.0.113.7");
    /* A chain of trusted proxies is peeled off from the right. */
    assert_string_equal(client("198.51.100.1, 203.0.113.7, 10.1.1.1, 10.2.2.2", &trusted),
                        "203.0.113.7");
    /* Every hop trusted: the leftmost is the client. */
    assert_string_equal(client("10.1.1.1,10.2.2.2", &trusted), "10.1.1.1");
    /* Something no proxy writes ends the walk at the last trusted hop. */
    assert_string_equal(client("203.0.113.7, unknown, 10.2.2.2", &trusted), "10.2.2.2");
    assert_string_equal(client("203.0.113.7,,10.2.2.2", &trusted), "10.2.2.2");
    assert_string_equal(client("unknown", &trusted), "-");
    assert_string_equal(client("", &trusted), "-");
    assert_string_equal(client(" ", &trusted), "-");
    assert_string_equal(client("203.0.113.7,", &trusted), "-");
    /* Ports and brackets, IPv6. */
    assert_string_equal(client("203.0.113.7:4711", &trusted), "203.0.113.7");
    assert_string_equal(client("[2001:db8::7]:4711", &trusted), "2001:db8::7");
    assert_string_equal(client("[2001:db8::7]", &trusted), "2001:db8::7");
    assert_string_equal(client("2001:db8::7", &trusted), "2001:db8::7");
    assert_string_equal(client("\t2001:db8::7 ,\t10.0.0.1", &trusted), "2001:db8::7");
    assert_string_equal(client("::ffff:203.0.113.7", &trusted), "203.0.113.7");
    assert_string_equal(client("[203.0.113.7]", &trusted), "-");
    assert_string_equal(client("[2001:db8::7]:", &trusted), "-");
    assert_string_equal(client("[2001:db8::7]:123456", &trusted), "-");
    assert_string_equal(client("[2001:db8::7", &trusted), "-");
    assert_string_equal(client("203.0.113.7:x", &trusted), "-");
    /* With nothing trusted the rightmost is the client. */
    assert_string_equal(client("10.1.1.1, 203.0.113.7", &none), "203.0.113.7");
    /* Only len bytes are read. */
    {
        struct netaddr a;

        assert_int_equal(netaddr_client_from_xff("10.1.1.1, 203.0.113.7", 8, &trusted, &a), 1);
        assert_string_equal(text(&a, 128), "10.1.1.1");
    }
}

static void
test_xff_long(void **state)
{
    struct netaddr_cidrs trusted = cidrs("10.0.0.0/8");
    char buf[8192];
    size_t n = 0;
    struct netaddr a;

    (void)state;
    /* Thousands of trusted hops are walked without trouble. */
    while (n + 16 < sizeof(buf)) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s10.0.0.%u", n ? "," : "",
                              (unsigned)(n % 250));
    }
    assert_int_equal(netaddr_client_from_xff(buf, n, &trusted, &a), 1);
    assert_string_equal(text(&a, 128), "10.0.0.0");
    /* An element longer than any address is not one. */
    memset(buf, '1', 200);
    memcpy(buf + 200, ",10.0.0.9", 9);
    assert_int_equal(netaddr_client_from_xff(buf, 209, &trusted, &a), 1);
    assert_string_equal(text(&a, 128), "10.0.0.9");
}

static void
test_client_key(void **state)
{
    struct netaddr a, b;

    (void)state;
    a = addr("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
    b = addr("2001:db8:1:2::77");
    netaddr_client_key(&a);
    netaddr_client_key(&b);
    assert_true(netaddr_equal(&a, &b));
    assert_string_equal(text(&a, 64), "2001:db8:1:2::/64");
    b = addr("2001:db8:1:3::77");
    netaddr_client_key(&b);
    assert_false(netaddr_equal(&a, &b));
    a = addr("192.0.2.200");
    netaddr_client_key(&a);
    assert_string_equal(text(&a, 64), "192.0.2.200");
    assert_string_equal(text(&(struct netaddr){ 0 }, 64), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_from_sockaddr),
        cmocka_unit_test(test_cidrs),
        cmocka_unit_test(test_cidrs_errors),
        cmocka_unit_test(test_xff),
        cmocka_unit_test(test_xff_long),
        cmocka_unit_test(test_client_key),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
