/* Java-aware JNI creating stacks. See jni_java.h. */
#include "symbols/jni_java.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "base/log.h"
#include "symbols/hotspot.h"
#include "symbols/stack_unwind.h"
#include "trace/jni_trace.h"

struct sframe {
	uint64_t pc;
	uint64_t native_fn;
	enum uw_how how;
	enum uw_kind kind;
	char *java;    /* Java method name (named when the event was read) */
	char *display; /* what the profile shows (built on first use) */
};

struct ustack {
	size_t n;
	struct sframe *f;
	char stop[UW_STOP_LEN];
	char *stop_display;
};

struct jni_java {
	pid_t pid;
	struct hotspot *hs;
	struct stack_unwinder *uw;
	struct ring_buffer *rb;
	struct jni_code_ranges *ranges;
	bool ranges_set;
	struct ustack *stacks; /* by stack id */
	uint64_t events, unwound_frames;
};

static const char *const kind_names[] = {
	[UW_NATIVE] = "native", [UW_JAVA_INTERP] = "interpreted", [UW_JAVA_JIT] = "jit",
	[UW_JAVA_NATIVE] = "native-wrapper", [UW_JIT_STUB] = "stub",
	[UW_JIT_UNRESOLVED] = "unresolved", [UW_UNKNOWN] = "unknown",
};

static void ustack_clear(struct ustack *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->f[i].java);
		free(s->f[i].display);
	}
	free(s->f);
	free(s->stop_display);
	memset(s, 0, sizeof(*s));
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct jni_java *j = ctx;
	const struct jni_stack_event *ev = data;
	struct uw_frame fr[JNI_STACK_DEPTH];
	struct ustack *s;
	size_t n;

	if (size < sizeof(*ev) || ev->stackid < 0 || ev->stackid >= JNI_MAX_STACKS ||
	    ev->copied > JNI_STACK_COPY)
		return 0;
	j->events++;
	s = &j->stacks[ev->stackid];
	ustack_clear(s);
	n = stack_unwind(j->uw, ev->ip, ev->sp, ev->bp, ev->stack, ev->copied, fr, JNI_STACK_DEPTH,
			 s->stop, sizeof(s->stop));
	s->f = calloc(n ? n : 1, sizeof(*s->f));
	if (!s->f)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct sframe *f = &s->f[i];
		char name[512];

		f->pc = fr[i].pc;
		f->how = fr[i].how;
		f->kind = fr[i].kind;
		f->native_fn = fr[i].native_fn;
		if (fr[i].method && j->hs &&
		    !hotspot_method_name(j->hs, fr[i].method, name, sizeof(name), NULL))
			f->java = strdup(name);
		else if (fr[i].kind == UW_JIT_STUB)
			f->java = strdup(fr[i].name);
	}
	s->n = n;
	j->unwound_frames += n;
	return 0;
}

int jni_java_new(pid_t pid, const char *libjvm_open, uint64_t bias, int ringbuf_fd,
		 struct jni_code_ranges *ranges, struct jni_java **out)
{
	struct jni_java *j = calloc(1, sizeof(*j));
	char err[256];
	int ret;

	if (!j)
		return -ENOMEM;
	j->pid = pid;
	j->ranges = ranges;
	j->stacks = calloc(JNI_MAX_STACKS, sizeof(*j->stacks));
	if (!j->stacks) {
		free(j);
		return -ENOMEM;
	}
	ret = hotspot_open(pid, libjvm_open, bias, &j->hs, err, sizeof(err));
	if (ret)
		log_warn("pid %d: Java frames not named: %s", (int)pid, err);
	ret = stack_unwinder_new(pid, j->hs, &j->uw);
	if (ret) {
		jni_java_free(j);
		return ret;
	}
	j->rb = ring_buffer__new(ringbuf_fd, on_event, j, NULL);
	if (!j->rb) {
		ret = -errno;
		jni_java_free(j);
		return ret ? ret : -ENOMEM;
	}
	jni_java_poll(j);
	*out = j;
	return 0;
}

int jni_java_poll(struct jni_java *j)
{
	if (j->hs && !j->ranges_set) {
		char err[256];

		if (!hotspot_refresh(j->hs, err, sizeof(err))) {
			uint64_t lo, hi, ilo, ihi;
			struct jni_code_ranges r;

			hotspot_code_ranges(j->hs, &lo, &hi, &ilo, &ihi);
			r = (struct jni_code_ranges){ lo, hi, ilo, ihi };
			/* the interpreter range first: a BPF walk seeing the code
			 * range must already know the interpreter's */
			__atomic_store_n(&j->ranges->interp_lo, r.interp_lo, __ATOMIC_RELEASE);
			__atomic_store_n(&j->ranges->interp_hi, r.interp_hi, __ATOMIC_RELEASE);
			__atomic_store_n(&j->ranges->code_lo, r.code_lo, __ATOMIC_RELEASE);
			__atomic_store_n(&j->ranges->code_hi, r.code_hi, __ATOMIC_RELEASE);
			j->ranges_set = true;
		} else {
			log_debug("pid %d: HotSpot tables: %s", (int)j->pid, err);
		}
	}
	/* libraries loaded since the last look */
	stack_unwinder_refresh(j->uw);
	return ring_buffer__consume(j->rb);
}

