/* BPF <-> user ABI for JNI global/weak-global reference tracking
 * (bpf/jni_trace.bpf.c, daemon/trace/jni_trace.c): fixed-width types, enums, limits. */
#ifndef MEMDRIFT_JNI_EVENTS_H
#define MEMDRIFT_JNI_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h> /* user space; BPF gets the types from vmlinux.h */
#endif

/* Bounds: outstanding refs tracked, (process, stack, kind) counters, stacks. */
#define JNI_MAX_REFS (256 * 1024)
#define JNI_MAX_SITES 16384
#define JNI_MAX_STACKS 16384
#define JNI_STACK_DEPTH 32 /* frames kept per creating stack */

enum jni_ref_kind {
	JNI_KIND_GLOBAL = 0,
	JNI_KIND_WEAK = 1,
	JNI_KIND_MAX = 2,
};

/* Stack id stored when no id could be given (counted in JNI_STAT_STACK_ERRORS). */
#define JNI_NO_STACK (-1)

/* Bytes of user stack (from sp) copied into a new-stack event, largest
 * first: a read that would cross the stack's top fails whole, so smaller
 * windows are tried after it. */
#define JNI_STACK_COPY 8192
#define JNI_STACK_COPY_MIN 1024

/* The creating stack as the BPF side walks it (frame pointers, bounded):
 * its key. The walk stops at the first JIT-compiled frame; through
 * interpreter frames it continues and keys by their Method* too (all
 * interpreted methods run the same code). id -> this in jni_stacks. */
struct jni_walk {
	__u32 n;
	__u32 pad;
	__u64 pc[JNI_STACK_DEPTH];
	__u64 method[JNI_STACK_DEPTH]; /* interpreter frames: Method*, else 0 */
};

/* Ring-buffer event sent once per new stack id: registers at the probe and
 * a copy of the stack window, unwound and named in user space when read
 * (daemon/symbols/stack_unwind.c, daemon/symbols/hotspot.c) while the JIT code it points
 * into is still there. */
struct jni_stack_event {
	__u32 tgid;
	__s32 stackid;
	__u32 copied; /* bytes of stack[] valid */
	__u32 pad;
	__u64 ip, sp, bp;
	__u8 stack[JNI_STACK_COPY];
};

/* Code ranges the BPF walk needs (set by user space once the JVM
 * published them; 0 before). */
struct jni_code_ranges {
	__u64 code_lo, code_hi, interp_lo, interp_hi;
};

/* Outstanding reference: key = (process, opaque handle returned by the JVM). */
struct jni_ref_key {
	__u32 tgid;
	__u32 pad;
	__u64 handle;
};

struct jni_ref_val {
	__s32 stackid;
	__u32 kind;
	__u64 created_ns;
};

/* Per (process, creating stack, kind) counters: live = created - deleted. */
struct jni_site_key {
	__u32 tgid;
	__s32 stackid;
	__u32 kind;
	__u32 pad;
};

struct jni_site_counts {
	__u64 created;
	__u64 deleted;
};

/* USDT probes the BPF side serves (index into jni_usdt_args). */
enum jni_usdt_probe {
	JNI_USDT_NEW_GLOBAL_RETURN = 0, /* arg 0: the new handle */
	JNI_USDT_NEW_WEAK_RETURN = 1,   /* arg 0: the new handle */
	JNI_USDT_DEL_GLOBAL_ENTRY = 2,  /* arg 1: the handle */
	JNI_USDT_DEL_WEAK_ENTRY = 3,    /* arg 1: the handle */
	JNI_USDT_MAX = 4,
};

/* x86-64 registers as numbered in jni_usdt_arg.reg. */
enum jni_x86_reg {
	JNI_REG_AX, JNI_REG_BX, JNI_REG_CX, JNI_REG_DX, JNI_REG_SI, JNI_REG_DI,
	JNI_REG_BP, JNI_REG_SP, JNI_REG_R8, JNI_REG_R9, JNI_REG_R10, JNI_REG_R11,
	JNI_REG_R12, JNI_REG_R13, JNI_REG_R14, JNI_REG_R15, JNI_REG_IP,
	JNI_REG_MAX,
};

/* Where one USDT argument lives, from its note's spec string ("8@%rax",
 * "-4@8(%rbp)"): a register, or memory at register + offset. */
struct jni_usdt_arg {
	__u32 reg;     /* enum jni_x86_reg */
	__u32 deref;   /* 1: the value is in memory at reg + offset */
	__s64 offset;
	__u32 size;    /* 1, 2, 4 or 8 bytes */
	__u32 is_signed;
};

/* Counters in .bss, indexed by stat + kind where marked (x2). */
enum jni_stat {
	JNI_STAT_CREATED = 0,        /* x2: New*GlobalRef returned non-NULL */
	JNI_STAT_DELETED = 2,        /* x2: Delete* of a ref created since attach */
	JNI_STAT_DELETED_UNKNOWN = 4,/* x2: Delete* of a ref not tracked (pre-attach) */
	JNI_STAT_NULL_RETURNS = 6,   /* New*GlobalRef returned NULL */
	JNI_STAT_NULL_DELETES = 7,   /* Delete*(NULL): no-op in the JVM */
	JNI_STAT_REFS_FULL = 8,      /* outstanding-ref map full: ref not tracked */
	JNI_STAT_SITES_FULL = 9,     /* site map full: counts lost */
	JNI_STAT_STACK_ERRORS = 10,  /* bpf_get_stackid failed (stack map full, ...) */
	JNI_STAT_REPLACED = 11,      /* handle re-created while tracked (missed delete) */
	JNI_STAT_EVENTS_LOST = 12,   /* new-stack event not delivered (ring buffer full) */
	JNI_STAT_MAX = 13,
};

#endif
