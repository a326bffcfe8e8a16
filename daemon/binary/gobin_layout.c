/* Runtime struct offsets read from the binary's own instructions, for a
 * stripped binary of a Go version the offset table does not know.
 *
 * Each runtime function below is decoded once (Capstone) and run through a
 * small linear value tracker: registers and the frame's spill slots hold
 * symbolic values (the function's register arguments, g (R14), a load
 * [value+disp], value+constant, value+index*scale, a call's results, a
 * constant or a global's address), and every access to memory that is not
 * the frame is logged with its base value, displacement and size. A field
 * is then a statement of the Go source spotted in that log, e.g. in
 * runtime.newproc1 `newg.gopc = callerpc` is the one 8-byte store of the
 * entry RCX. Branches are ignored (the scan is linear; a forward jmp's
 * state carries to its target), so every pattern states facts that hold on
 * every path of the statement it looks for, and each field is checked
 * against the DWARF of every installed toolchain's binaries by
 * tests/unit/test_gobin_layout.c. Functions read, with the Go source they
 * compile (runtime/proc.go unless named):
 *
 *   gopark       mp := acquirem(); gp := mp.curg; readgstatus(gp);
 *                gp.waitreason = reason           g.m, m.curg, g.atomicstatus, g.waitreason
 *   execute      casgstatus(gp, ...); gp.waitsince = 0;
 *                gp.stackguard0 = gp.stack.lo + stackGuard          g.waitsince, g.stack.lo
 *   newproc1     newg.parentGoid = callergp.goid; newg.gopc = callerpc;
 *                newg.startpc = fn.fn; newg.goid = pp.goidcache;
 *                sp := newg.stack.hi - totalSize
 *                                    g.goid, g.parentGoid, g.gopc, g.startpc, g.stack.hi
 *   malg         newg := new(g)                   sizeof(g) from the type descriptor
 *   mcommoninit  mp.alllink = allm                m.alllink
 *   cgocall      mp.ncgocall++ (cgocall.go)       m.ncgocall
 *   (*gcControllerState).update   gcController.heapLive.Add(dHeapLive)  (mgcpacer.go)
 *   (*gcControllerState).resetLive   c.heapMarked = bytesMarked; c.heapLive = bytesMarked
 *   (*gcControllerState).heapGoalInternal   goal = c.gcPercentHeapGoal.Load()
 *   (*mcache).allocLarge   gcController.totalAlloc.Add(...)   (mcache.go)
 *   (*sweepLocked).sweep   gcController.totalFree.Add(...)    (mgcsweep.go)
 *   gcMarkTermination      memstats.numgc++ (the last 4-byte increment of memstats, mgc.go)
 *   findGoroutineLeaks     casgstatus(gp, _Gwaiting, _Gleaked) (mgc.go, 1.26+)
 *   waitReason.String  bounds check and index of waitReasonStrings (runtime2.go)
 *   (*bucket).stk or .mp   add(b, unsafe.Sizeof(*b)) and b.nstk (mprof.go)
 *                          sizeof(bucket), bucket.nstk
 *   newBucket              b.nstk = uintptr(nstk)
 *   stkbucket              b.size = size
 *   mProf_FlushLocked      b = b.allnext; &mp.future[index]: index < len(future),
 *                          scaled by sizeof(memRecordCycle)         memRecord sizes
 *   setprofilebucket       s.special.kind = _KindSpecialProfile; s.b = b (mprof.go)
 *                          special.kind, specialprofile.b, _KindSpecialProfile
 *   addspecial             offset := p - span.base(); kind := s.kind; *iter = s
 *                          (iter from &span.specials); Or8(&ha.pageSpecials[..]) (mheap.go)
 *                          mspan.startAddr, special.kind, mspan.specials, heapArena.pageSpecials
 *   spanOfHeap             mheap_.arenas[0][l2].spans[...]      mheap.arenas, heapArena.spans
 *   (*mspan).init          span.startAddr = base; span.npages = npages
 *                          ((*mheap).allocSpan where it is inlined, 1.19)
 *   gcSweep                mheap_.sweepArenas = mheap_.allArenas  mheap.allArenas
 * Not read from code (nothing needs them): m.procid, gcControllerState.memoryLimit,
 * mstats.last_gc_nanotime and, before 1.19, the gcControllerState.heapGoal field.
 */
#include <capstone/capstone.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binary/gobin.h"
#include "binary/gobin_internal.h"
#include "base/log.h"
#include "probe/probe_place.h"
#include "base/strbuf.h"

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

static int32_t intern(struct flow *f, uint8_t kind, int32_t base, int64_t k, uint64_t a)
{
	if (kind != V_FRESH)
		for (size_t i = 0; i < f->nvals; i++) {
			const struct val *v = &f->vals[i];

			if (v->kind == kind && v->base == base && v->k == k && v->a == a)
				return (int32_t)i;
		}
	if (f->nvals == MAX_VALS)
		return -1;
	f->vals[f->nvals] = (struct val){ kind, base, k, a };
	return (int32_t)f->nvals++;
}

/* The value if it was ever made, else -1 (queries must not create values). */
static int32_t lookup(const struct flow *f, uint8_t kind, int32_t base, int64_t k, uint64_t a)
{
	for (size_t i = 0; i < f->nvals; i++) {
		const struct val *v = &f->vals[i];

		if (v->kind == kind && v->base == base && v->k == k && v->a == a)
			return (int32_t)i;
	}
	return -1;
}

static int32_t fresh(struct flow *f) { return intern(f, V_FRESH, -1, 0, 0); }

static int32_t add_const(struct flow *f, int32_t v, int64_t k)
{
	if (v < 0)
		return fresh(f);
	if (k == 0)
		return v;
	if (f->vals[v].kind == V_ADD) {
		k += f->vals[v].k;
		v = f->vals[v].base;
		if (k == 0)
			return v;
	}
	return intern(f, V_ADD, v, k, 0);
}

/* rax rcx rdx rbx rsp rbp rsi rdi r8..r15, every width */
static int reg_index(x86_reg r)
{
	static const x86_reg map[NREGS][5] = {
		{ X86_REG_RAX, X86_REG_EAX, X86_REG_AX, X86_REG_AL, X86_REG_AH },
		{ X86_REG_RCX, X86_REG_ECX, X86_REG_CX, X86_REG_CL, X86_REG_CH },
		{ X86_REG_RDX, X86_REG_EDX, X86_REG_DX, X86_REG_DL, X86_REG_DH },
		{ X86_REG_RBX, X86_REG_EBX, X86_REG_BX, X86_REG_BL, X86_REG_BH },
		{ X86_REG_RSP, X86_REG_ESP, X86_REG_SP, X86_REG_SPL, X86_REG_INVALID },
		{ X86_REG_RBP, X86_REG_EBP, X86_REG_BP, X86_REG_BPL, X86_REG_INVALID },
		{ X86_REG_RSI, X86_REG_ESI, X86_REG_SI, X86_REG_SIL, X86_REG_INVALID },
		{ X86_REG_RDI, X86_REG_EDI, X86_REG_DI, X86_REG_DIL, X86_REG_INVALID },
		{ X86_REG_R8, X86_REG_R8D, X86_REG_R8W, X86_REG_R8B, X86_REG_INVALID },
		{ X86_REG_R9, X86_REG_R9D, X86_REG_R9W, X86_REG_R9B, X86_REG_INVALID },
		{ X86_REG_R10, X86_REG_R10D, X86_REG_R10W, X86_REG_R10B, X86_REG_INVALID },
		{ X86_REG_R11, X86_REG_R11D, X86_REG_R11W, X86_REG_R11B, X86_REG_INVALID },
		{ X86_REG_R12, X86_REG_R12D, X86_REG_R12W, X86_REG_R12B, X86_REG_INVALID },
		{ X86_REG_R13, X86_REG_R13D, X86_REG_R13W, X86_REG_R13B, X86_REG_INVALID },
		{ X86_REG_R14, X86_REG_R14D, X86_REG_R14W, X86_REG_R14B, X86_REG_INVALID },
		{ X86_REG_R15, X86_REG_R15D, X86_REG_R15W, X86_REG_R15B, X86_REG_INVALID },
	};

	if (r == X86_REG_INVALID)
		return -1;
	for (int i = 0; i < NREGS; i++)
		for (int j = 0; j < 5; j++)
			if (map[i][j] == r)
				return i;
	return -1;
}

