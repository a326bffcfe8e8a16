/* Go heap probes: see heap_trace.h and bpf/heap.bpf.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <capstone/capstone.h>
#include <json-c/json.h>

#include "heap_events.h"
#include "heap.skel.h"

#include "bpf_util.h"
#include "heap_trace.h"
#include "heapprof.h"
#include "heap_walk.h"
#include "log.h"
#include "pprof.h"
#include "proc.h"
#include "util.h"

#define HT_PROLOGUE_BYTES 64
/* mProf_Malloc's `call stkbucket` is within its first ~0x140 bytes (1.19-1.24). */
#define HT_MPROF_MALLOC_BYTES 1024
#define HT_BUCKET_READ (1024 + HEAP_MAX_NSTK * 8 + 512)

_Static_assert(HT_OBJ_SETS * HT_OBJ_WAYS == HT_MAX_OBJECTS, "object table size");

/* A runtime bucket memdrift knows: its stack (read once from the target)
 * and its counts at attach. */
struct bucket_info {
	uint64_t addr;
	uint64_t base_allocs, base_frees, base_alloc_bytes, base_free_bytes;
	uint64_t *stk;
	uint32_t nstk;
	uint64_t object_size; /* bucket.size, read with the stack */
	bool stack_read;   /* tried */
	bool stack_checked;
	/* filled per poll */
	struct ht_bucket_counts k;
	uint64_t live_tracked, oldest_ns;
	uint64_t walk_live;   /* its live samples in the last heap walk */
};

struct heap_trace {
	struct heap_trace_opts opts;
	struct heap_bpf *skel;
	const struct go_target *go;
	struct bpf_link *links[HEAP_PROBE_MAX];
	struct heap_probe probes[HEAP_PROBE_MAX];
	size_t nprobes;
	enum heap_profile_state state;
	char msg[256];
	int64_t rate;
	uint64_t rate_addr;
	struct heap_bucket_layout layout;
	bool have_layout;
	uint8_t *buf;

	struct bucket_info *buckets; /* sorted by addr */
	size_t nbuckets, capbuckets;

	struct heap_trace_site *sites;
	size_t nsites;
	struct heap_alloc_site *alloc_sites;
	size_t nalloc_sites;
	struct heap_rates rates;
	bool rates_valid;
	uint64_t last_poll_ns;
	uint64_t attach_ns;
	uint64_t stacks_checked, stacks_matched;
	struct ht_obj_set *objs; /* ht_objects, mapped; NULL: not mapped */

	/* Frees from the heap walk (heap_walk.h) instead of a freeSpecial
	 * probe: one probe hit per sample instead of two. */
	bool walk;
	struct heap_walk_layout wl;
	uint8_t *miss;       /* per ht_objects slot: walks in a row that lacked it */
	uint64_t *miss_ts;   /* the sample (ts) the count is about */
	struct heap_walk_stats wst; /* the last walk */
	uint64_t walks, walk_failures, walk_retired, walk_ns_last, walk_ns_max;
};

/* Walks in a row that must lack a tracked sample before it is retired: a
 * list being swept while it is read can come out short once. */
#define HT_WALK_MISSES 2

/* ------------------------------------------------------------ pure logic */

int heap_special_layout(int major, int minor, int *kind_off, unsigned *kind_profile,
			int *bucket_off)
{
	/* runtime.special{next *special; offset uint16|uintptr; kind byte}:
	 * offset became a uintptr in 1.24; _KindSpecialProfile moved from 2 to 3
	 * when weak handles took 2 in 1.23. specialprofile{special; b *bucket}. */
	if (major != 1 || minor < 17 || minor > 24)
		return -ENOTSUP;
	*kind_off = minor >= 24 ? 16 : 10;
	*kind_profile = minor >= 23 ? 3 : 2;
	*bucket_off = minor >= 24 ? 24 : 16;
	return 0;
}

bool heap_stack_matches(const uint64_t *mine, size_t nmine, const uint64_t *bucket, size_t nbucket)
{
	if (!nbucket || !nmine)
		return false;
	/* mine holds physical frames (a frame-pointer walk); the runtime may
	 * expand inlined calls into extra logical PCs between them (1.23+), so
	 * mine, from where it meets bucket[0], must be a subsequence of the
	 * bucket, until either ends (a bucket cut at its depth limit matches). */
	for (size_t k = 0; k < nmine; k++) {
		size_t i = k, j = 0;

		if (mine[k] != bucket[0])
			continue;
		while (i < nmine && j < nbucket) {
			while (j < nbucket && bucket[j] != mine[i])
				j++;
			if (j == nbucket)
				break;
			i++;
			j++;
		}
		if (i == nmine || (j == nbucket && (i == nmine || bucket[nbucket - 1] == mine[i - 1])))
			return true;
	}
	return false;
}

void heap_bucket_inuse(uint64_t base_allocs, uint64_t base_frees, uint64_t base_alloc_bytes,
		       uint64_t base_free_bytes, const struct ht_bucket_counts *k, int64_t *count,
		       int64_t *bytes)
{
	int64_t c = (int64_t)(base_allocs + k->allocs) - (int64_t)(base_frees + k->frees);
	int64_t b = (int64_t)(base_alloc_bytes + k->alloc_bytes) -
		    (int64_t)(base_free_bytes + k->free_bytes);

	/* A free seen twice (attach race) must not make a site negative. */
	*count = c > 0 ? c : 0;
	*bytes = b > 0 && c > 0 ? b : 0;
}

uint64_t heap_hist_lower(unsigned c)
{
	if (c == 0)
		return 0;
	return 1ull << (c - 1);
}

/* ------------------------------------------------------------ planning */

/* The argument registers mProf_Malloc's p and size arrive in, every width
 * of each (a write to any of them ends the argument's life in it). */
static const struct {
	enum probe_reg reg;
	x86_reg names[4];
} spill_regs[] = {
	{PROBE_REG_RAX, {X86_REG_RAX, X86_REG_EAX, X86_REG_AX, X86_REG_AL}},
	{PROBE_REG_RBX, {X86_REG_RBX, X86_REG_EBX, X86_REG_BX, X86_REG_BL}},
	{PROBE_REG_RCX, {X86_REG_RCX, X86_REG_ECX, X86_REG_CX, X86_REG_CL}},
};

static int spill_reg_index(enum probe_reg r)
{
	for (size_t i = 0; i < sizeof(spill_regs) / sizeof(spill_regs[0]); i++)
		if (spill_regs[i].reg == r)
			return (int)i;
	return -1;
}

static bool reg_is(int ri, unsigned r)
{
	if ((ri == 0 && r == X86_REG_AH) || (ri == 1 && r == X86_REG_BH) || (ri == 2 && r == X86_REG_CH))
		return true;
	for (int j = 0; j < 4; j++)
		if (spill_regs[ri].names[j] == r)
			return true;
	return false;
}

int heap_arg_spill_slot_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t until,
			    enum probe_reg reg)
{
	int ri = spill_reg_index(reg);
	const uint8_t *p = code;
	size_t left = len;
	uint64_t pc = addr;
	int64_t frame = -1;
	bool pushed = false, bp_ok = false;
	int slot = -ENOENT;
	cs_insn *insn;
	csh h;

