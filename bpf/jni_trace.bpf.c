// SPDX-License-Identifier: GPL-2.0
/* JNI global and weak-global references of one JVM, counted in the kernel by
 * the native stack that created them. Two probe sets, one per libjvm kind
 * (daemon/trace/jni_trace.c enables one and disables the other's autoload):
 *   USDT hotspot_jni:{New,NewWeak}GlobalRef__return (arg0 = handle) and
 *        {Delete,DeleteWeak}GlobalRef__entry (arg1 = handle) — nops in libjvm;
 *        plain uprobes at the note's address, the argument located by the
 *        note's spec (parsed by daemon/probe/usdt_notes.c, set in jni_usdt_args)
 *   uprobes on .symtab jni_{New,NewWeak}GlobalRef (uretprobe: RAX = handle)
 *        and jni_{Delete,DeleteWeak}GlobalRef (entry: RSI = handle)
 * Only the real jni_* functions are probed: under -Xcheck:jni the checked_jni_*
 * wrappers call them through the unchecked function table, so each call is
 * seen exactly once. The handle is an opaque key (tagged in newer JDKs). */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "jni_trace_abi.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 targ_tgid = 0;
/* 1: the kernel's frame-pointer stack only (bpf_get_stackid into
 * jni_fp_stacks, no stack copy, no Java names): what memdrift did before
 * the Java-aware walk, kept for MEMDRIFT_JNI_STACKS=fp and the cost bench */
const volatile __u32 jni_fp_only = 0;
const volatile struct jni_usdt_arg jni_usdt_args[JNI_USDT_MAX] = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JNI_MAX_REFS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct jni_ref_key);
	__type(value, struct jni_ref_val);
} jni_refs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, JNI_MAX_SITES);
	__type(key, struct jni_site_key);
	__type(value, struct jni_site_counts);
} jni_sites SEC(".maps");

__u64 jni_stats[JNI_STAT_MAX] = {};

static __always_inline void stat_inc(__u32 s)
{
	if (s < JNI_STAT_MAX)
		__sync_fetch_and_add(&jni_stats[s], 1);
}

#include "jni_trace_walk.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, JNI_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, JNI_STACK_DEPTH * sizeof(__u64));
} jni_fp_stacks SEC(".maps");

static __always_inline int site_add(__u32 tgid, __s32 stackid, __u32 kind, int created)
{
	struct jni_site_key key = { .tgid = tgid, .stackid = stackid, .kind = kind };
	struct jni_site_counts *c, zero = {};

	c = bpf_map_lookup_elem(&jni_sites, &key);
	if (!c) {
		/* BPF_NOEXIST: a racing CPU may have inserted it; look up again. */
		bpf_map_update_elem(&jni_sites, &key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&jni_sites, &key);
		if (!c) {
			stat_inc(JNI_STAT_SITES_FULL);
			return -1;
		}
	}
	if (created)
		__sync_fetch_and_add(&c->created, 1);
	else
		__sync_fetch_and_add(&c->deleted, 1);
	return 0;
}

static __always_inline int on_created(struct pt_regs *ctx, __u64 handle, __u32 kind)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct jni_ref_key key = { .tgid = tgid, .handle = handle };
	struct jni_ref_val val = { .kind = kind }, *old;
	long id;

	if (targ_tgid && tgid != targ_tgid)
		return 0;
	if (!handle) {
		stat_inc(JNI_STAT_NULL_RETURNS);
		return 0;
	}
	stat_inc(JNI_STAT_CREATED + kind);
	id = jni_fp_only ? bpf_get_stackid(ctx, &jni_fp_stacks, BPF_F_USER_STACK)
			 : jni_stack_id(ctx, tgid);
	if (id < 0) {
		stat_inc(JNI_STAT_STACK_ERRORS);
		id = JNI_NO_STACK;
	}
	val.stackid = id;
	val.created_ns = bpf_ktime_get_ns();

	/* A tracked handle handed out again: its delete was missed (a path we do
	 * not probe), so close the old one against its own site. */
	old = bpf_map_lookup_elem(&jni_refs, &key);
	if (old) {
		stat_inc(JNI_STAT_REPLACED);
		site_add(tgid, old->stackid, old->kind, 0);
	}
	if (bpf_map_update_elem(&jni_refs, &key, &val, BPF_ANY)) {
		stat_inc(JNI_STAT_REFS_FULL);
		/* Counted as created at its site, never as deleted: live stays
		 * right at the site level even though the handle is not tracked. */
	}
	site_add(tgid, val.stackid, kind, 1);
	return 0;
}

static __always_inline int on_deleted(__u64 handle, __u32 kind)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct jni_ref_key key = { .tgid = tgid, .handle = handle };
	struct jni_ref_val *val;
	__s32 stackid;
	__u32 vkind;

	if (targ_tgid && tgid != targ_tgid)
		return 0;
	if (!handle) {
		stat_inc(JNI_STAT_NULL_DELETES);
		return 0;
	}
	val = bpf_map_lookup_elem(&jni_refs, &key);
	if (!val) {
		stat_inc(JNI_STAT_DELETED_UNKNOWN + kind);
		return 0;
	}
	stackid = val->stackid;
	vkind = val->kind;
	if (bpf_map_delete_elem(&jni_refs, &key)) {
		/* Another CPU deleted the same handle first (a double delete in
		 * the target): count it once. */
		return 0;
	}
	stat_inc(JNI_STAT_DELETED + (vkind & 1));
	site_add(tgid, stackid, vkind & 1, 0);
	return 0;
}

