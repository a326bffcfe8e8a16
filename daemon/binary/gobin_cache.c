#include "binary/gobin_cache.h"

#include <errno.h>
#include <stdlib.h>

#include "base/log.h"

struct cache_entry {
	dev_t dev;
	ino_t ino;
	struct gobin *bin;
	unsigned refs;
};

struct gobin_cache {
	struct cache_entry *e;
	size_t n, max;
	unsigned long hits;
};

int gobin_cache_new(size_t max, struct gobin_cache **out)
{
	struct gobin_cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c || !max)
		goto fail;
	c->e = calloc(max, sizeof(*c->e));
	if (!c->e)
		goto fail;
	c->max = max;
	*out = c;
	return 0;
fail:
	free(c);
	return max ? -ENOMEM : -EINVAL;
}

void gobin_cache_free(struct gobin_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		gobin_free(c->e[i].bin);
	free(c->e);
	free(c);
}

int gobin_cache_get(struct gobin_cache *c, dev_t dev, ino_t ino, const char *path,
		    struct gobin **out, char *err, size_t errlen)
{
	struct gobin *bin;
	int ret;

	for (size_t i = 0; i < c->n; i++) {
		if (c->e[i].dev == dev && c->e[i].ino == ino) {
			c->e[i].refs++;
			c->hits++;
			*out = c->e[i].bin;
			return 0;
		}
	}
	if (c->n >= c->max)
		return set_err(err, errlen, -ENOSPC, "%zu different executables already analysed",
			       c->max);
	ret = gobin_open(path, &bin, err, errlen);
	if (ret < 0)
		return ret;
	c->e[c->n++] = (struct cache_entry){ dev, ino, bin, 1 };
	*out = bin;
	return 0;
}

void gobin_cache_put(struct gobin_cache *c, struct gobin *bin)
{
	for (size_t i = 0; i < c->n; i++) {
		if (c->e[i].bin != bin)
			continue;
		if (--c->e[i].refs == 0) {
			gobin_free(bin);
			c->e[i] = c->e[--c->n];
		}
		return;
	}
}

size_t gobin_cache_entries(const struct gobin_cache *c)
{
	return c->n;
}

unsigned long gobin_cache_hits(const struct gobin_cache *c)
{
	return c->hits;
}