enum { R_RAX = 0, R_RCX = 1, R_RDX = 2, R_RBX = 3, R_RSP = 4, R_RBP = 5, R_RSI = 6,
       R_RDI = 7, R_R14 = 14 };

static void log_ev(struct flow *f, uint8_t kind, uint8_t size, int32_t base, int64_t disp,
		   int32_t v, uint64_t call)
{
	/* an access through an unknown pointer (R11 after a write barrier:
	 * the barrier's buffer) can match no pattern */
	if (kind != EV_CALL && (base < 0 || f->vals[base].kind == V_FRESH))
		return;
	if (f->nevs < MAX_EVS)
		f->evs[f->nevs++] = (struct ev){ kind, size, base, disp, v, call,
						 f->reg[R_RBX], f->reg[R_RCX] };
}

static struct slot *slot_find(struct flow *f, int64_t key)
{
	for (size_t i = 0; i < f->nslots; i++)
		if (f->slots[i].key == key)
			return &f->slots[i];
	return NULL;
}

static void slot_set(struct flow *f, int64_t key, unsigned size, int32_t v)
{
	struct slot *s;

	/* a write kills every slot it overlaps */
	for (size_t i = 0; i < f->nslots;) {
		if (f->slots[i].key < key + (int64_t)size && key < f->slots[i].key + 8 &&
		    f->slots[i].key != key)
			f->slots[i] = f->slots[--f->nslots];
		else
			i++;
	}
	s = slot_find(f, key);
	if (!s && f->nslots < MAX_SLOTS) {
		s = &f->slots[f->nslots++];
		s->key = key;
	}
	if (s)
		s->v = v;
}

/* Where a memory operand points: frame slot (*is_slot, *key), or base
 * value + *disp. -1 when untracked (TLS, indexed, frame pointer). */
static int32_t mem_operand(struct flow *f, const cs_x86_op *op, uint64_t next_pc, bool *is_slot,
			   int64_t *key, int64_t *disp)
{
	int b = reg_index(op->mem.base);

	int ix = reg_index(op->mem.index);
	int32_t v;

	*is_slot = false;
	*disp = op->mem.disp;
	if (op->mem.segment != X86_REG_INVALID)
		return -1;
	if (op->mem.base == X86_REG_RIP) {
		*disp = 0;
		return op->mem.index == X86_REG_INVALID ?
			intern(f, V_ADDR, -1, 0, next_pc + (uint64_t)op->mem.disp) : -1;
	}
	if (b == R_RSP) {
		*is_slot = op->mem.index == X86_REG_INVALID;
		*key = f->sp + op->mem.disp;
		return -1;
	}
	if (b < 0 || b == R_RBP || (op->mem.index != X86_REG_INVALID && ix < 0))
		return -1;
	v = f->reg[b];
	if (v < 0)
		return -1;
	if (ix >= 0) /* [base + index*scale + disp] */
		v = f->reg[ix] >= 0 ? intern(f, V_INDEX, v, op->mem.scale, (uint64_t)f->reg[ix]) : -1;
	else if (f->vals[v].kind == V_ADD) { /* [(b + k) + disp] is [b + k + disp] */
		*disp += f->vals[v].k;
		v = f->vals[v].base;
	}
	return v;
}

static void clobber_written(struct flow *f, csh cs, const cs_insn *ci)
{
	cs_regs rd, wr;
	uint8_t nrd = 0, nwr = 0;

	if (cs_regs_access(cs, ci, rd, &nrd, wr, &nwr) != CS_ERR_OK)
		return;
	for (int i = 0; i < nwr; i++) {
		int r = reg_index(wr[i]);

		if (r >= 0 && r != R_RSP)
			f->reg[r] = fresh(f);
	}
}

