/* `memdrift ps --probes PID [--json]`: per probe, the chosen offset, the
 * instruction, and whether the kernel emulates it; planned by the same
 * planners `attach` uses. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <json-c/json.h>
#include <libelf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "cli/commands.h"
#include "discover/classify.h"
#include "discover/proc.h"
#include "discover/target.h"
#include "probe/probe_place.h"
#include "trace/goroutine_trace.h"
#include "trace/heap_trace.h"

#define PS_PROBES_MAX_ROWS (GT_MAX_PROBES + 2 * HEAP_PROBES_MAX + 8)

struct probe_row {
	char function[64];
	char role[40];
	uint64_t file_offset;
	struct probe_place place;
	bool found;
};

static void place_go_function(const struct go_target *t, const char *name, const char *role,
			      struct probe_row *r)
{
	struct gobin_func f;
	uint8_t code[64];
	ssize_t got;

	memset(r, 0, sizeof(*r));
	snprintf(r->function, sizeof(r->function), "%s", name);
	snprintf(r->role, sizeof(r->role), "%s", role);
	if (go_target_func_body(t, name, &f))
		return;
	got = gobin_read_vaddr(t->bin, f.entry, code, sizeof(code));
	if (got <= 0 || probe_place_x86(code, got, f.entry, &r->place))
		return;
	r->found = !gobin_vaddr_to_offset(t->bin, f.entry + r->place.offset, &r->file_offset);
}

/* libc symbol -> file offset and placement, from the mapped libc's ELF. */
static void place_libc_function(const char *path, const char *name, struct probe_row *r)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf *elf;
	int fd;

	memset(r, 0, sizeof(*r));
	snprintf(r->function, sizeof(r->function), "libc %s", name);
	snprintf(r->role, sizeof(r->role), "C allocations (later)");
	elf_version(EV_CURRENT);
	fd = proc_open_untrusted(path, PROC_MAX_ELF_FILE, NULL);
	if (fd < 0)
		return;
	elf = elf_begin(fd, ELF_C_READ, NULL);
	while (elf && (scn = elf_nextscn(elf, scn))) {
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize && !r->found; i++) {
			GElf_Sym sym;
			const char *s;
			size_t nph;

			if (!gelf_getsym(data, i, &sym) || !sym.st_value ||
			    GELF_ST_TYPE(sym.st_info) != STT_FUNC)
				continue;
			s = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (!s || strcmp(s, name))
				continue;
			elf_getphdrnum(elf, &nph);
			for (size_t k = 0; k < nph; k++) {
				GElf_Phdr ph;
				uint8_t code[64];
				uint64_t off;

				if (!gelf_getphdr(elf, k, &ph) || ph.p_type != PT_LOAD ||
				    sym.st_value < ph.p_vaddr || sym.st_value >= ph.p_vaddr + ph.p_filesz)
					continue;
				off = sym.st_value - ph.p_vaddr + ph.p_offset;
				if (pread(fd, code, sizeof(code), off) != (ssize_t)sizeof(code) ||
				    probe_place_x86(code, sizeof(code), sym.st_value, &r->place))
					break;
				r->file_offset = off + r->place.offset;
				r->found = true;
				break;
			}
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
}

static const char *probe_reg_name(enum probe_reg r)
{
	static const char *const names[] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8",
					    "r9",  "r10", "r11", "r12", "r13", "r15"};

	return r < PROBE_REG_NONE ? names[r] : "?";
}

static const char *stack_check_name(enum probe_stack_check s)
{
	return s == PROBE_STACK_CHECK_JBE ? "jbe" : s == PROBE_STACK_CHECK_JB ? "jb" : NULL;
}

static void add_heap_rows(struct probe_row *rows, size_t *n, const struct heap_probe *hp,
			  size_t nhp, bool trace)
{
	for (size_t i = 0; i < nhp && *n < PS_PROBES_MAX_ROWS; i++) {
		struct probe_row *r = &rows[(*n)++];

		memset(r, 0, sizeof(*r));
		snprintf(r->function, sizeof(r->function), "%s", hp[i].function);
		snprintf(r->role, sizeof(r->role), "%s",
			 trace ? "every Go allocation (trace)"
			 : hp[i].kind == HEAP_PROBE_FREE_SPECIAL || hp[i].kind == HEAP_PROBE_MPROF_FREE
				 ? "sampled heap frees"
				 : "sampled heap allocations");
		r->place = hp[i].place;
		r->file_offset = hp[i].file_offset;
		r->found = true;
	}
}

