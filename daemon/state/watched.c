/* The daemon's per-process state: discovering Go and JVM processes (the
 * /proc scan and exec tracepoints through procmon's callbacks), creating,
 * linking and forgetting their struct watched (state/watched.h). */
#include "state/watched.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "output/postmortem.h"
#include "service/daemon.h"

struct watched *find_watched(struct daemon *d, pid_t pid)
{
	for (struct watched *w = d->procs; w; w = w->next)
		if (w->pid == pid)
			return w;
	return NULL;
}

void daemon_free_watched(struct watched *w)
{
	process_series_free(&w->series);
	drift_trace_free(&w->trace); /* before the Go analysis it uses */
	go_sample_free(&w->go, w->cls == CLASS_GO);
	daemon_jvm_free(w->jvm);
	free(w);
}

void watched_push_rss(struct watched *w, uint64_t now)
{
	if (!w->rss.known)
		return;
	series_push(w->series.metric[SERIES_RSS_ANON], now, (double)w->rss.last.anon);
	series_push(w->series.metric[SERIES_RSS_FILE], now, (double)w->rss.last.file);
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
	if (procmon__rss(w->pid, &w->rss.last) == 0)
		w->rss.known = true;
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
	ret = go_target_open_cached(pid, &w->go.target, d->gobins, err, sizeof(err));
	if (ret < 0) {
		/* an unsupported Go version is worth one line; a process that
		 * is already gone is not */
		if (ret != -ESRCH)
			log_warn("not watching %s", err);
		w->cls = CLASS_OTHER; /* nothing opened */
		daemon_free_watched(w);
		return;
	}
	w->go.cgo = gobin_kind(w->go.target.bin) == GOBIN_GO_CGO;
	daemon_watched_link(d, w);
	log_info("watching PID %d (%s) %s%s", pid, w->comm, gobin_version(w->go.target.bin)->str,
		 w->go.cgo ? " cgo" : "");
}

/* Decides whether pid is a Go or JVM process the config selects, and starts
 * watching it. Quietly ignores everything else. initial: found by the
 * /proc scan (a JVM has long mapped its libjvm). */
void daemon_consider_process(struct daemon *d, pid_t pid, bool initial)
{
	struct proc_exe exe;
	enum proc_kind kind;

	if (find_watched(d, pid) || proc_exe_info(pid, &exe) < 0)
		return;
	kind = classify_exe_cached(&d->classes, &exe, NULL);
	if (kind == PROC_GO || kind == PROC_GO_CGO) {
		start_go(d, pid, &exe);
		return;
	}
	if (!d->cfg.select_jvm)
		return;
	if (classify_maps_jvm(pid))
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
			 fmt_bytes(b2, sizeof(b2), w->rss.last.anon));
		return;
	}
	log_info("PID %d (%s) exited: %zu goroutines, heap marked %s, RSS anon %s, %lu snapshots",
		 w->pid, w->comm, w->go.goroutines, fmt_bytes(b1, sizeof(b1), w->go.heap.marked_bytes),
		 fmt_bytes(b2, sizeof(b2), w->rss.last.anon), (unsigned long)w->snapshots);
}

void daemon_forget_process(struct daemon *d, pid_t pid)
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
		daemon_forget_process(d, ev->tgid);
	daemon_consider_process(d, ev->tgid, ev->initial);
	return 0;
}

static int on_proc_exit(void *ctx, const struct procmon_event *ev)
{
	daemon_forget_process(ctx, ev->tgid);
	return 0;
}

static int on_rss(void *ctx, const struct procmon_event *ev)
{
	struct watched *w = find_watched(ctx, ev->tgid);

	if (w && ev->rss_valid) {
		w->rss.last = ev->rss;
		w->rss.known = true;
	}
	return 0;
}

const struct procmon_callbacks daemon_procmon_cbs = {
	.on_exec = on_proc_exec,
	.on_exit = on_proc_exit,
	.on_rss = on_rss,
	.on_oom = daemon_on_oom,
};
