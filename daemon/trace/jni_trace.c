/* JNI reference tracking: probe choice, BPF lifecycle, reads, the JVM's own
 * counts, and symbolized JNI stacks. See jni_trace.h. */
#include "trace/jni_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "base/log.h"
#include "discover/proc.h"
#include "jni_trace.skel.h"
#include "probe/bpf_util.h"
#include "probe/usdt_notes.h"
#include "symbols/jni_java.h"
#include "symbols/symbolize.h"

/* ---------------------------------------------------------- jni_trace --- */

struct probe_point {
	const char *what;  /* for messages */
	uint64_t offset;   /* file offset in libjvm */
	bool retprobe;
};

struct jni_trace {
	pid_t pid;
	struct jni_trace_info info;
	struct jni_trace_bpf *skel;
	struct probe_point points[4]; /* new global, new weak, del global, del weak */
	struct probe_links links;
	/* JVM's own counts */
	uint64_t global_handles_addr, weak_handles_addr; /* runtime addresses */
	int64_t count_field;                             /* OopStorage::_allocation_count */
	struct jni_java *java; /* Java-aware stacks (NULL: native names only) */
	bool fp_only;          /* MEMDRIFT_JNI_STACKS=fp: kernel fp stacks (jni_fp_stacks) */
};

static const char *const usdt_names[JNI_USDT_MAX] = {
	[JNI_USDT_NEW_GLOBAL_RETURN] = "NewGlobalRef__return",
	[JNI_USDT_NEW_WEAK_RETURN] = "NewWeakGlobalRef__return",
	[JNI_USDT_DEL_GLOBAL_ENTRY] = "DeleteGlobalRef__entry",
	[JNI_USDT_DEL_WEAK_ENTRY] = "DeleteWeakGlobalRef__entry",
};
static const int usdt_arg_index[JNI_USDT_MAX] = { 0, 0, 1, 1 };

static const char *const jni_funcs[4] = {
	"jni_NewGlobalRef", "jni_NewWeakGlobalRef", "jni_DeleteGlobalRef", "jni_DeleteWeakGlobalRef",
};

/* USDT: all four notes, each at a file offset, without a semaphore (arming
 * one would mean writing into the JVM), each argument in a register or in
 * memory at register + offset. missing gets what is not usable. */
static int pick_usdt(struct jni_trace *t, struct jni_usdt_arg args[JNI_USDT_MAX], char *missing,
		     size_t mlen)
{
	struct usdt_notes notes;
	char err[256];
	int ok = 0;

	missing[0] = 0;
	if (usdt_notes_read(t->info.libjvm_open, &notes, err, sizeof(err))) {
		snprintf(missing, mlen, "%s", err);
		return -ENOENT;
	}
	if (!notes.n) {
		snprintf(missing, mlen, "no .note.stapsdt (built without the dtrace feature)");
		usdt_notes_free(&notes);
		return -ENOENT;
	}
	for (int i = 0; i < JNI_USDT_MAX; i++) {
		const struct usdt_note *n = usdt_notes_find(&notes, "hotspot_jni", usdt_names[i]);
		struct usdt_arg a;
		size_t len = strlen(missing);

		if (!n) {
			snprintf(missing + len, mlen - len, "%shotspot_jni:%s", len ? ", " : "",
				 usdt_names[i]);
			continue;
		}
		if (n->semaphore || !n->has_offset ||
		    usdt_arg_parse(n->args, usdt_arg_index[i], &a) || a.kind == USDT_ARG_CONST) {
			snprintf(missing + len, mlen - len, "%shotspot_jni:%s (%s)", len ? ", " : "",
				 usdt_names[i],
				 n->semaphore ? "has a semaphore" : "unsupported argument spec");
			continue;
		}
		args[i] = (struct jni_usdt_arg){ .reg = (__u32)a.reg, .deref = a.kind == USDT_ARG_MEM,
						 .offset = a.value, .size = (__u32)a.size,
						 .is_signed = a.is_signed };
		t->points[i] = (struct probe_point){ usdt_names[i], n->file_offset, false };
		ok++;
	}
	usdt_notes_free(&notes);
	return ok == JNI_USDT_MAX ? 0 : -ENOENT;
}

