/* The C functions the Go side calls (A, A2): each calls nofp_helper (B, in
 * nofp_helper.c) and does work after the call, so neither is a tail call
 * and both stay on the stack. */
#include <stdlib.h>

#include "nofp.h"

#define MAX_KEPT (1 << 20)

static void *kept[MAX_KEPT];
static long nkept;

__attribute__((noinline)) long nofp_keep(size_t n)
{
	void *tmp = nofp_helper(n / 2 + 1, 3); /* freed: not outstanding */
	void *p = nofp_helper(n, 1);

	free(tmp);
	if (p && nkept < MAX_KEPT)
		kept[nkept++] = p;
	return nkept;
}

__attribute__((noinline)) long nofp_stash(size_t n)
{
	void *p = nofp_helper(n, 2);

	if (p && nkept < MAX_KEPT)
		kept[nkept++] = p;
	return nkept * 2;
}

void nofp_release(void)
{
	while (nkept > 0)
		free(kept[--nkept]);
}
