/* SPDX-License-Identifier: GPL-2.0 */
/* The JNI creating-stack key and its new-stack event (bpf/jni_trace.bpf.c; ABI in
 * include/jni_trace_abi.h). The key is a bounded frame-pointer walk from the
 * probe: native return addresses (each checked to lie in an executable
 * mapping, so a frame pointer used as a scratch register by code built
 * without frame pointers ends the walk instead of keying by garbage),
 * through interpreter frames (their Method* is part of the key: every
 * interpreted method runs the same interpreter code), up to and including
 * the first JIT-compiled return address (compiled frames keep no frame
 * pointer). A key seen for the first time gets the next stack id and one
 * ring-buffer event carrying the registers and a copy of the stack window,
 * from which user space unwinds the whole stack (CFI, HotSpot frame sizes)
 * and names its Java frames while the code is still there. */
#ifndef MEMDRIFT_JNI_WALK_BPF_H
#define MEMDRIFT_JNI_WALK_BPF_H

#include "user_stack.bpf.h"

_Static_assert((JNI_STACK_DEPTH & (JNI_STACK_DEPTH - 1)) == 0, "depth: a power of 2");

struct jni_code_ranges jni_code = {};

/* Stack maps allocate per stack seen (BPF_F_NO_PREALLOC): a JVM with a
 * few creating stacks costs kilobytes, not the bound. */

/* stack id -> the key hash that owns it */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JNI_MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} jni_id_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JNI_MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __s32);
} jni_stack_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JNI_MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct jni_walk);
} jni_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jni_walk);
} jni_walk_scratch SEC(".maps");

struct {
	/* ~120 new-stack events between two reads; more fall back to the
	 * frame-pointer walk, named late (stack_events_lost) */
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} jni_events SEC(".maps");

static __always_inline void jni_emit_stack(struct pt_regs *regs, __u32 tgid, __s32 id)
{
	struct jni_stack_event *ev = bpf_ringbuf_reserve(&jni_events, sizeof(*ev), 0);
	void *sp = (void *)PT_REGS_SP(regs);

	if (!ev) {
		stat_inc(JNI_STAT_EVENTS_LOST);
		return;
	}
	ev->tgid = tgid;
	ev->stackid = id;
	ev->ip = PT_REGS_IP(regs);
	ev->sp = PT_REGS_SP(regs);
	ev->bp = PT_REGS_FP(regs);
	/* the JVM maps and unmaps all the time: see ustack_executable */
	ev->copied = ustack_copy(ev->stack, JNI_STACK_COPY, JNI_STACK_COPY_MIN, sp);
	bpf_ringbuf_submit(ev, 0);
}

struct jni_walk_ctx {
	struct jni_walk *w;
	__u64 fp, h;
	__u64 code_lo, code_hi, interp_lo, interp_hi;
	__u32 n;
};

/* One frame-pointer step (bpf_loop body): 0 go on, 1 stop. */
static long jni_walk_step(__u64 idx, void *data)
{
	struct jni_walk_ctx *c = data;
	__u32 i = (__u32)idx + 1;
	__u64 fr[2], ret, method = 0;
	bool in_code;

	if (i >= JNI_STACK_DEPTH)
		return 1;
	if (!c->fp || (c->fp & 7) || bpf_probe_read_user(fr, sizeof(fr), (void *)c->fp))
		return 1;
	ret = fr[1];
	if (!ret)
		return 1;
	in_code = ret >= c->code_lo && ret < c->code_hi;
	if (!in_code && !ustack_executable(ret))
		return 1;
	if (in_code && ret >= c->interp_lo && ret < c->interp_hi)
		bpf_probe_read_user(&method, sizeof(method), (void *)(fr[0] - 24));
	{
		__u32 k = i;

		/* keep the bound visible to the verifier */
		asm volatile("" : "+r"(k));
		k &= JNI_STACK_DEPTH - 1;
		c->w->pc[k] = ret;
		c->w->method[k] = method;
	}
	c->n = i + 1;
	c->h = ustack_mix(ustack_mix(c->h, ret), method);
	if (in_code && !method)
		return 1; /* compiled frame: no frame pointer past it */
	if (fr[0] <= c->fp)
		return 1;
	c->fp = fr[0];
	return 0;
}

/* Stack id of the current user stack (JNI_NO_STACK when none could be
 * given). */
static __always_inline __s32 jni_stack_id(struct pt_regs *regs, __u32 tgid)
{
	__u32 zero = 0;
	struct jni_walk *w = bpf_map_lookup_elem(&jni_walk_scratch, &zero);
	struct jni_walk_ctx c;
	__s32 *found, id;
	__u64 h;
	__u32 n;

	if (!w)
		return JNI_NO_STACK;
	w->pc[0] = PT_REGS_IP(regs);
	w->method[0] = 0;
	c = (struct jni_walk_ctx){ .w = w, .fp = PT_REGS_FP(regs),
				   .h = ustack_mix(0xcbf29ce484222325ull, w->pc[0]),
				   .code_lo = jni_code.code_lo, .code_hi = jni_code.code_hi,
				   .interp_lo = jni_code.interp_lo, .interp_hi = jni_code.interp_hi,
				   .n = 1 };
	bpf_loop(JNI_STACK_DEPTH - 1, jni_walk_step, &c, 0);
	n = c.n;
	h = c.h;
	w->n = n;
	h = ustack_mix(h, tgid);

	found = bpf_map_lookup_elem(&jni_stack_ids, &h);
	if (found)
		return *found;
	id = ustack_claim_id(&jni_id_owner, h, JNI_MAX_STACKS);
	if (id < 0)
		return JNI_NO_STACK;
	if (bpf_map_update_elem(&jni_stack_ids, &h, &id, BPF_NOEXIST)) {
		/* another CPU gave this stack its id first */
		found = bpf_map_lookup_elem(&jni_stack_ids, &h);
		return found ? *found : JNI_NO_STACK;
	}
	bpf_map_update_elem(&jni_stacks, (__u32 *)&id, w, BPF_ANY);
	jni_emit_stack(regs, tgid, id);
	return id;
}

#endif