	if (ri < 0)
		return -ENOENT;
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return -ENOMEM;
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	insn = cs_malloc(h);
	if (!insn) {
		cs_close(&h);
		return -ENOMEM;
	}
	/* Go's two amd64 prologues: `push rbp; mov rbp,rsp; sub rsp,N` (1.21+)
	 * and `sub rsp,N; mov [rsp+N-8],rbp; lea rbp,[rsp+N-8]` (older): both
	 * leave RBP = entry RSP - 8, so argument slot i (the caller's spill
	 * area) is at RBP + 16 + 8i, and `mov [rsp+D],reg` stores slot
	 * (D - N - pushed - 8) / 8. The register must still hold the argument:
	 * nothing may write it (and no call happen) before the store. */
	while (left > 0 && pc < addr + until && cs_disasm_iter(h, &p, &left, &pc, insn)) {
		const cs_x86 *x = &insn->detail->x86;
		cs_regs rd, wr;
		uint8_t nrd, nwr;
		bool written = false;

		if (insn->id == X86_INS_PUSH && frame < 0 && x->op_count == 1 &&
		    x->operands[0].type == X86_OP_REG && x->operands[0].reg == X86_REG_RBP) {
			pushed = true;
		} else if (insn->id == X86_INS_MOV && pushed && frame < 0 && x->op_count == 2 &&
			   x->operands[0].type == X86_OP_REG && x->operands[0].reg == X86_REG_RBP &&
			   x->operands[1].type == X86_OP_REG && x->operands[1].reg == X86_REG_RSP) {
			bp_ok = true;
		} else if (insn->id == X86_INS_SUB && frame < 0 && x->op_count == 2 &&
			   x->operands[0].type == X86_OP_REG && x->operands[0].reg == X86_REG_RSP &&
			   x->operands[1].type == X86_OP_IMM) {
			frame = x->operands[1].imm;
		} else if (insn->id == X86_INS_LEA && !pushed && frame >= 0 && x->op_count == 2 &&
			   x->operands[0].type == X86_OP_REG && x->operands[0].reg == X86_REG_RBP &&
			   x->operands[1].type == X86_OP_MEM && x->operands[1].mem.base == X86_REG_RSP &&
			   x->operands[1].mem.index == X86_REG_INVALID &&
			   x->operands[1].mem.disp == frame - 8) {
			bp_ok = true;
		} else if (insn->id == X86_INS_MOV && frame >= 0 && x->op_count == 2 &&
			   x->operands[0].type == X86_OP_MEM && x->operands[0].size == 8 &&
			   x->operands[0].mem.base == X86_REG_RSP &&
			   x->operands[0].mem.index == X86_REG_INVALID &&
			   x->operands[1].type == X86_OP_REG &&
			   x->operands[1].reg == spill_regs[ri].names[0]) {
			int64_t d = x->operands[0].mem.disp - frame - (pushed ? 8 : 0) - 8;

			if (d >= 0 && d % 8 == 0 && d / 8 < HT_SPILL_SLOTS)
				slot = (int)(d / 8);
			break;
		}
		if (cs_insn_group(h, insn, X86_GRP_CALL) || cs_insn_group(h, insn, X86_GRP_RET))
			break;
		/* A jump into the rest of the way to until could bypass the
		 * store (exits to cold code — return, panic — are fine). */
		if (cs_insn_group(h, insn, X86_GRP_JUMP) && x->op_count == 1 &&
		    x->operands[0].type == X86_OP_IMM && (uint64_t)x->operands[0].imm >= pc &&
		    (uint64_t)x->operands[0].imm <= addr + until)
			break;
		if (cs_regs_access(h, insn, rd, &nrd, wr, &nwr))
			break;
		for (int i = 0; i < nwr; i++)
			if (reg_is(ri, wr[i]))
				written = true;
		if (written)
			break;
	}
	cs_free(insn, 1);
	cs_close(&h);
	return bp_ok ? slot : -ENOENT;
}

static int read_prologue(const struct go_target *t, const char *name, struct gobin_func *f,
			 uint8_t *code, size_t cap, size_t *len)
{
	uint64_t body;
	ssize_t got;

	if (gobin_func_by_name(t->bin, name, f))
		return -ENOENT;
	got = gobin_read_vaddr(t->bin, f->entry, code, cap);
	if (got <= 0)
		return got ? (int)got : -EIO;
	/* Stripped binaries may name the ABI0 wrapper instead of the body. */
	if (!probe_abi0_wrapper_target_x86(code, got, f->entry, &body) && body != f->entry) {
		f->entry = body;
		got = gobin_read_vaddr(t->bin, f->entry, code, cap);
		if (got <= 0)
			return got ? (int)got : -EIO;
	}
	*len = got;
	return 0;
}

static int plan_one(const struct go_target *t, enum heap_probe_kind kind, const char *name,
		    struct heap_probe *probes, size_t max, size_t *n, char *err, size_t errlen)
{
	uint8_t code[HT_PROLOGUE_BYTES];
	struct gobin_func f;
	struct heap_probe *p;
	size_t len = 0;
	int ret;

	if (*n >= max)
		return set_err(err, errlen, -E2BIG, "more than %zu heap probes", max);
	ret = read_prologue(t, name, &f, code, sizeof(code), &len);
	if (ret)
		return set_err(err, errlen, ret, "%s: %s: %s", t->exe.exe, name,
			       ret == -ENOENT ? "no such function" : "cannot read it");
	p = &probes[*n];
	memset(p, 0, sizeof(*p));
	ret = probe_place_x86(code, len, f.entry, &p->place);
	if (ret)
		return set_err(err, errlen, ret, "%s: %s does not decode", t->exe.exe, name);
	if (p->place.fallback)
		log_warn("%s: %s: no emulated instruction in the prologue, probing the entry (%s, "
			 "single-stepped)", t->exe.exe, name, p->place.insn);
	p->kind = kind;
	p->function = name;
	p->func_vaddr = f.entry;
	if (gobin_vaddr_to_offset(t->bin, f.entry + p->place.offset, &p->file_offset))
		return set_err(err, errlen, -ENOENT, "%s: %s+%llu not in a segment", t->exe.exe, name,
			       (unsigned long long)p->place.offset);
	(*n)++;
	return 0;
}

/* The one-hit allocation probe: mProf_Malloc's body at the first emulated
 * instruction after `call stkbucket` while RAX still holds the bucket (the
 * `call (*bucket).mp` in 1.19-1.24), p and size read from the argument
 * slots the function spilled them to. 0, or negative errno when the body
 * is not recognised (the caller plans the entry + setprofilebucket pair). */
static int plan_mprof_bucket(const struct go_target *t, bool mp_first, struct heap_probe *probes,
			     size_t max, size_t *n)
{
	uint8_t code[HT_MPROF_MALLOC_BYTES];
	struct gobin_func f, sb;
	struct heap_probe *p;
	enum probe_reg reg;
	size_t len = 0;
	int ret, ps, ss;

	if (*n >= max)
		return -E2BIG;
	if (gobin_func_by_name(t->bin, "runtime.stkbucket", &sb))
		return -ENOENT;
	ret = read_prologue(t, "runtime.mProf_Malloc", &f, code, sizeof(code), &len);
	if (ret)
		return ret;
	p = &probes[*n];
	memset(p, 0, sizeof(*p));
	ret = probe_place_after_call_x86(code, len, f.entry, sb.entry, &p->place, &reg);
	if (ret)
		return ret;
	if (reg != PROBE_REG_RAX || !p->place.emulated)
		return -ENOENT;
	ps = heap_arg_spill_slot_x86(code, len, f.entry, p->place.offset,
				     mp_first ? PROBE_REG_RBX : PROBE_REG_RAX);
	ss = heap_arg_spill_slot_x86(code, len, f.entry, p->place.offset,
				     mp_first ? PROBE_REG_RCX : PROBE_REG_RBX);
	if (ps < 0 || ss < 0)
		return -ENOENT;
	p->kind = HEAP_PROBE_MPROF_MALLOC_BUCKET;
	p->function = "runtime.mProf_Malloc";
	p->func_vaddr = f.entry;
	p->p_slot = ps;
	p->size_slot = ss;
	if (gobin_vaddr_to_offset(t->bin, f.entry + p->place.offset, &p->file_offset))
		return -ENOENT;
	(*n)++;
	return 0;
}

