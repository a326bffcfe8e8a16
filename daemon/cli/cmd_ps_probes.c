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
#include "trace/native_trace.h"

#define PS_PROBES_MAX_ROWS (GT_MAX_PROBES + 2 * HEAP_PROBES_MAX + NATIVE_MAX_PROBES)

struct probe_row {
	char function[64];
	char role[40];
	uint64_t file_offset;
	struct probe_place place;
	bool found;
	bool idle; /* planned, but attach leaves it off in this process */
};

/* A native tracer probe as a row: its instruction re-read from the file
 * for the emulation verdict probe_place gives every other row. */
static void add_native_rows(struct probe_row *rows, size_t *n, const struct native_probe_info *np,
			    size_t nnp)
{
	for (size_t i = 0; i < nnp && *n < PS_PROBES_MAX_ROWS; i++) {
		struct probe_row *r = &rows[(*n)++];

		memset(r, 0, sizeof(*r));
		snprintf(r->function, sizeof(r->function), "%s%.40s", np[i].in_libc ? "libc " : "",
			 np[i].name);
		snprintf(r->role, sizeof(r->role), "%s",
			 np[i].probe == NATIVE_PROBE_CGOCALL ? "cgo calls (trace)"
			 : np[i].probe == NATIVE_PROBE_CGOCALL_DONE ? "cgo call done (trace)"
			 : np[i].probe == NATIVE_PROBE_FREE || np[i].probe == NATIVE_PROBE_MUNMAP
				 ? "C frees (trace)"
				 : "C allocations (trace), + uretprobe");
		r->place.offset = np[i].offset;
		r->place.emulated = np[i].emulated;
		snprintf(r->place.insn, sizeof(r->place.insn), "%s", np[i].insn);
		r->file_offset = np[i].file_offset;
		r->found = true;
	}
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
	struct native_probe_info nprobes[NATIVE_MAX_PROBES];
	bool native, cgo;
	size_t nn = 0;
	struct heap_probe hp[HEAP_PROBES_MAX];
	struct heap_walk_layout wl;
	size_t nhp = 0;
	struct probe_row rows[PS_PROBES_MAX_ROWS];
	struct gt_probe probes[GT_MAX_PROBES];
	struct go_target t;
	char err[512], libc[4096];
	size_t n = 0, np = 0;
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
	/* the heap profile tier's plan as attach would make it: frees from
	 * the heap walk where its layout is known, else a free probe */
	if (heap_trace__plan(&t, true, false, heap_trace_walk_layout(&t, &wl) != 0, false, hp,
			     HEAP_PROBES_MAX, &nhp, err, sizeof(err)))
		log_warn("%s", err);
	{
		/* attach leaves the profile tier off where the runtime samples
		 * nothing (heap_trace__attach reads the same variable) */
		size_t first = n;
		uint64_t rate_addr = go_target_global(&t, "runtime.MemProfileRate"), rate = 1;

		add_heap_rows(rows, &n, hp, nhp, false);
		if (rate_addr && proc_read(pid, rate_addr, &rate, sizeof(rate)) == 0 && rate == 0)
			for (size_t i = first; i < n; i++)
				rows[i].idle = true;
	}
	/* attach --trace heap: mallocgc and the size-specialized allocators */
	nhp = 0;
	if (heap_trace__plan(&t, false, true, false, false, hp, HEAP_PROBES_MAX, &nhp, err,
			     sizeof(err)))
		log_warn("%s", err);
	add_heap_rows(rows, &n, hp, nhp, true);
	/* attach --trace native,cgo: what applies to this process, planned
	 * by the tracer's own planner */
	native_trace_applies(pid, &t, &native, &cgo);
	if ((native || cgo) && native_trace__plan(pid, &t, native, cgo, false, nprobes,
						  NATIVE_MAX_PROBES, &nn, libc, sizeof(libc), err,
						  sizeof(err)))
		log_warn("%s", err);
	add_native_rows(rows, &n, nprobes, nn);

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
			json_object_object_add(o, "active", json_object_new_boolean(r->found && !r->idle));
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
		printf("%-34s %8s %10llx %-3s %-30.30s %s%s%s%s\n", r->function, off,
		       (unsigned long long)r->file_offset,
		       r->place.emulated ? "yes" : "no", r->place.insn, r->role,
		       sc ? ", stack check filtered" : "", r->place.fallback ? ", ENTRY FALLBACK" : "",
		       r->idle ? ", idle: MemProfileRate=0 in the target" : "");
	}
	if (json) {
		puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY));
		json_object_put(arr);
	}
	go_target_close(&t);
	return 0;
}
