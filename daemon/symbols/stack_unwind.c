/* User-space unwinder over a copied stack window. See stack_unwind.h. */
#include "symbols/stack_unwind.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "discover/proc.h"
#include "symbols/hotspot.h"

#define UW_MAX_MAPS 8192
#define UW_MAX_OBJS 512

/* x86-64 DWARF register numbers */
#define DW_RBP 6
#define DW_RSP 7
#define DW_RA 16

struct uw_obj {
	char path[PATH_MAX];
	int fd;
	Elf *elf;
	Dwarf_CFI *cfi; /* NULL: no .eh_frame */
	bool tried;
};

struct uw_map {
	uint64_t start, end, pgoff;
	int64_t link_delta; /* link-time address = pc + link_delta */
	struct uw_obj *obj;
	bool anon;
};

struct stack_unwinder {
	pid_t pid;
	struct hotspot *hs;
	struct uw_map *maps;
	size_t nmaps;
	struct uw_obj *objs[UW_MAX_OBJS];
	size_t nobjs;
};

const char *uw_how_name(enum uw_how how)
{
	switch (how) {
	case UW_REGS: return "regs";
	case UW_CFI: return "cfi";
	case UW_FP: return "fp";
	case UW_JAVA: return "java";
	}
	return "?";
}

static struct uw_obj *obj_get(struct stack_unwinder *u, const char *path)
{
	struct uw_obj *o;

	for (size_t i = 0; i < u->nobjs; i++)
		if (!strcmp(u->objs[i]->path, path))
			return u->objs[i];
	if (u->nobjs == UW_MAX_OBJS)
		return NULL;
	o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	snprintf(o->path, sizeof(o->path), "%s", path);
	o->fd = -1;
	u->objs[u->nobjs++] = o;
	return o;
}

/* Opens the object (through the target's root) and its .eh_frame CFI. */
static void obj_load(struct stack_unwinder *u, struct uw_obj *o)
{
	char p[PATH_MAX + 32];

	if (o->tried)
		return;
	o->tried = true;
	snprintf(p, sizeof(p), "/proc/%d/root%s", (int)u->pid, o->path);
	o->fd = open(p, O_RDONLY | O_CLOEXEC);
	if (o->fd < 0)
		return;
	o->elf = elf_begin(o->fd, ELF_C_READ_MMAP, NULL);
	if (o->elf)
		o->cfi = dwarf_getcfi_elf(o->elf);
}

/* link-time address delta of a mapping: the PT_LOAD holding its file offset. */
static int64_t map_delta(struct uw_obj *o, uint64_t start, uint64_t pgoff)
{
	size_t n;

	if (!o->elf || elf_getphdrnum(o->elf, &n))
		return (int64_t)pgoff - (int64_t)start;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(o->elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (pgoff >= (ph.p_offset & ~(uint64_t)4095) && pgoff < ph.p_offset + ph.p_filesz)
			return (int64_t)(ph.p_vaddr - ph.p_offset) + (int64_t)pgoff - (int64_t)start;
	}
	return (int64_t)pgoff - (int64_t)start;
}

static int refresh_cb(const struct proc_map *pm, void *ctx)
{
	struct stack_unwinder *u = ctx;
	char path[PATH_MAX];
	struct uw_map *m;

	if (pm->perms[2] != 'x')
		return 0;
	if (u->nmaps >= UW_MAX_MAPS)
		return 1;
	m = &u->maps[u->nmaps++];
	*m = (struct uw_map){ .start = pm->start, .end = pm->end, .pgoff = pm->offset };
	if (!pm->path_len || pm->path[0] != '/' || pm->path_len >= sizeof(path)) {
		m->anon = true;
		return 0;
	}
	snprintf(path, sizeof(path), "%.*s", (int)pm->path_len, pm->path);
	m->obj = obj_get(u, path);
	if (m->obj) {
		obj_load(u, m->obj);
		m->link_delta = map_delta(m->obj, pm->start, pm->offset);
	}
	return 0;
}

