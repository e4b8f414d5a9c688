/* topic.c -- topic (room) names and the grants that cover them. The name
 * alphabet leaves out "*" (a grant's wildcard), spaces and anything a
 * Redis key, a channel name, a log line or a URL would have to escape.
 * Pure; owns nothing. */
#include <string.h>

#include "topic.h"

static int
topic_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == ':' || c == '/' || c == '-';
}

int
topic_name_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > TOPIC_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!topic_char_ok(s[i]))
            return 0;
    }
    return 1;
}

int
topic_grant_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0)
        return 0;
    if (s[len - 1] == '*')
        return len == 1 || (len - 1 <= TOPIC_NAME_MAX && topic_name_valid(s, len - 1));
    return topic_name_valid(s, len);
}

int
topic_grant_covers(const char *grant, const char *topic)
{
    size_t n = strlen(grant);

    if (n > 0 && grant[n - 1] == '*')
        return strncmp(grant, topic, n - 1) == 0;
    return strcmp(grant, topic) == 0;
}
