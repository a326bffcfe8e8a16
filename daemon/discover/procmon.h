/* Process discovery and kernel memory signals (bpf/procmon.bpf.c): exec,
 * process exit, fork, in-kernel-throttled RSS steps and OOM kills, plus a
 * /proc scan for the processes that were already running.
 *
 *   procmon__new(&opts, &pm, err, errlen)  open, configure, check, load (no events yet)
 *   procmon__attach(pm, err, errlen)       tracepoints on
 *   procmon__scan(pm, &cbs)          PROCMON_EXEC with initial=true per running process
 *   epoll on procmon__fd(pm); procmon__poll(pm, 0, &cbs) when readable
 *   procmon__watch(pm, tgid)         RSS records for this process (unless rss_watch_all)
 *   procmon__free(pm)
 *
 * Attach before the scan so no process falls in between; a process may then
 * be announced twice (scan and exec) and its exit may arrive for a pid the
 * caller never saw: key state by pid and tolerate both. */
#ifndef MEMDRIFT_PROCMON_MODULE_H
#define MEMDRIFT_PROCMON_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* include/procmon_abi.h (the BPF ABI) shares this file's name; -I order would
 * pick either, so name it by path. */
#include "procmon_abi.h"

struct procmon;

struct procmon_opts {
	/* RSS throttle (see pm_rss_should_emit). Unless rss_throttle_set,
	 * the defaults apply (1 MiB and 1%); when set, both values are taken
	 * as they are and 0 disables that bound. */
	bool rss_throttle_set;
	uint64_t rss_min_delta_bytes;
	uint32_t rss_min_delta_permille;
	bool rss_watch_all; /* RSS for every process, not only watched tgids */
	bool no_rss;        /* do not attach rss_stat at all */
	bool no_oom;        /* do not attach mark_victim */
	/* Which OOM program: PM_OOM_AUTO picks by the kernel's mark_victim
	 * prototype (task, uid: 6.8+; else the pid-only one); the others force
	 * one (a test forces the pre-6.8 one on a newer kernel). The
	 * environment's MEMDRIFT_OOM_PROBE=tracepoint|tracepoint-pid overrides
	 * AUTO. */
	enum procmon_oom_probe {
		PM_OOM_AUTO, PM_OOM_TP_TASK, PM_OOM_TP_PID,
	} oom_probe;
};

enum procmon_event_type {
	PROCMON_EXEC = PM_REC_EXEC,
	PROCMON_EXIT = PM_REC_EXIT,
	PROCMON_FORK = PM_REC_FORK,
	PROCMON_RSS = PM_REC_RSS,
	PROCMON_OOM = PM_REC_OOM,
};

struct procmon_rss {
	uint64_t file, anon, swap, shmem; /* bytes */
};

/* One decoded record; which fields are set depends on type. */
struct procmon_event {
	enum procmon_event_type type;
	pid_t tgid;
	pid_t pid;       /* exec: thread (== tgid); exit: last thread; oom: chosen TID */
	pid_t ppid;      /* exec: parent; fork: parent */
	pid_t old_pid;   /* exec: TID before exec */
	uint64_t ts_ns;  /* CLOCK_MONOTONIC; 0 for scanned processes */
	bool initial;    /* exec: found by procmon__scan, not by the tracepoint */
	char comm[PM_COMM_LEN + 1];
	char filename[PM_FILENAME_LEN + 1]; /* exec: execve path, or /proc/PID/exe when scanned */
	dev_t exe_dev;   /* exec: st_dev of the executable, as stat() reports it */
	ino_t exe_ino;
	int exit_code;   /* exit: wait status */
	bool rss_valid;  /* rss is set (rss: always; exit: when tracked; oom: with a task) */
	struct procmon_rss rss;
	uint64_t total_vm; /* oom: bytes */
	uint32_t uid;      /* oom */
	int oom_score_adj; /* oom */
};

/* Each callback is optional; returning a negative errno stops the poll and
 * procmon__poll returns it. */
