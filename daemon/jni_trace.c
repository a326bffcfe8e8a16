/* JNI reference tracking: probe choice, BPF lifecycle, reads, the JVM's own
 * counts, and a native symbolizer. See jni_trace.h. */
#include "jni_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "jni.skel.h"
#include "log.h"
#include "proc.h"
#include "usdt_notes.h"

#define MAX_LOADS 16
#define MAX_SYMBOLS (2u << 20)

/* ---------------------------------------------------------------- ELF --- */

struct elf_load {
	uint64_t vaddr, offset, filesz;
};

struct elf_sym {
	uint64_t addr, size;
	uint32_t name; /* offset into names */
};

struct elf_symtab {
	struct elf_sym *v;
	size_t n;
	char *names;
	size_t names_len, names_cap;
	struct elf_load loads[MAX_LOADS];
	size_t nloads;
};

static Elf *elf_open(const char *path, int *fd)
{
	Elf *elf;

	elf_version(EV_CURRENT);
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return NULL;
	elf = elf_begin(*fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		if (elf)
			elf_end(elf);
		close(*fd);
		*fd = -1;
		return NULL;
	}
	return elf;
}

static void read_loads(Elf *elf, struct elf_load *loads, size_t *n)
{
	size_t np;

	*n = 0;
	if (elf_getphdrnum(elf, &np))
		return;
	for (size_t i = 0; i < np && *n < MAX_LOADS; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD)
			loads[(*n)++] = (struct elf_load){ ph.p_vaddr, ph.p_offset, ph.p_filesz };
	}
}

static int vaddr_to_offset(const struct elf_load *loads, size_t n, uint64_t vaddr, uint64_t *off)
{
	for (size_t i = 0; i < n; i++)
		if (vaddr >= loads[i].vaddr && vaddr < loads[i].vaddr + loads[i].filesz) {
			*off = vaddr - loads[i].vaddr + loads[i].offset;
			return 0;
		}
	return -ENOENT;
}

static int offset_to_vaddr(const struct elf_load *loads, size_t n, uint64_t off, uint64_t *vaddr)
{
	for (size_t i = 0; i < n; i++)
		if (off >= loads[i].offset && off < loads[i].offset + loads[i].filesz) {
			*vaddr = off - loads[i].offset + loads[i].vaddr;
			return 0;
		}
	return -ENOENT;
}

static int sym_cmp(const void *a, const void *b)
{
	const struct elf_sym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->size > y->size ? -1 : x->size < y->size; /* sized symbol first */
}

static int names_add(struct elf_symtab *t, const char *s, uint32_t *off)
{
	size_t len = strlen(s) + 1;

	if (t->names_len + len > t->names_cap) {
		size_t cap = t->names_cap ? t->names_cap * 2 : 65536;
		char *p;

		while (cap < t->names_len + len)
			cap *= 2;
		if (cap > UINT32_MAX || !(p = realloc(t->names, cap)))
			return -ENOMEM;
		t->names = p;
		t->names_cap = cap;
	}
	memcpy(t->names + t->names_len, s, len);
	*off = (uint32_t)t->names_len;
	t->names_len += len;
	return 0;
}

static void symtab_free(struct elf_symtab *t)
{
	if (!t)
		return;
	free(t->v);
	free(t->names);
	free(t);
}

/* Function symbols of .symtab and .dynsym, sorted by address. */
static struct elf_symtab *symtab_load(const char *path)
{
	struct elf_symtab *t = calloc(1, sizeof(*t));
	size_t cap = 0;
	Elf_Scn *scn = NULL;
	Elf *elf;
	int fd;

