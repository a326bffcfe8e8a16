#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <time.h>

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
