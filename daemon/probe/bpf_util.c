/* libbpf plumbing: see bpf_util.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/resource.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "base/log.h"
#include "probe/bpf_util.h"

/* libbpf's warnings are ours; its info/debug chatter only at debug level. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum log_level ours = level == LIBBPF_WARN ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG;
	char line[512];
	size_t n;

	if (ours > log_threshold)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_msg(ours, "libbpf: %s", line);
	return 0;
}

void bpf_util_init(void)
{
	static bool done;
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};

	if (done)
		return;
	done = true;
	libbpf_set_print(libbpf_print);
	/* Kernels >= 5.11 account BPF memory to the cgroup; older ones need this. */
	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		log_debug("setrlimit(RLIMIT_MEMLOCK): %s", strerror(errno));
}

const struct bpf_object_open_opts *bpf_util_open_opts(void)
{
	static struct bpf_object_open_opts opts;

	bpf_util_init(); /* before the first open: libbpf's messages are ours */
	if (!opts.sz) {
		opts.sz = sizeof(opts);
		opts.btf_custom_path = "/sys/kernel/btf/vmlinux";
	}
	return &opts;
}

/* What memdrift's BPF side needs, and why (README "Privileges"). */
static const struct {
	cap_value_t cap;
	const char *name;
} bpf_caps[] = {
	{ CAP_BPF, "CAP_BPF" },                 /* load programs, create maps */
	{ CAP_PERFMON, "CAP_PERFMON" },         /* uprobes, tracepoints, reading memory in BPF */
	{ CAP_SYS_PTRACE, "CAP_SYS_PTRACE" },   /* /proc/PID/mem, exe, maps of any process */
	{ CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH" }, /* tracefs ids, binaries under /proc/PID/root */
};

int bpf_util_caps_missing(char *names, size_t len)
{
	cap_t caps = cap_get_proc();
	size_t pos = 0;
	int missing = 0;

	if (names && len)
		names[0] = '\0';
	if (!caps)
		return -errno;
	for (size_t i = 0; i < sizeof(bpf_caps) / sizeof(bpf_caps[0]); i++) {
		cap_flag_value_t v = CAP_CLEAR;

		/* a kernel older than the capability (CAP_BPF, CAP_PERFMON: 5.8)
		 * checks CAP_SYS_ADMIN instead */
		if (!CAP_IS_SUPPORTED(bpf_caps[i].cap))
			cap_get_flag(caps, CAP_SYS_ADMIN, CAP_EFFECTIVE, &v);
		else
			cap_get_flag(caps, bpf_caps[i].cap, CAP_EFFECTIVE, &v);
		if (v == CAP_SET)
			continue;
		missing++;
		if (names && pos < len)
			pos += (size_t)snprintf(names + pos, len - pos, "%s%s", pos ? ", " : "",
						bpf_caps[i].name);
	}
	cap_free(caps);
	return missing;
}

int bpf_util_check(char *err, size_t errlen)
{
	char names[128];
	int missing;

	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return set_err(err, errlen, -ENOTSUP,
			       "BPF unavailable: kernel has no BTF (/sys/kernel/btf/vmlinux)");
	missing = bpf_util_caps_missing(names, sizeof(names));
	if (missing < 0)
		return set_err(err, errlen, missing, "cannot read capabilities: %s", strerror(-missing));
	if (missing)
		return set_err(err, errlen, -EPERM,
			       "BPF unavailable: missing %s (run as root, or grant them as file or "
			       "ambient capabilities)", names);
	return 0;
}

bool bpf_util_has_cap_sys_admin(void)
{
	cap_t caps = cap_get_proc();
	cap_flag_value_t v = CAP_CLEAR;

	if (caps) {
		cap_get_flag(caps, CAP_SYS_ADMIN, CAP_EFFECTIVE, &v);
		cap_free(caps);
	}
	return v == CAP_SET;
}

int bpf_util_drop_caps(bool keep_sys_admin)
{
	cap_value_t keep[sizeof(bpf_caps) / sizeof(bpf_caps[0]) + 1];
	int nkeep = 0, ret = 0;
	cap_t caps;

	for (size_t i = 0; i < sizeof(bpf_caps) / sizeof(bpf_caps[0]); i++)
		keep[nkeep++] = CAP_IS_SUPPORTED(bpf_caps[i].cap) ? bpf_caps[i].cap : CAP_SYS_ADMIN;
	if (keep_sys_admin && bpf_util_has_cap_sys_admin())
		keep[nkeep++] = CAP_SYS_ADMIN;
	/* the bounding set first, while CAP_SETPCAP is still there (if it is) */
	for (cap_value_t c = 0; c <= CAP_LAST_CAP && CAP_IS_SUPPORTED(c); c++) {
		bool kept = false;

		for (int i = 0; i < nkeep; i++)
			kept |= keep[i] == c;
		if (!kept)
			cap_drop_bound(c);
	}
	caps = cap_init(); /* all clear */
	if (!caps)
		return -errno;
	if (cap_set_flag(caps, CAP_EFFECTIVE, nkeep, keep, CAP_SET) ||
	    cap_set_flag(caps, CAP_PERMITTED, nkeep, keep, CAP_SET) || cap_set_proc(caps))
		ret = -errno;
	cap_free(caps);
	/* nothing exec'd later inherits or regains anything */
	if (ret == 0 && CAP_AMBIENT_SUPPORTED())
		cap_reset_ambient();
	return ret;
}

int bpf_util_attach_uprobe(struct bpf_program *prog, pid_t pid, const char *path,
			   uint64_t offset, uint64_t cookie, struct bpf_link **link)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = cookie, .retprobe = false);
	struct bpf_link *l;

	l = bpf_program__attach_uprobe_opts(prog, pid, path, (size_t)offset, &opts);
	if (!l) {
		int err = -errno;

		return err ? err : -EINVAL;
	}
	*link = l;
	return 0;
}