	if (!t)
		return NULL;
	elf = elf_open(path, &fd);
	if (!elf) {
		free(t);
		return NULL;
	}
	read_loads(elf, t->loads, &t->nloads);
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		size_t count;

		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
			continue;
		data = elf_getdata(scn, NULL);
		if (!data || !sh.sh_entsize)
			continue;
		count = sh.sh_size / sh.sh_entsize;
		for (size_t i = 0; i < count && t->n < MAX_SYMBOLS; i++) {
			GElf_Sym sym;
			const char *name;
			int type;

			if (!gelf_getsym(data, (int)i, &sym))
				continue;
			type = GELF_ST_TYPE(sym.st_info);
			if ((type != STT_FUNC && type != STT_GNU_IFUNC) || !sym.st_value ||
			    sym.st_shndx == SHN_UNDEF)
				continue;
			name = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (!name || !*name)
				continue;
			if (t->n == cap) {
				size_t ncap = cap ? cap * 2 : 1024;
				void *nv = realloc(t->v, ncap * sizeof(*t->v));

				if (!nv)
					goto fail;
				t->v = nv;
				cap = ncap;
			}
			t->v[t->n].addr = sym.st_value;
			t->v[t->n].size = sym.st_size;
			if (names_add(t, name, &t->v[t->n].name))
				goto fail;
			t->n++;
		}
	}
	elf_end(elf);
	close(fd);
	if (t->n)
		qsort(t->v, t->n, sizeof(*t->v), sym_cmp);
	return t;
fail:
	elf_end(elf);
	close(fd);
	symtab_free(t);
	return NULL;
}

static const struct elf_sym *symtab_find(const struct elf_symtab *t, uint64_t addr)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) { /* last symbol with addr <= target */
		size_t mid = lo + (hi - lo) / 2;

		if (t->v[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	/* Symbols at the same address: the sized one sorts first. */
	for (size_t i = lo; i-- > 0 && t->v[i].addr == t->v[lo - 1].addr;) {
		const struct elf_sym *s = &t->v[i];

		if (!s->size || addr < s->addr + s->size)
			return s;
	}
	return NULL;
}

int elf_symbol_lookup(const char *path, const char *name, uint64_t *addr, uint64_t *size)
{
	int types[2] = { SHT_SYMTAB, SHT_DYNSYM }, fd, ret = -ENOENT;
	Elf *elf = elf_open(path, &fd);

	if (!elf)
		return -ENOENT;
	for (int pass = 0; pass < 2 && ret; pass++) {
		Elf_Scn *scn = NULL;

		while (ret && (scn = elf_nextscn(elf, scn))) {
			GElf_Shdr sh;
			Elf_Data *data;

			if (!gelf_getshdr(scn, &sh) || sh.sh_type != (unsigned)types[pass] ||
			    !sh.sh_entsize || !(data = elf_getdata(scn, NULL)))
				continue;
			for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
				GElf_Sym sym;
				const char *n;

				if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF ||
				    !sym.st_value)
					continue;
				n = elf_strptr(elf, sh.sh_link, sym.st_name);
				if (n && !strcmp(n, name)) {
					*addr = sym.st_value;
					if (size)
						*size = sym.st_size;
					ret = 0;
					break;
				}
			}
		}
	}
	elf_end(elf);
	close(fd);
	return ret;
}

/* --------------------------------------------------------- symbolizer --- */

#define SYM_MAX_MAPS 16384
#define SYM_MAX_OBJECTS 512

struct sym_object {
	dev_t dev;
	ino_t ino;
	char *path;
	struct elf_symtab *tab; /* NULL: unreadable, symbols unknown */
	bool libjvm;
};

struct sym_map {
	uint64_t start, end, pgoff;
	int object; /* index into objects, -1: anonymous */
	bool exec;
};

struct native_symbolizer {
	pid_t pid;
	struct sym_map *maps;
	size_t nmaps;
	struct sym_object objects[SYM_MAX_OBJECTS];
	size_t nobjects;
};

