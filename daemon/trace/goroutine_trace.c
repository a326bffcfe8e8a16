/* Goroutine lifecycle tracing: see goroutine_trace.h and bpf/goroutine_trace.bpf.c. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "goroutine_trace.skel.h"
#include "goroutine_trace_abi.h"

#include "base/log.h"
#include "probe/bpf_util.h"
#include "trace/goroutine_trace.h"

/* Largest function body decoded for RETs (newproc1 is ~1-2 KiB). */
#define GT_MAX_FUNC_BYTES (64 * 1024)
#define GT_PROLOGUE_BYTES 64

struct gt_base {
	uint64_t gopc, startpc;
	int64_t count;
};

struct gt_target {
	pid_t pid;
	struct probe_links links;
	bool window_open;
	struct gr_event *window; /* events received while the window was open */
	size_t nwindow, capwindow;
	struct gt_base *base;
	size_t nbase;
};

struct gt_config_slot {
	dev_t dev;
	ino_t ino;
	bool used;
};

struct goroutine_trace {
	struct goroutine_trace_bpf *skel;
	struct ring_buffer *rb;
	size_t max_window_events;
	struct gt_target *targets[GT_MAX_TARGETS];
	struct gt_config_slot configs[GR_MAX_CONFIGS];
	uint64_t window_overflow;
	uint64_t corrections;
};

static int read_function(const struct go_target *t, const char *name, struct gobin_func *f,
			 uint8_t **code, size_t *len, size_t cap, char *err, size_t errlen)
{
	ssize_t got;
	size_t want;

	/* the body's end unknown (f->end 0): only the prologue is read */
	if (go_target_func_body(t, name, f))
		return set_err(err, errlen, -ENOENT, "%s: no function %s", t->exe.exe, name);
	want = f->end > f->entry ? f->end - f->entry : GT_PROLOGUE_BYTES;
	if (want > cap)
		want = cap;
	*code = malloc(want);
	if (!*code)
		return -ENOMEM;
	got = gobin_read_vaddr(t->bin, f->entry, *code, want);
	if (got <= 0) {
		free(*code);
		*code = NULL;
		return set_err(err, errlen, got ? (int)got : -EIO, "%s: cannot read %s", t->exe.exe,
			       name);
	}
	*len = got;
	return 0;
}

static int add_probe(const struct go_target *t, struct gt_probe *probes, size_t max, size_t *n,
		     enum gt_probe_kind kind, const char *function, const struct gobin_func *f,
		     const struct probe_place *place, enum probe_reg reg, char *err, size_t errlen)
{
	struct gt_probe *p;

	if (*n >= max)
		return set_err(err, errlen, -E2BIG, "more than %zu goroutine probes", max);
	p = &probes[(*n)++];
	p->kind = kind;
	p->function = function;
	p->reg = reg;
	p->func_vaddr = f->entry;
	p->place = *place;
	if (gobin_vaddr_to_offset(t->bin, f->entry + place->offset, &p->file_offset))
		return set_err(err, errlen, -ENOENT, "%s: %s+%llu not in a segment", t->exe.exe,
			       function, (unsigned long long)place->offset);
	return 0;
}

/* Births where the callers of newproc1 still hold its result in a register
 * at an emulated instruction (~0.7 us a hit instead of ~10 us for a RET).
 * Every caller must qualify, or births would be missed: -ESRCH then. */
static int plan_births_in_callers(const struct go_target *t, uint64_t newproc1,
				  struct gt_probe *probes, size_t max, size_t *n)
{
	static const char *const callers[] = {"runtime.newproc.func1", "runtime.newcoro.func1"};
	struct probe_place place;
	struct gobin_func f;
	enum probe_reg reg;
	char err[256];

