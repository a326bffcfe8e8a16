/* Addresses of runtime globals. .symtab when present; in stripped binaries
 * from RIP-relative operands of runtime functions that pclntab still names.
 * Each pattern below was checked against .symtab of the same binary for
 * Go 1.19, 1.21, 1.22, 1.23, 1.24 (plain, PIE, cgo); tests/unit/test_gobin.c
 * repeats that check on every run. */
#include <capstone/capstone.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "binary/gobin.h"
#include "binary/gobin_internal.h"

#define MAX_FUNC_BYTES (64u << 10)
#define MAX_INSNS 8192

struct insn {
	unsigned id;
	uint64_t addr;
	bool lock;
	bool rip_mem;          /* has a [rip+disp] operand */
	uint64_t rip_target;
	bool load8;            /* mov r64, qword [rip+disp] */
	x86_reg dst;           /* first operand register, if any */
	x86_reg src;           /* second operand register, if any */
	bool has_imm;
	int64_t imm;           /* immediate operand, if any */
	x86_reg mem_base;      /* base of a non-RIP memory operand */
	int64_t mem_disp;
	uint64_t call_target;  /* direct call, else 0 */
};

struct decoded {
	struct insn *v;
	size_t n;
};

static int decode_func(const struct gobin *bin, csh cs, const char *fname, struct insn *buf,
		       size_t max, size_t *count)
{
	struct gobin_func f;
	const uint8_t *code;
	size_t avail, size, n = 0;
	uint64_t addr;
	cs_insn *ci;

	if (gobin_func_by_name(bin, fname, &f) != 0 || f.end <= f.entry)
		return -ENOENT;
	size = f.end - f.entry;
	if (size > MAX_FUNC_BYTES)
		size = MAX_FUNC_BYTES;
	code = gobin_vaddr_ptr(bin, f.entry, &avail);
	if (!code)
		return -ENOENT;
	if (size > avail)
		size = avail;
	ci = cs_malloc(cs);
	if (!ci)
		return -ENOMEM;
	addr = f.entry;
	while (n < max && cs_disasm_iter(cs, &code, &size, &addr, ci)) {
		const cs_x86 *x = &ci->detail->x86;
		struct insn *in = &buf[n++];

		memset(in, 0, sizeof(*in));
		in->id = ci->id;
		in->addr = ci->address;
		in->lock = x->prefix[0] == X86_PREFIX_LOCK;
		for (int i = 0; i < x->op_count; i++) {
			const cs_x86_op *op = &x->operands[i];

			if (op->type == X86_OP_REG && i == 0)
				in->dst = op->reg;
			if (op->type == X86_OP_REG && i == 1)
				in->src = op->reg;
			if (op->type == X86_OP_IMM) {
				in->has_imm = true;
				in->imm = op->imm;
			}
			if (op->type == X86_OP_MEM && op->mem.base == X86_REG_RIP &&
			    op->mem.index == X86_REG_INVALID) {
				in->rip_mem = true;
				in->rip_target = ci->address + ci->size + (uint64_t)op->mem.disp;
				if (ci->id == X86_INS_MOV && i == 1 && op->size == 8 &&
				    x->operands[0].type == X86_OP_REG)
					in->load8 = true;
			} else if (op->type == X86_OP_MEM) {
				in->mem_base = op->mem.base;
				in->mem_disp = op->mem.disp;
			}
			if (ci->id == X86_INS_CALL && op->type == X86_OP_IMM)
				in->call_target = (uint64_t)op->imm;
		}
	}
	cs_free(ci, 1);
	*count = n;
	return n ? 0 : -ENOENT;
}

static uint64_t func_entry(const struct gobin *bin, const char *name)
{
	struct gobin_func f;

	return gobin_func_by_name(bin, name, &f) == 0 ? f.entry : 0;
}

/* The nth (0-based) `mov r64, [rip+X]` of the function. */
static int nth_load(const struct decoded *d, int nth, uint64_t *addr)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->v[i].load8 && nth-- == 0) {
			*addr = d->v[i].rip_target;
			return 0;
		}
	}
	return -ENOENT;
}

/* `lea rax, [rip+X]` whose next call, at most 3 instructions on (NOPs not
 * counted: alignment padding before calls), goes to callee: X is the call's
 * receiver, the first argument register of Go's ABIInternal. (Other leas
 * may sit as close: 1.26's (*mcentral).grow loads gc.SizeClassToNPages into
 * RSI one instruction before loading &mheap_.) */
