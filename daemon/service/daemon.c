/* `memdrift daemon`: discovers Go and JVM processes on the host (a /proc
 * scan, then exec tracepoints), samples each Go process's goroutines and heap
 * from outside every interval, counts each JVM's JNI global references by
 * creating native stack (uprobes in libjvm) beside its hsperfdata numbers,
 * follows RSS and OOM kills through kernel tracepoints, runs the drift
 * detectors and emits alerts as JSON lines, Prometheus metrics and OOM
 * post-mortems. One epoll loop, no threads. */

#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "state/daemon_internal.h"

static const char daemon_usage[] =
	"usage: memdrift daemon [--config FILE] [--set KEY=VALUE]... [--print-config | --check-config]\n\n"
	"Watches every Go and JVM process on the host (selectors in the config\n"
	"choose), samples goroutines and heap from outside, counts JNI global refs\n"
	"by native stack, follows RSS and OOM kills with kernel tracepoints, and\n"
	"raises drift alerts as JSON lines on stdout (and\n"
	"alerts.file). Serves Prometheus metrics and pprof profiles on\n"
	"metrics.listen (profiles with metrics.token_file's token) and\n"
	"metrics.unix_socket (profiles to root and each process's own user).\n"
	"SIGHUP reloads the config and reopens alerts.file; a bad config keeps the\n"
	"old one. Needs CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH\n"
	"(and CAP_SYS_ADMIN for uprobes on some kernels), not root.\n\n"
	"  --config FILE     configuration file (see daemon/service/memdrift.conf.example)\n"
	"  --set KEY=VALUE   override one key (repeatable), e.g. --set detect.window=1m\n"
	"  --print-config    print the effective configuration and exit\n"
	"  --check-config    validate the configuration (file and --set) and exit:\n"
	"                    0 and one line when valid, 2 and the error otherwise\n"
	"  --duration D      stop after D (for tests and demos)\n";

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
		return log_err(-errno, "alerts.file %s: %s", cfg->alerts_file, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return log_err(-EINVAL, "alerts.file %s: not a regular file", cfg->alerts_file);
	}
	fcntl(fd, F_SETFL, O_APPEND);
	*out = fdopen(fd, "a");
	if (!*out) {
		close(fd);
		return log_err(-ENOMEM, "alerts.file %s: out of memory", cfg->alerts_file);
	}
	return 0;
}

/* -------------------------------------------------------------- discovery */

static enum proc_class class_lookup(struct daemon *d, dev_t dev, ino_t ino, bool *found)
{
	for (size_t i = 0; i < d->nclasses; i++)
		if (d->classes[i].dev == dev && d->classes[i].ino == ino) {
			*found = true;
			return d->classes[i].cls;
		}
	*found = false;
	return CLASS_UNKNOWN;
}

static void class_store(struct daemon *d, dev_t dev, ino_t ino, enum proc_class cls)
{
	size_t i;

	if (d->nclasses < DAEMON_CLASS_CACHE)
		i = d->nclasses++;
	else
		i = d->class_next++ % DAEMON_CLASS_CACHE; /* bounded: overwrite round-robin */
	d->classes[i] = (struct class_entry){ dev, ino, cls };
}

struct watched *find_watched(struct daemon *d, pid_t pid)
{
	for (struct watched *w = d->procs; w; w = w->next)
		if (w->pid == pid)
			return w;
	return NULL;
}

void daemon_free_watched(struct watched *w)
{
	for (size_t i = 0; i < w->nsites; i++)
		series_free(w->sites[i].count);
	free(w->sites);
	process_series_free(&w->series);
	native_watch_free(w->native); /* before the Go analysis it uses */
	if (w->cls == CLASS_GO)
		go_target_close(&w->target);
	daemon_jvm_free(w->jvm);
	free(w);
}

static void cgroup_of(pid_t pid, char *buf, size_t len)
{
	if (proc_cgroup_path(pid, buf, len) < 0)
		buf[0] = '\0';
}

/* Selectors and the process bound, common to Go and JVM processes. */
bool daemon_admit_process(struct daemon *d, pid_t pid, const struct proc_exe *exe)
{
	char cgroup[512];

	cgroup_of(pid, cgroup, sizeof(cgroup));
	if (!config_selects(&d->cfg, exe->comm, exe->exe, cgroup))
		return false;
	if (d->nprocs >= d->cfg.max_processes) {
		d->n.skipped_limit++;
		log_warn("not watching PID %d (%s): limits.max_processes (%u) reached", pid, exe->comm,
			 d->cfg.max_processes);
		return false;
	}
	return true;
}

struct watched *daemon_watched_new(struct daemon *d, pid_t pid, const struct proc_exe *exe,
				   enum proc_class cls)
{
	struct watched *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	if (process_series_init(&w->series, d->cfg.series_points) < 0) {
		free(w);
		return NULL;
	}
	w->pid = pid;
	w->cls = cls;
	snprintf(w->comm, sizeof(w->comm), "%s", exe->comm);
	snprintf(w->exe, sizeof(w->exe), "%s", exe->exe);
	proc_container(pid, &w->container);
	w->first_seen_ns = now_monotonic_ns();
	(void)proc_start_time(pid, &w->start_ticks);
	return w;
}

void daemon_watched_link(struct daemon *d, struct watched *w)
{
	if (procmon__rss(w->pid, &w->rss) == 0)
		w->rss_known = true;
	if (d->pm)
		procmon__watch(d->pm, w->pid);
	w->next = d->procs;
	d->procs = w;
	d->nprocs++;
	d->n.discovered++;
}

static void start_go(struct daemon *d, pid_t pid, const struct proc_exe *exe)
{
	struct watched *w;
	char err[512];
	int ret;

	if (!d->cfg.select_go || !daemon_admit_process(d, pid, exe))
		return;
	w = daemon_watched_new(d, pid, exe, CLASS_GO);
	if (!w)
		return;
	ret = go_target_open_cached(pid, &w->target, d->gobins, err, sizeof(err));
	if (ret < 0) {
		/* an unsupported Go version is worth one line; a process that
		 * is already gone is not */
		if (ret != -ESRCH)
			log_warn("not watching %s", err);
		w->cls = CLASS_OTHER; /* nothing opened */
		daemon_free_watched(w);
		return;
	}
	w->cgo = gobin_kind(w->target.bin) == GOBIN_GO_CGO;
	daemon_watched_link(d, w);
	log_info("watching PID %d (%s) %s%s", pid, w->comm, gobin_version(w->target.bin)->str,
		 w->cgo ? " cgo" : "");
}