	for (size_t i = 0; i < sizeof(callers) / sizeof(callers[0]); i++) {
		uint8_t *code;
		size_t len;
		int ret;

		if (gobin_func_by_name(t->bin, callers[i], &f)) {
			if (i == 0)
				return -ESRCH; /* newproc always calls through it */
			continue; /* no coroutines linked in */
		}
		ret = read_function(t, callers[i], &f, &code, &len, GT_MAX_FUNC_BYTES, err, sizeof(err));
		if (ret)
			return ret;
		ret = probe_place_after_call_x86(code, len, f.entry, newproc1, &place, &reg);
		free(code);
		if (ret || reg == PROBE_REG_NONE || !place.emulated) {
			log_debug("%s: %s: no emulated spot after newproc1 returns", t->exe.exe,
				  callers[i]);
			return -ESRCH;
		}
		ret = add_probe(t, probes, max, n, GT_PROBE_BIRTH, callers[i], &f, &place, reg, err,
				sizeof(err));
		if (ret)
			return ret;
	}
	return 0;
}

int goroutine_trace__plan(const struct go_target *t, struct gt_probe *probes, size_t max,
			  size_t *n, char *err, size_t errlen)
{
	uint64_t rets[GT_MAX_PROBES];
	struct probe_place place;
	struct gobin_func f;
	uint8_t *code = NULL;
	size_t len, nrets;
	int ret;

	*n = 0;
	ret = read_function(t, "runtime.newproc1", &f, &code, &len, GT_MAX_FUNC_BYTES, err, errlen);
	if (ret)
		return ret;
	if (plan_births_in_callers(t, f.entry, probes, max, n)) {
		/* Fallback: each RET of newproc1, where RAX holds the finished g. */
		*n = 0;
		ret = probe_find_rets_x86(code, len, f.entry, rets, GT_MAX_PROBES - 2, &nrets);
		if (ret) {
			free(code);
			return set_err(err, errlen, ret, "%s: runtime.newproc1: %s", t->exe.exe,
				       ret == -ENOENT ? "no RET instruction" : "too many RET instructions");
		}
		log_info("%s: goroutine births probed at the RETs of runtime.newproc1 (single-stepped)",
			 t->exe.exe);
		for (size_t i = 0; i < nrets; i++) {
			memset(&place, 0, sizeof(place));
			place.offset = rets[i];
			probe_insn_info_x86(code + rets[i], len - rets[i], f.entry + rets[i],
					    &place.emulated, place.insn, sizeof(place.insn));
			ret = add_probe(t, probes, max, n, GT_PROBE_BIRTH, "runtime.newproc1", &f, &place,
					PROBE_REG_RAX, err, errlen);
			if (ret)
				break;
		}
	}
	free(code);
	code = NULL;
	if (ret)
		return ret;

	/* Deaths: goexit1 runs on the exiting goroutine (R14). */
	ret = read_function(t, "runtime.goexit1", &f, &code, &len, GT_PROLOGUE_BYTES, err, errlen);
	if (ret)
		return ret;
	ret = probe_place_x86(code, len, f.entry, &place);
	free(code);
	if (ret)
		return set_err(err, errlen, ret, "%s: runtime.goexit1 does not decode", t->exe.exe);
	if (place.fallback)
		log_warn("%s: runtime.goexit1: no emulated instruction in the prologue, probing "
			 "the entry (%s, single-stepped)", t->exe.exe, place.insn);
	return add_probe(t, probes, max, n, GT_PROBE_DEATH, "runtime.goexit1", &f, &place,
			 PROBE_REG_NONE, err, errlen);
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct goroutine_trace *gt = ctx;
	const struct gr_event *e = data;
	struct gt_target *tt = NULL;

	if (size < sizeof(*e))
		return 0;
	for (int i = 0; i < GT_MAX_TARGETS; i++)
		if (gt->targets[i] && gt->targets[i]->pid == (pid_t)e->tgid)
			tt = gt->targets[i];
	if (!tt || !tt->window_open)
		return 0;
	if (tt->nwindow == tt->capwindow) {
		size_t cap = tt->capwindow ? tt->capwindow * 2 : 4096;
		struct gr_event *w;

		if (cap > gt->max_window_events) {
			gt->window_overflow++;
			return 0;
		}
		w = realloc(tt->window, cap * sizeof(*w));
		if (!w) {
			gt->window_overflow++;
			return 0;
		}
		tt->window = w;
		tt->capwindow = cap;
	}
	tt->window[tt->nwindow++] = *e;
	return 0;
}

