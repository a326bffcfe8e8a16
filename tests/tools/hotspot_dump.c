/* hotspot_dump: names code-cache addresses of a live HotSpot JVM through
 * daemon/symbols/hotspot.c (vmStructs read with process_vm_readv), for the e2e
 * test that compares them with `jcmd PID Compiler.codelist`.
 *
 *   hotspot_dump PID [ADDR...]    ADDR in hex; none: only the ranges
 * Prints one JSON object: {"code":[lo,hi],"interpreter":[lo,hi],
 * "blobs":[{"addr","kind","name","method","native_fn","frame_size"}]}. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "discover/proc.h"
#include "symbols/hotspot.h"
#include "symbols/symbolize.h"

static const char *const kinds[] = { "none", "free", "interpreter", "nmethod", "native", "stub" };

int main(int argc, char **argv)
{
	char lib[PATH_MAX], open_path[PATH_MAX + 32], err[256];
	uint64_t start, base, lo, hi, ilo, ihi;
	struct hotspot *h;
	struct json_object *o, *arr;
	pid_t pid;
	int ret;

	if (argc < 2 || (pid = (pid_t)atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: hotspot_dump PID [ADDR...]\n");
		return 2;
	}
	if (proc_find_mapped_lib(pid, "/libjvm.so", lib, sizeof(lib), &start)) {
		fprintf(stderr, "hotspot_dump: pid %d maps no libjvm.so\n", (int)pid);
		return 1;
	}
	snprintf(open_path, sizeof(open_path), "/proc/%d/root%s", (int)pid, lib);
	if (symbolize_elf_load_base(open_path, &base)) {
		fprintf(stderr, "hotspot_dump: %s: unreadable\n", open_path);
		return 1;
	}
	ret = hotspot_open(pid, open_path, start - base, &h, err, sizeof(err));
	if (!ret)
		ret = hotspot_refresh(h, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "hotspot_dump: %s\n", err);
		return 1;
	}
	hotspot_code_ranges(h, &lo, &hi, &ilo, &ihi);
	o = json_object_new_object();
	arr = json_object_new_array();
	json_object_array_add(arr, json_object_new_int64((int64_t)lo));
	json_object_array_add(arr, json_object_new_int64((int64_t)hi));
	json_object_object_add(o, "code", arr);
	arr = json_object_new_array();
	json_object_array_add(arr, json_object_new_int64((int64_t)ilo));
	json_object_array_add(arr, json_object_new_int64((int64_t)ihi));
	json_object_object_add(o, "interpreter", arr);
	arr = json_object_new_array();
	for (int i = 2; i < argc; i++) {
		uint64_t pc = strtoull(argv[i], NULL, 16), fn = 0;
		struct hotspot_blob b;
		struct json_object *bo = json_object_new_object();
		char name[512] = "";

		json_object_object_add(bo, "addr", json_object_new_int64((int64_t)pc));
		if (hotspot_find_blob(h, pc, &b)) {
			json_object_object_add(bo, "kind", json_object_new_string("error"));
		} else {
			json_object_object_add(bo, "kind", json_object_new_string(kinds[b.kind]));
			json_object_object_add(bo, "name", json_object_new_string(b.name));
			json_object_object_add(bo, "frame_size", json_object_new_int(b.frame_size));
			if (b.method && !hotspot_method_name(h, b.method, name, sizeof(name), &fn))
				json_object_object_add(bo, "method", json_object_new_string(name));
			json_object_object_add(bo, "native_fn", json_object_new_int64((int64_t)fn));
		}
		json_object_array_add(arr, bo);
	}
	json_object_object_add(o, "blobs", arr);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	hotspot_free(h);
	return 0;
}
