/* Reading a live process from outside: /proc, its executable through
 * /proc/PID/root (so containers work), and its memory with process_vm_readv.
 * Parsers take a buffer or a root directory so tests feed fixtures. */
#ifndef MEMDRIFT_PROC_H
#define MEMDRIFT_PROC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_exe {
	char open_path[PATH_MAX + 32]; /* path to open the executable: /proc/PID/exe */
	char exe[PATH_MAX];            /* the executable as the process sees it */
	char comm[32];
	dev_t dev;
	ino_t ino;
	bool deleted;                  /* the file was unlinked after start */
};

/* 0, -ESRCH (no such process), -EACCES, or another negative errno. */
int proc_exe_info(pid_t pid, struct proc_exe *out);

/* One line of /proc/PID/maps. path points into the text (path_len bytes,
 * not NUL-terminated; "" for an anonymous mapping). */
struct proc_map {
	uint64_t start, end, offset;
	char perms[5];
	dev_t dev;
	unsigned long ino;
	const char *path;
	size_t path_len;
};
/* Returns 0 to go on; anything else stops the walk and is returned. */
typedef int (*proc_map_cb)(const struct proc_map *m, void *ctx);

/* The one /proc/PID/maps parser: cb for every well-formed line of maps
 * text (others are skipped). */
int proc_maps_foreach(const char *maps, proc_map_cb cb, void *ctx);
/* /proc/PID/maps read whole (bounded at 64 MiB; free() it), NULL with *err
 * (-ESRCH when the process is gone). */
char *proc_maps_read(pid_t pid, int *err);
/* Both: read, walk, free. A read error is returned as a negative errno. */
int proc_maps_foreach_pid(pid_t pid, proc_map_cb cb, void *ctx);

/* Start address of the lowest mapping of the executable (dev, ino) with file
 * offset 0; load bias = that - gobin_base_vaddr(). -ENOENT when not mapped. */
int proc_exe_map_start(pid_t pid, dev_t dev, ino_t ino, uint64_t *start);
/* Same, parsed from /proc/PID/maps text. */
int proc_maps_find_start(const char *maps, dev_t dev, ino_t ino, uint64_t *start);

/* Executable text mapping of (dev, ino) in /proc/PID/maps text: start, end,
 * file offset of the first executable mapping. 0 or -ENOENT. */
int proc_maps_find_text(const char *maps, dev_t dev, ino_t ino, uint64_t *start, uint64_t *end,
			uint64_t *offset);

/* Finds a mapped object whose path ends with suffix (e.g. "/libjvm.so");
 * path (as in maps) and start of its offset-0 mapping. */
int proc_find_mapped_lib(pid_t pid, const char *suffix, char *path, size_t pathlen,
			 uint64_t *start);

/* Reads remote memory. 0 when all len bytes were read, else negative errno
 * (-EFAULT for an unmapped range, -ESRCH when the process is gone). */
int proc_read(pid_t pid, uint64_t addr, void *buf, size_t len);

/* Reads n ranges of equal size elem (addrs[i] -> out + i*elem) in batches of
 * IOV_MAX. Ranges that fail are zero-filled and their ok[i] cleared (ok may
 * be NULL). Returns the number of ranges read, or a negative errno when the
 * process is gone. */
long proc_read_many(pid_t pid, const uint64_t *addrs, size_t n, size_t elem, void *out,
		    bool *ok);

/* What /proc/PID/cgroup says about the container a process runs in: the
 * container id (64 hex digits: docker-<id>.scope, cri-containerd-<id>.scope,
 * libpod-<id>, /docker/<id>, /kubepods/.../<id>) and, under Kubernetes, the
 * pod UID (kubepods...pod<uid>, '_' in systemd slice names read as '-').
 * Container names are not in cgroup paths. Fields "" when absent. */
struct proc_container {
	char id[65];
	char pod_uid[37];
};

/* 0, or -ENOENT when the process is in no container (fields ""), or the
 * error reading the file. */
int proc_container(pid_t pid, struct proc_container *c);
int proc_parse_container(const char *cgroup_text, struct proc_container *c);

/* cgroup path (v2 unified line) of the process. */
int proc_cgroup_path(pid_t pid, char *path, size_t len);

/* Reads a small /proc file into buf (NUL-terminated). Bytes read or -errno. */
ssize_t proc_read_file(const char *path, char *buf, size_t len);

bool proc_exists(pid_t pid);
/* The process's start time (/proc/PID/stat field 22, clock ticks since
 * boot): with the pid, names one process across PID reuse. 0 or -ESRCH. */
int proc_start_time(pid_t pid, uint64_t *ticks);

/* Opens, for reading, a file whose path a target influences (its hsperfdata,
 * its mapped libjvm/libc, its executable), so that nothing the target placed
 * there can block or redirect the daemon:
 *  - O_NONBLOCK: opening a FIFO never waits for a writer;
 *  - a path under /proc/PID/root/ is resolved inside that root (openat2
 *    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): an absolute symlink in the
 *    target's tree cannot name the host's files; its last component must not
 *    be a symlink (O_NOFOLLOW);
 *  - any other /proc/ path (/proc/PID/exe, /proc/PID/map_files/, /proc/self/fd/)
 *    is a kernel magic link naming the mapped file itself: followed, as is
 *    any other path (given by the operator: a CLI argument, a test fixture);
 *  - then fstat: a regular file of at most max_size bytes.
 * Returns an fd (O_CLOEXEC, O_NONBLOCK cleared) and its size in *size (may be
 * NULL), or -errno: -ELOOP (a symlink), -EISDIR, -EINVAL (not a regular
 * file), -EFBIG (over max_size). proc_open_error() words these. */
#define PROC_MAX_ELF_FILE (4ull << 30) /* executables and libraries */
int proc_open_untrusted(const char *path, uint64_t max_size, uint64_t *size);
/* Up to len bytes of the ELF file at path (opened as above, at most
 * PROC_MAX_ELF_FILE) from file offset off: the count read (> 0), or a
 * negative errno (-EIO for nothing there). */
int proc_read_file_at(const char *path, uint64_t off, void *buf, size_t len);
const char *proc_open_error(int err);

#endif
