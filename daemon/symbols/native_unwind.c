/* C allocation stacks unwound from copied stack windows. See native_unwind.h. */
#include "symbols/native_unwind.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "binary/gobin.h"
#include "discover/target.h"
#include "native_trace_abi.h"
#include "symbols/stack_unwind.h"
#include "symbols/symbolize.h"

struct nstack {
	size_t n;
	bool go_boundary;
	char stop[UW_STOP_LEN]; /* "" when complete */
	uint64_t pc[NATIVE_STACK_DEPTH];
	const char *how[NATIVE_STACK_DEPTH];
};

struct native_unwind {
	pid_t pid;
	const struct go_target *go;
	struct stack_unwinder *uw;
	struct ring_buffer *rb;
	int walks_fd;
	struct native_exec_ranges *exec;
	bool refreshed; /* maps re-read during this poll */
	struct nstack **stacks; /* by stack id, allocated when seen */
	uint64_t events, complete;
};

/* pc (a return address) lies in the Go binary's own functions. */
static bool in_go(const struct native_unwind *u, uint64_t ret)
{
	struct gobin_pcinfo pi;

	return u->go && ret > u->go->bias && !gobin_pc_lookup(u->go->bin, ret - 1 - u->go->bias, &pi);
}

/* Keeps frames up to the first one in Go code (the cgo boundary). */
static void cut_at_go(const struct native_unwind *u, struct nstack *s)
{
	for (size_t i = 1; i < s->n; i++)
		if (in_go(u, s->pc[i])) {
			s->n = i;
			s->go_boundary = true;
			s->stop[0] = 0;
			return;
		}
}

/* The BPF walk reads the table while it is rewritten: n = 0 (ask the
 * kernel) until the ranges are in place. */
static void publish_exec(struct native_unwind *u)
{
	uint64_t lo[NATIVE_EXEC_RANGES], hi[NATIVE_EXEC_RANGES];
	size_t n;

	if (!u->exec)
		return;
	n = stack_unwinder_exec_ranges(u->uw, lo, hi, NATIVE_EXEC_RANGES);
	if (n == __atomic_load_n(&u->exec->n, __ATOMIC_RELAXED) &&
	    !memcmp(lo, u->exec->lo, n * sizeof(*lo)) && !memcmp(hi, u->exec->hi, n * sizeof(*hi)))
		return;
	__atomic_store_n(&u->exec->n, 0, __ATOMIC_RELEASE);
	if (n > NATIVE_EXEC_RANGES)
		return;
	memcpy(u->exec->lo, lo, n * sizeof(*lo));
	memcpy(u->exec->hi, hi, n * sizeof(*hi));
	__atomic_store_n(&u->exec->n, (uint32_t)n, __ATOMIC_RELEASE);
}

static struct nstack *slot(struct native_unwind *u, int32_t id)
{
	if (id < 0 || id >= NATIVE_MAX_STACKS)
		return NULL;
	if (!u->stacks[id])
		u->stacks[id] = calloc(1, sizeof(struct nstack));
	return u->stacks[id];
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct native_unwind *u = ctx;
	const struct native_stack_event *ev = data;
	struct uw_frame fr[NATIVE_STACK_DEPTH];
	char stop[UW_STOP_LEN];
	struct nstack *s;
	size_t n;

	if (size < sizeof(*ev) || ev->copied > NATIVE_STACK_COPY || !(s = slot(u, ev->stackid)))
		return 0;
	if (!u->refreshed) { /* libraries loaded since the last look */
		stack_unwinder_refresh(u->uw);
		u->refreshed = true;
	}
	u->events++;
	n = stack_unwind(u->uw, ev->ip, ev->sp, ev->bp, ev->stack, ev->copied, fr,
			 NATIVE_STACK_DEPTH, stop, sizeof(stop));
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < n; i++) {
		s->pc[i] = fr[i].pc;
		s->how[i] = uw_how_name(fr[i].how);
	}
	s->n = n;
	snprintf(s->stop, sizeof(s->stop), "%s", strcmp(stop, "end") ? stop : "");
	cut_at_go(u, s);
	if (!s->stop[0])
		u->complete++;
	return 0;
}

