#include "discover/classify.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"

#if defined(__aarch64__)
#define MACHINE_NAME "aarch64"
#else
#define MACHINE_NAME "x86_64"
#endif

const char *proc_kind_name(enum proc_kind k)
{
	switch (k) {
	case PROC_GO: return "go";
	case PROC_GO_CGO: return "go+cgo";
	case PROC_JVM: return "jvm";
	default: return "native";
	}
}

const char *libc_kind_name(enum libc_kind k)
{
	return k == LIBC_GLIBC ? "glibc" : k == LIBC_MUSL ? "musl" : "none";
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

enum libc_kind classify_libc_soname(const char *needed)
{
	if (!strcmp(needed, "libc.so.6"))
		return LIBC_GLIBC;
	if (!strcmp(needed, "libc.so") || (starts(needed, "libc.musl-") && ends(needed, ".so.1")))
		return LIBC_MUSL;
	return LIBC_NONE;
}

enum libc_kind classify_libc_path(const char *path)
{
	const char *base = path_base(path);

	if (!strcmp(base, "libc.so.6"))
		return LIBC_GLIBC;
	if ((starts(base, "ld-musl-") || starts(base, "libc.musl-")) && ends(base, ".so.1"))
		return LIBC_MUSL;
	if (!strcmp(base, "libc.so") && base - path >= 6 && !strncmp(base - 6, "-musl/", 6))
		return LIBC_MUSL;
	return LIBC_NONE;
}

/* How each libc shows in maps, as suffixes for proc_find_mapped_lib; the
 * path found is checked with classify_libc_path. */
static const char *const libc_suffixes[] = {
	"/libc.so.6",                      /* glibc */
	"-linux-musl/libc.so",             /* Debian's musl */
	"/ld-musl-" MACHINE_NAME ".so.1",  /* Alpine: the loader is the libc */
	"/libc.musl-" MACHINE_NAME ".so.1",
};

int classify_process_libc(pid_t pid, char *path, size_t pathlen, uint64_t *start,
			  enum libc_kind *kind)
{
	int ret = -ENOENT;

	for (size_t i = 0; i < sizeof(libc_suffixes) / sizeof(libc_suffixes[0]); i++) {
		ret = proc_find_mapped_lib(pid, libc_suffixes[i], path, pathlen, start);
		if (ret == 0) {
			*kind = classify_libc_path(path);
			if (*kind != LIBC_NONE)
				return 0;
			ret = -ENOENT;
		} else if (ret != -ENOENT) {
			return ret;
		}
	}
	*kind = LIBC_NONE;
	return ret;
}

bool classify_maps_jvm(pid_t pid)
{
	char path[PATH_MAX];
	uint64_t start;

	return proc_find_mapped_lib(pid, "/libjvm.so", path, sizeof(path), &start) == 0;
}

enum proc_kind classify_exe(const char *open_path, struct go_version *ver)
{
	enum gobin_kind kind = GOBIN_NOT_GO;
	struct go_version v = { 0 };
	char err[256];

	if (gobin_classify(open_path, &kind, &v, err, sizeof(err)) < 0)
		kind = GOBIN_NOT_GO;
	if (ver)
		*ver = v;
	return kind == GOBIN_GO_CGO ? PROC_GO_CGO : kind == GOBIN_GO ? PROC_GO : PROC_NATIVE;
}

enum proc_kind classify_exe_cached(struct classify_cache *c, const struct proc_exe *exe,
				   struct go_version *ver)
{
	struct classify_entry *e;

	for (size_t i = 0; i < c->n; i++)
		if (c->e[i].dev == exe->dev && c->e[i].ino == exe->ino) {
			if (ver)
				*ver = c->e[i].ver;
			return c->e[i].kind;
		}
	e = &c->e[c->n < CLASSIFY_CACHE_MAX ? c->n++ : c->next++ % CLASSIFY_CACHE_MAX];
	e->dev = exe->dev;
	e->ino = exe->ino;
	e->kind = classify_exe(exe->open_path, &e->ver);
	if (ver)
		*ver = e->ver;
	return e->kind;
}

enum proc_kind classify_process(pid_t pid, const struct proc_exe *exe, struct go_version *ver)
{
	enum proc_kind k = classify_exe(exe->open_path, ver);

	if (k == PROC_NATIVE && classify_maps_jvm(pid))
		k = PROC_JVM;
	return k;
}
