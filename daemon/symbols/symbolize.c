/* Native symbolizer: see symbolize.h. */
#include "symbols/symbolize.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "binary/gobin.h"
#include "discover/proc.h"
#include "discover/target.h"

#define SYM_MAX_LOADS 16

struct sym_load {
	uint64_t vaddr, offset, filesz;
};

struct sym_entry {
	uint64_t addr, size;
	uint32_t name; /* offset into names */
};

/* Function symbols of one ELF, sorted by address. */
struct sym_table {
	struct sym_entry *v;
	size_t n, cap;
	char *names;
	size_t names_len, names_cap;
	struct sym_load loads[SYM_MAX_LOADS];
	size_t nloads;
};

struct sym_object {
	dev_t dev;
	ino_t ino;
	char *path;
	struct sym_table *tab; /* NULL: unreadable, no symbols */
	bool go;               /* the Go executable of the target */
};

struct sym_map {
	uint64_t start, end, pgoff;
	int object; /* index into objects, -1: not a file */
};

struct symbolizer {
	pid_t pid;
	const struct go_target *go;
	struct sym_map *maps;
	size_t nmaps;
	struct sym_object objects[SYMBOLIZE_MAX_OBJECTS];
	size_t nobjects;
};

static Elf *elf_open_path(const char *path, int *fd)
{
	Elf *elf;

	if (elf_version(EV_CURRENT) == EV_NONE)
		return NULL;
	*fd = proc_open_untrusted(path, PROC_MAX_ELF_FILE, NULL);
	if (*fd < 0) {
		*fd = -1;
		return NULL;
	}
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

static void elf_loads(Elf *elf, struct sym_load *loads, size_t *n)
{
	size_t np;

	*n = 0;
	if (elf_getphdrnum(elf, &np))
		return;
	for (size_t i = 0; i < np && *n < SYM_MAX_LOADS; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD)
			loads[(*n)++] = (struct sym_load){ ph.p_vaddr, ph.p_offset, ph.p_filesz };
	}
}

static int loads_vaddr_to_offset(const struct sym_load *l, size_t n, uint64_t vaddr, uint64_t *off)
{
	for (size_t i = 0; i < n; i++)
		if (vaddr >= l[i].vaddr && vaddr < l[i].vaddr + l[i].filesz) {
			*off = vaddr - l[i].vaddr + l[i].offset;
			return 0;
		}
	return -ENOENT;
}

static int loads_offset_to_vaddr(const struct sym_load *l, size_t n, uint64_t off, uint64_t *vaddr)
{
	for (size_t i = 0; i < n; i++)
		if (off >= l[i].offset && off < l[i].offset + l[i].filesz) {
			*vaddr = off - l[i].offset + l[i].vaddr;
			return 0;
		}
	return -ENOENT;
}

static void table_free(struct sym_table *t)
{
	if (!t)
		return;
	free(t->v);
	free(t->names);
	free(t);
}

static int table_add(struct sym_table *t, uint64_t addr, uint64_t size, const char *name)
{
	size_t len = strlen(name) + 1;

	if (t->n == SYMBOLIZE_MAX_SYMBOLS || t->names_len + len > SYMBOLIZE_MAX_NAMES)
		return -E2BIG;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		void *v = realloc(t->v, cap * sizeof(*t->v));

		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	if (t->names_len + len > t->names_cap) {
		size_t cap = t->names_cap ? t->names_cap : 65536;
		char *p;

		while (cap < t->names_len + len)
			cap *= 2;
		if (cap > UINT32_MAX || !(p = realloc(t->names, cap)))
			return -ENOMEM;
		t->names = p;
		t->names_cap = cap;
	}
	memcpy(t->names + t->names_len, name, len);
	t->v[t->n++] = (struct sym_entry){ addr, size, (uint32_t)t->names_len };
	t->names_len += len;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct sym_entry *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->size > y->size ? -1 : x->size < y->size; /* sized first */
}

static struct sym_table *table_load(const char *path)
{
	struct sym_table *t = calloc(1, sizeof(*t));
	Elf_Scn *scn = NULL;
	Elf *elf;
	int fd;

	if (!t)
		return NULL;
	elf = elf_open_path(path, &fd);
	if (!elf) {
		free(t);
		return NULL;
	}
	elf_loads(elf, t->loads, &t->nloads);
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) ||
		    !sh.sh_entsize || !(data = elf_getdata(scn, NULL)))
			continue;
		for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
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
			if (table_add(t, sym.st_value, sym.st_size, name))
				break; /* bounded: keep what fits */
		}
	}
	elf_end(elf);
	close(fd);
	if (t->n)
		qsort(t->v, t->n, sizeof(*t->v), entry_cmp);
	return t;
}

