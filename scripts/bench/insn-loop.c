/* Calls one tiny function N times and prints ns per call: the uprobe cost of
 * each instruction kind is (ns with a probe on its first instruction) minus
 * (ns without). Also `free N`: free(malloc(16)) N times for the libc probe. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Each bench_insn_X starts with the instruction under test. */
__asm__(".text\n"
	".globl bench_insn_push\n.type bench_insn_push,@function\n"
	"bench_insn_push: push %rbp\n pop %rbp\n ret\n"
	".globl bench_insn_jcc\n.type bench_insn_jcc,@function\n"
	"bench_insn_jcc: jne 1f\n1: ret\n"
	".globl bench_insn_jmp\n.type bench_insn_jmp,@function\n"
	"bench_insn_jmp: jmp 1f\n1: ret\n"
	".globl bench_insn_call\n.type bench_insn_call,@function\n"
	"bench_insn_call: call 1f\n ret\n1: ret\n"
	".globl bench_insn_nop1\n.type bench_insn_nop1,@function\n"
	"bench_insn_nop1: nop\n ret\n"
	".globl bench_insn_nop5\n.type bench_insn_nop5,@function\n"
	"bench_insn_nop5: .byte 0x0f,0x1f,0x44,0x00,0x00\n ret\n"
	".globl bench_insn_endbr\n.type bench_insn_endbr,@function\n"
	"bench_insn_endbr: .byte 0xf3,0x0f,0x1e,0xfa\n ret\n"
	".globl bench_insn_cmp\n.type bench_insn_cmp,@function\n"
	"bench_insn_cmp: cmp %rdi,%rsi\n ret\n"
	".globl bench_insn_test\n.type bench_insn_test,@function\n"
	"bench_insn_test: test %rdi,%rdi\n ret\n"
	".globl bench_insn_lea\n.type bench_insn_lea,@function\n"
	"bench_insn_lea: lea -8(%rsp),%r11\n ret\n"
	".globl bench_insn_sub\n.type bench_insn_sub,@function\n"
	"bench_insn_sub: sub $8,%rsp\n add $8,%rsp\n ret\n"
	".globl bench_insn_ret\n.type bench_insn_ret,@function\n"
	"bench_insn_ret: ret\n");

void bench_insn_push(void), bench_insn_jcc(void), bench_insn_jmp(void), bench_insn_call(void),
	bench_insn_nop1(void), bench_insn_nop5(void), bench_insn_endbr(void), bench_insn_cmp(void),
	bench_insn_test(void), bench_insn_lea(void), bench_insn_sub(void), bench_insn_ret(void);

static const struct {
	const char *name;
	void (*fn)(void);
} fns[] = {
	{"push", bench_insn_push}, {"jcc", bench_insn_jcc},   {"jmp", bench_insn_jmp},
	{"call", bench_insn_call}, {"nop1", bench_insn_nop1}, {"nop5", bench_insn_nop5},
	{"endbr", bench_insn_endbr}, {"cmp", bench_insn_cmp}, {"test", bench_insn_test},
	{"lea", bench_insn_lea},   {"sub", bench_insn_sub},   {"ret", bench_insn_ret},
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	void (*volatile fn)(void) = NULL;
	long n;
	double t0;

	if (argc != 3) {
		fprintf(stderr, "usage: insn-loop free|push|jcc|...|ret N\n");
		return 2;
	}
	n = atol(argv[2]);
	if (!strcmp(argv[1], "free")) {
		t0 = now();
		for (long i = 0; i < n; i++) {
			void *volatile p = malloc(16);
			free(p);
		}
		printf("%.1f\n", (now() - t0) / n);
		return 0;
	}
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		if (!strcmp(argv[1], fns[i].name))
			fn = fns[i].fn;
	if (!fn)
		return 2;
	t0 = now();
	for (long i = 0; i < n; i++)
		fn();
	printf("%.1f\n", (now() - t0) / n);
	return 0;
}