/* Decides whether pid is a Go or JVM process the config selects, and starts
 * watching it. Quietly ignores everything else. initial: found by the
 * /proc scan (a JVM has long mapped its libjvm). */
static void consider_process(struct daemon *d, pid_t pid, bool initial)
{
	struct proc_exe exe;
	enum proc_class cls;
	char err[512];
	bool found;

	if (find_watched(d, pid) || proc_exe_info(pid, &exe) < 0)
		return;
	cls = class_lookup(d, exe.dev, exe.ino, &found);
	if (!found) {
		enum gobin_kind kind = GOBIN_NOT_GO;
		struct go_version ver;

		if (gobin_classify(exe.open_path, &kind, &ver, err, sizeof(err)) == 0 &&
		    kind != GOBIN_NOT_GO)
			cls = CLASS_GO;
		else
			cls = CLASS_OTHER;
		class_store(d, exe.dev, exe.ino, cls);
	}
	if (cls == CLASS_GO) {
		start_go(d, pid, &exe);
		return;
	}
	if (!d->cfg.select_jvm)
		return;
	if (daemon_jvm_maps_libjvm(pid))
		daemon_jvm_start(d, pid, &exe);
	else if (!initial)
		daemon_jvm_pending_add(d, pid);
}

static void log_final_numbers(const struct watched *w)
{
	char b1[32], b2[32];

	if (w->cls == CLASS_JVM) {
		log_info("PID %d (%s) exited: JNI global refs %lld, weak %lld, RSS anon %s", w->pid,
			 w->comm, (long long)w->jvm->refs[JNI_KIND_GLOBAL],
			 (long long)w->jvm->refs[JNI_KIND_WEAK],
			 fmt_bytes(b2, sizeof(b2), w->rss.anon));
		return;
	}
	log_info("PID %d (%s) exited: %zu goroutines, heap marked %s, RSS anon %s, %lu snapshots",
		 w->pid, w->comm, w->goroutines, fmt_bytes(b1, sizeof(b1), w->heap.marked_bytes),
		 fmt_bytes(b2, sizeof(b2), w->rss.anon), (unsigned long)w->snapshots);
}

static void forget_process(struct daemon *d, pid_t pid)
{
	struct watched **pp, *w;

	for (pp = &d->procs; (w = *pp); pp = &w->next) {
		if (w->pid != pid)
			continue;
		*pp = w->next;
		d->nprocs--;
		d->n.exited++;
		if (w->cls == CLASS_JVM)
			d->njvms--;
		log_final_numbers(w);
		alert_table_forget_pid(d->alerts, pid, now_realtime_ns(), daemon_emit_alert, d);
		if (d->pm)
			procmon__unwatch(d->pm, pid);
		daemon_free_watched(w);
		return;
	}
}

static int on_proc_exec(void *ctx, const struct procmon_event *ev)
{
	struct daemon *d = ctx;

	/* exec replaces the program: whatever we knew of this pid is stale */
	if (!ev->initial && find_watched(d, ev->tgid))
		forget_process(d, ev->tgid);
	consider_process(d, ev->tgid, ev->initial);
	return 0;
}

static int on_proc_exit(void *ctx, const struct procmon_event *ev)
{
	forget_process(ctx, ev->tgid);
	return 0;
}

static int on_rss(void *ctx, const struct procmon_event *ev)
{
	struct watched *w = find_watched(ctx, ev->tgid);

	if (w && ev->rss_valid) {
		w->rss = ev->rss;
		w->rss_known = true;
	}
	return 0;
}

/* ------------------------------------------------------------ post-mortem */

static int write_json_file(const char *path, json_object *o)
{
	char tmp[PATH_MAX + 8];
	FILE *f;
	int fd, ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open_new_file(tmp, 0640);
	if (fd < 0)
		return fd;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return -ENOMEM;
	}
	if (fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY), f) < 0)
		ret = -EIO;
	if (fclose(f) != 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

static json_object *series_json(const struct series *s, uint64_t since_ns)
{
	struct series_point pts[SERIES_MAX_CAPACITY];
	size_t n = series_window(s, since_ns, pts, SERIES_MAX_CAPACITY, NULL);
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < n; i++) {
		json_object *p = json_object_new_array();

		json_object_array_add(p, json_object_new_double(pts[i].t_ns / 1e9));
		json_object_array_add(p, json_object_new_double(pts[i].value));
		json_object_array_add(arr, p);
	}
	return arr;
}

/* Top in-use heap allocation sites of a heap profile. */
static json_object *heap_sites_json(struct watched *w, const struct heap_profile *hp)
{
	json_object *arr = json_object_new_array();
	struct heap_site *hs = NULL;
	size_t n = 0;

	if (heap_profile_sites(&w->target, hp, &hs, &n) < 0)
		return arr;
	for (size_t i = 0; i < n && i < DAEMON_TOP_SITES; i++) {
		json_object *js = json_object_new_object();

		json_object_object_add(js, "function", json_object_new_string(hs[i].function));
		json_object_object_add(js, "file", json_object_new_string(hs[i].file));
		json_object_object_add(js, "line", json_object_new_int(hs[i].line));
		json_object_object_add(js, "inuse_bytes", json_object_new_int64((int64_t)hs[i].inuse_bytes));
		json_object_array_add(arr, js);
	}
	free(hs);
	return arr;
}

/* The cached top heap sites, when the victim's own profile is unreadable. */
static void heap_cached_json(struct watched *w, json_object *o)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < w->nheap_top; i++) {
		json_object *js = json_object_new_object();

		json_object_object_add(js, "function", json_object_new_string(w->heap_top[i].function));
		json_object_object_add(js, "file", json_object_new_string(w->heap_top[i].file));
		json_object_object_add(js, "line", json_object_new_int((int)w->heap_top[i].line));
		json_object_object_add(js, "inuse_bytes", json_object_new_int64((int64_t)w->heap_top_bytes[i]));
		json_object_array_add(arr, js);
	}
	json_object_object_add(o, "heap_sites", arr);
	if (w->nheap_top)
		json_object_object_add(o, "heap_sites_age_seconds",
				       json_object_new_double((double)(now_monotonic_ns() - w->heap_top_ns) / 1e9));
}

/* A full or read-only state.dir is said once (until a post-mortem is
 * written again) and counted each time; alerts are not affected. */
static void postmortem_failed(struct daemon *d, const struct watched *w, const char *what, int err)
{
	d->n.postmortem_errors++;
	if (d->state_failing)
		return;
	d->state_failing = true;
	log_warn("post-mortem for PID %d: %s: %s (further failures are only counted, "
		 "memdrift_daemon_events_total{event=\"postmortem_error\"})", w->pid, what,
		 strerror(err));
}