static const struct sym_entry *table_find(const struct sym_table *t, uint64_t addr)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) { /* count of symbols with addr <= target */
		size_t mid = lo + (hi - lo) / 2;

		if (t->v[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	for (size_t i = lo; i-- > 0 && t->v[i].addr == t->v[lo - 1].addr;) {
		const struct sym_entry *e = &t->v[i];

		if (addr < e->addr + (e->size ? e->size : 1))
			return e;
	}
	/* An unsized symbol (assembly) owns everything up to the next one. */
	return t->v[lo - 1].size ? NULL : &t->v[lo - 1];
}

int symbolize_elf_function(const char *path, const char *name, uint64_t *vaddr, uint64_t *size,
			   uint64_t *file_offset)
{
	struct sym_table *t = table_load(path);
	int ret = -ENOENT;

	if (!t)
		return -ENOENT;
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->names + t->v[i].name, name))
			continue;
		if (loads_vaddr_to_offset(t->loads, t->nloads, t->v[i].addr, file_offset))
			break;
		*vaddr = t->v[i].addr;
		if (size)
			*size = t->v[i].size;
		ret = 0;
		break;
	}
	table_free(t);
	return ret;
}

int symbolize_elf_symbol(const char *path, const char *name, uint64_t *vaddr, uint64_t *size,
			 uint64_t *file_offset)
{
	static const unsigned int tables[2] = { SHT_SYMTAB, SHT_DYNSYM };
	int fd, ret = -ENOENT;
	Elf *elf = elf_open_path(path, &fd);

	if (!elf)
		return -ENOENT;
	/* Scanned, not loaded into a table: data symbols too, and one lookup
	 * in a large library stays cheap. */
	for (int pass = 0; pass < 2 && ret; pass++) {
		Elf_Scn *scn = NULL;

		while (ret && (scn = elf_nextscn(elf, scn))) {
			GElf_Shdr sh;
			Elf_Data *data;

			if (!gelf_getshdr(scn, &sh) || sh.sh_type != tables[pass] || !sh.sh_entsize ||
			    !(data = elf_getdata(scn, NULL)))
				continue;
			for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
				GElf_Sym sym;
				const char *n;

				if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF ||
				    !sym.st_value)
					continue;
				n = elf_strptr(elf, sh.sh_link, sym.st_name);
				if (n && !strcmp(n, name)) {
					*vaddr = sym.st_value;
					if (size)
						*size = sym.st_size;
					ret = 0;
					break;
				}
			}
		}
	}
	if (!ret && file_offset) {
		struct sym_load loads[SYM_MAX_LOADS];
		size_t nloads;

		elf_loads(elf, loads, &nloads);
		ret = loads_vaddr_to_offset(loads, nloads, *vaddr, file_offset);
	}
	elf_end(elf);
	close(fd);
	return ret;
}

int symbolize_elf_load_base(const char *path, uint64_t *base)
{
	struct sym_load loads[SYM_MAX_LOADS];
	size_t nloads;
	int fd;
	Elf *elf = elf_open_path(path, &fd);

	if (!elf)
		return -ENOENT;
	elf_loads(elf, loads, &nloads);
	elf_end(elf);
	close(fd);
	if (!nloads)
		return -ENOENT;
	*base = loads[0].vaddr - loads[0].offset;
	return 0;
}

static int object_get(struct symbolizer *s, dev_t dev, ino_t ino, const char *path,
		      uint64_t start, uint64_t end)
{
	char open_path[PATH_MAX + 64];
	struct sym_object *o;

	for (size_t i = 0; i < s->nobjects; i++)
		if (s->objects[i].dev == dev && s->objects[i].ino == ino)
			return (int)i;
	if (s->nobjects == SYMBOLIZE_MAX_OBJECTS)
		return -1;
	o = &s->objects[s->nobjects];
	memset(o, 0, sizeof(*o));
	o->dev = dev;
	o->ino = ino;
	o->path = strdup(path);
	if (!o->path)
		return -1;
	o->go = s->go && s->go->exe.dev == dev && s->go->exe.ino == ino;
	/* map_files names the very file mapped (even if replaced on disk
	 * since); root + path is the fallback without CAP_CHECKPOINT_RESTORE. */
	snprintf(open_path, sizeof(open_path), "/proc/%d/map_files/%llx-%llx", (int)s->pid,
		 (unsigned long long)start, (unsigned long long)end);
	o->tab = table_load(open_path);
	if (!o->tab) {
		snprintf(open_path, sizeof(open_path), "/proc/%d/root%s", (int)s->pid, path);
		o->tab = table_load(open_path);
	}
	return (int)s->nobjects++;
}

