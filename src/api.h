/* api.h -- the REST and SSE endpoints: validate, call the store, answer.
 * One function per route; http.c routes to them. */
#ifndef SSEGATE_API_H
#define SSEGATE_API_H

#include <stddef.h>

struct app;
struct MHD_Connection;

/* What a handler gets: the connection, the shared context, the path
 * parameter (account id) if the route has one, and the whole body. */
struct api_request {
    struct MHD_Connection *conn;
    struct app *app;
    const char *id;
    const char *body;
    size_t body_len;
    const char *version;        /* "HTTP/1.1", "HTTP/1.0" */
};

/* Each returns MHD_YES or MHD_NO, as from an access handler. */
int api_stream_open(const struct api_request *r);
int api_account_create(const struct api_request *r);
int api_account_get(const struct api_request *r);
int api_snapshot_create(const struct api_request *r);
int api_event_publish(const struct api_request *r);
int api_health(const struct api_request *r);

#endif
