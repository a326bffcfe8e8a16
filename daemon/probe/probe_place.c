/* Uprobe placement on x86-64: see probe_place.h. What the kernel emulates
 * (arch/x86/kernel/uprobes.c, measured on 6.18 by scripts/bench/probe-cost
 * --insns): jcc/jmp rel8/rel32, call rel32, push r64, nop (90 and 0f 1f). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <capstone/capstone.h>

#include "go_stack_check.h"
#include "probe/probe_place.h"

int probe_disasm_open(csh *h, cs_insn **insn)
{
	if (cs_open(CS_ARCH_X86, CS_MODE_64, h) != CS_ERR_OK)
		return -ENOMEM;
	cs_option(*h, CS_OPT_DETAIL, CS_OPT_ON);
	*insn = cs_malloc(*h);
	if (!*insn) {
		cs_close(h);
		return -ENOMEM;
	}
	return 0;
}

void probe_disasm_close(csh h, cs_insn *insn)
{
	cs_free(insn, 1);
	cs_close(&h);
}

static bool is_jcc(unsigned int id)
{
	switch (id) {
	case X86_INS_JA: case X86_INS_JAE: case X86_INS_JB: case X86_INS_JBE:
	case X86_INS_JE: case X86_INS_JNE: case X86_INS_JG: case X86_INS_JGE:
	case X86_INS_JL: case X86_INS_JLE: case X86_INS_JO: case X86_INS_JNO:
	case X86_INS_JP: case X86_INS_JNP: case X86_INS_JS: case X86_INS_JNS:
		return true;
	default:
		return false;
	}
}

static bool has_opsize_prefix(const cs_insn *insn)
{
	return insn->detail->x86.prefix[2] == 0x66;
}

/* The kernel rejects branch emulation with a 0x66 prefix and only emulates
 * relative forms; push only for the one-byte 50+r (optionally REX.B) form. */
static bool insn_emulated(const cs_insn *insn)
{
	const cs_x86 *x = &insn->detail->x86;
	uint8_t op0 = x->opcode[0];

	if (has_opsize_prefix(insn) && insn->id != X86_INS_NOP)
		return false;
	if (is_jcc(insn->id))
		return x->op_count == 1 && x->operands[0].type == X86_OP_IMM;
	switch (insn->id) {
	case X86_INS_JMP:
		return (op0 == 0xe9 || op0 == 0xeb) && x->operands[0].type == X86_OP_IMM;
	case X86_INS_CALL:
		return op0 == 0xe8;
	case X86_INS_PUSH:
		return op0 >= 0x50 && op0 <= 0x57 && x->op_count == 1 &&
		       x->operands[0].type == X86_OP_REG;
	case X86_INS_NOP:
		return true;
	default:
		return false;
	}
}

static bool is_scratch_reg(x86_reg r)
{
	switch (r) {
	case X86_REG_R12: case X86_REG_R12D: case X86_REG_R12W: case X86_REG_R12B:
	case X86_REG_R13: case X86_REG_R13D: case X86_REG_R13W: case X86_REG_R13B:
		return true;
	default:
		return false;
	}
}

static bool op_is_reg(const cs_x86_op *op, x86_reg r)
{
	return op->type == X86_OP_REG && op->reg == r;
}

/* Instructions a probe placed after them cannot tell apart from the entry:
 * they write no argument register (Go: RAX RBX RCX RDI RSI R8-R11, C: RDI RSI
 * RDX RCX R8 R9), no RSP/RBP, no memory, and do not branch. R12/R13 are
 * scratch in Go's ABIInternal and never arguments in C. */
static bool insn_skippable(const cs_insn *insn)
{
	const cs_x86 *x = &insn->detail->x86;

	switch (insn->id) {
	case X86_INS_CMP:
	case X86_INS_TEST:
	case X86_INS_ENDBR64:
	case X86_INS_NOP:
		return true;
	case X86_INS_LEA:
		return x->op_count == 2 && x->operands[0].type == X86_OP_REG &&
		       is_scratch_reg(x->operands[0].reg);
	case X86_INS_MOV:
		/* big-frame stack check: mov r12, rsp */
		return x->op_count == 2 && x->operands[0].type == X86_OP_REG &&
		       is_scratch_reg(x->operands[0].reg) && x->operands[1].type == X86_OP_REG;
	case X86_INS_SUB:
		return x->op_count == 2 && x->operands[0].type == X86_OP_REG &&
		       is_scratch_reg(x->operands[0].reg) && x->operands[1].type == X86_OP_IMM;
	default:
		return false;
	}
}

