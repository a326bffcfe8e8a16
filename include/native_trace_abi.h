/* BPF <-> user ABI for C memory tracing (bpf/native_trace.bpf.c,
 * daemon/trace/native_trace.c): libc allocator probes in one process, outstanding
 * allocations keyed by (tgid, address), and runtime.cgocall for Go targets.
 * Fixed-width types, enums, limits, and the two pure rules (realloc, munmap)
 * both sides share so unit tests pin what the kernel side does. */
#ifndef MEMDRIFT_NATIVE_EVENTS_H
#define MEMDRIFT_NATIVE_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h> /* user space; BPF gets the types from vmlinux.h */
#endif

/* Outstanding allocations tracked by default (the map is preallocated,
 * ~100 B per entry); native_trace_opts.max_allocs overrides it. */
#define NATIVE_DEFAULT_MAX_ALLOCS (256u * 1024)
#define NATIVE_MIN_MAX_ALLOCS 1024u
#define NATIVE_MAX_MAX_ALLOCS (16u * 1024 * 1024)
#define NATIVE_MAX_PENDING 16384  /* (thread, kind) entry->return hand-offs */
#define NATIVE_MAX_THREADS 16384  /* threads inside a cgo call */
#define NATIVE_MAX_STACKS 16384
#define NATIVE_STACK_DEPTH 32     /* frames kept per stack */
#define NATIVE_MAX_CGO_FNS 4096   /* distinct C functions counted */
#define NATIVE_PAGE_SIZE 4096ull

/* Stack id when bpf_get_stackid failed or no Go stack applies. */
#define NATIVE_NO_STACK (-1)

/* Allocating functions: the hand-off key and the BPF cookie of their entry
 * and return programs. aligned_alloc is memalign's alias in glibc (one
 * probe); mmap counts only MAP_ANONYMOUS calls made outside the allocator. */
enum native_kind {
	NATIVE_KIND_MALLOC = 0,
	NATIVE_KIND_CALLOC,
	NATIVE_KIND_REALLOC,
	NATIVE_KIND_POSIX_MEMALIGN,
	NATIVE_KIND_MEMALIGN, /* and aligned_alloc */
	NATIVE_KIND_VALLOC,
	NATIVE_KIND_PVALLOC,
	NATIVE_KIND_MMAP,
	NATIVE_KIND_MAX,
};

/* Probes, for per-probe hit counters: entries of each kind, returns of each
 * kind, then the releasing and Go probes. */
enum native_probe {
	NATIVE_PROBE_ENTRY = 0,                      /* + kind */
	NATIVE_PROBE_RETURN = NATIVE_KIND_MAX,       /* + kind */
	NATIVE_PROBE_FREE = 2 * NATIVE_KIND_MAX,
	NATIVE_PROBE_MUNMAP,
	NATIVE_PROBE_CGOCALL,                        /* runtime.cgocall */
	NATIVE_PROBE_CGOCALL_DONE,                   /* cgocall's call to exitsyscall */
	NATIVE_PROBE_MAX,
};

/* Counters in .bss: per-probe hits first, then these. */
enum native_stat {
	NATIVE_STAT_HITS = 0,                        /* + enum native_probe */
	NATIVE_STAT_ALLOCS = NATIVE_PROBE_MAX,       /* allocations recorded */
	NATIVE_STAT_FREES,          /* frees/munmaps/reallocs of a recorded block */
	NATIVE_STAT_FREE_UNKNOWN,   /* free of a block not recorded (pre-attach, or full map) */
	NATIVE_STAT_FREE_NULL,      /* free(NULL) */
	NATIVE_STAT_FAILED,         /* NULL / MAP_FAILED / error: nothing recorded */
	NATIVE_STAT_ALLOCS_FULL,    /* outstanding map full: allocation NOT tracked */
	NATIVE_STAT_PENDING_FULL,   /* hand-off map full: allocation NOT tracked */
	NATIVE_STAT_PENDING_MISSING,/* return without its entry (attached mid-call) */
	NATIVE_STAT_STACK_ERRORS,   /* bpf_get_stackid failed for a C stack */
	NATIVE_STAT_GO_STACK_ERRORS,/* bpf_get_stackid failed at runtime.cgocall */
	NATIVE_STAT_THREADS_FULL,   /* cgo thread map full: Go stack not joined */
	NATIVE_STAT_CGO_FNS_FULL,   /* per-C-function counter map full */
	NATIVE_STAT_CGO_CALLS,      /* runtime.cgocall calls */
	NATIVE_STAT_MMAP_FILE,      /* mmap of a file or shared: not C heap, skipped */
	NATIVE_STAT_MMAP_NESTED,    /* mmap/munmap inside malloc & co (arena): skipped */
	NATIVE_STAT_MUNMAP_PARTIAL, /* munmap of a recorded block's head: block trimmed */
	NATIVE_STAT_MUNMAP_UNKNOWN, /* munmap not starting at a recorded block */
	NATIVE_STAT_REPLACED,       /* address recorded again: its free was missed */
	NATIVE_STAT_STACKS_NEW,     /* new C stack keys: one stack copy sent each */
	NATIVE_STAT_STACK_EVENTS_LOST, /* stack copy not sent (ring full): frame-pointer walk */
	NATIVE_STAT_STACKS_FULL,    /* no stack id left: block counted with no stack */
	NATIVE_STAT_MAX,
};