static int pick_symtab(struct jni_trace *t, char *missing, size_t mlen)
{
	uint64_t base, addr, off;
	int ok = 0;

	missing[0] = 0;
	if (symbolize_elf_load_base(t->info.libjvm_open, &base)) {
		snprintf(missing, mlen, "all (libjvm.so unreadable)");
		return -ENOENT;
	}
	for (int i = 0; i < 4; i++) {
		size_t len = strlen(missing);

		if (symbolize_elf_symbol(t->info.libjvm_open, jni_funcs[i], &addr, NULL, &off)) {
			snprintf(missing + len, mlen - len, "%s%s", len ? ", " : "", jni_funcs[i]);
			continue;
		}
		/* New*: the handle is the return value; Delete*: the 2nd argument. */
		t->points[i] = (struct probe_point){ jni_funcs[i], off, i < 2 };
		ok++;
	}
	return ok == 4 ? 0 : -ENOENT;
}

/* OopStorage::allocation_count() is `mov rax, [rdi + disp]; ret`: its
 * displacement is the field's offset in this build. */
static int64_t decode_count_field(const char *path)
{
	uint8_t code[16];
	uint64_t addr, size, off;
	size_t i = 0;

	if (symbolize_elf_symbol(path, "_ZNK10OopStorage16allocation_countEv", &addr, &size, &off) ||
	    proc_read_file_at(path, off, code, sizeof(code)) != (int)sizeof(code))
		return -1;
	if (code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && code[3] == 0xfa)
		i = 4; /* endbr64 */
	if (code[i] == 0x48 && code[i + 1] == 0x8b && code[i + 2] == 0x47 && code[i + 4] == 0xc3)
		return (int8_t)code[i + 3];
	if (code[i] == 0x48 && code[i + 1] == 0x8b && code[i + 2] == 0x87 && code[i + 7] == 0xc3) {
		int32_t d;

		memcpy(&d, code + i + 3, 4);
		return d;
	}
	return -1;
}

static void setup_jvm_counts(struct jni_trace *t)
{
	const char *p = t->info.libjvm_open;
	uint64_t g, w;

	t->count_field = decode_count_field(p);
	if (t->count_field < 0 ||
	    symbolize_elf_symbol(p, "_ZN10JNIHandles15_global_handlesE", &g, NULL, NULL) ||
	    symbolize_elf_symbol(p, "_ZN10JNIHandles20_weak_global_handlesE", &w, NULL, NULL))
		return;
	t->global_handles_addr = g + t->info.libjvm_bias;
	t->weak_handles_addr = w + t->info.libjvm_bias;
	t->info.jvm_counts = true;
}

int jni_trace__jvm_counts(struct jni_trace *t, uint64_t *global, uint64_t *weak)
{
	uint64_t storage, v[2];
	uint64_t addrs[2] = { t->global_handles_addr, t->weak_handles_addr };
	int ret;

	if (!t->info.jvm_counts)
		return -ENOTSUP;
	for (int i = 0; i < 2; i++) {
		ret = proc_read(t->pid, addrs[i], &storage, sizeof(storage));
		if (ret)
			return ret;
		if (!storage)
			return -EAGAIN; /* JVM still starting */
		ret = proc_read(t->pid, storage + (uint64_t)t->count_field, &v[i], sizeof(v[i]));
		if (ret)
			return ret;
		if (v[i] > (1ull << 40))
			return -ENOTSUP; /* not a count: layout differs */
	}
	*global = v[0];
	*weak = v[1];
	return 0;
}