/* cmp rsp|r12|r13, [r14+0x10]: SP (or SP-framesize) against g.stackguard0. */
static bool is_stackguard_cmp(const cs_insn *insn)
{
	const cs_x86 *x = &insn->detail->x86;
	const cs_x86_op *r, *m;

	if (insn->id != X86_INS_CMP || x->op_count != 2)
		return false;
	r = &x->operands[0];
	m = &x->operands[1];
	if (r->type == X86_OP_MEM) {
		const cs_x86_op *t = r;
		r = m;
		m = t;
	}
	if (m->type != X86_OP_MEM || m->mem.base != X86_REG_R14 || m->mem.index != X86_REG_INVALID ||
	    m->mem.disp != 0x10)
		return false;
	return op_is_reg(r, X86_REG_RSP) || op_is_reg(r, X86_REG_R12) || op_is_reg(r, X86_REG_R13);
}

static void insn_text(const cs_insn *insn, char *buf, size_t len)
{
	int w;

	/* Long AVX operands are cut: the text is for people. */
	if (insn->op_str[0])
		w = snprintf(buf, len, "%s %s", insn->mnemonic, insn->op_str);
	else
		w = snprintf(buf, len, "%s", insn->mnemonic);
	if (w < 0 && len)
		buf[0] = '\0';
}

int probe_place_x86(const uint8_t *code, size_t len, uint64_t addr, struct probe_place *out)
{
	const uint8_t *p = code;
	size_t left = len;
	uint64_t pc = addr;
	bool saw_guard_cmp = false, saw_scratch_sub = false;
	cs_insn *insn;
	csh h;
	int n, err;

	memset(out, 0, sizeof(*out));
	err = probe_disasm_open(&h, &insn);
	if (err)
		return err;
	for (n = 0; n < PROBE_PLACE_MAX_INSNS; n++) {
		uint64_t at = pc;

		if (!cs_disasm_iter(h, &p, &left, &pc, insn))
			break;
		if (insn_emulated(insn)) {
			out->offset = at - addr;
			out->emulated = true;
			insn_text(insn, out->insn, sizeof(out->insn));
			if (insn->id == X86_INS_JBE && saw_guard_cmp)
				out->stack_check = PROBE_STACK_CHECK_JBE;
			else if (insn->id == X86_INS_JB && saw_scratch_sub)
				out->stack_check = PROBE_STACK_CHECK_JB;
			goto done;
		}
		if (!insn_skippable(insn))
			break;
		if (is_stackguard_cmp(insn))
			saw_guard_cmp = true;
		if (insn->id == X86_INS_SUB)
			saw_scratch_sub = true;
	}

	/* Nothing safe: the entry, single-stepped. */
	p = code;
	left = len;
	pc = addr;
	if (!cs_disasm_iter(h, &p, &left, &pc, insn)) {
		err = -EINVAL;
		goto done;
	}
	out->offset = 0;
	out->fallback = true;
	out->emulated = insn_emulated(insn);
	insn_text(insn, out->insn, sizeof(out->insn));
done:
	probe_disasm_close(h, insn);
	return err;
}

int probe_find_rets_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t *offsets,
			size_t max, size_t *n)
{
	const uint8_t *p = code;
	size_t left = len, found = 0;
	uint64_t pc = addr;
	cs_insn *insn;
	csh h;
	int err;

	*n = 0;
	err = probe_disasm_open(&h, &insn);
	if (err)
		return err;
	/* The sweep only needs instruction boundaries. */
	cs_option(h, CS_OPT_DETAIL, CS_OPT_OFF);
	while (left > 0) {
		uint64_t at = pc;

		if (!cs_disasm_iter(h, &p, &left, &pc, insn)) {
			/* undecodable byte (padding): step over it */
			p++;
			left--;
			pc++;
			continue;
		}
		if (insn->id != X86_INS_RET)
			continue;
		if (found == max) {
			err = -E2BIG;
			break;
		}
		offsets[found++] = at - addr;
	}
	probe_disasm_close(h, insn);
	*n = found;
	if (!err && found == 0)
		err = -ENOENT;
	return err;
}