static int refresh_cb(const struct proc_map *pm, void *ctx)
{
	struct symbolizer *s = ctx;
	char path[PATH_MAX];
	struct sym_map *m;

	if (pm->perms[2] != 'x')
		return 0; /* code addresses only */
	if (s->nmaps >= SYMBOLIZE_MAX_MAPS)
		return 1;
	m = &s->maps[s->nmaps++];
	*m = (struct sym_map){ pm->start, pm->end, pm->offset, -1 };
	if (pm->ino && pm->path_len && pm->path[0] == '/' && pm->path_len < sizeof(path)) {
		snprintf(path, sizeof(path), "%.*s", (int)pm->path_len, pm->path);
		m->object = object_get(s, pm->dev, (ino_t)pm->ino, path, pm->start, pm->end);
	}
	return 0;
}

int symbolizer_refresh(struct symbolizer *s)
{
	int ret;

	s->nmaps = 0;
	ret = proc_maps_foreach_pid(s->pid, refresh_cb, s);
	return ret < 0 ? ret : 0;
}

int symbolizer_new(pid_t pid, const struct go_target *go, struct symbolizer **out)
{
	struct symbolizer *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->pid = pid;
	s->go = go;
	s->maps = calloc(SYMBOLIZE_MAX_MAPS, sizeof(*s->maps));
	if (!s->maps) {
		free(s);
		return -ENOMEM;
	}
	ret = symbolizer_refresh(s);
	if (ret) {
		symbolizer_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

static const struct sym_map *map_find(const struct symbolizer *s, uint64_t addr)
{
	for (size_t i = 0; i < s->nmaps; i++)
		if (addr >= s->maps[i].start && addr < s->maps[i].end)
			return &s->maps[i];
	return NULL;
}

void symbolizer_lookup(struct symbolizer *s, uint64_t addr, bool is_return, struct sym_frame *out)
{
	uint64_t pc = is_return && addr ? addr - 1 : addr, vaddr;
	const struct sym_entry *e;
	const struct sym_object *o;
	const struct sym_map *m;

	*out = (struct sym_frame){ .addr = addr, .object = "", .function = "[unknown]",
				   .offset = addr, .file = "" };
	m = map_find(s, pc);
	if (!m)
		return;
	out->mapped = true;
	if (m->object < 0)
		return;
	o = &s->objects[m->object];
	out->object = o->path;
	if (o->go) {
		struct gobin_pcinfo pi;

		if (!gobin_pc_lookup(s->go->bin, pc - s->go->bias, &pi) && pi.func) {
			out->function = pi.func;
			out->file = pi.file ? pi.file : "";
			out->line = pi.line;
			out->offset = addr - (pi.entry + s->go->bias);
			out->go = true;
			return;
		}
		/* C code linked into the Go binary (cgo): its ELF symbols */
	}
	out->offset = addr - m->start + m->pgoff;
	if (!o->tab || loads_offset_to_vaddr(o->tab->loads, o->tab->nloads, pc - m->start + m->pgoff,
					     &vaddr))
		return;
	out->offset = vaddr + (addr - pc);
	e = table_find(o->tab, vaddr);
	if (!e)
		return;
	out->function = o->tab->names + e->name;
	out->offset = vaddr + (addr - pc) - e->addr;
}

void symbolizer_lookup_jvm(struct symbolizer *s, uint64_t ip, struct native_frame *out)
{
	struct sym_frame f;

	symbolizer_lookup(s, ip, false, &f);
	*out = (struct native_frame){ .function = f.function, .object = f.object, .offset = f.offset,
				      .in_libjvm = strstr(f.object, "/libjvm.so") != NULL };
	if (f.mapped && !*f.object)
		out->function = "[jit]";
}

int symbolizer_mapping(struct symbolizer *s, uint64_t addr, uint64_t *start, uint64_t *limit,
		       uint64_t *pgoff, const char **object)
{
	const struct sym_map *m = map_find(s, addr);

	if (!m || m->object < 0)
		return -ENOENT;
	*start = m->start;
	*limit = m->end;
	*pgoff = m->pgoff;
	*object = s->objects[m->object].path;
	return 0;
}

void symbolizer_free(struct symbolizer *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nobjects; i++) {
		free(s->objects[i].path);
		table_free(s->objects[i].tab);
	}
	free(s->maps);
	free(s);
}
