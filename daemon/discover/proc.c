#include "discover/proc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* "/proc/123/root/x" -> length of "/proc/123/root" (0 when not such a path). */
static size_t proc_root_prefix(const char *path)
{
	const char *p = path + 6;

	if (strncmp(path, "/proc/", 6) || !isdigit((unsigned char)*p))
		return 0;
	while (isdigit((unsigned char)*p))
		p++;
	if (strncmp(p, "/root/", 6))
		return 0;
	return (size_t)(p + 5 - path);
}

static int open_in_root(const char *path, size_t rootlen, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)flags,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	char root[64];
	int dfd, fd, e;

	if (rootlen >= sizeof(root))
		return -ENAMETOOLONG;
	memcpy(root, path, rootlen);
	root[rootlen] = '\0';
	dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fd = (int)syscall(SYS_openat2, dfd, path + rootlen + 1, &how, sizeof(how));
	e = errno;
	close(dfd);
	if (fd >= 0)
		return fd;
	if (e != ENOSYS)
		return -e;
	/* before Linux 5.6: the last component is still never followed */
	fd = open(path, flags);
	return fd < 0 ? -errno : fd;
}

int proc_open_untrusted(const char *path, uint64_t max_size, uint64_t *size)
{
	const int base = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
	size_t rootlen = proc_root_prefix(path);
	struct stat st;
	int fd;

	if (rootlen) {
		fd = open_in_root(path, rootlen, base | O_NOFOLLOW);
	} else {
		/* other /proc/ paths are kernel magic links; others the operator's */
		fd = open(path, base);
		if (fd < 0)
			fd = -errno;
	}
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	if ((uint64_t)st.st_size > max_size) {
		close(fd);
		return -EFBIG;
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (size)
		*size = (uint64_t)st.st_size;
	return fd;
}

int proc_read_file_at(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = proc_open_untrusted(path, PROC_MAX_ELF_FILE, NULL);
	ssize_t n;

	if (fd < 0)
		return fd;
	n = pread(fd, buf, len, (off_t)off);
	close(fd);
	return n > 0 ? (int)n : -EIO;
}

const char *proc_open_error(int err)
{
	switch (err) {
	case -ELOOP:
		return "a symbolic link (refused)";
	case -EISDIR:
		return "a directory, not a regular file";
	case -EINVAL:
		return "not a regular file (FIFO, socket or device refused)";
	case -EFBIG:
		return "file too large";
	case -EXDEV:
		return "path escapes the process's root (refused)";
	default:
		return strerror(-err);
	}
}

int proc_start_time(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[1024], *p;
	int field = 2;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (proc_read_file(path, buf, sizeof(buf)) < 0)
		return -ESRCH;
	p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	if (!p)
		return -ESRCH;
	while (*p && field < 22)
		if (*p++ == ' ')
			field++;
	if (field != 22 || !isdigit((unsigned char)*p))
		return -ESRCH;
	*ticks = strtoull(p, NULL, 10);
	return 0;
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
static int parse_maps_line(const char *line, struct proc_map *m)
{
	size_t len = strcspn(line, "\n");
	unsigned long long start, end, off, ino;
	unsigned maj, min;
	char copy[160], perms[8];
	int pos = 0;

	/* the fixed fields fit in 160 bytes; scan a bounded copy of this line
	 * only, so a mapping without a path cannot run into the next line */
	if (len >= sizeof(copy))
		len = sizeof(copy) - 1;
	memcpy(copy, line, len);
	copy[len] = '\0';
	if (sscanf(copy, "%llx-%llx %7s %llx %x:%x %llu%n", &start, &end, perms, &off, &maj, &min,
		   &ino, &pos) < 7 || pos <= 0)
		return -EINVAL;
	*m = (struct proc_map){ .start = start, .end = end, .offset = off,
				.dev = makedev(maj, min), .ino = ino };
	snprintf(m->perms, sizeof(m->perms), "%.4s", perms);
	m->path = line + pos;
	while (*m->path == ' ' || *m->path == '\t')
		m->path++;
	m->path_len = strcspn(m->path, "\n");
	return 0;
}

int proc_maps_foreach(const char *maps, proc_map_cb cb, void *ctx)
{
	for (const char *line = maps; line && *line;) {
		struct proc_map m;
		int ret;

		if (parse_maps_line(line, &m) == 0 && (ret = cb(&m, ctx)) != 0)
			return ret;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return 0;
}

char *proc_maps_read(pid_t pid, int *err)
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

int proc_maps_foreach_pid(pid_t pid, proc_map_cb cb, void *ctx)
{
	int err = 0;
	char *maps = proc_maps_read(pid, &err);

	if (!maps)
		return err;
	err = proc_maps_foreach(maps, cb, ctx);
	free(maps);
	return err;
}

struct find_start {
	dev_t dev;
	ino_t ino;
	bool found;
	uint64_t best;
};

static int find_start_cb(const struct proc_map *m, void *ctx)
{
	struct find_start *f = ctx;

	if (m->ino == (unsigned long)f->ino && m->dev == f->dev && m->offset == 0 &&
	    (!f->found || m->start < f->best)) {
		f->best = m->start;
		f->found = true;
	}
	return 0;
}

int proc_maps_find_start(const char *maps, dev_t dev, ino_t ino, uint64_t *start)
{
	struct find_start f = { .dev = dev, .ino = ino };

	proc_maps_foreach(maps, find_start_cb, &f);
	if (!f.found)
		return -ENOENT;
	*start = f.best;
	return 0;
}

struct find_text {
	dev_t dev;
	ino_t ino;
	uint64_t *start, *end, *offset;
};

static int find_text_cb(const struct proc_map *m, void *ctx)
{
	struct find_text *f = ctx;

	if (m->perms[2] != 'x' || m->ino != (unsigned long)f->ino || m->dev != f->dev)
		return 0;
	*f->start = m->start;
	*f->end = m->end;
	*f->offset = m->offset;
	return 1;
}

int proc_maps_find_text(const char *maps, dev_t dev, ino_t ino, uint64_t *start, uint64_t *end,
			uint64_t *offset)
{
	struct find_text f = { dev, ino, start, end, offset };

	return proc_maps_foreach(maps, find_text_cb, &f) == 1 ? 0 : -ENOENT;
}

int proc_exe_map_start(pid_t pid, dev_t dev, ino_t ino, uint64_t *start)
{
	int err = 0;
	char *maps = proc_maps_read(pid, &err);

	if (!maps)
		return err;
	err = proc_maps_find_start(maps, dev, ino, start);
	free(maps);
	return err;
}

struct find_lib {
	const char *suffix;
	size_t slen;
	char *path;
	size_t pathlen;
	uint64_t *start;
};

static int find_lib_cb(const struct proc_map *m, void *ctx)
{
	struct find_lib *f = ctx;

	if (m->offset != 0 || m->path_len < f->slen ||
	    strncmp(m->path + m->path_len - f->slen, f->suffix, f->slen))
		return 0;
	snprintf(f->path, f->pathlen, "%.*s", (int)m->path_len, m->path);
	*f->start = m->start;
	return 1;
}

int proc_find_mapped_lib(pid_t pid, const char *suffix, char *path, size_t pathlen,
			 uint64_t *start)
{
	struct find_lib f = { suffix, strlen(suffix), path, pathlen, start };
	int ret = proc_maps_foreach_pid(pid, find_lib_cb, &f);

	return ret == 1 ? 0 : ret < 0 ? ret : -ENOENT;
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

/* Readable ranges of a process (its maps, 'r' permission, adjacent ones
 * merged), sorted: lets proc_read_many refuse a pointer into nothing
 * without a syscall. */
struct rrange {
	uint64_t lo, hi;
};

struct rranges {
	struct rrange *v;
	size_t n, cap;
};

static int readable_cb(const struct proc_map *m, void *ctx)
{
	struct rranges *r = ctx;

	if (m->perms[0] != 'r')
		return 0;
	if (r->n && r->v[r->n - 1].hi == m->start) {
		r->v[r->n - 1].hi = m->end;
		return 0;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256;
		struct rrange *nv = realloc(r->v, cap * sizeof(*nv));

		if (!nv)
			return 1;
		r->v = nv;
		r->cap = cap;
	}
	r->v[r->n++] = (struct rrange){ m->start, m->end };
	return 0;
}

static size_t readable_ranges(pid_t pid, struct rrange **out)
{
	struct rranges r = { 0 };

	proc_maps_foreach_pid(pid, readable_cb, &r);
	*out = r.v;
	return r.n;
}

static bool range_readable(const struct rrange *v, size_t n, uint64_t addr, size_t len)
{
	size_t lo = 0, hi = n;

	if (addr + len < addr)
		return false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].hi <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].lo <= addr && addr + len <= v[lo].hi;
}

long proc_read_many(pid_t pid, const uint64_t *addrs, size_t n, size_t elem, void *out,
		    bool *ok)
{
	struct iovec local[IOV_MAX], remote[IOV_MAX];
	size_t idx[IOV_MAX];
	struct rrange *ranges = NULL;
	size_t nranges = 0;
	bool have_ranges = false;
	uint8_t *dst = out;
	long good = 0;
	size_t i = 0;

	if (ok && n)
		memset(ok, 0, n * sizeof(*ok));
	if (elem == 0)
		return 0;
	while (i < n) {
		size_t batch = 0, k = 0;

		/* a batch of the ranges that may be readable; once a read has
		 * failed, pointers into no readable mapping are refused here */
		for (; i < n && batch < IOV_MAX; i++) {
			if (have_ranges && !range_readable(ranges, nranges, addrs[i], elem)) {
				memset(dst + i * elem, 0, elem);
				continue;
			}
			local[batch] = (struct iovec){ dst + i * elem, elem };
			remote[batch] = (struct iovec){ (void *)(uintptr_t)addrs[i], elem };
			idx[batch++] = i;
		}
		/* process_vm_readv stops at the first range it cannot read in
		 * full: that one is unreadable (retrying it alone gives the
		 * same), so mark it and go on with the rest of the batch in
		 * place: one syscall per failure, each iovec filled once. */
		while (k < batch) {
			ssize_t got = process_vm_readv(pid, local + k, batch - k, remote + k,
						       batch - k, 0);
			size_t whole;

			if (got < 0 && errno == ESRCH) {
				free(ranges);
				return -ESRCH;
			}
			whole = got < 0 ? 0 : (size_t)got / elem;
			for (size_t j = 0; j < whole; j++)
				if (ok)
					ok[idx[k + j]] = true;
			good += (long)whole;
			k += whole;
			if (k < batch) {
				memset(local[k].iov_base, 0, elem);
				k++;
				if (!have_ranges) {
					nranges = readable_ranges(pid, &ranges);
					have_ranges = true;
				}
			}
		}
	}
	free(ranges);
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
