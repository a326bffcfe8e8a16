/* B: the helper that allocates, in its own file (no inlining into its
 * callers). It keeps a value in rbp across the call, as code built without
 * frame pointers may: rbp is then no frame pointer at malloc. */
#include <stdlib.h>
#include <string.h>

#include "nofp.h"

__attribute__((noinline)) void *nofp_helper(size_t n, int tag)
{
	register long keep_in_rbp asm("rbp") = (long)n * 31 + tag;
	void *p;

	asm volatile("" : "+r"(keep_in_rbp));
	p = malloc(n);
	asm volatile("" : "+r"(keep_in_rbp));
	if (p)
		memset(p, tag + (int)(keep_in_rbp & 1), n);
	return p;
}