static int object_get(struct native_symbolizer *s, dev_t dev, ino_t ino, const char *path)
{
	char open_path[PATH_MAX + 32];
	struct sym_object *o;

	for (size_t i = 0; i < s->nobjects; i++)
		if (s->objects[i].dev == dev && s->objects[i].ino == ino)
			return (int)i;
	if (s->nobjects == SYM_MAX_OBJECTS)
		return -1;
	o = &s->objects[s->nobjects];
	o->dev = dev;
	o->ino = ino;
	o->path = strdup(path);
	if (!o->path)
		return -1;
	snprintf(open_path, sizeof(open_path), "/proc/%d/root%s", (int)s->pid, path);
	o->tab = symtab_load(open_path);
	o->libjvm = strstr(path, "/libjvm.so") != NULL;
	return (int)s->nobjects++;
}

int native_symbolizer_refresh(struct native_symbolizer *s)
{
	char path[64], line[PATH_MAX + 256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)s->pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	s->nmaps = 0;
	while (fgets(line, sizeof(line), f) && s->nmaps < SYM_MAX_MAPS) {
		unsigned long long start, end, off, ino;
		unsigned maj, min;
		char perms[8];
		int pos = 0;
		struct sym_map *m;
		char *p;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &off, &maj,
			   &min, &ino, &pos) < 7)
			continue;
		if (perms[2] != 'x')
			continue; /* return addresses point into code */
		m = &s->maps[s->nmaps++];
		m->start = start;
		m->end = end;
		m->pgoff = off;
		m->exec = true;
		m->object = -1;
		p = line + pos;
		p[strcspn(p, "\n")] = 0;
		if (ino && *p == '/')
			m->object = object_get(s, makedev(maj, min), (ino_t)ino, p);
	}
	fclose(f);
	return 0;
}