int heap_trace_walk_layout(const struct go_target *t, struct heap_walk_layout *wl)
{
	const struct go_version *v = gobin_version(t->bin);
	const struct go_offsets *off = gobin_offsets(t->bin);
	unsigned kind_profile;
	int kind_off, bucket_off;

	if (!v || !off || heap_special_layout(v->major, v->minor, &kind_off, &kind_profile, &bucket_off))
		return -ENOTSUP;
	return heap_walk_layout_init(wl, off, go_target_global(t, "runtime.mheap_"), kind_off,
				     kind_profile, bucket_off);
}

int heap_trace__plan(const struct go_target *t, bool profile, bool trace, bool free_probe,
		     struct heap_probe *probes, size_t max, size_t *n, char *err, size_t errlen)
{
	const struct go_version *v = gobin_version(t->bin);
	unsigned kind_profile;
	int ret, kind_off, bucket_off;

	*n = 0;
	if (profile && free_probe) {
		/* Frees first: attach walks the plan in order, and a free probe
		 * in place before the allocation probes loses nothing. freeSpecial
		 * gives the bucket and the object in one probe; mProf_Free only
		 * the bucket, for releases whose special layout is unknown. */
		if (v && !heap_special_layout(v->major, v->minor, &kind_off, &kind_profile, &bucket_off))
			ret = plan_one(t, HEAP_PROBE_FREE_SPECIAL, "runtime.freeSpecial", probes, max, n,
				       err, errlen);
		else
			ret = plan_one(t, HEAP_PROBE_MPROF_FREE, "runtime.mProf_Free", probes, max, n,
				       err, errlen);
		if (ret)
			return ret;
	}
	if (profile) {
		if (plan_mprof_bucket(t, v && (v->major > 1 || v->minor >= 23), probes, max, n)) {
			log_debug("%s: runtime.mProf_Malloc body not recognised: probing its entry and "
				  "runtime.setprofilebucket", t->exe.exe);
			ret = plan_one(t, HEAP_PROBE_SETPROFILEBUCKET, "runtime.setprofilebucket",
				       probes, max, n, err, errlen);
			if (!ret)
				ret = plan_one(t, HEAP_PROBE_MPROF_MALLOC, "runtime.mProf_Malloc", probes,
					       max, n, err, errlen);
			if (ret)
				return ret;
		}
	}
	if (trace)
		return plan_one(t, HEAP_PROBE_MALLOCGC, "runtime.mallocgc", probes, max, n, err, errlen);
	return 0;
}

/* ------------------------------------------------------------ buckets */

