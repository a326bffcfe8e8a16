/* C memory tracing: probe choice, BPF lifecycle, aggregation, views. See
 * native_trace.h. */
#include "trace/native_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <capstone/capstone.h>
#include <json-c/json.h>

#include "probe/bpf_util.h"
#include "binary/gobin.h"
#include "base/log.h"
#include "native_trace.skel.h"
#include "output/pprof.h"
#include "symbols/native_unwind.h"
#include "probe/probe_place.h"
#include "discover/proc.h"
#include "discover/target.h"

#define BATCH 4096
#define CODE_MAX 4096 /* bytes of runtime.cgocall decoded */

struct native_trace {
	struct native_trace_opts opts;
	pid_t pid;
	const struct go_target *go;
	struct native_trace_bpf *skel;
	struct bpf_link *links[2 * NATIVE_MAX_PROBES];
	size_t nlinks;
	struct native_probe_info probes[NATIVE_MAX_PROBES];
	size_t nprobes;
	char libc[PATH_MAX];
	char libc_open[PATH_MAX + 32];
	struct symbolizer *sym;
	struct native_unwind *uw; /* NULL with frame-pointer stacks (fp_stacks) */
	/* last poll */
	struct native_site *sites;
	size_t nsites;
	struct native_alloc *vals;
	struct native_stats stats;
	struct native_cgo_fn *fns;
	size_t nfns;
	uint64_t poll_ns, prev_poll_ns;
};

static uint64_t now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ names --- */

static const char *const kind_names[NATIVE_KIND_MAX] = {
	[NATIVE_KIND_MALLOC] = "malloc",
	[NATIVE_KIND_CALLOC] = "calloc",
	[NATIVE_KIND_REALLOC] = "realloc",
	[NATIVE_KIND_POSIX_MEMALIGN] = "posix_memalign",
	[NATIVE_KIND_MEMALIGN] = "memalign",
	[NATIVE_KIND_VALLOC] = "valloc",
	[NATIVE_KIND_PVALLOC] = "pvalloc",
	[NATIVE_KIND_MMAP] = "mmap",
};

const char *native_kind_name(uint32_t kind)
{
	return kind < NATIVE_KIND_MAX ? kind_names[kind] : "?";
}

static const char *const stat_names[NATIVE_STAT_MAX] = {
	[NATIVE_STAT_ALLOCS] = "allocs",
	[NATIVE_STAT_FREES] = "frees",
	[NATIVE_STAT_FREE_UNKNOWN] = "free_unknown",
	[NATIVE_STAT_FREE_NULL] = "free_null",
	[NATIVE_STAT_FAILED] = "failed_allocs",
	[NATIVE_STAT_ALLOCS_FULL] = "allocs_map_full",
	[NATIVE_STAT_PENDING_FULL] = "pending_map_full",
	[NATIVE_STAT_PENDING_MISSING] = "return_without_entry",
	[NATIVE_STAT_STACK_ERRORS] = "stack_errors",
	[NATIVE_STAT_GO_STACK_ERRORS] = "go_stack_errors",
	[NATIVE_STAT_THREADS_FULL] = "cgo_threads_full",
	[NATIVE_STAT_CGO_FNS_FULL] = "cgo_fns_full",
	[NATIVE_STAT_CGO_CALLS] = "cgo_calls",
	[NATIVE_STAT_MMAP_FILE] = "mmap_not_anonymous",
	[NATIVE_STAT_MMAP_NESTED] = "mmap_in_allocator",
	[NATIVE_STAT_MUNMAP_PARTIAL] = "munmap_partial",
	[NATIVE_STAT_MUNMAP_UNKNOWN] = "munmap_unknown",
	[NATIVE_STAT_REPLACED] = "replaced",
	[NATIVE_STAT_STACKS_NEW] = "stacks_new",
	[NATIVE_STAT_STACK_EVENTS_LOST] = "stack_events_lost",
	[NATIVE_STAT_STACKS_FULL] = "stacks_full",
};

const char *native_stat_name(uint32_t stat)
{
	return stat < NATIVE_STAT_MAX ? stat_names[stat] : NULL;
}

/* ------------------------------------------------------- aggregation --- */

static uint64_t key_hash(const struct native_site_key *k)
{
	uint64_t h = (uint64_t)(uint32_t)k->stackid * 0x9e3779b97f4a7c15ull;

	h ^= (uint64_t)(uint32_t)k->go_stackid + 0x632be59bd9b4e019ull + (h << 6) + (h >> 2);
	h ^= k->caller * 0xbf58476d1ce4e5b9ull;
	h ^= k->go_caller * 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

static int site_cmp(const void *a, const void *b)
{
	const struct native_site *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->oldest_birth_ns < y->oldest_birth_ns ? -1 : x->oldest_birth_ns > y->oldest_birth_ns;
}

int native_sites_aggregate(const struct native_alloc *allocs, size_t n, struct native_site *sites,
			   size_t max, size_t *nsites, uint64_t *dropped)
{
	size_t cap = 16, used = 0;
	uint32_t *slots;

	*nsites = 0;
	*dropped = 0;
	while (cap < 2 * max)
		cap *= 2;
	slots = malloc(cap * sizeof(*slots)); /* index + 1, 0 = empty */
	if (!slots)
		return -ENOMEM;
	memset(slots, 0, cap * sizeof(*slots));
	for (size_t i = 0; i < n; i++) {
		const struct native_alloc *a = &allocs[i];
		struct native_site_key k = { a->stackid, a->go_stackid, a->caller, a->go_caller };
		size_t h = (size_t)key_hash(&k) & (cap - 1);
		struct native_site *s = NULL;

		for (;; h = (h + 1) & (cap - 1)) {
			if (!slots[h]) {
				if (used == max)
					break;
				s = &sites[used];
				*s = (struct native_site){ .key = k, .oldest_birth_ns = a->birth_ns };
				slots[h] = (uint32_t)++used;
				break;
			}
			s = &sites[slots[h] - 1];
			if (!memcmp(&s->key, &k, sizeof(k)))
				break;
			s = NULL;
		}
		if (!s) {
			(*dropped)++;
			continue;
		}
		s->count++;
		s->bytes += a->size;
		if (a->birth_ns < s->oldest_birth_ns)
			s->oldest_birth_ns = a->birth_ns;
		if (a->kind < 32)
			s->kinds |= 1u << a->kind;
	}
	free(slots);
	qsort(sites, used, sizeof(*sites), site_cmp);
	*nsites = used;
	return 0;
}

/* ------------------------------------------------------------ probes --- */

static int read_file_at(const char *path, uint64_t off, uint8_t *buf, size_t len)
{
	int fd = proc_open_untrusted(path, PROC_MAX_ELF_FILE, NULL);
	ssize_t n;

	if (fd < 0)
		return fd;
	n = pread(fd, buf, len, (off_t)off);
	close(fd);
	return n > 0 ? (int)n : -EIO;
}

static int attach_one(struct native_trace *t, struct bpf_program *prog, const char *path,
		      uint64_t file_offset, uint64_t cookie, bool retprobe)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = cookie, .retprobe = retprobe);
	struct bpf_link *l;

	if (t->nlinks == sizeof(t->links) / sizeof(t->links[0]))
		return -E2BIG;
	if (!retprobe) {
		int ret = bpf_util_attach_uprobe(prog, t->pid, path, file_offset, cookie, &l);

		if (ret)
			return ret;
	} else {
		l = bpf_program__attach_uprobe_opts(prog, t->pid, path, (size_t)file_offset, &opts);
		if (!l)
			return errno ? -errno : -EINVAL;
	}
	t->links[t->nlinks++] = l;
	return 0;
}