int native_unwind_new(pid_t pid, const struct go_target *go, int events_fd, int walks_fd,
		      struct native_exec_ranges *exec, struct native_unwind **out)
{
	struct native_unwind *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	u->pid = pid;
	u->go = go;
	u->walks_fd = walks_fd;
	u->exec = exec;
	u->stacks = calloc(NATIVE_MAX_STACKS, sizeof(*u->stacks));
	if (!u->stacks) {
		free(u);
		return -ENOMEM;
	}
	ret = stack_unwinder_new(pid, NULL, &u->uw);
	if (ret) {
		native_unwind_free(u);
		return ret;
	}
	u->rb = ring_buffer__new(events_fd, on_event, u, NULL);
	if (!u->rb) {
		ret = errno ? -errno : -ENOMEM;
		native_unwind_free(u);
		return ret;
	}
	publish_exec(u);
	*out = u;
	return 0;
}

int native_unwind_poll(struct native_unwind *u)
{
	stack_unwinder_refresh(u->uw);
	u->refreshed = true;
	publish_exec(u);
	return ring_buffer__consume(u->rb);
}

/* No event for this id (the ring buffer was full): the BPF key walk. */
static int from_walk(struct native_unwind *u, int32_t id, struct nstack *s)
{
	struct native_walk w;
	__u32 key = (__u32)id;

	if (bpf_map_lookup_elem(u->walks_fd, &key, &w))
		return -ENOENT;
	memset(s, 0, sizeof(*s));
	s->n = w.n < NATIVE_STACK_DEPTH ? w.n : NATIVE_STACK_DEPTH;
	for (size_t i = 0; i < s->n; i++) {
		s->pc[i] = w.pc[i];
		s->how[i] = i == 0 ? "regs" : i == 1 ? "sp" : "fp";
	}
	snprintf(s->stop, sizeof(s->stop), "no stack copy (frame pointers only)");
	cut_at_go(u, s);
	return 0;
}

int native_unwind_stack(struct native_unwind *u, int32_t id, struct native_cstack *out)
{
	struct nstack *s;

	memset(out, 0, sizeof(*out));
	if (!u || id < 0 || id >= NATIVE_MAX_STACKS)
		return -ENOENT;
	if (!u->stacks[id]) /* made since the last poll: its event may be queued */
		ring_buffer__consume(u->rb);
	if (!u->stacks[id]) {
		if (!(s = slot(u, id)))
			return -ENOMEM;
		if (from_walk(u, id, s)) {
			free(s);
			u->stacks[id] = NULL;
			return -ENOENT;
		}
	}
	s = u->stacks[id];
	out->n = s->n;
	out->pc = s->pc;
	out->how = s->how;
	out->stop = s->stop[0] ? s->stop : NULL;
	out->go_boundary = s->go_boundary;
	return 0;
}

void native_unwind_go_text(const struct go_target *go, uint64_t *lo, uint64_t *hi)
{
	uint64_t a, b;

	*lo = *hi = 0;
	if (!go || symbolize_elf_symbol(go->exe.open_path, "runtime.text", &a, NULL, NULL) ||
	    symbolize_elf_symbol(go->exe.open_path, "runtime.etext", &b, NULL, NULL) || b <= a)
		return;
	*lo = a + go->bias;
	*hi = b + go->bias;
}

void native_unwind_counts(const struct native_unwind *u, uint64_t *events, uint64_t *complete)
{
	*events = u ? u->events : 0;
	*complete = u ? u->complete : 0;
}

void native_unwind_free(struct native_unwind *u)
{
	if (!u)
		return;
	if (u->stacks)
		for (size_t i = 0; i < NATIVE_MAX_STACKS; i++)
			free(u->stacks[i]);
	free(u->stacks);
	ring_buffer__free(u->rb);
	stack_unwinder_free(u->uw);
	free(u);
}
