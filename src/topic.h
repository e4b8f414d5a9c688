/* topic.h -- topic (room) names and the grants that cover them. Pure: no
 * I/O, no allocation. */
#ifndef SSEGATE_TOPIC_H
#define SSEGATE_TOPIC_H

#include <stddef.h>

/* A topic name: 1 to TOPIC_NAME_MAX characters of [A-Za-z0-9._:/-]. */
#define TOPIC_NAME_MAX 128

/* Where a topic's events live in Redis and travel between gateways: its
 * capped history, and the gateways' own per-topic channel (ids trusted
 * there only, like STORE_EVENTS_CHANNEL for user events). */
#define TOPIC_HISTORY_PREFIX "ssegate:history:topic:"
#define TOPIC_OWN_CHANNEL_PREFIX "ssegate:events:"
/* Room for either key or channel name of the longest topic, its NUL. */
#define TOPIC_KEY_MAX (sizeof(TOPIC_HISTORY_PREFIX) + TOPIC_NAME_MAX)

/* 1 if s (len bytes) is a topic name. */
int
topic_name_valid(const char *s, size_t len);

/* 1 if s (len bytes) is a grant of a token's "topics" claim: a topic name,
 * or a prefix of one followed by "*" (a lone "*" grants every topic). */
int
topic_grant_valid(const char *s, size_t len);

/* 1 if grant (topic_grant_valid, NUL-terminated) covers topic: equal, or
 * grant ends in "*" and topic starts with what comes before it. */
int
topic_grant_covers(const char *grant, const char *topic);

#endif