struct libc_func {
	const char *name;
	int kind;             /* enum native_kind, or -1 free, -2 munmap */
};

static const struct libc_func libc_funcs[] = {
	{ "malloc", NATIVE_KIND_MALLOC },
	{ "calloc", NATIVE_KIND_CALLOC },
	{ "realloc", NATIVE_KIND_REALLOC },
	{ "posix_memalign", NATIVE_KIND_POSIX_MEMALIGN },
	{ "memalign", NATIVE_KIND_MEMALIGN },
	{ "aligned_alloc", NATIVE_KIND_MEMALIGN },
	{ "valloc", NATIVE_KIND_VALLOC },
	{ "pvalloc", NATIVE_KIND_PVALLOC },
	{ "mmap", NATIVE_KIND_MMAP },
	{ "mmap64", NATIVE_KIND_MMAP },
	{ "free", -1 },
	{ "munmap", -2 },
};

static const char *const libc_suffixes[] = { "/libc.so.6", "/libc.musl-x86_64.so.1",
					     "/ld-musl-x86_64.so.1" };

static int attach_libc(struct native_trace *t, char *err, size_t errlen)
{
	uint64_t start, done_offsets[sizeof(libc_funcs) / sizeof(libc_funcs[0])];
	size_t ndone = 0;
	int ret = -ENOENT;

	for (size_t i = 0; i < sizeof(libc_suffixes) / sizeof(libc_suffixes[0]) && ret; i++)
		ret = proc_find_mapped_lib(t->pid, libc_suffixes[i], t->libc, sizeof(t->libc), &start);
	if (ret)
		return set_err(err, errlen, ret == -ENOENT ? -ENOENT : ret,
			       "PID %d maps no libc (static binary?): no C allocator to trace",
			       (int)t->pid);
	snprintf(t->libc_open, sizeof(t->libc_open), "/proc/%d/root%s", (int)t->pid, t->libc);

	for (size_t i = 0; i < sizeof(libc_funcs) / sizeof(libc_funcs[0]); i++) {
		const struct libc_func *f = &libc_funcs[i];
		struct native_probe_info *pi;
		struct probe_place place = { 0 };
		uint8_t code[64];
		uint64_t vaddr, size, foff;
		struct bpf_program *prog;
		bool dup = false;
		int n;

		if (symbolize_elf_function(t->libc_open, f->name, &vaddr, &size, &foff)) {
			log_debug("native: %s has no %s", t->libc, f->name);
			continue;
		}
		for (size_t j = 0; j < ndone; j++)
			dup |= done_offsets[j] == foff; /* aliases: aligned_alloc, mmap64 */
		if (dup)
			continue;
		done_offsets[ndone++] = foff;
		n = read_file_at(t->libc_open, foff, code, sizeof(code));
		if (n <= 0)
			return set_err(err, errlen, n ? n : -EIO, "read %s in %s", f->name, t->libc);
		if (size && (uint64_t)n > size)
			n = (int)size;
		if (t->opts.entry_probes || probe_place_x86(code, (size_t)n, vaddr, &place))
			probe_insn_info_x86(code, (size_t)n, vaddr, &place.emulated, place.insn,
					    sizeof(place.insn));
		if (t->opts.entry_probes)
			place.offset = 0;
		if (t->nprobes == NATIVE_MAX_PROBES)
			return set_err(err, errlen, -E2BIG, "too many probes");
		pi = &t->probes[t->nprobes++];
		snprintf(pi->name, sizeof(pi->name), "%s", f->name);
		snprintf(pi->insn, sizeof(pi->insn), "%s", place.insn);
		pi->offset = place.offset;
		pi->file_offset = foff + place.offset;
		pi->emulated = place.emulated;
		if (f->kind >= 0) {
			pi->probe = NATIVE_PROBE_ENTRY + (enum native_probe)f->kind;
			pi->retprobe = true;
			prog = t->skel->progs.native_alloc_entry;
		} else {
			pi->probe = f->kind == -1 ? NATIVE_PROBE_FREE : NATIVE_PROBE_MUNMAP;
			prog = f->kind == -1 ? t->skel->progs.native_free : t->skel->progs.native_munmap;
		}
		/* Returns first: an entry seen without its return only costs a
		 * stale hand-off; the reverse is counted as a missing entry. */
		if (pi->retprobe) {
			/* The uretprobe shares the entry probe's breakpoint (one
			 * trap per call): RSP there is the entry's, so the kernel
			 * finds the return address. */
			ret = attach_one(t, t->skel->progs.native_alloc_return, t->libc_open,
					 pi->file_offset, (uint64_t)f->kind, true);
			if (ret && pi->offset) {
				log_warn("native: uretprobe at %s+%" PRIu64 ": %s; using +0", f->name,
					 pi->offset, strerror(-ret));
				ret = attach_one(t, t->skel->progs.native_alloc_return, t->libc_open,
						 foff, (uint64_t)f->kind, true);
			}
			if (ret)
				return set_err(err, errlen, ret, "attach uretprobe %s in %s: %s", f->name,
					       t->libc, strerror(-ret));
		}
		ret = attach_one(t, prog, t->libc_open, pi->file_offset, f->kind >= 0 ? (uint64_t)f->kind : 0,
				 false);
		if (ret)
			return set_err(err, errlen, ret, "attach uprobe %s+%" PRIu64 " in %s: %s", f->name,
				       pi->offset, t->libc, strerror(-ret));
	}
	return 0;
}

