/* Unwinding a copied user-stack window in user space (x86-64): native
 * frames by the DWARF CFI of their object's .eh_frame (libdw), falling back
 * to the frame-pointer chain where an object has none; HotSpot frames by the
 * JVM's own layout (hotspot.h): interpreter frames through rbp (Method* at a
 * fixed slot), compiled methods and native-method wrappers by their
 * CodeBlob's frame size. Every frame says how it was found and the walk
 * says why it stopped. The BPF side copies the window and registers at the
 * probe (bpf/jni_trace.bpf.c). */
#ifndef MEMDRIFT_STACK_UNWIND_H
#define MEMDRIFT_STACK_UNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct hotspot;
struct stack_unwinder;

enum uw_how {
	UW_REGS,   /* the probed instruction */
	UW_CFI,    /* return address found by the callee's CFI */
	UW_FP,     /* ... by the callee's frame pointer (no CFI for it) */
	UW_JAVA,   /* ... by the callee's HotSpot frame layout */
};

enum uw_kind {
	UW_NATIVE,        /* in a mapped object (symbolize the pc) */
	UW_JAVA_INTERP,   /* interpreted Java method (method set) */
	UW_JAVA_JIT,      /* JIT-compiled Java method (method set) */
	UW_JAVA_NATIVE,   /* native-method wrapper (method and native_fn set) */
	UW_JIT_STUB,      /* other code-cache blob (name set) */
	UW_JIT_UNRESOLVED,/* code cache, no live blob holds the pc (freed/moved code) */
	UW_UNKNOWN,       /* not in any executable mapping */
};

struct uw_frame {
	uint64_t pc;
	uint64_t method;    /* Method* for Java frames */
	uint64_t native_fn; /* bound JNI function of a native method, 0 unknown */
	enum uw_how how;
	enum uw_kind kind;
	char name[64];      /* CodeBlob name for stubs */
};

#define UW_STOP_LEN 48

/* hs may be NULL (no JVM) and must outlive the unwinder. */
int stack_unwinder_new(pid_t pid, struct hotspot *hs, struct stack_unwinder **out);
/* Re-reads /proc/PID/maps; objects (and their CFI) stay cached. */
int stack_unwinder_refresh(struct stack_unwinder *u);
/* Unwinds from the registers at the probe over stack[0, len), a copy of the
 * target's memory from address sp. Returns the frame count (leaf first),
 * stop says why the walk ended ("end", "window", "no unwind info", ...). */
size_t stack_unwind(struct stack_unwinder *u, uint64_t ip, uint64_t sp, uint64_t bp,
		    const uint8_t *stack, size_t len, struct uw_frame *out, size_t max, char *stop,
		    size_t stoplen);
void stack_unwinder_free(struct stack_unwinder *u);
/* The executable mappings of the last refresh, [lo[i], hi[i]), adjacent
 * ones merged; returns their count (more than max: only max filled). */
size_t stack_unwinder_exec_ranges(const struct stack_unwinder *u, uint64_t *lo, uint64_t *hi,
				  size_t max);

const char *uw_how_name(enum uw_how how);

#endif