int native_symbolizer_new(pid_t pid, struct native_symbolizer **out)
{
	struct native_symbolizer *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->pid = pid;
	s->maps = calloc(SYM_MAX_MAPS, sizeof(*s->maps));
	if (!s->maps) {
		free(s);
		return -ENOMEM;
	}
	ret = native_symbolizer_refresh(s);
	if (ret) {
		native_symbolizer_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

void native_symbolize(struct native_symbolizer *s, uint64_t ip, struct native_frame *out)
{
	const struct sym_map *m = NULL;
	const struct sym_object *o;
	const struct elf_sym *sym;
	uint64_t vaddr;

	memset(out, 0, sizeof(*out));
	out->function = "[unknown]";
	out->object = "";
	out->offset = ip;
	for (size_t i = 0; i < s->nmaps; i++)
		if (ip >= s->maps[i].start && ip < s->maps[i].end) {
			m = &s->maps[i];
			break;
		}
	if (!m)
		return;
	if (m->object < 0) {
		/* Anonymous executable memory in a JVM: the code cache (JIT
		 * methods, interpreter, stubs). */
		out->function = "[jit]";
		return;
	}
	o = &s->objects[m->object];
	out->object = o->path;
	out->in_libjvm = o->libjvm;
	out->offset = ip - m->start + m->pgoff;
	if (!o->tab || offset_to_vaddr(o->tab->loads, o->tab->nloads, out->offset, &vaddr))
		return;
	out->offset = vaddr;
	sym = symtab_find(o->tab, vaddr);
	if (!sym)
		return;
	out->function = o->tab->names + sym->name;
	out->offset = vaddr - sym->addr;
}

void native_symbolizer_free(struct native_symbolizer *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nobjects; i++) {
		free(s->objects[i].path);
		symtab_free(s->objects[i].tab);
	}
	free(s->maps);
	free(s);
}

/* ---------------------------------------------------------- jni_trace --- */

struct probe_point {
	const char *what;  /* for messages */
	uint64_t offset;   /* file offset in libjvm */
	bool retprobe;
};

struct jni_trace {
	pid_t pid;
	struct jni_trace_info info;
	struct jni_bpf *skel;
	struct probe_point points[4]; /* new global, new weak, del global, del weak */
	struct bpf_link *links[4];
	/* JVM's own counts */
	uint64_t global_handles_addr, weak_handles_addr; /* runtime addresses */
	int64_t count_field;                             /* OopStorage::_allocation_count */
};

static const char *const usdt_names[JNI_USDT_MAX] = {
	[JNI_USDT_NEW_GLOBAL_RETURN] = "NewGlobalRef__return",
	[JNI_USDT_NEW_WEAK_RETURN] = "NewWeakGlobalRef__return",
	[JNI_USDT_DEL_GLOBAL_ENTRY] = "DeleteGlobalRef__entry",
	[JNI_USDT_DEL_WEAK_ENTRY] = "DeleteWeakGlobalRef__entry",
};
static const int usdt_arg_index[JNI_USDT_MAX] = { 0, 0, 1, 1 };

static const char *const jni_funcs[4] = {
	"jni_NewGlobalRef", "jni_NewWeakGlobalRef", "jni_DeleteGlobalRef", "jni_DeleteWeakGlobalRef",
};

/* USDT: all four notes, each at a file offset, without a semaphore (arming
 * one would mean writing into the JVM), each argument in a register or in
 * memory at register + offset. missing gets what is not usable. */
static int pick_usdt(struct jni_trace *t, struct jni_usdt_arg args[JNI_USDT_MAX], char *missing,
		     size_t mlen)
{
	struct usdt_notes notes;
	char err[256];
	int ok = 0;

	missing[0] = 0;
	if (usdt_notes_read(t->info.libjvm_open, &notes, err, sizeof(err))) {
		snprintf(missing, mlen, "%s", err);
		return -ENOENT;
	}
	if (!notes.n) {
		snprintf(missing, mlen, "no .note.stapsdt (built without the dtrace feature)");
		usdt_notes_free(&notes);
		return -ENOENT;
	}
	for (int i = 0; i < JNI_USDT_MAX; i++) {
		const struct usdt_note *n = usdt_notes_find(&notes, "hotspot_jni", usdt_names[i]);
		struct usdt_arg a;
		size_t len = strlen(missing);

		if (!n) {
			snprintf(missing + len, mlen - len, "%shotspot_jni:%s", len ? ", " : "",
				 usdt_names[i]);
			continue;
		}
		if (n->semaphore || !n->has_offset ||
		    usdt_arg_parse(n->args, usdt_arg_index[i], &a) || a.kind == USDT_ARG_CONST) {
			snprintf(missing + len, mlen - len, "%shotspot_jni:%s (%s)", len ? ", " : "",
				 usdt_names[i],
				 n->semaphore ? "has a semaphore" : "unsupported argument spec");
			continue;
		}
		args[i] = (struct jni_usdt_arg){ .reg = (__u32)a.reg, .deref = a.kind == USDT_ARG_MEM,
						 .offset = a.value, .size = (__u32)a.size,
						 .is_signed = a.is_signed };
		t->points[i] = (struct probe_point){ usdt_names[i], n->file_offset, false };
		ok++;
	}
	usdt_notes_free(&notes);
	return ok == JNI_USDT_MAX ? 0 : -ENOENT;
}

static int pick_symtab(struct jni_trace *t, char *missing, size_t mlen)
{
	struct elf_load loads[MAX_LOADS];
	size_t nloads;
	uint64_t addr, off;
	int ok = 0, fd;
	Elf *elf = elf_open(t->info.libjvm_open, &fd);

	missing[0] = 0;
	if (!elf) {
		snprintf(missing, mlen, "all (libjvm.so unreadable)");
		return -ENOENT;
	}
	read_loads(elf, loads, &nloads);
	elf_end(elf);
	close(fd);
	for (int i = 0; i < 4; i++) {
		size_t len = strlen(missing);

		if (elf_symbol_lookup(t->info.libjvm_open, jni_funcs[i], &addr, NULL) ||
		    vaddr_to_offset(loads, nloads, addr, &off)) {
			snprintf(missing + len, mlen - len, "%s%s", len ? ", " : "", jni_funcs[i]);
			continue;
		}
		/* New*: the handle is the return value; Delete*: the 2nd argument. */
		t->points[i] = (struct probe_point){ jni_funcs[i], off, i < 2 };
		ok++;
	}
	return ok == 4 ? 0 : -ENOENT;
}

static uint64_t first_load_base(const char *path)
{
	struct elf_load loads[MAX_LOADS];
	size_t n;
	int fd;
	Elf *elf = elf_open(path, &fd);

	if (!elf)
		return 0;
	read_loads(elf, loads, &n);
	elf_end(elf);
	close(fd);
	return n ? loads[0].vaddr - loads[0].offset : 0;
}

/* OopStorage::allocation_count() is `mov rax, [rdi + disp]; ret`: its
 * displacement is the field's offset in this build. */
static int64_t decode_count_field(const char *path)
{
	struct elf_load loads[MAX_LOADS];
	uint8_t code[16];
	uint64_t addr, size, off;
	size_t n, i = 0;
	int fd;
	Elf *elf;

	if (elf_symbol_lookup(path, "_ZNK10OopStorage16allocation_countEv", &addr, &size))
		return -1;
	elf = elf_open(path, &fd);
	if (!elf)
		return -1;
	read_loads(elf, loads, &n);
	elf_end(elf);
	if (vaddr_to_offset(loads, n, addr, &off) || pread(fd, code, sizeof(code), (off_t)off) !=
							       (ssize_t)sizeof(code)) {
		close(fd);
		return -1;
	}
	close(fd);
	if (code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && code[3] == 0xfa)
		i = 4; /* endbr64 */
	if (code[i] == 0x48 && code[i + 1] == 0x8b && code[i + 2] == 0x47 && code[i + 4] == 0xc3)
		return (int8_t)code[i + 3];
	if (code[i] == 0x48 && code[i + 1] == 0x8b && code[i + 2] == 0x87 && code[i + 7] == 0xc3) {
		int32_t d;

		memcpy(&d, code + i + 3, 4);
		return d;
	}
	return -1;
}

static void setup_jvm_counts(struct jni_trace *t)
{
	const char *p = t->info.libjvm_open;
	uint64_t g, w;

	t->count_field = decode_count_field(p);
	if (t->count_field < 0 ||
	    elf_symbol_lookup(p, "_ZN10JNIHandles15_global_handlesE", &g, NULL) ||
	    elf_symbol_lookup(p, "_ZN10JNIHandles20_weak_global_handlesE", &w, NULL))
		return;
	t->global_handles_addr = g + t->info.libjvm_bias;
	t->weak_handles_addr = w + t->info.libjvm_bias;
	t->info.jvm_counts = true;
}

int jni_trace_jvm_counts(struct jni_trace *t, uint64_t *global, uint64_t *weak)
{
	uint64_t storage, v[2];
	uint64_t addrs[2] = { t->global_handles_addr, t->weak_handles_addr };
	int ret;

	if (!t->info.jvm_counts)
		return -ENOTSUP;
	for (int i = 0; i < 2; i++) {
		ret = proc_read(t->pid, addrs[i], &storage, sizeof(storage));
		if (ret)
			return ret;
		if (!storage)
			return -EAGAIN; /* JVM still starting */
		ret = proc_read(t->pid, storage + (uint64_t)t->count_field, &v[i], sizeof(v[i]));
		if (ret)
			return ret;
		if (v[i] > (1ull << 40))
			return -ENOTSUP; /* not a count: layout differs */
	}
	*global = v[0];
	*weak = v[1];
	return 0;
}

/* libjvm.so in pid's mappings: its path and the start of its offset-0
 * mapping. Line by line: a maps line without a path must not run into the
 * next one. */
static int find_libjvm(pid_t pid, char *path, size_t len, uint64_t *start)
{
	char maps[64], line[PATH_MAX + 256];
	FILE *f;
	int ret = -ENOENT;

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	f = fopen(maps, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e, off, ino;
		unsigned maj, min;
		char perms[8];
		int pos = 0;
		char *p;
		size_t n;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &s, &e, perms, &off, &maj, &min,
			   &ino, &pos) < 7 || off)
			continue;
		p = line + pos;
		p[strcspn(p, "\n")] = 0;
		n = strlen(p);
		if (*p != '/' || n < 10 || strcmp(p + n - 10, "/libjvm.so") || n >= len)
			continue;
		memcpy(path, p, n + 1);
		*start = s;
		ret = 0;
		break;
	}
	fclose(f);
	return ret;
}