struct procmon_callbacks {
	int (*on_exec)(void *ctx, const struct procmon_event *ev);
	int (*on_exit)(void *ctx, const struct procmon_event *ev);
	int (*on_fork)(void *ctx, const struct procmon_event *ev);
	int (*on_rss)(void *ctx, const struct procmon_event *ev);
	int (*on_oom)(void *ctx, const struct procmon_event *ev);
	void *ctx;
};

struct procmon_stats {
	uint64_t exec, exit, fork, oom;
	uint64_t rss_events;      /* rss_stat hits seen in the kernel */
	uint64_t rss_records;     /* RSS records after throttling */
	uint64_t rss_unresolved;  /* rss_stat for an mm with no known owner */
	uint64_t ringbuf_drops;   /* records lost: ring buffer full */
	uint64_t mms_full;        /* per-mm aggregate not created: map full */
	uint64_t tgid_mm_full;
	uint64_t watched_full;    /* procmon__watch refused: map full */
	uint64_t decode_errors;   /* malformed records (a bug if ever non-zero) */
	bool exit_group_dead;     /* kernel has sched_process_exit(task, group_dead) */
	bool oom_task;            /* OOM records carry the task (not the pid-only variant) */
	const char *oom_probe;    /* "tracepoint", "tracepoint-pid", "none" */
};

/* An OOM record of the pid-only variant names the chosen thread: its TGID
 * (and comm) from /proc/TID/status while the victim is dying. 0, or -ESRCH
 * when it is already reaped (then tgid = pid: the OOM killer chooses
 * thread-group leaders). */
int procmon_resolve_tgid(struct procmon_event *ev);

/* NULL opts = defaults. 0 or negative errno with err (bpf_util.h's shape). */
int procmon__new(const struct procmon_opts *opts, struct procmon **out, char *err, size_t errlen);
int procmon__attach(struct procmon *pm, char *err, size_t errlen);
/* Ring buffer epoll fd: readable when records are waiting. */
int procmon__fd(const struct procmon *pm);
/* Consumes records, up to timeout_ms (0: only what is there). Returns the
 * number handled or a negative errno (a callback's, or -EINTR). */
int procmon__poll(struct procmon *pm, int timeout_ms, const struct procmon_callbacks *cbs);
/* Calls on_exec (initial=true, ts_ns=0) for every running user process.
 * Returns how many were reported, or a callback's negative errno. */
int procmon__scan(struct procmon *pm, const struct procmon_callbacks *cbs);
/* Starts or stops RSS records for a process. -ENOSPC when the watch map is full. */
int procmon__watch(struct procmon *pm, pid_t tgid);
int procmon__unwatch(struct procmon *pm, pid_t tgid);
/* Exact RSS now, from /proc/PID/status. -ESRCH when gone. */
int procmon__rss(pid_t pid, struct procmon_rss *out);
void procmon__stats(const struct procmon *pm, struct procmon_stats *out);

/* Kernel map entries belonging to tgid (0: all), found by walking the maps:
 * for tests and debugging, not for a hot path. */
struct procmon_map_counts {
	uint32_t watched, mms, tgid_mm;
};
int procmon__map_counts(const struct procmon *pm, pid_t tgid, struct procmon_map_counts *out);
void procmon__free(struct procmon *pm);

/* Pure helpers (unit-tested). */
/* Decodes one ring-buffer record. 0, or -EINVAL for a short/unknown record. */
int procmon_decode(const void *data, size_t len, struct procmon_event *out);
/* Kernel-internal dev_t (MAJOR << 20 | MINOR) -> user dev_t. */
dev_t procmon_kernel_dev(uint32_t kdev);
/* RssAnon/RssFile/RssShmem/VmSwap lines of /proc/PID/status. 0 or -EINVAL
 * when none of them is there (kernel thread). */
int procmon_parse_status(const char *text, struct procmon_rss *out);

#endif
