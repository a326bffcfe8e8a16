/* hsperfdata reader: see hsperf.h for the format. Every offset in the file is
 * checked against the bytes in use before it is followed. */
#include "watch/hsperf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "discover/proc.h"

#define PROLOGUE_SIZE 32
#define ENTRY_HEADER_SIZE 20

struct reader {
	const uint8_t *p;
	bool swap;
};

static uint32_t rd32(const struct reader *r, size_t off)
{
	uint32_t v;

	memcpy(&v, r->p + off, 4);
	return r->swap ? __builtin_bswap32(v) : v;
}

static uint64_t rd64(const struct reader *r, size_t off)
{
	uint64_t v;

	memcpy(&v, r->p + off, 8);
	return r->swap ? __builtin_bswap64(v) : v;
}

int hsperf_foreach(const void *buf, size_t len,
		   int (*cb)(const struct hsperf_entry *e, void *ctx), void *ctx, char *err,
		   size_t errlen)
{
	const uint8_t *b = buf;
	struct reader r = { .p = b };
	uint32_t magic, used, entry_off, nentries;
	size_t off;

	if (len < PROLOGUE_SIZE)
		return set_err(err, errlen, -EINVAL, "hsperfdata: %zu bytes, shorter than its header",
			       len);
	magic = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	if (magic != HSPERF_MAGIC)
		return set_err(err, errlen, -EINVAL, "hsperfdata: bad magic 0x%08x", magic);
	/* byte_order: 0 big endian, 1 little endian */
	if (b[4] > 1)
		return set_err(err, errlen, -EINVAL, "hsperfdata: bad byte order %u", b[4]);
	r.swap = (b[4] == 0) != (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__);
	if (b[5] != 2)
		return set_err(err, errlen, -EINVAL, "hsperfdata: unsupported version %u.%u", b[5],
			       b[6]);
	used = rd32(&r, 8);
	entry_off = rd32(&r, 24);
	nentries = rd32(&r, 28);
	if (used > len)
		used = (uint32_t)len; /* the file is read while the JVM grows it */
	if (entry_off < PROLOGUE_SIZE || entry_off > used)
		return set_err(err, errlen, -EINVAL, "hsperfdata: entry offset %u out of range",
			       entry_off);
	if (nentries > HSPERF_MAX_ENTRIES)
		nentries = HSPERF_MAX_ENTRIES;

	off = entry_off;
	for (uint32_t i = 0; i < nentries; i++) {
		struct hsperf_entry e;
		uint32_t elen, name_off, vlen, data_off;
		size_t name_max, data_len, elem;

		if (off + ENTRY_HEADER_SIZE > used)
			break;
		elen = rd32(&r, off);
		name_off = rd32(&r, off + 4);
		vlen = rd32(&r, off + 8);
		data_off = rd32(&r, off + 16);
		if (off + elen > used)
			break; /* cut short: the entries before it stand */
		if (elen < ENTRY_HEADER_SIZE || name_off >= elen || data_off > elen)
			return set_err(err, errlen, -EINVAL, "hsperfdata: entry %u malformed", i);
		memset(&e, 0, sizeof(e));
		name_max = elen - name_off;
		if (name_max > sizeof(e.name) - 1)
			name_max = sizeof(e.name) - 1;
		memcpy(e.name, b + off + name_off, name_max);
		e.name[strnlen(e.name, name_max)] = 0;
		e.type = (char)b[off + 12];
		e.units = b[off + 14];
		e.variability = b[off + 15];
		e.vector_length = vlen;
		switch (e.type) {
		case 'J': case 'D': elem = 8; break;
		case 'I': case 'F': elem = 4; break;
		case 'S': case 'C': elem = 2; break;
		default: elem = 1; break;
		}
		data_len = (vlen ? vlen : 1) * elem;
		if (data_off + data_len > elen) {
			off += elen;
			continue; /* data does not fit its entry: skip it, keep walking */
		}
		e.data = (const char *)b + off + data_off;
		e.data_len = data_len;
		if (!vlen && e.type == 'J')
			e.value = (int64_t)rd64(&r, off + data_off);
		else if (!vlen && e.type == 'I')
			e.value = (int32_t)rd32(&r, off + data_off);
		if (cb(&e, ctx))
			break;
		off += elen;
	}
	return 0;
}

struct stats_ctx {
	struct hsperf_stats *s;
	int64_t gc_ticks;
	int64_t hrt_frequency;
};

static void add(int64_t *dst, int64_t v)
{
	*dst = *dst < 0 ? v : *dst + v;
}

/* "sun.gc.generation.<n>.<rest>": the rest, or NULL. */
static const char *after_index(const char *name, const char *prefix, long *index)
{
	size_t n = strlen(prefix);
	char *end;

	if (strncmp(name, prefix, n))
		return NULL;
	*index = strtol(name + n, &end, 10);
	if (end == name + n || *end != '.')
		return NULL;
	return end + 1;
}

