/* Where native tracing probes a process: the allocator functions of its
 * libc (the first emulated instruction of each, found by probe_place) and
 * runtime.cgocall. Needs no BPF: `attach` attaches this plan and `ps
 * --probes` shows it. */
#include <capstone/capstone.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "binary/gobin.h"
#include "discover/classify.h"
#include "discover/proc.h"
#include "discover/target.h"
#include "probe/probe_place.h"
#include "symbols/symbolize.h"
#include "trace/native_trace.h"

#define CODE_MAX 4096 /* bytes of runtime.cgocall decoded */


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

static int plan_libc(pid_t pid, bool entry_probes, struct native_probe_info *probes, size_t max,
		     size_t *np, char *libc, size_t libclen, char *err, size_t errlen)
{
	uint64_t start, done_offsets[sizeof(libc_funcs) / sizeof(libc_funcs[0])];
	size_t ndone = 0;
	enum libc_kind kind;
	char libc_open[PATH_MAX + 32];
	int ret = classify_process_libc(pid, libc, libclen, &start, &kind);

	if (ret)
		return set_err(err, errlen, ret == -ENOENT ? -ENOENT : ret,
			       "PID %d maps no libc (static binary?): no C allocator to trace",
			       (int)pid);
	/* through the process's root, so containers work */
	snprintf(libc_open, sizeof(libc_open), "/proc/%d/root%s", (int)pid, libc);

	for (size_t i = 0; i < sizeof(libc_funcs) / sizeof(libc_funcs[0]); i++) {
		const struct libc_func *f = &libc_funcs[i];
		struct native_probe_info *pi;
		struct probe_place place = { 0 };
		uint8_t code[64];
		uint64_t vaddr, size, foff;
		bool dup = false;
		int n;

		if (symbolize_elf_function(libc_open, f->name, &vaddr, &size, &foff)) {
			log_debug("native: %s has no %s", libc, f->name);
			continue;
		}
		for (size_t j = 0; j < ndone; j++)
			dup |= done_offsets[j] == foff; /* aliases: aligned_alloc, mmap64 */
		if (dup)
			continue;
		done_offsets[ndone++] = foff;
		n = proc_read_file_at(libc_open, foff, code, sizeof(code));
		if (n <= 0)
			return set_err(err, errlen, n ? n : -EIO, "read %s in %s", f->name, libc);
		if (size && (uint64_t)n > size)
			n = (int)size;
		if (entry_probes || probe_place_x86(code, (size_t)n, vaddr, &place))
			probe_insn_info_x86(code, (size_t)n, vaddr, &place.emulated, place.insn,
					    sizeof(place.insn));
		if (entry_probes)
			place.offset = 0;
		if (*np == max)
			return set_err(err, errlen, -E2BIG, "too many probes");
		pi = &probes[(*np)++];
		memset(pi, 0, sizeof(*pi));
		snprintf(pi->name, sizeof(pi->name), "%s", f->name);
		snprintf(pi->insn, sizeof(pi->insn), "%s", place.insn);
		pi->offset = place.offset;
		pi->file_offset = foff + place.offset;
		pi->emulated = place.emulated;
		pi->in_libc = true;
		if (f->kind >= 0) {
			pi->probe = NATIVE_PROBE_ENTRY + (enum native_probe)f->kind;
			pi->retprobe = true;
			pi->cookie = (uint64_t)f->kind;
		} else {
			pi->probe = f->kind == -1 ? NATIVE_PROBE_FREE : NATIVE_PROBE_MUNMAP;
		}
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

static int plan_cgo(const struct go_target *go, struct native_probe_info *probes, size_t max,
		    size_t *np, char *err, size_t errlen)
{
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
	if (*np + 2 > max) {
		free(code);
		return set_err(err, errlen, -E2BIG, "too many probes");
	}
	pi = &probes[*np];
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
	pi->cookie = delta;
	(*np)++;

	pi = &probes[*np];
	memset(pi, 0, sizeof(*pi));
	snprintf(pi->name, sizeof(pi->name), "runtime.cgocall:exitsyscall");
	snprintf(pi->insn, sizeof(pi->insn), "call runtime.exitsyscall");
	pi->probe = NATIVE_PROBE_CGOCALL_DONE;
	pi->offset = done_off;
	pi->emulated = true;
	if (gobin_vaddr_to_offset(go->bin, cgocall.entry + done_off, &foff))
		return set_err(err, errlen, -ENOENT, "runtime.cgocall: no file offset");
	pi->file_offset = foff;
	(*np)++;
	return 0;
}

int native_trace__plan(pid_t pid, const struct go_target *go, bool native, bool cgo,
		       bool entry_probes, struct native_probe_info *probes, size_t max, size_t *n,
		       char *libc, size_t libclen, char *err, size_t errlen)
{
	int ret = 0;

	*n = 0;
	if (libclen)
		libc[0] = 0;
	/* cgo first: allocations seen right after get their Go stack. */
	if (cgo && go && (ret = plan_cgo(go, probes, max, n, err, errlen)))
		return ret;
	if (native)
		ret = plan_libc(pid, entry_probes, probes, max, n, libc, libclen, err, errlen);
	return ret;
}

void native_trace_applies(pid_t pid, const struct go_target *go, bool *native, bool *cgo)
{
	char path[PATH_MAX];
	enum libc_kind kind;
	uint64_t start;

	*native = classify_process_libc(pid, path, sizeof(path), &start, &kind) == 0;
	*cgo = *native && go && gobin_kind(go->bin) == GOBIN_GO_CGO;
}
