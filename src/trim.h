/* trim.h -- gives the heap's free pages back to the kernel once a load
 * has gone (malloc_trim), on a timer of the main loop. */
#ifndef SSEGATE_TRIM_H
#define SSEGATE_TRIM_H

struct event_base;
struct http;
struct hub;

struct trim;

/* Watches h's connections and hub's streams every few seconds on base's
 * loop (borrowed: both must outlive the trim). Returns NULL when out of
 * memory. */
struct trim *
trim_new(struct event_base *base, struct http *h, struct hub *hub);

/* Stops the timer and frees t. NULL is ignored. */
void
trim_free(struct trim *t);

#endif