static struct bucket_info *bucket_find(struct heap_trace *t, uint64_t addr)
{
	size_t lo = 0, hi = t->nbuckets;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (t->buckets[mid].addr == addr)
			return &t->buckets[mid];
		if (t->buckets[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct bucket_info *bucket_add(struct heap_trace *t, uint64_t addr)
{
	struct bucket_info *b = bucket_find(t, addr);
	size_t pos;

	if (b)
		return b;
	if (t->nbuckets >= HEAP_MAX_BUCKETS)
		return NULL;
	if (t->nbuckets == t->capbuckets) {
		size_t cap = t->capbuckets ? t->capbuckets * 2 : 256;
		struct bucket_info *v = realloc(t->buckets, cap * sizeof(*v));

		if (!v)
			return NULL;
		t->buckets = v;
		t->capbuckets = cap;
	}
	for (pos = t->nbuckets; pos > 0 && t->buckets[pos - 1].addr > addr; pos--)
		;
	memmove(&t->buckets[pos + 1], &t->buckets[pos], (t->nbuckets - pos) * sizeof(*b));
	t->nbuckets++;
	b = &t->buckets[pos];
	memset(b, 0, sizeof(*b));
	b->addr = addr;
	b->k.stackid = -1;
	return b;
}

/* Reads one runtime bucket (header, stack, memRecord) from the target. */
static int read_bucket(struct heap_trace *t, uint64_t addr, struct heap_bucket_raw *raw)
{
	pid_t pid = t->go->pid;
	size_t need = 0;
	int ret;

	ret = proc_read(pid, addr, t->buf, 1024);
	if (ret < 0) {
		ret = proc_read(pid, addr, t->buf, (size_t)t->layout.header_size);
		if (ret < 0)
			return ret;
		ret = heap_parse_bucket(&t->layout, t->buf, (size_t)t->layout.header_size, raw, &need);
	} else {
		ret = heap_parse_bucket(&t->layout, t->buf, 1024, raw, &need);
	}
	if (ret != -ENODATA)
		return ret;
	if (need > HT_BUCKET_READ)
		return -E2BIG;
	ret = proc_read(pid, addr, t->buf, need);
	if (ret < 0)
		return ret;
	return heap_parse_bucket(&t->layout, t->buf, need, raw, NULL);
}

static void bucket_take_stack(struct bucket_info *b, const struct heap_bucket_raw *raw)
{
	b->stack_read = true;
	b->object_size = raw->object_size;
	b->stk = malloc(raw->nstk * sizeof(uint64_t));
	if (!b->stk)
		return;
	memcpy(b->stk, raw->stk, raw->nstk * sizeof(uint64_t));
	b->nstk = (uint32_t)raw->nstk;
}

/* The counts of every memProfile bucket right after the probes went in:
 * all cycles folded (published or not), as the probes count everything. */
static int read_baseline(struct heap_trace *t)
{
	uint64_t mbuckets = go_target_global(t->go, "runtime.mbuckets"), addr;
	size_t walked = 0;
	int ret;

	if (!mbuckets)
		return -ENOENT;
	ret = proc_read(t->go->pid, mbuckets, &addr, sizeof(addr));
	if (ret < 0)
		return ret;
	while (addr && walked++ < HEAP_MAX_BUCKETS && !(addr & 7)) {
		struct heap_bucket_raw raw;
		struct bucket_info *b;
		struct heap_cycle c;

		if (read_bucket(t, addr, &raw) < 0)
			break;
		if (raw.typ == HEAP_MEM_PROFILE && raw.nstk) {
			b = bucket_add(t, addr);
			if (!b)
				return -ENOMEM;
			c = heap_bucket_counts(&raw, -1, true);
			b->base_allocs = c.allocs;
			b->base_frees = c.frees;
			b->base_alloc_bytes = c.alloc_bytes;
			b->base_free_bytes = c.free_bytes;
			if (!b->stack_read)
				bucket_take_stack(b, &raw);
		}
		addr = raw.allnext;
	}
	return 0;
}

/* ------------------------------------------------------------ lifecycle */

int heap_trace__new(const struct heap_trace_opts *opts, struct heap_trace **out)
{
	struct heap_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->opts = *opts;
	if (!t->opts.sample_bytes)
		t->opts.sample_bytes = HT_DEFAULT_SAMPLE_BYTES;
	t->state = opts->profile ? HEAP_PROFILE_UNAVAILABLE : HEAP_PROFILE_NOT_REQUESTED;
	t->buf = malloc(HT_BUCKET_READ);
	if (!t->buf) {
		free(t);
		return -ENOMEM;
	}
	*out = t;
	return 0;
}

static struct bpf_program *probe_program(struct heap_trace *t, enum heap_probe_kind k)
{
	switch (k) {
	case HEAP_PROBE_MPROF_MALLOC: return t->skel->progs.ht_mprof_malloc;
	case HEAP_PROBE_SETPROFILEBUCKET: return t->skel->progs.ht_setbucket;
	case HEAP_PROBE_MPROF_FREE: return t->skel->progs.ht_mprof_free;
	case HEAP_PROBE_FREE_SPECIAL: return t->skel->progs.ht_free_special;
	case HEAP_PROBE_MALLOCGC: return t->skel->progs.ht_mallocgc;
	case HEAP_PROBE_MPROF_MALLOC_BUCKET: return t->skel->progs.ht_mprof_malloc_bucket;
	default: return NULL;
	}
}

static int64_t read_rate(struct heap_trace *t)
{
	int64_t rate = -1;

	if (!t->rate_addr || proc_read(t->go->pid, t->rate_addr, &rate, sizeof(rate)) < 0)
		return -1;
	return rate;
}

int heap_trace__attach(struct heap_trace *t, const struct go_target *go, char *err, size_t errlen)
{
	const struct go_version *v = gobin_version(go->bin);
	struct ht_tgid_config cfg = { .special_kind_off = -1, .special_bucket_off = -1,
				      .stack_every = HT_DEFAULT_STACK_EVERY,
				      .sample_bytes = t->opts.sample_bytes };
	bool profile = t->opts.profile;
	__u32 tgid = go->pid;
	unsigned kind_profile = 0;
	int ret, kind_off, bucket_off;

	if (t->skel)
		return set_err(err, errlen, -EALREADY, "heap probes already attached");
	t->go = go;
	t->rate_addr = go_target_global(go, "runtime.MemProfileRate");
	if (profile) {
		t->rate = read_rate(t);
		t->have_layout = heap_layout_from_offsets(gobin_offsets(go->bin), &t->layout) == 0;
		if (t->rate == 0) {
			t->state = HEAP_PROFILE_RATE_ZERO;
			snprintf(t->msg, sizeof(t->msg),
				 "heap profiling is off in the target: MemProfileRate=0 (the linker "
				 "disables it when nothing references runtime.MemProfile); use "
				 "--trace heap for every allocation");
			profile = false;
		} else if (t->rate < 0 || !t->have_layout) {
			snprintf(t->msg, sizeof(t->msg), "%.160s: %s", path_base(go->exe.exe),
				 t->rate < 0 ? "runtime.MemProfileRate not found" :
					       "runtime.bucket layout unknown");
			profile = false;
		}
		if (!profile && !t->opts.trace)
			return set_err(err, errlen, t->state == HEAP_PROFILE_RATE_ZERO ? -ENODATA : -ENOENT,
				       "%s", t->msg);
	}
	/* Frees from the heap walk where its layout is known (one probe hit
	 * per sample), else from the freeSpecial probe. */
	t->walk = profile && !t->opts.free_probe && heap_trace_walk_layout(go, &t->wl) == 0;
	if (profile && !t->walk && !t->opts.free_probe)
		log_debug("%s: heap walk layout unknown: sampled objects' frees from the "
			  "freeSpecial probe", path_base(go->exe.exe));
	ret = heap_trace__plan(go, profile, t->opts.trace, !t->walk, t->probes, HEAP_PROBE_MAX,
			       &t->nprobes, err, errlen);
	if (ret)
		return ret;
	ret = bpf_util_check(err, errlen);
	if (ret)
		return ret;
	bpf_util_init();
	t->skel = heap_bpf__open_and_load();
	if (!t->skel) {
		ret = errno ? -errno : -EINVAL;
		return set_err(err, errlen, ret, "BPF unavailable: loading heap.bpf.o: %s",
			       strerror(-ret));
	}
	if (v && !heap_special_layout(v->major, v->minor, &kind_off, &kind_profile, &bucket_off)) {
		cfg.special_kind_off = kind_off;
		cfg.special_kind_profile = kind_profile;
		cfg.special_bucket_off = bucket_off;
	}
	if (t->opts.stack_every_set)
		cfg.stack_every = t->opts.stack_every;
	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.ht_tgids), &tgid, &cfg, BPF_ANY))
		return set_err(err, errlen, -errno, "heap config map: %s", strerror(errno));
	if (profile) {
		/* writable: the heap walk retires dead samples in place */
		void *m = mmap(NULL, HT_OBJ_SETS * sizeof(struct ht_obj_set),
			       PROT_READ | (t->walk ? PROT_WRITE : 0), MAP_SHARED,
			       bpf_map__fd(t->skel->maps.ht_objects), 0);

		if (m == MAP_FAILED)
			return set_err(err, errlen, -errno, "heap object table: mmap: %s",
				       strerror(errno));
		t->objs = m;
		if (t->walk) {
			t->miss = calloc(HT_MAX_OBJECTS, sizeof(*t->miss));
			t->miss_ts = calloc(HT_MAX_OBJECTS, sizeof(*t->miss_ts));
			if (!t->miss || !t->miss_ts)
				return set_err(err, errlen, -ENOMEM, "heap walk: out of memory");
		}
	}
	if (t->opts.trace) {
		int ncpu = libbpf_num_possible_cpus();
		struct ht_rate *zero;

		if (ncpu <= 0)
			return set_err(err, errlen, -EINVAL, "cannot count CPUs");
		zero = calloc(ncpu, sizeof(*zero));
		if (!zero)
			return -ENOMEM;
		for (int i = 0; i < ncpu; i++)
			zero[i].left = (int64_t)t->opts.sample_bytes;
		ret = bpf_map_update_elem(bpf_map__fd(t->skel->maps.ht_rates), &tgid, zero, BPF_ANY);
		free(zero);
		if (ret)
			return set_err(err, errlen, -errno, "heap rate map: %s", strerror(errno));
	}
	for (size_t i = 0; i < t->nprobes; i++) {
		struct heap_probe *p = &t->probes[i];
		__u64 cookie = 0;

		if (p->place.stack_check == PROBE_STACK_CHECK_JBE)
			cookie |= HT_COOKIE_STACK_CHECK;
		else if (p->place.stack_check == PROBE_STACK_CHECK_JB)
			cookie |= HT_COOKIE_STACK_CHECK_CF;
		if (p->kind == HEAP_PROBE_MPROF_MALLOC && v && (v->major > 1 || v->minor >= 23))
			cookie |= HT_COOKIE_MPROF_MP;
		if (p->kind == HEAP_PROBE_MPROF_MALLOC_BUCKET) {
			cookie |= HT_COOKIE_SLOTS((unsigned)p->p_slot, (unsigned)p->size_slot);
			if (cfg.special_kind_off >= 0)
				cookie |= HT_COOKIE_TRACK_OBJECTS;
			cookie |= (__u64)tgid << 32;
		}
		if (p->kind == HEAP_PROBE_FREE_SPECIAL) {
			/* planned only where heap_special_layout knows the layout */
			cookie |= HT_COOKIE_SPECIAL((unsigned)cfg.special_kind_off,
						    cfg.special_kind_profile,
						    (unsigned)cfg.special_bucket_off);
			cookie |= (__u64)tgid << 32;
		}
		ret = bpf_util_attach_uprobe(probe_program(t, p->kind), go->pid, go->exe.open_path,
					     p->file_offset, cookie, &t->links[i]);
		if (ret)
			return set_err(err, errlen, ret, "uprobe %s+%llu in process %d: %s", p->function,
				       (unsigned long long)p->place.offset, go->pid, strerror(-ret));
		p->attached = true;
		log_debug("heap probe %s+%llu (%s, %s)", p->function,
			  (unsigned long long)p->place.offset, p->place.insn,
			  p->place.emulated ? "emulated" : "single-stepped");
	}
	t->attach_ns = now_monotonic_ns();
	t->last_poll_ns = t->attach_ns;
	if (profile) {
		/* After the probes: a sample in between is counted twice (at most
		 * a few, for the milliseconds the walk takes), never lost. */
		ret = read_baseline(t);
		if (ret < 0)
			return set_err(err, errlen, ret, "PID %d: reading the heap profile buckets: %s",
				       go->pid, strerror(-ret));
		t->state = HEAP_PROFILE_ON;
	}
	return 0;
}

