#include "discover/target.h"

#include <errno.h>
#include <string.h>

#include "base/log.h"
#include "binary/gobin_cache.h"
#include "probe/probe_place.h"

int go_target_open(pid_t pid, struct go_target *t, char *err, size_t errlen)
{
	return go_target_open_cached(pid, t, NULL, err, errlen);
}

static void release_bin(struct go_target *t)
{
	if (t->cache)
		gobin_cache_put(t->cache, t->bin);
	else
		gobin_free(t->bin);
	t->bin = NULL;
}

int go_target_open_cached(pid_t pid, struct go_target *t, struct gobin_cache *cache, char *err,
			  size_t errlen)
{
	uint64_t start;
	int ret;

	memset(t, 0, sizeof(*t));
	t->pid = pid;
	ret = proc_exe_info(pid, &t->exe);
	if (ret == -ESRCH)
		return set_err(err, errlen, ret, "no process with PID %d", pid);
	if (ret == -EACCES || ret == -EPERM)
		return set_err(err, errlen, ret,
			       "permission denied reading PID %d (need root or CAP_SYS_PTRACE)", pid);
	if (ret == -ENOEXEC)
		return set_err(err, errlen, ret, "PID %d has no executable (kernel thread?)", pid);
	if (ret < 0)
		return set_err(err, errlen, ret, "PID %d: %s", pid, strerror(-ret));

	t->cache = cache;
	if (cache)
		ret = gobin_cache_get(cache, t->exe.dev, t->exe.ino, t->exe.open_path, &t->bin, err,
				      errlen);
	else
		ret = gobin_open(t->exe.open_path, &t->bin, err, errlen);
	if (ret < 0) {
		char inner[512];

		/* name the process, not /proc/PID/exe, in the message */
		snprintf(inner, sizeof(inner), "%s", err ? err : "");
		if (strncmp(inner, t->exe.open_path, strlen(t->exe.open_path)) == 0) {
			const char *rest = inner + strlen(t->exe.open_path);

			set_err(err, errlen, ret, "PID %d (%s)%s", pid, t->exe.exe, rest);
		} else if (err) {
			set_err(err, errlen, ret, "PID %d (%s): %s", pid, t->exe.exe, inner);
		}
		if (!proc_exists(pid))
			set_err(err, errlen, -ESRCH, "process %d exited", pid);
		return ret;
	}

	if (gobin_is_pie(t->bin)) {
		ret = proc_exe_map_start(pid, t->exe.dev, t->exe.ino, &start);
		if (ret < 0) {
			release_bin(t);
			if (ret == -ESRCH || !proc_exists(pid))
				return set_err(err, errlen, -ESRCH, "process %d exited", pid);
			return set_err(err, errlen, ret, "PID %d: executable mapping not found in maps",
				       pid);
		}
		t->bias = start - gobin_base_vaddr(t->bin);
	}
	return 0;
}

void go_target_close(struct go_target *t)
{
	if (t->bin)
		release_bin(t);
}

int go_target_func_body(const struct go_target *t, const char *name, struct gobin_func *f)
{
	uint8_t head[32];
	uint64_t body;
	ssize_t got;

	if (gobin_func_by_name(t->bin, name, f))
		return -ENOENT;
	got = gobin_read_vaddr(t->bin, f->entry, head, sizeof(head));
	if (got > 0 && !probe_abi0_wrapper_target_x86(head, (size_t)got, f->entry, &body) &&
	    body != f->entry) {
		log_debug("%s: %s at %#llx is an ABI0 wrapper of %#llx", t->exe.exe, name,
			  (unsigned long long)f->entry, (unsigned long long)body);
		f->entry = body;
		f->end = 0;
	}
	return 0;
}

uint64_t go_target_global(const struct go_target *t, const char *name)
{
	uint64_t addr;

	if (gobin_global(t->bin, name, &addr) < 0)
		return 0;
	return addr + t->bias;
}
