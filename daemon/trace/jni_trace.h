/* JNI global/weak-global reference tracking for one JVM (bpf/jni_trace.bpf.c):
 * chooses the probes libjvm.so offers (hotspot_jni USDT, else .symtab
 * jni_* functions), counts refs per creating native stack in the kernel, and
 * reads the JVM's own ref counts from its memory, and symbolizes the
 * creating stacks (symbolize.h's JVM lookup).
 *
 *   jni_trace__new(&opts, &t, err, errlen)  libjvm found, probes picked,
 *                                           open, configure, check, load
 *   jni_trace__attach(t, err, errlen)       the four probes, deletes first
 *   jni_trace__poll(t)                      Java names for new stacks
 *   jni_trace__read_sites / __stats / __jvm_counts
 *   jni_trace__free(t) */
#ifndef MEMDRIFT_JNI_TRACE_H
#define MEMDRIFT_JNI_TRACE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jni_trace_abi.h"
#include "symbols/symbolize.h"

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

struct jni_trace_opts {
	pid_t pid; /* the JVM (the BPF programs fire for it only) */
};

/* Finds libjvm.so in pid's mappings and picks the probes; the environment
 * variable MEMDRIFT_JNI_PROBES=usdt|symtab forces one kind (tests);
 * then opens, configures, checks (bpf_util_check) and loads the BPF
 * object. 0, or -ENOENT (not a JVM / libjvm without probes: err names what
 * is missing), or another negative errno with err. */
int jni_trace__new(const struct jni_trace_opts *opts, struct jni_trace **out, char *err,
		   size_t errlen);
int jni_trace__attach(struct jni_trace *t, char *err, size_t errlen);
/* Consumes the stack events (Java names of new stacks); _read_sites does
 * it first itself. 0 or negative errno. */
int jni_trace__poll(struct jni_trace *t);
const struct jni_trace_info *jni_trace__info(const struct jni_trace *t);
/* Per (stack, kind) counters. *n = count (at most max); 0 or -errno. */
int jni_trace__read_sites(struct jni_trace *t, struct jni_site *out, size_t max, size_t *n);
/* User stack of a site, leaf first. 0 or -ENOENT. */
int jni_trace__read_stack(struct jni_trace *t, __s32 stackid, uint64_t *ips, size_t max,
			 size_t *n);
void jni_trace__stats(const struct jni_trace *t, uint64_t stats[JNI_STAT_MAX]);
/* The JVM's own counts (OopStorage allocation counts of JNIHandles'
 * global and weak storages), read with process_vm_readv — the numbers
 * `jcmd PID Thread.print` ends with, without the attach mechanism.
 * 0, -ENOTSUP (symbols or layout unknown), or -errno. */
int jni_trace__jvm_counts(struct jni_trace *t, uint64_t *global, uint64_t *weak);
void jni_trace__free(struct jni_trace *t);

/* Stack stackid of t, read (at most max frames; none for a negative id)
 * and symbolized into nf, leaf first. *first: the first frame past
 * libjvm's JNI implementation, or 0 when the whole stack is libjvm (refs
 * the VM makes itself). Returns the number of frames. */
size_t jni_trace__symbolized_stack(struct jni_trace *t, struct symbolizer *sym, __s32 stackid,
				   struct native_frame *nf, size_t max, size_t *first);

#endif