void heap_trace__free(struct heap_trace *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < HEAP_PROBE_MAX; i++)
		bpf_link__destroy(t->links[i]);
	if (t->objs)
		munmap((void *)t->objs, HT_OBJ_SETS * sizeof(struct ht_obj_set));
	heap_bpf__destroy(t->skel);
	for (size_t i = 0; i < t->nbuckets; i++)
		free(t->buckets[i].stk);
	free(t->buckets);
	free(t->sites);
	free(t->alloc_sites);
	free(t->miss);
	free(t->miss_ts);
	free(t->buf);
	free(t);
}

/* ------------------------------------------------------------ polling */

static int lookup_pc(const struct go_target *go, uint64_t pc, bool is_return,
		     struct gobin_pcinfo *info)
{
	if (pc <= go->bias + (is_return ? 1 : 0))
		return -ENOENT;
	return gobin_pc_lookup(go->bin, pc - go->bias - (is_return ? 1 : 0), info);
}

/* The first frame outside the runtime (the leaf when all are runtime). */
static void site_of(const struct go_target *go, const uint64_t *stk, size_t n, bool first_is_ip,
		    const char **fn, const char **file, int *line)
{
	struct gobin_pcinfo info;
	bool have = false;

	*fn = "??";
	*file = "?";
	*line = 0;
	for (size_t i = 0; i < n; i++) {
		if (lookup_pc(go, stk[i], !(first_is_ip && i == 0), &info) < 0 || !info.func)
			continue;
		if (!have || !heap_is_runtime_func(info.func)) {
			*fn = info.func;
			*file = info.file ? info.file : "?";
			*line = info.line;
			have = true;
		}
		if (!heap_is_runtime_func(info.func))
			return;
	}
}

static size_t read_stack(int fd, int64_t id, uint64_t *ips)
{
	__u32 key = (__u32)id;
	size_t n = 0;

	if (id < 0)
		return 0;
	memset(ips, 0, HT_STACK_DEPTH * sizeof(*ips));
	if (bpf_map_lookup_elem(fd, &key, ips))
		return 0;
	while (n < HT_STACK_DEPTH && ips[n])
		n++;
	return n;
}

static int site_key_cmp(const char *fa, const char *fia, int la, const char *fb, const char *fib,
			int lb)
{
	int c = strcmp(fa, fb);

	if (c)
		return c;
	c = strcmp(fia, fib);
	if (c)
		return c;
	return (la > lb) - (la < lb);
}

static int site_cmp(const void *a, const void *b)
{
	const struct heap_trace_site *x = a, *y = b;

	return site_key_cmp(x->function, x->file, x->line, y->function, y->file, y->line);
}

static int site_cmp_inuse(const void *a, const void *b)
{
	const struct heap_trace_site *x = a, *y = b;

	if (x->inuse_bytes != y->inuse_bytes)
		return x->inuse_bytes < y->inuse_bytes ? 1 : -1;
	if (x->alloc_bytes != y->alloc_bytes)
		return x->alloc_bytes < y->alloc_bytes ? 1 : -1;
	return site_cmp(a, b);
}

/* Which tracked samples are alive: the heap walk's live specials (sorted)
 * against ht_objects. A sample the walk lacks HT_WALK_MISSES times in a row
 * (and that was taken before the walk began) was swept: retired in place.
 * live_tracked / oldest_ns count the ones the walk confirmed. */
static void walk_sweep_table(struct heap_trace *t, const struct heap_special *live, size_t n,
			     uint64_t walk_start)
{
	for (size_t i = 0; i < HT_OBJ_SETS; i++) {
		for (size_t w = 0; w < HT_OBJ_WAYS; w++) {
			volatile struct ht_obj *o = &t->objs[i].way[w];
			size_t slot = i * HT_OBJ_WAYS + w;
			uint64_t p = o->p, ts = o->ts, bucket = o->bucket;
			const struct heap_special *f;
			struct bucket_info *b;

			if (!p || !ts) {
				t->miss[slot] = 0;
				continue;
			}
			if (t->miss_ts[slot] != ts) {
				t->miss_ts[slot] = ts;
				t->miss[slot] = 0;
			}
			f = heap_special_find(live, n, p);
			if (f && f->bucket == bucket) {
				t->miss[slot] = 0;
				b = bucket_find(t, bucket);
				if (b) {
					b->live_tracked++;
					if (!b->oldest_ns || ts < b->oldest_ns)
						b->oldest_ns = ts;
				}
				continue;
			}
			/* too new to be in this walk, or a walk cut short */
			if (ts >= walk_start || t->wst.truncated)
				continue;
			if (++t->miss[slot] < HT_WALK_MISSES)
				continue;
			t->miss[slot] = 0;
			/* ts first: a probe overwriting the slot for a new sample
			 * at the same address (heap.bpf.c obj_insert) clears it */
			if (__sync_val_compare_and_swap(&o->ts, ts, 0) == ts &&
			    __sync_val_compare_and_swap(&o->p, p, 0) == p)
				t->walk_retired++;
		}
	}
}

static void walk_heap(struct heap_trace *t)
{
	struct heap_special *live = NULL;
	uint64_t t0 = now_monotonic_ns(), dt;
	size_t n = 0;
	int ret;

	ret = heap_walk_profile_specials(t->go->pid, &t->wl, &live, &n, &t->wst);
	dt = now_monotonic_ns() - t0;
	t->walk_ns_last = dt;
	if (dt > t->walk_ns_max)
		t->walk_ns_max = dt;
	if (ret) {
		/* the last good walk's counts stay */
		t->walk_failures++;
		log_debug("heap walk of %d: %s", t->go->pid, strerror(-ret));
		return;
	}
	t->walks++;
	for (size_t i = 0; i < t->nbuckets; i++)
		t->buckets[i].walk_live = 0;
	for (size_t i = 0; i < n; i++) {
		struct bucket_info *b = bucket_add(t, live[i].bucket);

		if (b)
			b->walk_live++;
	}
	walk_sweep_table(t, live, n, t0);
	free(live);
}