struct pm_entry {
	char name[64];
	time_t mtime;
	uint64_t bytes;
};

static int pm_entry_cmp(const void *a, const void *b)
{
	const struct pm_entry *x = a, *y = b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Bytes of the regular files in one post-mortem directory (one level). */
static uint64_t pm_dir_bytes(int dfd, const char *name, bool unlink_all)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	uint64_t bytes = 0;
	struct dirent *e;
	DIR *dir;

	if (fd < 0 || !(dir = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((e = readdir(dir))) {
		struct stat st;

		if (e->d_name[0] == '.' ||
		    fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode))
			bytes += (uint64_t)st.st_blocks * 512;
		if (unlink_all)
			unlinkat(fd, e->d_name, 0);
	}
	closedir(dir);
	return bytes;
}

/* Retention: the newest post-mortems are kept within
 * state.postmortem_max_count and state.postmortem_max_bytes (the newest one
 * always); the oldest go first. */
static void postmortem_prune(struct daemon *d)
{
	struct pm_entry *ents = NULL;
	size_t n = 0, cap = 0, keep_from = 0;
	uint64_t total = 0;
	struct dirent *e;
	DIR *dir = opendir(d->cfg.state_dir);
	int dfd;

	if (!dir)
		return;
	dfd = dirfd(dir);
	while ((e = readdir(dir))) {
		struct stat st;

		if (strncmp(e->d_name, "postmortem-", 11) || strlen(e->d_name) >= sizeof(ents->name) ||
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (n == cap) {
			struct pm_entry *ne = realloc(ents, (cap = cap ? 2 * cap : 64) * sizeof(*ne));

			if (!ne)
				break;
			ents = ne;
		}
		snprintf(ents[n].name, sizeof(ents[n].name), "%s", e->d_name);
		ents[n].mtime = st.st_mtime;
		ents[n].bytes = pm_dir_bytes(dfd, e->d_name, false);
		total += ents[n].bytes;
		n++;
	}
	if (n)
		qsort(ents, n, sizeof(*ents), pm_entry_cmp);
	while (keep_from + 1 < n && (n - keep_from > d->cfg.postmortem_max_count ||
				     total > d->cfg.postmortem_max_bytes)) {
		pm_dir_bytes(dfd, ents[keep_from].name, true);
		if (unlinkat(dfd, ents[keep_from].name, AT_REMOVEDIR) == 0)
			d->n.postmortems_pruned++;
		total -= ents[keep_from].bytes;
		keep_from++;
	}
	if (keep_from)
		log_info("state.dir: removed the %zu oldest post-mortems (keeping %zu, %lu bytes)",
			 keep_from, n - keep_from, (unsigned long)total);
	free(ents);
	closedir(dir);
}

/* The process is being killed: write what we know while we still can.
 * Its memory may already be unreadable; the last series are ours. */
static void write_postmortem(struct daemon *d, struct watched *w, const struct procmon_event *ev)
{
	char dir[PATH_MAX - 64], path[PATH_MAX], err[512];
	json_object *o, *ser, *sites;
	struct go_snapshot snap;
	struct heap_profile hp = { 0 };
	int ret;

	snprintf(dir, sizeof(dir), "%s/postmortem-%d-%lu", d->cfg.state_dir, w->pid,
		 (unsigned long)(now_realtime_ns() / 1000000000ull));
	if (mkdir(d->cfg.state_dir, 0750) < 0 && errno != EEXIST) {
		postmortem_failed(d, w, d->cfg.state_dir, errno);
		return;
	}
	/* a directory of ours, new: never one someone placed there */
	if (mkdir(dir, 0750) < 0) {
		postmortem_failed(d, w, dir, errno);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "pid", json_object_new_int(w->pid));
	json_object_object_add(o, "comm", json_object_new_string(w->comm));
	json_object_object_add(o, "exe", json_object_new_string(w->exe));
	json_object_object_add(o, "runtime", json_object_new_string(w->cls == CLASS_JVM ? "jvm" : "go"));
	if (w->cls == CLASS_GO) {
		json_object_object_add(o, "go_version",
				       json_object_new_string(gobin_version(w->target.bin)->str));
		json_object_object_add(o, "cgo", json_object_new_boolean(w->cgo));
	}
	json_object_object_add(o, "oom_total_vm_bytes", json_object_new_int64((int64_t)ev->total_vm));
	json_object_object_add(o, "oom_rss_anon_bytes", json_object_new_int64((int64_t)ev->rss.anon));
	json_object_object_add(o, "oom_rss_file_bytes", json_object_new_int64((int64_t)ev->rss.file));
	json_object_object_add(o, "goroutines", json_object_new_int64((int64_t)w->goroutines));
	json_object_object_add(o, "heap_marked_bytes",
			       json_object_new_int64((int64_t)w->heap.marked_bytes));
	json_object_object_add(o, "heap_live_bytes", json_object_new_int64((int64_t)w->heap.live_bytes));
	ser = json_object_new_object();
	for (int m = 0; m < SERIES_METRIC_COUNT; m++)
		json_object_object_add(ser, series_metric_name(m), series_json(w->series.metric[m], 0));
	json_object_object_add(o, "series", ser);
	sites = json_object_new_array();
	for (size_t i = 0; i < w->nsites; i++) {
		const struct site_track *s = &w->sites[i];
		json_object *js = json_object_new_object();

		json_object_object_add(js, "function", json_object_new_string(s->site.function));
		json_object_object_add(js, "file", json_object_new_string(s->site.file));
		json_object_object_add(js, "line", json_object_new_int((int)s->site.line));
		json_object_object_add(js, "goroutines", json_object_new_int((int)s->live));
		json_object_array_add(sites, js);
	}
	json_object_object_add(o, "goroutine_sites", sites);
	if (w->cls == CLASS_JVM) {
		daemon_jvm_postmortem(w, o);
		ret = -ENOTSUP;
		snprintf(err, sizeof(err), "no pprof profiles for a JVM");
	} else {
		/* best effort: the victim may still be readable for a moment */
		ret = go_snapshot_take(&w->target, &snap, err, sizeof(err));
	}
	if (ret == 0) {
		bool heap = heap_profile_read(&w->target, &hp, err, sizeof(err)) == 0;

		json_object_object_add(o, "heap_profile_from_victim", json_object_new_boolean(heap));
		if (heap)
			json_object_object_add(o, "heap_sites", heap_sites_json(w, &hp));
		else
			heap_cached_json(w, o);
		if (snapshot_write_pprof(&w->target, &snap, heap ? &hp : NULL, dir, err,
					 sizeof(err)) < 0)
			log_warn("post-mortem pprof for PID %d: %s", w->pid, err);
		heap_profile_free(&hp);
		go_snapshot_free(&snap);
		json_object_object_add(o, "profiles_from_victim", json_object_new_boolean(1));
	} else {
		json_object_object_add(o, "profiles_from_victim", json_object_new_boolean(0));
		json_object_object_add(o, "profiles_error", json_object_new_string(err));
		if (w->cls == CLASS_GO)
			heap_cached_json(w, o);
	}
	snprintf(path, sizeof(path), "%s/postmortem.json", dir);
	ret = write_json_file(path, o);
	json_object_put(o);
	if (ret < 0) {
		postmortem_failed(d, w, path, -ret);
		return;
	}
	d->n.postmortems++;
	if (d->state_failing)
		log_info("state.dir %s: writable again", d->cfg.state_dir);
	d->state_failing = false;
	log_info("post-mortem for PID %d written to %s", w->pid, dir);
	postmortem_prune(d);
}

static int on_oom(void *ctx, const struct procmon_event *oom)
{
	struct daemon *d = ctx;
	struct watched *w = find_watched(d, oom->tgid);
	struct detect_evidence evidence = { 0 };
	struct alert_observation obs = { 0 };
	char summary[ALERT_SUMMARY_MAX], b1[32], b2[32];
	struct procmon_event copy;
	const struct procmon_event *ev = oom;

	d->n.oom_kills++;
	/* a victim slow to die can be chosen again (its memory cgroup still
	 * over the limit): the kernel counts both, the alert is one */
	if (!w || w->oom_reported)
		return 0;
	w->oom_reported = true;
	/* the pre-6.8 record carries no RSS: the last one seen stands in */
	if (!oom->rss_valid && w->rss_known) {
		copy = *oom;
		copy.rss = w->rss;
		ev = &copy;
	}
	detect_evidence_add(&evidence, "rss_anon_bytes", (double)ev->rss.anon);
	detect_evidence_add(&evidence, "rss_file_bytes", (double)ev->rss.file);
	detect_evidence_add(&evidence, "total_vm_bytes", (double)ev->total_vm);
	if (w->cls == CLASS_JVM) {
		const struct jvm_state *j = w->jvm;

		detect_evidence_add(&evidence, "jni_global_refs", (double)j->refs[JNI_KIND_GLOBAL]);
		if (j->hs_ok)
			detect_evidence_add(&evidence, "java_heap_used_bytes", (double)j->hs.heap_used);
		snprintf(summary, sizeof(summary),
			 "OOM killer chose PID %d (%s, JVM): anon RSS %s, Java heap used %s, %lld JNI "
			 "global refs", w->pid, w->comm, fmt_bytes(b1, sizeof(b1), ev->rss.anon),
			 j->hs_ok && j->hs.heap_used > 0 ?
				 fmt_bytes(b2, sizeof(b2), (uint64_t)j->hs.heap_used) : "unknown",
			 (long long)j->refs[JNI_KIND_GLOBAL]);
	} else {
		detect_evidence_add(&evidence, "goroutines", (double)w->goroutines);
		detect_evidence_add(&evidence, "heap_marked_bytes", (double)w->heap.marked_bytes);
		snprintf(summary, sizeof(summary),
			 "OOM killer chose PID %d (%s): anon RSS %s, Go heap marked %s, %zu goroutines",
			 w->pid, w->comm, fmt_bytes(b1, sizeof(b1), ev->rss.anon),
			 fmt_bytes(b2, sizeof(b2), w->heap.marked_bytes), w->goroutines);
	}
	obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm, .kind = DRIFT_OOM_KILL,
					  .severity = DRIFT_CRITICAL, .summary = summary,
					  .evidence = &evidence };
	alert_table_oneshot(d->alerts, &obs, now_realtime_ns(), daemon_emit_alert, d);
	write_postmortem(d, w, ev);
	return 0;
}

static const struct procmon_callbacks procmon_cbs_template = {
	.on_exec = on_proc_exec,
	.on_exit = on_proc_exit,
	.on_rss = on_rss,
	.on_oom = on_oom,
};

/* -------------------------------------------------------------- sampling */

static bool is_leak_wait(const char *reason)
{
	/* channel, select and sync waits: where leaked goroutines sit */
	return strstr(reason, "chan") || strstr(reason, "select") || strstr(reason, "sync") ||
	       strstr(reason, "semacquire") || strstr(reason, "Mutex") || strstr(reason, "Cond") ||
	       strstr(reason, "WaitGroup");
}

static struct site_track *site_find(struct watched *w, uint64_t gopc)
{
	for (size_t i = 0; i < w->nsites; i++)
		if (w->sites[i].gopc == gopc)
			return &w->sites[i];
	return NULL;
}

static struct site_track *site_add(struct daemon *d, struct watched *w, const struct snap_site *s)
{
	struct site_track *n, *t;

	if (w->nsites >= d->cfg.max_sites)
		return NULL;
	n = realloc(w->sites, (w->nsites + 1) * sizeof(*n));
	if (!n)
		return NULL;
	w->sites = n;
	t = &w->sites[w->nsites];
	memset(t, 0, sizeof(*t));
	t->count = series_new(d->cfg.series_points);
	if (!t->count)
		return NULL;
	t->gopc = s->gopc;
	snprintf(t->site.function, sizeof(t->site.function), "%s", s->function);
	snprintf(t->site.file, sizeof(t->site.file), "%s", s->file);
	t->site.line = s->line > 0 ? (uint32_t)s->line : 0;
	w->nsites++;
	return t;
}

static void heap_cache_refresh(struct watched *w, uint64_t now)
{
	struct heap_profile hp = { 0 };
	struct heap_site *hs = NULL;
	size_t n = 0;
	char err[256];

	if ((w->heap_top_ns && now - w->heap_top_ns < DAEMON_HEAP_CACHE_NS) ||
	    w->heap.marked_bytes < w->heap_top_marked + (1u << 20))
		return;
	w->heap_top_ns = now;
	w->heap_top_marked = w->heap.marked_bytes;
	if (heap_profile_read(&w->target, &hp, err, sizeof(err)) == 0 &&
	    heap_profile_sites(&w->target, &hp, &hs, &n) == 0) {
		w->nheap_top = 0;
		for (size_t i = 0; i < n && i < DAEMON_TOP_SITES; i++) {
			struct alert_site *s = &w->heap_top[w->nheap_top];

			snprintf(s->function, sizeof(s->function), "%s", hs[i].function);
			snprintf(s->file, sizeof(s->file), "%s", hs[i].file);
			s->line = hs[i].line > 0 ? (uint32_t)hs[i].line : 0;
			w->heap_top_bytes[w->nheap_top++] = hs[i].inuse_bytes;
		}
	}
	free(hs);
	heap_profile_free(&hp);
}

static int sample_process(struct daemon *d, struct watched *w, uint64_t now)
{
	const struct go_offsets *off = gobin_offsets(w->target.bin);
	struct go_snapshot snap;
	struct snap_site *sites = NULL;
	size_t nsites = 0;
	char err[512];
	int ret;

	ret = go_snapshot_take(&w->target, &snap, err, sizeof(err));
	if (ret < 0) {
		d->n.snapshot_errors++;
		if (++w->failures == DAEMON_SNAPSHOT_FAILURES_MAX && w->ready)
			log_warn("PID %d (%s): %s", w->pid, w->comm, err);
		return ret;
	}
	w->failures = 0;
	w->ready = true;
	w->snapshots++;
	w->goroutines = snap.goroutines;
	w->goroutines_leaked = snap.leaked;
	w->heap = snap.heap;
	w->cgo_calls = snap.cgo_calls;
	w->stack_bytes = 0;
	for (size_t i = 0; i < snap.ngs; i++)
		w->stack_bytes += snap.gs[i].stack_bytes;

	series_push(w->series.metric[SERIES_GOROUTINES], now, (double)snap.goroutines);
	series_push(w->series.metric[SERIES_GOROUTINE_STACKS], now, (double)w->stack_bytes);
	series_push(w->series.metric[SERIES_HEAP_LIVE], now, (double)snap.heap.live_bytes);
	/* the leak signal: one point per completed GC cycle */
	if (!w->have_numgc || (uint32_t)snap.heap.gc_cycles != w->last_numgc) {
		if (w->have_numgc || snap.heap.gc_cycles > 0)
			series_push(w->series.metric[SERIES_HEAP_MARKED], now,
				    (double)snap.heap.marked_bytes);
		w->last_numgc = (uint32_t)snap.heap.gc_cycles;
		w->have_numgc = true;
	}
	if (w->rss_known) {
		series_push(w->series.metric[SERIES_RSS_ANON], now, (double)w->rss.anon);
		series_push(w->series.metric[SERIES_RSS_FILE], now, (double)w->rss.file);
	}

	for (size_t i = 0; i < w->nsites; i++) {
		w->sites[i].seen = false;
		w->sites[i].live = 0;
		w->sites[i].blocked_long = 0;
		w->sites[i].leaked = 0;
		w->sites[i].oldest_blocked_ns = 0;
	}
	if (go_snapshot_sites(&w->target, &snap, &sites, &nsites) == 0) {
		for (size_t i = 0; i < nsites; i++) {
			struct site_track *t = site_find(w, sites[i].gopc);

			if (!t)
				t = site_add(d, w, &sites[i]);
			if (!t)
				continue;
			t->seen = true;
			t->live = (uint32_t)sites[i].count;
			t->leaked = (uint32_t)sites[i].leaked;
		}
	}
	for (size_t i = 0; i < snap.ngs; i++) {
		const struct snap_goroutine *g = &snap.gs[i];
		struct site_track *t;
		uint64_t age;

		if (g->system || g->status != 4 || g->waitsince <= 0 ||
		    (uint64_t)g->waitsince >= now)
			continue;
		age = now - (uint64_t)g->waitsince;
		if (age < d->cfg.goroutine_blocked_min_age_ns ||
		    !is_leak_wait(go_wait_reason_name(off, g->waitreason)))
			continue;
		t = site_find(w, g->gopc);
		if (!t)
			continue;
		t->blocked_long++;
		if (age > t->oldest_blocked_ns)
			t->oldest_blocked_ns = age;
	}
	for (size_t i = 0; i < w->nsites; i++)
		series_push(w->sites[i].count, now, (double)w->sites[i].live);
	free(sites);
	go_snapshot_free(&snap);
	heap_cache_refresh(w, now);
	return 0;
}

/* ------------------------------------------------------------- detectors */

static double window_delta(const struct series *s, uint64_t since)
{
	struct series_point first, last;

	if (series_window_ends(s, since, &first, &last) < 2)
		return 0;
	return last.value - first.value;
}

/* Time of the oldest point of s at or after since (since when none). */
static uint64_t window_start(const struct series *s, uint64_t since)
{
	struct series_point first, last;

	return series_window_ends(s, since, &first, &last) ? first.t_ns : since;
}

/* Replaces the first occurrence of what in buf (NUL-terminated, size len),
 * truncating at len - 1. */
static void replace_word(char *buf, size_t len, const char *what, const char *with)
{
	char tail[ALERT_SUMMARY_MAX];
	char *at = strstr(buf, what);
	size_t head, wl = strlen(with);

	if (!at || !len)
		return;
	head = (size_t)(at - buf);
	snprintf(tail, sizeof(tail), "%s", at + strlen(what));
	if (head + wl >= len)
		wl = len - 1 - head;
	memcpy(buf + head, with, wl);
	buf[head + wl] = '\0';
	if (head + wl + 1 < len)
		snprintf(buf + head + wl, len - head - wl, "%s", tail);
}

/* Trace on drift (trace.on_drift): the hook where a drifting process gets
 * its trace-tier probes for trace.duration under trace.cpu_budget, to name
 * the stack behind the drift. What each drift would switch on:
 *   rss_growth of go+cgo with the growth outside the Go heap
 *       -> native tracing (daemon/trace/native_trace.h: libc malloc/free by C
 *          stack joined to the Go caller of the cgo call) -> native_leak
 *          alert naming the top C stack and its Go caller (C.CString line);
 *   goroutine_leak -> exact births/deaths by site (daemon/trace/goroutine_trace.h)
 *          to confirm the site's rate without waiting for snapshots.
 * Not wired yet, so the hook records the request: counted in
 * memdrift_daemon_events_total{event="trace_request"} and logged once per
 * process and kind. Wiring native tracing here means: native_trace__new +
 * __attach(pid, &w->target) (one BPF object per traced process, bounded
 * count), __poll each tick into per-site series of outstanding bytes judged
 * by detect_outstanding(DRIFT_NATIVE_LEAK, ..., oldest_birth age), the alert
 * site being native_go_caller() of the top site's frames, and __free after
 * trace.duration or when the probes' cost exceeds trace.cpu_budget. */
static void request_trace(struct daemon *d, struct watched *w, enum drift_kind kind,
			  const char *why)
{
	if (!d->cfg.trace_on_drift || (w->trace_requested & (1u << kind)))
		return;
	w->trace_requested |= 1u << kind;
	d->n.trace_requests++;
	if (kind == DRIFT_NATIVE_LEAK && w->cls == CLASS_GO && !w->native) {
		char err[512];
		int ret = native_watch_start(w->pid, &w->target, w->cgo, d->cfg.series_points,
					     d->cfg.max_sites, d->cfg.max_native_allocations,
					     &w->native, err, sizeof(err));

		if (ret < 0) {
			d->n.trace_errors++;
			log_warn("PID %d (%s): cannot trace C memory: %s", w->pid, w->comm, err);
			return;
		}
		w->native_until_ns = now_monotonic_ns() + d->cfg.trace_duration_ns;
		w->native_cost_ns = 0;
		w->native_cost_at_ns = native_watch_started_ns(w->native);
		log_info("PID %d (%s): %s (%s): tracing C allocations for %.0fs", w->pid, w->comm,
			 drift_kind_name(kind), why, (double)d->cfg.trace_duration_ns / 1e9);
		return;
	}
	/* goroutine sites are named by the snapshot already; exact births and
	 * deaths are `memdrift attach --trace goroutines` */
	log_info("PID %d (%s): %s drift (%s)", w->pid, w->comm, drift_kind_name(kind), why);
}

/* trace.cpu_budget: the probes' cost to the target over the last sample
 * interval, as a percentage of one CPU. */
static double native_cost_percent(struct watched *w, uint64_t now)
{
	uint64_t cost = native_watch_cost_ns(w->native), dt = now - w->native_cost_at_ns;
	double pct = dt ? 100.0 * (double)(cost - w->native_cost_ns) / (double)dt : 0;

	w->native_cost_ns = cost;
	w->native_cost_at_ns = now;
	return pct;
}

static void native_off(struct watched *w)
{
	native_watch_free(w->native);
	w->native = NULL;
}

/* Trace tier for C memory: sample while it runs, switch off when its time
 * is up or its probes cost the target more than trace.cpu_budget (a firing
 * native_leak alert then stays as it was). */
static void sample_native(struct daemon *d, struct watched *w, uint64_t now)
{
	double pct;

	if (!w->native)
		return;
	if (native_watch_sample(w->native, now) < 0 || now >= w->native_until_ns) {
		log_info("PID %d (%s): C allocation tracing off (%lu bytes outstanding at the end)",
			 w->pid, w->comm, (unsigned long)native_watch_outstanding(w->native));
		native_off(w);
		return;
	}
	pct = native_cost_percent(w, now);
	if (pct > d->cfg.trace_cpu_budget_percent) {
		d->n.trace_over_budget++;
		log_warn("PID %d (%s): C allocation tracing off: its probes cost %.2f%% of a CPU "
			 "(trace.cpu_budget %g%%)", w->pid, w->comm, pct, d->cfg.trace_cpu_budget_percent);
		native_off(w);
		return;
	}
	series_push(w->series.metric[SERIES_C_OUTSTANDING], now,
		    (double)native_watch_outstanding(w->native));
}

static void evaluate_native(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	const struct detect_params *p = &d->cfg.detect;
	char summary[ALERT_SUMMARY_MAX];
	struct alert_observation obs;
	struct detect_result r;

	if (!w->native)
		return;
	for (size_t i = 0; i < native_watch_nsites(w->native); i++) {
		struct native_watch_site *s = native_watch_site(w->native, i);

		if (detect_outstanding(DRIFT_NATIVE_LEAK, s->bytes, now, s->oldest_age_ns, p, &r) < 0 ||
		    !r.enough_data)
			continue;
		detect_evidence_add(&r.evidence, "outstanding_bytes", (double)s->bytes_now);
		detect_evidence_add(&r.evidence, "outstanding_blocks", (double)s->count_now);
		alert_summary(DRIFT_NATIVE_LEAK, &r.evidence, &s->site, summary, sizeof(summary));
		obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm,
						  .kind = DRIFT_NATIVE_LEAK, .site_id = s->id,
						  .site = &s->site, .severity = r.severity,
						  .summary = summary, .evidence = &r.evidence };
		alert_table_update(d->alerts, &obs, now, ts, daemon_emit_alert, d);
	}
}