int probe_insn_info_x86(const uint8_t *code, size_t len, uint64_t addr, bool *emulated,
			char *text, size_t textlen)
{
	const uint8_t *p = code;
	size_t left = len;
	uint64_t pc = addr;
	cs_insn *insn;
	csh h;
	int err;

	err = probe_disasm_open(&h, &insn);
	if (err)
		return err;
	if (cs_disasm_iter(h, &p, &left, &pc, insn)) {
		*emulated = insn_emulated(insn);
		insn_text(insn, text, textlen);
	} else {
		err = -EINVAL;
	}
	probe_disasm_close(h, insn);
	return err;
}

/* Every width of each register, the 64-bit name first. */
static const struct {
	enum probe_reg fam;
	x86_reg names[4];
} fams[] = {
	{PROBE_REG_RAX, {X86_REG_RAX, X86_REG_EAX, X86_REG_AX, X86_REG_AL}},
	{PROBE_REG_RBX, {X86_REG_RBX, X86_REG_EBX, X86_REG_BX, X86_REG_BL}},
	{PROBE_REG_RCX, {X86_REG_RCX, X86_REG_ECX, X86_REG_CX, X86_REG_CL}},
	{PROBE_REG_RDX, {X86_REG_RDX, X86_REG_EDX, X86_REG_DX, X86_REG_DL}},
	{PROBE_REG_RSI, {X86_REG_RSI, X86_REG_ESI, X86_REG_SI, X86_REG_SIL}},
	{PROBE_REG_RDI, {X86_REG_RDI, X86_REG_EDI, X86_REG_DI, X86_REG_DIL}},
	{PROBE_REG_R8, {X86_REG_R8, X86_REG_R8D, X86_REG_R8W, X86_REG_R8B}},
	{PROBE_REG_R9, {X86_REG_R9, X86_REG_R9D, X86_REG_R9W, X86_REG_R9B}},
	{PROBE_REG_R10, {X86_REG_R10, X86_REG_R10D, X86_REG_R10W, X86_REG_R10B}},
	{PROBE_REG_R11, {X86_REG_R11, X86_REG_R11D, X86_REG_R11W, X86_REG_R11B}},
	{PROBE_REG_R12, {X86_REG_R12, X86_REG_R12D, X86_REG_R12W, X86_REG_R12B}},
	{PROBE_REG_R13, {X86_REG_R13, X86_REG_R13D, X86_REG_R13W, X86_REG_R13B}},
	{PROBE_REG_R15, {X86_REG_R15, X86_REG_R15D, X86_REG_R15W, X86_REG_R15B}},
};

unsigned int probe_reg_x86(enum probe_reg r)
{
	for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++)
		if (fams[i].fam == r)
			return fams[i].names[0];
	return X86_REG_INVALID;
}

enum probe_reg probe_reg_family_x86(unsigned int r)
{
	if (r == X86_REG_AH)
		return PROBE_REG_RAX;
	if (r == X86_REG_BH)
		return PROBE_REG_RBX;
	if (r == X86_REG_CH)
		return PROBE_REG_RCX;
	if (r == X86_REG_DH)
		return PROBE_REG_RDX;
	for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++)
		for (int j = 0; j < 4; j++)
			if (fams[i].names[j] == r)
				return fams[i].fam;
	return PROBE_REG_NONE;
}

#define AFTER_CALL_MAX_INSNS 32

int probe_place_after_call_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t callee,
			       struct probe_place *out, enum probe_reg *reg)
{
	const uint8_t *p = code;
	size_t left = len;
	uint64_t pc = addr;
	unsigned int holders = 0; /* bit per probe_reg holding the returned value */
	int budget = -1, err = -ENOENT;
	cs_insn *insn;
	csh h;

