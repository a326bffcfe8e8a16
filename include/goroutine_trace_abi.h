/* BPF <-> user ABI for goroutine lifecycle tracing (bpf/goroutine_trace.bpf.c,
 * daemon/trace/goroutine_trace.c): fixed-width types, enums and limits only. */
#ifndef MEMDRIFT_GOROUTINES_H
#define MEMDRIFT_GOROUTINES_H

#ifndef __VMLINUX_H__
#include <linux/types.h> /* user space; BPF gets the types from vmlinux.h */
#endif

#include "go_stack_check.h"

/* Bounds: per-binary configs, traced processes, (process, site) counters. */
#define GR_MAX_CONFIGS 256
#define GR_MAX_TGIDS 1024
#define GR_MAX_SITES 16384
#define GR_RINGBUF_BYTES (2 * 1024 * 1024) /* ~43k window events */

/* BPF cookie of every goroutine probe: config index in the low 16 bits,
 * GR_COOKIE_* flags above. */
#define GR_COOKIE_CFG_MASK 0xffffu
/* Bits 16-17: the stack-check filter (go_stack_check.h). */

/* Birth probes: the register holding the new g, bits 20-23 (enum
 * probe_reg numbering: 0 RAX, 1 RBX, 2 RCX, 3 RDX, 4 RSI, 5 RDI, 6-11 R8-R13,
 * 12 R15). A RET of newproc1 has it in RAX (0). */
#define GR_COOKIE_REG_SHIFT 20
#define GR_COOKIE_REG_MASK 0xfu

/* Offsets into runtime.g for one binary; -1 = absent. */
struct gr_config {
	__s32 g_goid;
	__s32 g_gopc;
	__s32 g_startpc;
	__u32 flags; /* reserved */
};

/* Per traced process (key: tgid). */
struct gr_tgid_state {
	__u32 window; /* 1: also send every birth/death through the ring buffer */
	__u32 pad;
};

/* Per (process, creation site, entry function) counters. */
struct gr_site_key {
	__u32 tgid;
	__u32 pad;
	__u64 gopc;    /* runtime address of the go statement (return PC) */
	__u64 startpc; /* runtime address of the goroutine's entry function */
};

struct gr_site_counts {
	__u64 created;
	__u64 exited;
};

enum gr_event_type {
	GR_EVENT_BIRTH = 1,
	GR_EVENT_DEATH = 2,
};

/* Ring-buffer record: only while a process's attach window is open. */
struct gr_event {
	__u32 type; /* enum gr_event_type */
	__u32 tgid;
	__u64 goid;
	__u64 gopc;
	__u64 startpc;
};

/* Indexes of the .bss counters array (stats[]). */
enum gr_stat {
	GR_STAT_BIRTH_HITS,       /* birth probe hits (new g known) */
	GR_STAT_DEATH_HITS,       /* runtime.goexit1 hits */
	GR_STAT_MORESTACK_SKIPS,  /* stack-check hits dropped (branch taken) */
	GR_STAT_RINGBUF_DROPS,    /* window events lost: ring buffer full */
	GR_STAT_SITES_FULL,       /* site counter not created: map full */
	GR_STAT_READ_ERRORS,      /* bpf_probe_read_user of a g failed */
	GR_STAT_NO_CONFIG,        /* cookie named an unset config */
	GR_STAT_UNTRACED,         /* hit from a tgid not in the traced set */
	GR_STAT_MAX,
};

#endif