static void evaluate_goroutines(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	const struct detect_params *p = &d->cfg.detect;
	char summary[ALERT_SUMMARY_MAX];
	struct alert_observation obs;
	struct detect_result r;

	for (size_t i = 0; i < w->nsites; i++) {
		struct site_track *t = &w->sites[i];
		struct goroutine_site_blocking b = { t->blocked_long, t->oldest_blocked_ns,
						     t->leaked };

		/* too few points is no verdict: a firing alert stays as it is */
		if (detect_goroutine_site(t->count, now, &b, p, &r) < 0 || !r.enough_data)
			continue;
		detect_evidence_add(&r.evidence, "goroutines", t->live);
		alert_summary(DRIFT_GOROUTINE_LEAK, &r.evidence, &t->site, summary, sizeof(summary));
		obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm,
						  .kind = DRIFT_GOROUTINE_LEAK, .site_id = t->gopc,
						  .site = &t->site, .severity = r.severity,
						  .summary = summary, .evidence = &r.evidence };
		alert_table_update(d->alerts, &obs, now, ts, daemon_emit_alert, d);
		if (r.severity != DRIFT_CLEAR)
			request_trace(d, w, DRIFT_GOROUTINE_LEAK, t->site.function);
	}
}

/* Go heap, judged on heap marked after each GC */
static void evaluate_go_heap(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	char summary[ALERT_SUMMARY_MAX];
	struct alert_observation obs;
	struct detect_result r;
	struct alert_site top = { 0 };
	bool have_top = false;

	if (detect_go_heap(w->series.metric[SERIES_HEAP_MARKED], now, &d->cfg.detect, &r) < 0 ||
	    !r.enough_data)
		return;
	if (r.severity != DRIFT_CLEAR) {
		/* name the allocation site that holds the most in-use heap */
		struct heap_profile hp = { 0 };
		struct heap_site *hs = NULL;
		size_t nhs = 0;
		char err[256];

		if (heap_profile_read(&w->target, &hp, err, sizeof(err)) == 0 &&
		    heap_profile_sites(&w->target, &hp, &hs, &nhs) == 0 && nhs > 0) {
			snprintf(top.function, sizeof(top.function), "%s", hs[0].function);
			snprintf(top.file, sizeof(top.file), "%s", hs[0].file);
			top.line = hs[0].line > 0 ? (uint32_t)hs[0].line : 0;
			detect_evidence_add(&r.evidence, "top_site_inuse_bytes",
					    (double)hs[0].inuse_bytes);
			have_top = true;
		}
		free(hs);
		heap_profile_free(&hp);
	}
	alert_summary(DRIFT_GO_HEAP_GROWTH, &r.evidence, have_top ? &top : NULL, summary,
		      sizeof(summary));
	obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm,
					  .kind = DRIFT_GO_HEAP_GROWTH,
					  .site = have_top ? &top : NULL, .severity = r.severity,
					  .summary = summary, .evidence = &r.evidence };
	alert_table_update(d->alerts, &obs, now, ts, daemon_emit_alert, d);
}