static void step(struct flow *f, csh cs, const cs_insn *ci)
{
	const cs_x86 *x = &ci->detail->x86;
	const cs_x86_op *o0 = x->op_count > 0 ? &x->operands[0] : NULL;
	const cs_x86_op *o1 = x->op_count > 1 ? &x->operands[1] : NULL;
	uint64_t next = ci->address + ci->size;
	int d0 = o0 && o0->type == X86_OP_REG ? reg_index(o0->reg) : -1;
	int32_t newv = -2; /* -2: no tracked result for d0 */
	bool is_slot;
	int64_t key, disp;
	int32_t base;

	switch (ci->id) {
	case X86_INS_MOV: case X86_INS_MOVZX: case X86_INS_MOVSX: case X86_INS_MOVSXD:
	case X86_INS_MOVABS:
		if (!o0 || !o1)
			break;
		if (o0->type == X86_OP_REG) {
			if (o1->type == X86_OP_REG) {
				int s = reg_index(o1->reg);

				newv = s >= 0 ? f->reg[s] : fresh(f);
			} else if (o1->type == X86_OP_IMM) {
				newv = intern(f, V_IMM, -1, o1->imm, 0);
			} else if (o1->type == X86_OP_MEM) {
				if (o1->mem.segment == X86_REG_FS && d0 == R_R14) {
					newv = intern(f, V_G, -1, 0, 0); /* getg() from TLS */
					break;
				}
				base = mem_operand(f, o1, next, &is_slot, &key, &disp);
				if (is_slot) {
					struct slot *s = slot_find(f, key);

					newv = s ? s->v : fresh(f);
				} else if (base >= 0) {
					newv = intern(f, V_LOAD, base, disp, 0);
					log_ev(f, EV_LOAD, o1->size, base, disp, newv, 0);
				} else {
					newv = fresh(f);
				}
			}
		} else if (o0->type == X86_OP_MEM && o1) {
			int32_t v = -1;

			if (o1->type == X86_OP_REG) {
				int s = reg_index(o1->reg);

				v = s >= 0 ? f->reg[s] : -1;
			} else if (o1->type == X86_OP_IMM) {
				v = intern(f, V_IMM, -1, o1->imm, 0);
			}
			base = mem_operand(f, o0, next, &is_slot, &key, &disp);
			if (is_slot)
				slot_set(f, key, o0->size, v >= 0 ? v : fresh(f));
			else if (base >= 0)
				log_ev(f, EV_STORE, o0->size, base, disp, v, 0);
		}
		break;
	case X86_INS_LEA:
		if (d0 < 0 || !o1 || o1->type != X86_OP_MEM)
			break;
		if (o1->mem.base == X86_REG_RIP && o1->mem.index == X86_REG_INVALID) {
			newv = intern(f, V_ADDR, -1, 0, next + (uint64_t)o1->mem.disp);
			if (!f->first_lea_rip)
				f->first_lea_rip = next + (uint64_t)o1->mem.disp;
		} else if (o1->mem.index != X86_REG_INVALID && o1->mem.segment == X86_REG_INVALID &&
			   reg_index(o1->mem.base) >= 0 && reg_index(o1->mem.index) >= 0 &&
			   reg_index(o1->mem.base) != R_RSP) {
			int32_t b = f->reg[reg_index(o1->mem.base)];
			int32_t ix = f->reg[reg_index(o1->mem.index)];

			newv = b >= 0 && ix >= 0 ?
				add_const(f, intern(f, V_INDEX, b, o1->mem.scale, (uint64_t)ix),
					  o1->mem.disp) : fresh(f);
		} else {
			base = mem_operand(f, o1, next, &is_slot, &key, &disp);
			newv = base >= 0 ? add_const(f, base, disp) : fresh(f);
		}
		break;
	case X86_INS_ADD: case X86_INS_SUB:
		if (d0 == R_RSP && o1 && o1->type == X86_OP_IMM) {
			f->sp += ci->id == X86_INS_SUB ? -o1->imm : o1->imm;
			if (ci->id == X86_INS_SUB && !f->frame_set) {
				f->frame_set = true;
				f->frame_sp = f->sp;
			}
			return;
		}
		if (d0 >= 0 && o1 && o1->type == X86_OP_IMM)
			newv = add_const(f, f->reg[d0], ci->id == X86_INS_SUB ? -o1->imm : o1->imm);
		break;
	case X86_INS_INC: case X86_INS_DEC:
		if (d0 >= 0)
			newv = add_const(f, f->reg[d0], ci->id == X86_INS_INC ? 1 : -1);
		break;
	case X86_INS_XOR:
		if (d0 >= 0 && o1 && o1->type == X86_OP_REG && reg_index(o1->reg) == d0)
			newv = intern(f, V_IMM, -1, 0, 0);
		break;
	case X86_INS_CMP:
		if (d0 >= 0 && o1 && o1->type == X86_OP_IMM && f->reg[d0] == f->vals_entry_rax &&
		    f->cmp_arg0_imm < 0)
			f->cmp_arg0_imm = o1->imm;
		if (o0 && o0->type == X86_OP_REG && o0->size == 4 && o1 && o1->type == X86_OP_IMM &&
		    o1->imm > 0xff && f->cmp_status_imm < 0)
			f->cmp_status_imm = o1->imm;
		break;
	case X86_INS_SHL:
		if (d0 >= 0 && o1 && o1->type == X86_OP_IMM && f->reg[d0] == f->vals_entry_rax &&
		    f->shl_arg0_imm < 0)
			f->shl_arg0_imm = o1->imm;
		break;
	case X86_INS_PUSH:
		f->sp -= 8;
		return;
	case X86_INS_POP:
		f->sp += 8;
		if (d0 >= 0 && d0 != R_RSP)
			f->reg[d0] = fresh(f);
		return;
	case X86_INS_RET:
		if (f->ret_rax < 0) {
			f->ret_rax = f->reg[R_RAX];
			f->ret_rbx = f->reg[R_RBX];
		}
		/* fall through */
	case X86_INS_JMP:
		/* a forward jump: its target starts with this state, not with
		 * whatever falls into it (often a loop's back edge) */
		if (ci->id == X86_INS_JMP && o0 && o0->type == X86_OP_IMM &&
		    (uint64_t)o0->imm > ci->address && f->njumps < MAX_JUMPS) {
			struct jump *j = &f->jumps[f->njumps++];

			j->target = (uint64_t)o0->imm;
			j->sp = f->sp;
			memcpy(j->reg, f->reg, sizeof(j->reg));
		}
		/* the code after belongs to the frame again */
		if (f->frame_set)
			f->sp = f->frame_sp;
		return;
	case X86_INS_CALL: {
		uint64_t target = o0 && o0->type == X86_OP_IMM ? (uint64_t)o0->imm : 0;

		log_ev(f, EV_CALL, 0, -1, 0, f->reg[R_RAX], target);
		for (size_t i = 0; target && i < f->nwb; i++)
			if (f->wb[i] == target) {
				f->reg[11] = fresh(f);
				return;
			}
		/* ABIInternal: every register but RSP, RBP and R14 (g) is the callee's */
		for (int r = 0; r < NREGS; r++)
			if (r != R_RSP && r != R_RBP && r != R_R14)
				f->reg[r] = fresh(f);
		f->reg[R_RAX] = intern(f, V_RET, -1, 0, target);
		f->reg[R_RBX] = intern(f, V_RET, -1, 1, target);
		return;
	}
	default:
		break;
	}

	/* memory operands of everything else: reads, read-modify-writes, stores */
	if (ci->id != X86_INS_MOV && ci->id != X86_INS_MOVZX && ci->id != X86_INS_MOVSX &&
	    ci->id != X86_INS_MOVSXD && ci->id != X86_INS_LEA && ci->id != X86_INS_NOP) {
		for (int i = 0; i < x->op_count; i++) {
			const cs_x86_op *op = &x->operands[i];

			if (op->type != X86_OP_MEM)
				continue;
			base = mem_operand(f, op, next, &is_slot, &key, &disp);
			if (is_slot) {
				if (op->access & CS_AC_WRITE)
					slot_set(f, key, op->size, fresh(f));
				continue;
			}
			if (base < 0)
				continue;
			if (ci->id == X86_INS_CMP || ci->id == X86_INS_TEST || !(op->access & CS_AC_WRITE))
				log_ev(f, EV_READ, op->size, base, disp, -1, 0);
			else if (ci->id == X86_INS_XCHG && o1 && o1->type == X86_OP_REG &&
				 reg_index(o1->reg) >= 0)
				log_ev(f, EV_STORE, op->size, base, disp, f->reg[reg_index(o1->reg)], 0);
			else if (i == 0 && (ci->id == X86_INS_MOVUPS || ci->id == X86_INS_MOVAPS ||
					    ci->id == X86_INS_MOVQ || ci->id == X86_INS_MOVD))
				log_ev(f, EV_STORE, op->size, base, disp, -1, 0);
			else
				log_ev(f, EV_RMW, op->size, base, disp, -1, 0);
		}
	}
	clobber_written(f, cs, ci);
	if (d0 >= 0 && newv != -2)
		f->reg[d0] = newv >= 0 ? newv : fresh(f);
}

/* Decodes and tracks fname; -ENOENT when the function is absent. */
static int run(struct flow *f, csh cs, cs_insn *ci, const char *fname)
{
	struct gobin_func fn;
	const uint8_t *code;
	size_t avail, size, n = 0;
	uint64_t addr;

	f->nvals = f->nevs = f->nslots = f->njumps = 0;
	f->sp = f->frame_sp = 0;
	f->frame_set = false;
	f->cmp_arg0_imm = f->shl_arg0_imm = -1;
	f->ret_rax = f->ret_rbx = -1;
	f->cmp_status_imm = -1;
	f->first_lea_rip = 0;
	if (gobin_func_by_name(f->bin, fname, &fn) != 0 || fn.end <= fn.entry)
		return -ENOENT;
	code = gobin_vaddr_ptr(f->bin, fn.entry, &avail);
	if (!code)
		return -ENOENT;
	size = fn.end - fn.entry;
	if (size > MAX_FUNC_BYTES)
		size = MAX_FUNC_BYTES;
	if (size > avail)
		size = avail;
	for (int r = 0; r < NREGS; r++)
		f->reg[r] = intern(f, V_ENTRY, -1, r, 0);
	f->reg[R_R14] = intern(f, V_G, -1, 0, 0);
	f->vals_entry_rax = f->reg[R_RAX];
	addr = fn.entry;
	while (n++ < MAX_INSNS && cs_disasm_iter(cs, &code, &size, &addr, ci)) {
		if (ci->id == X86_INS_INT3)
			break; /* padding to the next function */
		for (size_t j = 0; j < f->njumps; j++)
			if (f->jumps[j].target == ci->address) {
				memcpy(f->reg, f->jumps[j].reg, sizeof(f->reg));
				f->sp = f->jumps[j].sp;
				f->jumps[j] = f->jumps[--f->njumps];
				break;
			}
		step(f, cs, ci);
	}
	return 0;
}

static int32_t entry(const struct flow *f, int r) { return lookup(f, V_ENTRY, -1, r, 0); }
static int32_t gval(const struct flow *f) { return lookup(f, V_G, -1, 0, 0); }

static bool is_load_of(const struct flow *f, int32_t v, int32_t base)
{
	return v >= 0 && f->vals[v].kind == V_LOAD && f->vals[v].base == base;
}

/* First event matching kind, size (0 any), base (-1 any) and value (-2 any) from *from. */
static const struct ev *find_ev(const struct flow *f, size_t *from, uint8_t kind, uint8_t size,
				int32_t base, int32_t v)
{
	for (size_t i = *from; i < f->nevs; i++) {
		const struct ev *e = &f->evs[i];

		if (e->kind != kind || (size && e->size != size) || (base != -1 && e->base != base) ||
		    (v != -2 && e->v != v))
			continue;
		*from = i + 1;
		return e;
	}
	return NULL;
}

static bool plausible(int64_t off) { return off >= 0 && off < MAX_FIELD_OFFSET; }

