#include "http/server.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

struct http_server {
	struct MHD_Daemon *mhd;
	http_handler_fn fn;
	void *ctx;
	char *token;
	bool tls, unix_socket, owns_path;
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
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

/* libmicrohttpd's messages ("Server reached connection limit ...") come
 * once per refused connection: a client opening connections in a loop must
 * not flood the journal, so at most one line per 10 s, with a count. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	static uint64_t last_ns, suppressed;
	uint64_t now = now_monotonic_ns();
	char line[256];
	size_t n;

	(void)cls;
	if (last_ns && now - last_ns < 10000000000ull) {
		suppressed++;
		return;
	}
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (suppressed)
		log_warn("libmicrohttpd: %s (%lu similar messages in the last 10s)", line,
			 (unsigned long)suppressed);
	else
		log_warn("libmicrohttpd: %s", line);
	last_ns = now;
	suppressed = 0;
}

static bool token_matches(const char *want, const char *header)
{
	static const char bearer[] = "Bearer ";
	size_t wl, hl;
	unsigned char diff = 0;

	if (!want || !header || strncasecmp(header, bearer, sizeof(bearer) - 1) != 0)
		return false;
	header += sizeof(bearer) - 1;
	wl = strlen(want);
	hl = strlen(header);
	/* constant time in the token's length: no early exit on a mismatch */
	for (size_t i = 0; i < wl; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < hl ? header[i] : 0);
	return diff == 0 && hl == wl;
}

static void client_of(const struct http_server *srv, struct MHD_Connection *conn,
		      struct http_client *c)
{
	const union MHD_ConnectionInfo *ci;

	memset(c, 0, sizeof(*c));
	c->tls = srv->tls;
	c->token_required = srv->token != NULL;
	c->token_ok = token_matches(srv->token, MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
									    "Authorization"));
	if (!srv->unix_socket)
		return;
	c->unix_socket = true;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci) {
		struct ucred uc;
		socklen_t len = sizeof(uc);

		if (getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0 &&
		    len == sizeof(uc)) {
			c->peer_known = true;
			c->uid = uc.uid;
			c->gid = uc.gid;
			c->pid = uc.pid;
		}
	}
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
		struct http_request req = {
			.path = url,
			.pid_arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "pid"),
		};

		client_of(srv, conn, &req.client);
		if (srv->fn(srv->ctx, &req, &resp) < 0 && resp.status == 200)
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
	if (resp.status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
	if (resp.retry_after) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%u", resp.retry_after);
		MHD_add_response_header(r, "Retry-After", ra);
	}
	ret = MHD_queue_response(conn, resp.status, r);
	MHD_destroy_response(r);
	return ret;
}

static int tcp_address(const char *listen, struct sockaddr_storage *ss, unsigned *port,
		       unsigned *flags, char *err, size_t errlen)
{
	char host[128];

	if (http_parse_listen(listen, host, sizeof(host), port) < 0)
		return set_err(err, errlen, -EINVAL, "'%s' is not HOST:PORT", listen);
	if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "*")) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(*port);
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (strchr(host, ':')) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(*port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return set_err(err, errlen, -EINVAL, "'%s' is not an IPv6 address", host);
		*flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (!strcmp(host, "localhost"))
			snprintf(host, sizeof(host), "127.0.0.1");
		sin->sin_family = AF_INET;
		sin->sin_port = htons(*port);
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return set_err(err, errlen, -EINVAL, "'%s' is not an IPv4 address", host);
	}
	return 0;
}

/* A listening Unix socket at path, mode 0666: anyone may connect, the
 * handler decides by the peer's credentials. An old socket there is
 * replaced; anything else (a file, a symlink) is refused. */