static int lea_before_call(const struct gobin *bin, const struct decoded *d, const char *callee,
			   uint64_t *addr)
{
	uint64_t target = func_entry(bin, callee);

	if (!target)
		return -ENOENT;
	for (size_t i = 0; i < d->n; i++) {
		if (d->v[i].id != X86_INS_LEA || !d->v[i].rip_mem || d->v[i].dst != X86_REG_RAX)
			continue;
		for (size_t j = i + 1, seen = 0; j < d->n && seen < 3; j++) {
			if (d->v[j].id == X86_INS_NOP)
				continue;
			seen++;
			if (d->v[j].id == X86_INS_CALL) {
				if (d->v[j].call_target == target) {
					*addr = d->v[i].rip_target;
					return 0;
				}
				break;
			}
		}
	}
	return -ENOENT;
}

/* The nth `lea reg, [rip+X]` directly followed by `lock xadd [reg], r`
 * (atomic.Xadd64(&global, n)). */
static int nth_lea_xadd(const struct decoded *d, int nth, uint64_t *addr)
{
	for (size_t i = 0; i + 1 < d->n; i++) {
		const struct insn *a = &d->v[i], *b = &d->v[i + 1];

		if (a->id == X86_INS_LEA && a->rip_mem && b->id == X86_INS_XADD && b->lock &&
		    b->mem_base == a->dst && b->mem_disp == 0 && nth-- == 0) {
			*addr = a->rip_target;
			return 0;
		}
	}
	return -ENOENT;
}

/* `mov r, 16; lea reg, [rip+X]; lock xadd [reg], r`: sched.goidgen.Add(_GoidCacheBatch),
 * goidgen being the first field of schedt. Other Xadds in newproc1 add 1. */
static int goidgen_xadd(const struct decoded *d, uint64_t *addr)
{
	for (size_t i = 1; i + 1 < d->n; i++) {
		const struct insn *m = &d->v[i - 1], *a = &d->v[i], *b = &d->v[i + 1];

		if (a->id == X86_INS_LEA && a->rip_mem && b->id == X86_INS_XADD && b->lock &&
		    b->mem_base == a->dst && b->mem_disp == 0 && m->id == X86_INS_MOV &&
		    m->has_imm && m->imm == 16) {
			*addr = a->rip_target;
			return 0;
		}
	}
	return -ENOENT;
}

/* First `lea reg, [rip+X]` after the first call to the lock function
 * (mexit: lock(&sched.lock); for pprev := &allm; ...). */
static int lea_after_lock(const struct gobin *bin, const struct decoded *d, uint64_t *addr)
{
	uint64_t lock2 = func_entry(bin, "runtime.lock2"), lock = func_entry(bin, "runtime.lock");
	size_t i = 0;

	for (; i < d->n; i++)
		if (d->v[i].id == X86_INS_CALL && d->v[i].call_target &&
		    (d->v[i].call_target == lock2 || d->v[i].call_target == lock))
			break;
	for (i++; i < d->n; i++) {
		if (d->v[i].id == X86_INS_CALL)
			return -ENOENT;
		if (d->v[i].id == X86_INS_LEA && d->v[i].rip_mem) {
			*addr = d->v[i].rip_target;
			return 0;
		}
	}
	return -ENOENT;
}

enum rule_kind {
	RULE_NTH_LOAD, RULE_LEA_BEFORE_CALL, RULE_NTH_LEA_XADD, RULE_LEA_AFTER_LOCK, RULE_GOIDGEN,
};

struct global_rule {
	const char *global;
	const char *func;
	enum rule_kind kind;
	int nth;
	const char *callee;
};

static const struct global_rule rules[] = {
	/* forEachGRace: n := atomic.Loaduintptr(&allglen); ptr := atomic.Loadp(&allgptr) */
	{ "runtime.allglen", "runtime.forEachGRace", RULE_NTH_LOAD, 0, NULL },
	{ "runtime.allgptr", "runtime.forEachGRace", RULE_NTH_LOAD, 1, NULL },
	/* refill: gcController.update(...) */
	{ "runtime.gcController", "runtime.(*mcache).refill", RULE_LEA_BEFORE_CALL, 0,
	  "runtime.(*gcControllerState).update" },
	/* refill and grow: memstats.heapStats.acquire(), heapStats is field 0 */
	{ "runtime.memstats", "runtime.(*mcache).refill", RULE_LEA_BEFORE_CALL, 0,
	  "runtime.(*consistentHeapStats).acquire" },
	{ "runtime.memstats", "runtime.(*mheap).grow", RULE_LEA_BEFORE_CALL, 0,
	  "runtime.(*consistentHeapStats).acquire" },
	/* mexit: atomic.Xadd64(&ncgocall, int64(mp.ncgocall)) */
	{ "runtime.ncgocall", "runtime.mexit", RULE_NTH_LEA_XADD, 0, NULL },
	{ "runtime.allm", "runtime.mexit", RULE_LEA_AFTER_LOCK, 0, NULL },
	/* mProf_FlushLocked: for b := mbuckets...; always linked (gcMarkTermination) */
	{ "runtime.mbuckets", "runtime.mProf_FlushLocked", RULE_NTH_LOAD, 0, NULL },
	/* allocmcache: c.nextSample = nextSample() reads MemProfileRate first */
	{ "runtime.MemProfileRate", "runtime.allocmcache", RULE_NTH_LOAD, 0, NULL },
	/* newproc1: newg.goid = sched.goidgen.Add(...), goidgen is field 0 */
	{ "runtime.sched", "runtime.newproc1", RULE_GOIDGEN, 0, NULL },
	/* grow: s := mheap_.alloc(npages, c.spanclass); allocLarge:
	 * s := mheap_.alloc(npages, spc) (1.21 pads the call with a NOP) */
	{ "runtime.mheap_", "runtime.(*mcentral).grow", RULE_LEA_BEFORE_CALL, 0,
	  "runtime.(*mheap).alloc" },
	{ "runtime.mheap_", "runtime.(*mcache).allocLarge", RULE_LEA_BEFORE_CALL, 0,
	  "runtime.(*mheap).alloc" },
};

