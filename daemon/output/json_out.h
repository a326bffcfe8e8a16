/* Small JSON helpers every output shares (json-c). */
#ifndef MEMDRIFT_JSON_OUT_H
#define MEMDRIFT_JSON_OUT_H

#include <json-c/json.h>

/* Adds a source location as every JSON output names it:
 * "function", "file" and "line" (a string, a string, an integer). */
void json_site_add(json_object *o, const char *function, const char *file, long line);

#endif