int bpf_util_open_failed(const char *name, char *err, size_t errlen)
{
	int ret = errno ? -errno : -EINVAL;

	return set_err(err, errlen, ret, "open %s BPF object: %s", name, strerror(-ret));
}

int bpf_util_load(struct bpf_object_skeleton *skel, char *err, size_t errlen)
{
	int ret = bpf_util_check(err, errlen);

	if (ret)
		return ret;
	ret = bpf_object__load_skeleton(skel);
	if (ret) {
		ret = ret < 0 ? ret : -EINVAL;
		return set_err(err, errlen, ret, "BPF unavailable: loading %s: %s", skel->name,
			       strerror(-ret));
	}
	return 0;
}

int probe_links_add(struct probe_links *pl, struct bpf_link *link)
{
	if (!link)
		return -EINVAL;
	if (pl->n == pl->cap) {
		size_t cap = pl->cap ? pl->cap * 2 : 8;
		struct bpf_link **l = realloc(pl->links, cap * sizeof(*l));

		if (!l) {
			bpf_link__destroy(link);
			return -ENOMEM;
		}
		pl->links = l;
		pl->cap = cap;
	}
	pl->links[pl->n++] = link;
	return 0;
}

int probe_links_uprobe(struct probe_links *pl, struct bpf_program *prog, pid_t pid,
		       const char *path, uint64_t offset, uint64_t cookie)
{
	struct bpf_link *l;
	int ret = bpf_util_attach_uprobe(prog, pid, path, offset, cookie, &l);

	return ret ? ret : probe_links_add(pl, l);
}

int probe_links_uretprobe_c(struct probe_links *pl, struct bpf_program *prog, pid_t pid,
			    const char *path, uint64_t offset, uint64_t cookie)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = cookie, .retprobe = true);
	struct bpf_link *l = bpf_program__attach_uprobe_opts(prog, pid, path, (size_t)offset, &opts);

	if (!l)
		return errno ? -errno : -EINVAL;
	return probe_links_add(pl, l);
}

void probe_links_destroy(struct probe_links *pl)
{
	for (size_t i = 0; i < pl->n; i++)
		bpf_link__destroy(pl->links[i]);
	free(pl->links);
	*pl = (struct probe_links){ 0 };
}

int bpf_util_percpu_sum(int fd, uint32_t key, uint64_t *sum)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *per;
	int ret = 0;

	*sum = 0;
	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	per = calloc((size_t)ncpu, sizeof(*per));
	if (!per)
		return -ENOMEM;
	if (bpf_map_lookup_elem(fd, &key, per))
		ret = -errno;
	for (int c = 0; !ret && c < ncpu; c++)
		*sum += per[c];
	free(per);
	return ret;
}