/* Where to probe runtime.cgocall so RAX (fn) is intact and the kernel
 * emulates the instruction. Go 1.21+ start with `push rbp` (emulated, RSP
 * at the return address); 1.19/1.20 with `sub rsp, N; mov [rsp+X], rbp;
 * lea rbp, [rsp+X]; cmp byte [rip+iscgo], 0; je` — the je is the first
 * emulated instruction, RSP + N holds the return address there. Also finds
 * cgocall's `call runtime.exitsyscall` (emulated), where the C call is over. */
int native_place_cgocall(const uint8_t *code, size_t len, uint64_t entry, uint64_t exitsyscall,
			 struct native_probe_info *call, uint64_t *rsp_delta, uint64_t *done_off)
{
	cs_insn *insn = NULL;
	bool placed = false;
	size_t count;
	csh h;

	*rsp_delta = 0;
	*done_off = 0;
	call->offset = 0;
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return -ENOMEM;
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	count = cs_disasm(h, code, len, entry, 0, &insn);
	for (size_t i = 0; i < count; i++) {
		const cs_insn *in = &insn[i];
		const cs_x86 *x = &in->detail->x86;
		uint64_t off = in->address - entry;
		bool emulated = false;

		if (!placed) {
			probe_insn_info_x86(code + off, len - off, in->address, &emulated, call->insn,
					    sizeof(call->insn));
			if (emulated) {
				call->offset = off;
				call->emulated = true;
				placed = true;
			} else if (in->id == X86_INS_SUB && x->op_count == 2 &&
				   x->operands[0].type == X86_OP_REG && x->operands[0].reg == X86_REG_RSP &&
				   x->operands[1].type == X86_OP_IMM) {
				*rsp_delta += (uint64_t)x->operands[1].imm;
			} else if ((in->id == X86_INS_MOV && x->op_count == 2 &&
				    x->operands[0].type == X86_OP_MEM &&
				    x->operands[0].mem.base == X86_REG_RSP &&
				    x->operands[1].type == X86_OP_REG &&
				    x->operands[1].reg == X86_REG_RBP) ||
				   (in->id == X86_INS_LEA && x->operands[0].reg == X86_REG_RBP) ||
				   (in->id == X86_INS_MOV && x->operands[0].type == X86_OP_REG &&
				    x->operands[0].reg == X86_REG_RBP) ||
				   in->id == X86_INS_CMP) {
				/* frame setup and flag-only compares: RAX untouched */
			} else {
				/* unknown: the entry, single-stepped (slow but right) */
				call->offset = 0;
				*rsp_delta = 0;
				probe_insn_info_x86(code, len, entry, &call->emulated, call->insn,
						    sizeof(call->insn));
				placed = true;
			}
		}
		if (in->id == X86_INS_CALL && x->op_count == 1 && x->operands[0].type == X86_OP_IMM &&
		    (uint64_t)x->operands[0].imm == exitsyscall && !*done_off)
			*done_off = off;
		if (in->id == X86_INS_INT3 || (in->id == X86_INS_RET && placed && *done_off))
			break;
	}
	if (count)
		cs_free(insn, count);
	cs_close(&h);
	return placed ? 0 : -ENOENT;
}

static int attach_cgo(struct native_trace *t, char *err, size_t errlen)
{
	const struct go_target *go = t->go;
	struct gobin_func cgocall, exitsys;
	struct native_probe_info *pi;
	uint64_t delta, done_off, foff;
	uint8_t *code;
	ssize_t n;
	int ret;

	if (gobin_func_by_name(go->bin, "runtime.cgocall", &cgocall) ||
	    gobin_func_by_name(go->bin, "runtime.exitsyscall", &exitsys))
		return set_err(err, errlen, -ENOENT, "%s: no runtime.cgocall (not a cgo binary?)",
			       go->exe.exe);
	code = malloc(CODE_MAX);
	if (!code)
		return -ENOMEM;
	n = gobin_read_vaddr(go->bin, cgocall.entry, code,
			     cgocall.end - cgocall.entry < CODE_MAX ? cgocall.end - cgocall.entry : CODE_MAX);
	if (n <= 0) {
		free(code);
		return set_err(err, errlen, -EIO, "read runtime.cgocall from %s", go->exe.exe);
	}
	if (t->nprobes + 2 > NATIVE_MAX_PROBES) {
		free(code);
		return set_err(err, errlen, -E2BIG, "too many probes");
	}
	pi = &t->probes[t->nprobes];
	memset(pi, 0, sizeof(*pi));
	ret = native_place_cgocall(code, (size_t)n, cgocall.entry, exitsys.entry, pi, &delta, &done_off);
	free(code);
	if (ret || !done_off)
		return set_err(err, errlen, -ENOTSUP,
			       "runtime.cgocall in %s: unexpected code (no call to exitsyscall)",
			       go->exe.exe);
	snprintf(pi->name, sizeof(pi->name), "runtime.cgocall");
	pi->probe = NATIVE_PROBE_CGOCALL;
	if (gobin_vaddr_to_offset(go->bin, cgocall.entry + pi->offset, &pi->file_offset))
		return set_err(err, errlen, -ENOENT, "runtime.cgocall: no file offset");
	t->nprobes++;
	ret = attach_one(t, t->skel->progs.native_cgocall, go->exe.open_path, pi->file_offset, delta,
			 false);
	if (ret)
		return set_err(err, errlen, ret, "attach runtime.cgocall+%" PRIu64 ": %s", pi->offset,
			       strerror(-ret));

	pi = &t->probes[t->nprobes];
	memset(pi, 0, sizeof(*pi));
	snprintf(pi->name, sizeof(pi->name), "runtime.cgocall:exitsyscall");
	snprintf(pi->insn, sizeof(pi->insn), "call runtime.exitsyscall");
	pi->probe = NATIVE_PROBE_CGOCALL_DONE;
	pi->offset = done_off;
	pi->emulated = true;
	if (gobin_vaddr_to_offset(go->bin, cgocall.entry + done_off, &foff))
		return set_err(err, errlen, -ENOENT, "runtime.cgocall: no file offset");
	pi->file_offset = foff;
	t->nprobes++;
	ret = attach_one(t, t->skel->progs.native_cgocall_done, go->exe.open_path, foff, 0, false);
	if (ret)
		return set_err(err, errlen, ret, "attach runtime.cgocall+%" PRIu64 ": %s", done_off,
			       strerror(-ret));
	return 0;
}

