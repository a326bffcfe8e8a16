/* `memdrift ps [--json]` and `memdrift ps --probes PID` */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "binary/gobin.h"
#include "cli/commands.h"
#include "discover/classify.h"
#include "discover/proc.h"

const struct command_usage ps_usage = {
	.args = "[--json] [--all] | --probes PID [--json]",
	.text =
		"Lists the processes on this host that memdrift can observe: pid, comm,\n"
		"runtime kind (go, go+cgo, jvm, native), Go version, where the runtime\n"
		"struct offsets come from (dwarf or table) and the container id.\n"
		"With --probes, shows for one Go process where each probe would be placed.\n"
		"\n"
		"  --json        print a JSON array\n"
		"  --all         include native processes (default: Go and JVM only)\n"
		"  --probes PID  probe placement for PID\n",
};

#define PS_CACHE_MAX 512

struct exe_class {
	dev_t dev;
	ino_t ino;
	enum proc_kind kind;           /* of the executable: go, go+cgo or native */
	struct go_version ver;
	char offsets[8];
	char note[256];
};

struct ps_row {
	pid_t pid;
	char comm[32];
	enum proc_kind kind;
	const struct exe_class *cls;
	struct proc_container container;
};

/* The executable's kind (discover/classify.h), and where a Go one's offsets
 * come from; cached by (dev, inode). */
static const struct exe_class *classify(struct exe_class *cache, size_t *ncache,
					const struct proc_exe *exe)
{
	struct exe_class *c;
	char err[256];
	struct gobin *bin;

	for (size_t i = 0; i < *ncache; i++)
		if (cache[i].dev == exe->dev && cache[i].ino == exe->ino)
			return &cache[i];
	c = &cache[*ncache < PS_CACHE_MAX ? (*ncache)++ : PS_CACHE_MAX - 1];
	memset(c, 0, sizeof(*c));
	c->dev = exe->dev;
	c->ino = exe->ino;
	c->kind = classify_exe(exe->open_path, &c->ver);
	if (c->kind == PROC_NATIVE)
		return c;
	if (gobin_open(exe->open_path, &bin, err, sizeof(err)) == 0) {
		snprintf(c->offsets, sizeof(c->offsets), "%s",
			 gobin_offsets_source(bin));
		gobin_free(bin);
	} else {
		snprintf(c->offsets, sizeof(c->offsets), "none");
		snprintf(c->note, sizeof(c->note), "%s", err);
	}
	return c;
}

int cmd_ps(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ "probes", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct exe_class *cache;
	size_t ncache = 0;
	bool json = false, all = false;
	const char *probes = NULL;
	json_object *arr = NULL;
	struct dirent *de;
	DIR *dir;
	pid_t self = getpid();
	int c, shown = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "jahp:", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'a':
			all = true;
			break;
		case 'p':
			probes = optarg;
			break;
		case 'h':
			command_print_usage(stdout, "ps", &ps_usage);
			return 0;
		default:
			return cli_fail(2, "ps: unknown option or missing value '%s' (see 'memdrift ps --help')",
				       argv[optind - 1]);
		}
	}
	if (optind != argc)
		return cli_fail(2, "ps: unexpected argument '%s'", argv[optind]);
	if (probes) {
		pid_t pid;

		if (parse_pid(probes, &pid) < 0)
			return cli_fail(2, "ps: '%s' is not a PID", probes);
		return cmd_ps_probes(pid, json);
	}

	dir = opendir("/proc");
	if (!dir)
		return cli_fail(1, "cannot read /proc: %s", strerror(errno));
	cache = calloc(PS_CACHE_MAX, sizeof(*cache));
	if (!cache) {
		closedir(dir);
		return cli_fail(1, "out of memory");
	}
	if (json)
		arr = json_object_new_array();
	else
		printf("%8s  %-16s %-8s %-10s %-8s %s\n", "PID", "COMM", "KIND", "GO", "OFFSETS",
		       "CONTAINER");
	while ((de = readdir(dir))) {
		struct proc_exe exe;
		struct ps_row row = { 0 };
		pid_t pid;

		if (parse_pid(de->d_name, &pid) < 0 || pid == self)
			continue;
		if (proc_exe_info(pid, &exe) < 0)
			continue;
		row.pid = pid;
		snprintf(row.comm, sizeof(row.comm), "%s", exe.comm);
		row.cls = classify(cache, &ncache, &exe);
		row.kind = row.cls->kind;
		if (row.kind == PROC_NATIVE && classify_maps_jvm(pid))
			row.kind = PROC_JVM;
		if (!all && row.kind == PROC_NATIVE)
			continue;
		proc_container(pid, &row.container);
		shown++;
		if (json) {
			json_object *o = json_object_new_object();
			bool go = row.cls->kind != PROC_NATIVE;

			json_object_object_add(o, "pid", json_object_new_int(pid));
			json_object_object_add(o, "comm", json_object_new_string(row.comm));
			json_object_object_add(o, "exe", json_object_new_string(exe.exe));
			json_object_object_add(o, "kind", json_object_new_string(proc_kind_name(row.kind)));
			json_object_object_add(o, "go_version",
					       go ? json_object_new_string(row.cls->ver.str) : NULL);
			json_object_object_add(o, "offsets_source",
					       go ? json_object_new_string(row.cls->offsets) : NULL);
			json_object_object_add(o, "container_id", row.container.id[0] ?
					       json_object_new_string(row.container.id) : NULL);
			json_object_object_add(o, "pod_uid", row.container.pod_uid[0] ?
					       json_object_new_string(row.container.pod_uid) : NULL);
			if (row.cls->note[0])
				json_object_object_add(o, "note", json_object_new_string(row.cls->note));
			json_object_array_add(arr, o);
		} else {
			printf("%8d  %-16s %-8s %-10s %-8s %.12s\n", pid, row.comm,
			       proc_kind_name(row.kind), row.cls->kind != PROC_NATIVE ? row.cls->ver.str : "-",
			       row.cls->kind != PROC_NATIVE ? row.cls->offsets : "-",
			       row.container.id[0] ? row.container.id : "-");
		}
	}
	closedir(dir);
	free(cache);
	if (json) {
		puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
		json_object_put(arr);
	} else if (!shown) {
		printf("(no Go or JVM processes found; --all lists every process)\n");
	}
	return 0;
}
