/* The value tracker of the layout recovery: see gobin_layout_flow.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "binary/gobin_layout_flow.h"

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
int32_t lf_lookup(const struct flow *f, uint8_t kind, int32_t base, int64_t k, uint64_t a)
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
int lf_run(struct flow *f, csh cs, cs_insn *ci, const char *fname)
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

bool lf_is_load_of(const struct flow *f, int32_t v, int32_t base)
{
	return v >= 0 && f->vals[v].kind == V_LOAD && f->vals[v].base == base;
}

const struct ev *lf_find_ev(const struct flow *f, size_t *from, uint8_t kind, uint8_t size,
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

void lf_find_write_barriers(struct flow *f)
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

