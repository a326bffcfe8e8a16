// SPDX-License-Identifier: GPL-2.0
/* Process discovery and kernel memory signals, all from BTF-typed
 * tracepoints (tp_btf: no tracefs, typed task/mm pointers):
 *   pm_exec               sched_process_exec: new program (pid, exe dev/inode, filename)
 *   pm_exit_group_dead    sched_process_exit(task, group_dead): kernels with the 2025 prototype
 *   pm_exit_legacy        sched_process_exit(task): signal->live == 0 instead
 *   pm_fork               sched_process_fork: new processes only, not threads
 *   pm_rss_stat           rss_stat(mm, member): aggregated per mm, throttled
 *   pm_mark_victim        mark_victim(task, uid): 6.8+ prototype
 *   pm_mark_victim_pid    mark_victim(pid): older kernels (Debian 12's 6.1);
 *                         a record with the TID only, user space resolves
 *                         the TGID. Loads on both prototypes (CO-RE), so a
 *                         test forces it on a newer kernel.
 * daemon/discover/procmon.c reads the kernel's BTF and loads one program of each pair. */
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "procmon_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000

/* Set before load by daemon/discover/procmon.c. */
const volatile __u64 pm_page_size = 4096;
const volatile __u64 pm_rss_min_delta_bytes = PM_RSS_MIN_DELTA_BYTES;
const volatile __u32 pm_rss_min_delta_permille = PM_RSS_MIN_DELTA_PERMILLE;
/* 1: RSS for every process; 0: only for tgids in pm_watched. */
const volatile __u32 pm_rss_watch_all = 0;

__u64 pm_stats[PM_STAT_MAX] = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PM_MAX_WATCHED);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* reserved */
} pm_watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PM_MAX_MMS);
	__type(key, __u64);   /* struct mm_struct address */
	__type(value, struct pm_mm_state);
} pm_mms SEC(".maps");

/* tgid -> mm address, so exit (after exit_mm cleared task->mm) and exec
 * (after the old mm was replaced) find the aggregate to drop. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PM_MAX_MMS);
	__type(key, __u32);
	__type(value, __u64);
} pm_tgid_mm SEC(".maps");

/* rss_stat hits, counted per CPU (procmon_stats.rss_events). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pm_rss_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PM_RINGBUF_BYTES);
} pm_events SEC(".maps");

/* Before 6.2 (f1a7941243c1) the counters were atomic_long_t count[]. */
struct mm_rss_stat___old {
	atomic_long_t count[PM_RSS_NR];
} __attribute__((preserve_access_index));

struct mm_struct___old {
	struct mm_rss_stat___old rss_stat;
} __attribute__((preserve_access_index));

/* mm->owner exists only with CONFIG_MEMCG. */
struct mm_struct___memcg {
	struct task_struct *owner;
} __attribute__((preserve_access_index));

static __always_inline void stat_inc(enum pm_stat s)
{
	if (s < PM_STAT_MAX)
		__sync_fetch_and_add(&pm_stats[s], 1);
}

static __always_inline __u64 pages_to_bytes(__s64 pages)
{
	/* The approximate percpu count can dip below zero transiently. */
	return pages > 0 ? (__u64)pages * pm_page_size : 0;
}

/* Reads the four RSS counters. On 6.2+ they are percpu_counters and this
 * takes the approximate central `count` (off by at most batch x CPUs the
 * process ran on; the batch is max(32, 2 x nr_cpus) pages) instead of summing
 * every CPU's delta like the tracepoint's own printk does: rss_stat fires once
 * per page, and the throttle only needs MiB-scale accuracy. procmon__rss()
 * gives exact numbers from /proc when they matter. */
static __always_inline void read_rss(struct mm_struct *mm, struct pm_rss *out)
{
	if (bpf_core_type_exists(struct mm_rss_stat___old)) {
		struct mm_struct___old *old = (void *)mm;

		out->bytes[PM_RSS_FILE] = pages_to_bytes(BPF_CORE_READ(old, rss_stat.count[0].counter));
		out->bytes[PM_RSS_ANON] = pages_to_bytes(BPF_CORE_READ(old, rss_stat.count[1].counter));
		out->bytes[PM_RSS_SWAP] = pages_to_bytes(BPF_CORE_READ(old, rss_stat.count[2].counter));
		out->bytes[PM_RSS_SHMEM] = pages_to_bytes(BPF_CORE_READ(old, rss_stat.count[3].counter));
		return;
	}
	/* Direct (BTF-checked) loads: a helper call per field would double the
	 * cost of this per-page program. */
	out->bytes[PM_RSS_FILE] = pages_to_bytes(mm->rss_stat[0].count);
	out->bytes[PM_RSS_ANON] = pages_to_bytes(mm->rss_stat[1].count);
	out->bytes[PM_RSS_SWAP] = pages_to_bytes(mm->rss_stat[2].count);
	out->bytes[PM_RSS_SHMEM] = pages_to_bytes(mm->rss_stat[3].count);
}

