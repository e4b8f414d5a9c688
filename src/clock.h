/* clock.h -- the two clocks ssegate reads: wall time for what users see
 * (ts, createdAt, takenAt) and monotonic time for deadlines. */
#ifndef SSEGATE_CLOCK_H
#define SSEGATE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch. */
static inline int64_t
clock_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Microseconds since the Unix epoch: an event's delay since its ts. */
static inline int64_t
clock_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Microseconds on the monotonic clock: a request's duration. */
static inline int64_t
clock_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Milliseconds on a clock that never jumps, for intervals only. */
static inline int64_t
clock_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The monotonic clock at the kernel's tick (a few ms), for bookkeeping
 * on every write: a fraction of clock_mono_ms's cost, and libevent's
 * timers read the same clock. */
static inline int64_t
clock_coarse_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
