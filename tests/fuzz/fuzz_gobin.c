/* libFuzzer: whole-file analysis of arbitrary bytes, through a memfd so the
 * real open/mmap/libelf path runs. Seeds: truncated heads of real Go
 * binaries; the fuzzer mutates their ELF and pclntab headers. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "binary/gobin.h"
#include "binary/gobin_internal.h"

static const char *const names[] = {
	"main.main", "runtime.newproc", "runtime.forEachGRace", "runtime.(*mcache).refill",
	"runtime.mexit", "runtime.newproc1",
};

static const char *const globals[] = {
	"runtime.allglen", "runtime.allgptr", "runtime.gcController", "runtime.memstats",
	"runtime.ncgocall", "runtime.allm", "runtime.mbuckets", "runtime.MemProfileRate",
	"runtime.sched", "runtime.allgs",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[256];
	enum gobin_kind kind;
	struct go_version ver;
	struct gobin *bin = NULL;
	int fd = memfd_create("fuzz_gobin", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	(void)gobin_classify(path, &kind, &ver, err, sizeof(err));
	if (gobin_open_flags(path, GOBIN_OPEN_SKIP_OFFSETS, &bin, err, sizeof(err)) == 0) {
		struct gobin_func f;
		struct gobin_pcinfo pi;
		uint64_t addr, off;
		uint8_t buf[64];

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			(void)gobin_func_by_name(bin, names[i], &f);
		for (size_t i = 0; i < bin->nfuncs && i < 4096; i++) {
			uint64_t e = bin->funcs[i].entry, end = bin->funcs[i].end;

			(void)gobin_pc_lookup(bin, e, &pi);
			if (end > e)
				(void)gobin_pc_lookup(bin, e + (end - e) / 2, &pi);
		}
		(void)gobin_pc_lookup(bin, 0, &pi);
		(void)gobin_pc_lookup(bin, UINT64_MAX, &pi);
		for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++) {
			if (gobin_global(bin, globals[i], &addr) == 0) {
				(void)gobin_read_vaddr(bin, addr, buf, sizeof(buf));
				(void)gobin_vaddr_to_offset(bin, addr, &off);
			}
			(void)gobin_global_from_code(bin, globals[i], &addr);
		}
		{
			struct go_offsets lo; /* the layout tracker on hostile code */

			(void)gobin_layout_recover(bin, &lo);
		}
		(void)gobin_build_id(bin);
		(void)gobin_base_vaddr(bin);
		gobin_free(bin);
	}
	close(fd);
	return 0;
}
