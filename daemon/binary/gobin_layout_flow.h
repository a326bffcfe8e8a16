/* The value tracker under gobin_layout.c's recovery of runtime struct
 * offsets from code (see there): symbolic values in registers and the
 * frame, and the log of every access to memory that is not the frame.
 * gobin_layout_flow.c runs a function through it; gobin_layout_g.c (g, m,
 * sched, wait reasons) and gobin_layout_heap.c (gcController, memstats,
 * profile buckets, specials, mheap) read the fields out of its log.
 * Internal to binary/gobin_layout*.c. */
#ifndef MEMDRIFT_GOBIN_LAYOUT_FLOW_H
#define MEMDRIFT_GOBIN_LAYOUT_FLOW_H

#include <capstone/capstone.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "binary/gobin.h"
#include "binary/gobin_internal.h"

#define MAX_FUNC_BYTES (64u << 10)
#define MAX_INSNS 4096
#define MAX_VALS 8192
#define MAX_EVS 4096
#define MAX_SLOTS 256
#define NREGS 16
#define MAX_G_SIZE 4096
#define MAX_FIELD_OFFSET 2048 /* g and m fields sit well below this */
#define MAX_FAR_OFFSET (16 << 20) /* mheap and heapArena fields */

/* ---- symbolic values ---- */

enum vkind {
	V_FRESH,  /* nothing known; never equal to another value */
	V_ENTRY,  /* register k at function entry */
	V_G,      /* the current g (R14) */
	V_LOAD,   /* 8/4/2/1 bytes at [base + k] */
	V_ADD,    /* base + k */
	V_RET,    /* result register k of the call to a */
	V_IMM,    /* constant k */
	V_ADDR,   /* link-time address a (lea/mov of [rip+X]) */
	V_INDEX,  /* base + value a * k (lea r, [base + index*scale]) */
};

struct val {
	uint8_t kind;
	int32_t base;
	int64_t k;
	uint64_t a;
};

enum evkind { EV_LOAD, EV_STORE, EV_RMW, EV_READ, EV_CALL };

/* One access to non-frame memory (or a call). */
struct ev {
	uint8_t kind, size;
	int32_t base;   /* value the address is computed from */
	int64_t disp;
	int32_t v;      /* EV_LOAD: the loaded value; EV_STORE: the stored one
			 * (V_IMM for a constant, -1 unknown); EV_CALL: RAX */
	uint64_t call;  /* EV_CALL: direct target, 0 indirect */
	int32_t a1, a2; /* EV_CALL: RBX, RCX (arguments 2 and 3) */
};

struct slot {
	int64_t key; /* offset from the stack pointer at entry */
	int32_t v;
};

#define MAX_JUMPS 64
struct jump {
	uint64_t target;
	int64_t sp;
	int32_t reg[NREGS];
};

struct flow {
	const struct gobin *bin;
	struct jump jumps[MAX_JUMPS]; /* pending forward jumps */
	size_t njumps;
	struct val vals[MAX_VALS];
	size_t nvals;
	struct ev evs[MAX_EVS];
	size_t nevs;
	int32_t reg[NREGS];
	struct slot slots[MAX_SLOTS];
	size_t nslots;
	int64_t sp, frame_sp;
	bool frame_set;
	/* waitReason.String: the first `cmp al, imm` and `lea r, [rip+X]` */
	int64_t cmp_arg0_imm;   /* first `cmp reg, imm` of the entry RAX (a bounds check) */
	int64_t shl_arg0_imm;   /* first `shl reg, imm` of the entry RAX (an index scaled) */
	int32_t ret_rax, ret_rbx; /* results at the first RET */
	int32_t vals_entry_rax;   /* the value "RAX at entry" */
	uint64_t first_lea_rip;
	int64_t cmp_status_imm; /* first `cmp r32, imm` with imm > 0xff (_Gscanrunning) */
	/* the write barrier entry points: they preserve every register but R11 */
	uint64_t wb[24];
	size_t nwb;
};