int stack_unwinder_refresh(struct stack_unwinder *u)
{
	int ret;

	u->nmaps = 0;
	ret = proc_maps_foreach_pid(u->pid, refresh_cb, u);
	return ret < 0 ? ret : 0;
}

int stack_unwinder_new(pid_t pid, struct hotspot *hs, struct stack_unwinder **out)
{
	struct stack_unwinder *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	elf_version(EV_CURRENT);
	u->pid = pid;
	u->hs = hs;
	u->maps = calloc(UW_MAX_MAPS, sizeof(*u->maps));
	if (!u->maps) {
		free(u);
		return -ENOMEM;
	}
	ret = stack_unwinder_refresh(u);
	if (ret) {
		stack_unwinder_free(u);
		return ret;
	}
	*out = u;
	return 0;
}

void stack_unwinder_free(struct stack_unwinder *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->nobjs; i++) {
		/* dwarf_getcfi_elf's CFI is released before its Elf */
		if (u->objs[i]->cfi)
			dwarf_cfi_end(u->objs[i]->cfi);
		if (u->objs[i]->elf)
			elf_end(u->objs[i]->elf);
		if (u->objs[i]->fd >= 0)
			close(u->objs[i]->fd);
		free(u->objs[i]);
	}
	free(u->maps);
	free(u);
}

size_t stack_unwinder_exec_ranges(const struct stack_unwinder *u, uint64_t *lo, uint64_t *hi,
				  size_t max)
{
	uint64_t last = 0;
	size_t n = 0;

	for (size_t i = 0; i < u->nmaps; i++) {
		if (n && last == u->maps[i].start) {
			last = u->maps[i].end;
			if (n <= max)
				hi[n - 1] = last;
			continue;
		}
		last = u->maps[i].end;
		if (n < max) {
			lo[n] = u->maps[i].start;
			hi[n] = last;
		}
		n++;
	}
	return n;
}

static const struct uw_map *map_for(const struct stack_unwinder *u, uint64_t pc)
{
	for (size_t i = 0; i < u->nmaps; i++)
		if (pc >= u->maps[i].start && pc < u->maps[i].end)
			return &u->maps[i];
	return NULL;
}

/* The copied window */
struct win {
	const uint8_t *mem;
	uint64_t base;
	size_t len;
};

static bool win_read(const struct win *w, uint64_t addr, uint64_t *v)
{
	if (addr < w->base || addr + 8 > w->base + w->len || addr + 8 < addr)
		return false;
	memcpy(v, w->mem + (addr - w->base), 8);
	return true;
}

struct regs {
	uint64_t pc, sp, bp;
};

/* A small DWARF expression evaluator for CFI rules: what .eh_frame
 * uses in practice (register + offset, cfa + offset, PLT expressions). */