/* mheap (~64 KiB of page allocator first) and heapArena (2 MiB of bitmap
 * before spans until 1.22) fields sit far out; constants are small numbers */
static bool plausible_for(const char *field, int64_t value)
{
	if (!strncmp(field, "mheap_", 6) || !strncmp(field, "heaparena_", 10))
		return value >= 0 && value < MAX_FAR_OFFSET;
	if (!strncmp(field, "status_", 7) || !strncmp(field, "kind_", 5))
		return value >= 0 && value <= 0xffff;
	return plausible(value);
}

/* ---- the patterns ---- */

struct recovery {
	struct go_offsets *out;
	int stackguard;      /* g.stackguard0, from the prologues */
	/* link-time addresses the patterns refer to, 0 unknown */
	uint64_t casgstatus, newobject, sched, allm, gc, ms;
	uint64_t persistentalloc, new_bucket, bucket_mp;
	uint64_t mheap, span_of_heap;
};

static int *field_ptr(struct go_offsets *o, const char *name)
{
	for (size_t i = 0; i < go_offsets_nfields; i++)
		if (!strcmp(go_offsets_fields[i].name, name))
			return (int *)((char *)o + go_offsets_fields[i].offset);
	return NULL;
}

/* Records a recovered value; a second pattern that disagrees withdraws it. */
static void found(struct recovery *r, const char *field, int64_t value, const char *where)
{
	int *p = field_ptr(r->out, field);

	if (!p || !plausible_for(field, value))
		return;
	if (*p == GO_OFF_NONE) {
		*p = (int)value;
	} else if (*p != value && *p != -2) {
		log_debug("layout: %s is %d in one function and %lld in %s", field, *p,
			  (long long)value, where);
		*p = -2; /* conflict: reset to GO_OFF_NONE at the end */
	}
}

static void find_write_barriers(struct flow *f)
{
	static const char *const suffix[] = { "", "1", "2", "3", "4", "5", "6", "7", "8",
					       "CX", "DX", "BX", "BP", "SI", "R8", "R9" };
	struct gobin_func fn;
	char name[64];

	f->nwb = 0;
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		snprintf(name, sizeof(name), "runtime.gcWriteBarrier%s", suffix[i]);
		if (gobin_func_by_name(f->bin, name, &fn) == 0 && f->nwb < 24)
			f->wb[f->nwb++] = fn.entry;
	}
}

static void from_gopark(struct flow *f, struct recovery *r)
{
	int32_t g = gval(f), m, curg;
	const struct ev *e;
	size_t i = 0;

	/* the stack check `cmp rsp, [r14+stackguard0]` comes first */
	e = find_ev(f, &i, EV_READ, 8, g, -2);
	if (e && i == 1 && plausible(e->disp))
		r->stackguard = (int)e->disp;
	i = 0;
	e = find_ev(f, &i, EV_LOAD, 8, g, -2); /* mp := acquirem() */
	if (!e)
		return;
	found(r, "g_m", e->disp, "gopark");
	m = e->v;
	e = find_ev(f, &i, EV_LOAD, 8, m, -2); /* gp := mp.curg */
	if (!e)
		return;
	found(r, "m_curg", e->disp, "gopark");
	curg = e->v;
	for (size_t j = i; j < f->nevs; j++) { /* readgstatus(gp) */
		const struct ev *s = &f->evs[j];

		if ((s->kind == EV_LOAD || s->kind == EV_READ) && s->size == 4 && s->base == curg) {
			found(r, "g_atomicstatus", s->disp, "gopark");
			break;
		}
	}
	e = find_ev(f, &i, EV_STORE, 1, curg, entry(f, R_RCX)); /* gp.waitreason = reason */
	if (e)
		found(r, "g_waitreason", e->disp, "gopark");
	/* status != _Grunning && status != _Gscanrunning: _Gscan is its high bit */
	if (f->cmp_status_imm > 0) {
		int64_t bit = 1;

		while (bit * 2 <= f->cmp_status_imm)
			bit *= 2;
		if (f->cmp_status_imm - bit < 16)
			found(r, "status_scan_bit", bit, "gopark");
	}
}

static void from_execute(struct flow *f, struct recovery *r)
{
	uint64_t casgstatus = r->casgstatus;
	int32_t gp = entry(f, R_RAX), g = gval(f);
	const struct ev *e;
	size_t i = 0;

	/* mp.curg = gp; gp.m = mp */
	while ((e = find_ev(f, &i, EV_STORE, 8, -1, gp)))
		if (is_load_of(f, e->base, g)) {
			found(r, "m_curg", e->disp, "execute");
			found(r, "g_m", f->vals[e->base].k, "execute");
			break;
		}
	i = 0;
	while ((e = find_ev(f, &i, EV_CALL, 0, -1, -2)))
		if (casgstatus && e->call == casgstatus)
			break;
	if (!e)
		return;
	e = find_ev(f, &i, EV_STORE, 8, gp, lookup(f, V_IMM, -1, 0, 0)); /* gp.waitsince = 0 */
	if (e)
		found(r, "g_waitsince", e->disp, "execute");
	if (r->stackguard < 0)
		return;
	i = 0;
	while ((e = find_ev(f, &i, EV_STORE, 8, gp, -2))) {
		const struct val *v = e->v >= 0 ? &f->vals[e->v] : NULL;

		/* gp.stackguard0 = gp.stack.lo + stackGuard */
		if (e->disp == r->stackguard && v && v->kind == V_ADD && v->k > 0 &&
		    is_load_of(f, v->base, gp)) {
			found(r, "g_stack_lo", f->vals[v->base].k, "execute");
			break;
		}
	}
}

static void from_newproc1(struct flow *f, struct recovery *r)
{
	uint64_t sched = r->sched, casgstatus = r->casgstatus;
	int32_t fn = entry(f, R_RAX), callergp = entry(f, R_RBX), newg = -1;
	int32_t fnfn = lookup(f, V_LOAD, fn, 0, 0);
	const struct ev *e;
	size_t i = 0;

	while ((e = find_ev(f, &i, EV_STORE, 8, -1, entry(f, R_RCX)))) { /* newg.gopc = callerpc */
		if (newg >= 0 && e->base != newg)
			return; /* two candidates: do not guess */
		newg = e->base;
		found(r, "g_gopc", e->disp, "newproc1");
	}
	if (newg < 0)
		return;
	i = 0;
	if (fnfn >= 0 && (e = find_ev(f, &i, EV_STORE, 8, newg, fnfn))) /* newg.startpc = fn.fn */
		found(r, "g_startpc", e->disp, "newproc1");
	/* newg.parentGoid = callergp.goid (1.21+) */
	for (i = 0; (e = find_ev(f, &i, EV_STORE, 8, newg, -2));)
		if (is_load_of(f, e->v, callergp)) {
			found(r, "g_parent_goid", e->disp, "newproc1");
			found(r, "g_goid", f->vals[e->v].k, "newproc1");
			break;
		}
	/* pp.goidcache = sched.goidgen.Add(_GoidCacheBatch); ...; newg.goid = pp.goidcache */
	if (sched) {
		int32_t goidgen = lookup(f, V_ADDR, -1, 0, sched);

		i = 0;
		if (goidgen >= 0 && find_ev(f, &i, EV_RMW, 8, goidgen, -2) &&
		    (e = find_ev(f, &i, EV_STORE, 8, -1, -2))) {
			int32_t cache = lookup(f, V_LOAD, e->base, e->disp, 0);

			if (cache >= 0 && (e = find_ev(f, &i, EV_STORE, 8, newg, cache)))
				found(r, "g_goid", e->disp, "newproc1");
		}
	}
	/* sp := newg.stack.hi - totalSize; newg.sched.sp = sp */
	for (i = 0; (e = find_ev(f, &i, EV_STORE, 8, newg, -2));) {
		const struct val *v = e->v >= 0 ? &f->vals[e->v] : NULL;

		if (v && v->kind == V_ADD && v->k < 0 && v->k > -1024 && is_load_of(f, v->base, newg)) {
			found(r, "g_stack_hi", f->vals[v->base].k, "newproc1");
			break;
		}
	}
	/* newg = malg(); casgstatus(newg, _Gidle, _Gdead) */
	for (i = 0; casgstatus && (e = find_ev(f, &i, EV_CALL, 0, -1, -2));) {
		const struct val *from = e->a1 >= 0 ? &f->vals[e->a1] : NULL;
		const struct val *to = e->a2 >= 0 ? &f->vals[e->a2] : NULL;

		if (e->call != casgstatus)
			continue;
		if (from && to && from->kind == V_IMM && from->k == 0 && to->kind == V_IMM)
			found(r, "status_dead", to->k, "newproc1");
		break;
	}
	/* if parked { newg.waitreason = waitreason } (1.23+) */
	i = 0;
	if ((e = find_ev(f, &i, EV_STORE, 1, newg, entry(f, R_RSI))))
		found(r, "g_waitreason", e->disp, "newproc1");
}

