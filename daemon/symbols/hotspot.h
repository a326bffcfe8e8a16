/* HotSpot from the outside: the JVM's own published description of its
 * structures (gHotSpotVMStructs / gHotSpotVMTypes, exported by libjvm.so
 * with their entry offsets and strides, as the serviceability agent reads
 * them), read with process_vm_readv. Names code-cache addresses: the
 * CodeBlob holding a pc (CodeCache heaps -> segment map -> HeapBlock), the
 * Method of an nmethod or native wrapper, and Method -> ConstMethod ->
 * ConstantPool -> Symbol as "pkg.Class.method". No JVM flag, agent or
 * write into the target. x86-64 only (interpreter frame layout). */
#ifndef MEMDRIFT_HOTSPOT_H
#define MEMDRIFT_HOTSPOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct hotspot;

/* x86-64 interpreter frame: Method* at fp + this many words
 * (frame_x86.hpp interpreter_frame_method_offset, as SA's X86Frame). */
#define HOTSPOT_INTERP_METHOD_SLOT (-3)
/* ... and the caller's sp (interpreter_frame_sender_sp_offset). */
#define HOTSPOT_INTERP_SENDER_SP_SLOT (-1)

enum hotspot_blob_kind {
	HS_BLOB_NONE = 0,     /* not in the code cache */
	HS_BLOB_FREE,         /* in a code heap, but in no live blob (freed code) */
	HS_BLOB_INTERPRETER,  /* the template interpreter */
	HS_BLOB_NMETHOD,      /* JIT-compiled method */
	HS_BLOB_NATIVE,       /* native-method wrapper (an nmethod of a native method) */
	HS_BLOB_STUB,         /* any other blob: adapters, runtime stubs, call stub */
};

struct hotspot_blob {
	enum hotspot_blob_kind kind;
	uint64_t start;       /* the CodeBlob */
	uint64_t method;      /* Method* (nmethods), else 0 */
	int frame_size;       /* words, incl. return address and saved rbp */
	char name[64];        /* CodeBlob::_name */
};

/* libjvm_path: how to open libjvm (e.g. /proc/PID/root/...); bias: runtime
 * minus link-time address. 0, -ENOENT (no gHotSpotVMStructs: not HotSpot)
 * or -errno; err says why. The JVM may still be starting: lookups then
 * answer "not ready" until hotspot_refresh succeeds. */
int hotspot_open(pid_t pid, const char *libjvm_path, uint64_t bias, struct hotspot **out,
		 char *err, size_t errlen);
/* Reads the tables once the JVM published them (retried by lookups).
 * 0, -EAGAIN (still starting), -ENOTSUP (a field this reader needs is
 * missing: names which in err), -errno. */
int hotspot_refresh(struct hotspot *h, char *err, size_t errlen);
bool hotspot_ready(const struct hotspot *h);
/* [lo, hi) of all code heaps and of the interpreter, 0 when not ready. */
void hotspot_code_ranges(const struct hotspot *h, uint64_t *code_lo, uint64_t *code_hi,
			 uint64_t *interp_lo, uint64_t *interp_hi);
/* The blob holding pc (read now). 0 (out->kind set; HS_BLOB_NONE outside
 * the code cache) or -errno. */
int hotspot_find_blob(struct hotspot *h, uint64_t pc, struct hotspot_blob *out);
/* "pkg.Class.method" of a Method*, with "(sig)" appended when the class
 * declares another method of that name. native_fn: the JNI function a
 * native method is bound to (0 when not native or not yet bound); may be
 * NULL. Cached per Method* (Methods do not move; a freed one's name is
 * kept, checked by its ConstMethod). 0 or -errno (not a Method). */
int hotspot_method_name(struct hotspot *h, uint64_t method, char *buf, size_t len,
			uint64_t *native_fn);
/* Value of a gHotSpotVMIntConstants / LongConstants entry. 0 or -ENOENT. */
int hotspot_constant(const struct hotspot *h, const char *name, int64_t *value);
void hotspot_free(struct hotspot *h);

#endif
