/* envelope.h -- the JSON event envelope: building the parts a write
 * publishes, and reading a message that arrives on the channel.
 * Pure (json-c builds; strictjson_scan_object reads). */
#ifndef SSEGATE_ENVELOPE_H
#define SSEGATE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "eventid.h"
#include "sse.h"

/* Longest userId we accept from the channel. */
#define ENVELOPE_USER_MAX 64
/* Longest serverId kept; a longer one is read as absent. The longest
 * SERVER_ID, so an instance always recognises its own events. */
#define ENVELOPE_SERVER_MAX CONFIG_SERVER_ID_MAX

/* The envelope is {"id":"<id>",<rest>}. The id is only known inside
 * Redis (the publish script allocates it), so C builds <rest>:
 *   "type":"<type>","userId":"<user>","data":<data>,"serverId":"<sid>","ts":<ts>}
 * with every string JSON-escaped. data_json must already be one valid
 * JSON text (it is copied verbatim). Returns a NUL-terminated string the
 * caller owns (free()), or NULL on allocation failure. */
char *
envelope_build_rest(const char *type, const char *user_id,
                    const char *data_json, size_t data_len,
                    const char *server_id, int64_t ts_ms);

/* The same for a topic's event: "topic":"<topic>" in place of "userId". */
char *
envelope_build_topic_rest(const char *type, const char *topic,
                          const char *data_json, size_t data_len,
                          const char *server_id, int64_t ts_ms);

/* What the subscriber needs from a channel message. */
struct envelope_view {
    /* The message had a valid "id": what it claims, trusted only when
     * it came on the gateways' own channel (subscriber.c). */
    int has_id;
    struct event_id id;
    char type[SSE_EVENT_MAX + 1];       /* "message" when absent */
    char user_id[ENVELOPE_USER_MAX + 1];
    char server_id[ENVELOPE_SERVER_MAX + 1]; /* "" when absent */
    int64_t ts_ms;                      /* "ts" when a positive integer; else 0 */
};

/* Parses one channel message (len bytes, not NUL-terminated): a JSON
 * object (strictjson_parse_object: valid UTF-8, no raw control
 * character in a string) with "userId" (a non-empty string of at most
 * ENVELOPE_USER_MAX bytes without control characters, or a non-negative
 * integer, written as its decimal string), optional "type"
 * (1..SSE_EVENT_MAX of [A-Za-z0-9._-], not "error" or "open"; default
 * "message"), optional "id" (a string
 * eventid_parse accepts; an id of another form is an error) and optional
 * "serverId" (kept when a string of at most ENVELOPE_SERVER_MAX bytes,
 * else left empty) and optional "ts" (kept when a positive integer, else
 * 0). Returns 0, or -1 with a short reason in err for
 * anything malformed. Read with strictjson_scan_object, not json-c: it
 * allocates nothing on this per-event path, and takes and refuses what
 * strictjson_parse_object would, json-c's quirks included (a duplicate
 * key's last value wins, a key is cut at an escaped NUL, "-0" is 0). */
int
envelope_parse(const char *msg, size_t len, struct envelope_view *out,
               char *err, size_t errlen);

/* Like envelope_parse, for a message on a topic's channel: the channel
 * names the recipients, so no userId is needed (user_id is left ""). */
int
envelope_parse_topic(const char *msg, size_t len, struct envelope_view *out,
                     char *err, size_t errlen);

/* Returns 1 if s (len bytes) is a valid event type: 1..SSE_EVENT_MAX
 * characters of [A-Za-z0-9._-]. */
int
envelope_type_valid(const char *s, size_t len);

/* Returns 1 if type (NUL-terminated) is reserved, which no one may post:
 * a type the gateway itself emits (account.created, snapshot, gap,
 * token-expired, and every presence.*), so a client can trust that such
 * an event is the real thing, or one EventSource gives a meaning of its
 * own (error and open fire a stream's onerror and onopen handlers on a
 * stream that is fine). Case matters, as it does to EventSource. */
int
envelope_type_reserved(const char *type);

/* 1 for the types EventSource itself dispatches (error, open): refused on
 * the channel too, where the gateway's own types are not. */
int
envelope_type_fires_handler(const char *type);

#endif
