#include "watch/snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/util.h"

/* Bounds that keep a corrupt or hostile target from making us allocate
 * without limit. */
#define SNAPSHOT_MAX_GOROUTINES (16u << 20)
#define SNAPSHOT_MAX_MS 100000
#define G_READ_MAX GO_G_READ_MAX
/* Per snapshot: goroutines recorded (64 B each), the gs read per batch, and
 * the wall time of the walk; past them the walk stops and snap->truncated
 * counts the goroutines not examined. */
#define SNAPSHOT_MAX_LIVE (1u << 20)
#define SNAPSHOT_CHUNK 65536u
#define SNAPSHOT_BUDGET_NS 2000000000ull

#define STATUS_WAITING 4
#define STATUS_IDLE 0
#define STATUS_DEAD_EXTRA 11 /* Go 1.26 _Gdeadextra */

static int read_u64(pid_t pid, uint64_t addr, uint64_t *v)
{
	return proc_read(pid, addr, v, sizeof(*v));
}

static int max_field(const struct go_offsets *o)
{
	int fields[] = { o->g_stack_lo, o->g_stack_hi, o->g_atomicstatus, o->g_goid,
			 o->g_waitsince, o->g_waitreason, o->g_gopc, o->g_startpc };
	int m = 0;

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i] > m)
			m = fields[i];
	return m + 8;
}

bool go_start_is_system(const struct go_target *t, uint64_t startpc)
{
	struct gobin_pcinfo pi;

	if (gobin_pc_lookup(t->bin, startpc - t->bias, &pi) < 0 || !pi.func)
		return false;
	if (strncmp(pi.func, "runtime.", 8) != 0)
		return false;
	return strcmp(pi.func, "runtime.main") != 0 && strcmp(pi.func, "runtime.corostart") != 0;
}

struct startpc_memo {
	uint64_t pc;
	bool system;
};

