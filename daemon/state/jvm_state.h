/* The daemon's JVM side (state/daemon_jvm.c): discovering JVMs (a `java`
 * maps libjvm.so only after its launcher loads it, so new native processes
 * are re-checked for a few seconds), JNI global/weak reference tracking per
 * creating native function, hsperfdata numbers and the JVM part of a
 * post-mortem. The per-process state it owns is struct jvm_state, pointed
 * to by struct watched (CLASS_JVM); its detector is detect/evaluate.c. */
#ifndef MEMDRIFT_STATE_JVM_STATE_H
#define MEMDRIFT_STATE_JVM_STATE_H

#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "detect/alert.h"
#include "discover/proc.h"
#include "state/series.h"
#include "symbols/jni_site.h"
#include "trace/jni_trace.h"
#include "watch/hsperf.h"

/* JVMs: `java` is a native binary that maps libjvm.so only once its launcher
 * has loaded it, so a new native process is re-checked a few times in its
 * first seconds (bounded list, bounded checks). */
#define DAEMON_JVM_PENDING 256
#define DAEMON_JVM_CHECKS 5
#define DAEMON_MAX_JVMS 32 /* each JVM costs one BPF object with its maps */
#define DAEMON_JNI_SITES 1024 /* symbolized JNI sites kept per JVM */

struct daemon;
struct watched;

/* One JNI creation site of a JVM (keyed as symbols/jni_site.h says: the
 * first frame past the JNI implementation) and the refs it holds since
 * tracing began. */
struct jni_site_track {
	char key[JNI_SITE_KEY_MAX];    /* "global|leak_site_create@libfoo.so" */
	char stack[768];               /* the first full stack seen, leaf first */
	uint64_t id; /* alert site id: hash of key */
	uint32_t kind;
	struct alert_site site; /* the native function that called New*GlobalRef */
	int64_t created, deleted;
	struct series *count;
};

struct jvm_state {
	struct jni_trace *trace;       /* NULL: libjvm without usable probes */
	struct symbolizer *sym;
	char hsperf_path[PATH_MAX + 64];
	bool hsperf_ok, hs_ok;
	struct hsperf_stats hs;
	bool have_baseline;
	int64_t pre_attach[JNI_KIND_MAX];
	int64_t refs[JNI_KIND_MAX];    /* outstanding, pre-attach included */
	uint64_t lost;                 /* refs/sites the kernel maps refused */
	int32_t *stack_site;           /* stack id -> site index + 1 */
	int32_t nostack_site[JNI_KIND_MAX];
	struct jni_site_track *sites;
	size_t nsites, sites_dropped;
	struct jni_site *raw;
	char probes[16];               /* "usdt", "symtab" or "none" */
};

struct jvm_candidate {
	pid_t pid;
	uint64_t first_ns;
	uint32_t checks;
};

void daemon_jvm_free(struct jvm_state *j);
/* pid maps libjvm.so: watch it (JNI refs when libjvm has probes, hsperf, RSS). */
void daemon_jvm_start(struct daemon *d, pid_t pid, const struct proc_exe *exe);
/* A new native process that may map libjvm soon: re-checked by pending_check. */
void daemon_jvm_pending_add(struct daemon *d, pid_t pid);
void daemon_jvm_pending_check(struct daemon *d, uint64_t now);
void daemon_jvm_sample(struct daemon *d, struct watched *w, uint64_t now);
void daemon_jvm_postmortem(struct watched *w, json_object *o);

#endif
