/* The HotSpot performance-data file (/tmp/hsperfdata_<user>/<pid>): a
 * shared-memory mapping the JVM updates in place; reading it costs the JVM
 * nothing. Layout: a 32-byte prologue (magic 0xcafec0c0 big-endian, byte
 * order, version, used bytes, first entry offset, entry count), then entries
 * (length, name offset, vector length, type char, flags, units, variability,
 * data offset). Parsers take a buffer so tests feed fixtures. */
#ifndef MEMDRIFT_HSPERF_H
#define MEMDRIFT_HSPERF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HSPERF_MAGIC 0xcafec0c0u
#define HSPERF_MAX_BYTES (4u << 20)   /* default PerfDataMemorySize is 64 KiB */
#define HSPERF_MAX_ENTRIES 8192
#define HSPERF_NAME_MAX 128

enum hsperf_units { HSPERF_U_NONE = 1, HSPERF_U_BYTES, HSPERF_U_TICKS, HSPERF_U_EVENTS,
		    HSPERF_U_STRING, HSPERF_U_HERTZ };
enum hsperf_variability { HSPERF_V_CONSTANT = 1, HSPERF_V_MONOTONIC, HSPERF_V_VARIABLE };

struct hsperf_entry {
	char name[HSPERF_NAME_MAX];
	char type;            /* 'J' long, 'B' byte (strings are B vectors), ... */
	int units;            /* enum hsperf_units */
	int variability;      /* enum hsperf_variability */
	uint32_t vector_length; /* 0: scalar */
	int64_t value;        /* scalar 'J' (and 'I') values */
	const char *data;     /* the raw data in the buffer */
	size_t data_len;
};

/* Calls cb for every well-formed entry; cb returning nonzero stops the walk.
 * 0, or -EINVAL (bad magic, unsupported version, offsets out of range) with
 * a reason in err. */
int hsperf_foreach(const void *buf, size_t len,
		   int (*cb)(const struct hsperf_entry *e, void *ctx), void *ctx, char *err,
		   size_t errlen);

/* What memdrift shows beside the JNI counts; -1 where the JVM does not
 * publish the counter. */
struct hsperf_stats {
	int64_t heap_used;      /* sum of sun.gc.generation.*.space.*.used */
	int64_t heap_capacity;  /* sum of sun.gc.generation.*.capacity */
	int64_t metaspace_used; /* sun.gc.metaspace.used */
	int64_t gc_count;       /* sum of sun.gc.collector.*.invocations */
	int64_t gc_young;       /* sun.gc.collector.0.invocations */
	int64_t gc_full;        /* sun.gc.collector.1.invocations */
	int64_t gc_time_ns;     /* sum of sun.gc.collector.*.time, in ns */
	int64_t threads_live;   /* java.threads.live */
	int64_t threads_daemon; /* java.threads.daemon */
	char gc_policy[48];     /* sun.gc.policy.name: "GarbageFirst", ... */
};

int hsperf_stats_from_buffer(const void *buf, size_t len, struct hsperf_stats *out, char *err,
			     size_t errlen);

/* The process's hsperfdata file as memdrift opens it: the path the JVM maps
 * (/proc/PID/maps), else /tmp/hsperfdata_* /<nspid> — both through
 * /proc/PID/root so a JVM in a container works, its pid being the one in its
 * own namespace. 0, -ENOENT (-XX:-UsePerfData or PerfDisableSharedMem). */
int hsperf_find(pid_t pid, char *path, size_t len);
/* Last pid of the NSpid line of /proc/PID/status (the pid the JVM sees). */
int hsperf_nspid(pid_t pid, pid_t *nspid);
/* Reads and parses path. */
int hsperf_read(const char *path, struct hsperf_stats *out, char *err, size_t errlen);

#endif
