/* `memdrift daemon`'s service loop: discovers Go and JVM processes on the
 * host (a /proc scan, then exec tracepoints: state/watched.c), samples each
 * Go process's goroutines and heap from outside every interval
 * (state/sample.c), counts each JVM's JNI global references by creating
 * native stack (state/daemon_jvm.c), follows RSS and OOM kills through
 * kernel tracepoints, runs the drift detectors (detect/evaluate.c) and emits
 * alerts as JSON lines, Prometheus metrics (output/daemon_http.c) and OOM
 * post-mortems (output/postmortem.c). This file: alerts on stdout and
 * alerts.file, the tick, reload, signals and start-up. One epoll loop, no
 * threads; the options are parsed in cli/cmd_daemon.c. */
#include "service/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "detect/evaluate.h"
#include "http/routes.h"
#include "output/postmortem.h"
#include "probe/bpf_util.h"
#include "state/watched.h"

/* ---------------------------------------------------------------- alerts */

/* Alerts on stdout never block or kill the loop: SIGPIPE is ignored; a
 * pipe is written through a non-blocking open file description of its own
 * (reopened from /proc/self/fd/1, so stderr, often the same pipe or journal
 * socket, stays as it was), a socket with MSG_DONTWAIT; lines a slow reader
 * has not taken yet wait in a bounded buffer, and what does not fit, or has
 * no reader any more, is dropped and counted. A regular file or a terminal
 * is written as it is. */
static void stdout_setup(struct daemon *d)
{
	struct stat st;

	signal(SIGPIPE, SIG_IGN);
	d->out.fd = STDOUT_FILENO;
	if (fstat(STDOUT_FILENO, &st) == 0 && S_ISSOCK(st.st_mode)) {
		d->out.sock = true;
	} else if (S_ISFIFO(st.st_mode)) {
		d->out.fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (d->out.fd < 0) {
			int fl = fcntl(STDOUT_FILENO, F_GETFL);

			d->out.fd = STDOUT_FILENO;
			if (fl >= 0)
				fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK);
		}
	}
	d->out.buf = malloc(DAEMON_STDOUT_BUFFER);
}

static void stdout_flush(struct daemon *d)
{
	struct out_buffer *o = &d->out;
	size_t off = 0;

	while (off < o->len && !o->gone) {
		ssize_t n = o->sock ? send(o->fd, o->buf + off, o->len - off, MSG_DONTWAIT | MSG_NOSIGNAL) :
				      write(o->fd, o->buf + off, o->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			log_warn("stdout: %s: alerts go on to alerts.file and /metrics only",
				 n < 0 ? strerror(errno) : "closed");
			o->gone = true;
			break;
		}
		off += (size_t)n;
	}
	if (o->gone)
		off = o->len;
	memmove(o->buf, o->buf + off, o->len - off);
	o->len -= off;
}

static void stdout_line(struct daemon *d, const char *line, size_t n)
{
	struct out_buffer *o = &d->out;

	if (!o->buf || o->gone || o->len + n + 1 > DAEMON_STDOUT_BUFFER) {
		d->n.stdout_dropped++;
		return;
	}
	memcpy(o->buf + o->len, line, n);
	o->buf[o->len + n] = '\n';
	o->len += n + 1;
	stdout_flush(d);
}

void daemon_emit_alert(const struct alert_record *rec, void *ctx)
{
	struct daemon *d = ctx;
	char line[8192];
	int n = alert_record_json(rec, line, sizeof(line));

	if (n < 0) {
		d->n.alert_write_errors++;
		return;
	}
	if (d->cfg.alerts_stdout)
		stdout_line(d, line, strlen(line));
	if (d->alerts_file) {
		if (fprintf(d->alerts_file, "%s\n", line) < 0 || fflush(d->alerts_file) != 0)
			d->n.alert_write_errors++;
	}
}

/* alerts.file, opened afresh (SIGHUP after log rotation): appended to,
 * created 0640, never through a symlink, never a FIFO or device. */
static int open_alerts_file(const struct memdrift_config *cfg, FILE **out)
{
	struct stat st;
	int fd;

	*out = NULL;
	if (!cfg->alerts_file[0])
		return 0;
	fd = open(cfg->alerts_file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
		  0640);
	if (fd < 0)
		return log_errno(-errno, "alerts.file %s: %s", cfg->alerts_file, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return log_errno(-EINVAL, "alerts.file %s: not a regular file", cfg->alerts_file);
	}
	fcntl(fd, F_SETFL, O_APPEND);
	*out = fdopen(fd, "a");
	if (!*out) {
		close(fd);
		return log_errno(-ENOMEM, "alerts.file %s: out of memory", cfg->alerts_file);
	}
	return 0;
}

