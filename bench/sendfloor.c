/* sendfloor.c -- the machine's floor for one fan-out: how long it takes
 * to send one small event to N TCP sockets over loopback with nothing but
 * send(), no gateway in the way. bench/run reports it beside the systems,
 * so "time until the last of 1,000 recipients" can be read against what
 * this kernel and this virtual machine allow at all.
 *
 * Each round sends a 120-byte event (the size of the benchmark's frames)
 * to every socket, from 1 or 2 threads (each takes half), and times the
 * round from its first send to its last. Readers:
 *   none   -- nobody waits; the data is drained after the round;
 *   epoll  -- one thread sleeps in epoll_wait on all N sockets, like the
 *             benchmark's client: every send may have to wake it.
 * The io_uring modes send each round through a ring instead (each sender
 * its own): every send is prepared first and the kernel takes them in one
 * io_uring_enter, so a round costs one system call instead of N (on a VM
 * the entry and exit of each call is a large part of a small send). They
 * are left out where io_uring is not available.
 * Prints one JSON object: per mode, the median, p90 and p99 round in ms, and
 * the senders' CPU time per send in us (the kernel charges the sender for
 * the loopback receive path and for waking the reader).
 *
 *   sendfloor [--sockets N] [--rounds R] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKETS 8000
#define MAX_ROUNDS 1000
#define EVENT_BYTES 120

static int nsock = 1000, rounds = 100;
static int tx_fd[MAX_SOCKETS], rx_fd[MAX_SOCKETS];
static char event[EVENT_BYTES];
static struct io_uring ring, ring2;     /* the first and the second sender's */

static long long
now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void
die(const char *what)
{
    fprintf(stderr, "sendfloor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void
pause_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&t, NULL);
}

/* N connected pairs on 127.0.0.1, both ends non-blocking, the sending
 * end with TCP_NODELAY as a gateway sets it. */
