/* Probe placement on real prologues: Go 1.19 (frame set up with sub rsp) and
 * Go 1.24 (push rbp), objdump'ed from binaries built here, and glibc 2.36. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "go_stack_check.h"
#include "probe/probe_place.h"

#define BASE 0x401000ull

static struct probe_place place(const uint8_t *code, size_t len)
{
	struct probe_place p;

	assert_int_equal(probe_place_x86(code, len, BASE, &p), 0);
	return p;
}

static void expect(const uint8_t *code, size_t len, uint64_t off, bool emulated, bool fallback,
		   enum probe_stack_check sc, const char *mnemonic)
{
	struct probe_place p = place(code, len);

	assert_int_equal(p.offset, off);
	assert_int_equal(p.emulated, emulated);
	assert_int_equal(p.fallback, fallback);
	assert_int_equal(p.stack_check, sc);
	assert_int_equal(strncmp(p.insn, mnemonic, strlen(mnemonic)), 0);
}

/* cmp rsp,[r14+0x10]; jbe rel8; sub rsp,0x30; mov [rsp+0x28],rbp */
static void go119_newproc(void **state)
{
	static const uint8_t c[] = {0x49, 0x3b, 0x66, 0x10, 0x76, 0x62, 0x48, 0x83, 0xec, 0x30,
				    0x48, 0x89, 0x6c, 0x24, 0x28};
	expect(c, sizeof(c), 4, true, false, PROBE_STACK_CHECK_JBE, "jbe");
}

static void go119_goexit1(void **state)
{
	static const uint8_t c[] = {0x49, 0x3b, 0x66, 0x10, 0x76, 0x49, 0x48, 0x83, 0xec, 0x30,
				    0x48, 0x89, 0x6c, 0x24, 0x28};
	expect(c, sizeof(c), 4, true, false, PROBE_STACK_CHECK_JBE, "jbe");
}

/* jbe rel32 */
static void go119_mallocgc(void **state)
{
	static const uint8_t c[] = {0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xbe, 0x08, 0x00, 0x00,
				    0x48, 0x83, 0xec, 0x70};
	expect(c, sizeof(c), 4, true, false, PROBE_STACK_CHECK_JBE, "jbe");
}

/* nosplit, sub rsp first: nothing safe before it -> entry fallback */
static void go119_cgocall(void **state)
{
	static const uint8_t c[] = {0x48, 0x83, 0xec, 0x30, 0x48, 0x89, 0x6c, 0x24, 0x28,
				    0x48, 0x8d, 0x6c, 0x24, 0x28};
	expect(c, sizeof(c), 0, false, true, PROBE_STACK_CHECK_NONE, "sub");
}

/* big frame: lea r12,[rsp-0xf0]; cmp r12,[r14+0x10]; jbe */
static void go119_mprof_malloc(void **state)
{
	static const uint8_t c[] = {0x4c, 0x8d, 0xa4, 0x24, 0x10, 0xff, 0xff, 0xff, 0x4d, 0x3b,
				    0x66, 0x10, 0x0f, 0x86, 0xaa, 0x01, 0x00, 0x00};
	expect(c, sizeof(c), 12, true, false, PROBE_STACK_CHECK_JBE, "jbe");
}

static void go124_newproc(void **state)
{
	static const uint8_t c[] = {0x49, 0x3b, 0x66, 0x10, 0x76, 0x4c, 0x55, 0x48, 0x89, 0xe5};
	expect(c, sizeof(c), 4, true, false, PROBE_STACK_CHECK_JBE, "jbe");
}

static void go124_goexit1(void **state)
{
	static const uint8_t c[] = {0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x8e, 0x00, 0x00, 0x00, 0x55};
	expect(c, sizeof(c), 4, true, false, PROBE_STACK_CHECK_JBE, "jbe");
}

static void go124_mallocgc(void **state)
{
	static const uint8_t c[] = {0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x25, 0x01, 0x00, 0x00, 0x55};
	expect(c, sizeof(c), 4, true, false, PROBE_STACK_CHECK_JBE, "jbe");
}

/* push rbp at the entry: already cheap */
static void go124_cgocall(void **state)
{
	static const uint8_t c[] = {0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x28};
	expect(c, sizeof(c), 0, true, false, PROBE_STACK_CHECK_NONE, "push");
}