static void poll_profile(struct heap_trace *t)
{
	int bfd = bpf_map__fd(t->skel->maps.ht_buckets);
	int sfd = bpf_map__fd(t->skel->maps.ht_prof_stacks);
	struct ht_bucket_key bk, *bprev = NULL;
	uint64_t mine[HT_STACK_DEPTH];
	struct heap_trace_site *v;
	size_t out = 0, guard = 0;
	int64_t rate = read_rate(t);

	if (rate >= 0)
		t->rate = rate;
	for (size_t i = 0; i < t->nbuckets; i++) {
		t->buckets[i].live_tracked = 0;
		t->buckets[i].oldest_ns = 0;
	}
	while (guard++ < HT_MAX_PROF_BUCKETS && !bpf_map_get_next_key(bfd, bprev, &bk)) {
		struct ht_bucket_counts c;
		struct bucket_info *b;

		bprev = &bk;
		if (bk.tgid != (__u32)t->go->pid || bpf_map_lookup_elem(bfd, &bk, &c))
			continue;
		b = bucket_add(t, bk.bucket);
		if (b)
			b->k = c;
	}
	if (t->walk)
		walk_heap(t);
	/* The BPF side writes the table meanwhile: each slot is copied once
	 * and used only when complete (ts set; see heap_events.h). */
	for (size_t i = 0; !t->walk && t->objs && i < HT_OBJ_SETS; i++) {
		for (size_t w = 0; w < HT_OBJ_WAYS; w++) {
			const volatile struct ht_obj *src = &t->objs[i].way[w];
			struct bucket_info *b;
			uint64_t p = src->p, ts = src->ts, bucket = src->bucket;

			if (!p || !ts)
				continue;
			b = bucket_find(t, bucket);
			if (!b)
				continue;
			b->live_tracked++;
			if (!b->oldest_ns || ts < b->oldest_ns)
				b->oldest_ns = ts;
		}
	}

	v = calloc(t->nbuckets ? t->nbuckets : 1, sizeof(*v));
	if (!v)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct bucket_info *b = &t->buckets[i];
		struct heap_trace_site *s = &v[out];
		int64_t cnt, bytes;

		if (!b->stack_read) {
			struct heap_bucket_raw raw;

			if (read_bucket(t, b->addr, &raw) == 0 && raw.typ == HEAP_MEM_PROFILE)
				bucket_take_stack(b, &raw);
			b->stack_read = true;
		}
		if (!b->stack_checked && b->k.stackid >= 0 && b->nstk) {
			size_t n = read_stack(sfd, b->k.stackid, mine);

			if (n) {
				b->stack_checked = true;
				t->stacks_checked++;
				if (heap_stack_matches(mine, n, b->stk, b->nstk)) {
					t->stacks_matched++;
				} else if (log_threshold >= LOG_LEVEL_DEBUG) {
					log_debug("bucket %#llx: probe stack differs from the runtime's",
						  (unsigned long long)b->addr);
					for (size_t j = 0; j < n || j < b->nstk; j++)
						log_debug("  %2zu %#14llx %#14llx", j,
							  (unsigned long long)(j < n ? mine[j] : 0),
							  (unsigned long long)(j < b->nstk ? b->stk[j] : 0));
				}
			}
		}
		site_of(t->go, b->stk, b->nstk, false, &s->function, &s->file, &s->line);
		if (t->walk) {
			/* what is alive now, whenever it was sampled */
			cnt = (int64_t)b->walk_live;
			bytes = cnt * (int64_t)b->object_size;
		} else {
			heap_bucket_inuse(b->base_allocs, b->base_frees, b->base_alloc_bytes,
					  b->base_free_bytes, &b->k, &cnt, &bytes);
		}
		s->live_samples = (uint64_t)cnt;
		heap_scale_sample(cnt, bytes, t->rate, &s->inuse_objects, &s->inuse_bytes);
		heap_scale_sample((int64_t)(b->base_allocs + b->k.allocs),
				  (int64_t)(b->base_alloc_bytes + b->k.alloc_bytes), t->rate,
				  &s->alloc_objects, &s->alloc_bytes);
		s->live_tracked = b->live_tracked;
		s->oldest_sample_ns = b->oldest_ns;
		s->buckets = 1;
		out++;
	}
	/* group by site */
	qsort(v, out, sizeof(*v), site_cmp);
	{
		size_t w = 0;

		for (size_t i = 0; i < out; i++) {
			if (w && site_cmp(&v[w - 1], &v[i]) == 0) {
				struct heap_trace_site *d = &v[w - 1];

				d->inuse_bytes += v[i].inuse_bytes;
				d->inuse_objects += v[i].inuse_objects;
				d->alloc_bytes += v[i].alloc_bytes;
				d->alloc_objects += v[i].alloc_objects;
				d->live_samples += v[i].live_samples;
				d->live_tracked += v[i].live_tracked;
				if (v[i].oldest_sample_ns &&
				    (!d->oldest_sample_ns || v[i].oldest_sample_ns < d->oldest_sample_ns))
					d->oldest_sample_ns = v[i].oldest_sample_ns;
				d->buckets++;
				continue;
			}
			v[w++] = v[i];
		}
		out = w;
	}
	qsort(v, out, sizeof(*v), site_cmp_inuse);
	free(t->sites);
	t->sites = v;
	t->nsites = out;
}

static int alloc_site_cmp(const void *a, const void *b)
{
	const struct heap_alloc_site *x = a, *y = b;

	return site_key_cmp(x->function, x->file, x->line, y->function, y->file, y->line);
}

static int alloc_site_cmp_samples(const void *a, const void *b)
{
	const struct heap_alloc_site *x = a, *y = b;

	if (x->samples != y->samples)
		return x->samples < y->samples ? 1 : -1;
	return alloc_site_cmp(a, b);
}

static void poll_trace(struct heap_trace *t, uint64_t now)
{
	int ncpu = libbpf_num_possible_cpus();
	int rfd = bpf_map__fd(t->skel->maps.ht_rates);
	int sfd = bpf_map__fd(t->skel->maps.ht_trace_sites);
	int stfd = bpf_map__fd(t->skel->maps.ht_trace_stacks);
	struct ht_trace_key k, *prev = NULL;
	struct heap_alloc_site *v = NULL;
	uint64_t ips[HT_STACK_DEPTH];
	size_t n = 0, cap = 0, guard = 0;
	__u32 tgid = t->go->pid;
	struct ht_rate *per;

	if (ncpu <= 0)
		return;
	per = calloc(ncpu, sizeof(*per));
	if (!per)
		return;
	if (bpf_map_lookup_elem(rfd, &tgid, per) == 0) {
		struct heap_rates r = { 0 };
		double dt = (double)(now - t->last_poll_ns) / 1e9;

		for (int c = 0; c < ncpu; c++) {
			r.allocs += per[c].allocs;
			r.bytes += per[c].bytes;
			for (int i = 0; i < HT_HIST_BUCKETS; i++)
				r.hist[i] += per[c].hist[i];
		}
		if (dt > 0) {
			r.allocs_per_s = (double)(r.allocs - t->rates.allocs) / dt;
			r.bytes_per_s = (double)(r.bytes - t->rates.bytes) / dt;
		}
		t->rates = r;
		t->rates_valid = true;
	}
	free(per);

	while (guard++ < HT_MAX_TRACE_SITES && !bpf_map_get_next_key(sfd, prev, &k)) {
		struct ht_trace_counts c;
		struct heap_alloc_site *s;
		size_t ns;

		prev = &k;
		if (k.tgid != tgid || bpf_map_lookup_elem(sfd, &k, &c))
			continue;
		ns = read_stack(stfd, k.stackid, ips);
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct heap_alloc_site *nv = realloc(v, nc * sizeof(*nv));

			if (!nv)
				break;
			v = nv;
			cap = nc;
		}
		s = &v[n++];
		memset(s, 0, sizeof(*s));
		site_of(t->go, ips, ns, true, &s->function, &s->file, &s->line);
		s->samples = c.samples;
		s->est_bytes = c.samples * t->opts.sample_bytes;
	}
	if (n) {
		size_t w = 0;

		qsort(v, n, sizeof(*v), alloc_site_cmp);
		for (size_t i = 0; i < n; i++) {
			if (w && alloc_site_cmp(&v[w - 1], &v[i]) == 0) {
				v[w - 1].samples += v[i].samples;
				v[w - 1].est_bytes += v[i].est_bytes;
				continue;
			}
			v[w++] = v[i];
		}
		n = w;
		qsort(v, n, sizeof(*v), alloc_site_cmp_samples);
	}
	free(t->alloc_sites);
	t->alloc_sites = v;
	t->nalloc_sites = n;
}

int heap_trace__poll(struct heap_trace *t)
{
	uint64_t now = now_monotonic_ns();

	if (!t->skel)
		return -ENOTCONN;
	if (t->state == HEAP_PROFILE_ON)
		poll_profile(t);
	if (t->opts.trace)
		poll_trace(t, now);
	t->last_poll_ns = now;
	return 0;
}

/* ------------------------------------------------------------ accessors */

enum heap_profile_state heap_trace__profile_state(const struct heap_trace *t, const char **msg)
{
	if (msg)
		*msg = t->msg;
	return t->state;
}

int64_t heap_trace__mem_profile_rate(const struct heap_trace *t)
{
	return t->rate;
}

const struct heap_trace_site *heap_trace__sites(const struct heap_trace *t, size_t *n)
{
	*n = t->nsites;
	return t->sites;
}

