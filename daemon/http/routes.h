/* The daemon's HTTP endpoints (output/daemon_http.c): /metrics, /healthz
 * and the pprof profiles of a watched Go process. */
#ifndef MEMDRIFT_DAEMON_HTTP_H
#define MEMDRIFT_DAEMON_HTTP_H

#include <stdint.h>

#include "base/strbuf.h"

struct http_request;
struct http_response;

/* HTTP handler (http.h) and its fd callback (event_loop.h); ctx: the daemon. */
int daemon_http_handler(void *ctx, const struct http_request *req, struct http_response *resp);
int daemon_http_fd_ready(void *ctx, uint64_t arg);
/* A Prometheus label value: escaped, invalid UTF-8 replaced. */
void prom_escape(struct strbuf *sb, const char *s);

#endif
