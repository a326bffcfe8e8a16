#include "proc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

ssize_t proc_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n, total = 0;
	int fd;

	if (len == 0)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while ((size_t)total < len - 1) {
		n = read(fd, buf + total, len - 1 - total);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			n = -errno;
			close(fd);
			return n;
		}
		if (n == 0)
			break;
		total += n;
	}
	buf[total] = '\0';
	close(fd);
	return total;
}

bool proc_exists(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d", pid);
	return access(path, F_OK) == 0;
}

int proc_exe_info(pid_t pid, struct proc_exe *out)
{
	char path[64];
	struct stat st;
	ssize_t n;

	memset(out, 0, sizeof(*out));
	if (pid <= 0)
		return -ESRCH;
	if (!proc_exists(pid))
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	n = proc_read_file(path, out->comm, sizeof(out->comm));
	if (n < 0)
		return n == -ENOENT ? -ESRCH : (int)n;
	out->comm[strcspn(out->comm, "\n")] = '\0';

	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	n = readlink(path, out->exe, sizeof(out->exe) - 1);
	if (n < 0) {
		/* kernel threads have no exe; EACCES without ptrace rights */
		if (errno == ENOENT)
			return proc_exists(pid) ? -ENOEXEC : -ESRCH;
		return -errno;
	}
	out->exe[n] = '\0';
	if (n > 10 && strcmp(out->exe + n - 10, " (deleted)") == 0) {
		out->deleted = true;
		out->exe[n - 10] = '\0';
	}
	/* /proc/PID/exe opens the file the process runs even when it was
	 * deleted or lives in another mount namespace (a container). */
	snprintf(out->open_path, sizeof(out->open_path), "/proc/%d/exe", pid);
	if (stat(out->open_path, &st) < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	return 0;
}

/* Parses one /proc/PID/maps line. */
static int parse_maps_line(const char *line, uint64_t *start, uint64_t *end, uint64_t *off,
			   unsigned *maj, unsigned *min, unsigned long *ino, const char **path)
{
	size_t len = strcspn(line, "\n");
	char copy[160], perms[8];
	int pos = 0;

	/* the fixed fields fit in 160 bytes; scan a bounded copy of this line
	 * only, so a mapping without a path cannot run into the next line */
	if (len >= sizeof(copy))
		len = sizeof(copy) - 1;
	memcpy(copy, line, len);
	copy[len] = '\0';
	if (sscanf(copy, "%lx-%lx %7s %lx %x:%x %lu%n", start, end, perms, off, maj, min, ino,
		   &pos) < 7)
		return -EINVAL;
	*path = line + pos;
	while (**path == ' ' || **path == '\t')
		(*path)++;
	return 0;
}

int proc_maps_find_start(const char *maps, dev_t dev, ino_t ino, uint64_t *start)
{
	const char *line = maps;
	bool found = false;
	uint64_t best = 0;

	while (line && *line) {
		uint64_t s, e, off;
		unsigned maj, min;
		unsigned long i;
		const char *path;

		if (parse_maps_line(line, &s, &e, &off, &maj, &min, &i, &path) == 0 &&
		    i == (unsigned long)ino && makedev(maj, min) == dev && off == 0 &&
		    (!found || s < best)) {
			best = s;
			found = true;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	if (!found)
		return -ENOENT;
	*start = best;
	return 0;
}

static char *read_maps(pid_t pid, int *err)
{
	char path[64];
	size_t cap = 1 << 16;
	char *buf = NULL;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	for (;;) {
		ssize_t n;
		char *nbuf = realloc(buf, cap);

		if (!nbuf) {
			free(buf);
			*err = -ENOMEM;
			return NULL;
		}
		buf = nbuf;
		n = proc_read_file(path, buf, cap);
		if (n < 0) {
			free(buf);
			*err = n == -ENOENT ? -ESRCH : (int)n;
			return NULL;
		}
		if ((size_t)n < cap - 1)
			return buf;
		if (cap >= (64u << 20)) { /* bounded: 64 MiB of maps is plenty */
			*err = 0;
			return buf;
		}
		cap *= 2;
	}
}

int proc_exe_map_start(pid_t pid, dev_t dev, ino_t ino, uint64_t *start)
{
	int err = 0;
	char *maps = read_maps(pid, &err);

	if (!maps)
		return err;
	err = proc_maps_find_start(maps, dev, ino, start);
	free(maps);
	return err;
}

int proc_find_mapped_lib(pid_t pid, const char *suffix, char *path, size_t pathlen,
			 uint64_t *start)
{
	int err = 0;
	char *maps = read_maps(pid, &err);
	const char *line;
	size_t slen = strlen(suffix);

	if (!maps)
		return err;
	err = -ENOENT;
	for (line = maps; line && *line;) {
		uint64_t s, e, off;
		unsigned maj, min;
		unsigned long ino;
		const char *p;
		size_t plen;

		if (parse_maps_line(line, &s, &e, &off, &maj, &min, &ino, &p) == 0 && off == 0) {
			plen = strcspn(p, "\n");
			if (plen >= slen && strncmp(p + plen - slen, suffix, slen) == 0) {
				snprintf(path, pathlen, "%.*s", (int)plen, p);
				*start = s;
				err = 0;
				break;
			}
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	free(maps);
	return err;
}

int proc_read(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { buf, len }, remote = { (void *)(uintptr_t)addr, len };
	ssize_t n;

	if (len == 0)
		return 0;
	n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	if (n < 0)
		return -errno;
	if ((size_t)n != len)
		return -EFAULT;
	return 0;
}

long proc_read_many(pid_t pid, const uint64_t *addrs, size_t n, size_t elem, void *out,
		    bool *ok)
{
	struct iovec local[IOV_MAX], remote[IOV_MAX];
	uint8_t *dst = out;
	long good = 0;
	size_t i = 0;

	while (i < n) {
		size_t batch = n - i < IOV_MAX ? n - i : IOV_MAX, k;
		ssize_t got;

		for (k = 0; k < batch; k++) {
			local[k].iov_base = dst + (i + k) * elem;
			local[k].iov_len = elem;
			remote[k].iov_base = (void *)(uintptr_t)addrs[i + k];
			remote[k].iov_len = elem;
		}
		got = process_vm_readv(pid, local, batch, remote, batch, 0);
		if (got < 0 && errno == ESRCH)
			return -ESRCH;
		if (got < 0)
			got = 0;
		/* process_vm_readv stops at the first range it cannot read in
		 * full; account the whole ones and retry the rest one by one. */
		k = (size_t)got / elem;
		for (size_t j = 0; j < k; j++)
			if (ok)
				ok[i + j] = true;
		good += k;
		if (k < batch) {
			memset(dst + (i + k) * elem, 0, elem);
			if (proc_read(pid, addrs[i + k], dst + (i + k) * elem, elem) == 0) {
				if (ok)
					ok[i + k] = true;
				good++;
			} else {
				memset(dst + (i + k) * elem, 0, elem);
				if (ok)
					ok[i + k] = false;
			}
			i += k + 1;
			continue;
		}
		i += batch;
	}
	return good;
}

/* A run of exactly n characters of set at p (not inside a longer run). */
static bool run_of(const char *text, const char *p, size_t n, const char *set)
{
	size_t k = 0;

	if (p > text && strchr(set, p[-1]))
		return false;
	while (p[k] && strchr(set, p[k]))
		k++;
	return k == n;
}

int proc_parse_container(const char *text, struct proc_container *c)
{
	static const char hex[] = "0123456789abcdef";
	const char *p;

	c->id[0] = c->pod_uid[0] = '\0';
	for (p = text; *p && !c->id[0]; p++)
		if (strchr(hex, *p) && run_of(text, p, 64, hex)) {
			memcpy(c->id, p, 64);
			c->id[64] = '\0';
		}
	/* pod<uid>: 8-4-4-4-12 hex digits, dashes or (systemd slices) underscores */
	for (p = strstr(text, "pod"); p && !c->pod_uid[0]; p = strstr(p + 1, "pod")) {
		const char *u = p + 3;
		size_t i;

		for (i = 0; i < 36; i++) {
			bool sep = i == 8 || i == 13 || i == 18 || i == 23;

			if (sep ? (u[i] != '-' && u[i] != '_') : !u[i] || !strchr(hex, u[i]))
				break;
			c->pod_uid[i] = sep ? '-' : u[i];
		}
		if (i == 36 && !strchr(hex, u[36]))
			c->pod_uid[36] = '\0';
		else
			c->pod_uid[0] = '\0';
	}
	return c->id[0] ? 0 : -ENOENT;
}

int proc_container(pid_t pid, struct proc_container *c)
{
	char path[64], buf[8192];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	n = proc_read_file(path, buf, sizeof(buf));
	if (n < 0) {
		c->id[0] = c->pod_uid[0] = '\0';
		return (int)n;
	}
	return proc_parse_container(buf, c);
}

int proc_cgroup_path(pid_t pid, char *out, size_t len)
{
	char path[64], buf[8192], *line;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	n = proc_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return n;
	for (line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "0::", 3) == 0) {
			snprintf(out, len, "%s", line + 3);
			return 0;
		}
	}
	return -ENOENT;
}