/* RSS, with the layers that explain it, over the span the points cover (a
 * process watched for less than detect.window has a shorter one). */
static void evaluate_rss(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	const struct detect_params *p = &d->cfg.detect;
	struct correlation_input in = { .rss_known = true };
	char summary[ALERT_SUMMARY_MAX];
	struct alert_observation obs;
	struct detect_result r;
	const struct alert_site *top_site = NULL;
	enum drift_layer grew = LAYER_NONE;
	uint64_t since = now > p->window_ns ? now - p->window_ns : 0;
	uint32_t top_live = 0;
	double rest;

	if (detect_rss(w->series.metric[SERIES_RSS_ANON], now, p, &r) < 0 || !r.enough_data)
		return;
	since = window_start(w->series.metric[SERIES_RSS_ANON], since);
	in.window_ns = now > since ? now - since : 0;
	in.rss_anon_delta = window_delta(w->series.metric[SERIES_RSS_ANON], since);
	if (w->cls == CLASS_GO) {
		in.layer[LAYER_GO_HEAP].known = true;
		in.layer[LAYER_GO_HEAP].delta =
			window_delta(w->series.metric[SERIES_HEAP_LIVE], since);
		for (size_t i = 0; i < w->nsites; i++)
			if (w->sites[i].live > top_live) {
				top_live = w->sites[i].live;
				top_site = &w->sites[i].site;
			}
		in.layer[LAYER_GOROUTINE_STACKS].known = true;
		in.layer[LAYER_GOROUTINE_STACKS].delta =
			window_delta(w->series.metric[SERIES_GOROUTINE_STACKS], since);
		in.layer[LAYER_GOROUTINE_STACKS].site = top_site;
		if (w->native) {
			const struct native_watch_site *top = NULL;

			for (size_t i = 0; i < native_watch_nsites(w->native); i++) {
				const struct native_watch_site *ns = native_watch_site(w->native, i);

				if (!top || ns->bytes_now > top->bytes_now)
					top = ns;
			}
			in.layer[LAYER_C_MEMORY].known = true;
			in.layer[LAYER_C_MEMORY].delta =
				window_delta(w->series.metric[SERIES_C_OUTSTANDING], since);
			in.layer[LAYER_C_MEMORY].site = top ? &top->site : NULL;
		}
	} else if (w->cls == CLASS_JVM && w->jvm->trace) {
		in.layer[LAYER_JNI_REFS].known = true;
		in.layer[LAYER_JNI_REFS].delta = window_delta(w->series.metric[SERIES_JNI_REFS], since);
	}
	in.layer[LAYER_RSS_FILE].known = true;
	in.layer[LAYER_RSS_FILE].delta = window_delta(w->series.metric[SERIES_RSS_FILE], since);
	correlate_layers(&in, summary, sizeof(summary), &grew);
	rest = in.rss_anon_delta - in.layer[LAYER_GO_HEAP].delta -
	       in.layer[LAYER_GOROUTINE_STACKS].delta;
	/* anon memory a Go program has outside its heap and stacks is, in a
	 * cgo program, most likely what its C code allocated */
	if (w->cls == CLASS_GO && w->cgo)
		replace_word(summary, sizeof(summary), " unattributed ",
			     " outside the Go heap (likely C/native memory, cgo) ");
	else if (w->cls == CLASS_GO)
		replace_word(summary, sizeof(summary), " unattributed ",
			     " outside the Go heap and stacks ");
	if (r.severity == DRIFT_CLEAR)
		alert_summary(DRIFT_RSS_GROWTH, &r.evidence, NULL, summary, sizeof(summary));
	/* the anomaly path fills 4 of DETECT_MAX_EXTRA slots: the two numbers
	 * that say which layer grew come first (stacks are in the summary) */
	if (w->cls == CLASS_GO) {
		detect_evidence_add(&r.evidence, "go_heap_delta_bytes", in.layer[LAYER_GO_HEAP].delta);
		detect_evidence_add(&r.evidence, "outside_go_heap_delta_bytes", rest);
	} else if (in.layer[LAYER_JNI_REFS].known) {
		detect_evidence_add(&r.evidence, "jni_refs_delta", in.layer[LAYER_JNI_REFS].delta);
	}
	detect_evidence_add(&r.evidence, "rss_anon_delta_bytes", in.rss_anon_delta);
	obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm, .kind = DRIFT_RSS_GROWTH,
					  .severity = r.severity, .summary = summary,
					  .evidence = &r.evidence };
	alert_table_update(d->alerts, &obs, now, ts, daemon_emit_alert, d);
	if (r.severity != DRIFT_CLEAR && w->cls == CLASS_GO && w->cgo && grew == LAYER_OTHER)
		request_trace(d, w, DRIFT_NATIVE_LEAK, "RSS grows outside the Go heap");
}

