/* api.h -- the REST and SSE endpoints and the demo page, as a route table
 * for http.c: validate, call the store, answer. */
#ifndef SSEGATE_API_H
#define SSEGATE_API_H

struct app;
struct http_routes;

/* Fills out with every route; each handler borrows app, which must
 * outlive the server. */
void
api_routes(struct app *app, struct http_routes *out);

#endif
