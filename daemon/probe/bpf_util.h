/* libbpf plumbing shared by every BPF module: log routing, resource limits,
 * the checked load, and the links a module holds (probe_links: uprobes by
 * file offset with a pid filter and a BPF cookie).
 *
 * Every BPF module (procmon, goroutine_trace, heap_trace, jni_trace) has
 * one shape:
 *   x__new(opts, &x, err, errlen)   open (bpf_util_open_opts), configure
 *                                   .rodata and map sizes, load
 *                                   (bpf_util_load: the bpf_util_check
 *                                   first); no probes yet
 *   x__attach(x, target..., err, errlen)  probes into a probe_links
 *   x__poll(x, ...)                 consume what the kernel has for us
 *   x__stats(x, &st)                counters
 *   x__free(x)                      probe_links_destroy, then the object
 * 0 or a negative errno with a one-line reason in err throughout. */
#ifndef MEMDRIFT_BPF_UTIL_H
#define MEMDRIFT_BPF_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bpf_program;
struct bpf_link;
struct bpf_object_open_opts;

/* Once per process: libbpf messages into our log, RLIMIT_MEMLOCK lifted for
 * kernels that still charge BPF memory to it. Idempotent. */
void bpf_util_init(void);

/* Options for every skeleton's open: without CAP_SYS_ADMIN, the kernel
 * refuses to list module BTFs (BPF_BTF_GET_NEXT_ID) and libbpf 1.1 then
 * fails CO-RE relocation; memdrift's programs only need vmlinux types, so
 * vmlinux's BTF is given explicitly and modules are not searched. */
const struct bpf_object_open_opts *bpf_util_open_opts(void);

/* 0 when this host can run memdrift's BPF (BTF present, and the effective
 * capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH,
 * or CAP_SYS_ADMIN on kernels older than CAP_BPF), else a negative errno
 * with a one-line reason naming what is missing in err. Root is not needed. */
int bpf_util_check(char *err, size_t errlen);
/* How many of those are missing (names, comma-separated, into names), or a
 * negative errno. */
int bpf_util_caps_missing(char *names, size_t len);
/* Keeps only those four in the effective and permitted sets (everything
 * else, e.g. CAP_SYS_RESOURCE after the rlimit, CAP_NET_BIND_SERVICE, is
 * gone for good), plus CAP_SYS_ADMIN when keep_sys_admin and it is there:
 * kernels such as 6.18 refuse uprobe perf events without it (measured:
 * CAP_PERFMON + CAP_SYS_PTRACE get EACCES), so the daemon's uprobes (JNI
 * tracking, trace.on_drift) need it. Clears the ambient set. 0 or negative
 * errno. */
int bpf_util_drop_caps(bool keep_sys_admin);
bool bpf_util_has_cap_sys_admin(void);

/* The open step of x__new: skel = NAME_bpf__open_opts(bpf_util_open_opts())
 * for the skeleton NAME.skel.h; 0, or a negative errno with err. */
#define BPF_UTIL_OPEN(skel, name, err, errlen)                                  \
	(((skel) = name##_bpf__open_opts(bpf_util_open_opts())) ? 0 :           \
	 bpf_util_open_failed(#name, err, errlen))
int bpf_util_open_failed(const char *name, char *err, size_t errlen);
/* The load step of x__new: bpf_util_check (a one-line "BPF unavailable"
 * reason when this host cannot), then the load of skel (X->skeleton of any
 * generated skeleton). 0 or negative errno with err. */
struct bpf_object_skeleton;
int bpf_util_load(struct bpf_object_skeleton *skel, char *err, size_t errlen);

/* Attaches prog as a uprobe at file offset of the ELF at path, firing only
 * in process pid (-1: every process), with cookie readable through
 * bpf_get_attach_cookie(). The link is fd-owned: closing it (or the death of
 * memdrift) removes the probe. 0 or negative errno. */
int bpf_util_attach_uprobe(struct bpf_program *prog, pid_t pid, const char *path,
			   uint64_t offset, uint64_t cookie, struct bpf_link **link);

/* The links one module (or one traced process of it) holds; zero-initialised
 * is empty. Destroying it removes every probe it holds. */
struct probe_links {
	struct bpf_link **links;
	size_t n, cap;
};

/* Takes link (any kind: tracepoint, uprobe, ...). 0, or -ENOMEM (link
 * destroyed then), -EINVAL for NULL. */
int probe_links_add(struct probe_links *pl, struct bpf_link *link);
/* An entry uprobe (bpf_util_attach_uprobe) kept in pl. The only probe kind
 * memdrift puts on Go code: never a uretprobe there (it rewrites the return
 * address on a stack the Go runtime moves and unwinds). 0 or negative errno. */
int probe_links_uprobe(struct probe_links *pl, struct bpf_program *prog, pid_t pid,
		       const char *path, uint64_t offset, uint64_t cookie);
/* A return probe on a C function (libjvm's jni_New*GlobalRef: the value is
 * the return value; libc's allocators), kept in pl. Not for Go functions
 * (see above). */
int probe_links_uretprobe_c(struct probe_links *pl, struct bpf_program *prog, pid_t pid,
			    const char *path, uint64_t offset, uint64_t cookie);
/* Destroys every link (probes off) and leaves pl empty, reusable. */
void probe_links_destroy(struct probe_links *pl);

/* Sum over the CPUs of the __u64 at key of a per-CPU array or hash map
 * (fd). 0, or negative errno (no such key, no memory). */
int bpf_util_percpu_sum(int fd, uint32_t key, uint64_t *sum);

#endif