/* reg_index()'s numbering of the x86-64 registers (f->reg[], V_ENTRY k) */
enum { R_RAX = 0, R_RCX = 1, R_RDX = 2, R_RBX = 3, R_RSP = 4, R_RBP = 5, R_RSI = 6,
       R_RDI = 7, R_R14 = 14 };

struct recovery {
	struct go_offsets *out;
	int stackguard;      /* g.stackguard0, from the prologues */
	/* link-time addresses the patterns refer to, 0 unknown */
	uint64_t casgstatus, newobject, sched, allm, gc, ms;
	uint64_t persistentalloc, new_bucket, bucket_mp;
	uint64_t mheap, span_of_heap;
};

/* The interned value (kind, base, k, a), or -1 when the function never made it. */
int32_t lf_lookup(const struct flow *f, uint8_t kind, int32_t base, int64_t k, uint64_t a);
/* Decodes function fname and runs it through the tracker into f. 0 or
 * negative errno (not found, too large, not decodable). */
int lf_run(struct flow *f, csh cs, cs_insn *ci, const char *fname);
/* The write barrier entry points into f->wb (they preserve every register
 * but R11). */
void lf_find_write_barriers(struct flow *f);
bool lf_is_load_of(const struct flow *f, int32_t v, int32_t base);
/* First event matching kind, size (0 any), base (-1 any) and value (-2 any) from *from. */
const struct ev *lf_find_ev(const struct flow *f, size_t *from, uint8_t kind, uint8_t size,
			    int32_t base, int32_t v);

static inline int32_t lf_entry(const struct flow *f, int r)
{
	return lf_lookup(f, V_ENTRY, -1, r, 0);
}

static inline int32_t lf_gval(const struct flow *f)
{
	return lf_lookup(f, V_G, -1, 0, 0);
}

static inline bool plausible(int64_t off) { return off >= 0 && off < MAX_FIELD_OFFSET; }

/* The go_offsets field called name (go_offsets_fields), NULL if none. */
int *layout_field_ptr(struct go_offsets *o, const char *name);
/* Records a recovered value; a second pattern that disagrees withdraws it. */
void layout_found(struct recovery *r, const char *field, int64_t value, const char *where);

/* The patterns, one per runtime function (gobin_layout.c's table says which
 * function each reads, in which order). */
void layout_gopark(struct flow *f, struct recovery *r);
void layout_execute(struct flow *f, struct recovery *r);
void layout_newproc1(struct flow *f, struct recovery *r);
void layout_find_leaks(struct flow *f, struct recovery *r);
void layout_malg(struct flow *f, struct recovery *r);
void layout_mcommoninit(struct flow *f, struct recovery *r);
void layout_cgocall(struct flow *f, struct recovery *r);
void layout_wait_reason_string(struct flow *f, struct recovery *r);

void layout_gc_update(struct flow *f, struct recovery *r);
void layout_reset_live(struct flow *f, struct recovery *r);
void layout_heap_goal(struct flow *f, struct recovery *r);
void layout_alloc_large(struct flow *f, struct recovery *r);
void layout_sweep(struct flow *f, struct recovery *r);
void layout_mark_termination(struct flow *f, struct recovery *r);
void layout_bucket_stk(struct flow *f, struct recovery *r);
void layout_bucket_mp(struct flow *f, struct recovery *r);
void layout_new_bucket(struct flow *f, struct recovery *r);
void layout_stkbucket(struct flow *f, struct recovery *r);
void layout_flush_locked(struct flow *f, struct recovery *r);
void layout_setprofilebucket(struct flow *f, struct recovery *r);
void layout_addspecial(struct flow *f, struct recovery *r);
void layout_span_of_heap(struct flow *f, struct recovery *r);
void layout_mspan_init(struct flow *f, struct recovery *r);
void layout_alloc_span(struct flow *f, struct recovery *r);
void layout_gc_sweep(struct flow *f, struct recovery *r);

#endif
