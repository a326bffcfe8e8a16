/* OOM post-mortems: the oom_kill alert and the victim's post-mortem
 * directory under state.dir (postmortem.json, pprof profiles while the
 * victim is still readable), and their retention. */
#include "output/postmortem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "output/json_out.h"
#include "output/snapshot_out.h"
#include "service/daemon.h"
#include "state/watched.h"

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

/* The cached top heap sites, when the victim's own profile is unreadable. */
static void heap_cached_json(struct watched *w, json_object *o)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < w->heap_top.n; i++) {
		json_object *js = json_object_new_object();

		json_site_add(js, w->heap_top.site[i].function, w->heap_top.site[i].file, (int)w->heap_top.site[i].line);
		json_object_object_add(js, "inuse_bytes", json_object_new_int64((int64_t)w->heap_top.bytes[i]));
		json_object_array_add(arr, js);
	}
	json_object_object_add(o, "heap_sites", arr);
	if (w->heap_top.n)
		json_object_object_add(o, "heap_sites_age_seconds",
				       json_object_new_double((double)(now_monotonic_ns() - w->heap_top.at_ns) / 1e9));
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
void postmortem_prune(struct daemon *d)
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
				       json_object_new_string(gobin_version(w->go.target.bin)->str));
		json_object_object_add(o, "cgo", json_object_new_boolean(w->go.cgo));
	}
	json_object_object_add(o, "oom_total_vm_bytes", json_object_new_int64((int64_t)ev->total_vm));
	json_object_object_add(o, "oom_rss_anon_bytes", json_object_new_int64((int64_t)ev->rss.anon));
	json_object_object_add(o, "oom_rss_file_bytes", json_object_new_int64((int64_t)ev->rss.file));
	json_object_object_add(o, "goroutines", json_object_new_int64((int64_t)w->go.goroutines));
	json_object_object_add(o, "heap_marked_bytes",
			       json_object_new_int64((int64_t)w->go.heap.marked_bytes));
	json_object_object_add(o, "heap_live_bytes", json_object_new_int64((int64_t)w->go.heap.live_bytes));
	ser = json_object_new_object();
	for (int m = 0; m < SERIES_METRIC_COUNT; m++)
		json_object_object_add(ser, series_metric_name(m), series_json(w->series.metric[m], 0));
	json_object_object_add(o, "series", ser);
	sites = json_object_new_array();
	for (size_t i = 0; i < w->go.nsites; i++) {
		const struct site_track *s = &w->go.sites[i];
		json_object *js = json_object_new_object();

		json_site_add(js, s->site.function, s->site.file, (int)s->site.line);
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
		ret = go_snapshot_take(&w->go.target, &snap, err, sizeof(err));
	}
	if (ret == 0) {
		struct heap_site *hs = NULL;
		size_t nhs = 0;
		bool heap = heap_profile_top_sites(&w->go.target, &hp, DAEMON_TOP_SITES, &hs, &nhs,
						   err, sizeof(err)) == 0;

		json_object_object_add(o, "heap_profile_from_victim", json_object_new_boolean(heap));
		if (heap)
			json_object_object_add(o, "heap_sites", heap_sites_to_json(hs, nhs, nhs));
		else
			heap_cached_json(w, o);
		if (snapshot_write_pprof(&w->go.target, &snap, heap ? &hp : NULL, dir, err,
					 sizeof(err)) < 0)
			log_warn("post-mortem pprof for PID %d: %s", w->pid, err);
		free(hs);
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

int daemon_on_oom(void *ctx, const struct procmon_event *oom)
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
	if (!oom->rss_valid && w->rss.known) {
		copy = *oom;
		copy.rss = w->rss.last;
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
		detect_evidence_add(&evidence, "goroutines", (double)w->go.goroutines);
		detect_evidence_add(&evidence, "heap_marked_bytes", (double)w->go.heap.marked_bytes);
		snprintf(summary, sizeof(summary),
			 "OOM killer chose PID %d (%s): anon RSS %s, Go heap marked %s, %zu goroutines",
			 w->pid, w->comm, fmt_bytes(b1, sizeof(b1), ev->rss.anon),
			 fmt_bytes(b2, sizeof(b2), w->go.heap.marked_bytes), w->go.goroutines);
	}
	obs = (struct alert_observation){ .pid = w->pid, .comm = w->comm, .kind = DRIFT_OOM_KILL,
					  .severity = DRIFT_CRITICAL, .summary = summary,
					  .evidence = &evidence };
	alert_table_oneshot(d->alerts, &obs, now_realtime_ns(), daemon_emit_alert, d);
	write_postmortem(d, w, ev);
	return 0;
}