static int stats_cb(const struct hsperf_entry *e, void *arg)
{
	struct stats_ctx *c = arg;
	struct hsperf_stats *s = c->s;
	const char *rest;
	long idx, sidx;

	if (e->type == 'B' && e->vector_length && !strcmp(e->name, "sun.gc.policy.name")) {
		size_t n = strnlen(e->data, e->data_len);

		if (n >= sizeof(s->gc_policy))
			n = sizeof(s->gc_policy) - 1;
		memcpy(s->gc_policy, e->data, n);
		s->gc_policy[n] = 0;
		return 0;
	}
	if (e->vector_length || (e->type != 'J' && e->type != 'I'))
		return 0;
	if ((rest = after_index(e->name, "sun.gc.generation.", &idx))) {
		if (!strcmp(rest, "capacity"))
			add(&s->heap_capacity, e->value);
		else if ((rest = after_index(rest, "space.", &sidx)) && !strcmp(rest, "used"))
			add(&s->heap_used, e->value);
	} else if ((rest = after_index(e->name, "sun.gc.collector.", &idx))) {
		if (!strcmp(rest, "invocations")) {
			add(&s->gc_count, e->value);
			if (idx == 0)
				s->gc_young = e->value;
			else if (idx == 1)
				s->gc_full = e->value;
		} else if (!strcmp(rest, "time")) {
			c->gc_ticks += e->value;
		}
	} else if (!strcmp(e->name, "sun.gc.metaspace.used")) {
		s->metaspace_used = e->value;
	} else if (!strcmp(e->name, "java.threads.live")) {
		s->threads_live = e->value;
	} else if (!strcmp(e->name, "java.threads.daemon")) {
		s->threads_daemon = e->value;
	} else if (!strcmp(e->name, "sun.os.hrt.frequency")) {
		c->hrt_frequency = e->value;
	}
	return 0;
}

int hsperf_stats_from_buffer(const void *buf, size_t len, struct hsperf_stats *out, char *err,
			     size_t errlen)
{
	struct stats_ctx c = { .s = out };
	int ret;

	memset(out, 0, sizeof(*out));
	out->heap_used = out->heap_capacity = out->metaspace_used = -1;
	out->gc_count = out->gc_young = out->gc_full = out->gc_time_ns = -1;
	out->threads_live = out->threads_daemon = -1;
	ret = hsperf_foreach(buf, len, stats_cb, &c, err, errlen);
	if (ret)
		return ret;
	if (c.hrt_frequency > 0 && out->gc_count >= 0)
		out->gc_time_ns = (int64_t)((double)c.gc_ticks * 1e9 / (double)c.hrt_frequency);
	return 0;
}

int hsperf_nspid(pid_t pid, pid_t *nspid)
{
	char path[64], buf[4096], *line;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	n = proc_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	line = strstr(buf, "\nNSpid:");
	if (!line) {
		*nspid = pid; /* kernel without NSpid: no pid namespaces in play */
		return 0;
	}
	line += 7;
	for (;;) {
		char *end;
		long v = strtol(line, &end, 10);

		if (end == line)
			break;
		*nspid = (pid_t)v;
		line = end;
	}
	return 0;
}

/* A shared mapping of a file under an hsperfdata_ directory. */
struct hsperf_map {
	pid_t pid;
	char *path;
	size_t len;
};

static int hsperf_map_cb(const struct proc_map *m, void *ctx)
{
	struct hsperf_map *h = ctx;
	const char *p = memmem(m->path, m->path_len, "/hsperfdata_", 12);

	if (!p || m->path[0] != '/' || memmem(m->path, m->path_len, " (deleted)", 10))
		return 0;
	return (size_t)snprintf(h->path, h->len, "/proc/%d/root%.*s", (int)h->pid,
				(int)m->path_len, m->path) < h->len;
}

static int find_in_maps(pid_t pid, char *path, size_t len)
{
	struct hsperf_map h = { pid, path, len };
	int ret = proc_maps_foreach_pid(pid, hsperf_map_cb, &h);

	return ret == 1 ? 0 : ret < 0 ? ret : -ENOENT;
}

int hsperf_find(pid_t pid, char *path, size_t len)
{
	char dir[96];
	pid_t nspid;
	DIR *d;
	struct dirent *de;
	int ret;

	if (!find_in_maps(pid, path, len))
		return 0;
	ret = hsperf_nspid(pid, &nspid);
	if (ret)
		return ret;
	snprintf(dir, sizeof(dir), "/proc/%d/root/tmp", (int)pid);
	d = opendir(dir);
	if (!d)
		return -ENOENT;
	ret = -ENOENT;
	while ((de = readdir(d))) {
		char cand[PATH_MAX];

		if (strncmp(de->d_name, "hsperfdata_", 11))
			continue;
		snprintf(cand, sizeof(cand), "%s/%s/%d", dir, de->d_name, (int)nspid);
		if (!access(cand, R_OK) && strlen(cand) < len) {
			strcpy(path, cand);
			ret = 0;
			break;
		}
	}
	closedir(d);
	return ret;
}

int hsperf_read(const char *path, struct hsperf_stats *out, char *err, size_t errlen)
{
	uint8_t *buf;
	ssize_t n;
	size_t got = 0;
	int fd, ret;

	fd = proc_open_untrusted(path, (64ull << 20), NULL);
	if (fd < 0)
		return set_err(err, errlen, fd, "open %s: %s", path, proc_open_error(fd));
	buf = malloc(HSPERF_MAX_BYTES);
	if (!buf) {
		close(fd);
		return set_err(err, errlen, -ENOMEM, "out of memory");
	}
	while (got < HSPERF_MAX_BYTES && (n = read(fd, buf + got, HSPERF_MAX_BYTES - got)) > 0)
		got += (size_t)n;
	close(fd);
	ret = hsperf_stats_from_buffer(buf, got, out, err, errlen);
	free(buf);
	return ret;
}
