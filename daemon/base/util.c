#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int parse_pid(const char *s, pid_t *pid)
{
	char *end;
	long v;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v <= 0 || v > 4194304)
		return -EINVAL;
	*pid = (pid_t)v;
	return 0;
}

struct scaled_unit {
	const char *suffix;
	double mult;
};

/* A non-negative number ("3", "1.5", ".5") and one of n unit suffixes
 * (ignore_case: compared without case), scaled; -EINVAL above max. */
static int parse_scaled(const char *s, const struct scaled_unit *units, size_t n, bool ignore_case,
			double max, uint64_t *out)
{
	char *end;
	double v;

	if (!s || !*s || (!isdigit((unsigned char)*s) && *s != '.'))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || v < 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (ignore_case ? !strcasecmp(end, units[i].suffix) : !strcmp(end, units[i].suffix)) {
			double r = v * units[i].mult;

			if (r > max)
				return -EINVAL;
			*out = (uint64_t)r;
			return 0;
		}
	}
	return -EINVAL;
}

int parse_duration_ns(const char *s, uint64_t *ns)
{
	static const struct scaled_unit units[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
		{ "m", 60e9 }, { "h", 3600e9 }, { "", 1e9 },
	};

	return parse_scaled(s, units, sizeof(units) / sizeof(units[0]), false, 1e18, ns);
}

int parse_size(const char *s, uint64_t *bytes)
{
	static const struct scaled_unit units[] = {
		{ "", 1 }, { "b", 1 }, { "k", 1024.0 }, { "kib", 1024.0 }, { "kb", 1000.0 },
		{ "m", 1048576.0 }, { "mib", 1048576.0 }, { "mb", 1e6 },
		{ "g", 1073741824.0 }, { "gib", 1073741824.0 }, { "gb", 1e9 },
	};

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL; /* a size starts with a digit: ".5k" is not one */
	return parse_scaled(s, units, sizeof(units) / sizeof(units[0]), true, 1.8e19, bytes);
}

const char *fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lu B", (unsigned long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

const char *fmt_duration(char *buf, size_t len, uint64_t ns)
{
	uint64_t s = ns / 1000000000ull;

	if (s < 60)
		snprintf(buf, len, "%.1fs", ns / 1e9);
	else if (s < 3600)
		snprintf(buf, len, "%lum%02lus", (unsigned long)(s / 60), (unsigned long)(s % 60));
	else
		snprintf(buf, len, "%luh%02lum", (unsigned long)(s / 3600),
			 (unsigned long)(s % 3600 / 60));
	return buf;
}

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t now_monotonic_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t now_realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

const char *path_base(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

int addr_set_init(struct addr_set *s, size_t max)
{
	size_t slots = 16;

	while (slots < 2 * max)
		slots *= 2;
	s->slots = calloc(slots, sizeof(*s->slots));
	if (!s->slots)
		return -ENOMEM;
	s->mask = slots - 1;
	s->n = 0;
	s->max = max;
	return 0;
}

int addr_set_add(struct addr_set *s, uint64_t addr)
{
	size_t i;

	if (!addr)
		return -EINVAL;
	/* Fibonacci hashing: buckets are 8-byte aligned, spread the high bits */
	i = (size_t)((addr * 0x9e3779b97f4a7c15ull) >> 20) & s->mask;
	while (s->slots[i]) {
		if (s->slots[i] == addr)
			return 1;
		i = (i + 1) & s->mask;
	}
	if (s->n >= s->max)
		return -ENOSPC;
	s->slots[i] = addr;
	s->n++;
	return 0;
}

void addr_set_free(struct addr_set *s)
{
	free(s->slots);
	s->slots = NULL;
	s->n = 0;
}

size_t utf8_seq_len(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

int open_new_file(const char *path, mode_t mode)
{
	for (int tries = 0; tries < 2; tries++) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);

		if (fd >= 0)
			return fd;
		if (errno != EEXIST || tries)
			return -errno;
		/* unlink removes a symlink itself, never its target */
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
	}
	return -EEXIST;
}

int make_dirs(const char *path, mode_t mode)
{
	char buf[4096];
	size_t len = strlen(path);
	struct stat st;

	if (!len || len >= sizeof(buf))
		return len ? -ENAMETOOLONG : -EINVAL;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		if (stat(buf, &st) < 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
		buf[i] = i < len ? '/' : '\0';
	}
	return 0;
}

uint64_t hash_fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

uint64_t hash_fnv1a_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}
