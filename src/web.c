/* web.c -- looks up the embedded demo page's files by path. */
#include <string.h>

#include "web.h"

const struct web_asset *
web_find(const char *path)
{
    for (const struct web_asset *a = web_assets; a->path != NULL; a++) {
        if (strcmp(a->path, path) == 0)
            return a;
    }
    return NULL;
}