/* ---------------------------------------------------------- lifecycle --- */

int native_trace__new(const struct native_trace_opts *opts, struct native_trace **out)
{
	struct native_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->opts = *opts;
	if (!t->opts.max_allocs)
		t->opts.max_allocs = NATIVE_DEFAULT_MAX_ALLOCS;
	if (t->opts.max_allocs < NATIVE_MIN_MAX_ALLOCS)
		t->opts.max_allocs = NATIVE_MIN_MAX_ALLOCS;
	if (t->opts.max_allocs > NATIVE_MAX_MAX_ALLOCS)
		t->opts.max_allocs = NATIVE_MAX_MAX_ALLOCS;
	if (!t->opts.max_sites || t->opts.max_sites > NATIVE_MAX_SITES)
		t->opts.max_sites = NATIVE_MAX_SITES;
	t->stats.max_allocs = t->opts.max_allocs;
	t->sites = calloc(t->opts.max_sites, sizeof(*t->sites));
	t->vals = calloc(t->opts.max_allocs, sizeof(*t->vals));
	t->fns = calloc(NATIVE_MAX_CGO_FNS, sizeof(*t->fns));
	if (!t->sites || !t->vals || !t->fns) {
		native_trace__free(t);
		return -ENOMEM;
	}
	*out = t;
	return 0;
}

int native_trace__attach(struct native_trace *t, pid_t pid, const struct go_target *go, char *err,
			 size_t errlen)
{
	bool cgo = t->opts.trace_cgo && go;
	int ret;

	if (t->skel)
		return set_err(err, errlen, -EALREADY, "native trace already attached");
	if (!t->opts.trace_native && !cgo)
		return set_err(err, errlen, -EINVAL, "nothing to trace (cgo needs a Go target)");
	bpf_util_init();
	t->pid = pid;
	t->go = go;
	t->skel = native_trace_bpf__open_opts(bpf_util_open_opts());
	if (!t->skel)
		return set_err(err, errlen, errno ? -errno : -ENOMEM, "open native BPF object");
	t->skel->rodata->targ_tgid = (__u32)pid;
	t->skel->rodata->targ_go = cgo;
	if (getenv("MEMDRIFT_NATIVE_STACKS") && !strcmp(getenv("MEMDRIFT_NATIVE_STACKS"), "fp"))
		t->opts.fp_stacks = true;
	t->skel->rodata->native_fp_only = t->opts.fp_stacks;
	{
		uint64_t lo, hi;

		native_unwind_go_text(go, &lo, &hi);
		t->skel->rodata->targ_go_text_lo = lo;
		t->skel->rodata->targ_go_text_hi = hi;
	}
	ret = bpf_map__set_max_entries(t->skel->maps.native_allocs, t->opts.max_allocs);
	if (ret)
		return set_err(err, errlen, ret, "size native_allocs: %s", strerror(-ret));
	ret = native_trace_bpf__load(t->skel);
	if (ret)
		return set_err(err, errlen, ret, "load native BPF programs: %s", strerror(-ret));
	ret = symbolizer_new(pid, go, &t->sym);
	if (ret)
		return set_err(err, errlen, ret, "PID %d: read maps: %s", (int)pid, strerror(-ret));
	if (!t->opts.fp_stacks &&
	    (ret = native_unwind_new(pid, go, bpf_map__fd(t->skel->maps.native_events),
				     bpf_map__fd(t->skel->maps.native_walks),
				     (struct native_exec_ranges *)&t->skel->bss->native_exec, &t->uw)))
		return set_err(err, errlen, ret, "PID %d: C stack unwinder: %s", (int)pid,
			       strerror(-ret));
	/* cgo first: allocations seen right after get their Go stack. */
	if (cgo && (ret = attach_cgo(t, err, errlen)))
		return ret;
	if (t->opts.trace_native && (ret = attach_libc(t, err, errlen)))
		return ret;
	t->prev_poll_ns = t->poll_ns = now_mono_ns();
	return 0;
}

void native_trace__free(struct native_trace *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nlinks; i++)
		bpf_link__destroy(t->links[i]);
	native_trace_bpf__destroy(t->skel);
	native_unwind_free(t->uw);
	symbolizer_free(t->sym);
	free(t->sites);
	free(t->vals);
	free(t->fns);
	free(t);
}

/* -------------------------------------------------------------- reads --- */

static uint64_t kernel_missed(const struct native_trace *t)
{
	struct bpf_program *progs[] = {
		t->skel->progs.native_alloc_entry, t->skel->progs.native_alloc_return,
		t->skel->progs.native_free, t->skel->progs.native_munmap,
		t->skel->progs.native_cgocall, t->skel->progs.native_cgocall_done,
	};
	uint64_t sum = 0;

	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(progs[i]), &info, &len))
			sum += info.recursion_misses;
	}
	return sum;
}

static int read_allocs(struct native_trace *t, size_t *n)
{
	int fd = bpf_map__fd(t->skel->maps.native_allocs);
	struct native_alloc_key keys[BATCH];
	__u64 in = 0, outb = 0;
	bool first = true;

	*n = 0;
	for (;;) {
		__u32 count = BATCH;
		int ret;

		if (*n + BATCH > t->opts.max_allocs)
			count = (__u32)(t->opts.max_allocs - *n);
		if (!count)
			break;
		ret = bpf_map_lookup_batch(fd, first ? NULL : &in, &outb, keys, t->vals + *n, &count,
					   NULL);
		if (ret && errno != ENOENT)
			return -errno;
		*n += count;
		if (ret)
			break; /* ENOENT: the whole map was read */
		in = outb;
		first = false;
	}
	return 0;
}