struct native_alloc_key {
	__u32 tgid;
	__u32 pad;
	__u64 addr;
};

/* One outstanding allocation. caller = the return address at the entry
 * probe ([rsp]), right even without frame pointers; go_* = the Go side of
 * the cgo call that made it (runtime.cgocall on the same thread). */
struct native_alloc {
	__u64 size;
	__u64 birth_ns;   /* bpf_ktime_get_ns at entry */
	__u64 caller;
	__u64 go_caller;  /* return address into cgocall's caller, 0 when none */
	__s32 stackid;
	__s32 go_stackid;
	__u32 kind;       /* enum native_kind */
	__u32 pad;
};

struct native_pending_key {
	__u32 tid;
	__u32 kind;
};

/* Entry -> return hand-off, keyed by (thread, kind) so malloc -> mmap
 * nesting never clobbers the outer call's arguments. */
struct native_pending {
	struct native_alloc alloc; /* size, birth, stacks of the new block */
	__u64 arg;                 /* realloc: old pointer; posix_memalign: memptr */
	struct native_alloc old;   /* realloc: the old block, removed at entry */
	__u32 has_old;
	__u32 pad;
};

struct native_cgo_thread {
	__u64 fn;         /* the C function runtime.cgocall calls (part of the C stack key) */
	__u64 go_caller;
	__s32 go_stackid;
	__u32 pad;
};

/* Bytes of user stack (from sp) copied into a new-stack event, largest
 * first (a read crossing the stack's top fails whole). */
#define NATIVE_STACK_COPY 8192
#define NATIVE_STACK_COPY_MIN 1024

/* A C stack key's frame-pointer walk (bpf/native_trace_walk.bpf.h): the probed
 * pc, the return address at [rsp], then frame-pointer return addresses
 * (each in an executable mapping), up to the first one into Go code. Kept
 * per stack id for when its event was lost. */
struct native_walk {
	__u32 n;
	__u32 pad;
	__u64 pc[NATIVE_STACK_DEPTH];
};

/* Executable mappings of the target (user space refreshes them each poll;
 * n = 0: unknown, the BPF walk asks the kernel per return address). */
#define NATIVE_EXEC_RANGES 64
struct native_exec_ranges {
	__u32 n;
	__u32 pad;
	__u64 lo[NATIVE_EXEC_RANGES], hi[NATIVE_EXEC_RANGES];
};

/* Sent once per new stack id: registers at the probe and a copy of the
 * stack window, unwound in user space by .eh_frame CFI
 * (daemon/symbols/native_unwind.c). */
struct native_stack_event {
	__s32 stackid;
	__u32 copied; /* bytes of stack[] valid */
	__u64 ip, sp, bp;
	__u8 stack[NATIVE_STACK_COPY];
};

/* What realloc(old, size) returning ret did to the outstanding set. */
enum native_realloc_action {
	NATIVE_REALLOC_FREE_OLD = 1,    /* the old block is gone */
	NATIVE_REALLOC_INSERT_NEW = 2,  /* ret is a new outstanding block of size bytes */
	NATIVE_REALLOC_RESTORE_OLD = 4, /* failed: the old block is still there */
};

/* realloc(NULL, n) = malloc(n); realloc(p, 0) = free(p) (glibc returns NULL;
 * an allocator returning a minimal block gets it recorded with size 0);
 * a failed realloc leaves p alone; a success (moved or in place) is a free
 * of p plus a new block. */
static inline __u32 native_realloc_action(__u64 old, __u64 size, __u64 ret)
{
	if (!old)
		return ret ? NATIVE_REALLOC_INSERT_NEW : 0;
	if (!size)
		return NATIVE_REALLOC_FREE_OLD | (ret ? NATIVE_REALLOC_INSERT_NEW : 0);
	if (!ret)
		return NATIVE_REALLOC_RESTORE_OLD;
	return NATIVE_REALLOC_FREE_OLD | NATIVE_REALLOC_INSERT_NEW;
}

static inline __u64 native_page_round(__u64 n)
{
	return (n + NATIVE_PAGE_SIZE - 1) & ~(NATIVE_PAGE_SIZE - 1);
}

/* munmap(addr, len) of a block recorded at addr with size bytes: the bytes
 * that remain at addr + page_round(len) (0: the whole block is gone). A
 * range that starts inside a block is not found by address and only
 * counted (NATIVE_STAT_MUNMAP_UNKNOWN). */
static inline __u64 native_munmap_remaining(__u64 size, __u64 len)
{
	__u64 cut = native_page_round(len);

	return cut >= native_page_round(size) ? 0 : native_page_round(size) - cut;
}

#endif