int goroutine_trace__new(const struct goroutine_trace_opts *opts, struct goroutine_trace **out,
			 char *err, size_t errlen)
{
	struct goroutine_trace *gt;
	int ret;

	gt = calloc(1, sizeof(*gt));
	if (!gt)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	gt->max_window_events = opts && opts->max_window_events ? opts->max_window_events :
								  GT_MAX_WINDOW_EVENTS;
	ret = BPF_UTIL_OPEN(gt->skel, goroutine_trace, err, errlen);
	if (!ret)
		ret = bpf_util_load(gt->skel->skeleton, err, errlen);
	if (ret) {
		goroutine_trace__free(gt);
		return ret;
	}
	gt->rb = ring_buffer__new(bpf_map__fd(gt->skel->maps.gr_events), on_event, gt, NULL);
	if (!gt->rb) {
		ret = -errno;
		goroutine_trace__free(gt);
		return set_err(err, errlen, ret, "ring buffer: %s", strerror(-ret));
	}
	*out = gt;
	return 0;
}

static struct gt_target *find_target(struct goroutine_trace *gt, pid_t pid, int *slot)
{
	for (int i = 0; i < GT_MAX_TARGETS; i++) {
		if (gt->targets[i] && gt->targets[i]->pid == pid) {
			if (slot)
				*slot = i;
			return gt->targets[i];
		}
	}
	return NULL;
}

static void free_target(struct gt_target *tt)
{
	probe_links_destroy(&tt->links);
	free(tt->window);
	free(tt->base);
	free(tt);
}

/* Config slot of the executable (dev, inode): one per binary, shared by all
 * its processes. */