/* findGoroutineLeaks (1.26+): casgstatus(gp, _Gwaiting, _Gleaked) is its
 * first status change */
static void from_find_leaks(struct flow *f, struct recovery *r)
{
	uint64_t casgstatus = r->casgstatus;
	const struct ev *e;
	size_t i = 0;

	while (casgstatus && (e = find_ev(f, &i, EV_CALL, 0, -1, -2))) {
		const struct val *from = e->a1 >= 0 ? &f->vals[e->a1] : NULL;
		const struct val *to = e->a2 >= 0 ? &f->vals[e->a2] : NULL;

		if (e->call != casgstatus)
			continue;
		if (from && to && from->kind == V_IMM && to->kind == V_IMM && to->k > from->k &&
		    to->k < 0x100)
			found(r, "status_leaked", to->k, "findGoroutineLeaks");
		return;
	}
}

static void from_malg(struct flow *f, struct recovery *r)
{
	uint64_t newobject = r->newobject;
	const struct ev *e;
	size_t i = 0;
	uint64_t size;

	/* newg := new(g): newobject(&type.runtime.g); abi.Type.Size_ is its first word */
	while ((e = find_ev(f, &i, EV_CALL, 0, -1, -2))) {
		if (!newobject || e->call != newobject || e->v < 0 || f->vals[e->v].kind != V_ADDR)
			continue;
		if (gobin_read_u64(f->bin, f->vals[e->v].a, &size) && size >= 64 &&
		    size <= MAX_G_SIZE && size % 8 == 0) {
			int *p = field_ptr(r->out, "g_size");

			if (p)
				*p = (int)size;
		}
		return;
	}
}

static void from_mcommoninit(struct flow *f, struct recovery *r)
{
	uint64_t allm = r->allm;
	int32_t a = allm ? lookup(f, V_ADDR, -1, 0, allm) : -1, head;
	const struct ev *e;
	size_t i = 0;

	if (a < 0 || (head = lookup(f, V_LOAD, a, 0, 0)) < 0)
		return;
	if ((e = find_ev(f, &i, EV_STORE, 8, -1, head))) /* mp.alllink = allm */
		found(r, "m_alllink", e->disp, "mcommoninit");
}

static void from_cgocall(struct flow *f, struct recovery *r)
{
	int *gm = field_ptr(r->out, "g_m");
	int32_t m = gm && *gm >= 0 ? lookup(f, V_LOAD, gval(f), *gm, 0) : -1;
	const struct ev *e;
	size_t i = 0;

	if (m >= 0 && (e = find_ev(f, &i, EV_RMW, 8, m, -2))) /* mp.ncgocall++ */
		found(r, "m_ncgocall", e->disp, "cgocall");
}

/* The first atomic add (lock xadd) into [global, global+MAX_FIELD_OFFSET)
 * of the given size at or after event *from: the field's offset, or -1. */
static int64_t xadd_into(const struct flow *f, size_t *from, uint64_t global, uint8_t size)
{
	const struct ev *e;

	while (global && (e = find_ev(f, from, EV_RMW, size, -1, -2))) {
		const struct val *b = &f->vals[e->base];

		if (b->kind == V_ADDR && b->a >= global && b->a - global < MAX_FIELD_OFFSET)
			return (int64_t)(b->a - global);
	}
	return -1;
}

static void from_gc_update(struct flow *f, struct recovery *r)
{
	uint64_t gc = r->gc;
	size_t i = 0;
	int64_t d = xadd_into(f, &i, gc, 8);

	/* gcController.heapLive.Add(dHeapLive) comes first */
	if (d >= 0)
		found(r, "gc_heap_live", d, "(*gcControllerState).update");
}

/* resetLive(bytesMarked): c.heapMarked = bytesMarked; c.heapLive = bytesMarked */
static void from_reset_live(struct flow *f, struct recovery *r)
{
	int32_t c = entry(f, R_RAX), marked = entry(f, R_RBX);
	const struct ev *e;
	size_t i = 0;

	if ((e = find_ev(f, &i, EV_STORE, 8, c, marked)))
		found(r, "gc_heap_marked", e->disp, "(*gcControllerState).resetLive");
	if (e && (e = find_ev(f, &i, EV_STORE, 8, c, marked)))
		found(r, "gc_heap_live", e->disp, "(*gcControllerState).resetLive");
}

/* heapGoalInternal: goal = c.gcPercentHeapGoal.Load() is its first read of c */
static void from_heap_goal(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;

	if ((e = find_ev(f, &i, EV_LOAD, 8, entry(f, R_RAX), -2)))
		found(r, "gc_percent_heap_goal", e->disp, "(*gcControllerState).heapGoalInternal");
}

/* allocLarge: gcController.totalAlloc.Add(npages*pageSize) before update();
 * sweep: gcController.totalFree.Add(nfreed*elemsize) */
static void from_gc_add(struct flow *f, struct recovery *r, const char *field, const char *where)
{
	size_t i = 0;
	int64_t d = xadd_into(f, &i, r->gc, 8);

	if (d >= 0)
		found(r, field, d, where);
}

static void from_alloc_large(struct flow *f, struct recovery *r)
{
	from_gc_add(f, r, "gc_total_alloc", "(*mcache).allocLarge");
}

static void from_sweep(struct flow *f, struct recovery *r)
{
	from_gc_add(f, r, "gc_total_free", "(*sweepLocked).sweep");
}

/* gcMarkTermination: `if work.userForced { memstats.numforcedgc++ }` then
 * `memstats.numgc++`: the last 4-byte increment of memstats */
static void from_mark_termination(struct flow *f, struct recovery *r)
{
	uint64_t ms = r->ms;
	int64_t last = -1;

	for (size_t i = 0; ms && i < f->nevs; i++) {
		const struct ev *e = &f->evs[i];
		const struct val *b = &f->vals[e->base];
		const struct val *v = e->v >= 0 ? &f->vals[e->v] : NULL;

		if (e->kind == EV_CALL || e->size != 4 || b->kind != V_ADDR || b->a < ms ||
		    b->a - ms >= (16u << 10))
			continue;
		if (e->kind == EV_RMW ||
		    (e->kind == EV_STORE && v && v->kind == V_ADD && v->k == 1 &&
		     is_load_of(f, v->base, e->base)))
			last = (int64_t)(b->a - ms);
	}
	if (last >= 0) {
		int *p = field_ptr(r->out, "ms_numgc");

		if (p)
			*p = (int)last;
	}
}

/* (*bucket).stk: return add(b, unsafe.Sizeof(*b)) with length b.nstk */
static void from_bucket_stk(struct flow *f, struct recovery *r)
{
	int32_t b = entry(f, R_RAX);
	const struct val *ra = f->ret_rax >= 0 ? &f->vals[f->ret_rax] : NULL;

	if (ra && ra->kind == V_ADD && ra->base == b && ra->k > 0)
		found(r, "bucket_header_size", ra->k, "(*bucket).stk");
	if (is_load_of(f, f->ret_rbx, b))
		found(r, "bucket_nstk", f->vals[f->ret_rbx].k, "(*bucket).stk");
}

