/* api.h -- the REST and SSE endpoints: validate, call the store, answer.
 * One function per route; http.c routes to them. */
#ifndef SSEGATE_API_H
#define SSEGATE_API_H

#include <stddef.h>

#include "body.h"
#include "eventid.h"
#include "pipeline.h"
#include "store.h"

struct app;
struct stream;
struct MHD_Connection;

/* A POST /events or a stream open whose script (the write, or the history
 * read) is in flight on the thread's pipeline: http.c keeps it with the
 * request, suspended, and calls the handler again once it is answered. */
enum api_pending_state { API_PENDING_NONE, API_PENDING_WAITING, API_PENDING_DONE };
struct api_pending {
    enum api_pending_state state;
    struct MHD_Connection *conn;
    struct store_cmd cmd;           /* the script in flight */
    struct pipeline_req q;
    enum store_result rc;
    /* POST /events */
    struct event_input in;          /* the parsed body, until answered */
    char id[EVENTID_STR_MAX];       /* the event's id, once stored */
    /* GET /events/sse: the stream, indexed in its hub and still in
     * replay mode until the read is answered; owned here until it is
     * started. */
    struct stream *stream;
    struct event_id after;
    int has_after;
};

/* Frees what a request's pending script holds; never while it waits. */
void
api_pending_clear(struct api_pending *pd);

/* What a handler gets: the connection, the shared context, the path
 * parameter (account id) if the route has one, and the whole body. */
struct api_request {
    struct MHD_Connection *conn;
    struct app *app;
    const char *id;
    const char *body;
    size_t body_len;
    const char *version;        /* "HTTP/1.1", "HTTP/1.0" */
    struct api_pending *pending;    /* this request's pending write */
    struct pipeline *pipe;          /* the thread's pipeline, or NULL: block */
};

/* Each returns MHD_YES or MHD_NO, as from an access handler. */
int api_stream_open(const struct api_request *r);
int api_account_create(const struct api_request *r);
int api_account_get(const struct api_request *r);
int api_snapshot_create(const struct api_request *r);
int api_event_publish(const struct api_request *r);
int api_health(const struct api_request *r);

#endif
