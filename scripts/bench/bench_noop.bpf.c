// SPDX-License-Identifier: GPL-2.0
/* The cheapest possible uprobe program, for scripts/bench/probe-cost: the
 * measured cost is the kernel's (trap, emulate or single-step), not ours. */
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 bench_hits = 0;

SEC("uprobe")
int bench_noop(void *ctx)
{
	__sync_fetch_and_add(&bench_hits, 1);
	return 0;
}
