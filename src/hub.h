/* hub.h -- the index of open streams (userId -> streams, plus the
 * firehose) and their one teardown. Borrows every stream it holds; fans
 * each shared frame out to the matching streams. Thread-safe (sharded
 * locks). */
#ifndef SSEGATE_HUB_H
#define SSEGATE_HUB_H

#include <stddef.h>

#include "stream.h"

struct hub;
struct stream;
struct sse_frame;
struct fanout;

/* The kinds of stream the hub holds (ssegate_streams{kind}): one line
 * each, the enum name and the label. */
#define HUB_KINDS(X) \
    X(HUB_KIND_USER, "user") \
    X(HUB_KIND_TOPIC, "topic") \
    X(HUB_KIND_FIREHOSE, "firehose")

enum hub_kind {
#define HUB_KIND_ENUM(e, name) e,
    HUB_KINDS(HUB_KIND_ENUM)
#undef HUB_KIND_ENUM
    HUB_KIND_COUNT
};

/* "user", "firehose", ... */
const char *
hub_kind_name(enum hub_kind k);

/* Streams indexed now, of kind k. */
size_t
hub_count_kind(struct hub *h, enum hub_kind k);

/* Streams indexed since start (each ends once: hub_ended). */
unsigned long
hub_opened(struct hub *h);

/* fo (borrowed, may be NULL) spreads large fan-outs over its helpers.
 * uring: batch each fan-out's writes through io_uring (sender.c) where
 * the kernel allows it. */
struct hub *
hub_new(struct fanout *fo, int uring);

/* What the hub tells about topics, each called under the topic's shard
 * lock (so for one topic in the order things happened), on whatever
 * thread adds or drops the stream: it must only hand the news over (a
 * leaf mutex, an event_active), never call back into the hub. Any may be
 * NULL. on_first: the topic's first stream here was indexed; on_last: its
 * last one went (hub_drop_stream). on_join / on_leave: a stream of member
 * (stream_member: its user, "" for none) joined or left the topic on this
 * instance, for presence. */
struct hub_topic_hooks {
    void (*on_first)(void *arg, const char *topic);
    void (*on_last)(void *arg, const char *topic);
    void (*on_join)(void *arg, const char *topic, const char *member);
    void (*on_leave)(void *arg, const char *topic, const char *member);
    /* After a stream's topics were all added (or all dropped), outside
     * any lock: the news of the whole stream may be acted on at once (the
     * subscriber wakes its loop here, so 32 topics go in one SUBSCRIBE). */
    void (*on_done)(void *arg);
};

/* Who listens: the subscriber (its channels) and presence. */
#define HUB_TOPIC_LISTENERS_MAX 2

/* Adds a listener: its hooks (copied) and their arg (borrowed); before
 * any stream is added. Returns 0, or -1 when HUB_TOPIC_LISTENERS_MAX
 * listen already. */
int
hub_add_topic_hooks(struct hub *h, const struct hub_topic_hooks *hooks, void *arg);

/* Takes the listener of arg away, when it goes before the hub (no
 * stream may be added or dropped meanwhile). */
void
hub_remove_topic_hooks(struct hub *h, void *arg);

/* Frees the index only; the hub must be empty (streams are owned by
 * their connections). NULL is ignored. */
void
hub_free(struct hub *h);

/* Indexes s under its user id (or the firehose for "", unless it has
 * topics) and under each of its topics (stream_set_topics). Returns 0,
 * or -1 when out of memory or when the hub is closed for shutdown. */
int
hub_add(struct hub *h, struct stream *s);

/* Like hub_add, but a user (not the firehose) that already has
 * max_per_user streams here gets none more: then returns HUB_ADD_FULL,
 * and s is not indexed. max_per_user 0: no limit. The check and the add
 * are one step under the user's shard lock, so opens racing on several
 * HTTP threads never pass the limit. */
#define HUB_ADD_FULL (-2)
int
hub_add_limited(struct hub *h, struct stream *s, size_t max_per_user);

/* The one way a stream ends, whatever the reason: unindexes it (no
 * producer reaches it after this), closes it (no more writes or wakes),
 * logs one line with the reason, counts it, and drops the caller's
 * reference, which is the stream's owner's. Any thread. */
void
hub_drop_stream(struct hub *h, struct stream *s, enum stream_end why);

/* How many streams ended for each reason since start. */
unsigned long
hub_ended(struct hub *h, enum stream_end why);

/* Pushes the n frames f (borrowed), in order, to every stream of user_id
 * and to the firehose; each stream gets them in one write. One caller
 * thread at a time (the subscriber): the fan-out's helpers serve one run
 * at a time. */
void
hub_publish(struct hub *h, const char *user_id, struct sse_frame *const *f, size_t n);

/* Pushes the n frames f (borrowed), in order, to every stream of topic
 * (not the firehose). Same caller rule as hub_publish. */
void
hub_publish_topic(struct hub *h, const char *topic, struct sse_frame *const *f, size_t n);

/* Returns an array of references to every indexed stream (the caller
 * stream_unref()s each and free()s the array), with the count in *n.
 * Returns NULL with *n == 0 when empty or out of memory (*n then
 * (size_t)-1). */
struct stream **
hub_snapshot(struct hub *h, size_t *n);

/* Ends every stream (each flushes what it holds, then its writer loop
 * drops it). */
void
hub_end_all(struct hub *h, enum stream_end why);

/* Refuses further hub_add() calls, then ends every stream with why,
 * each after one of the nlast frames (borrowed, picked at random: a
 * shutdown's spread retries; nlast 0: none). */
void
hub_close(struct hub *h, enum stream_end why, struct sse_frame *const *last, size_t nlast);

/* Number of indexed streams (approximate under concurrent change). */
size_t
hub_count(struct hub *h);

#endif
