/* BPF <-> user ABI for process discovery and kernel memory signals
 * (bpf/procmon.bpf.c, daemon/discover/procmon.c): fixed-width types, enums and limits
 * only. Every ring-buffer record starts with struct pm_hdr. */
#ifndef MEMDRIFT_PROCMON_H
#define MEMDRIFT_PROCMON_H

#ifndef __VMLINUX_H__
#include <linux/types.h> /* user space; BPF gets the types from vmlinux.h */
#endif

/* Bounds: watched processes, per-mm RSS aggregates, ring buffer. */
#define PM_MAX_WATCHED 4096
#define PM_MAX_MMS 8192
#define PM_RINGBUF_BYTES (512 * 1024)
#define PM_COMM_LEN 16
#define PM_FILENAME_LEN 256

/* Default RSS throttle: a record when RSS moved by at least 1 MiB and at
 * least 1% (10 permille) of the last emitted value. */
#define PM_RSS_MIN_DELTA_BYTES (1024 * 1024)
#define PM_RSS_MIN_DELTA_PERMILLE 10

/* The kernel's mm counters (enum MM_*PAGES, stable since 2.6.34). */
enum pm_rss_member {
	PM_RSS_FILE = 0,
	PM_RSS_ANON = 1,
	PM_RSS_SWAP = 2,
	PM_RSS_SHMEM = 3,
	PM_RSS_NR = 4,
};

enum pm_record_type {
	PM_REC_EXEC = 1,
	PM_REC_EXIT = 2,
	PM_REC_FORK = 3,
	PM_REC_RSS = 4,
	PM_REC_OOM = 5,
};

struct pm_hdr {
	__u32 type;   /* enum pm_record_type */
	__u32 tgid;
	__u64 ts_ns;  /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
};

/* RSS counters in bytes (the kernel counts pages; BPF multiplies). */
struct pm_rss {
	__u64 bytes[PM_RSS_NR]; /* indexed by enum pm_rss_member */
};

struct pm_exec_rec {
	struct pm_hdr hdr;
	__u32 pid;       /* thread that exec'd (== tgid after de_thread) */
	__u32 old_pid;   /* its TID before exec (a non-leader thread may exec) */
	__u32 ppid;      /* real parent's tgid */
	__u32 exe_dev;   /* kernel-internal dev_t of the executable (MAJOR<<20|MINOR) */
	__u64 exe_ino;
	char comm[PM_COMM_LEN];
	char filename[PM_FILENAME_LEN]; /* as passed to execve (may be relative) */
};

#define PM_EXIT_F_RSS_VALID 0x1u /* rss holds the last tracked values */

struct pm_exit_rec {
	struct pm_hdr hdr;
	__u32 pid;        /* last thread to exit */
	__u32 exit_code;  /* wait status: (code << 8) | signal */
	__u32 flags;      /* PM_EXIT_F_* */
	__u32 pad;
	char comm[PM_COMM_LEN];
	struct pm_rss rss;
};

struct pm_fork_rec {
	struct pm_hdr hdr; /* tgid: the new process */
	__u32 parent_tgid;
	__u32 pad;
	char comm[PM_COMM_LEN];
};

struct pm_rss_rec {
	struct pm_hdr hdr;
	struct pm_rss rss;
};

#define PM_OOM_F_TASK 0x1u /* fields beyond pid came from the task (6.8+ prototype) */

struct pm_oom_rec {
	struct pm_hdr hdr; /* tgid: 0 when only the TID is known (old kernels) */
	__u32 pid;         /* TID chosen by the OOM killer */
	__u32 uid;
	__u32 flags;       /* PM_OOM_F_* */
	__s32 oom_score_adj;
	__u64 total_vm;    /* bytes */
	char comm[PM_COMM_LEN];
	struct pm_rss rss;
};

/* Per mm aggregate (key: the mm_struct address). */
struct pm_mm_state {
	__u32 tgid;
	__u32 pad;
	__u64 last_emitted_total; /* file + anon + shmem bytes at the last record */
	struct pm_rss rss;        /* latest values seen */
};

/* The RSS throttle, shared so the unit tests pin the exact math the kernel
 * runs: a record is due when RSS (file + anon + shmem) moved by at least
 * min_bytes AND by at least permille/1000 of the last emitted value. Both
 * bounds must hold so a small process does not emit every few pages (1% of
 * 2 MiB) and a huge one does not emit every MiB; either bound is disabled by
 * setting it to 0. No change is never due. */
static inline int pm_rss_should_emit(__u64 last, __u64 now, __u64 min_bytes, __u32 permille)
{
	__u64 delta = now > last ? now - last : last - now;

	if (delta == 0 || delta < min_bytes)
		return 0;
	/* last < 2^54 in practice (16 PiB), so the product cannot overflow. */
	if (permille && delta * 1000 < last * permille)
		return 0;
	return 1;
}

/* Indexes of the .bss counters array (pm_stats[]). */
enum pm_stat {
	PM_STAT_EXEC,            /* exec records sent */
	PM_STAT_EXIT,            /* process-exit records sent */
	PM_STAT_FORK,            /* fork records sent (new processes, not threads) */
	PM_STAT_RSS_RECORDS,     /* RSS records sent after throttling */
	PM_STAT_RSS_UNRESOLVED,  /* rss_stat for an mm whose owner is unknown */
	PM_STAT_OOM,             /* mark_victim records sent */
	PM_STAT_RINGBUF_DROPS,   /* a record lost: ring buffer full */
	PM_STAT_MMS_FULL,        /* per-mm aggregate not created: map full */
	PM_STAT_TGID_MM_FULL,    /* tgid -> mm link not created: map full */
	PM_STAT_MAX,
};

#endif