int jni_trace__new(const struct jni_trace_opts *opts, struct jni_trace **out, char *err,
		   size_t errlen)
{
	pid_t pid = opts->pid;
	struct jni_usdt_arg args[JNI_USDT_MAX] = {};
	char usdt_missing[512], sym_missing[256];
	const char *force = getenv("MEMDRIFT_JNI_PROBES");
	struct jni_trace *t;
	uint64_t start = 0, base = 0, addr;
	int ret;

	t = calloc(1, sizeof(*t));
	if (!t)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	t->pid = pid;
	ret = proc_find_mapped_lib(pid, "/libjvm.so", t->info.libjvm, sizeof(t->info.libjvm), &start);
	if (ret) {
		free(t);
		return set_err(err, errlen, ret == -ENOENT ? -ENOENT : ret,
			       "pid %d: no libjvm.so mapped (not a HotSpot JVM)", (int)pid);
	}
	snprintf(t->info.libjvm_open, sizeof(t->info.libjvm_open), "/proc/%d/root%s", (int)pid,
		 t->info.libjvm);
	symbolize_elf_load_base(t->info.libjvm_open, &base); /* unreadable: pick_symtab says so */
	t->info.libjvm_bias = start - base;
	t->info.checked_wrappers = !symbolize_elf_symbol(t->info.libjvm_open, "checked_jni_NewGlobalRef",
							 &addr, NULL, NULL);

	usdt_missing[0] = sym_missing[0] = 0;
	ret = -ENOENT;
	if (!force || strcmp(force, "symtab"))
		ret = pick_usdt(t, args, usdt_missing, sizeof(usdt_missing));
	if (!ret) {
		t->info.mode = JNI_PROBES_USDT;
	} else if (!force || strcmp(force, "usdt")) {
		ret = pick_symtab(t, sym_missing, sizeof(sym_missing));
		t->info.mode = JNI_PROBES_SYMTAB;
	}
	if (ret) {
		ret = set_err(err, errlen, -ENOENT,
			      "%s: no usable JNI probes: USDT missing %s; .symtab missing %s "
			      "(a stripped libjvm: install its debug symbols, e.g. openjdk-17-dbg)",
			      t->info.libjvm, usdt_missing[0] ? usdt_missing : "(not tried)",
			      sym_missing[0] ? sym_missing : "(not tried)");
		free(t);
		return ret;
	}
	{
		size_t len = 0;

		len += (size_t)snprintf(t->info.probes, sizeof(t->info.probes), "%s:",
					t->info.mode == JNI_PROBES_USDT ? "usdt hotspot_jni" : "symtab");
		for (int i = 0; i < 4 && len < sizeof(t->info.probes); i++)
			len += (size_t)snprintf(t->info.probes + len, sizeof(t->info.probes) - len,
						" %s%s@0x%llx", t->points[i].what,
						t->points[i].retprobe ? "(ret)" : "",
						(unsigned long long)t->points[i].offset);
	}
	setup_jvm_counts(t);

	ret = BPF_UTIL_OPEN(t->skel, jni_trace, err, errlen);
	if (ret) {
		jni_trace__free(t);
		return ret;
	}
	t->skel->rodata->targ_tgid = (__u32)pid;
	t->fp_only = getenv("MEMDRIFT_JNI_STACKS") && !strcmp(getenv("MEMDRIFT_JNI_STACKS"), "fp");
	t->skel->rodata->jni_fp_only = t->fp_only;
	if (t->fp_only) /* the stack map is only created when used */
		bpf_map__set_max_entries(t->skel->maps.jni_stacks, 1);
	else
		bpf_map__set_max_entries(t->skel->maps.jni_fp_stacks, 1);
	memcpy((void *)t->skel->rodata->jni_usdt_args, args, sizeof(args));
	{
		bool usdt = t->info.mode == JNI_PROBES_USDT;

		bpf_program__set_autoload(t->skel->progs.jni_usdt_new_global, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_usdt_new_weak, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_usdt_del_global, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_usdt_del_weak, usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_new_global_ret, !usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_new_weak_ret, !usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_del_global, !usdt);
		bpf_program__set_autoload(t->skel->progs.jni_up_del_weak, !usdt);
	}
	ret = bpf_util_load(t->skel->skeleton, err, errlen);
	if (ret) {
		jni_trace__free(t);
		return ret;
	}
	ret = t->fp_only ? -ENOTSUP : jni_java_new(pid, t->info.libjvm_open, t->info.libjvm_bias,
			   bpf_map__fd(t->skel->maps.jni_events), &t->skel->bss->jni_code, &t->java);
	if (ret && !t->fp_only)
		log_warn("pid %d: stacks without Java names: %s", (int)pid, strerror(-ret));
	*out = t;
	return 0;
}

int jni_trace__attach(struct jni_trace *t, char *err, size_t errlen)
{
	struct bpf_program *progs[4];

	if (t->info.mode == JNI_PROBES_USDT) {
		progs[0] = t->skel->progs.jni_usdt_new_global;
		progs[1] = t->skel->progs.jni_usdt_new_weak;
		progs[2] = t->skel->progs.jni_usdt_del_global;
		progs[3] = t->skel->progs.jni_usdt_del_weak;
	} else {
		progs[0] = t->skel->progs.jni_up_new_global_ret;
		progs[1] = t->skel->progs.jni_up_new_weak_ret;
		progs[2] = t->skel->progs.jni_up_del_global;
		progs[3] = t->skel->progs.jni_up_del_weak;
	}
	/* Deletes first: a ref created between two attaches is then never
	 * mistaken for one that existed before attach. */
	for (int k = 0; k < 4; k++) {
		int i = (k + 2) % 4;

		const struct probe_point *p = &t->points[i];
		int ret = p->retprobe ? probe_links_uretprobe_c(&t->links, progs[i], t->pid,
								t->info.libjvm_open, p->offset, 0) :
					probe_links_uprobe(&t->links, progs[i], t->pid,
							   t->info.libjvm_open, p->offset, 0);

		if (ret) {
			probe_links_destroy(&t->links);
			return set_err(err, errlen, ret, "attach %s at %s+0x%llx: %s", p->what,
				       t->info.libjvm, (unsigned long long)p->offset, strerror(-ret));
		}
	}
	return 0;
}