/* (*bucket).mp (where stk is inlined, 1.19-1.21):
 * return add(b, unsafe.Sizeof(*b) + b.nstk*unsafe.Sizeof(uintptr(0))) */
static void from_bucket_mp(struct flow *f, struct recovery *r)
{
	int32_t b = entry(f, R_RAX);
	const struct val *ra = f->ret_rax >= 0 ? &f->vals[f->ret_rax] : NULL;
	const struct val *ix;

	if (!ra || ra->kind != V_ADD || ra->k <= 0 || f->vals[ra->base].kind != V_INDEX)
		return;
	ix = &f->vals[ra->base];
	if (ix->base != b || ix->k != 8 || !is_load_of(f, (int32_t)ix->a, b))
		return;
	found(r, "bucket_header_size", ra->k, "(*bucket).mp");
	found(r, "bucket_nstk", f->vals[ix->a].k, "(*bucket).mp");
}

/* `x := callee(...); x.field = <second argument>`: the first 8-byte store
 * of the entry RBX into the call's result. */
static void arg2_into_result(struct flow *f, struct recovery *r, uint64_t callee,
			     const char *field, const char *where)
{
	int32_t x = callee ? lookup(f, V_RET, -1, 0, callee) : -1;
	const struct ev *e;
	size_t i = 0;

	if (x >= 0 && (e = find_ev(f, &i, EV_STORE, 8, x, entry(f, R_RBX))))
		found(r, field, e->disp, where);
}

/* newBucket(typ, nstk): b := persistentalloc(...); b.nstk = uintptr(nstk) */
static void from_new_bucket(struct flow *f, struct recovery *r)
{
	arg2_into_result(f, r, r->persistentalloc, "bucket_nstk", "newBucket");
}

/* stkbucket(typ, size, stk, alloc): b := newBucket(...); ...; b.size = size */
static void from_stkbucket(struct flow *f, struct recovery *r)
{
	arg2_into_result(f, r, r->new_bucket, "bucket_size", "stkbucket");
}

/* mProf_FlushLocked(index): for b := mbuckets; b != nil; b = b.allnext {
 * mp := b.mp(); mpc := &mp.future[index] ... } with index bounded by
 * len(future) and scaled by sizeof(memRecordCycle) */
static void from_flush_locked(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;
	int64_t cycle;

	while (r->bucket_mp && (e = find_ev(f, &i, EV_CALL, 0, -1, -2))) {
		if (e->call != r->bucket_mp || e->v < 0)
			continue;
		if ((e = find_ev(f, &i, EV_LOAD, 8, e->v, -2)))
			found(r, "bucket_allnext", e->disp, "mProf_FlushLocked");
		break;
	}
	if (f->shl_arg0_imm < 4 || f->shl_arg0_imm > 8 || f->cmp_arg0_imm < 1 ||
	    f->cmp_arg0_imm > 16)
		return;
	cycle = 1ll << f->shl_arg0_imm;
	found(r, "memrecord_cycle_size", cycle, "mProf_FlushLocked");
	found(r, "memrecord_size", cycle * (1 + f->cmp_arg0_imm), "mProf_FlushLocked");
}

/* setprofilebucket(p, b): s := specialprofilealloc.alloc();
 * s.special.kind = _KindSpecialProfile; s.b = b */
static void from_setprofilebucket(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;
	int32_t sp;

	if (!(e = find_ev(f, &i, EV_STORE, 8, -1, entry(f, R_RBX))))
		return;
	sp = e->base;
	found(r, "specialprofile_b", e->disp, "setprofilebucket");
	for (i = 0; (e = find_ev(f, &i, EV_STORE, 1, sp, -2));)
		if (e->v >= 0 && f->vals[e->v].kind == V_IMM) {
			found(r, "special_kind", e->disp, "setprofilebucket");
			found(r, "kind_special_profile", f->vals[e->v].k, "setprofilebucket");
			break;
		}
}

/* addspecial(p, s, force): span := spanOfHeap(p); offset := p - span.base();
 * kind := s.kind; iter := &span.specials ...; *iter = s; then
 * atomic.Or8(&ha.pageSpecials[arenaPage/8], ...) */
static void from_addspecial(struct flow *f, struct recovery *r)
{
	int32_t span = r->span_of_heap ? lookup(f, V_RET, -1, 0, r->span_of_heap) : -1;
	int32_t s = entry(f, R_RBX);
	const struct ev *e;
	size_t i = 0;

	if (span < 0)
		return;
	for (; i < f->nevs; i++) {
		e = &f->evs[i];
		if ((e->kind == EV_READ || e->kind == EV_LOAD) && e->size == 8 && e->base == span) {
			found(r, "mspan_start_addr", e->disp, "addspecial");
			break;
		}
	}
	i = 0;
	if ((e = find_ev(f, &i, EV_LOAD, 1, s, -2)))
		found(r, "special_kind", e->disp, "addspecial");
	i = 0;
	if ((e = find_ev(f, &i, EV_STORE, 8, span, s)))
		found(r, "mspan_specials", e->disp, "addspecial");
	for (i = 0; (e = find_ev(f, &i, EV_RMW, 1, -1, -2));)
		if (f->vals[e->base].kind == V_INDEX) {
			found(r, "heaparena_page_specials", e->disp, "addspecial");
			break;
		}
}

/* spanOfHeap: ha := mheap_.arenas[0][ri.l2()]; s := ha.spans[(p/pageSize)%pagesPerArena] */
static void from_span_of_heap(struct flow *f, struct recovery *r)
{
	int32_t arenas = -1;

	for (size_t i = 0; r->mheap && i < f->nevs; i++) {
		const struct ev *e = &f->evs[i];
		const struct val *b = &f->vals[e->base];

		if (e->kind == EV_CALL || e->size != 8)
			continue;
		if (arenas < 0 && e->kind == EV_LOAD && b->kind == V_ADDR && b->a >= r->mheap &&
		    b->a - r->mheap < MAX_FAR_OFFSET) {
			found(r, "mheap_arenas", (int64_t)(b->a - r->mheap), "spanOfHeap");
			arenas = e->v;
			continue;
		}
		if (arenas >= 0 && e->kind == EV_LOAD && b->kind == V_INDEX) {
			const struct val *ha = &f->vals[b->base];

			if (ha->kind == V_LOAD && f->vals[ha->base].kind == V_INDEX &&
			    f->vals[ha->base].base == arenas) {
				found(r, "heaparena_spans", e->disp, "spanOfHeap");
				return;
			}
		}
	}
}

/* (*mspan).init(base, npages): span.startAddr = base; span.npages = npages */
static void from_mspan_init(struct flow *f, struct recovery *r)
{
	const struct ev *e;
	size_t i = 0;

	if ((e = find_ev(f, &i, EV_STORE, 8, entry(f, R_RAX), entry(f, R_RBX))))
		found(r, "mspan_start_addr", e->disp, "(*mspan).init");
	i = 0;
	if ((e = find_ev(f, &i, EV_STORE, 8, entry(f, R_RAX), entry(f, R_RCX))))
		found(r, "mspan_npages", e->disp, "(*mspan).init");
}

/* (*mheap).allocSpan(npages, ...) where (*mspan).init is inlined (1.19):
 * s is the P's cached mspan or h.allocMSpanLocked(); s.init(base, npages).
 * Only when (*mspan).init did not say. */
static void from_alloc_span(struct flow *f, struct recovery *r)
{
	int *have = field_ptr(r->out, "mspan_npages");
	const struct ev *e;
	size_t i = 0;

	if (!have || *have != GO_OFF_NONE)
		return;
	while ((e = find_ev(f, &i, EV_STORE, 8, -1, entry(f, R_RBX))))
		if (f->vals[e->base].kind == V_LOAD || f->vals[e->base].kind == V_RET) {
			found(r, "mspan_npages", e->disp, "(*mheap).allocSpan");
			return;
		}
}

/* gcSweep: mheap_.sweepArenas = mheap_.allArenas (heapArenas from 1.25), a
 * slice copied word by word: ptr, len, cap loaded and stored back */