const struct heap_alloc_site *heap_trace__alloc_sites(const struct heap_trace *t, size_t *n)
{
	*n = t->nalloc_sites;
	return t->alloc_sites;
}

const struct heap_rates *heap_trace__rates(const struct heap_trace *t)
{
	return t->opts.trace && t->rates_valid ? &t->rates : NULL;
}

const struct heap_probe *heap_trace__probes(const struct heap_trace *t, size_t *n)
{
	*n = t->nprobes;
	return t->probes;
}

static const char *const stat_names[HT_STAT_MAX] = {
	[HT_STAT_MALLOC_HITS] = "mprof_malloc_hits",
	[HT_STAT_BUCKET_HITS] = "setprofilebucket_hits",
	[HT_STAT_FREE_HITS] = "mprof_free_hits",
	[HT_STAT_SPECIAL_HITS] = "free_special_hits",
	[HT_STAT_OBJECT_FREES] = "sampled_object_frees",
	[HT_STAT_MALLOCGC_HITS] = "mallocgc_hits",
	[HT_STAT_MORESTACK_SKIPS] = "morestack_skips",
	[HT_STAT_PENDING_MISSES] = "pending_misses",
	[HT_STAT_PENDING_FULL] = "pending_full",
	[HT_STAT_OBJECTS_FULL] = "objects_full",
	[HT_STAT_BUCKETS_FULL] = "buckets_full",
	[HT_STAT_PROF_STACK_ERRORS] = "profile_stack_errors",
	[HT_STAT_TRACE_SAMPLES] = "trace_samples",
	[HT_STAT_TRACE_STACK_ERRORS] = "trace_stack_errors",
	[HT_STAT_TRACE_SITES_FULL] = "trace_sites_full",
	[HT_STAT_READ_ERRORS] = "read_errors",
	[HT_STAT_OBJECT_REUSED] = "sampled_address_reused",
};

void heap_trace__stats(const struct heap_trace *t, struct heap_trace_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!t->skel)
		return;
	{
		int ncpu = libbpf_num_possible_cpus();
		uint64_t *per = ncpu > 0 ? calloc(ncpu, sizeof(*per)) : NULL;

		for (__u32 i = 0; per && i < HT_STAT_MAX; i++) {
			if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.ht_stats), &i, per))
				continue;
			for (int c = 0; c < ncpu; c++)
				out->counters[i] += per[c];
		}
		free(per);
	}
	/* mallocgc keeps no shared counter (a global atomic on every call would
	 * bounce a cache line between CPUs): its hits are the per-CPU totals. */
	if (t->rates_valid)
		out->counters[HT_STAT_MALLOCGC_HITS] = t->rates.allocs + t->rates.hist[0];
	/* sampled objects seen dying: by the freeSpecial probe or the walk */
	out->counters[HT_STAT_OBJECT_FREES] += t->walk_retired;
	out->walk = t->walk;
	out->walks = t->walks;
	out->walk_failures = t->walk_failures;
	out->walk_last = t->wst;
	out->walk_ns_last = t->walk_ns_last;
	out->walk_ns_max = t->walk_ns_max;
	out->stacks_checked = t->stacks_checked;
	out->stacks_matched = t->stacks_matched;
	out->buckets = t->nbuckets;
	for (size_t i = 0; i < t->nprobes; i++) {
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);

		if (!bpf_obj_get_info_by_fd(bpf_program__fd(probe_program((struct heap_trace *)t,
									  t->probes[i].kind)),
					    &info, &len))
			out->kernel_missed += info.recursion_misses;
	}
}

/* ------------------------------------------------------------ output */

static const char *state_name(enum heap_profile_state s)
{
	switch (s) {
	case HEAP_PROFILE_ON: return "on";
	case HEAP_PROFILE_RATE_ZERO: return "off_in_target";
	case HEAP_PROFILE_UNAVAILABLE: return "unavailable";
	default: return "not_requested";
	}
}