static int unix_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, e;

	if (strlen(path) >= sizeof(sun.sun_path))
		return set_err(err, errlen, -ENAMETOOLONG, "%s: path too long for a socket", path);
	strcpy(sun.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return set_err(err, errlen, -EEXIST, "%s exists and is not a socket", path);
		/* a live listener there (another daemon) is not ours to take */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(fd);
			return set_err(err, errlen, -EADDRINUSE, "%s: another server listens there", path);
		}
		if (fd >= 0)
			close(fd);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return set_err(err, errlen, -errno, "socket(AF_UNIX): %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0666) < 0 ||
	    listen(fd, 64) < 0) {
		e = errno;
		close(fd);
		return set_err(err, errlen, -e, "%s: %s", path, strerror(e));
	}
	return fd;
}

int http_server_new(const struct http_server_opts *o, http_handler_fn fn, void *ctx,
		    struct http_server **out, char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	struct http_server *srv;
	unsigned port = 0, flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem opts[10];
	int n = 0, lfd = -1, ret;

	*out = NULL;
	/* first, so that every message goes through it */
	opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL };
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	srv->fn = fn;
	srv->ctx = ctx;
	if (o->token && !(srv->token = strdup(o->token))) {
		free(srv);
		return set_err(err, errlen, -ENOMEM, "out of memory");
	}
	if (o->unix_path) {
		lfd = o->listen_fd >= 0 ? o->listen_fd : unix_listen(o->unix_path, err, errlen);
		if (lfd < 0) {
			free(srv->token);
			free(srv);
			return lfd;
		}
		srv->unix_socket = true;
		srv->owns_path = o->listen_fd < 0;
		snprintf(srv->unix_path, sizeof(srv->unix_path), "%s", o->unix_path);
		opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, lfd, NULL };
	} else {
		ret = tcp_address(o->listen, &ss, &port, &flags, err, errlen);
		if (ret < 0) {
			if (o->listen_fd >= 0)
				close(o->listen_fd);
			free(srv->token);
			free(srv);
			return ret;
		}
		lfd = o->listen_fd;
		if (lfd >= 0)
			opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, lfd, NULL };
		else
			opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, &ss };
		if (o->max_per_ip)
			opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_PER_IP_CONNECTION_LIMIT,
							     o->max_per_ip, NULL };
		if (o->tls_cert && o->tls_key) {
			if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
				if (lfd >= 0)
					close(lfd);
				free(srv->token);
				free(srv);
				return set_err(err, errlen, -ENOTSUP,
					       "libmicrohttpd was built without TLS (GnuTLS)");
			}
			flags |= MHD_USE_TLS;
			srv->tls = true;
			opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0,
							     (void *)o->tls_cert };
			opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0,
							     (void *)o->tls_key };
		}
	}
	opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT,
					     o->max_connections ? o->max_connections : 256, NULL };
	opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT,
					     o->timeout_s ? o->timeout_s : 10, NULL };
	opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
	srv->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, srv,
				    MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!srv->mhd) {
		bool tls = srv->tls;

		if (lfd >= 0)
			close(lfd);
		if (srv->owns_path)
			unlink(srv->unix_path);
		free(srv->token);
		free(srv);
		if (o->unix_path)
			return set_err(err, errlen, -EIO, "cannot serve on %s", o->unix_path);
		return set_err(err, errlen, -EADDRINUSE, "cannot listen on %s (%s)", o->listen,
			       tls ? "in use, not allowed, or a bad TLS certificate/key" :
				     "in use or not allowed");
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
	MHD_stop_daemon(srv->mhd); /* closes the listen socket, ours included */
	if (srv->owns_path)
		unlink(srv->unix_path);
	free(srv->token);
	free(srv);
}

int http_server_dup_listener(const struct http_server *srv)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_LISTEN_FD);

	return info ? fcntl(info->listen_fd, F_DUPFD_CLOEXEC, 0) : -1;
}

void http_server_adopt(struct http_server *next, struct http_server *old)
{
	if (!next || !old || !next->unix_socket || next->owns_path || !old->owns_path ||
	    strcmp(next->unix_path, old->unix_path))
		return;
	next->owns_path = true;
	old->owns_path = false;
}