int jni_trace_new(pid_t pid, struct jni_trace **out, char *err, size_t errlen)
{
	struct jni_usdt_arg args[JNI_USDT_MAX] = {};
	char usdt_missing[512], sym_missing[256];
	const char *force = getenv("MEMDRIFT_JNI_PROBES");
	struct jni_trace *t;
	uint64_t start = 0, addr;
	int ret;

	t = calloc(1, sizeof(*t));
	if (!t)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	t->pid = pid;
	ret = find_libjvm(pid, t->info.libjvm, sizeof(t->info.libjvm), &start);
	if (ret) {
		free(t);
		return set_err(err, errlen, ret == -ENOENT ? -ENOENT : ret,
			       "pid %d: no libjvm.so mapped (not a HotSpot JVM)", (int)pid);
	}
	snprintf(t->info.libjvm_open, sizeof(t->info.libjvm_open), "/proc/%d/root%s", (int)pid,
		 t->info.libjvm);
	t->info.libjvm_bias = start - first_load_base(t->info.libjvm_open);
	t->info.checked_wrappers =
		!elf_symbol_lookup(t->info.libjvm_open, "checked_jni_NewGlobalRef", &addr, NULL);

	usdt_missing[0] = sym_missing[0] = 0;
	ret = -ENOENT;
	if (!force || strcmp(force, "symtab"))
		ret = pick_usdt(t, args, usdt_missing, sizeof(usdt_missing));
	if (!ret) {
		t->info.mode = JNI_PROBES_USDT;
	} else if (!force || strcmp(force, "usdt")) {
		ret = pick_symtab(t, sym_missing, sizeof(sym_missing));
		t->info.mode = JNI_PROBES_SYMTAB;
	}
	if (ret) {
		ret = set_err(err, errlen, -ENOENT,
			      "%s: no usable JNI probes: USDT missing %s; .symtab missing %s "
			      "(a stripped libjvm: install its debug symbols, e.g. openjdk-17-dbg)",
			      t->info.libjvm, usdt_missing[0] ? usdt_missing : "(not tried)",
			      sym_missing[0] ? sym_missing : "(not tried)");
		free(t);
		return ret;
	}
	{
		size_t len = 0;

		len += (size_t)snprintf(t->info.probes, sizeof(t->info.probes), "%s:",
					t->info.mode == JNI_PROBES_USDT ? "usdt hotspot_jni" : "symtab");
		for (int i = 0; i < 4 && len < sizeof(t->info.probes); i++)
			len += (size_t)snprintf(t->info.probes + len, sizeof(t->info.probes) - len,
						" %s%s@0x%llx", t->points[i].what,
						t->points[i].retprobe ? "(ret)" : "",
						(unsigned long long)t->points[i].offset);
	}
	setup_jvm_counts(t);

	t->skel = jni_bpf__open();
	if (!t->skel) {
		ret = set_err(err, errlen, -errno ? -errno : -ENOMEM, "open jni BPF object");
		free(t);
		return ret;
	}
	t->skel->rodata->targ_tgid = (__u32)pid;
	memcpy((void *)t->skel->rodata->jni_usdt_args, args, sizeof(args));
	{
		bool usdt = t->info.mode == JNI_PROBES_USDT;

		bpf_program__set_autoload(t->skel->progs.jni_usdt_new_global, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_usdt_new_weak, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_usdt_del_global, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_usdt_del_weak, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_new_global_ret, !usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_new_weak_ret, !usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_del_global, !usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_del_weak, !usdt);
	}
	ret = jni_bpf__load(t->skel);
	if (ret) {
		jni_bpf__destroy(t->skel);
		free(t);
		return set_err(err, errlen, ret, "load jni BPF programs: %s", strerror(-ret));
	}
	*out = t;
	return 0;
}

