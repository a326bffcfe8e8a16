/* libbpf plumbing shared by every BPF module: log routing, resource limits,
 * uprobe attach by file offset with a pid filter and a BPF cookie. */
#ifndef MEMDRIFT_BPF_UTIL_H
#define MEMDRIFT_BPF_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bpf_program;
struct bpf_link;
struct bpf_object_open_opts;

/* Once per process: libbpf messages into our log, RLIMIT_MEMLOCK lifted for
 * kernels that still charge BPF memory to it. Idempotent. */
void bpf_util_init(void);

/* 0 when this host can run memdrift's BPF (BTF present, privileges), else
 * a negative errno with a one-line reason in err. */
int bpf_util_check(char *err, size_t errlen);

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