/* glibc 2.36 free: test rdi,rdi; je rel32; push rbp */
static void glibc_free(void **state)
{
	static const uint8_t c[] = {0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0x00, 0x00, 0x00, 0x55};
	expect(c, sizeof(c), 3, true, false, PROBE_STACK_CHECK_NONE, "je");
}

/* glibc 2.36 malloc: push r12 (REX.B form) */
static void glibc_malloc(void **state)
{
	static const uint8_t c[] = {0x41, 0x54, 0x55, 0x53};
	expect(c, sizeof(c), 0, true, false, PROBE_STACK_CHECK_NONE, "push");
}

/* endbr64; push rbp (CET-enabled C) */
static void endbr_push(void **state)
{
	static const uint8_t c[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5};
	expect(c, sizeof(c), 4, true, false, PROBE_STACK_CHECK_NONE, "push");
}

/* Go huge frame: mov r12,rsp; sub r12,0x2000; jb morestack */
static void go_huge_frame(void **state)
{
	static const uint8_t c[] = {0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, 0x00, 0x20, 0x00, 0x00,
				    0x0f, 0x82, 0x10, 0x00, 0x00, 0x00};
	expect(c, sizeof(c), 10, true, false, PROBE_STACK_CHECK_JB, "jb");
}

/* mov rax,[rsp+8] writes an argument register: cannot skip it */
static void arg_register_write_stops(void **state)
{
	static const uint8_t c[] = {0x48, 0x8b, 0x44, 0x24, 0x08, 0x55};
	expect(c, sizeof(c), 0, false, true, PROBE_STACK_CHECK_NONE, "mov");
}

/* lea rax,[rsp-8] is into an argument register: not skippable */
static void lea_into_arg_stops(void **state)
{
	static const uint8_t c[] = {0x48, 0x8d, 0x44, 0x24, 0xf8, 0x55};
	expect(c, sizeof(c), 0, false, true, PROBE_STACK_CHECK_NONE, "lea");
}

/* jbe after a cmp that is not the stack guard: emulated, not a stack check */
static void jbe_without_guard(void **state)
{
	static const uint8_t c[] = {0x48, 0x39, 0xd8, 0x76, 0x10, 0x55};
	expect(c, sizeof(c), 3, true, false, PROBE_STACK_CHECK_NONE, "jbe");
}

/* nop at the entry is emulated */
static void nop_entry(void **state)
{
	static const uint8_t c[] = {0x90, 0x48, 0x83, 0xec, 0x08};
	expect(c, sizeof(c), 0, true, false, PROBE_STACK_CHECK_NONE, "nop");
}

/* undecodable first byte */
static void garbage(void **state)
{
	static const uint8_t c[] = {0x0f, 0x0b};  /* ud2 decodes; use a truncated one */
	static const uint8_t bad[] = {0x0f};
	struct probe_place p;

	assert_int_equal(probe_place_x86(c, sizeof(c), BASE, &p), 0);
	assert_true(p.fallback);
	assert_int_equal(probe_place_x86(bad, sizeof(bad), BASE, &p), -EINVAL);
}

