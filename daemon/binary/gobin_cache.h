/* Shared Go binary analyses: one per executable (dev, inode), reference
 * counted, so a host running many replicas of one service analyses its
 * binary once. Bounded: at most max entries held (each in use by at least
 * one process; unused ones are freed at once). */
#ifndef MEMDRIFT_GOBIN_CACHE_H
#define MEMDRIFT_GOBIN_CACHE_H

#include <stddef.h>
#include <sys/types.h>

#include "binary/gobin.h"

struct gobin_cache;

int gobin_cache_new(size_t max, struct gobin_cache **out);
void gobin_cache_free(struct gobin_cache *c);

/* The analysis of the executable (dev, ino), opened through path on a miss.
 * Takes a reference. 0 or negative errno with a reason in err (-ENOSPC
 * when max different executables are in use). */
int gobin_cache_get(struct gobin_cache *c, dev_t dev, ino_t ino, const char *path,
		    struct gobin **out, char *err, size_t errlen);
/* Drops a reference taken by gobin_cache_get. */
void gobin_cache_put(struct gobin_cache *c, struct gobin *bin);

/* Executables held and hits, for metrics and tests. */
size_t gobin_cache_entries(const struct gobin_cache *c);
unsigned long gobin_cache_hits(const struct gobin_cache *c);

#endif
