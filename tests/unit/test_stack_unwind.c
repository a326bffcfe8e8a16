/* daemon/symbols/stack_unwind.c on this process's own stack: a chain of functions
 * built without frame pointers (the unit tests are -O2; the chain forces
 * -fomit-frame-pointer and uses rbp as a scratch register) copies its stack
 * window and registers the way the BPF side does; the unwinder must find
 * every frame of the chain by .eh_frame CFI, and stop cleanly on a cut
 * window and on garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "symbols/stack_unwind.h"
#include "symbols/symbolize.h"

#define WINDOW 8192

static uint8_t window[WINDOW];
static uint64_t reg_ip, reg_sp, reg_bp;
static volatile int sink;

__attribute__((noinline, noclone, optimize("omit-frame-pointer"))) static void capture(void)
{
	uint64_t ip, sp, bp;

	__asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"
			 : "=r"(ip), "=r"(sp), "=r"(bp));
	memcpy(window, (void *)sp, WINDOW);
	reg_ip = ip;
	reg_sp = sp;
	reg_bp = bp;
	sink++;
}

/* rbp clobbered (saved by the prologue, as CFI records): a frame-pointer
 * walk from here finds garbage */
__attribute__((noinline, noclone, optimize("omit-frame-pointer"))) static void middle(int n)
{
	__asm__ volatile("mov $0x1234, %%rbp" ::: "rbp");
	for (int i = 0; i < n; i++)
		sink += i;
	capture();
	sink++;
}

__attribute__((noinline, noclone, optimize("omit-frame-pointer"))) static void outer(int n)
{
	middle(n + 1);
	sink++;
}

static const char *fn_at(struct symbolizer *s, uint64_t pc, bool ret)
{
	static struct sym_frame f;

	symbolizer_lookup(s, pc, ret, &f);
	return f.function;
}

static void test_cfi_chain(void **state)
{
	struct stack_unwinder *u;
	struct symbolizer *sym;
	struct uw_frame fr[32];
	char stop[UW_STOP_LEN];
	size_t n;

	(void)state;
	outer(3);
	assert_int_equal(stack_unwinder_new(getpid(), NULL, &u), 0);
	assert_int_equal(symbolizer_new(getpid(), NULL, &sym), 0);
	n = stack_unwind(u, reg_ip, reg_sp, reg_bp, window, WINDOW, fr, 32, stop, sizeof(stop));
	assert_true(n >= 4);
	assert_string_equal(fn_at(sym, fr[0].pc, false), "capture");
	assert_int_equal(fr[0].how, UW_REGS);
	assert_int_equal(reg_bp, 0x1234); /* no frame chain to follow */
	assert_string_equal(fn_at(sym, fr[1].pc, true), "middle");
	assert_int_equal(fr[1].how, UW_CFI);
	assert_string_equal(fn_at(sym, fr[2].pc, true), "outer");
	assert_int_equal(fr[2].how, UW_CFI);
	assert_string_equal(fn_at(sym, fr[3].pc, true), "test_cfi_chain");
	for (size_t i = 0; i < n; i++)
		assert_int_equal(fr[i].kind, UW_NATIVE);

	/* a window cut right after the first frame: the walk says so */
	n = stack_unwind(u, reg_ip, reg_sp, reg_bp, window, 16, fr, 32, stop, sizeof(stop));
	assert_true(n >= 1 && n <= 2);
	assert_string_equal(stop, "window");

	/* a pc in no mapping */
	n = stack_unwind(u, 0x10, reg_sp, reg_bp, window, WINDOW, fr, 32, stop, sizeof(stop));
	assert_int_equal(n, 1);
	assert_int_equal(fr[0].kind, UW_UNKNOWN);
	assert_string_equal(stop, "unmapped pc");

	/* garbage window: never reads outside it, ends */
	memset(window, 0x41, sizeof(window));
	n = stack_unwind(u, reg_ip, reg_sp, reg_bp, window, WINDOW, fr, 32, stop, sizeof(stop));
	assert_true(n >= 1 && n < 32);

	symbolizer_free(sym);
	stack_unwinder_free(u);
}

/* The executable mappings the BPF C-stack walk checks return addresses
 * against (native_trace_walk.bpf.h): this binary's code and libc's are in, data
 * is not; sorted, adjacent ones merged; a too-small table says so. */
static void test_exec_ranges(void **state)
{
	uint64_t lo[64], hi[64], code = (uint64_t)(uintptr_t)&test_exec_ranges;
	uint64_t libc = (uint64_t)(uintptr_t)&malloc, data = (uint64_t)(uintptr_t)window;
	struct stack_unwinder *u;
	bool in_code = false, in_libc = false, in_data = false;
	size_t n;

	(void)state;
	assert_int_equal(stack_unwinder_new(getpid(), NULL, &u), 0);
	n = stack_unwinder_exec_ranges(u, lo, hi, 64);
	assert_true(n >= 2 && n <= 64);
	for (size_t i = 0; i < n; i++) {
		assert_true(lo[i] < hi[i]);
		if (i)
			assert_true(hi[i - 1] < lo[i]); /* sorted, adjacent merged */
		in_code |= code >= lo[i] && code < hi[i];
		in_libc |= libc >= lo[i] && libc < hi[i];
		in_data |= data >= lo[i] && data < hi[i];
	}
	assert_true(in_code);
	assert_true(in_libc);
	assert_false(in_data);
	assert_int_equal(stack_unwinder_exec_ranges(u, lo, hi, 1), n); /* only 1 filled */
	stack_unwinder_free(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cfi_chain),
		cmocka_unit_test(test_exec_ranges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