int jni_trace_attach(struct jni_trace *t, char *err, size_t errlen)
{
	struct bpf_program *progs[4];

	if (t->info.mode == JNI_PROBES_USDT) {
		progs[0] = t->skel->progs.jni_usdt_new_global;
		progs[1] = t->skel->progs.jni_usdt_new_weak;
		progs[2] = t->skel->progs.jni_usdt_del_global;
		progs[3] = t->skel->progs.jni_usdt_del_weak;
	} else {
		progs[0] = t->skel->progs.jni_up_new_global_ret;
		progs[1] = t->skel->progs.jni_up_new_weak_ret;
		progs[2] = t->skel->progs.jni_up_del_global;
		progs[3] = t->skel->progs.jni_up_del_weak;
	}
	/* Deletes first: a ref created between two attaches is then never
	 * mistaken for one that existed before attach. */
	for (int k = 0; k < 4; k++) {
		int i = (k + 2) % 4;

		t->links[i] = bpf_program__attach_uprobe(progs[i], t->points[i].retprobe, t->pid,
							 t->info.libjvm_open, t->points[i].offset);
		if (!t->links[i]) {
			int ret = -errno;

			for (int j = 0; j < 4; j++) {
				bpf_link__destroy(t->links[j]);
				t->links[j] = NULL;
			}
			return set_err(err, errlen, ret, "attach %s at %s+0x%llx: %s", t->points[i].what,
				       t->info.libjvm, (unsigned long long)t->points[i].offset,
				       strerror(-ret));
		}
	}
	return 0;
}