static int eval_ops(const Dwarf_Op *ops, size_t n, const struct regs *r, uint64_t cfa,
		    const struct win *w, uint64_t *out, bool *is_value)
{
	uint64_t st[16];
	size_t sp = 0;

	*is_value = false;
	for (size_t i = 0; i < n; i++) {
		uint8_t op = ops[i].atom;

		if (sp >= 15)
			return -E2BIG;
		if ((op >= DW_OP_breg0 && op <= DW_OP_breg31) || op == DW_OP_bregx) {
			unsigned reg = op == DW_OP_bregx ? (unsigned)ops[i].number : (unsigned)(op - DW_OP_breg0);
			int64_t off = op == DW_OP_bregx ? (int64_t)ops[i].number2 : (int64_t)ops[i].number;
			uint64_t base;

			if (reg == DW_RSP)
				base = r->sp;
			else if (reg == DW_RBP)
				base = r->bp;
			else
				return -ENOTSUP;
			st[sp++] = base + (uint64_t)off;
			continue;
		}
		if (op >= DW_OP_lit0 && op <= DW_OP_lit31) {
			st[sp++] = op - DW_OP_lit0;
			continue;
		}
		switch (op) {
		case DW_OP_call_frame_cfa: st[sp++] = cfa; break;
		case DW_OP_const1u: case DW_OP_const2u: case DW_OP_const4u: case DW_OP_const8u:
		case DW_OP_constu: st[sp++] = ops[i].number; break;
		case DW_OP_const1s: case DW_OP_const2s: case DW_OP_const4s: case DW_OP_const8s:
		case DW_OP_consts: st[sp++] = (uint64_t)(int64_t)ops[i].number; break;
		case DW_OP_plus_uconst:
			if (!sp)
				return -EINVAL;
			st[sp - 1] += ops[i].number;
			break;
		case DW_OP_plus: case DW_OP_minus: case DW_OP_and: case DW_OP_shl: case DW_OP_ge:
		case DW_OP_lt: case DW_OP_gt: case DW_OP_le: {
			uint64_t b, a;

			if (sp < 2)
				return -EINVAL;
			b = st[--sp];
			a = st[sp - 1];
			st[sp - 1] = op == DW_OP_plus ? a + b : op == DW_OP_minus ? a - b
				   : op == DW_OP_and ? a & b : op == DW_OP_shl ? a << (b & 63)
				   : op == DW_OP_ge ? (int64_t)a >= (int64_t)b
				   : op == DW_OP_lt ? (int64_t)a < (int64_t)b
				   : op == DW_OP_gt ? (int64_t)a > (int64_t)b : (int64_t)a <= (int64_t)b;
			break;
		}
		case DW_OP_deref:
			if (!sp || !win_read(w, st[sp - 1], &st[sp - 1]))
				return -EFAULT;
			break;
		case DW_OP_stack_value: *is_value = true; break;
		default: return -ENOTSUP;
		}
	}
	if (!sp)
		return -EINVAL;
	*out = st[sp - 1];
	return 0;
}

/* One native frame by CFI: 1 done, 0 no CFI here, <0 stop. */
static int step_cfi(const struct uw_map *m, struct regs *r, bool leaf, const struct win *w,
		    const char **why)
{
	Dwarf_Frame *fr = NULL;
	Dwarf_Op *ops, mem[3];
	size_t nops;
	uint64_t cfa, ra, bp = r->bp, v;
	bool isv;
	uint64_t at = (uint64_t)((int64_t)r->pc + m->link_delta) - (leaf ? 0 : 1);

	if (!m->obj || !m->obj->cfi || dwarf_cfi_addrframe(m->obj->cfi, at, &fr))
		return 0;
	if (dwarf_frame_cfa(fr, &ops, &nops) || !nops ||
	    eval_ops(ops, nops, r, 0, w, &cfa, &isv)) {
		free(fr);
		*why = "cfa rule";
		return -1;
	}
	if (dwarf_frame_register(fr, DW_RA, mem, &ops, &nops)) {
		free(fr);
		*why = "ra rule";
		return -1;
	}
	if (!nops) {
		free(fr);
		*why = "end"; /* return address undefined: outermost frame */
		return -1;
	}
	if (eval_ops(ops, nops, r, cfa, w, &v, &isv) || (!isv && !win_read(w, v, &v))) {
		free(fr);
		*why = "window";
		return -1;
	}
	ra = v;
	if (!dwarf_frame_register(fr, DW_RBP, mem, &ops, &nops)) {
		if (nops && !eval_ops(ops, nops, r, cfa, w, &v, &isv) && (isv || win_read(w, v, &v)))
			bp = v;
		else if (!nops && ops == mem)
			bp = 0; /* undefined */
	}
	free(fr);
	r->pc = ra;
	r->sp = cfa;
	r->bp = bp;
	return 1;
}

static int step_fp(struct regs *r, const struct win *w)
{
	uint64_t nbp, ra;

	if (!win_read(w, r->bp, &nbp) || !win_read(w, r->bp + 8, &ra))
		return -1;
	r->sp = r->bp + 16;
	r->pc = ra;
	r->bp = nbp;
	return 0;
}