/* A Java frame as the profile shows it: "pkg.Class.method", a native
 * method with the JNI function it is bound to. */
static const char *java_display(struct symbolizer *sym, struct sframe *f)
{
	char buf[768];
	struct native_frame nf;

	if (f->display)
		return f->display;
	if (f->kind == UW_JIT_STUB) {
		snprintf(buf, sizeof(buf), "[jit: stub %s]", f->java ? f->java : "?");
	} else if (!f->java) {
		snprintf(buf, sizeof(buf), "[jit: unresolved]");
	} else if (f->native_fn) {
		symbolizer_lookup_jvm(sym, f->native_fn, &nf);
		snprintf(buf, sizeof(buf), "%s [JNI %s]", f->java, nf.function);
	} else {
		snprintf(buf, sizeof(buf), "%s", f->java);
	}
	f->display = strdup(buf);
	return f->display ? f->display : "[jit: unresolved]";
}

/* No event for this id (the ring buffer was full): the BPF side's key
 * walk, its Java frames named now (late: JIT code may have moved). */
static void from_walk(struct jni_java *j, struct ustack *s, const struct jni_walk *walk)
{
	size_t n = walk->n < JNI_STACK_DEPTH ? walk->n : JNI_STACK_DEPTH;

	s->f = calloc(n, sizeof(*s->f));
	if (!s->f)
		return;
	for (size_t i = 0; i < n; i++) {
		struct sframe *f = &s->f[i];
		struct hotspot_blob b;
		char name[512];
		uint64_t m;

		f->pc = walk->pc[i];
		f->how = i ? UW_FP : UW_REGS;
		f->kind = UW_NATIVE;
		if (!j->hs || hotspot_find_blob(j->hs, f->pc, &b) || b.kind == HS_BLOB_NONE)
			continue;
		m = walk->method[i] ? walk->method[i] : b.method;
		f->kind = walk->method[i] ? UW_JAVA_INTERP
			  : b.kind == HS_BLOB_NATIVE ? UW_JAVA_NATIVE
			  : b.kind == HS_BLOB_NMETHOD ? UW_JAVA_JIT
			  : b.kind == HS_BLOB_STUB ? UW_JIT_STUB : UW_JIT_UNRESOLVED;
		if (m && !hotspot_method_name(j->hs, m, name, sizeof(name), &f->native_fn))
			f->java = strdup(name);
		else if (f->kind == UW_JIT_STUB)
			f->java = strdup(b.name);
	}
	s->n = n;
	snprintf(s->stop, sizeof(s->stop), "no stack copy (frame pointers only)");
}

size_t jni_java_stack(struct jni_java *j, struct symbolizer *sym, int32_t id,
		      const struct jni_walk *walk, struct native_frame *nf, size_t max)
{
	struct ustack *s;
	size_t n = 0;

	if (!j || id < 0 || id >= JNI_MAX_STACKS)
		return 0;
	s = &j->stacks[id];
	if (!s->f) /* a stack made since the last poll: its event may be queued */
		ring_buffer__consume(j->rb);
	if (!s->f && walk && walk->n)
		from_walk(j, s, walk);
	for (size_t i = 0; i < s->n && n < max; i++) {
		struct sframe *f = &s->f[i];

		if (f->kind == UW_NATIVE) {
			symbolizer_lookup_jvm(sym, f->pc, &nf[n]);
		} else {
			nf[n] = (struct native_frame){ .function = java_display(sym, f), .object = "",
						       .offset = 0 };
			nf[n].java = kind_names[f->kind];
		}
		nf[n].unwind = uw_how_name(f->how);
		n++;
	}
	if (n < max && strcmp(s->stop, "end")) {
		if (!s->stop_display) {
			char buf[96];

			snprintf(buf, sizeof(buf), "[unwind stopped: %s]", s->stop);
			s->stop_display = strdup(buf);
		}
		nf[n] = (struct native_frame){ .function = s->stop_display ? s->stop_display
									   : "[unwind stopped]",
					       .object = "", .unwind = "" };
		n++;
	}
	return n;
}

void jni_java_free(struct jni_java *j)
{
	if (!j)
		return;
	if (j->stacks)
		for (size_t i = 0; i < JNI_MAX_STACKS; i++)
			ustack_clear(&j->stacks[i]);
	free(j->stacks);
	ring_buffer__free(j->rb);
	stack_unwinder_free(j->uw);
	hotspot_free(j->hs);
	free(j);
}
