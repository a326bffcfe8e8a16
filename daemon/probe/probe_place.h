/* Where to put a uprobe in a function (x86-64, Capstone). The kernel emulates
 * a few instructions at a probe hit (jcc, jmp, call, push reg, nop: ~0.8 us)
 * and single-steps every other one out of line (~12 us), so memdrift probes
 * the first emulated instruction, skipping only instructions whose effect the
 * probe cannot observe: they change no argument register, no RSP and no
 * memory. Pure functions over code bytes: unit-tested with real prologues. */
#ifndef MEMDRIFT_PROBE_PLACE_H
#define MEMDRIFT_PROBE_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <capstone/capstone.h>

#define PROBE_INSN_TEXT 64
/* How far into a function placement looks. */
#define PROBE_PLACE_MAX_INSNS 8

/* Branch condition of a stack check the BPF side must filter on. */
enum probe_stack_check {
	PROBE_STACK_CHECK_NONE = 0,
	PROBE_STACK_CHECK_JBE, /* cmp sp,[r14+0x10]; jbe: taken when CF|ZF */
	PROBE_STACK_CHECK_JB,  /* big frame: mov r12,rsp; sub r12,N; jb: taken when CF */
};

struct probe_place {
	uint64_t offset;                 /* bytes from the function entry */
	bool emulated;                   /* the kernel emulates the probed instruction */
	bool fallback;                   /* nothing safe found: the entry, with a warning */
	enum probe_stack_check stack_check;
	char insn[PROBE_INSN_TEXT];      /* "jbe 0x43c768" */
};

/* Chooses the probe point in code (the function's first len bytes, addr =
 * its address, used only for the text). 0, or -EINVAL when the first
 * instruction does not decode, -ENOMEM when Capstone cannot start. */
int probe_place_x86(const uint8_t *code, size_t len, uint64_t addr, struct probe_place *out);

/* Offsets of every RET (c3, c2, f3 c3) in a whole function's bytes, by a
 * linear sweep (Go puts no data in its text). *n = count found (at most max);
 * -E2BIG when there were more than max, -ENOENT when none. */
int probe_find_rets_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t *offsets,
			size_t max, size_t *n);

/* General-purpose registers by the index the BPF side switches on
 * (GR_COOKIE_REG_* in include/goroutine_trace_abi.h uses the same numbering). */
enum probe_reg {
	PROBE_REG_RAX, PROBE_REG_RBX, PROBE_REG_RCX, PROBE_REG_RDX,
	PROBE_REG_RSI, PROBE_REG_RDI, PROBE_REG_R8, PROBE_REG_R9,
	PROBE_REG_R10, PROBE_REG_R11, PROBE_REG_R12, PROBE_REG_R13,
	PROBE_REG_R15, PROBE_REG_NONE,
};

/* The 64-bit Capstone register of r (x86_reg), X86_REG_INVALID for none;
 * and the register family of any GPR name (EAX, AX, AL, AH -> RAX),
 * PROBE_REG_NONE for other registers. */
unsigned int probe_reg_x86(enum probe_reg r);
enum probe_reg probe_reg_family_x86(unsigned int r);

/* Where the value a call returns in RAX can be read cheaply: follows that
 * value through register moves after the `call` to callee (link-time
 * address) and stops at the first emulated instruction (or a RET) while
 * some register still holds it. *reg = that register. 0, -ENOENT when no
 * call to callee, -ESRCH when the value is lost (overwritten or stored)
 * before any such point. */
int probe_place_after_call_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t callee,
			       struct probe_place *out, enum probe_reg *reg);

/* Go ABI0 -> ABIInternal wrappers (`xorps xmm15,xmm15; mov r14,fs:[-8];
 * call|jmp body`) carry the same name as the body in a stripped binary's
 * pclntab. 0 with *body = the ABIInternal entry when code is such a
 * wrapper, -ENOENT otherwise. */
int probe_abi0_wrapper_target_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t *body);

/* Whether the kernel emulates the instruction at code (no single-step), and
 * its text. 0 or -EINVAL. */
int probe_insn_info_x86(const uint8_t *code, size_t len, uint64_t addr, bool *emulated,
			char *text, size_t textlen);

/* A Capstone x86-64 handle with instruction details on and one reusable
 * instruction for cs_disasm_iter: 0 or -ENOMEM. */
int probe_disasm_open(csh *h, cs_insn **insn);
void probe_disasm_close(csh h, cs_insn *insn);

/* The BPF cookie bits of p's stack-check filter (go_stack_check.h): set
 * when the probe sits on the `jbe`/`jb` to morestack. */
uint64_t probe_stack_check_cookie(const struct probe_place *p);

#endif
