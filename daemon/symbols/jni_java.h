/* Java-aware creating stacks for JNI references (used by jni_trace.c): the
 * BPF side sends, once per new stack id, the registers and a copy of the
 * stack window (include/jni_trace_abi.h jni_stack_event); this module consumes
 * them, unwinds each (stack_unwind.h: CFI for native frames, HotSpot frame
 * layouts for Java ones) and names its Java frames right then
 * (hotspot.h), while the JIT code the stack points into is still there. */
#ifndef MEMDRIFT_JNI_JAVA_H
#define MEMDRIFT_JNI_JAVA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jni_trace_abi.h"

struct jni_java;
struct native_frame;
struct symbolizer;

/* ringbuf_fd: jni_events; ranges: the BPF object's jni_code (mmapped .bss),
 * written once the JVM's code cache is known. 0 or -errno (the JVM is not
 * HotSpot as this reader knows it: JNI tracing still works, Java frames
 * are then "[jit]"). */
int jni_java_new(pid_t pid, const char *libjvm_open, uint64_t bias, int ringbuf_fd,
		 struct jni_code_ranges *ranges, struct jni_java **out);
/* Consumes pending new-stack events (and publishes the code ranges once
 * known). Number consumed or -errno. */
int jni_java_poll(struct jni_java *j);
/* The unwound, named stack of id into nf (leaf first; strings owned by j
 * or sym). walk: the BPF side's key walk of id (used when no event arrived).
 * Returns the frame count. */
size_t jni_java_stack(struct jni_java *j, struct symbolizer *sym, int32_t id,
		      const struct jni_walk *walk, struct native_frame *nf, size_t max);
void jni_java_free(struct jni_java *j);

#endif
