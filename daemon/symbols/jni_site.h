/* One JNI reference site for every command: `attach` on a JVM
 * (cli/cmd_attach_jvm.c) and the daemon (state/daemon_jvm.c) group the
 * references they count by the same key, so they report the same sites.
 *
 * The rule: a site is the first frame past the JNI implementation (libjvm's
 * frames trimmed, jni_trace__symbolized_stack's `first`), by function and object,
 * without the offset. That is the code a developer fixes: the native
 * function that called New(Weak)GlobalRef and owes the Delete*, or, when it
 * tail-called NewGlobalRef and left the stack, the Java native method the
 * JVM's wrapper names ("JniTarget.tailLeak [JNI Java_JniTarget_tailLeak]").
 * Every stack through that frame is one site: their Java callers differ
 * (interpreted, then JIT-compiled, then inlined elsewhere), the leak does
 * not. The first full stack seen is what each command shows beside it. */
#ifndef MEMDRIFT_JNI_SITE_H
#define MEMDRIFT_JNI_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trace/jni_trace.h"

#define JNI_SITE_KEY_MAX 320

/* key: "global|leak_site_create@libjnitarget.so" (kind, function, object
 * basename; "[no stack]" when n is 0). Truncated to len. */
void jni_site_key(uint32_t kind, const struct native_frame *nf, size_t n, size_t first, char *key,
		  size_t len);
/* The site's alert id: FNV-1a of the key, never 0. */
uint64_t jni_site_id(const char *key);

/* Makes the site of a stack (symbolizing it, jni_site_key), or finds it:
 * its index, or -1 when the caller's table is full. */
typedef int (*jni_site_new_fn)(void *ctx, int32_t stackid, uint32_t kind);
/* The site index of one raw record of jni_trace_read_sites: remembered per
 * stack id in stack_site (JNI_MAX_STACKS entries, index + 1, 0 unknown) or
 * per kind in nostack_site, else made by new_site, refreshing sym's maps
 * first once per pass (*refreshed: a library loaded since the last look).
 * -1 when new_site found no room (the record is dropped). */
int jni_site_of(const struct jni_site *r, int32_t *stack_site, int32_t *nostack_site,
		struct symbolizer *sym, bool *refreshed, jni_site_new_fn new_site, void *ctx);

#endif
