/* Native symbolizer for one live process: /proc/PID/maps plus the function
 * symbols (.symtab, then .dynsym) of every mapped executable object, opened
 * through /proc/PID/map_files (else /proc/PID/root + path) so containers
 * work, cached per (dev, inode). Addresses in a Go binary's text resolve
 * through its pclntab (function, file:line) first, which survives stripping;
 * a JVM's stacks name its code cache "[jit]" (symbolizer_lookup_jvm).
 * Also small ELF helpers for choosing probe points. */
#ifndef MEMDRIFT_SYMBOLIZE_H
#define MEMDRIFT_SYMBOLIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct go_target;
struct symbolizer;

#define SYMBOLIZE_MAX_MAPS 16384
#define SYMBOLIZE_MAX_OBJECTS 1024
#define SYMBOLIZE_MAX_SYMBOLS (4u << 20) /* per object */
#define SYMBOLIZE_MAX_NAMES (64u << 20) /* bytes of names per object: a hostile .symtab */

/* One resolved address. Strings are owned by the symbolizer (or the Go
 * target's analysis) and live until symbolizer_free. */
struct sym_frame {
	uint64_t addr;
	const char *object;   /* path as mapped, "" when the address is in no file mapping */
	const char *function; /* symbol, or "[unknown]" */
	uint64_t offset;      /* addr - symbol start; object-relative address when no symbol */
	const char *file;     /* source file (Go frames), else "" */
	int line;             /* 0 when unknown */
	bool go;              /* resolved through the Go pclntab */
	bool mapped;          /* addr lies in an executable mapping (a file's or anonymous) */
};

/* go may be NULL (not a Go process); when given it must outlive the
 * symbolizer. 0 or negative errno (-ESRCH: the process is gone). */
int symbolizer_new(pid_t pid, const struct go_target *go, struct symbolizer **out);
/* Re-reads /proc/PID/maps (libraries loaded since); objects stay cached. */
int symbolizer_refresh(struct symbolizer *s);
/* Resolves addr. is_return: addr is a return address, so the call site is
 * addr - 1 (function and line of the call, not of the next instruction). */
void symbolizer_lookup(struct symbolizer *s, uint64_t addr, bool is_return, struct sym_frame *out);
/* Mapping [start, limit) at file offset pgoff of the object holding addr,
 * for pprof mappings. 0 or -ENOENT. */
int symbolizer_mapping(struct symbolizer *s, uint64_t addr, uint64_t *start, uint64_t *limit,
		       uint64_t *pgoff, const char **object);
void symbolizer_free(struct symbolizer *s);

/* A frame as a JVM's stacks want it (symbolizer_lookup_jvm). */
struct native_frame {
	const char *function; /* "[jit]", "[unknown]" or a symbol (owned by the symbolizer) */
	const char *object;   /* path of the mapped object, "" for jit/unknown */
	uint64_t offset;      /* ip - symbol start, or object-relative address */
	bool in_libjvm;
	const char *unwind;   /* how the frame was found: "regs", "cfi", "fp", "java"; NULL unknown */
	const char *java;     /* Java frames: "interpreted", "jit", "native-wrapper", "stub",
			       * "unresolved"; NULL for native frames */
};
/* symbolizer_lookup for a JVM (s made without Go): ip is an instruction
 * address (not a return address), anonymous executable memory is named
 * "[jit]" (the code cache: JIT methods, interpreter, stubs), and frames in
 * libjvm.so are marked. */
void symbolizer_lookup_jvm(struct symbolizer *s, uint64_t ip, struct native_frame *out);

/* A function symbol of the ELF at path (.symtab, then .dynsym): link-time
 * address, size and the file offset of its first byte. 0 or -ENOENT. */
int symbolize_elf_function(const char *path, const char *name, uint64_t *vaddr, uint64_t *size,
			   uint64_t *file_offset);
/* Any defined symbol (function or data) of the ELF at path, the first of that
 * name in .symtab, else in .dynsym: link-time address, size (may be NULL)
 * and, when file_offset is not NULL, the file offset of its first byte
 * (-ENOENT when it has none, e.g. in .bss). 0 or -ENOENT. */
int symbolize_elf_symbol(const char *path, const char *name, uint64_t *vaddr, uint64_t *size,
			 uint64_t *file_offset);
/* Link-time address of file offset 0 by the first PT_LOAD (vaddr - offset):
 * load bias = start of the object's offset-0 mapping - base. 0 or -ENOENT. */
int symbolize_elf_load_base(const char *path, uint64_t *base);

#endif
