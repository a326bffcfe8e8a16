/* The Go stack-check filter shared by every probe on Go code (bpf/goroutines,
 * bpf/heap; set by daemon/probe/probe_place.c's placement). A probe that sits on
 * the prologue's `jbe morestack` (or `jb morestack` after `sub r12,N` in
 * big frames) is hit twice when the stack must grow: the first hit branches
 * to morestack and the function starts over, so it is not a real call and
 * is dropped. Two BPF cookie bits say which form the probe sits on; the
 * EFLAGS at the hit say whether the branch will be taken. Fixed-width types
 * only: included by BPF and user code alike. */
#ifndef MEMDRIFT_GO_STACK_CHECK_H
#define MEMDRIFT_GO_STACK_CHECK_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GO_COOKIE_STACK_CHECK (1u << 16)    /* on the jbe: taken when CF or ZF */
#define GO_COOKIE_STACK_CHECK_CF (1u << 17) /* on the jb: taken when CF */

#define GO_X86_CF 0x0001u
#define GO_X86_ZF 0x0040u

/* 1 when a hit with these EFLAGS, at a probe with this cookie, is the
 * morestack detour rather than a call. */
static inline int go_morestack_taken(__u64 flags, __u64 cookie)
{
	if (cookie & GO_COOKIE_STACK_CHECK)
		return (flags & (GO_X86_CF | GO_X86_ZF)) != 0;
	if (cookie & GO_COOKIE_STACK_CHECK_CF)
		return (flags & GO_X86_CF) != 0;
	return 0;
}

#endif
