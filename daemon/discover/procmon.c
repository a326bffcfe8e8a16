#include "discover/procmon.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/log.h"
#include "discover/proc.h"
#include "probe/bpf_util.h"
#include "procmon.skel.h"

struct procmon {
	struct procmon_bpf *skel;
	struct probe_links links;
	struct ring_buffer *rb;
	const struct procmon_callbacks *cbs; /* only during a poll */
	uint64_t decode_errors;
	uint64_t watched_full;
	bool exit_group_dead;
	bool oom_task;
	const char *oom_probe;
};

dev_t procmon_kernel_dev(uint32_t kdev)
{
	/* include/linux/kdev_t.h: MINORBITS = 20 */
	return makedev(kdev >> 20, kdev & ((1u << 20) - 1));
}

static void copy_str(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t n = strnlen(src, srclen);

	if (n >= dstlen)
		n = dstlen - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void rss_from_rec(struct procmon_rss *out, const struct pm_rss *in)
{
	out->file = in->bytes[PM_RSS_FILE];
	out->anon = in->bytes[PM_RSS_ANON];
	out->swap = in->bytes[PM_RSS_SWAP];
	out->shmem = in->bytes[PM_RSS_SHMEM];
}

int procmon_decode(const void *data, size_t len, struct procmon_event *out)
{
	struct pm_hdr hdr;

	memset(out, 0, sizeof(*out));
	if (len < sizeof(hdr))
		return -EINVAL;
	memcpy(&hdr, data, sizeof(hdr));
	out->type = (enum procmon_event_type)hdr.type;
	out->tgid = (pid_t)hdr.tgid;
	out->ts_ns = hdr.ts_ns;

	switch (hdr.type) {
	case PM_REC_EXEC: {
		struct pm_exec_rec r;

		if (len < sizeof(r))
			return -EINVAL;
		memcpy(&r, data, sizeof(r));
		out->pid = (pid_t)r.pid;
		out->old_pid = (pid_t)r.old_pid;
		out->ppid = (pid_t)r.ppid;
		out->exe_dev = procmon_kernel_dev(r.exe_dev);
		out->exe_ino = (ino_t)r.exe_ino;
		copy_str(out->comm, sizeof(out->comm), r.comm, sizeof(r.comm));
		copy_str(out->filename, sizeof(out->filename), r.filename, sizeof(r.filename));
		return 0;
	}
	case PM_REC_EXIT: {
		struct pm_exit_rec r;

		if (len < sizeof(r))
			return -EINVAL;
		memcpy(&r, data, sizeof(r));
		out->pid = (pid_t)r.pid;
		out->exit_code = (int)r.exit_code;
		copy_str(out->comm, sizeof(out->comm), r.comm, sizeof(r.comm));
		out->rss_valid = r.flags & PM_EXIT_F_RSS_VALID;
		if (out->rss_valid)
			rss_from_rec(&out->rss, &r.rss);
		return 0;
	}
	case PM_REC_FORK: {
		struct pm_fork_rec r;

		if (len < sizeof(r))
			return -EINVAL;
		memcpy(&r, data, sizeof(r));
		out->pid = out->tgid;
		out->ppid = (pid_t)r.parent_tgid;
		copy_str(out->comm, sizeof(out->comm), r.comm, sizeof(r.comm));
		return 0;
	}
	case PM_REC_RSS: {
		struct pm_rss_rec r;

		if (len < sizeof(r))
			return -EINVAL;
		memcpy(&r, data, sizeof(r));
		out->pid = out->tgid;
		out->rss_valid = true;
		rss_from_rec(&out->rss, &r.rss);
		return 0;
	}
	case PM_REC_OOM: {
		struct pm_oom_rec r;

		if (len < sizeof(r))
			return -EINVAL;
		memcpy(&r, data, sizeof(r));
		out->pid = (pid_t)r.pid;
		out->uid = r.uid;
		out->oom_score_adj = r.oom_score_adj;
		out->total_vm = r.total_vm;
		copy_str(out->comm, sizeof(out->comm), r.comm, sizeof(r.comm));
		out->rss_valid = r.flags & PM_OOM_F_TASK;
		if (out->rss_valid)
			rss_from_rec(&out->rss, &r.rss);
		return 0;
	}
	default:
		return -EINVAL;
	}
}

/* "Key:   123 kB" -> bytes; 0 when absent. */
static int status_kb(const char *text, const char *key, uint64_t *bytes)
{
	size_t klen = strlen(key);
	const char *p = text;
	unsigned long long kb;

	while (p && *p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			if (sscanf(p + klen + 1, " %llu", &kb) != 1)
				return -EINVAL;
			*bytes = (uint64_t)kb * 1024;
			return 1;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

int procmon_parse_status(const char *text, struct procmon_rss *out)
{
	int found = 0, r;

	memset(out, 0, sizeof(*out));
	if ((r = status_kb(text, "RssAnon", &out->anon)) < 0)
		return r;
	found += r;
	if ((r = status_kb(text, "RssFile", &out->file)) < 0)
		return r;
	found += r;
	if ((r = status_kb(text, "RssShmem", &out->shmem)) < 0)
		return r;
	found += r;
	if ((r = status_kb(text, "VmSwap", &out->swap)) < 0)
		return r;
	found += r;
	return found ? 0 : -EINVAL;
}

int procmon__rss(pid_t pid, struct procmon_rss *out)
{
	char path[64], buf[4096];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	n = proc_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return n == -ENOENT ? -ESRCH : (int)n;
	return procmon_parse_status(buf, out);
}

/* Number of arguments of a tp_btf tracepoint (without the leading void *),
 * and whether the first is a pointer. -ENOENT when the kernel lacks it. */
static int tp_proto(const struct btf *btf, const char *tp, bool *first_is_ptr)
{
	const struct btf_param *params;
	const struct btf_type *t;
	char name[128];
	int id;

	snprintf(name, sizeof(name), "btf_trace_%s", tp);
	id = btf__find_by_name_kind(btf, name, BTF_KIND_TYPEDEF);
	if (id < 0)
		return -ENOENT;
	t = btf__type_by_id(btf, id);
	t = t ? btf__type_by_id(btf, t->type) : NULL; /* pointer */
	t = t && btf_is_ptr(t) ? btf__type_by_id(btf, t->type) : NULL;
	if (!t || !btf_is_func_proto(t) || btf_vlen(t) < 2)
		return -EINVAL;
	params = btf_params(t);
	if (first_is_ptr) {
		int rid = btf__resolve_type(btf, params[1].type);
		const struct btf_type *a = rid > 0 ? btf__type_by_id(btf, rid) : NULL;

		*first_is_ptr = a && btf_is_ptr(a);
	}
	return btf_vlen(t) - 1;
}

/* Chooses between the program variants for this kernel's prototypes. */
static int pick_programs(struct procmon *pm, const struct procmon_opts *opts, char *err,
			 size_t errlen)
{
	struct procmon_bpf *s = pm->skel;
	enum procmon_oom_probe probe;
	struct btf *btf;
	bool ptr = false;
	const char *env;
	int n;

	btf = btf__load_vmlinux_btf();
	if (!btf)
		return set_err(err, errlen, -errno, "procmon: kernel BTF: %s", strerror(errno));

	n = tp_proto(btf, "sched_process_exit", NULL);
	if (n < 0) {
		btf__free(btf);
		return set_err(err, errlen, n, "procmon: no sched_process_exit tracepoint in kernel BTF");
	}
	pm->exit_group_dead = n >= 2;
	bpf_program__set_autoload(pm->exit_group_dead ? s->progs.pm_exit_legacy :
				  s->progs.pm_exit_group_dead, false);

	n = opts->no_oom ? -ENOENT : tp_proto(btf, "mark_victim", &ptr);
	probe = opts->oom_probe;
	if (probe == PM_OOM_AUTO && (env = getenv("MEMDRIFT_OOM_PROBE"))) {
		probe = !strcmp(env, "tracepoint") ? PM_OOM_TP_TASK :
			!strcmp(env, "tracepoint-pid") ? PM_OOM_TP_PID : PM_OOM_AUTO;
		if (probe == PM_OOM_AUTO)
			log_warn("procmon: MEMDRIFT_OOM_PROBE=%s unknown: chosen by the kernel", env);
	}
	if (probe == PM_OOM_AUTO)
		probe = n >= 0 && ptr ? PM_OOM_TP_TASK : PM_OOM_TP_PID;
	/* usable here? (a forced variant may not be) */
	n = opts->no_oom || n < 0 || (probe == PM_OOM_TP_TASK && !ptr) ? -ENOENT : 0;
	bpf_program__set_autoload(s->progs.pm_mark_victim, !opts->no_oom && n >= 0 &&
				  probe == PM_OOM_TP_TASK);
	bpf_program__set_autoload(s->progs.pm_mark_victim_pid, !opts->no_oom && n >= 0 &&
				  probe == PM_OOM_TP_PID);
	if (n < 0) {
		if (!opts->no_oom)
			log_warn("procmon: no usable mark_victim tracepoint: OOM kills not reported");
		pm->oom_probe = "none";
	} else {
		pm->oom_task = probe != PM_OOM_TP_PID;
		pm->oom_probe = probe == PM_OOM_TP_TASK ? "tracepoint" : "tracepoint-pid";
	}

	if (!opts->no_rss && tp_proto(btf, "rss_stat", NULL) < 0) {
		log_warn("procmon: no rss_stat tracepoint: RSS records off");
		bpf_program__set_autoload(s->progs.pm_rss_stat, false);
	} else if (opts->no_rss) {
		bpf_program__set_autoload(s->progs.pm_rss_stat, false);
	}
	btf__free(btf);
	return 0;
}

int procmon_resolve_tgid(struct procmon_event *ev)
{
	char path[64], buf[2048], *p;

	if (ev->pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)ev->pid);
	if (proc_read_file(path, buf, sizeof(buf)) < 0) {
		/* already reaped: the OOM killer picks a thread-group leader
		 * (another thread only when the leader has exited) */
		ev->tgid = ev->pid;
		return -ESRCH;
	}
	p = strstr(buf, "\nTgid:");
	if (!p)
		return -ESRCH;
	ev->tgid = (pid_t)strtol(p + 6, NULL, 10);
	if (!strncmp(buf, "Name:\t", 6) && !ev->comm[0]) {
		size_t n = strcspn(buf + 6, "\n");

		if (n >= sizeof(ev->comm))
			n = sizeof(ev->comm) - 1;
		memcpy(ev->comm, buf + 6, n);
		ev->comm[n] = '\0';
	}
	return ev->tgid > 0 ? 0 : -ESRCH;
}

static int handle_record(void *ctx, void *data, size_t len)
{
	struct procmon *pm = ctx;
	const struct procmon_callbacks *cbs = pm->cbs;
	int (*cb)(void *, const struct procmon_event *) = NULL;
	struct procmon_event ev;

	if (procmon_decode(data, len, &ev)) {
		pm->decode_errors++;
		return 0;
	}
	if (ev.type == PROCMON_OOM && ev.tgid == 0)
		(void)procmon_resolve_tgid(&ev);
	if (!cbs)
		return 0;
	switch (ev.type) {
	case PROCMON_EXEC: cb = cbs->on_exec; break;
	case PROCMON_EXIT: cb = cbs->on_exit; break;
	case PROCMON_FORK: cb = cbs->on_fork; break;
	case PROCMON_RSS: cb = cbs->on_rss; break;
	case PROCMON_OOM: cb = cbs->on_oom; break;
	}
	return cb ? cb(cbs->ctx, &ev) : 0;
}

int procmon__new(const struct procmon_opts *opts, struct procmon **out, char *err, size_t errlen)
{
	static const struct procmon_opts defaults;
	struct procmon *pm;
	long page;
	int ret;

	if (!opts)
		opts = &defaults;
	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	ret = BPF_UTIL_OPEN(pm->skel, procmon, err, errlen);
	if (ret)
		goto fail;
	page = sysconf(_SC_PAGESIZE);
	pm->skel->rodata->pm_page_size = page > 0 ? (uint64_t)page : 4096;
	if (opts->rss_throttle_set) {
		pm->skel->rodata->pm_rss_min_delta_bytes = opts->rss_min_delta_bytes;
		pm->skel->rodata->pm_rss_min_delta_permille = opts->rss_min_delta_permille;
	}
	pm->skel->rodata->pm_rss_watch_all = opts->rss_watch_all;

	ret = pick_programs(pm, opts, err, errlen);
	if (ret)
		goto fail;
	ret = bpf_util_load(pm->skel->skeleton, err, errlen);
	if (ret)
		goto fail;
	pm->rb = ring_buffer__new(bpf_map__fd(pm->skel->maps.pm_events), handle_record, pm, NULL);
	if (!pm->rb) {
		ret = set_err(err, errlen, -errno, "procmon: ring buffer: %s", strerror(errno));
		goto fail;
	}
	*out = pm;
	return 0;
fail:
	procmon__free(pm);
	return ret;
}

int procmon__attach(struct procmon *pm, char *err, size_t errlen)
{
	struct bpf_program *prog;

	/* every program pick_programs left to load: its tracepoint from the
	 * section name */
	bpf_object__for_each_program(prog, pm->skel->obj) {
		struct bpf_link *l;
		int ret;

		if (!bpf_program__autoload(prog))
			continue;
		l = bpf_program__attach(prog);
		ret = l ? probe_links_add(&pm->links, l) : errno ? -errno : -EINVAL;
		if (ret) {
			probe_links_destroy(&pm->links);
			return set_err(err, errlen, ret, "procmon: attach %s: %s",
				       bpf_program__name(prog), strerror(-ret));
		}
	}
	return 0;
}

int procmon__fd(const struct procmon *pm)
{
	return ring_buffer__epoll_fd(pm->rb);
}

int procmon__poll(struct procmon *pm, int timeout_ms, const struct procmon_callbacks *cbs)
{
	int n;

	pm->cbs = cbs;
	n = ring_buffer__poll(pm->rb, timeout_ms);
	pm->cbs = NULL;
	return n;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

static pid_t status_ppid(pid_t pid)
{
	char path[64], buf[4096];
	const char *p;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (proc_read_file(path, buf, sizeof(buf)) < 0)
		return 0;
	p = strstr(buf, "\nPPid:");
	return p ? (pid_t)strtol(p + 6, NULL, 10) : 0;
}

int procmon__scan(struct procmon *pm, const struct procmon_callbacks *cbs)
{
	struct procmon_event ev;
	struct proc_exe pe;
	struct dirent *de;
	int count = 0, err;
	DIR *dir;

	(void)pm;
	dir = opendir("/proc");
	if (!dir)
		return log_errno(-errno, "procmon: open /proc: %s", strerror(errno));
	while ((de = readdir(dir))) {
		pid_t pid;

		if (!all_digits(de->d_name))
			continue;
		pid = (pid_t)strtol(de->d_name, NULL, 10);
		/* Kernel threads have no exe; a process may be gone already. */
		if (proc_exe_info(pid, &pe))
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.type = PROCMON_EXEC;
		ev.initial = true;
		ev.tgid = ev.pid = ev.old_pid = pid;
		ev.ppid = status_ppid(pid);
		copy_str(ev.comm, sizeof(ev.comm), pe.comm, sizeof(pe.comm));
		copy_str(ev.filename, sizeof(ev.filename), pe.exe, sizeof(pe.exe));
		ev.exe_dev = pe.dev;
		ev.exe_ino = pe.ino;
		count++;
		if (cbs && cbs->on_exec && (err = cbs->on_exec(cbs->ctx, &ev)) < 0) {
			closedir(dir);
			return err;
		}
	}
	closedir(dir);
	return count;
}

int procmon__watch(struct procmon *pm, pid_t tgid)
{
	uint32_t key = (uint32_t)tgid, val = 0;

	if (tgid <= 0)
		return -EINVAL;
	if (bpf_map__update_elem(pm->skel->maps.pm_watched, &key, sizeof(key), &val, sizeof(val),
				 BPF_ANY)) {
		int err = -errno;

		if (err == -E2BIG || err == -ENOSPC) {
			pm->watched_full++;
			return -ENOSPC;
		}
		return log_errno(err, "procmon: watch %d: %s", tgid, strerror(-err));
	}
	return 0;
}

int procmon__unwatch(struct procmon *pm, pid_t tgid)
{
	uint32_t key = (uint32_t)tgid;
	uint64_t mm;

	if (tgid <= 0)
		return -EINVAL;
	bpf_map__delete_elem(pm->skel->maps.pm_watched, &key, sizeof(key), 0);
	/* Drop the aggregate so its records stop (the kernel only checks the
	 * watch set when an aggregate is created). */
	if (!bpf_map__lookup_elem(pm->skel->maps.pm_tgid_mm, &key, sizeof(key), &mm, sizeof(mm), 0)) {
		struct pm_mm_state st;

		if (!bpf_map__lookup_elem(pm->skel->maps.pm_mms, &mm, sizeof(mm), &st, sizeof(st), 0) &&
		    st.tgid == key && !pm->skel->rodata->pm_rss_watch_all)
			bpf_map__delete_elem(pm->skel->maps.pm_mms, &mm, sizeof(mm), 0);
		if (!pm->skel->rodata->pm_rss_watch_all)
			bpf_map__delete_elem(pm->skel->maps.pm_tgid_mm, &key, sizeof(key), 0);
	}
	return 0;
}

static uint64_t rss_hits(const struct procmon *pm)
{
	uint64_t sum;

	return bpf_util_percpu_sum(bpf_map__fd(pm->skel->maps.pm_rss_hits), 0, &sum) ? 0 : sum;
}

void procmon__stats(const struct procmon *pm, struct procmon_stats *out)
{
	const volatile __u64 *s = pm->skel->bss->pm_stats;

	memset(out, 0, sizeof(*out));
	out->exec = s[PM_STAT_EXEC];
	out->exit = s[PM_STAT_EXIT];
	out->fork = s[PM_STAT_FORK];
	out->oom = s[PM_STAT_OOM];
	out->rss_events = rss_hits(pm);
	out->rss_records = s[PM_STAT_RSS_RECORDS];
	out->rss_unresolved = s[PM_STAT_RSS_UNRESOLVED];
	out->ringbuf_drops = s[PM_STAT_RINGBUF_DROPS];
	out->mms_full = s[PM_STAT_MMS_FULL];
	out->tgid_mm_full = s[PM_STAT_TGID_MM_FULL];
	out->watched_full = pm->watched_full;
	out->decode_errors = pm->decode_errors;
	out->exit_group_dead = pm->exit_group_dead;
	out->oom_task = pm->oom_task;
	out->oom_probe = pm->oom_probe ? pm->oom_probe : "none";
}

int procmon__map_counts(const struct procmon *pm, pid_t tgid, struct procmon_map_counts *out)
{
	const struct bpf_map *mms = pm->skel->maps.pm_mms;
	uint32_t key32, next32, *prev32 = NULL, want = (uint32_t)tgid;
	uint64_t key64, next64, *prev64 = NULL;
	struct pm_mm_state st;
	int guard;

	memset(out, 0, sizeof(*out));
	/* Bounded by the map sizes: entries may come and go while we walk. */
	for (guard = 0; guard < PM_MAX_WATCHED &&
	     !bpf_map__get_next_key(pm->skel->maps.pm_watched, prev32, &next32, sizeof(next32));
	     guard++) {
		if (!want || next32 == want)
			out->watched++;
		key32 = next32;
		prev32 = &key32;
	}
	prev32 = NULL;
	for (guard = 0; guard < PM_MAX_MMS &&
	     !bpf_map__get_next_key(pm->skel->maps.pm_tgid_mm, prev32, &next32, sizeof(next32));
	     guard++) {
		if (!want || next32 == want)
			out->tgid_mm++;
		key32 = next32;
		prev32 = &key32;
	}
	for (guard = 0; guard < PM_MAX_MMS &&
	     !bpf_map__get_next_key(mms, prev64, &next64, sizeof(next64)); guard++) {
		if (!bpf_map__lookup_elem(mms, &next64, sizeof(next64), &st, sizeof(st), 0) &&
		    (!want || st.tgid == want))
			out->mms++;
		key64 = next64;
		prev64 = &key64;
	}
	return 0;
}

void procmon__free(struct procmon *pm)
{
	if (!pm)
		return;
	probe_links_destroy(&pm->links);
	ring_buffer__free(pm->rb);
	procmon_bpf__destroy(pm->skel);
	free(pm);
}