int cmd_ps_probes(int pid, int json)
{
	static const struct {
		const char *name, *role;
	} later[] = {
		{"runtime.cgocall", "cgo calls (trace)"},
	};
	struct heap_probe hp[HEAP_PROBES_MAX];
	struct heap_walk_layout wl;
	size_t nhp = 0;
	struct probe_row rows[PS_PROBES_MAX_ROWS];
	struct gt_probe probes[GT_MAX_PROBES];
	struct go_target t;
	char err[512], libc[4096];
	size_t n = 0, np = 0;
	uint64_t libc_start;
	enum libc_kind libc_kind;
	json_object *arr = NULL;
	int ret;

	ret = go_target_open(pid, &t, err, sizeof(err));
	if (ret)
		return cli_fail(1, "%s", err);
	ret = goroutine_trace__plan(&t, probes, GT_MAX_PROBES, &np, err, sizeof(err));
	if (ret)
		log_warn("%s", err);
	for (size_t i = 0; i < np; i++) {
		struct probe_row *r = &rows[n++];

		memset(r, 0, sizeof(*r));
		snprintf(r->function, sizeof(r->function), "%s", probes[i].function);
		if (probes[i].kind == GT_PROBE_DEATH)
			snprintf(r->role, sizeof(r->role), "goroutine deaths (trace)");
		else
			snprintf(r->role, sizeof(r->role), "goroutine births, g in %s (trace)",
				 probe_reg_name(probes[i].reg));
		r->place = probes[i].place;
		r->file_offset = probes[i].file_offset;
		r->found = true;
	}
	for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++)
		place_go_function(&t, later[i].name, later[i].role, &rows[n++]);
	/* the heap profile tier's plan as attach would make it: frees from
	 * the heap walk where its layout is known, else a free probe */
	if (heap_trace__plan(&t, true, false, heap_trace_walk_layout(&t, &wl) != 0, false, hp,
			     HEAP_PROBES_MAX, &nhp, err, sizeof(err)))
		log_warn("%s", err);
	add_heap_rows(rows, &n, hp, nhp, false);
	/* attach --trace heap: mallocgc and the size-specialized allocators */
	nhp = 0;
	if (heap_trace__plan(&t, false, true, false, false, hp, HEAP_PROBES_MAX, &nhp, err,
			     sizeof(err)))
		log_warn("%s", err);
	add_heap_rows(rows, &n, hp, nhp, true);
	if (!classify_process_libc(pid, libc, sizeof(libc), &libc_start, &libc_kind)) {
		char path[4200];

		/* through the process's root, so containers work */
		snprintf(path, sizeof(path), "/proc/%d/root%s", pid, libc);
		place_libc_function(path, "malloc", &rows[n++]);
		place_libc_function(path, "free", &rows[n++]);
	}

	if (json)
		arr = json_object_new_array();
	else
		printf("PID %d (%s) %s\n%-34s %8s %10s %-3s %-30s %s\n", pid, t.exe.comm,
		       gobin_version(t.bin)->str, "FUNCTION", "OFFSET", "FILE-OFF", "EMU",
		       "INSTRUCTION", "NOTE");
	for (size_t i = 0; i < n; i++) {
		const struct probe_row *r = &rows[i];
		const char *sc = stack_check_name(r->place.stack_check);

		if (json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "function", json_object_new_string(r->function));
			json_object_object_add(o, "role", json_object_new_string(r->role));
			json_object_object_add(o, "found", json_object_new_boolean(r->found));
			if (r->found) {
				json_object_object_add(o, "offset", json_object_new_int64((int64_t)r->place.offset));
				json_object_object_add(o, "file_offset", json_object_new_int64((int64_t)r->file_offset));
				json_object_object_add(o, "instruction", json_object_new_string(r->place.insn));
				json_object_object_add(o, "emulated", json_object_new_boolean(r->place.emulated));
				json_object_object_add(o, "fallback", json_object_new_boolean(r->place.fallback));
				json_object_object_add(o, "stack_check", sc ? json_object_new_string(sc) : NULL);
			}
			json_object_array_add(arr, o);
			continue;
		}
		if (!r->found) {
			printf("%-34s %8s %10s %-3s %-30s %s\n", r->function, "-", "-", "-", "(not in binary)",
			       r->role);
			continue;
		}
		char off[24];

		snprintf(off, sizeof(off), "+%#llx", (unsigned long long)r->place.offset);
		printf("%-34s %8s %10llx %-3s %-30.30s %s%s%s\n", r->function, off,
		       (unsigned long long)r->file_offset,
		       r->place.emulated ? "yes" : "no", r->place.insn, r->role,
		       sc ? ", stack check filtered" : "", r->place.fallback ? ", ENTRY FALLBACK" : "");
	}
	if (json) {
		puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY));
		json_object_put(arr);
	}
	go_target_close(&t);
	return 0;
}
