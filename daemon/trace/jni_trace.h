/* JNI global/weak-global reference tracking for one JVM (bpf/jni_trace.bpf.c):
 * chooses the probes libjvm.so offers (hotspot_jni USDT, else .symtab
 * jni_* functions), counts refs per creating native stack in the kernel, and
 * reads the JVM's own ref counts from its memory. Also the native
 * symbolizer (symbolize.h) as JNI stacks want it. */
#ifndef MEMDRIFT_JNI_TRACE_H
#define MEMDRIFT_JNI_TRACE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jni_trace_abi.h"

struct jni_trace;

enum jni_probe_mode {
	JNI_PROBES_USDT,   /* hotspot_jni notes: uprobes on nops */
	JNI_PROBES_SYMTAB, /* .symtab jni_*: uretprobe on New*, uprobe on Delete* */
};

struct jni_trace_info {
	enum jni_probe_mode mode;
	char libjvm[PATH_MAX];        /* as mapped in the target */
	char libjvm_open[PATH_MAX + 32]; /* through /proc/PID/root */
	uint64_t libjvm_bias;         /* runtime address = link-time address + bias */
	bool checked_wrappers;        /* checked_jni_* present (not probed: they call jni_*) */
	bool jvm_counts;              /* the JVM's own counts are readable */
	char probes[256];             /* "usdt hotspot_jni:NewGlobalRef__return@0x8b6d90 ..." */
};

struct jni_site {
	__s32 stackid; /* JNI_NO_STACK when the stack was not captured */
	__u32 kind;    /* enum jni_ref_kind */
	__u64 created;
	__u64 deleted;
};

/* Finds libjvm.so in pid's mappings and picks the probes; the environment
 * variable MEMDRIFT_JNI_PROBES=usdt|symtab forces one kind (tests). 0, or
 * -ENOENT (not a JVM / libjvm without probes: err names what is missing). */
int jni_trace_new(pid_t pid, struct jni_trace **out, char *err, size_t errlen);
int jni_trace_attach(struct jni_trace *t, char *err, size_t errlen);
const struct jni_trace_info *jni_trace_info(const struct jni_trace *t);
/* Per (stack, kind) counters. *n = count (at most max); 0 or -errno. */
int jni_trace_read_sites(struct jni_trace *t, struct jni_site *out, size_t max, size_t *n);
/* User stack of a site, leaf first. 0 or -ENOENT. */
int jni_trace_read_stack(struct jni_trace *t, __s32 stackid, uint64_t *ips, size_t max,
			 size_t *n);
void jni_trace_stats(const struct jni_trace *t, uint64_t stats[JNI_STAT_MAX]);
/* The JVM's own counts (OopStorage allocation counts of JNIHandles'
 * global and weak storages), read with process_vm_readv — the numbers
 * `jcmd PID Thread.print` ends with, without the attach mechanism.
 * 0, -ENOTSUP (symbols or layout unknown), or -errno. */
int jni_trace_jvm_counts(struct jni_trace *t, uint64_t *global, uint64_t *weak);
void jni_trace_free(struct jni_trace *t);

/* symbolize.h's symbolizer without Go, naming anonymous executable memory
 * "[jit]" and marking libjvm frames (the JNI implementation, trimmed). */
struct native_symbolizer;

struct native_frame {
	const char *function; /* "[jit]", "[unknown]" or a symbol (owned by the symbolizer) */
	const char *object;   /* path of the mapped object, "" for jit/unknown */
	uint64_t offset;      /* ip - symbol start, or object-relative address */
	bool in_libjvm;
	const char *unwind;   /* how the frame was found: "regs", "cfi", "fp", "java"; NULL unknown */
	const char *java;     /* Java frames: "interpreted", "jit", "native-wrapper", "stub",
			       * "unresolved"; NULL for native frames */
};

int native_symbolizer_new(pid_t pid, struct native_symbolizer **out);
/* Re-reads /proc/PID/maps (libraries loaded since); objects stay cached per
 * (dev, inode). */
int native_symbolizer_refresh(struct native_symbolizer *s);
void native_symbolize(struct native_symbolizer *s, uint64_t ip, struct native_frame *out);
void native_symbolizer_free(struct native_symbolizer *s);

/* Stack stackid of t, read (at most max frames; none for a negative id)
 * and symbolized into nf, leaf first. *first: the first frame past
 * libjvm's JNI implementation, or 0 when the whole stack is libjvm (refs
 * the VM makes itself). Returns the number of frames. */
size_t jni_symbolized_stack(struct jni_trace *t, struct native_symbolizer *sym, __s32 stackid,
			    struct native_frame *nf, size_t max, size_t *first);

#endif