static void evaluate_process(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts)
{
	/* the native series start with the trace; the detector needs its own
	 * points, not the process's age */
	evaluate_native(d, w, now, ts);
	/* no verdict before the process's series cover enough of the window:
	 * start-up growth is not drift (firing alerts stay as they are) */
	if ((double)(now - w->first_seen_ns) <
	    DAEMON_MIN_WINDOW_COVERAGE * (double)d->cfg.detect.window_ns)
		return;
	if (w->cls == CLASS_GO) {
		evaluate_goroutines(d, w, now, ts);
		evaluate_go_heap(d, w, now, ts);
	} else if (w->cls == CLASS_JVM && w->jvm->trace) {
		daemon_jvm_evaluate(d, w, now, ts);
	}
	evaluate_rss(d, w, now, ts);
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
	forget_process(d, pid);
	if (ticks)
		consider_process(d, pid, false);
	return true;
}

/* Records the ring buffer dropped may include execs: look at /proc again. */
static void rescan_after_drops(struct daemon *d)
{
	struct procmon_callbacks cbs = procmon_cbs_template;
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
				forget_process(d, w->pid);
				continue;
			}
			daemon_jvm_sample(d, w, now);
		} else if (sample_process(d, w, now) < 0) {
			if (!proc_exists(w->pid))
				forget_process(d, w->pid);
			continue;
		} else {
			sample_native(d, w, now);
		}
		evaluate_process(d, w, now, ts);
	}
	sd_notifyf(0, "STATUS=watching %zu processes (%zu JVMs), %u alerts firing", d->nprocs,
		   d->njvms, alert_table_counters(d->alerts)->active);
	return 0;
}