static const char *const global_names[] = {
	"runtime.allglen", "runtime.allgptr", "runtime.gcController", "runtime.memstats",
	"runtime.ncgocall", "runtime.allm", "runtime.mbuckets", "runtime.MemProfileRate",
	"runtime.sched", "runtime.mheap_",
};

/* A recovered address must lie in a writable segment (data or bss). */
static bool in_data(const struct gobin *bin, uint64_t addr)
{
	for (int i = 0; i < bin->nsegs; i++) {
		const struct gobin_segment *s = &bin->segs[i];

		if ((s->flags & PF_W) && addr >= s->vaddr && addr - s->vaddr < s->memsz)
			return true;
	}
	return false;
}

static int apply_rule(const struct gobin *bin, csh cs, const struct global_rule *r,
		      struct insn *buf, uint64_t *addr)
{
	struct decoded d = { .v = buf };
	int ret;

	ret = decode_func(bin, cs, r->func, buf, MAX_INSNS, &d.n);
	if (ret)
		return ret;
	switch (r->kind) {
	case RULE_NTH_LOAD: ret = nth_load(&d, r->nth, addr); break;
	case RULE_LEA_BEFORE_CALL: ret = lea_before_call(bin, &d, r->callee, addr); break;
	case RULE_NTH_LEA_XADD: ret = nth_lea_xadd(&d, r->nth, addr); break;
	case RULE_LEA_AFTER_LOCK: ret = lea_after_lock(bin, &d, addr); break;
	case RULE_GOIDGEN: ret = goidgen_xadd(&d, addr); break;
	default: ret = -ENOENT;
	}
	if (ret == 0 && !in_data(bin, *addr))
		ret = -ENOENT;
	return ret;
}

static int from_code(const struct gobin *bin, csh cs, struct insn *insn_buf, const char *name,
		     uint64_t *addr)
{
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		if (strcmp(rules[i].global, name) != 0)
			continue;
		if (apply_rule(bin, cs, &rules[i], insn_buf, addr) == 0)
			return 0;
	}
	return -ENOENT;
}

static int open_capstone(const struct gobin *bin, csh *cs)
{
	if (bin->machine != EM_X86_64)
		return -ENOTSUP;
	if (cs_open(CS_ARCH_X86, CS_MODE_64, cs) != CS_ERR_OK)
		return -ENOMEM;
	cs_option(*cs, CS_OPT_DETAIL, CS_OPT_ON);
	return 0;
}

int gobin_global_from_code(const struct gobin *bin, const char *name, uint64_t *addr)
{
	struct insn *buf;
	csh cs;
	int ret;

	if (open_capstone(bin, &cs))
		return -ENOENT;
	buf = malloc(MAX_INSNS * sizeof(*buf));
	ret = buf ? from_code(bin, cs, buf, name, addr) : -ENOMEM;
	free(buf);
	cs_close(&cs);
	return ret;
}

void gobin_globals_recover(struct gobin *bin)
{
	struct insn *buf;
	csh cs;

	bin->nglobals = 0;
	if (bin->has_symtab || open_capstone(bin, &cs) != 0)
		return; /* gobin_global() reads .symtab directly */
	buf = malloc(MAX_INSNS * sizeof(*buf));
	if (!buf) {
		cs_close(&cs);
		return;
	}
	for (size_t i = 0; i < sizeof(global_names) / sizeof(global_names[0]); i++) {
		uint64_t addr;

		if (bin->nglobals == GOBIN_MAX_GLOBALS)
			break;
		if (from_code(bin, cs, buf, global_names[i], &addr) == 0)
			bin->globals[bin->nglobals++] =
				(struct gobin_global_entry){ global_names[i], addr };
		else
			log_debug("%s: %s not found in code", bin->path, global_names[i]);
	}
	free(buf);
	cs_close(&cs);
}