size_t stack_unwind(struct stack_unwinder *u, uint64_t ip, uint64_t sp, uint64_t bp,
		    const uint8_t *stack, size_t len, struct uw_frame *out, size_t max, char *stop,
		    size_t stoplen)
{
	struct win w = { stack, sp, len };
	struct regs r = { ip, sp, bp };
	enum uw_how how = UW_REGS;
	const char *why = "depth";
	size_t n = 0;

	while (n < max) {
		struct uw_frame *f = &out[n];
		const struct uw_map *m;
		struct hotspot_blob b;
		uint64_t prev_sp = r.sp;

		if (!r.pc) {
			why = "end";
			break;
		}
		memset(f, 0, sizeof(*f));
		f->pc = r.pc;
		f->how = how;
		n++;
		if (u->hs && !hotspot_find_blob(u->hs, r.pc, &b) && b.kind != HS_BLOB_NONE) {
			uint64_t v, sender;

			snprintf(f->name, sizeof(f->name), "%s", b.name);
			how = UW_JAVA;
			switch (b.kind) {
			case HS_BLOB_INTERPRETER:
				f->kind = UW_JAVA_INTERP;
				if (!win_read(&w, r.bp + 8 * HOTSPOT_INTERP_METHOD_SLOT, &f->method)) {
					why = "window";
					goto out;
				}
				if (!win_read(&w, r.bp + 8 * HOTSPOT_INTERP_SENDER_SP_SLOT, &sender) ||
				    step_fp(&r, &w)) {
					why = "window";
					goto out;
				}
				r.sp = sender;
				break;
			case HS_BLOB_NMETHOD:
			case HS_BLOB_NATIVE:
			case HS_BLOB_STUB:
				f->kind = b.kind == HS_BLOB_NMETHOD ? UW_JAVA_JIT
					  : b.kind == HS_BLOB_NATIVE ? UW_JAVA_NATIVE : UW_JIT_STUB;
				f->method = b.method;
				if (b.kind == HS_BLOB_NATIVE && b.method) {
					char tmp[8];

					hotspot_method_name(u->hs, b.method, tmp, sizeof(tmp), &f->native_fn);
				}
				if (b.frame_size > 0) {
					sender = r.sp + 8 * (uint64_t)b.frame_size;
					if (!win_read(&w, sender - 8, &r.pc) || !win_read(&w, sender - 16, &v)) {
						why = "window";
						goto out;
					}
					r.sp = sender;
					r.bp = v;
				} else if (step_fp(&r, &w)) {
					why = "window";
					goto out;
				}
				break;
			default:
				f->kind = UW_JIT_UNRESOLVED;
				why = "jit code gone";
				goto out;
			}
			if (f->kind == UW_JAVA_INTERP && f->method) {
				char tmp[8];

				hotspot_method_name(u->hs, f->method, tmp, sizeof(tmp), &f->native_fn);
			}
		} else if ((m = map_for(u, r.pc)) && !m->anon) {
			const char *cwhy = NULL;
			int ret = step_cfi(m, &r, f->how == UW_REGS, &w, &cwhy);

			f->kind = UW_NATIVE;
			if (ret < 0) {
				why = cwhy;
				break;
			}
			if (ret == 1) {
				how = UW_CFI;
			} else {
				how = UW_FP;
				if (step_fp(&r, &w)) {
					why = "no unwind info";
					break;
				}
			}
		} else {
			f->kind = m ? UW_JIT_UNRESOLVED : UW_UNKNOWN;
			why = m ? "anonymous code" : "unmapped pc";
			break;
		}
		if (r.sp <= prev_sp && r.pc) {
			why = "stack not growing";
			break;
		}
	}
out:
	if (stop)
		snprintf(stop, stoplen, "%s", why);
	return n;
}