static int on_procmon(void *ctx, uint64_t arg)
{
	struct daemon *d = ctx;
	struct procmon_callbacks cbs = procmon_cbs_template;
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
			return log_err(ret, "metrics.token_file: %s", err);
		t = s->token;
		n = strcspn(t, "\r\n");
		t[n] = '\0';
		if (n < 16 || strpbrk(t, " \t")) {
			endpoint_secrets_free(s);
			return log_err(-EINVAL, "metrics.token_file %s: the first line must be a token of "
				       "16 or more characters, no spaces", cfg->metrics_token_file);
		}
	}
	if (cfg->metrics_tls_cert[0]) {
		ret = config_read_file(cfg->metrics_tls_cert, 1 << 20, &s->cert, err, sizeof(err));
		if (ret == 0)
			ret = config_read_file(cfg->metrics_tls_key, 1 << 20, &s->key, err, sizeof(err));
		if (ret < 0) {
			endpoint_secrets_free(s);
			return log_err(ret, "metrics.tls_cert/tls_key: %s", err);
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
		return log_err(ret, "%s: %s", unix_socket ? "metrics.unix_socket" : "metrics.listen",
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
		ret = log_err(-EINVAL, "alert parameters rejected");
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
		log_err(0, "reload refused, keeping the running config: %s", err);
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

int cmd_daemon(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "print-config", no_argument, NULL, 'P' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "duration", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct procmon_callbacks cbs = procmon_cbs_template;
	struct memdrift_config cfg;
	char err[CONFIG_ERR_MAX];
	struct daemon *d;
	bool print = false, check = false;
	uint64_t duration = 0;
	int c, ret;

	d = calloc(1, sizeof(*d));
	if (!d)
		return log_err(1, "out of memory");
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:s:PCd:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			d->config_path = optarg;
			break;
		case 's':
			if (d->nsets >= DAEMON_MAX_SETS) {
				free(d);
				return log_err(2, "daemon: at most %d --set flags", DAEMON_MAX_SETS);
			}
			d->sets[d->nsets++] = optarg;
			break;
		case 'P':
			print = true;
			break;
		case 'C':
			check = true;
			break;
		case 'd':
			if (parse_duration_ns(optarg, &duration) < 0 || !duration) {
				free(d);
				return log_err(2, "daemon: --duration: '%s' is not a duration", optarg);
			}
			break;
		case 'h':
			fputs(daemon_usage, stdout);
			free(d);
			return 0;
		default:
			free(d);
			return log_err(2, "daemon: unknown option or missing value '%s' (see 'memdrift daemon --help')",
				       argv[optind - 1]);
		}
	}
	if (optind != argc) {
		free(d);
		return log_err(2, "daemon: unexpected argument '%s'", argv[optind]);
	}
	if (config_load_with(d->config_path, d->sets, d->nsets, &cfg, err, sizeof(err)) < 0) {
		free(d);
		return log_err(2, "%s", err);
	}
	if (print || check) {
		if (print)
			config_write(stdout, &cfg);
		else
			printf("%s: configuration valid\n", d->config_path ? d->config_path : "(defaults)");
		free(d);
		return 0;
	}
	/* a service's log says what it watches and each process's last
	 * numbers: info level unless MEMDRIFT_LOG says otherwise */
	if (!getenv("MEMDRIFT_LOG"))
		log_threshold = LOG_LEVEL_INFO;
	if (bpf_util_check(err, sizeof(err)) < 0) {
		free(d);
		return log_err(1, "%s", err);
	}
	bpf_util_init();
	stdout_setup(d);
	raise_nofile();
	d->started_ns = now_monotonic_ns();
	if (duration)
		d->stop_at_ns = d->started_ns + duration;
	d->alerts = alert_table_new(&cfg.alert);
	/* the bound follows limits.max_processes at start (a reload keeps it) */
	if (gobin_cache_new(cfg.max_processes, &d->gobins) < 0) {
		daemon_free(d);
		return log_err(1, "daemon: out of memory");
	}
	ret = d->alerts ? event_loop_new(&d->loop) : -ENOMEM;
	if (ret < 0) {
		daemon_free(d);
		return log_err(1, "daemon: cannot start: %s", strerror(-ret));
	}
	ret = apply_config(d, &cfg, true);
	if (ret < 0) {
		daemon_free(d);
		return 1;
	}
	postmortem_prune(d); /* retention holds across restarts and new limits */
	if (procmon__new(NULL, &d->pm, err, sizeof(err)) < 0 ||
	    procmon__attach(d->pm, err, sizeof(err)) < 0) {
		daemon_free(d);
		return log_err(1, "daemon: cannot load the kernel tracepoints (exec, exit, rss_stat, "
			       "mark_victim): %s", err);
	}
	/* start-up is over (rlimit raised, listeners bound, tracepoints on):
	 * keep what attaching probes and reading new processes takes */
	{
		/* uprobes: JNI tracking and the trace tier (bpf_util.h) */
		bool uprobes = cfg.select_jvm || cfg.trace_on_drift;

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
		ret = event_loop_set_timer(d->loop, cfg.interval_ns < 250000000ull ?
					   cfg.interval_ns : 250000000ull, on_tick, d);
	if (ret < 0) {
		daemon_free(d);
		return log_err(1, "daemon: event loop: %s", strerror(-ret));
	}
	procmon__scan(d->pm, &cbs);
	log_info("daemon started: %zu processes watched (%zu JVMs)%s%s", d->nprocs, d->njvms,
		 cfg.metrics_listen[0] ? ", metrics on " : "", cfg.metrics_listen);
	sd_notifyf(0, "READY=1\nSTATUS=watching %zu processes", d->nprocs);
	ret = event_loop_run(d->loop);
	daemon_free(d);
	return ret < 0 ? 1 : 0;
}
