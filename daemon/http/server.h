/* Minimal HTTP endpoint (libmicrohttpd, driven from our epoll loop: no
 * threads, so handlers read daemon state without locks). GET and HEAD only.
 * One server per listener: a TCP address (optionally TLS, GnuTLS through
 * libmicrohttpd) or a Unix socket, whose clients are known by SO_PEERCRED.
 * Connections are bounded in number (overall and per client IP) and idle
 * time; the handler decides what each client may read (http_client). */
#ifndef MEMDRIFT_HTTP_H
#define MEMDRIFT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct http_response {
	int status;
	const char *content_type;
	char *body;   /* malloc'd; the server frees it */
	size_t len;
	unsigned retry_after; /* seconds, for 429/503; 0: none */
};

/* Who is asking. */
struct http_client {
	bool unix_socket;  /* came in on the Unix-socket listener */
	bool peer_known;   /* uid/pid from SO_PEERCRED (Unix socket) */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	bool token_ok;     /* sent "Authorization: Bearer <the server's token>" */
	bool token_required; /* the server has a token (TCP) */
	bool tls;
};

struct http_request {
	const char *path;     /* without the query */
	const char *pid_arg;  /* query value of "pid", or NULL */
	struct http_client client;
};

/* Fill resp; return 0 (negative: 500). */
typedef int (*http_handler_fn)(void *ctx, const struct http_request *req,
			       struct http_response *resp);

struct http_server_opts {
	const char *listen;     /* "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464", ":9464" */
	const char *unix_path;  /* instead of listen: a Unix socket, mode 0666 */
	const char *tls_cert;   /* PEM text (not a path); both or neither */
	const char *tls_key;
	const char *token;      /* bearer token; NULL: none */
	unsigned max_connections;
	unsigned max_per_ip;    /* 0: no per-IP bound */
	unsigned timeout_s;     /* idle connections are closed after this */
	int listen_fd;          /* >= 0: serve on this listening socket (taken over;
				 * from http_server_dup_listener), not a new one */
};

struct http_server;

/* 0 or negative errno with a reason in err. */
int http_server_new(const struct http_server_opts *o, http_handler_fn fn, void *ctx,
		    struct http_server **out, char *err, size_t errlen);
/* fd to watch for input; call http_server_run() when readable and at least
 * once a second. */
int http_server_fd(const struct http_server *srv);
int http_server_run(struct http_server *srv);
void http_server_free(struct http_server *srv);
/* For a reload to the same address: a duplicate of srv's listening socket
 * (for http_server_opts.listen_fd), or -1. The port is never released. */
int http_server_dup_listener(const struct http_server *srv);
/* next replaces old on the same Unix socket: next removes the path at the
 * end, old no longer does. No-op otherwise. */
void http_server_adopt(struct http_server *next, struct http_server *old);

/* Parses a listen address into host and port. 0 or -EINVAL. */
int http_parse_listen(const char *listen, char *host, size_t hostlen, unsigned *port);

#endif