static void from_gc_sweep(struct flow *f, struct recovery *r)
{
	int64_t best = -1;

	for (size_t i = 0; r->mheap && i < f->nevs; i++) {
		const struct ev *e = &f->evs[i];
		const struct val *b = &f->vals[e->base], *v = e->v >= 0 ? &f->vals[e->v] : NULL;
		int64_t d, st;
		int words = 0;

		if (e->kind != EV_STORE || e->size != 8 || b->kind != V_ADDR || !v ||
		    v->kind != V_LOAD || f->vals[v->base].kind != V_ADDR)
			continue;
		d = (int64_t)(f->vals[v->base].a - r->mheap);
		st = (int64_t)(b->a - r->mheap);
		if (d < 0 || d >= MAX_FAR_OFFSET || st < 0 || st >= MAX_FAR_OFFSET || st == d)
			continue;
		/* the three words of one slice: [d, d+8, d+16] into [st, st+8, st+16] */
		for (size_t j = 0; j < f->nevs; j++) {
			const struct ev *g = &f->evs[j];
			const struct val *gb = &f->vals[g->base];
			const struct val *gv = g->v >= 0 ? &f->vals[g->v] : NULL;

			if (g->kind != EV_STORE || g->size != 8 || gb->kind != V_ADDR || !gv ||
			    gv->kind != V_LOAD || f->vals[gv->base].kind != V_ADDR)
				continue;
			for (int w = 1; w <= 2; w++)
				if ((int64_t)(gb->a - r->mheap) == st + 8 * w &&
				    (int64_t)(f->vals[gv->base].a - r->mheap) == d + 8 * w)
					words |= 1 << w;
		}
		if (words == 6 && (best < 0 || d < best))
			best = d;
	}
	if (best >= 0)
		found(r, "mheap_all_arenas", best, "gcSweep");
}

/* The binary's own runtime.waitReasonStrings: `cmp al, N; jb` bounds the
 * index, `lea rdx, [rip+waitReasonStrings]` is the array of N strings. */
static void from_wait_reason_string(struct flow *f, struct recovery *r)
{
	struct go_offsets *out = r->out;
	int64_t n = f->cmp_arg0_imm; /* `cmp al, len(waitReasonStrings)` */
	uint64_t arr = 0;
	int got = 0;

	/* the lea of the array is the one after the out-of-range text's */
	for (size_t i = 0; i < f->nvals; i++)
		if (f->vals[i].kind == V_ADDR && f->vals[i].a != f->first_lea_rip)
			arr = f->vals[i].a;
	if (n <= 0 || n > GO_MAX_WAIT_REASONS || !arr)
		return;
	for (int i = 0; i < n; i++) {
		uint64_t ptr, len;
		const uint8_t *p;
		size_t avail;
		char *dst = out->wait_reasons[i];

		dst[0] = '\0';
		if (!gobin_read_u64(f->bin, arr + 16ull * i, &ptr) ||
		    !gobin_read_u64(f->bin, arr + 16ull * i + 8, &len))
			return;
		if (len == 0)
			continue;
		p = gobin_vaddr_ptr(f->bin, ptr, &avail);
		if (!p || len > avail || len >= GO_WAIT_REASON_LEN)
			return;
		for (uint64_t c = 0; c < len; c++)
			if (p[c] < 0x20 || p[c] >= 0x7f)
				return;
		memcpy(dst, p, len);
		dst[len] = '\0';
		got++;
	}
	if (got * 2 < n)
		return;
	out->n_wait_reasons = (int)n;
}

static uint64_t func_entry(const struct gobin *bin, const char *name)
{
	struct gobin_func fn;

	return gobin_func_by_name(bin, name, &fn) == 0 ? fn.entry : 0;
}

static uint64_t global_addr(const struct gobin *bin, const char *name)
{
	uint64_t a;

	return gobin_global(bin, name, &a) == 0 ? a : 0;
}

/* In this order: later patterns use g.m and stackguard0 from gopark. */
static const struct reader {
	const char *func;
	void (*read)(struct flow *f, struct recovery *r);
} readers[] = {
	{ "runtime.gopark", from_gopark },
	{ "runtime.execute", from_execute },
	{ "runtime.newproc1", from_newproc1 },
	{ "runtime.findGoroutineLeaks", from_find_leaks },
	{ "runtime.malg", from_malg },
	{ "runtime.mcommoninit", from_mcommoninit },
	{ "runtime.cgocall", from_cgocall },
	{ "runtime.(*gcControllerState).update", from_gc_update },
	{ "runtime.(*gcControllerState).resetLive", from_reset_live },
	{ "runtime.(*gcControllerState).heapGoalInternal", from_heap_goal },
	{ "runtime.(*mcache).allocLarge", from_alloc_large },
	{ "runtime.(*sweepLocked).sweep", from_sweep },
	{ "runtime.gcMarkTermination", from_mark_termination },
	{ "runtime.(*bucket).stk", from_bucket_stk },
	{ "runtime.(*bucket).mp", from_bucket_mp },
	{ "runtime.newBucket", from_new_bucket },
	{ "runtime.stkbucket", from_stkbucket },
	{ "runtime.mProf_FlushLocked", from_flush_locked },
	{ "runtime.setprofilebucket", from_setprofilebucket },
	{ "runtime.addspecial", from_addspecial },
	{ "runtime.spanOfHeap", from_span_of_heap },
	{ "runtime.(*mspan).init", from_mspan_init },
	{ "runtime.(*mheap).allocSpan", from_alloc_span },
	{ "runtime.gcSweep", from_gc_sweep },
	{ "runtime.waitReason.String", from_wait_reason_string },
};

int gobin_layout_recover(const struct gobin *bin, struct go_offsets *out)
{
	struct recovery r = {
		.out = out, .stackguard = -1,
		.casgstatus = func_entry(bin, "runtime.casgstatus"),
		.newobject = func_entry(bin, "runtime.newobject"),
		.sched = global_addr(bin, "runtime.sched"),
		.allm = global_addr(bin, "runtime.allm"),
		.gc = global_addr(bin, "runtime.gcController"),
		.ms = global_addr(bin, "runtime.memstats"),
		.persistentalloc = func_entry(bin, "runtime.persistentalloc"),
		.new_bucket = func_entry(bin, "runtime.newBucket"),
		.bucket_mp = func_entry(bin, "runtime.(*bucket).mp"),
		.mheap = global_addr(bin, "runtime.mheap_"),
		.span_of_heap = func_entry(bin, "runtime.spanOfHeap"),
	};
	struct flow *f;
	cs_insn *ci;
	csh cs;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < go_offsets_nfields; i++)
		*(int *)((char *)out + go_offsets_fields[i].offset) = GO_OFF_NONE;
	out->go_major = bin->ver.major;
	out->go_minor = bin->ver.minor;
	out->source = GO_OFFSETS_TABLE;
	if (bin->machine != EM_X86_64)
		return -ENOTSUP;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (probe_disasm_open(&cs, &ci)) {
		free(f);
		return -ENOMEM;
	}
	f->bin = bin;
	find_write_barriers(f);
	for (size_t i = 0; i < sizeof(readers) / sizeof(readers[0]); i++)
		if (run(f, cs, ci, readers[i].func) == 0)
			readers[i].read(f, &r);
	probe_disasm_close(cs, ci);
	free(f);

	for (size_t i = 0; i < go_offsets_nfields; i++) {
		int *p = (int *)((char *)out + go_offsets_fields[i].offset);

		if (*p == -2)
			*p = GO_OFF_NONE;
	}
	return 0;
}

/* ---- merging with the table ---- */