const struct jni_trace_info *jni_trace__info(const struct jni_trace *t)
{
	return &t->info;
}

int jni_trace__read_sites(struct jni_trace *t, struct jni_site *out, size_t max, size_t *n)
{
	int fd = bpf_map__fd(t->skel->maps.jni_sites);
	struct jni_site_key key, next;
	struct jni_site_counts c;
	void *prev = NULL;

	jni_trace__poll(t); /* name new stacks before they are counted */
	*n = 0;
	while (*n < max && !bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &c))
			continue; /* removed meanwhile (never: sites are only added) */
		out[(*n)++] = (struct jni_site){ key.stackid, key.kind, c.created, c.deleted };
	}
	return 0;
}

int jni_trace__read_stack(struct jni_trace *t, __s32 stackid, uint64_t *ips, size_t max, size_t *n)
{
	struct jni_walk w;
	__u32 id = (__u32)stackid;

	*n = 0;
	if (stackid >= 0 && t->fp_only) {
		uint64_t buf[JNI_STACK_DEPTH];

		if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.jni_fp_stacks), &id, buf))
			return -ENOENT;
		for (size_t i = 0; i < JNI_STACK_DEPTH && *n < max && buf[i]; i++)
			ips[(*n)++] = buf[i];
		return 0;
	}
	if (stackid < 0 || bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.jni_stacks), &id, &w))
		return -ENOENT;
	for (size_t i = 0; i < w.n && i < JNI_STACK_DEPTH && *n < max && w.pc[i]; i++)
		ips[(*n)++] = w.pc[i];
	return 0;
}

int jni_trace__poll(struct jni_trace *t)
{
	return t->java ? jni_java_poll(t->java) : 0;
}

void jni_trace__stats(const struct jni_trace *t, uint64_t stats[JNI_STAT_MAX])
{
	for (int i = 0; i < JNI_STAT_MAX; i++)
		stats[i] = __atomic_load_n(&t->skel->bss->jni_stats[i], __ATOMIC_RELAXED);
}

void jni_trace__free(struct jni_trace *t)
{
	if (!t)
		return;
	probe_links_destroy(&t->links);
	jni_java_free(t->java);
	jni_trace_bpf__destroy(t->skel);
	free(t);
}

size_t jni_trace__symbolized_stack(struct jni_trace *t, struct symbolizer *sym, __s32 stackid,
				   struct native_frame *nf, size_t max, size_t *first)
{
	uint64_t ips[JNI_STACK_DEPTH];
	size_t n = 0;

	if (max > JNI_STACK_DEPTH)
		max = JNI_STACK_DEPTH;
	if (stackid >= 0 && t->java) {
		struct jni_walk w;
		__u32 id = (__u32)stackid;

		if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.jni_stacks), &id, &w))
			w.n = 0;
		n = jni_java_stack(t->java, sym, stackid, &w, nf, max);
		if (log_threshold <= LOG_LEVEL_DEBUG)
			log_debug("stack %d: walk %u [%llx %llx %llx %llx] -> %s <- %s <- %s", stackid, w.n,
				  w.n > 0 ? w.pc[0] : 0ull, w.n > 1 ? w.pc[1] : 0ull,
				  w.n > 2 ? w.pc[2] : 0ull, w.n > 3 ? w.pc[3] : 0ull,
				  n > 0 ? nf[0].function : "", n > 1 ? nf[1].function : "",
				  n > 2 ? nf[2].function : "");
	} else if (stackid >= 0) {
		jni_trace__read_stack(t, stackid, ips, max, &n);
		for (size_t i = 0; i < n; i++)
			symbolizer_lookup_jvm(sym, ips[i], &nf[i]);
	}
	*first = 0;
	while (*first < n && nf[*first].in_libjvm)
		(*first)++;
	if (*first == n)
		*first = 0;
	return n;
}