/* An exit the ring buffer dropped: the pid is gone, or names another
 * process now (start time changed). Forgotten, and a new process under
 * that pid considered. True when w was forgotten. */
static bool reconcile_exit(struct daemon *d, struct watched *w)
{
	uint64_t ticks = 0;
	pid_t pid = w->pid;

	if (proc_start_time(pid, &ticks) == 0 && (!w->start_ticks || ticks == w->start_ticks))
		return false;
	log_info("PID %d (%s): exit not seen (%s): forgotten", (int)pid, w->comm,
		 ticks ? "its pid now names another process" : "gone");
	d->n.exits_reconciled++;
	daemon_forget_process(d, pid);
	if (ticks)
		daemon_consider_process(d, pid, false);
	return true;
}

/* Records the ring buffer dropped may include execs: look at /proc again. */
static void rescan_after_drops(struct daemon *d)
{
	struct procmon_callbacks cbs = daemon_procmon_cbs;
	struct procmon_stats st;

	if (!d->pm)
		return;
	procmon__stats(d->pm, &st);
	if (st.ringbuf_drops == d->seen_ringbuf_drops)
		return;
	d->seen_ringbuf_drops = st.ringbuf_drops;
	d->n.rescans++;
	cbs.ctx = d;
	procmon__scan(d->pm, &cbs);
}

static int on_tick(void *ctx, uint64_t expirations)
{
	struct daemon *d = ctx;
	uint64_t now = now_monotonic_ns(), ts = now_realtime_ns();
	struct watched *w, *next;

	(void)expirations;
	daemon_http_fd_ready(d, 1);
	if (d->out.len)
		stdout_flush(d);
	if (d->watchdog)
		sd_notify(0, "WATCHDOG=1");
	if (d->stop_at_ns && now >= d->stop_at_ns)
		return 1;
	if (d->npending)
		daemon_jvm_pending_check(d, now);
	if (d->last_eval_ns && now - d->last_eval_ns < d->cfg.interval_ns)
		return 0;
	d->last_eval_ns = now;
	d->n.evaluations++;
	rescan_after_drops(d);
	for (w = d->procs; w; w = next) {
		next = w->next;
		if (reconcile_exit(d, w))
			continue;
		if (w->cls == CLASS_JVM) {
			if (!proc_exists(w->pid)) {
				daemon_forget_process(d, w->pid);
				continue;
			}
			daemon_jvm_sample(d, w, now);
		} else if (daemon_sample_go(d, w, now) < 0) {
			if (!proc_exists(w->pid))
				daemon_forget_process(d, w->pid);
			continue;
		} else {
			drift_trace_sample(d, w, now);
		}
		daemon_evaluate(d, w, now, ts);
	}
	sd_notifyf(0, "STATUS=watching %zu processes (%zu JVMs), %u alerts firing", d->nprocs,
		   d->njvms, alert_table_counters(d->alerts)->active);
	return 0;
}

static int on_procmon(void *ctx, uint64_t arg)
{
	struct daemon *d = ctx;
	struct procmon_callbacks cbs = daemon_procmon_cbs;
	int ret;

	(void)arg;
	cbs.ctx = d;
	ret = procmon__poll(d->pm, 0, &cbs);
	return ret == -EINTR ? 0 : (ret < 0 ? ret : 0);
}

/* ----------------------------------------------------------------- reload */

/* The endpoint's secrets: read afresh at each (re)load, so SIGHUP rotates
 * a token or certificate. */
struct endpoint_secrets {
	char *token, *cert, *key;
};

static void endpoint_secrets_free(struct endpoint_secrets *s)
{
	free(s->token);
	if (s->key)
		explicit_bzero(s->key, strlen(s->key));
	free(s->cert);
	free(s->key);
}

static int endpoint_secrets_read(const struct memdrift_config *cfg, struct endpoint_secrets *s)
{
	char err[CONFIG_ERR_MAX];
	int ret = 0;

	memset(s, 0, sizeof(*s));
	if (cfg->metrics_token_file[0]) {
		char *t;
		size_t n;

		ret = config_read_file(cfg->metrics_token_file, 4096, &s->token, err, sizeof(err));
		if (ret < 0)
			return log_errno(ret, "metrics.token_file: %s", err);
		t = s->token;
		n = strcspn(t, "\r\n");
		t[n] = '\0';
		if (n < 16 || strpbrk(t, " \t")) {
			endpoint_secrets_free(s);
			return log_errno(-EINVAL, "metrics.token_file %s: the first line must be a token of "
				       "16 or more characters, no spaces", cfg->metrics_token_file);
		}
	}
	if (cfg->metrics_tls_cert[0]) {
		ret = config_read_file(cfg->metrics_tls_cert, 1 << 20, &s->cert, err, sizeof(err));
		if (ret == 0)
			ret = config_read_file(cfg->metrics_tls_key, 1 << 20, &s->key, err, sizeof(err));
		if (ret < 0) {
			endpoint_secrets_free(s);
			return log_errno(ret, "metrics.tls_cert/tls_key: %s", err);
		}
	}
	return 0;
}