static int read_goroutines(const struct go_target *t, struct go_snapshot *snap, char *err,
			   size_t errlen)
{
	const struct go_offsets *o = gobin_offsets(t->bin);
	uint64_t allglen = 0, allgptr = 0, addr;
	uint64_t *gptrs = NULL;
	uint8_t *gbuf = NULL;
	bool *ok = NULL;
	struct startpc_memo memo[64] = { 0 };
	size_t gsize, n, m, i, chunk, base, cap = 0;
	uint64_t deadline;
	long got;
	int ret;

	if (o->g_goid < 0 || o->g_gopc < 0 || o->g_startpc < 0 || o->g_atomicstatus < 0)
		return set_err(err, errlen, -ENOTSUP, "runtime.g layout unknown for %s",
			       gobin_version(t->bin)->str);

	addr = go_target_global(t, "runtime.allglen");
	if (addr && read_u64(t->pid, addr, &allglen) == 0 &&
	    (addr = go_target_global(t, "runtime.allgptr")) &&
	    read_u64(t->pid, addr, &allgptr) == 0) {
		/* lock-free view the runtime itself uses in forEachGRace */
	} else if ((addr = go_target_global(t, "runtime.allgs"))) {
		uint64_t slice[2];

		ret = proc_read(t->pid, addr, slice, sizeof(slice));
		if (ret < 0)
			return set_err(err, errlen, ret, "reading runtime.allgs: %s", strerror(-ret));
		allgptr = slice[0];
		allglen = slice[1];
	} else {
		return set_err(err, errlen, -ENOENT,
			       "cannot locate runtime.allgs/allglen in %s", gobin_path(t->bin));
	}
	if (allglen > SNAPSHOT_MAX_GOROUTINES)
		return set_err(err, errlen, -EOVERFLOW, "allglen %lu is implausible",
			       (unsigned long)allglen);
	n = allglen;
	if (n == 0)
		return 0;

	/* every field read below must lie in the bytes read per g */
	gsize = max_field(o);
	if (gsize > G_READ_MAX)
		return set_err(err, errlen, -ENOTSUP,
			       "runtime.g field at offset %zu is past the %d bytes read per goroutine "
			       "(%s): layout refused", gsize - 8, G_READ_MAX,
			       gobin_version(t->bin)->str);
	chunk = n < SNAPSHOT_CHUNK ? n : SNAPSHOT_CHUNK;
	gptrs = calloc(chunk, sizeof(*gptrs));
	gbuf = calloc(chunk, gsize);
	ok = calloc(chunk, sizeof(*ok));
	if (!gptrs || !gbuf || !ok) {
		ret = set_err(err, errlen, -ENOMEM, "out of memory for %zu goroutines", n);
		goto out;
	}
	deadline = now_monotonic_ns() + SNAPSHOT_BUDGET_NS;
	base = 0;
	/* the list in chunks of SNAPSHOT_CHUNK gs, so memory stays bounded */
next_chunk:
	m = n - base < chunk ? n - base : chunk;
	if (snap->ngs + m > SNAPSHOT_MAX_LIVE || (base && now_monotonic_ns() > deadline)) {
		snap->truncated = n - base;
		goto done;
	}
	if (snap->ngs + m > cap) {
		size_t ncap = snap->ngs + m > 2 * cap ? snap->ngs + m : 2 * cap;
		struct snap_goroutine *ngs;

		if (ncap > SNAPSHOT_MAX_LIVE)
			ncap = SNAPSHOT_MAX_LIVE;
		ngs = realloc(snap->gs, ncap * sizeof(*snap->gs));
		if (!ngs) {
			ret = set_err(err, errlen, -ENOMEM, "out of memory for %zu goroutines", n);
			goto out;
		}
		snap->gs = ngs;
		cap = ncap;
	}
	ret = proc_read(t->pid, allgptr + base * sizeof(*gptrs), gptrs, m * sizeof(*gptrs));
	if (ret < 0) {
		set_err(err, errlen, ret, "reading the goroutine list: %s", strerror(-ret));
		goto out;
	}
	got = proc_read_many(t->pid, gptrs, m, gsize, gbuf, ok);
	if (got < 0) {
		ret = set_err(err, errlen, (int)got, "process %d exited", t->pid);
		goto out;
	}

	for (i = 0; i < m; i++) {
		const uint8_t *g = gbuf + i * gsize;
		struct snap_goroutine *sg = &snap->gs[snap->ngs];
		uint32_t status;
		size_t slot;

		if (!ok[i] || !gptrs[i])
			continue;
		memset(sg, 0, sizeof(*sg));
		memcpy(&status, g + o->g_atomicstatus, sizeof(status));
		status &= ~(uint32_t)o->status_scan_bit;
		if (status == (uint32_t)o->status_dead || status == STATUS_IDLE ||
		    status == STATUS_DEAD_EXTRA)
			continue;
		sg->g = gptrs[i];
		/* the leak detector's mark replaces _Gwaiting; waitreason stays */
		if (o->status_leaked > 0 && status == (uint32_t)o->status_leaked) {
			sg->leaked = true;
			status = STATUS_WAITING;
		}
		sg->status = status;
		memcpy(&sg->goid, g + o->g_goid, 8);
		memcpy(&sg->gopc, g + o->g_gopc, 8);
		memcpy(&sg->startpc, g + o->g_startpc, 8);
		if (o->g_waitreason >= 0)
			sg->waitreason = g[o->g_waitreason];
		if (o->g_waitsince >= 0)
			memcpy(&sg->waitsince, g + o->g_waitsince, 8);
		if (o->g_stack_lo >= 0 && o->g_stack_hi >= 0) {
			uint64_t lo, hi;

			memcpy(&lo, g + o->g_stack_lo, 8);
			memcpy(&hi, g + o->g_stack_hi, 8);
			sg->stack_bytes = hi > lo ? hi - lo : 0;
		}
		slot = (sg->startpc >> 4) % 64;
		if (memo[slot].pc != sg->startpc) {
			memo[slot].pc = sg->startpc;
			memo[slot].system = go_start_is_system(t, sg->startpc);
		}
		sg->system = memo[slot].system;
		if (!sg->system) {
			snap->goroutines++;
			snap->leaked += sg->leaked;
		}
		if (sg->goid > snap->max_goid)
			snap->max_goid = sg->goid;
		snap->ngs++;
	}
	base += m;
	if (base < n)
		goto next_chunk;
done:
	ret = 0;
out:
	free(gptrs);
	free(gbuf);
	free(ok);
	return ret;
}

