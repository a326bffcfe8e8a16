/* Minimal HTTP endpoint (libmicrohttpd, driven from our epoll loop: no
 * threads, so handlers read daemon state without locks). GET only. */
#ifndef MEMDRIFT_HTTP_H
#define MEMDRIFT_HTTP_H

#include <stddef.h>

struct http_response {
	int status;
	const char *content_type;
	char *body;   /* malloc'd; the server frees it */
	size_t len;
};

/* path without query; query value of "pid" or NULL. Fill resp; return 0. */
typedef int (*http_handler_fn)(void *ctx, const char *path, const char *pid_arg,
			       struct http_response *resp);

struct http_server;

/* listen "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464" or ":9464" (all).
 * 0 or negative errno with a reason in err. */
int http_server_new(const char *listen, http_handler_fn fn, void *ctx,
		    struct http_server **out, char *err, size_t errlen);
/* fd to watch for input; call http_server_run() when readable and at least
 * once a second. */
int http_server_fd(const struct http_server *srv);
int http_server_run(struct http_server *srv);
void http_server_free(struct http_server *srv);

/* Parses a listen address into host and port. 0 or -EINVAL. */
int http_parse_listen(const char *listen, char *host, size_t hostlen, unsigned *port);

#endif