/* A new server for one listener (addr: metrics.listen or the socket path),
 * taking over the old one's socket when the address is the same, so a
 * reload never drops the port. NULL *out when addr is empty. */
static int endpoint_new(struct daemon *d, const struct memdrift_config *cfg, bool unix_socket,
			const struct endpoint_secrets *sec, struct http_server *old,
			const char *old_addr, struct http_server **out)
{
	const char *addr = unix_socket ? cfg->metrics_unix_socket : cfg->metrics_listen;
	struct http_server_opts o = {
		.max_connections = cfg->metrics_max_connections,
		.max_per_ip = cfg->metrics_max_connections_per_ip,
		.timeout_s = (unsigned)(cfg->metrics_timeout_ns / 1000000000ull),
		.listen_fd = -1,
	};
	char err[CONFIG_ERR_MAX];
	int ret;

	*out = NULL;
	if (!addr[0])
		return 0;
	if (unix_socket) {
		o.unix_path = addr;
	} else {
		o.listen = addr;
		o.token = sec->token;
		o.tls_cert = sec->cert;
		o.tls_key = sec->key;
	}
	if (old && !strcmp(addr, old_addr))
		o.listen_fd = http_server_dup_listener(old);
	ret = http_server_new(&o, daemon_http_handler, d, out, err, sizeof(err));
	if (ret < 0)
		return log_errno(ret, "%s: %s", unix_socket ? "metrics.unix_socket" : "metrics.listen",
			       err);
	return 0;
}

static void endpoint_swap(struct daemon *d, struct http_server **slot, struct http_server *next)
{
	if (*slot) {
		event_loop_remove_fd(d->loop, http_server_fd(*slot));
		http_server_adopt(next, *slot);
		http_server_free(*slot);
	}
	*slot = next;
	/* if the loop is full the tick still runs it, every 250 ms */
	if (next && event_loop_add_fd(d->loop, http_server_fd(next), daemon_http_fd_ready, d) < 0)
		log_warn("HTTP endpoint served only at each tick");
}

/* Everything new is built first; on any failure the running listeners,
 * files and parameters stay as they were. */
static int apply_config(struct daemon *d, const struct memdrift_config *cfg, bool initial)
{
	struct http_server *tcp = NULL, *unx = NULL;
	struct endpoint_secrets sec;
	FILE *alerts_file = NULL;
	int ret;

	ret = endpoint_secrets_read(cfg, &sec);
	if (ret < 0)
		return ret;
	ret = endpoint_new(d, cfg, false, &sec, d->http, d->cfg.metrics_listen, &tcp);
	if (ret == 0)
		ret = endpoint_new(d, cfg, true, &sec, d->http_unix, d->cfg.metrics_unix_socket, &unx);
	endpoint_secrets_free(&sec);
	/* reopened at every reload: after a rotation the new file gets the alerts */
	if (ret == 0)
		ret = open_alerts_file(cfg, &alerts_file);
	if (ret == 0 && !initial && alert_table_set_params(d->alerts, &cfg->alert) < 0)
		ret = log_errno(-EINVAL, "alert parameters rejected");
	if (ret < 0) {
		http_server_free(tcp);
		http_server_free(unx);
		if (alerts_file)
			fclose(alerts_file);
		return ret;
	}
	endpoint_swap(d, &d->http, tcp);
	endpoint_swap(d, &d->http_unix, unx);
	if (d->alerts_file)
		fclose(d->alerts_file);
	d->alerts_file = alerts_file;
	d->cfg = *cfg;
	return 0;
}

static int on_signal(void *ctx, uint64_t signo)
{
	struct daemon *d = ctx;
	struct memdrift_config cfg;
	char err[CONFIG_ERR_MAX];

	if (signo != SIGHUP) {
		sd_notify(0, "STOPPING=1");
		return 1;
	}
	sd_notify(0, "RELOADING=1");
	if (config_load_with(d->config_path, d->sets, d->nsets, &cfg, err, sizeof(err)) < 0) {
		log_errno(0, "reload refused, keeping the running config: %s", err);
	} else if (apply_config(d, &cfg, false) == 0) {
		log_info("configuration reloaded");
		postmortem_prune(d);
	}
	sd_notify(0, "READY=1");
	return 0;
}

/* ------------------------------------------------------------------- main */