int go_snapshot_heap(const struct go_target *t, struct snap_heap *h)
{
	const struct go_offsets *o = gobin_offsets(t->bin);
	uint64_t gc = go_target_global(t, "runtime.gcController");
	uint64_t ms = go_target_global(t, "runtime.memstats");

	memset(h, 0, sizeof(*h));
	if (!gc && !ms)
		return -ENOENT;

	if (gc) {
		if (o->gc_heap_live >= 0)
			read_u64(t->pid, gc + o->gc_heap_live, &h->live_bytes);
		if (o->gc_heap_marked >= 0)
			read_u64(t->pid, gc + o->gc_heap_marked, &h->marked_bytes);
		if (o->gc_heap_goal >= 0)
			read_u64(t->pid, gc + o->gc_heap_goal, &h->goal_bytes);
		else if (o->gc_percent_heap_goal >= 0)
			read_u64(t->pid, gc + o->gc_percent_heap_goal, &h->goal_bytes);
		if (o->gc_total_alloc >= 0)
			read_u64(t->pid, gc + o->gc_total_alloc, &h->total_alloc_bytes);
		if (o->gc_total_free >= 0)
			read_u64(t->pid, gc + o->gc_total_free, &h->total_free_bytes);
	}
	if (ms && o->ms_numgc >= 0) {
		uint32_t numgc = 0;

		if (proc_read(t->pid, ms + o->ms_numgc, &numgc, sizeof(numgc)) == -ESRCH)
			return -ESRCH;
		h->gc_cycles = numgc;
	}
	return 0;
}

/* runtime.NumCgoCall: the global counter of exited Ms plus every live M's. */
static void read_cgo_calls(const struct go_target *t, struct go_snapshot *snap)
{
	const struct go_offsets *o = gobin_offsets(t->bin);
	uint64_t addr = go_target_global(t, "runtime.ncgocall");
	uint64_t allm = go_target_global(t, "runtime.allm");
	uint64_t total = 0, m = 0, v;
	int i;

	if (!addr || read_u64(t->pid, addr, &total) < 0)
		return;
	if (allm && o->m_alllink >= 0 && o->m_ncgocall >= 0 && read_u64(t->pid, allm, &m) == 0) {
		for (i = 0; m && i < SNAPSHOT_MAX_MS; i++) {
			if (read_u64(t->pid, m + o->m_ncgocall, &v) < 0)
				break;
			total += v;
			if (read_u64(t->pid, m + o->m_alllink, &m) < 0)
				break;
		}
	}
	snap->cgo_calls = total;
	snap->cgo_calls_known = true;
}

int go_snapshot_take(const struct go_target *t, struct go_snapshot *snap, char *err, size_t errlen)
{
	int ret;

	memset(snap, 0, sizeof(*snap));
	snap->pid = t->pid;
	snap->taken_ns = now_monotonic_ns();
	ret = read_goroutines(t, snap, err, errlen);
	if (ret < 0) {
		go_snapshot_free(snap);
		if (!proc_exists(t->pid))
			return set_err(err, errlen, -ESRCH, "process %d exited", t->pid);
		return ret;
	}
	if (snap->truncated)
		log_warn("PID %d: goroutine walk stopped at its bounds (%u recorded, %u ms): "
			 "%zu goroutines not examined", (int)t->pid, SNAPSHOT_MAX_LIVE,
			 (unsigned)(SNAPSHOT_BUDGET_NS / 1000000), snap->truncated);
	go_snapshot_heap(t, &snap->heap);
	read_cgo_calls(t, snap);
	if (!proc_exists(t->pid)) {
		go_snapshot_free(snap);
		return set_err(err, errlen, -ESRCH, "process %d exited", t->pid);
	}
	return 0;
}

