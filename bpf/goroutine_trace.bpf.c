// SPDX-License-Identifier: GPL-2.0
/* Goroutine births and deaths by creation site, counted in the kernel.
 * Probes (attached by daemon/trace/goroutine_trace.c at offsets chosen by
 * daemon/probe/probe_place.c; never a uretprobe on Go code):
 *   gr_birth_*  after runtime.newproc1 returned, where a register (the
 *               program's suffix) still holds the new g: normally the emulated
 *               instruction before `call runqput` in newproc.func1, else
 *               each RET of newproc1 (RAX)
 *   gr_death    runtime.goexit1 (at its stack-check jbe): R14 = exiting g
 * The BPF cookie carries the binary's config index and the stack-check flag,
 * so one loaded object serves every binary and Go version. */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "goroutine_trace_abi.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GR_MAX_CONFIGS);
	__type(key, __u32);
	__type(value, struct gr_config);
} gr_configs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GR_MAX_TGIDS);
	__type(key, __u32);
	__type(value, struct gr_tgid_state);
} gr_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GR_MAX_SITES);
	__type(key, struct gr_site_key);
	__type(value, struct gr_site_counts);
} gr_sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, GR_RINGBUF_BYTES);
} gr_events SEC(".maps");

__u64 gr_stats[GR_STAT_MAX] = {};

static __always_inline void stat_inc(enum gr_stat s)
{
	if (s < GR_STAT_MAX)
		__sync_fetch_and_add(&gr_stats[s], 1);
}

/* A hit that is the morestack detour, not a call (go_stack_check.h). */
static __always_inline int morestack_branch_taken(struct pt_regs *ctx, __u64 cookie)
{
	if (!go_morestack_taken(ctx->flags, cookie))
		return 0;
	stat_inc(GR_STAT_MORESTACK_SKIPS);
	return 1;
}

static __always_inline int read_g_field(__u64 g, __s32 off, __u64 *out)
{
	if (off < 0) {
		*out = 0;
		return 0;
	}
	return bpf_probe_read_user(out, sizeof(*out), (void *)(g + (__u64)off));
}

static __always_inline int record(__u64 cookie, __u64 g, __u32 type)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct gr_tgid_state *st;
	struct gr_config *cfg;
	struct gr_site_counts *counts, zero = {};
	struct gr_site_key key = {};
	__u32 idx = cookie & GR_COOKIE_CFG_MASK;
	__u64 goid;

	st = bpf_map_lookup_elem(&gr_tgids, &tgid);
	if (!st) {
		stat_inc(GR_STAT_UNTRACED);
		return 0;
	}
	cfg = bpf_map_lookup_elem(&gr_configs, &idx);
	if (!cfg || cfg->g_goid < 0 || cfg->g_gopc < 0) {
		stat_inc(GR_STAT_NO_CONFIG);
		return 0;
	}
	if (!g || read_g_field(g, cfg->g_goid, &goid) || read_g_field(g, cfg->g_gopc, &key.gopc) ||
	    read_g_field(g, cfg->g_startpc, &key.startpc)) {
		stat_inc(GR_STAT_READ_ERRORS);
		return 0;
	}
	key.tgid = tgid;

	counts = bpf_map_lookup_elem(&gr_sites, &key);
	if (!counts) {
		/* Fails with -EEXIST when another CPU created it first: fine. */
		bpf_map_update_elem(&gr_sites, &key, &zero, BPF_NOEXIST);
		counts = bpf_map_lookup_elem(&gr_sites, &key);
		if (!counts) {
			stat_inc(GR_STAT_SITES_FULL);
			return 0;
		}
	}
	if (type == GR_EVENT_BIRTH)
		__sync_fetch_and_add(&counts->created, 1);
	else
		__sync_fetch_and_add(&counts->exited, 1);

	if (st->window) {
		struct gr_event *e = bpf_ringbuf_reserve(&gr_events, sizeof(*e), 0);

		if (!e) {
			stat_inc(GR_STAT_RINGBUF_DROPS);
			return 0;
		}
		e->type = type;
		e->tgid = tgid;
		e->goid = goid;
		e->gopc = key.gopc;
		e->startpc = key.startpc;
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

/* One birth program per register that may hold the new g (the cookie's
 * register field is for user space's bookkeeping): a ctx field chosen at run
 * time would be a variable-offset ctx access, which the verifier rejects. */
#define GR_BIRTH_PROG(reg)                                                          \
	SEC("uprobe")                                                               \
	int gr_birth_##reg(struct pt_regs *ctx)                                     \
	{                                                                           \
		stat_inc(GR_STAT_BIRTH_HITS);                                       \
		return record(bpf_get_attach_cookie(ctx), ctx->reg, GR_EVENT_BIRTH); \
	}

GR_BIRTH_PROG(ax)
GR_BIRTH_PROG(bx)
GR_BIRTH_PROG(cx)
GR_BIRTH_PROG(dx)
GR_BIRTH_PROG(si)
GR_BIRTH_PROG(di)
GR_BIRTH_PROG(r8)
GR_BIRTH_PROG(r9)
GR_BIRTH_PROG(r10)
GR_BIRTH_PROG(r11)
GR_BIRTH_PROG(r12)
GR_BIRTH_PROG(r13)
GR_BIRTH_PROG(r15)

SEC("uprobe")
int gr_death(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);

	if (morestack_branch_taken(ctx, cookie))
		return 0;
	stat_inc(GR_STAT_DEATH_HITS);
	return record(cookie, ctx->r14, GR_EVENT_DEATH);
}