static void daemon_free(struct daemon *d)
{
	struct watched *w, *next;

	for (w = d->procs; w; w = next) {
		next = w->next;
		daemon_free_watched(w);
	}
	gobin_cache_free(d->gobins); /* after every process released its reference */
	http_server_free(d->http);
	http_server_free(d->http_unix);
	if (d->out.len)
		stdout_flush(d);
	free(d->out.buf);
	if (d->out.fd > STDOUT_FILENO)
		close(d->out.fd);
	procmon__free(d->pm);
	alert_table_free(d->alerts);
	event_loop_free(d->loop);
	if (d->alerts_file)
		fclose(d->alerts_file);
	free(d);
}

/* BPF objects, watched binaries and up to 2 x metrics.max_connections
 * sockets: the soft open-file limit goes up to the hard one (no privilege
 * needed), so connections never starve the BPF side of descriptors. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Runs the daemon (service/daemon.h). */
int daemon_run(struct daemon *d, const struct memdrift_config *cfg, uint64_t duration)
{
	struct procmon_callbacks cbs = daemon_procmon_cbs;
	char err[CONFIG_ERR_MAX];
	int ret;

	/* a service's log says what it watches and each process's last
	 * numbers: info level unless MEMDRIFT_LOG says otherwise */
	if (!getenv("MEMDRIFT_LOG"))
		log_threshold = LOG_LEVEL_INFO;
	if (bpf_util_check(err, sizeof(err)) < 0) {
		free(d);
		return cli_fail(1, "%s", err);
	}
	bpf_util_init();
	stdout_setup(d);
	raise_nofile();
	d->started_ns = now_monotonic_ns();
	if (duration)
		d->stop_at_ns = d->started_ns + duration;
	d->alerts = alert_table_new(&cfg->alert);
	/* the bound follows limits.max_processes at start (a reload keeps it) */
	if (gobin_cache_new(cfg->max_processes, &d->gobins) < 0) {
		daemon_free(d);
		return cli_fail(1, "daemon: out of memory");
	}
	ret = d->alerts ? event_loop_new(&d->loop) : -ENOMEM;
	if (ret < 0) {
		daemon_free(d);
		return cli_fail(1, "daemon: cannot start: %s", strerror(-ret));
	}
	ret = apply_config(d, cfg, true);
	if (ret < 0) {
		daemon_free(d);
		return 1;
	}
	postmortem_prune(d); /* retention holds across restarts and new limits */
	if (procmon__new(NULL, &d->pm, err, sizeof(err)) < 0 ||
	    procmon__attach(d->pm, err, sizeof(err)) < 0) {
		daemon_free(d);
		return cli_fail(1, "daemon: cannot load the kernel tracepoints (exec, exit, rss_stat, "
			       "mark_victim): %s", err);
	}
	/* start-up is over (rlimit raised, listeners bound, tracepoints on):
	 * keep what attaching probes and reading new processes takes */
	{
		/* uprobes: JNI tracking and the trace tier (bpf_util.h) */
		bool uprobes = cfg->select_jvm || cfg->trace_on_drift;

		if (uprobes && !bpf_util_has_cap_sys_admin())
			log_warn("no CAP_SYS_ADMIN: this kernel may refuse the uprobes of JNI tracking "
				 "and trace.on_drift (the watch tier works without it)");
		ret = bpf_util_drop_caps(uprobes);
		if (ret < 0)
			log_warn("cannot drop capabilities: %s", strerror(-ret));
	}
	{
		uint64_t usec;

		d->watchdog = sd_watchdog_enabled(0, &usec) > 0;
	}
	cbs.ctx = d;
	ret = event_loop_add_fd(d->loop, procmon__fd(d->pm), on_procmon, d);
	if (ret == 0)
		ret = event_loop_catch_signals(d->loop, on_signal, d);
	/* the timer ticks at most every 250 ms; sampling follows detect.interval */
	if (ret == 0)
		ret = event_loop_set_timer(d->loop, cfg->interval_ns < 250000000ull ?
					   cfg->interval_ns : 250000000ull, on_tick, d);
	if (ret < 0) {
		daemon_free(d);
		return cli_fail(1, "daemon: event loop: %s", strerror(-ret));
	}
	procmon__scan(d->pm, &cbs);
	log_info("daemon started: %zu processes watched (%zu JVMs)%s%s", d->nprocs, d->njvms,
		 cfg->metrics_listen[0] ? ", metrics on " : "", cfg->metrics_listen);
	sd_notifyf(0, "READY=1\nSTATUS=watching %zu processes", d->nprocs);
	ret = event_loop_run(d->loop);
	daemon_free(d);
	return ret < 0 ? 1 : 0;
}
