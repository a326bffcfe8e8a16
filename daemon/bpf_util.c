/* libbpf plumbing: see bpf_util.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf_util.h"
#include "log.h"

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

int bpf_util_check(char *err, size_t errlen)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return set_err(err, errlen, -ENOTSUP,
			       "BPF unavailable: kernel has no BTF (/sys/kernel/btf/vmlinux)");
	if (geteuid() != 0)
		return set_err(err, errlen, -EPERM,
			       "BPF unavailable: needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE)");
	return 0;
}

const struct bpf_object_open_opts *bpf_util_open_opts(void)
{
	static const struct bpf_object_open_opts opts = {
		.sz = sizeof(opts),
		.btf_custom_path = "/sys/kernel/btf/vmlinux",
	};

	return &opts;
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