static int fn_cmp(const void *a, const void *b)
{
	const struct native_cgo_fn *x = a, *y = b;

	return x->calls > y->calls ? -1 : x->calls < y->calls;
}

static void read_cgo_fns(struct native_trace *t, double dt)
{
	int fd = bpf_map__fd(t->skel->maps.native_cgo_fns);
	__u64 key, next, *prev = NULL, calls;
	struct native_cgo_fn old[64];
	size_t nold = t->nfns < 64 ? t->nfns : 64;

	memcpy(old, t->fns, nold * sizeof(*old)); /* the top ones, for rates */
	t->nfns = 0;
	while (t->nfns < NATIVE_MAX_CGO_FNS && !bpf_map_get_next_key(fd, prev, &next)) {
		struct native_cgo_fn *f;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &calls))
			continue;
		f = &t->fns[t->nfns++];
		*f = (struct native_cgo_fn){ .fn = key, .calls = calls, .per_s = 0 };
		for (size_t i = 0; i < nold; i++)
			if (old[i].fn == key && dt > 0)
				f->per_s = (double)(calls - old[i].calls) / dt;
	}
	qsort(t->fns, t->nfns, sizeof(*t->fns), fn_cmp);
}

/* The Go runtime of a cgo binary maps its heap through libc (x_cgo_mmap):
 * that memory is Go heap, already in the heap views, not C memory. */
static size_t drop_go_runtime_mmaps(struct native_trace *t, size_t n)
{
	struct { uint64_t caller; bool runtime; } memo[16] = { 0 };
	size_t kept = 0;

	t->stats.go_runtime_mmap_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const struct native_alloc *a = &t->vals[i];
		bool runtime = false;

		if (a->kind == NATIVE_KIND_MMAP && a->caller && t->go) {
			size_t slot = (a->caller >> 4) % 16;

			if (memo[slot].caller != a->caller) {
				struct sym_frame f;

				symbolizer_lookup(t->sym, a->caller, true, &f);
				memo[slot].caller = a->caller;
				memo[slot].runtime = f.function && !strcmp(f.function, "x_cgo_mmap");
			}
			runtime = memo[slot].runtime;
		}
		if (runtime) {
			t->stats.go_runtime_mmap_bytes += a->size;
			continue;
		}
		t->vals[kept++] = *a;
	}
	return kept;
}

int native_trace__poll(struct native_trace *t)
{
	size_t n = 0;
	uint64_t now = now_mono_ns();
	double dt;
	int ret;

	if (!t->skel)
		return -EINVAL;
	t->prev_poll_ns = t->poll_ns;
	t->poll_ns = now;
	dt = (double)(now - t->prev_poll_ns) / 1e9;
	for (int i = 0; i < NATIVE_STAT_MAX; i++)
		t->stats.counters[i] = __atomic_load_n(&t->skel->bss->native_stats[i], __ATOMIC_RELAXED);
	t->stats.kernel_missed = kernel_missed(t);
	{
		struct bpf_prog_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(bpf_program__fd(t->skel->progs.native_alloc_entry), &info,
					    &len)) {
			t->stats.entry_runs = info.run_cnt;
			t->stats.entry_run_ns = info.run_time_ns;
		}
	}
	if (t->uw)
		native_unwind_poll(t->uw);
	ret = read_allocs(t, &n);
	if (ret)
		return log_errno(ret, "read outstanding C allocations: %s", strerror(-ret));
	n = drop_go_runtime_mmaps(t, n);
	ret = native_sites_aggregate(t->vals, n, t->sites, t->opts.max_sites, &t->nsites,
				     &t->stats.sites_dropped);
	if (ret)
		return ret;
	t->stats.outstanding_allocs = n;
	t->stats.outstanding_bytes = 0;
	for (size_t i = 0; i < n; i++)
		t->stats.outstanding_bytes += t->vals[i].size;
	read_cgo_fns(t, dt);
	symbolizer_refresh(t->sym); /* libraries dlopen'ed since */
	return 0;
}

const struct native_site *native_trace__sites(const struct native_trace *t, size_t *n)
{
	*n = t->nsites;
	return t->sites;
}

void native_trace__stats(const struct native_trace *t, struct native_stats *out)
{
	*out = t->stats;
}

const struct native_probe_info *native_trace__probes(const struct native_trace *t, size_t *n)
{
	*n = t->nprobes;
	return t->probes;
}

const struct native_cgo_fn *native_trace__cgo_fns(const struct native_trace *t, size_t *n)
{
	*n = t->nfns;
	return t->fns;
}

static size_t read_stack(struct native_trace *t, int32_t id, uint64_t *ips)
{
	uint64_t buf[NATIVE_STACK_DEPTH];
	__u32 key = (__u32)id;
	size_t n = 0;

	if (id < 0 || bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.native_stacks), &key, buf))
		return 0;
	while (n < NATIVE_STACK_DEPTH && buf[n])
		ips[n] = buf[n], n++;
	return n;
}

/* How a site's frames were found and where its C walk stopped. */
struct site_unwind {
	const char *how[NATIVE_MAX_FRAMES]; /* "regs", "cfi", "fp", "sp" ([rsp]) */
	const char *stop; /* why the C walk ended early; NULL: complete */
	size_t nc;        /* frames of the C side (the Go side follows) */
};

/* Leaf first: the C stack — unwound from its stack copy (native_unwind.h:
 * the allocator, its caller and the CFI frames up to the cgo boundary), or
 * with fp_stacks the probed pc, the caller from [rsp] and the kernel's
 * frame-pointer walk — then the Go side of the cgo call. */