static void
pairs_open(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l == -1 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
        getsockname(l, (struct sockaddr *)&sa, &len) == -1 || listen(l, 4096) == -1)
        die("listen");
    for (int i = 0; i < nsock; i++) {
        if ((rx_fd[i] = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
            connect(rx_fd[i], (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
            (tx_fd[i] = accept(l, NULL, NULL)) == -1)
            die("connect");
        setsockopt(tx_fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(tx_fd[i], F_SETFL, O_NONBLOCK);
        fcntl(rx_fd[i], F_SETFL, O_NONBLOCK);
    }
    close(l);
}

static void
drain(int fd)
{
    char buf[4096];

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

/* Sockets [from, to) through ring r: all sends submitted together, then
 * every completion checked. A full submission queue is submitted and
 * refilled. */
static void
send_ring(struct io_uring *r, int from, int to)
{
    struct io_uring_cqe *cqe;

    for (int i = from; i < to; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(r);

        if (sqe == NULL) {
            if (io_uring_submit(r) < 0 || (sqe = io_uring_get_sqe(r)) == NULL)
                die("io_uring_submit");
        }
        io_uring_prep_send(sqe, tx_fd[i], event, sizeof(event), MSG_NOSIGNAL);
    }
    if (io_uring_submit(r) < 0)
        die("io_uring_submit");
    for (int i = from; i < to; i++) {
        int res;

        if (io_uring_wait_cqe(r, &cqe) != 0)
            die("io_uring_wait_cqe");
        res = cqe->res;
        io_uring_cqe_seen(r, cqe);
        if (res != (int)sizeof(event)) {
            errno = res < 0 ? -res : EIO;
            die("io_uring send");
        }
    }
}

static void
send_range(int from, int to)
{
    for (int i = from; i < to; i++) {
        if (send(tx_fd[i], event, sizeof(event), MSG_NOSIGNAL) != (ssize_t)sizeof(event))
            die("send");
    }
}

/* ---------------------------------------------------------- the reader */

static atomic_int reader_stop;

static void *
reader_main(void *arg)
{
    struct epoll_event ev[256];
    int ep = epoll_create1(0);

    (void)arg;
    if (ep == -1)
        die("epoll_create1");
    for (int i = 0; i < nsock; i++) {
        struct epoll_event e = { .events = EPOLLIN, .data.fd = rx_fd[i] };

        if (epoll_ctl(ep, EPOLL_CTL_ADD, rx_fd[i], &e) == -1)
            die("epoll_ctl");
    }
    while (!atomic_load(&reader_stop)) {
        int n = epoll_wait(ep, ev, 256, 50);

        for (int i = 0; i < n; i++)
            drain(ev[i].data.fd);
    }
    close(ep);
    return NULL;
}

/* ------------------------------------------------- the second sender */

static pthread_barrier_t go, done;
static atomic_int helper_stop;
static int helper_uring;            /* the second sender sends through ring2 */
static long long helper_cpu_ns;

static long long
thread_cpu_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *
helper_main(void *arg)
{
    (void)arg;
    for (;;) {
        long long c0;

        pthread_barrier_wait(&go);
        if (atomic_load(&helper_stop))
            return NULL;
        c0 = thread_cpu_ns();
        if (helper_uring)
            send_ring(&ring2, nsock / 2, nsock);
        else
            send_range(nsock / 2, nsock);
        helper_cpu_ns += thread_cpu_ns() - c0;
        pthread_barrier_wait(&done);
    }
}

static int
cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;

    return (x > y) - (x < y);
}

/* One mode: R rounds, 50 ms apart (the benchmark paces events at 20/s,
 * so the reader is asleep when each round starts). */
static void
mode_run(const char *name, int reader, int senders, int uring, int first)
{
    static long long t[MAX_ROUNDS];
    long long cpu = 0;
    pthread_t rt, ht;

    atomic_store(&reader_stop, 0);
    atomic_store(&helper_stop, 0);
    helper_cpu_ns = 0;
    helper_uring = uring;
    if (reader && pthread_create(&rt, NULL, reader_main, NULL) != 0)
        die("pthread_create");
    if (senders == 2) {
        pthread_barrier_init(&go, NULL, 2);
        pthread_barrier_init(&done, NULL, 2);
        if (pthread_create(&ht, NULL, helper_main, NULL) != 0)
            die("pthread_create");
    }
    for (int r = 0; r < rounds; r++) {
        long long t0, c0;

        pause_ms(50);
        t0 = now_ns();
        c0 = thread_cpu_ns();
        if (senders == 2) {
            pthread_barrier_wait(&go);
            if (uring)
                send_ring(&ring, 0, nsock / 2);
            else
                send_range(0, nsock / 2);
            pthread_barrier_wait(&done);
        } else if (uring) {
            send_ring(&ring, 0, nsock);
        } else {
            send_range(0, nsock);
        }
        t[r] = now_ns() - t0;
        cpu += thread_cpu_ns() - c0;
        if (!reader) {
            for (int i = 0; i < nsock; i++)
                drain(rx_fd[i]);
        }
    }
    if (senders == 2) {
        atomic_store(&helper_stop, 1);
        pthread_barrier_wait(&go);
        pthread_join(ht, NULL);
        cpu += helper_cpu_ns;
        pthread_barrier_destroy(&go);
        pthread_barrier_destroy(&done);
    }
    if (reader) {
        atomic_store(&reader_stop, 1);
        pthread_join(rt, NULL);
    }
    for (int i = 0; i < nsock; i++)
        drain(rx_fd[i]);
    qsort(t, (size_t)rounds, sizeof(t[0]), cmp_ll);
    printf("%s\"%s\":{\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"cpu_us_per_send\":%.2f}",
           first ? "" : ",", name, (double)t[rounds / 2] / 1e6,
           (double)t[rounds * 9 / 10] / 1e6, (double)t[rounds * 99 / 100] / 1e6,
           (double)cpu / 1e3 / ((double)rounds * nsock));
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "sockets", required_argument, NULL, 's' },
        { "rounds", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 's')
            nsock = atoi(optarg);
        else if (c == 'r')
            rounds = atoi(optarg);
        else
            return 2;
    }
    if (nsock < 2 || nsock > MAX_SOCKETS || rounds < 2 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "sendfloor: --sockets 2..%d, --rounds 2..%d\n", MAX_SOCKETS,
                MAX_ROUNDS);
        return 2;
    }
    memset(event, 'x', sizeof(event));
    pairs_open();
    printf("{\"sockets\":%d,\"rounds\":%d,\"event_bytes\":%d,\"modes\":{", nsock, rounds,
           EVENT_BYTES);
    mode_run("1 sender, no reader", 0, 1, 0, 1);
    mode_run("1 sender, epoll reader", 1, 1, 0, 0);
    mode_run("2 senders, no reader", 0, 2, 0, 0);
    mode_run("2 senders, epoll reader", 1, 2, 0, 0);
    /* The completion queue gets 8,192 entries (twice 4,096), more than
     * MAX_SOCKETS: a round never overflows it. */
    if (io_uring_queue_init(4096, &ring, 0) == 0) {
        mode_run("1 sender, io_uring, no reader", 0, 1, 1, 0);
        mode_run("1 sender, io_uring, epoll reader", 1, 1, 1, 0);
        if (io_uring_queue_init(4096, &ring2, 0) == 0) {
            mode_run("2 senders, io_uring, no reader", 0, 2, 1, 0);
            mode_run("2 senders, io_uring, epoll reader", 1, 2, 1, 0);
            io_uring_queue_exit(&ring2);
        }
        io_uring_queue_exit(&ring);
    }
    printf("}}\n");
    return 0;
}