/* The process an mm belongs to: mm->owner where the kernel has it, else
 * the current task when it is a user task running on that mm (page faults,
 * which is how RSS grows). 0 when unknown. */
static __always_inline __u32 mm_owner_tgid(struct mm_struct *mm)
{
	struct task_struct *cur;

	if (bpf_core_field_exists(struct mm_struct___memcg, owner)) {
		struct task_struct *owner = ((struct mm_struct___memcg *)mm)->owner;

		if (owner)
			return owner->tgid;
	}
	cur = bpf_get_current_task_btf();
	if (cur->mm == mm && !(cur->flags & PF_KTHREAD))
		return cur->tgid;
	return 0;
}

/* Drops the aggregate of tgid's mm unless it is keep_mm; copies its last
 * values to rss when given. Returns 1 when rss was filled. */
static __always_inline int forget_tgid_mm(__u32 tgid, __u64 keep_mm, struct pm_rss *rss)
{
	struct pm_mm_state *st;
	__u64 *mmp, mm;
	int filled = 0;

	mmp = bpf_map_lookup_elem(&pm_tgid_mm, &tgid);
	if (!mmp)
		return 0;
	mm = *mmp;
	if (mm == keep_mm)
		return 0;
	st = bpf_map_lookup_elem(&pm_mms, &mm);
	/* The mm may have been freed and reused by another process already. */
	if (st && st->tgid == tgid) {
		if (rss) {
			__builtin_memcpy(rss, &st->rss, sizeof(*rss));
			filled = 1;
		}
		bpf_map_delete_elem(&pm_mms, &mm);
	}
	bpf_map_delete_elem(&pm_tgid_mm, &tgid);
	return filled;
}

static __always_inline void fill_hdr(struct pm_hdr *h, __u32 type, __u32 tgid)
{
	h->type = type;
	h->tgid = tgid;
	h->ts_ns = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(pm_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	struct pm_exec_rec *e;
	struct file *exe;

	/* The pre-exec mm is gone: drop its aggregate (the new mm may already
	 * have one, created by rss_stat while the binary was being mapped). */
	forget_tgid_mm(tgid, (__u64)mm, NULL);

	e = bpf_ringbuf_reserve(&pm_events, sizeof(*e), 0);
	if (!e) {
		stat_inc(PM_STAT_RINGBUF_DROPS);
		return 0;
	}
	fill_hdr(&e->hdr, PM_REC_EXEC, tgid);
	e->pid = BPF_CORE_READ(p, pid);
	e->old_pid = old_pid;
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	/* What /proc/PID/exe shows (for a script: its interpreter). */
	exe = BPF_CORE_READ(mm, exe_file);
	if (!exe)
		exe = BPF_CORE_READ(bprm, file);
	e->exe_dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
	e->exe_ino = BPF_CORE_READ(exe, f_inode, i_ino);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename)) < 0)
		e->filename[0] = '\0';
	bpf_ringbuf_submit(e, 0);
	stat_inc(PM_STAT_EXEC);
	return 0;
}

static __always_inline int process_exited(struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct pm_exit_rec *e;
	struct pm_rss rss = {};
	int have_rss;

	bpf_map_delete_elem(&pm_watched, &tgid);
	/* Cleanup runs even when the record cannot be sent. */
	have_rss = forget_tgid_mm(tgid, 0, &rss);

	e = bpf_ringbuf_reserve(&pm_events, sizeof(*e), 0);
	if (!e) {
		stat_inc(PM_STAT_RINGBUF_DROPS);
		return 0;
	}
	fill_hdr(&e->hdr, PM_REC_EXIT, tgid);
	e->pid = BPF_CORE_READ(p, pid);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	e->flags = have_rss ? PM_EXIT_F_RSS_VALID : 0;
	e->pad = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	__builtin_memcpy(&e->rss, &rss, sizeof(rss));
	bpf_ringbuf_submit(e, 0);
	stat_inc(PM_STAT_EXIT);
	return 0;
}

/* 2025+ prototype: group_dead is true exactly once per thread group (it is
 * the result of atomic_dec_and_test(&signal->live)). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(pm_exit_group_dead, struct task_struct *p, bool group_dead)
{
	if (!group_dead)
		return 0;
	return process_exited(p);
}

/* Older prototype: do_exit() decremented signal->live before the
 * tracepoint, so 0 means this was the last thread. Two threads exiting at
 * the same instant can both see 0; the daemon ignores a second exit of a
 * tgid it already finalized. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(pm_exit_legacy, struct task_struct *p)
{
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	return process_exited(p);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(pm_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 tgid = BPF_CORE_READ(child, tgid);
	struct pm_fork_rec *e;

	if (BPF_CORE_READ(child, pid) != tgid)
		return 0; /* a new thread, not a new process */
	e = bpf_ringbuf_reserve(&pm_events, sizeof(*e), 0);
	if (!e) {
		stat_inc(PM_STAT_RINGBUF_DROPS);
		return 0;
	}
	fill_hdr(&e->hdr, PM_REC_FORK, tgid);
	e->parent_tgid = BPF_CORE_READ(parent, tgid);
	e->pad = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, child, comm);
	bpf_ringbuf_submit(e, 0);
	stat_inc(PM_STAT_FORK);
	return 0;
}