static size_t site_addrs(struct native_trace *t, const struct native_site *s, uint64_t *out,
			 size_t max, struct site_unwind *uw)
{
	uint64_t ips[NATIVE_STACK_DEPTH];
	struct native_cstack cs;
	size_t n = 0, k;

#define PUSH(a, h)                                                        \
	do {                                                              \
		if (n < max && (a) && (!n || out[n - 1] != (a))) {        \
			if (uw)                                           \
				uw->how[n] = (h);                         \
			out[n++] = (a);                                   \
		}                                                         \
	} while (0)
	if (uw)
		uw->stop = NULL;
	if (t->uw && !native_unwind_stack(t->uw, s->key.stackid, &cs)) {
		for (size_t i = 0; i < cs.n; i++)
			PUSH(cs.pc[i], cs.how[i]);
		if (uw)
			uw->stop = cs.stop;
	} else {
		k = t->uw ? 0 : read_stack(t, s->key.stackid, ips);
		if (k)
			PUSH(ips[0], "regs");
		PUSH(s->key.caller, "sp");
		for (size_t i = 1; i < k; i++)
			PUSH(ips[i], "fp");
		if (uw && t->uw)
			uw->stop = "no stack id";
	}
	if (uw)
		uw->nc = n;
	k = read_stack(t, s->key.go_stackid, ips);
	/* The probed instruction in runtime.cgocall is an exact IP, not a
	 * return address: +1 so the return-address lookup (addr - 1) that
	 * every non-leaf frame gets lands on it. */
	if (k)
		PUSH(ips[0] + 1, "regs");
	PUSH(s->key.go_caller, "sp");
	for (size_t i = 1; i < k; i++)
		PUSH(ips[i], "fp");
#undef PUSH
	return n;
}

static size_t site_frames_unwind(struct native_trace *t, const struct native_site *s,
				 struct sym_frame *frames, size_t max, struct site_unwind *uw)
{
	uint64_t addrs[NATIVE_MAX_FRAMES];
	size_t k = site_addrs(t, s, addrs, NATIVE_MAX_FRAMES, uw), n = 0;

	for (size_t i = 0; i < k && n < max; i++)
		symbolizer_lookup(t->sym, addrs[i], i > 0, &frames[n++]);
	return n;
}

int native_trace__site_frames(struct native_trace *t, const struct native_site *s,
			      struct sym_frame *frames, size_t max, size_t *n)
{
	*n = site_frames_unwind(t, s, frames, max, NULL);
	return 0;
}

static bool glue_frame(const char *fn)
{
	return !strncmp(fn, "runtime.", 8) || !strncmp(fn, "_cgo_", 5) || strstr(fn, "._Cfunc_") ||
	       strstr(fn, "._cgo_") || !strncmp(fn, "runtime/cgo", 11);
}

const struct sym_frame *native_go_caller(const struct sym_frame *frames, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (frames[i].go && !glue_frame(frames[i].function))
			return &frames[i];
	return NULL;
}

/* -------------------------------------------------------------- views --- */

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

/* The immediate caller of the allocator: frame 1 (frame 0 is the probe). */
static const struct sym_frame *c_caller(const struct sym_frame *f, size_t n)
{
	return n > 1 ? &f[1] : n ? &f[0] : NULL;
}

static void kinds_text(uint32_t kinds, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = 0;
	for (uint32_t k = 0; k < NATIVE_KIND_MAX && o < len; k++)
		if (kinds & (1u << k))
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "," : "", kind_names[k]);
}

static struct json_object *frame_json(const struct sym_frame *f, const char *how)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "function", json_object_new_string(f->function));
	json_object_object_add(o, "object", json_object_new_string(f->object));
	json_object_object_add(o, "offset", json_object_new_int64((int64_t)f->offset));
	if (f->go) {
		json_object_object_add(o, "file", json_object_new_string(f->file));
		json_object_object_add(o, "line", json_object_new_int(f->line));
	}
	if (how)
		json_object_object_add(o, "unwind", json_object_new_string(how));
	return o;
}

/* "[unwind stopped: REASON]", as the JNI profile shows it */
static const char *stop_text(const char *stop, char *buf, size_t len)
{
	snprintf(buf, len, "[unwind stopped: %s]", stop);
	return buf;
}