	memset(out, 0, sizeof(*out));
	*reg = PROBE_REG_NONE;
	err = probe_disasm_open(&h, &insn);
	if (err)
		return err;
	err = -ENOENT;
	while (left > 0) {
		const cs_x86 *x;
		uint64_t at = pc;

		if (!cs_disasm_iter(h, &p, &left, &pc, insn)) {
			p++;
			left--;
			pc++;
			continue;
		}
		x = &insn->detail->x86;
		if (budget < 0) {
			/* looking for `call callee` */
			if (insn->id == X86_INS_CALL && x->op_count == 1 &&
			    x->operands[0].type == X86_OP_IMM && (uint64_t)x->operands[0].imm == callee) {
				holders = 1u << PROBE_REG_RAX;
				budget = AFTER_CALL_MAX_INSNS;
			}
			continue;
		}
		if (budget-- == 0 || !holders)
			break;
		if (insn_emulated(insn) || insn->id == X86_INS_RET) {
			for (int r = 0; r < PROBE_REG_NONE; r++) {
				if (holders & (1u << r)) {
					*reg = r;
					break;
				}
			}
			out->offset = at - addr;
			out->emulated = insn_emulated(insn);
			insn_text(insn, out->insn, sizeof(out->insn));
			err = 0;
			goto done;
		}
		/* Any other control flow: the value's path is no longer linear. */
		if (cs_insn_group(h, insn, X86_GRP_JUMP) || cs_insn_group(h, insn, X86_GRP_CALL) ||
		    cs_insn_group(h, insn, X86_GRP_RET) || cs_insn_group(h, insn, X86_GRP_INT))
			break;
		{
			cs_regs rd, wr;
			uint8_t nrd, nwr;
			bool copy = insn->id == X86_INS_MOV && x->op_count == 2 &&
				    x->operands[0].type == X86_OP_REG && x->operands[1].type == X86_OP_REG &&
				    x->operands[0].size == 8;
			enum probe_reg src = copy ? probe_reg_family_x86(x->operands[1].reg) : PROBE_REG_NONE;
			bool src_holds = src != PROBE_REG_NONE && (holders & (1u << src));

			if (cs_regs_access(h, insn, rd, &nrd, wr, &nwr))
				break;
			for (int i = 0; i < nwr; i++) {
				enum probe_reg f = probe_reg_family_x86(wr[i]);

				if (f != PROBE_REG_NONE)
					holders &= ~(1u << f);
			}
			if (copy && src_holds) {
				enum probe_reg dst = probe_reg_family_x86(x->operands[0].reg);

				if (dst != PROBE_REG_NONE)
					holders |= 1u << dst;
			}
		}
	}
	if (budget >= 0)
		err = -ESRCH;
done:
	probe_disasm_close(h, insn);
	return err;
}

int probe_abi0_wrapper_target_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t *body)
{
	const uint8_t *p = code;
	size_t left = len;
	uint64_t pc = addr;
	cs_insn *insn;
	int err, i;
	csh h;

	err = probe_disasm_open(&h, &insn);
	if (err)
		return err;
	err = -ENOENT;
	for (i = 0; i < 6 && cs_disasm_iter(h, &p, &left, &pc, insn); i++) {
		const cs_x86 *x = &insn->detail->x86;

		if (i == 0) {
			/* Only ABI0 wrappers start by zeroing X15 (ABIInternal's zero register). */
			if (insn->id != X86_INS_XORPS || x->op_count != 2 ||
			    !op_is_reg(&x->operands[0], X86_REG_XMM15) ||
			    !op_is_reg(&x->operands[1], X86_REG_XMM15))
				break;
			continue;
		}
		if ((insn->id == X86_INS_CALL || insn->id == X86_INS_JMP) && x->op_count == 1 &&
		    x->operands[0].type == X86_OP_IMM) {
			*body = (uint64_t)x->operands[0].imm;
			err = 0;
			break;
		}
	}
	probe_disasm_close(h, insn);
	return err;
}

uint64_t probe_stack_check_cookie(const struct probe_place *p)
{
	if (p->stack_check == PROBE_STACK_CHECK_JBE)
		return GO_COOKIE_STACK_CHECK;
	if (p->stack_check == PROBE_STACK_CHECK_JB)
		return GO_COOKIE_STACK_CHECK_CF;
	return 0;
}
