/* libbpf plumbing shared by every BPF module: log routing, resource limits,
 * uprobe attach by file offset with a pid filter and a BPF cookie. */
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

/* Open options for every skeleton (X__open_opts): CO-RE relocations against
 * the running kernel's /sys/kernel/btf/vmlinux only. Without them, libbpf 1.1
 * also searches kernel-module BTFs when a type is absent from vmlinux (the
 * ___old flavours of procmon's rss_stat), and iterating BTF objects needs
 * CAP_SYS_ADMIN: with only CAP_BPF + CAP_PERFMON (the unit, the DaemonSet) the
 * load failed "failed to perform CO-RE relocations: -1". Our programs use
 * core kernel types only. */
const struct bpf_object_open_opts *bpf_util_open_opts(void);

/* Attaches prog as a uprobe at file offset of the ELF at path, firing only
 * in process pid (-1: every process), with cookie readable through
 * bpf_get_attach_cookie(). The link is fd-owned: closing it (or the death of
 * memdrift) removes the probe. 0 or negative errno. */
int bpf_util_attach_uprobe(struct bpf_program *prog, pid_t pid, const char *path,
			   uint64_t offset, uint64_t cookie, struct bpf_link **link);

/* Sum over the CPUs of the __u64 at key of a per-CPU array or hash map
 * (fd). 0, or negative errno (no such key, no memory). */
int bpf_util_percpu_sum(int fd, uint32_t key, uint64_t *sum);

#endif