int native_trace__json(struct native_trace *t, struct json_object *obj, size_t max_sites)
{
	struct json_object *o = json_object_new_object(), *st = json_object_new_object();
	struct json_object *hits = json_object_new_object(), *sites = json_object_new_array();
	struct json_object *probes = json_object_new_array(), *cgo;
	struct sym_frame frames[NATIVE_MAX_FRAMES];
	uint64_t now = now_mono_ns();
	size_t shown = 0;

	if (!o || !st || !hits || !sites || !probes)
		return -ENOMEM;
	json_object_object_add(o, "libc", json_object_new_string(t->libc));
	json_object_object_add(o, "outstanding_bytes",
			       json_object_new_int64((int64_t)t->stats.outstanding_bytes));
	json_object_object_add(o, "outstanding_allocs",
			       json_object_new_int64((int64_t)t->stats.outstanding_allocs));
	json_object_object_add(o, "max_allocs", json_object_new_int64(t->stats.max_allocs));
	for (int i = 0; i < NATIVE_STAT_MAX; i++)
		if (stat_names[i])
			json_object_object_add(st, stat_names[i],
					       json_object_new_int64((int64_t)t->stats.counters[i]));
	json_object_object_add(st, "kernel_missed", json_object_new_int64((int64_t)t->stats.kernel_missed));
	json_object_object_add(st, "bpf_entry_runs", json_object_new_int64((int64_t)t->stats.entry_runs));
	json_object_object_add(st, "bpf_entry_run_ns",
			       json_object_new_int64((int64_t)t->stats.entry_run_ns));
	json_object_object_add(st, "sites_dropped", json_object_new_int64((int64_t)t->stats.sites_dropped));
	json_object_object_add(st, "go_runtime_mmap_bytes",
			       json_object_new_int64((int64_t)t->stats.go_runtime_mmap_bytes));
	json_object_object_add(o, "stats", st);
	for (size_t i = 0; i < t->nprobes; i++) {
		const struct native_probe_info *p = &t->probes[i];
		struct json_object *po = json_object_new_object();
		uint64_t h = t->stats.counters[NATIVE_STAT_HITS + p->probe];

		json_object_object_add(po, "name", json_object_new_string(p->name));
		json_object_object_add(po, "offset", json_object_new_int64((int64_t)p->offset));
		json_object_object_add(po, "insn", json_object_new_string(p->insn));
		json_object_object_add(po, "emulated", json_object_new_boolean(p->emulated));
		json_object_object_add(po, "retprobe", json_object_new_boolean(p->retprobe));
		json_object_object_add(po, "hits", json_object_new_int64((int64_t)h));
		if (p->retprobe)
			json_object_object_add(
				po, "return_hits",
				json_object_new_int64((int64_t)t->stats.counters
							      [NATIVE_STAT_HITS + NATIVE_PROBE_RETURN +
							       (p->probe - NATIVE_PROBE_ENTRY)]));
		json_object_array_add(probes, po);
	}
	json_object_put(hits);
	json_object_object_add(o, "probes", probes);
	if (t->go && t->opts.trace_cgo) {
		struct json_object *fa = json_object_new_array();
		double total_rate = 0;

		cgo = json_object_new_object();
		for (size_t i = 0; i < t->nfns; i++) {
			struct json_object *fo;
			struct sym_frame f;

			total_rate += t->fns[i].per_s;
			if (i >= 32)
				continue;
			symbolizer_lookup(t->sym, t->fns[i].fn, false, &f);
			fo = json_object_new_object();
			json_object_object_add(fo, "function", json_object_new_string(f.function));
			json_object_object_add(fo, "address", json_object_new_int64((int64_t)t->fns[i].fn));
			json_object_object_add(fo, "calls", json_object_new_int64((int64_t)t->fns[i].calls));
			json_object_object_add(fo, "per_s", json_object_new_double(t->fns[i].per_s));
			json_object_array_add(fa, fo);
		}
		json_object_object_add(cgo, "calls",
				       json_object_new_int64((int64_t)t->stats.counters[NATIVE_STAT_CGO_CALLS]));
		json_object_object_add(cgo, "per_s", json_object_new_double(total_rate));
		json_object_object_add(cgo, "functions", fa);
		json_object_object_add(o, "cgo", cgo);
	}
	for (size_t i = 0; i < t->nsites && shown < max_sites; i++, shown++) {
		const struct native_site *s = &t->sites[i];
		struct json_object *so = json_object_new_object(), *fa = json_object_new_array();
		const struct sym_frame *gc, *cc;
		struct site_unwind uw;
		char kinds[128], stopbuf[96];
		size_t nf = site_frames_unwind(t, s, frames, NATIVE_MAX_FRAMES, &uw);
		struct sym_frame stop_frame = {
			.function = uw.stop ? stop_text(uw.stop, stopbuf, sizeof(stopbuf)) : "",
			.object = "", .file = "" };

		kinds_text(s->kinds, kinds, sizeof(kinds));
		json_object_object_add(so, "bytes", json_object_new_int64((int64_t)s->bytes));
		json_object_object_add(so, "count", json_object_new_int64((int64_t)s->count));
		json_object_object_add(so, "oldest_age_s",
				       json_object_new_double(now > s->oldest_birth_ns ?
								      (double)(now - s->oldest_birth_ns) / 1e9 : 0));
		json_object_object_add(so, "kinds", json_object_new_string(kinds));
		cc = c_caller(frames, nf);
		json_object_object_add(so, "function", json_object_new_string(cc ? cc->function : "[unknown]"));
		json_object_object_add(so, "object", json_object_new_string(cc ? cc->object : ""));
		gc = native_go_caller(frames, nf);
		json_object_object_add(so, "go_function", gc ? json_object_new_string(gc->function) : NULL);
		json_object_object_add(so, "go_file", gc ? json_object_new_string(gc->file) : NULL);
		json_object_object_add(so, "go_line", gc ? json_object_new_int(gc->line) : NULL);
		for (size_t f = 0; f < nf; f++) {
			if (f == uw.nc && uw.stop)
				json_object_array_add(fa, frame_json(&stop_frame, ""));
			json_object_array_add(fa, frame_json(&frames[f], uw.how[f]));
		}
		if (uw.stop && uw.nc >= nf)
			json_object_array_add(fa, frame_json(&stop_frame, ""));
		json_object_object_add(so, "frames", fa);
		json_object_object_add(so, "c_frames", json_object_new_int((int)uw.nc));
		json_object_object_add(so, "unwind_stop", uw.stop ? json_object_new_string(uw.stop) : NULL);
		json_object_array_add(sites, so);
	}
	json_object_object_add(o, "sites", sites);
	json_object_object_add(o, "sites_total", json_object_new_int64((int64_t)t->nsites));
	json_object_object_add(obj, "native", o);
	return 0;
}

static void human_bytes(uint64_t b, char *buf, size_t len)
{
	if (b >= 10ull << 20)
		snprintf(buf, len, "%.1fMiB", (double)b / (1 << 20));
	else if (b >= 10ull << 10)
		snprintf(buf, len, "%.1fKiB", (double)b / 1024);
	else
		snprintf(buf, len, "%" PRIu64 "B", b);
}

void native_trace__print(struct native_trace *t, FILE *f, size_t max_sites)
{
	struct sym_frame frames[NATIVE_MAX_FRAMES];
	const uint64_t *c = t->stats.counters;
	uint64_t now = now_mono_ns();
	char b[32];

	human_bytes(t->stats.outstanding_bytes, b, sizeof(b));
	fprintf(f, "  C memory outstanding %s in %" PRIu64 " blocks (map %" PRIu64 "/%u)", b,
		t->stats.outstanding_allocs, t->stats.outstanding_allocs, t->stats.max_allocs);
	if (t->go && t->opts.trace_cgo) {
		double rate = 0;

		for (size_t i = 0; i < t->nfns; i++)
			rate += t->fns[i].per_s;
		fprintf(f, "  cgo calls %" PRIu64 " (%.0f/s)", c[NATIVE_STAT_CGO_CALLS], rate);
	}
	fputc('\n', f);
	if (c[NATIVE_STAT_ALLOCS_FULL] || c[NATIVE_STAT_PENDING_FULL] || c[NATIVE_STAT_STACK_ERRORS] ||
	    t->stats.kernel_missed || t->stats.sites_dropped)
		fprintf(f, "  LOST: map full %" PRIu64 ", hand-off full %" PRIu64 ", stack errors %" PRIu64
			", kernel-skipped %" PRIu64 ", sites dropped %" PRIu64 "\n",
			c[NATIVE_STAT_ALLOCS_FULL], c[NATIVE_STAT_PENDING_FULL],
			c[NATIVE_STAT_STACK_ERRORS], t->stats.kernel_missed, t->stats.sites_dropped);
	for (size_t i = 0; i < t->nfns && i < 5; i++) {
		struct sym_frame fr;

		symbolizer_lookup(t->sym, t->fns[i].fn, false, &fr);
		fprintf(f, "  cgo %-40s %10" PRIu64 " calls %8.0f/s\n", fr.function, t->fns[i].calls,
			t->fns[i].per_s);
	}
	for (size_t i = 0; i < t->nsites && i < max_sites; i++) {
		const struct native_site *s = &t->sites[i];
		const struct sym_frame *gc, *cc;
		struct site_unwind uw;
		char stopbuf[96];
		size_t nf;

		nf = site_frames_unwind(t, s, frames, NATIVE_MAX_FRAMES, &uw);
		human_bytes(s->bytes, b, sizeof(b));
		cc = c_caller(frames, nf);
		gc = native_go_caller(frames, nf);
		fprintf(f, "  %10s %8" PRIu64 " blocks  oldest %6.1fs  %s <- %s (%s)", b, s->count,
			now > s->oldest_birth_ns ? (double)(now - s->oldest_birth_ns) / 1e9 : 0,
			nf ? frames[0].function : "?", cc ? cc->function : "?",
			cc ? base_name(cc->object) : "");
		if (gc)
			fprintf(f, " <- %s %s:%d", gc->function, base_name(gc->file), gc->line);
		/* the C stack, each frame with how it was found */
		fputs("\n             C:", f);
		for (size_t k = 0; k < uw.nc && k < nf; k++)
			fprintf(f, "%s %s [%s]", k ? " <-" : "", frames[k].function, uw.how[k]);
		if (uw.stop)
			fprintf(f, " <- %s", stop_text(uw.stop, stopbuf, sizeof(stopbuf)));
		fputc('\n', f);
	}
}

