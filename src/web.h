/* web.h -- the demo page (web/), compiled into the binary by
 * scripts/embed-web so it is served with no files to find at run time. */
#ifndef SSEGATE_WEB_H
#define SSEGATE_WEB_H

#include <stddef.h>

struct web_asset {
    const char *path;           /* "/", "/app.js", ... */
    const char *content_type;
    const unsigned char *data;  /* static; never freed */
    size_t len;
};

/* Generated: every asset, then an entry whose path is NULL. */
extern const struct web_asset web_assets[];

/* The asset served at path, or NULL. */
const struct web_asset *
web_find(const char *path);

#endif