/* --- USDT (hotspot_jni provider) --- */

/* Offset of a register in pt_regs. The register is chosen at run time, so
 * the value is read with a helper: the verifier forbids a ctx load at a
 * variable offset (which clang makes of a switch over ctx fields). */
static __always_inline long reg_offset(__u32 reg)
{
	switch (reg) {
	case JNI_REG_AX: return __builtin_offsetof(struct pt_regs, ax);
	case JNI_REG_BX: return __builtin_offsetof(struct pt_regs, bx);
	case JNI_REG_CX: return __builtin_offsetof(struct pt_regs, cx);
	case JNI_REG_DX: return __builtin_offsetof(struct pt_regs, dx);
	case JNI_REG_SI: return __builtin_offsetof(struct pt_regs, si);
	case JNI_REG_DI: return __builtin_offsetof(struct pt_regs, di);
	case JNI_REG_BP: return __builtin_offsetof(struct pt_regs, bp);
	case JNI_REG_SP: return __builtin_offsetof(struct pt_regs, sp);
	case JNI_REG_R8: return __builtin_offsetof(struct pt_regs, r8);
	case JNI_REG_R9: return __builtin_offsetof(struct pt_regs, r9);
	case JNI_REG_R10: return __builtin_offsetof(struct pt_regs, r10);
	case JNI_REG_R11: return __builtin_offsetof(struct pt_regs, r11);
	case JNI_REG_R12: return __builtin_offsetof(struct pt_regs, r12);
	case JNI_REG_R13: return __builtin_offsetof(struct pt_regs, r13);
	case JNI_REG_R14: return __builtin_offsetof(struct pt_regs, r14);
	case JNI_REG_R15: return __builtin_offsetof(struct pt_regs, r15);
	case JNI_REG_IP: return __builtin_offsetof(struct pt_regs, ip);
	}
	return -1;
}

static __always_inline __u64 reg_value(struct pt_regs *regs, __u32 reg)
{
	long off = reg_offset(reg);
	__u64 v = 0;

	if (off < 0)
		return 0;
	bpf_probe_read_kernel(&v, sizeof(v), (char *)regs + off);
	return v;
}

static __always_inline __u64 usdt_arg(struct pt_regs *regs, __u32 probe)
{
	const volatile struct jni_usdt_arg *a;
	__u64 v;

	if (probe >= JNI_USDT_MAX)
		return 0;
	a = &jni_usdt_args[probe];
	v = reg_value(regs, a->reg);
	if (a->deref) {
		__u64 mem = 0;

		if (bpf_probe_read_user(&mem, sizeof(mem), (void *)(v + a->offset)))
			return 0;
		v = mem;
	}
	switch (a->size) {
	case 1: return a->is_signed ? (__u64)(__s64)(__s8)v : (__u8)v;
	case 2: return a->is_signed ? (__u64)(__s64)(__s16)v : (__u16)v;
	case 4: return a->is_signed ? (__u64)(__s64)(__s32)v : (__u32)v;
	}
	return v;
}

SEC("uprobe")
int jni_usdt_new_global(struct pt_regs *ctx)
{
	return on_created(ctx, usdt_arg(ctx, JNI_USDT_NEW_GLOBAL_RETURN), JNI_KIND_GLOBAL);
}

SEC("uprobe")
int jni_usdt_new_weak(struct pt_regs *ctx)
{
	return on_created(ctx, usdt_arg(ctx, JNI_USDT_NEW_WEAK_RETURN), JNI_KIND_WEAK);
}

SEC("uprobe")
int jni_usdt_del_global(struct pt_regs *ctx)
{
	return on_deleted(usdt_arg(ctx, JNI_USDT_DEL_GLOBAL_ENTRY), JNI_KIND_GLOBAL);
}

SEC("uprobe")
int jni_usdt_del_weak(struct pt_regs *ctx)
{
	return on_deleted(usdt_arg(ctx, JNI_USDT_DEL_WEAK_ENTRY), JNI_KIND_WEAK);
}

/* --- .symtab fallback: the handle is read at return (uretprobe: libjvm is
 * C++ on a normal stack, unlike Go) --- */

SEC("uretprobe")
int BPF_KRETPROBE(jni_up_new_global_ret, __u64 ret)
{
	return on_created(ctx, ret, JNI_KIND_GLOBAL);
}

SEC("uretprobe")
int BPF_KRETPROBE(jni_up_new_weak_ret, __u64 ret)
{
	return on_created(ctx, ret, JNI_KIND_WEAK);
}

SEC("uprobe")
int BPF_KPROBE(jni_up_del_global, __u64 env, __u64 ref)
{
	return on_deleted(ref, JNI_KIND_GLOBAL);
}

SEC("uprobe")
int BPF_KPROBE(jni_up_del_weak, __u64 env, __u64 ref)
{
	return on_deleted(ref, JNI_KIND_WEAK);
}