/* Fires on every counter change (one per page faulted in): nothing here
 * but map lookups and four loads until the throttle says a record is due. */
SEC("tp_btf/rss_stat")
int BPF_PROG(pm_rss_stat, struct mm_struct *mm, int member)
{
	__u64 key = (__u64)mm, total, *hits;
	struct pm_mm_state *st;
	struct pm_rss_rec *e;
	__u32 zero = 0;

	/* Per-CPU: a shared atomic here would bounce a cache line per page. */
	hits = bpf_map_lookup_elem(&pm_rss_hits, &zero);
	if (hits)
		*hits += 1;
	/* mm_users == 0: exit_mmap() is unmapping a dead mm page by page; the
	 * exit record carries the last values instead of a stream to zero. */
	if (mm->mm_users.counter == 0)
		return 0;

	st = bpf_map_lookup_elem(&pm_mms, &key);
	if (!st) {
		struct pm_mm_state init = {};
		__u32 tgid = mm_owner_tgid(mm);

		if (!tgid) {
			stat_inc(PM_STAT_RSS_UNRESOLVED);
			return 0;
		}
		if (!pm_rss_watch_all && !bpf_map_lookup_elem(&pm_watched, &tgid))
			return 0;
		init.tgid = tgid;
		/* -EEXIST when another CPU created it first: fine. */
		bpf_map_update_elem(&pm_mms, &key, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&pm_mms, &key);
		if (!st) {
			stat_inc(PM_STAT_MMS_FULL);
			return 0;
		}
		if (bpf_map_update_elem(&pm_tgid_mm, &tgid, &key, BPF_ANY))
			stat_inc(PM_STAT_TGID_MM_FULL);
	}

	read_rss(mm, &st->rss);
	total = st->rss.bytes[PM_RSS_FILE] + st->rss.bytes[PM_RSS_ANON] + st->rss.bytes[PM_RSS_SHMEM];
	if (!pm_rss_should_emit(st->last_emitted_total, total, pm_rss_min_delta_bytes,
				pm_rss_min_delta_permille))
		return 0;

	e = bpf_ringbuf_reserve(&pm_events, sizeof(*e), 0);
	if (!e) {
		/* last_emitted_total stays: the next change retries. */
		stat_inc(PM_STAT_RINGBUF_DROPS);
		return 0;
	}
	/* Racing CPUs may both emit one step; harmless, and cmpxchg would need
	 * -mcpu=v3. */
	st->last_emitted_total = total;
	fill_hdr(&e->hdr, PM_REC_RSS, st->tgid);
	__builtin_memcpy(&e->rss, &st->rss, sizeof(e->rss));
	bpf_ringbuf_submit(e, 0);
	stat_inc(PM_STAT_RSS_RECORDS);
	return 0;
}

static __always_inline struct pm_oom_rec *oom_reserve(void)
{
	struct pm_oom_rec *e = bpf_ringbuf_reserve(&pm_events, sizeof(*e), 0);

	if (!e) {
		stat_inc(PM_STAT_RINGBUF_DROPS);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	return e;
}

static __always_inline int emit_oom_task(struct task_struct *p, uid_t uid)
{
	struct mm_struct *mm = p->mm; /* a BTF pointer, as read_rss() needs */
	struct pm_oom_rec *e = oom_reserve();

	if (!e)
		return 0;
	fill_hdr(&e->hdr, PM_REC_OOM, BPF_CORE_READ(p, tgid));
	e->pid = BPF_CORE_READ(p, pid);
	e->uid = uid;
	e->flags = PM_OOM_F_TASK;
	e->oom_score_adj = BPF_CORE_READ(p, signal, oom_score_adj);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	if (mm) {
		e->total_vm = pages_to_bytes(mm->total_vm);
		read_rss(mm, &e->rss);
	}
	bpf_ringbuf_submit(e, 0);
	stat_inc(PM_STAT_OOM);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(pm_mark_victim, struct task_struct *p, uid_t uid)
{
	return emit_oom_task(p, uid);
}

/* Before ≈6.8 the tracepoint carried only the TID; user space resolves the
 * rest from /proc while the victim is still dying. The 6.8 change also gave
 * the event record its uid field: that tells which argument ctx[0] is. */
SEC("tp_btf/mark_victim")
int pm_mark_victim_pid(u64 *ctx)
{
	struct pm_oom_rec *e;
	int pid;

	if (bpf_core_field_exists(struct trace_event_raw_mark_victim, uid))
		pid = BPF_CORE_READ((struct task_struct *)ctx[0], pid);
	else
		pid = (int)ctx[0];
	e = oom_reserve();
	if (!e)
		return 0;
	fill_hdr(&e->hdr, PM_REC_OOM, 0);
	e->pid = pid;
	bpf_ringbuf_submit(e, 0);
	stat_inc(PM_STAT_OOM);
	return 0;
}