int heap_trace__json(struct heap_trace *t, struct json_object *obj, size_t max_sites)
{
	struct json_object *o = json_object_new_object(), *prof, *st;
	struct heap_trace_stats stats;
	uint64_t now = now_monotonic_ns();

	if (!o)
		return -ENOMEM;
	prof = json_object_new_object();
	json_object_object_add(prof, "state", json_object_new_string(state_name(t->state)));
	if (t->msg[0])
		json_object_object_add(prof, "message", json_object_new_string(t->msg));
	json_object_object_add(prof, "mem_profile_rate", json_object_new_int64(t->rate));
	if (t->state == HEAP_PROFILE_ON) {
		struct json_object *arr = json_object_new_array();

		for (size_t i = 0; i < t->nsites && i < max_sites; i++) {
			const struct heap_trace_site *s = &t->sites[i];
			struct json_object *so = json_object_new_object();

			json_object_object_add(so, "function", json_object_new_string(s->function));
			json_object_object_add(so, "file", json_object_new_string(s->file));
			json_object_object_add(so, "line", json_object_new_int(s->line));
			json_object_object_add(so, "inuse_bytes", json_object_new_int64(s->inuse_bytes));
			json_object_object_add(so, "inuse_objects", json_object_new_int64(s->inuse_objects));
			json_object_object_add(so, "alloc_bytes", json_object_new_int64(s->alloc_bytes));
			json_object_object_add(so, "alloc_objects", json_object_new_int64(s->alloc_objects));
			json_object_object_add(so, "live_samples", json_object_new_int64((int64_t)s->live_samples));
			json_object_object_add(so, "live_samples_since_attach",
					       json_object_new_int64((int64_t)s->live_tracked));
			/* age of the oldest live sample seen since attach; samples
			 * from before attach are at least attach_age_s old */
			if (s->oldest_sample_ns && now > s->oldest_sample_ns)
				json_object_object_add(so, "oldest_sample_age_s",
						       json_object_new_double((double)(now - s->oldest_sample_ns) / 1e9));
			else
				json_object_object_add(so, "oldest_sample_age_s", NULL);
			json_object_array_add(arr, so);
		}
		json_object_object_add(prof, "sites", arr);
		json_object_object_add(prof, "attach_age_s",
				       json_object_new_double((double)(now - t->attach_ns) / 1e9));
	}
	json_object_object_add(o, "profile", prof);

	if (t->opts.trace) {
		const struct heap_rates *r = heap_trace__rates(t);
		struct json_object *tr = json_object_new_object(), *hist = json_object_new_array();
		struct json_object *arr = json_object_new_array();

		json_object_object_add(tr, "sample_bytes", json_object_new_int64((int64_t)t->opts.sample_bytes));
		if (r) {
			json_object_object_add(tr, "allocs", json_object_new_int64((int64_t)r->allocs));
			json_object_object_add(tr, "bytes", json_object_new_int64((int64_t)r->bytes));
			json_object_object_add(tr, "allocs_per_s", json_object_new_double(r->allocs_per_s));
			json_object_object_add(tr, "bytes_per_s", json_object_new_double(r->bytes_per_s));
			for (unsigned c = 0; c < HT_HIST_BUCKETS; c++) {
				struct json_object *h;

				if (!r->hist[c])
					continue;
				h = json_object_new_object();
				json_object_object_add(h, "min", json_object_new_int64((int64_t)heap_hist_lower(c)));
				json_object_object_add(h, "count", json_object_new_int64((int64_t)r->hist[c]));
				json_object_array_add(hist, h);
			}
		}
		json_object_object_add(tr, "size_histogram", hist);
		for (size_t i = 0; i < t->nalloc_sites && i < max_sites; i++) {
			const struct heap_alloc_site *s = &t->alloc_sites[i];
			struct json_object *so = json_object_new_object();

			json_object_object_add(so, "function", json_object_new_string(s->function));
			json_object_object_add(so, "file", json_object_new_string(s->file));
			json_object_object_add(so, "line", json_object_new_int(s->line));
			json_object_object_add(so, "samples", json_object_new_int64((int64_t)s->samples));
			json_object_object_add(so, "est_bytes", json_object_new_int64((int64_t)s->est_bytes));
			json_object_array_add(arr, so);
		}
		json_object_object_add(tr, "sites", arr);
		json_object_object_add(o, "trace", tr);
	}

	heap_trace__stats(t, &stats);
	st = json_object_new_object();
	for (int i = 0; i < HT_STAT_MAX; i++)
		if (stat_names[i])
			json_object_object_add(st, stat_names[i],
					       json_object_new_int64((int64_t)stats.counters[i]));
	json_object_object_add(st, "stacks_checked", json_object_new_int64((int64_t)stats.stacks_checked));
	json_object_object_add(st, "stacks_matched", json_object_new_int64((int64_t)stats.stacks_matched));
	json_object_object_add(st, "buckets", json_object_new_int64((int64_t)stats.buckets));
	json_object_object_add(st, "kernel_missed", json_object_new_int64((int64_t)stats.kernel_missed));
	json_object_object_add(st, "frees_from", json_object_new_string(stats.walk ? "heap_walk" : "probe"));
	if (stats.walk) {
		struct json_object *w = json_object_new_object();

		json_object_object_add(w, "walks", json_object_new_int64((int64_t)stats.walks));
		json_object_object_add(w, "failures", json_object_new_int64((int64_t)stats.walk_failures));
		json_object_object_add(w, "ms_last", json_object_new_double((double)stats.walk_ns_last / 1e6));
		json_object_object_add(w, "ms_max", json_object_new_double((double)stats.walk_ns_max / 1e6));
		json_object_object_add(w, "arenas", json_object_new_int64((int64_t)stats.walk_last.arenas));
		json_object_object_add(w, "spans", json_object_new_int64((int64_t)stats.walk_last.spans));
		json_object_object_add(w, "specials", json_object_new_int64((int64_t)stats.walk_last.specials));
		json_object_object_add(w, "live_samples", json_object_new_int64((int64_t)stats.walk_last.profile));
		json_object_object_add(w, "rejected", json_object_new_int64((int64_t)stats.walk_last.rejected));
		json_object_object_add(w, "read_errors", json_object_new_int64((int64_t)stats.walk_last.read_errors));
		json_object_object_add(w, "truncated", json_object_new_boolean(stats.walk_last.truncated));
		json_object_object_add(st, "heap_walk", w);
	}
	json_object_object_add(o, "stats", st);
	json_object_object_add(obj, "heap_trace", o);
	return 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

void heap_trace__print(struct heap_trace *t, FILE *f, size_t max_sites)
{
	uint64_t now = now_monotonic_ns();
	char b1[32], b2[32], age[32];

	if (t->state == HEAP_PROFILE_RATE_ZERO || t->state == HEAP_PROFILE_UNAVAILABLE) {
		if (t->msg[0])
			fprintf(f, "  heap probes: %s\n", t->msg);
	} else if (t->state == HEAP_PROFILE_ON) {
		fprintf(f, "  heap in use by stack (sampled every %lld B; frees %s):\n", (long long)t->rate,
			t->walk ? "from a heap walk" : "probed");
		for (size_t i = 0; i < t->nsites && i < max_sites; i++) {
			const struct heap_trace_site *s = &t->sites[i];

			if (s->inuse_bytes <= 0)
				break;
			if (s->oldest_sample_ns && now > s->oldest_sample_ns)
				fmt_duration(age, sizeof(age), now - s->oldest_sample_ns);
			else
				snprintf(age, sizeof(age), ">%s",
					 fmt_duration(b2, sizeof(b2), now - t->attach_ns));
			fprintf(f, "    %10s %8lld obj  oldest %-8s %s %s:%d\n",
				fmt_bytes(b1, sizeof(b1), (uint64_t)s->inuse_bytes),
				(long long)s->inuse_objects, age, s->function, base_name(s->file), s->line);
		}
	}
	if (t->opts.trace) {
		const struct heap_rates *r = heap_trace__rates(t);

		if (r) {
			fprintf(f, "  allocations: %.0f/s, %s/s (mallocgc, every call)\n", r->allocs_per_s,
				fmt_bytes(b1, sizeof(b1), (uint64_t)r->bytes_per_s));
			fprintf(f, "    sizes:");
			for (unsigned c = 0; c < HT_HIST_BUCKETS; c++)
				if (r->hist[c] && r->allocs && r->hist[c] * 100 >= r->allocs)
					fprintf(f, " >=%s:%.0f%%", fmt_bytes(b1, sizeof(b1), heap_hist_lower(c)),
						100.0 * (double)r->hist[c] / (double)r->allocs);
			fprintf(f, "\n");
		}
		for (size_t i = 0; i < t->nalloc_sites && i < max_sites; i++) {
			const struct heap_alloc_site *s = &t->alloc_sites[i];

			fprintf(f, "    alloc %10s  %s %s:%d\n",
				fmt_bytes(b1, sizeof(b1), s->est_bytes), s->function, base_name(s->file),
				s->line);
		}
	}
}

struct pprof_ctx {
	const struct go_target *go;
};

static int pprof_sym(void *ctx, uint64_t address, size_t index, struct pprof_frame *frames,
		     size_t max, size_t *n)
{
	struct pprof_ctx *c = ctx;
	struct gobin_pcinfo info;

	*n = 0;
	if (!max || lookup_pc(c->go, address, index != 0, &info) < 0 || !info.func)
		return 0;
	frames[0] = (struct pprof_frame){ .function = info.func, .file = info.file, .line = info.line };
	*n = 1;
	return 0;
}

int heap_trace__write_alloc_pprof(struct heap_trace *t, const char *path)
{
	static const struct pprof_value_type types[] = {
		{ "alloc_samples", "count" },
		{ "alloc_space", "bytes" },
	};
	int sfd, stfd;
	struct ht_trace_key k, *prev = NULL;
	struct pprof_ctx ctx = { t->go };
	struct pprof_builder *b;
	uint64_t ips[HT_STACK_DEPTH];
	size_t guard = 0;
	int ret;

	if (!t->skel || !t->opts.trace)
		return -ENODATA;
	sfd = bpf_map__fd(t->skel->maps.ht_trace_sites);
	stfd = bpf_map__fd(t->skel->maps.ht_trace_stacks);
	ret = pprof_builder_new(types, 2, &b);
	if (ret < 0)
		return ret;
	if ((ret = pprof_set_period(b, "space", "bytes", (int64_t)t->opts.sample_bytes)) < 0 ||
	    (ret = pprof_set_default_sample_type(b, "alloc_space")) < 0 ||
	    (ret = pprof_set_drop_frames(b, "runtime\\..*|internal/runtime/.*")) < 0)
		goto out;
	pprof_set_time(b, (int64_t)now_realtime_ns(), (int64_t)(now_monotonic_ns() - t->attach_ns));
	while (guard++ < HT_MAX_TRACE_SITES && !bpf_map_get_next_key(sfd, prev, &k)) {
		struct ht_trace_counts c;
		int64_t values[2];
		size_t n;

		prev = &k;
		if (k.tgid != (__u32)t->go->pid || bpf_map_lookup_elem(sfd, &k, &c))
			continue;
		n = read_stack(stfd, k.stackid, ips);
		if (!n)
			continue;
		values[0] = (int64_t)c.samples;
		values[1] = (int64_t)(c.samples * t->opts.sample_bytes);
		ret = pprof_add_sample_addrs(b, ips, n, values, NULL, 0, pprof_sym, &ctx);
		if (ret < 0)
			goto out;
	}
	ret = pprof_write_file(b, path);
out:
	pprof_builder_free(b);
	return ret;
}