#define HEAP_PROFILE "heap profile (snapshot --heap, heap tiers)"
#define HEAP_WALK "span-special heap walk (the heap profile tier's frees)"
/* What the features read, and what each disables when it is unknown. */
static const struct field_use {
	const char *field;    /* NULL: the wait-reason names */
	const char *label;
	const char *disables; /* NULL: the goroutine list itself */
} field_uses[] = {
	{ "g_atomicstatus", "g.atomicstatus", NULL },
	{ "g_goid", "g.goid", NULL },
	{ "g_gopc", "g.gopc", NULL },
	{ "g_startpc", "g.startpc", NULL },
	{ "g_waitreason", "g.waitreason", "wait reasons" },
	{ "g_waitsince", "g.waitsince", "wait durations" },
	{ "g_stack_lo", "g.stack.lo", "stack sizes" },
	{ "g_stack_hi", "g.stack.hi", "stack sizes" },
	{ "m_alllink", "m.alllink", "cgo call counts" },
	{ "m_ncgocall", "m.ncgocall", "cgo call counts" },
	{ "gc_heap_live", "gcControllerState.heapLive", "heap live bytes" },
	{ "gc_heap_marked", "gcControllerState.heapMarked", "heap marked bytes" },
	{ "gc_percent_heap_goal", "gcControllerState.gcPercentHeapGoal", "heap goal" },
	{ "gc_total_alloc", "gcControllerState.totalAlloc", "allocated-bytes total" },
	{ "gc_total_free", "gcControllerState.totalFree", "freed-bytes total" },
	{ "ms_numgc", "mstats.numgc", "GC cycle count" },
	{ "status_leaked", "_Gleaked", "the leaked status" },
	{ "bucket_header_size", "sizeof(runtime.bucket)", HEAP_PROFILE },
	{ "bucket_allnext", "bucket.allnext", HEAP_PROFILE },
	{ "bucket_nstk", "bucket.nstk", HEAP_PROFILE },
	{ "bucket_size", "bucket.size", HEAP_PROFILE },
	{ "memrecord_size", "sizeof(runtime.memRecord)", HEAP_PROFILE },
	{ "memrecord_cycle_size", "sizeof(runtime.memRecordCycle)", HEAP_PROFILE },
	{ "mheap_arenas", "mheap.arenas", HEAP_WALK },
	{ "mheap_all_arenas", "mheap.allArenas", HEAP_WALK },
	{ "heaparena_spans", "heapArena.spans", HEAP_WALK },
	{ "heaparena_page_specials", "heapArena.pageSpecials", HEAP_WALK },
	{ "mspan_start_addr", "mspan.startAddr", HEAP_WALK },
	{ "mspan_npages", "mspan.npages", HEAP_WALK },
	{ "mspan_specials", "mspan.specials", HEAP_WALK },
	{ "special_kind", "special.kind", HEAP_WALK },
	{ "specialprofile_b", "specialprofile.b", HEAP_WALK },
	{ "kind_special_profile", "_KindSpecialProfile", HEAP_WALK },
	{ NULL, "runtime.waitReasonStrings", "wait reason names" },
};

static int get_field(const struct go_offsets *o, const char *name)
{
	int *p = field_ptr((struct go_offsets *)o, name);

	return p ? *p : GO_OFF_NONE;
}

static bool table_withheld(void)
{
	/* test-only: makes every version look newer than the table */
	const char *e = getenv("MEMDRIFT_TEST_NO_OFFSET_TABLE");

	return e && !strcmp(e, "1");
}

/* Code over the table row: recovered values win, each disagreement named. */
static void merge_row(const struct gobin *bin, const struct go_offsets *code,
		      struct go_offsets *off)
{
	for (size_t i = 0; i < go_offsets_nfields; i++) {
		int c = go_offsets_field(code, i), t = go_offsets_field(off, i);

		if (c == GO_OFF_NONE)
			continue;
		if (t != c)
			log_warn("%s: %s: table says %s=%d, code says %d; using the code's",
				 bin->path, bin->ver.str, go_offsets_fields[i].name, t, c);
		*(int *)((char *)off + go_offsets_fields[i].offset) = c;
	}
	if (code->n_wait_reasons <= 0)
		return;
	for (int i = 0; i < code->n_wait_reasons || i < off->n_wait_reasons; i++) {
		const char *t = i < off->n_wait_reasons ? off->wait_reasons[i] : "(none)";
		const char *c = i < code->n_wait_reasons ? code->wait_reasons[i] : "(none)";

		if (strcmp(t, c)) {
			log_warn("%s: %s: table says wait reason %d is \"%s\", code says \"%s\"; using the code's",
				 bin->path, bin->ver.str, i, t, c);
			break;
		}
	}
	off->n_wait_reasons = code->n_wait_reasons;
	memcpy(off->wait_reasons, code->wait_reasons, sizeof(off->wait_reasons));
}

/* Whether what u names is unknown in off (and something is lost by it). */
static bool lost_field(const struct gobin *bin, const struct go_offsets *off,
		       const struct field_use *u)
{
	if (!u->field)
		return off->n_wait_reasons <= 0;
	if (get_field(off, u->field) != GO_OFF_NONE)
		return false;
	/* no leak detector in this runtime: nothing lost */
	return strcmp(u->field, "status_leaked") || func_entry(bin, "runtime.findGoroutineLeaks");
}

/* "a, b not recovered: X disabled; c not recovered: Y disabled", one group
 * per feature, in field_uses order. */
static void describe_lost(const struct gobin *bin, const struct go_offsets *off,
			  struct strbuf *sb)
{
	const size_t n = sizeof(field_uses) / sizeof(field_uses[0]);

	for (size_t i = 0; i < n; i++) {
		const char *d = field_uses[i].disables;
		bool first = true, earlier = false;

		for (size_t j = 0; j < i && !earlier; j++)
			earlier = field_uses[j].disables && !strcmp(field_uses[j].disables, d);
		if (!d || earlier)
			continue;
		for (size_t j = i; j < n; j++) {
			if (!field_uses[j].disables || strcmp(field_uses[j].disables, d) ||
			    !lost_field(bin, off, &field_uses[j]))
				continue;
			strbuf_printf(sb, "%s%s", first ? (sb->len ? "; " : "") : ", ",
				      field_uses[j].label);
			first = false;
		}
		if (!first)
			strbuf_printf(sb, " not recovered: %s disabled", d);
	}
}

int gobin_offsets_from_code(struct gobin *bin, char *err, size_t errlen)
{
	struct go_offsets code, *off = &bin->offsets;
	const size_t n = sizeof(field_uses) / sizeof(field_uses[0]);
	struct strbuf sb;
	int ret;

	ret = gobin_layout_recover(bin, &code);
	if (ret == -ENOMEM)
		return set_err(err, errlen, ret, "out of memory");
	if (!table_withheld() && bin->ver.major > 0 &&
	    go_offsets_from_table(bin->ver.major, bin->ver.minor, off) == 0) {
		if (ret == 0)
			merge_row(bin, &code, off);
		return 0;
	}
	if (ret)
		return set_err(err, errlen, -ENOTSUP,
			       "%s: %s has no offset table, no DWARF, and code recovery is x86-64 only",
			       bin->path, bin->ver.str);
	/* a version newer than the table: the code's fields alone */
	*off = code;
	off->source = GO_OFFSETS_CODE;
	if (off->status_dead == GO_OFF_NONE)
		off->status_dead = 6; /* _Gdead since go1.0 */
	if (off->status_scan_bit == GO_OFF_NONE)
		off->status_scan_bit = 0x1000;
	for (size_t i = 0; i < n; i++)
		if (field_uses[i].field && !field_uses[i].disables &&
		    lost_field(bin, off, &field_uses[i]))
			return set_err(err, errlen, -ENOTSUP,
				       "%s: %s has no offset table and no DWARF, and %s could not be "
				       "recovered from its code: goroutines unreadable",
				       bin->path, bin->ver.str, field_uses[i].label);
	strbuf_init(&sb, 2048);
	describe_lost(bin, off, &sb);
	if (sb.len)
		log_warn("%s: %s (no offset table, no DWARF; layout read from code): %s", bin->path,
			 bin->ver.str, sb.buf);
	else
		log_info("%s: %s: no offset table, no DWARF; every field read from code",
			 bin->path, bin->ver.str);
	strbuf_free(&sb);
	return 0;
}

const char *gobin_offsets_source(const struct gobin *bin)
{
	const struct go_offsets *o = gobin_offsets(bin);

	if (!o)
		return "none";
	return o->source == GO_OFFSETS_DWARF ? "dwarf" : o->source == GO_OFFSETS_CODE ? "code" : "table";
}