static int config_index(struct goroutine_trace *gt, const struct go_target *t, __u32 *idx)
{
	const struct go_offsets *o = gobin_offsets(t->bin);
	struct gr_config cfg;
	int free_slot = -1;

	if (!o || o->g_goid < 0 || o->g_gopc < 0)
		return -ENODATA;
	for (int i = 0; i < GR_MAX_CONFIGS; i++) {
		if (gt->configs[i].used && gt->configs[i].dev == t->exe.dev &&
		    gt->configs[i].ino == t->exe.ino) {
			*idx = i;
			return 0;
		}
		if (!gt->configs[i].used && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		return -ENOSPC;
	cfg = (struct gr_config){.g_goid = o->g_goid, .g_gopc = o->g_gopc, .g_startpc = o->g_startpc};
	*idx = free_slot;
	if (bpf_map_update_elem(bpf_map__fd(gt->skel->maps.gr_configs), idx, &cfg, BPF_ANY))
		return -errno;
	gt->configs[free_slot] = (struct gt_config_slot){t->exe.dev, t->exe.ino, true};
	return 0;
}

static struct bpf_program *birth_program(struct goroutine_trace *gt, enum probe_reg reg)
{
	struct bpf_program *const progs[] = {
		[PROBE_REG_RAX] = gt->skel->progs.gr_birth_ax,  [PROBE_REG_RBX] = gt->skel->progs.gr_birth_bx,
		[PROBE_REG_RCX] = gt->skel->progs.gr_birth_cx,  [PROBE_REG_RDX] = gt->skel->progs.gr_birth_dx,
		[PROBE_REG_RSI] = gt->skel->progs.gr_birth_si,  [PROBE_REG_RDI] = gt->skel->progs.gr_birth_di,
		[PROBE_REG_R8] = gt->skel->progs.gr_birth_r8,   [PROBE_REG_R9] = gt->skel->progs.gr_birth_r9,
		[PROBE_REG_R10] = gt->skel->progs.gr_birth_r10, [PROBE_REG_R11] = gt->skel->progs.gr_birth_r11,
		[PROBE_REG_R12] = gt->skel->progs.gr_birth_r12, [PROBE_REG_R13] = gt->skel->progs.gr_birth_r13,
		[PROBE_REG_R15] = gt->skel->progs.gr_birth_r15,
	};

	return reg < PROBE_REG_NONE ? progs[reg] : NULL;
}

int goroutine_trace__attach(struct goroutine_trace *gt, const struct go_target *t, char *err,
			    size_t errlen)
{
	struct gr_tgid_state st = {.window = 1};
	struct gt_probe probes[GT_MAX_PROBES];
	struct gt_target *tt;
	__u32 tgid = t->pid, idx;
	size_t n;
	int ret, slot = -1;

	if (find_target(gt, t->pid, NULL))
		return set_err(err, errlen, -EALREADY, "process %d is already traced", t->pid);
	for (int i = 0; i < GT_MAX_TARGETS && slot < 0; i++)
		if (!gt->targets[i])
			slot = i;
	if (slot < 0)
		return set_err(err, errlen, -ENOSPC, "more than %d traced processes", GT_MAX_TARGETS);
	ret = goroutine_trace__plan(t, probes, GT_MAX_PROBES, &n, err, errlen);
	if (ret)
		return ret;
	ret = config_index(gt, t, &idx);
	if (ret)
		return set_err(err, errlen, ret, "%s: no runtime.g offsets for goid/gopc", t->exe.exe);
	tt = calloc(1, sizeof(*tt));
	if (!tt)
		return -ENOMEM;
	tt->pid = t->pid;
	tt->window_open = true;
	if (bpf_map_update_elem(bpf_map__fd(gt->skel->maps.gr_tgids), &tgid, &st, BPF_ANY)) {
		ret = set_err(err, errlen, -errno, "traced-process map: %s", strerror(errno));
		free_target(tt);
		return ret;
	}
	gt->targets[slot] = tt;
	/* Deaths before births: a goroutine that dies with the death probe in
	 * place is either reconciled through the window or in the snapshot; a
	 * birth probe first would count births whose deaths nobody sees. The
	 * plan lists the death probe last, so walk it backwards. */
	for (size_t i = n; i-- > 0;) {
		struct bpf_program *prog = probes[i].kind == GT_PROBE_DEATH ? gt->skel->progs.gr_death :
									       birth_program(gt, probes[i].reg);
		__u64 cookie = idx;

		if (!prog) {
			ret = set_err(err, errlen, -EINVAL, "no birth program for register %d",
				      probes[i].reg);
			goroutine_trace__detach(gt, t->pid);
			return ret;
		}

		if (probes[i].kind == GT_PROBE_BIRTH)
			cookie |= (__u64)(probes[i].reg & GR_COOKIE_REG_MASK) << GR_COOKIE_REG_SHIFT;
		cookie |= probe_stack_check_cookie(&probes[i].place);
		ret = probe_links_uprobe(&tt->links, prog, t->pid, t->exe.open_path,
					 probes[i].file_offset, cookie);
		if (ret) {
			set_err(err, errlen, ret, "uprobe %s+%llu in process %d: %s", probes[i].function,
				(unsigned long long)probes[i].place.offset, t->pid, strerror(-ret));
			goroutine_trace__detach(gt, t->pid);
			return ret;
		}
		log_debug("probe %s+%llu (%s, %s) cookie %#llx", probes[i].function,
			  (unsigned long long)probes[i].place.offset, probes[i].place.insn,
			  probes[i].place.emulated ? "emulated" : "single-stepped",
			  (unsigned long long)cookie);
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool sorted_has(const uint64_t *v, size_t n, uint64_t x)
{
	return n && bsearch(&x, v, n, sizeof(*v), cmp_u64);
}

static int base_add(struct gt_target *tt, uint64_t gopc, uint64_t startpc, int64_t delta,
		    size_t *cap)
{
	for (size_t i = 0; i < tt->nbase; i++) {
		if (tt->base[i].gopc == gopc && tt->base[i].startpc == startpc) {
			tt->base[i].count += delta;
			return 0;
		}
	}
	if (tt->nbase == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct gt_base *b = realloc(tt->base, c * sizeof(*b));

		if (!b)
			return -ENOMEM;
		tt->base = b;
		*cap = c;
	}
	tt->base[tt->nbase++] = (struct gt_base){gopc, startpc, delta};
	return 0;
}

int goroutine_trace__reconcile(struct goroutine_trace *gt, pid_t pid,
			       const struct go_snapshot *snap)
{
	struct gr_tgid_state st = {.window = 0};
	struct gt_target *tt = find_target(gt, pid, NULL);
	const struct timespec settle = {0, 20 * 1000 * 1000};
	uint64_t *snap_goids = NULL, *births = NULL;
	size_t nbirths = 0, cap = tt ? tt->nbase : 0;
	__u32 tgid = pid;
	int ret = 0;

	if (!tt)
		return -ENOENT;
	if (bpf_map_update_elem(bpf_map__fd(gt->skel->maps.gr_tgids), &tgid, &st, BPF_EXIST))
		return log_errno(-errno, "closing the attach window of %d: %s", pid, strerror(errno));
	/* A probe that saw the window open may still be writing its record. */
	nanosleep(&settle, NULL);
	ring_buffer__consume(gt->rb);
	tt->window_open = false;

	snap_goids = malloc((snap->ngs + 1) * sizeof(*snap_goids));
	births = malloc((tt->nwindow + 1) * sizeof(*births));
	if (!snap_goids || !births) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < snap->ngs; i++) {
		snap_goids[i] = snap->gs[i].goid;
		ret = base_add(tt, snap->gs[i].gopc, snap->gs[i].startpc, 1, &cap);
		if (ret)
			goto out;
	}
	qsort(snap_goids, snap->ngs, sizeof(*snap_goids), cmp_u64);
	for (size_t i = 0; i < tt->nwindow; i++)
		if (tt->window[i].type == GR_EVENT_BIRTH)
			births[nbirths++] = tt->window[i].goid;
	qsort(births, nbirths, sizeof(*births), cmp_u64);

	for (size_t i = 0; i < tt->nwindow; i++) {
		const struct gr_event *e = &tt->window[i];
		int64_t delta = 0;

		/* Born after the probes went in, yet also seen by the snapshot. */
		if (e->type == GR_EVENT_BIRTH && sorted_has(snap_goids, snap->ngs, e->goid))
			delta = -1;
		/* Existed before the probes, died before the walk reached it. */
		else if (e->type == GR_EVENT_DEATH && !sorted_has(snap_goids, snap->ngs, e->goid) &&
			 !sorted_has(births, nbirths, e->goid))
			delta = 1;
		if (!delta)
			continue;
		gt->corrections++;
		ret = base_add(tt, e->gopc, e->startpc, delta, &cap);
		if (ret)
			goto out;
	}
	log_debug("process %d: attach window: %zu events, snapshot %zu goroutines", pid, tt->nwindow,
		  snap->ngs);
out:
	free(tt->window);
	tt->window = NULL;
	tt->nwindow = tt->capwindow = 0;
	free(snap_goids);
	free(births);
	return ret;
}

void goroutine_trace__detach(struct goroutine_trace *gt, pid_t pid)
{
	int sites_fd = bpf_map__fd(gt->skel->maps.gr_sites);
	struct gr_site_key key, next, *prev = NULL;
	struct gt_target *tt;
	__u32 tgid = pid;
	int slot;

	tt = find_target(gt, pid, &slot);
	if (tt) {
		gt->targets[slot] = NULL;
		free_target(tt);
	}
	bpf_map_delete_elem(bpf_map__fd(gt->skel->maps.gr_tgids), &tgid);
	/* Deleting while iterating restarts the walk; bounded by the map size. */
	for (int guard = 0; guard < 4 * GR_MAX_SITES &&
			    !bpf_map_get_next_key(sites_fd, prev, &next);
	     guard++) {
		if (next.tgid == tgid) {
			bpf_map_delete_elem(sites_fd, &next);
			prev = NULL;
			continue;
		}
		key = next;
		prev = &key;
	}
}

static int site_add(struct gt_site **sites, size_t *n, size_t *cap, uint64_t gopc,
		    uint64_t startpc, struct gt_site **out)
{
	for (size_t i = 0; i < *n; i++) {
		if ((*sites)[i].gopc == gopc && (*sites)[i].startpc == startpc) {
			*out = &(*sites)[i];
			return 0;
		}
	}
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct gt_site *s = realloc(*sites, c * sizeof(*s));

		if (!s)
			return -ENOMEM;
		*sites = s;
		*cap = c;
	}
	*out = &(*sites)[(*n)++];
	**out = (struct gt_site){.gopc = gopc, .startpc = startpc};
	return 0;
}

int goroutine_trace__read(struct goroutine_trace *gt, pid_t pid, struct gt_site **sites,
			  size_t *nsites)
{
	int sites_fd = bpf_map__fd(gt->skel->maps.gr_sites);
	struct gr_site_key key, next, *prev = NULL;
	struct gt_target *tt = find_target(gt, pid, NULL);
	struct gt_site *out = NULL, *s;
	size_t n = 0, cap = 0;
	int ret = 0;

	*sites = NULL;
	*nsites = 0;
	if (!tt)
		return -ENOENT;
	for (size_t i = 0; i < tt->nbase; i++) {
		ret = site_add(&out, &n, &cap, tt->base[i].gopc, tt->base[i].startpc, &s);
		if (ret)
			goto fail;
		s->base += tt->base[i].count;
	}
	for (int guard = 0; guard < GR_MAX_SITES && !bpf_map_get_next_key(sites_fd, prev, &next);
	     guard++) {
		struct gr_site_counts c;

		key = next;
		prev = &key;
		if (key.tgid != (__u32)pid || bpf_map_lookup_elem(sites_fd, &key, &c))
			continue;
		ret = site_add(&out, &n, &cap, key.gopc, key.startpc, &s);
		if (ret)
			goto fail;
		s->created = c.created;
		s->exited = c.exited;
	}
	for (size_t i = 0; i < n; i++)
		out[i].live = out[i].base + (int64_t)out[i].created - (int64_t)out[i].exited;
	*sites = out;
	*nsites = n;
	return 0;
fail:
	free(out);
	return ret;
}

void goroutine_trace__stats(struct goroutine_trace *gt, struct gt_stats *st)
{
	const __u64 *k = gt->skel->bss->gr_stats;

	memset(st, 0, sizeof(*st));
	st->births = k[GR_STAT_BIRTH_HITS];
	st->deaths = k[GR_STAT_DEATH_HITS];
	st->morestack_skips = k[GR_STAT_MORESTACK_SKIPS];
	st->ringbuf_drops = k[GR_STAT_RINGBUF_DROPS];
	st->sites_full = k[GR_STAT_SITES_FULL];
	st->read_errors = k[GR_STAT_READ_ERRORS];
	st->window_overflow = gt->window_overflow;
	st->corrections = gt->corrections;
	st->lost_events = st->ringbuf_drops + st->sites_full + st->read_errors + st->window_overflow;
}

int goroutine_trace__ring_fd(struct goroutine_trace *gt)
{
	return ring_buffer__epoll_fd(gt->rb);
}

int goroutine_trace__poll(struct goroutine_trace *gt)
{
	int n = ring_buffer__consume(gt->rb);

	return n < 0 ? n : 0;
}

void goroutine_trace__free(struct goroutine_trace *gt)
{
	if (!gt)
		return;
	for (int i = 0; i < GT_MAX_TARGETS; i++)
		if (gt->targets[i])
			goroutine_trace__detach(gt, gt->targets[i]->pid);
	ring_buffer__free(gt->rb);
	goroutine_trace_bpf__destroy(gt->skel);
	free(gt);
}