void go_snapshot_free(struct go_snapshot *snap)
{
	free(snap->gs);
	snap->gs = NULL;
	snap->ngs = 0;
}

static int cmp_gopc(const void *a, const void *b)
{
	const struct snap_goroutine *x = *(const struct snap_goroutine *const *)a;
	const struct snap_goroutine *y = *(const struct snap_goroutine *const *)b;

	return x->gopc < y->gopc ? -1 : x->gopc > y->gopc;
}

static int cmp_site_count(const void *a, const void *b)
{
	const struct snap_site *x = a, *y = b;

	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return x->gopc < y->gopc ? -1 : x->gopc > y->gopc;
}

size_t go_snapshot_state_index(const struct snap_goroutine *g)
{
	if (g->status == STATUS_WAITING)
		return g->waitreason < 64 ? g->waitreason : 0;
	return 64 + (g->status < 8 ? g->status : 7);
}

const char *go_snapshot_state_name(const struct go_target *t, size_t i)
{
	const struct go_offsets *o = gobin_offsets(t->bin);

	if (i < 64)
		return go_wait_reason_name(o, (uint8_t)i);
	return go_status_name(o, (uint32_t)(i - 64));
}

void go_site_describe(const struct go_target *t, uint64_t gopc, uint64_t startpc,
		      const char **function, const char **file, int *line,
		      const char **start_function)
{
	struct gobin_pcinfo pi;

	*function = "?";
	*file = "?";
	*line = 0;
	*start_function = "?";
	/* gopc is a return address: the go statement is the call before it */
	if (gopc > t->bias && gobin_pc_lookup(t->bin, gopc - t->bias - 1, &pi) == 0) {
		*function = pi.func ? pi.func : "?";
		*file = pi.file ? pi.file : "?";
		*line = pi.line;
	}
	if (startpc > t->bias && gobin_pc_lookup(t->bin, startpc - t->bias, &pi) == 0 && pi.func)
		*start_function = pi.func;
	/* the main goroutine is started by the runtime's assembly */
	if (!strcmp(*start_function, "runtime.main")) {
		*function = "runtime.main (main goroutine)";
		*file = "";
		*line = 0;
	}
}

int go_snapshot_sites(const struct go_target *t, const struct go_snapshot *snap,
		      struct snap_site **sites_out, size_t *nsites_out)
{
	const struct snap_goroutine **order;
	struct snap_site *sites;
	size_t n = 0, i;

	*sites_out = NULL;
	*nsites_out = 0;
	order = calloc(snap->ngs ? snap->ngs : 1, sizeof(*order));
	sites = calloc(snap->ngs ? snap->ngs : 1, sizeof(*sites));
	if (!order || !sites) {
		free(order);
		free(sites);
		return -ENOMEM;
	}
	for (i = 0; i < snap->ngs; i++)
		if (!snap->gs[i].system)
			order[n++] = &snap->gs[i];
	qsort(order, n, sizeof(*order), cmp_gopc);

	size_t ns = 0;
	for (i = 0; i < n; i++) {
		const struct snap_goroutine *g = order[i];
		struct snap_site *s;

		if (ns == 0 || sites[ns - 1].gopc != g->gopc) {
			s = &sites[ns++];
			s->gopc = g->gopc;
			s->startpc = g->startpc;
			go_site_describe(t, g->gopc, g->startpc, &s->function, &s->file, &s->line,
					 &s->start_function);
		}
		s = &sites[ns - 1];
		s->count++;
		s->leaked += g->leaked;
		s->state_count[go_snapshot_state_index(g)]++;
		if (g->status == STATUS_WAITING && g->waitsince > 0 &&
		    (s->oldest_waitsince == 0 || g->waitsince < s->oldest_waitsince))
			s->oldest_waitsince = g->waitsince;
	}
	free(order);
	qsort(sites, ns, sizeof(*sites), cmp_site_count);
	*sites_out = sites;
	*nsites_out = ns;
	return 0;
}