static void find_rets(void **state)
{
	/* push rbp; mov rbp,rsp; pop rbp; ret; int3; repz ret; ret 8 */
	static const uint8_t c[] = {0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0xcc, 0xf3, 0xc3,
				    0xc2, 0x08, 0x00};
	uint64_t offs[4];
	size_t n;

	assert_int_equal(probe_find_rets_x86(c, sizeof(c), BASE, offs, 4, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(offs[0], 5);
	assert_int_equal(offs[1], 7);
	assert_int_equal(offs[2], 9);
	assert_int_equal(probe_find_rets_x86(c, sizeof(c), BASE, offs, 1, &n), -E2BIG);
	assert_int_equal(probe_find_rets_x86(c, 5, BASE, offs, 4, &n), -ENOENT);
}

static void insn_info(void **state)
{
	static const uint8_t ret[] = {0xc3};
	static const uint8_t cmp[] = {0x49, 0x3b, 0x66, 0x10};
	char text[64];
	bool emu;

	assert_int_equal(probe_insn_info_x86(ret, 1, BASE, &emu, text, sizeof(text)), 0);
	assert_false(emu);
	assert_string_equal(text, "ret");
	assert_int_equal(probe_insn_info_x86(cmp, 4, BASE, &emu, text, sizeof(text)), 0);
	assert_false(emu);
	assert_string_equal(text, "cmp rsp, qword ptr [r14 + 0x10]");
}

/* newproc.func1 (the systemstack closure of newproc) from Go 1.19 and 1.24:
 * after `call newproc1` the new g moves RAX -> RBX for runqput, and the
 * first emulated instruction is the nop5 before `call runqput`. */
static const uint8_t go119_newproc_func1[] = {
	0x49, 0x3b, 0x66, 0x10, 0x76, 0x57, 0x48, 0x83, 0xec, 0x20, 0x48, 0x89, 0x6c, 0x24, 0x18,
	0x48, 0x8d, 0x6c, 0x24, 0x18, 0x48, 0x8b, 0x5a, 0x10, 0x48, 0x8b, 0x4a, 0x18, 0x48, 0x8b,
	0x42, 0x08, 0xe8, 0x5b, 0x00, 0x00, 0x00, 0x49, 0x8b, 0x56, 0x30, 0x48, 0x8b, 0x92, 0xd0,
	0x00, 0x00, 0x00, 0x48, 0x89, 0xc3, 0xb9, 0x01, 0x00, 0x00, 0x00, 0x48, 0x89, 0xd0, 0x0f,
	0x1f, 0x44, 0x00, 0x00, 0xe8, 0x3b, 0x41, 0x00, 0x00, 0x80, 0x3d, 0x01, 0x5b, 0x13, 0x00,
	0x00, 0x74, 0x05, 0xe8, 0x6d, 0xc1, 0xff, 0xff, 0x48, 0x8b, 0x6c, 0x24, 0x18, 0x48, 0x83,
	0xc4, 0x20, 0xc3, 0x0f, 0x1f, 0x00, 0xe8, 0xdb, 0xec, 0x01, 0x00, 0xeb, 0x99, 0xcc,
};
static const uint8_t go124_newproc_func1[] = {
	0x49, 0x3b, 0x66, 0x10, 0x76, 0x53, 0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x20, 0x48,
	0x8b, 0x5a, 0x10, 0x48, 0x8b, 0x4a, 0x18, 0x48, 0x8b, 0x42, 0x08, 0x31, 0xff, 0x31, 0xf6,
	0x66, 0x90, 0xe8, 0x5b, 0x00, 0x00, 0x00, 0x49, 0x8b, 0x56, 0x30, 0x48, 0x8b, 0x92, 0xd0,
	0x00, 0x00, 0x00, 0x48, 0x89, 0xc3, 0xb9, 0x01, 0x00, 0x00, 0x00, 0x48, 0x89, 0xd0, 0x0f,
	0x1f, 0x44, 0x00, 0x00, 0xe8, 0x7b, 0x43, 0x00, 0x00, 0x80, 0x3d, 0x0a, 0x64, 0x15, 0x00,
	0x00, 0x74, 0x05, 0xe8, 0x4d, 0x4e, 0x02, 0x00, 0x48, 0x83, 0xc4, 0x20, 0x5d, 0xc3, 0xe8,
	0xe2, 0x92, 0x02, 0x00, 0x66, 0x90, 0xeb, 0x9e, 0xcc,
};

static void after_call_newproc_func1(void **state)
{
	struct probe_place p;
	enum probe_reg reg;

	assert_int_equal(probe_place_after_call_x86(go119_newproc_func1, sizeof(go119_newproc_func1),
						    0x43c780, 0x43c800, &p, &reg), 0);
	assert_int_equal(p.offset, 0x3b);
	assert_true(p.emulated);
	assert_int_equal(reg, PROBE_REG_RBX);
	assert_int_equal(strncmp(p.insn, "nop", 3), 0);
	assert_int_equal(probe_place_after_call_x86(go124_newproc_func1, sizeof(go124_newproc_func1),
						    0x443120, 0x4431a0, &p, &reg), 0);
	assert_int_equal(p.offset, 0x3b);
	assert_int_equal(reg, PROBE_REG_RBX);
	/* a callee that is not called */
	assert_int_equal(probe_place_after_call_x86(go124_newproc_func1, sizeof(go124_newproc_func1),
						    0x443120, 0x500000, &p, &reg), -ENOENT);
}

/* call f; mov eax,1 (result lost); push rbp -> -ESRCH; call f; push rbx -> RAX */
static void after_call_value_lost(void **state)
{
	static const uint8_t lost[] = {0xe8, 0x00, 0x00, 0x00, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x55};
	static const uint8_t kept[] = {0xe8, 0x00, 0x00, 0x00, 0x00, 0x53};
	struct probe_place p;
	enum probe_reg reg;

	assert_int_equal(probe_place_after_call_x86(lost, sizeof(lost), BASE, BASE + 5, &p, &reg),
			 -ESRCH);
	assert_int_equal(probe_place_after_call_x86(kept, sizeof(kept), BASE, BASE + 5, &p, &reg), 0);
	assert_int_equal(p.offset, 5);
	assert_int_equal(reg, PROBE_REG_RAX);
}

/* runtime.goexit1.abi0 (Go 1.24): xorps xmm15,xmm15; mov r14,fs:[-8]; jmp body */
static void abi0_wrapper(void **state)
{
	static const uint8_t w[] = {0x45, 0x0f, 0x57, 0xff, 0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8,
				    0xff, 0xff, 0xff, 0xe9, 0xce, 0x10, 0xfd, 0xff, 0xcc};
	static const uint8_t body[] = {0x49, 0x3b, 0x66, 0x10, 0x76, 0x4c, 0x55};
	uint64_t target;

	assert_int_equal(probe_abi0_wrapper_target_x86(w, sizeof(w), 0x4708a0, &target), 0);
	assert_int_equal(target, 0x441980);
	assert_int_equal(probe_abi0_wrapper_target_x86(body, sizeof(body), 0x441980, &target),
			 -ENOENT);
}

/* The stack-check filter: cookie bits from the placement, and which
 * EFLAGS make a hit the morestack detour (jbe: CF or ZF; jb: CF). */
static void stack_check_filter(void **state)
{
	struct probe_place jbe = { .stack_check = PROBE_STACK_CHECK_JBE };
	struct probe_place jb = { .stack_check = PROBE_STACK_CHECK_JB };
	struct probe_place none = { 0 };
	uint64_t cj = probe_stack_check_cookie(&jbe), cb = probe_stack_check_cookie(&jb);

	(void)state;
	assert_int_equal(cj, GO_COOKIE_STACK_CHECK);
	assert_int_equal(cb, GO_COOKIE_STACK_CHECK_CF);
	assert_int_equal(probe_stack_check_cookie(&none), 0);
	assert_true(go_morestack_taken(GO_X86_CF, cj));
	assert_true(go_morestack_taken(GO_X86_ZF, cj));
	assert_false(go_morestack_taken(0x202, cj)); /* IF and bit 1 only */
	assert_true(go_morestack_taken(GO_X86_CF, cb));
	assert_false(go_morestack_taken(GO_X86_ZF, cb));
	assert_false(go_morestack_taken(GO_X86_CF | GO_X86_ZF, 0));
	/* other cookie bits leave the filter alone */
	assert_false(go_morestack_taken(GO_X86_CF, 0xffffull | (0x1234ull << 32)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(go119_newproc),     cmocka_unit_test(go119_goexit1),
		cmocka_unit_test(go119_mallocgc),    cmocka_unit_test(go119_cgocall),
		cmocka_unit_test(go119_mprof_malloc), cmocka_unit_test(go124_newproc),
		cmocka_unit_test(go124_goexit1),     cmocka_unit_test(go124_mallocgc),
		cmocka_unit_test(go124_cgocall),     cmocka_unit_test(glibc_free),
		cmocka_unit_test(glibc_malloc),      cmocka_unit_test(endbr_push),
		cmocka_unit_test(go_huge_frame),     cmocka_unit_test(arg_register_write_stops),
		cmocka_unit_test(lea_into_arg_stops), cmocka_unit_test(jbe_without_guard),
		cmocka_unit_test(nop_entry),         cmocka_unit_test(garbage),
		cmocka_unit_test(find_rets),         cmocka_unit_test(insn_info),
		cmocka_unit_test(after_call_newproc_func1), cmocka_unit_test(after_call_value_lost),
		cmocka_unit_test(abi0_wrapper),
		cmocka_unit_test(stack_check_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
