#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

struct http_server {
	struct MHD_Daemon *mhd;
	http_handler_fn fn;
	void *ctx;
};

int http_parse_listen(const char *listen, char *host, size_t hostlen, unsigned *port)
{
	const char *colon;
	char *end;
	unsigned long p;
	size_t hl;

	if (!listen || !*listen)
		return -EINVAL;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		hl = close - listen - 1;
		if (hl + 1 > hostlen)
			return -EINVAL;
		memcpy(host, listen + 1, hl);
		host[hl] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon)
			return -EINVAL;
		hl = colon - listen;
		if (hl + 1 > hostlen)
			return -EINVAL;
		memcpy(host, listen, hl);
		host[hl] = '\0';
	}
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || *end || p == 0 || p > 65535 || colon[1] == '\0')
		return -EINVAL;
	*port = (unsigned)p;
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct http_response resp = { .status = 200, .content_type = "text/plain" };
	struct MHD_Response *r;
	enum MHD_Result ret;

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		resp.status = 405;
		resp.body = strdup("method not allowed\n");
	} else {
		const char *pid = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "pid");

		if (srv->fn(srv->ctx, url, pid, &resp) < 0 && resp.status == 200)
			resp.status = 500;
	}
	if (!resp.body)
		resp.body = strdup("");
	if (!resp.body)
		return MHD_NO;
	if (!resp.len)
		resp.len = strlen(resp.body);
	r = MHD_create_response_from_buffer(resp.len, resp.body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(resp.body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", resp.content_type);
	ret = MHD_queue_response(conn, resp.status, r);
	MHD_destroy_response(r);
	return ret;
}

int http_server_new(const char *listen, http_handler_fn fn, void *ctx,
		    struct http_server **out, char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	struct http_server *srv;
	char host[128];
	unsigned port, flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	*out = NULL;
	if (http_parse_listen(listen, host, sizeof(host), &port) < 0)
		return set_err(err, errlen, -EINVAL, "'%s' is not HOST:PORT", listen);
	if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "*")) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (strchr(host, ':')) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return set_err(err, errlen, -EINVAL, "'%s' is not an IPv6 address", host);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		if (!strcmp(host, "localhost"))
			snprintf(host, sizeof(host), "127.0.0.1");
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return set_err(err, errlen, -EINVAL, "'%s' is not an IPv4 address", host);
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	srv->fn = fn;
	srv->ctx = ctx;
	srv->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, srv,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		free(srv);
		return set_err(err, errlen, -EADDRINUSE, "cannot listen on %s (in use or not allowed)",
			       listen);
	}
	*out = srv;
	return 0;
}

int http_server_fd(const struct http_server *srv)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);

	return info ? info->epoll_fd : -1;
}

int http_server_run(struct http_server *srv)
{
	return MHD_run(srv->mhd) == MHD_YES ? 0 : -EIO;
}

void http_server_free(struct http_server *srv)
{
	if (!srv)
		return;
	MHD_stop_daemon(srv->mhd);
	free(srv);
}