const struct jni_trace_info *jni_trace_info(const struct jni_trace *t)
{
	return &t->info;
}

int jni_trace_read_sites(struct jni_trace *t, struct jni_site *out, size_t max, size_t *n)
{
	int fd = bpf_map__fd(t->skel->maps.jni_sites);
	struct jni_site_key key, next;
	struct jni_site_counts c;
	void *prev = NULL;

	*n = 0;
	while (*n < max && !bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &c))
			continue; /* removed meanwhile (never: sites are only added) */
		out[(*n)++] = (struct jni_site){ key.stackid, key.kind, c.created, c.deleted };
	}
	return 0;
}

int jni_trace_read_stack(struct jni_trace *t, __s32 stackid, uint64_t *ips, size_t max, size_t *n)
{
	uint64_t buf[JNI_STACK_DEPTH];
	__u32 id = (__u32)stackid;

	*n = 0;
	if (stackid < 0 || bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.jni_stacks), &id, buf))
		return -ENOENT;
	for (size_t i = 0; i < JNI_STACK_DEPTH && *n < max && buf[i]; i++)
		ips[(*n)++] = buf[i];
	return 0;
}

void jni_trace_stats(const struct jni_trace *t, uint64_t stats[JNI_STAT_MAX])
{
	for (int i = 0; i < JNI_STAT_MAX; i++)
		stats[i] = __atomic_load_n(&t->skel->bss->jni_stats[i], __ATOMIC_RELAXED);
}

void jni_trace_free(struct jni_trace *t)
{
	if (!t)
		return;
	for (int i = 0; i < 4; i++)
		bpf_link__destroy(t->links[i]);
	jni_bpf__destroy(t->skel);
	free(t);
}
