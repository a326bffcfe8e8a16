/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers of the user-stack key walks (bpf/jni_trace_walk.bpf.h,
 * bpf/native_trace_walk.bpf.h): whether an address lies in an executable
 * mapping, the key hash step, stack id claiming, and the bounded copy of a
 * stack window sent in a new-stack event. */
#ifndef MEMDRIFT_USER_STACK_BPF_H
#define MEMDRIFT_USER_STACK_BPF_H

#define USTACK_VM_EXEC 0x4 /* VM_EXEC */

static long ustack_vma_exec(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	*(__u64 *)data = vma->vm_flags & USTACK_VM_EXEC;
	return 0;
}

/* addr lies in an executable mapping. bpf_find_vma only try-locks the
 * mm: when another thread holds it (-EBUSY) the address is taken as
 * executable, so a walk is never cut short (and its key made coarser) by
 * contention; only -ENOENT (no mapping) or a non-executable one ends it. */
static __always_inline bool ustack_executable(__u64 addr)
{
	__u64 exec = 0;
	long ret = bpf_find_vma(bpf_get_current_task_btf(), addr, ustack_vma_exec, &exec, 0);

	if (ret == -16 /* -EBUSY */)
		return true;
	return !ret && exec != 0;
}

static __always_inline __u64 ustack_mix(__u64 h, __u64 v)
{
	h ^= v;
	h *= 0x100000001b3ull;
	return h ^ (h >> 29);
}

/* A free stack id near the key hash h, in [0, max): ids are claimed
 * through owner (id -> hash; BPF_NOEXIST decides between CPUs), the
 * caller then binds the hash to it. -1 when the 8 slots tried are taken. */
static __always_inline __s32 ustack_claim_id(void *owner, __u64 h, __u32 max)
{
	for (int probe = 0; probe < 8; probe++) {
		__u32 slot = (__u32)((h >> 17) + (__u64)probe * 7919) % max;

		if (!bpf_map_update_elem(owner, &slot, &h, BPF_NOEXIST))
			return (__s32)slot;
	}
	return -1;
}

/* Copies the stack window from sp into dst (size bytes; a read that would
 * cross the stack's top fails whole, so smaller windows are tried after
 * it, down to min). Returns the bytes copied, 0 when none could be. */
static __always_inline __u32 ustack_copy(void *dst, __u32 size, __u32 min, const void *sp)
{
	if (!bpf_probe_read_user(dst, size, sp))
		return size;
	if (!bpf_probe_read_user(dst, size / 2, sp))
		return size / 2;
	if (!bpf_probe_read_user(dst, size / 4, sp))
		return size / 4;
	if (!bpf_probe_read_user(dst, min, sp))
		return min;
	return 0;
}

#endif