/* Where a C walk stopped is a location of its own in native.pb.gz, at
 * an address no code has (below the first page): one per reason. */
#define STOP_ADDR_BASE 16
#define MAX_STOP_REASONS 32

struct pprof_ctx {
	struct native_trace *t;
	const char *stops[MAX_STOP_REASONS];
	char text[MAX_STOP_REASONS][96];
	size_t nstops;
};

static uint64_t stop_addr(struct pprof_ctx *pc, const char *stop)
{
	size_t i;

	for (i = 0; i < pc->nstops; i++)
		if (!strcmp(pc->stops[i], stop))
			return STOP_ADDR_BASE + i;
	if (pc->nstops == MAX_STOP_REASONS)
		return 0;
	stop_text(stop, pc->text[i], sizeof(pc->text[i]));
	pc->stops[pc->nstops++] = stop;
	return STOP_ADDR_BASE + i;
}

static int pprof_sym(void *ctx, uint64_t address, size_t index, struct pprof_frame *frames,
		     size_t max, size_t *n)
{
	struct pprof_ctx *pc = ctx;
	struct sym_frame f;

	*n = 0;
	if (!max)
		return 0;
	if (address >= STOP_ADDR_BASE && address < STOP_ADDR_BASE + pc->nstops) {
		frames[0] = (struct pprof_frame){ .function = pc->text[address - STOP_ADDR_BASE] };
		*n = 1;
		return 0;
	}
	symbolizer_lookup(pc->t->sym, address, index > 0, &f);
	frames[0] = (struct pprof_frame){ .function = f.function, .file = f.file, .line = f.line };
	*n = 1;
	return 0;
}

int native_trace__write_pprof(struct native_trace *t, const char *path)
{
	static const struct pprof_value_type types[] = { { "inuse_objects", "count" },
							  { "inuse_space", "bytes" } };
	uint64_t addrs[NATIVE_MAX_FRAMES], mapped[256];
	struct pprof_ctx ctx = { .t = t };
	char hows[8 * NATIVE_MAX_FRAMES];
	struct pprof_builder *b;
	size_t nmapped = 0;
	int ret;

	ret = pprof_builder_new(types, 2, &b);
	if (ret)
		return ret;
	pprof_set_default_sample_type(b, "inuse_space");
	pprof_add_comment(b, "memdrift: outstanding C memory (libc allocator) by allocating stack");
	pprof_add_comment(b, "labels: unwind = how each frame was found, leaf first (regs: the "
			     "probed pc, sp: the return address at [rsp], cfi: .eh_frame, fp: frame "
			     "pointer); unwind_stop = why the C walk ended early");
	for (size_t i = 0; i < t->nsites && !ret; i++) {
		const struct native_site *s = &t->sites[i];
		int64_t values[2] = { (int64_t)s->count, (int64_t)s->bytes };
		struct site_unwind uw;
		size_t n = site_addrs(t, s, addrs, NATIVE_MAX_FRAMES - 1, &uw), o = 0;
		struct pprof_label labels[2] = { { .key = "unwind", .str = hows } };
		uint64_t sa;

		for (size_t k = 0; k < n && o + 8 < sizeof(hows); k++)
			o += (size_t)snprintf(hows + o, sizeof(hows) - o, "%s%s", k ? "," : "",
					      uw.how[k]);
		if (uw.stop && (sa = stop_addr(&ctx, uw.stop))) {
			memmove(addrs + uw.nc + 1, addrs + uw.nc, (n - uw.nc) * sizeof(*addrs));
			addrs[uw.nc] = sa;
			n++;
			labels[1] = (struct pprof_label){ .key = "unwind_stop", .str = uw.stop };
		}

		for (size_t k = 0; k < n; k++) {
			uint64_t start, limit, pgoff;
			const char *obj;
			bool seen = false;

			if (symbolizer_mapping(t->sym, addrs[k], &start, &limit, &pgoff, &obj))
				continue;
			for (size_t m = 0; m < nmapped; m++)
				seen |= mapped[m] == start;
			if (seen || nmapped == sizeof(mapped) / sizeof(mapped[0]))
				continue;
			mapped[nmapped++] = start;
			pprof_add_mapping(b, start, limit, pgoff, obj, NULL, true, NULL);
		}
		ret = pprof_add_sample_addrs(b, addrs, n, values, labels, uw.stop ? 2 : 1, pprof_sym,
					     &ctx);
		if (ret == -E2BIG)
			ret = 0; /* counted by the builder */
	}
	if (!ret)
		ret = pprof_write_file(b, path);
	pprof_builder_free(b);
	return ret;
}
