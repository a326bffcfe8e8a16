/* pprof profile builder: interned tables while building (strings,
 * mappings, functions, locations, samples); the protobuf-c message tree is
 * built only at encode time (output/pprof_encode.c). */
#include "output/pprof.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "output/pprof_internal.h"



/* Grows *arr to hold at least need elements of size elem. */
static int grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	void **p = arr;
	size_t ncap;
	void *q;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	q = realloc(*p, ncap * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = ncap;
	return 0;
}

static uint64_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t hash_str(const char *s)
{
	return hash_fnv1a_str(HASH_FNV1A_INIT, s);
}

static uint64_t idmap_get(const struct idmap *m, uint64_t key)
{
	if (!m->cap)
		return 0;
	for (size_t i = hash64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->vals[i])
			return 0;
		if (m->keys[i] == key)
			return m->vals[i];
	}
}

static int idmap_put(struct idmap *m, uint64_t key, uint64_t val)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct idmap bigger = { .cap = m->cap ? m->cap * 2 : 256 };

		bigger.keys = calloc(bigger.cap, sizeof(*bigger.keys));
		bigger.vals = calloc(bigger.cap, sizeof(*bigger.vals));
		if (!bigger.keys || !bigger.vals) {
			free(bigger.keys);
			free(bigger.vals);
			return -ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->vals[i])
				idmap_put(&bigger, m->keys[i], m->vals[i]);
		free(m->keys);
		free(m->vals);
		*m = bigger;
	}
	for (size_t i = hash64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->vals[i]) {
			m->keys[i] = key;
			m->vals[i] = val;
			m->n++;
			return 0;
		}
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
	}
}

static void idmap_free(struct idmap *m)
{
	free(m->keys);
	free(m->vals);
}

static int str_rehash(struct pprof_builder *b, size_t cap)
{
	uint32_t *slots = calloc(cap, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 1; i < b->nstrs; i++) {
		size_t j = hash_str(b->strs[i]) & (cap - 1);

		while (slots[j])
			j = (j + 1) & (cap - 1);
		slots[j] = (uint32_t)(i + 1);
	}
	free(b->str_slots);
	b->str_slots = slots;
	b->str_cap = cap;
	return 0;
}

/* String table index of s (interned); "" and NULL are index 0. */
static int64_t str_index(struct pprof_builder *b, const char *s)
{
	size_t j;
	char *copy;

	if (!s || !*s)
		return 0;
	if ((b->nstrs + 1) * 2 > b->str_cap && str_rehash(b, b->str_cap * 2) < 0)
		return -ENOMEM;
	for (j = hash_str(s) & (b->str_cap - 1); b->str_slots[j]; j = (j + 1) & (b->str_cap - 1))
		if (strcmp(b->strs[b->str_slots[j] - 1], s) == 0)
			return b->str_slots[j] - 1;
	if (b->nstrs >= PPROF_MAX_STRINGS)
		return -E2BIG;
	if (grow(&b->strs, &b->cstrs, b->nstrs + 1, sizeof(*b->strs)) < 0 || !(copy = strdup(s)))
		return -ENOMEM;
	b->strs[b->nstrs] = copy;
	b->str_slots[j] = (uint32_t)(b->nstrs + 1);
	return (int64_t)b->nstrs++;
}

int pprof_builder_new(const struct pprof_value_type *sample_types, size_t ntypes,
		      struct pprof_builder **out)
{
	struct pprof_builder *b;

	*out = NULL;
	if (!ntypes || ntypes > PPROF_MAX_SAMPLE_TYPES)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->strs = calloc(16, sizeof(*b->strs));
	b->cstrs = 16;
	if (!b->strs || !(b->strs[0] = strdup("")) || str_rehash(b, 1024) < 0)
		goto nomem;
	b->nstrs = 1;
	b->ntypes = ntypes;
	for (size_t i = 0; i < ntypes; i++) {
		b->type[i] = str_index(b, sample_types[i].type);
		b->unit[i] = str_index(b, sample_types[i].unit);
		if (b->type[i] < 0 || b->unit[i] < 0)
			goto nomem;
	}
	*out = b;
	return 0;
nomem:
	pprof_builder_free(b);
	return -ENOMEM;
}

void pprof_builder_free(struct pprof_builder *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nstrs; i++)
		free(b->strs[i]);
	free(b->strs);
	free(b->str_slots);
	free(b->comments);
	free(b->funcs);
	idmap_free(&b->func_ids);
	free(b->locs);
	idmap_free(&b->loc_ids);
	free(b->lines);
	free(b->maps);
	free(b->samples);
	free(b->sample_locs);
	free(b->values);
	free(b->labels);
	free(b);
}

int pprof_set_period(struct pprof_builder *b, const char *type, const char *unit, int64_t period)
{
	int64_t t = str_index(b, type), u = str_index(b, unit);

	if (t < 0 || u < 0)
		return t < 0 ? (int)t : (int)u;
	b->period_type = t;
	b->period_unit = u;
	b->period = period;
	b->has_period = true;
	return 0;
}

int pprof_set_default_sample_type(struct pprof_builder *b, const char *type)
{
	for (size_t i = 0; i < b->ntypes; i++) {
		if (strcmp(b->strs[b->type[i]], type) == 0) {
			b->default_sample_type = b->type[i];
			return 0;
		}
	}
	return -EINVAL;
}

int pprof_set_drop_frames(struct pprof_builder *b, const char *regexp)
{
	int64_t i = str_index(b, regexp);

	if (i < 0)
		return (int)i;
	b->drop_frames = i;
	return 0;
}

int pprof_set_keep_frames(struct pprof_builder *b, const char *regexp)
{
	int64_t i = str_index(b, regexp);

	if (i < 0)
		return (int)i;
	b->keep_frames = i;
	return 0;
}

void pprof_set_time(struct pprof_builder *b, int64_t time_nanos, int64_t duration_nanos)
{
	b->time_nanos = time_nanos;
	b->duration_nanos = duration_nanos;
}

int pprof_add_comment(struct pprof_builder *b, const char *comment)
{
	int64_t i = str_index(b, comment);

	if (i < 0)
		return (int)i;
	if (b->ncomments >= 64)
		return -E2BIG;
	if (grow(&b->comments, &b->ccomments, b->ncomments + 1, sizeof(*b->comments)) < 0)
		return -ENOMEM;
	b->comments[b->ncomments++] = i;
	return 0;
}

int pprof_add_mapping(struct pprof_builder *b, uint64_t start, uint64_t limit,
		      uint64_t file_offset, const char *filename, const char *build_id,
		      bool has_functions, uint64_t *id)
{
	int64_t f = str_index(b, filename), bid = str_index(b, build_id);

	if (f < 0 || bid < 0)
		return f < 0 ? (int)f : (int)bid;
	if (limit < start)
		return -EINVAL;
	if (b->nmaps >= PPROF_MAX_MAPPINGS)
		return -E2BIG;
	if (grow(&b->maps, &b->cmaps, b->nmaps + 1, sizeof(*b->maps)) < 0)
		return -ENOMEM;
	b->maps[b->nmaps++] = (struct pb_mapping){ start, limit, file_offset, f, bid, has_functions };
	if (id)
		*id = b->nmaps;
	return 0;
}

uint64_t pprof_find_location(const struct pprof_builder *b, uint64_t address)
{
	return idmap_get(&b->loc_ids, address);
}

static int function_id(struct pprof_builder *b, const struct pprof_frame *fr, uint64_t *id)
{
	int64_t name = str_index(b, fr->function && *fr->function ? fr->function : "??");
	int64_t sys = fr->system_name ? str_index(b, fr->system_name) : name;
	int64_t file = str_index(b, fr->file);
	uint64_t key, found;

	if (name < 0 || sys < 0 || file < 0)
		return name < 0 ? (int)name : sys < 0 ? (int)sys : (int)file;
	/* string indices are below 2^21, so the three fit one key */
	key = (uint64_t)name | (uint64_t)file << 21 | (uint64_t)sys << 42;
	found = idmap_get(&b->func_ids, key);
	if (found) {
		*id = found;
		return 0;
	}
	if (grow(&b->funcs, &b->cfuncs, b->nfuncs + 1, sizeof(*b->funcs)) < 0)
		return -ENOMEM;
	b->funcs[b->nfuncs] = (struct pb_function){ name, sys, file, fr->start_line };
	if (idmap_put(&b->func_ids, key, b->nfuncs + 1) < 0)
		return -ENOMEM;
	*id = ++b->nfuncs;
	return 0;
}

int pprof_add_location(struct pprof_builder *b, uint64_t address, const struct pprof_frame *frames,
		       size_t nframes, uint64_t *id)
{
	uint64_t found = idmap_get(&b->loc_ids, address), mapping = 0;
	int ret;

	if (found) {
		if (id)
			*id = found;
		return 0;
	}
	if (nframes > PPROF_MAX_FRAMES)
		nframes = PPROF_MAX_FRAMES;
	if (b->nlocs >= PPROF_MAX_LOCATIONS)
		return -E2BIG;
	if (grow(&b->locs, &b->clocs, b->nlocs + 1, sizeof(*b->locs)) < 0 ||
	    grow(&b->lines, &b->clines, b->nlines + nframes, sizeof(*b->lines)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < b->nmaps; i++) {
		if (address >= b->maps[i].start && address < b->maps[i].limit) {
			mapping = i + 1;
			break;
		}
	}
	for (size_t i = 0; i < nframes; i++) {
		ret = function_id(b, &frames[i], &b->lines[b->nlines + i].function_id);
		if (ret < 0)
			return ret;
		b->lines[b->nlines + i].line = frames[i].line;
	}
	b->locs[b->nlocs] = (struct pb_location){ address, mapping, (uint32_t)b->nlines,
						  (uint32_t)nframes };
	if (idmap_put(&b->loc_ids, address, b->nlocs + 1) < 0)
		return -ENOMEM;
	b->nlines += nframes;
	b->nlocs++;
	if (id)
		*id = b->nlocs;
	return 0;
}

int pprof_add_sample(struct pprof_builder *b, const uint64_t *location_ids, size_t nloc,
		     const int64_t *values, const struct pprof_label *labels, size_t nlabels)
{
	struct pb_sample *s;

	if (nloc > PPROF_MAX_STACK)
		nloc = PPROF_MAX_STACK; /* keep the leaf end */
	if (nlabels > PPROF_MAX_LABELS || b->nsamples >= PPROF_MAX_SAMPLES) {
		b->dropped++;
		return -E2BIG;
	}
	for (size_t i = 0; i < nloc; i++)
		if (!location_ids[i] || location_ids[i] > b->nlocs)
			return -EINVAL;
	if (grow(&b->samples, &b->csamples, b->nsamples + 1, sizeof(*b->samples)) < 0 ||
	    grow(&b->sample_locs, &b->csample_locs, b->nsample_locs + nloc, sizeof(uint64_t)) < 0 ||
	    grow(&b->values, &b->cvalues, (b->nsamples + 1) * b->ntypes, sizeof(int64_t)) < 0 ||
	    grow(&b->labels, &b->clabels, b->nlabels + nlabels, sizeof(*b->labels)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < nlabels; i++) {
		struct pb_label *l = &b->labels[b->nlabels + i];

		l->key = str_index(b, labels[i].key);
		l->str = labels[i].str ? str_index(b, labels[i].str) : 0;
		l->num = labels[i].str ? 0 : labels[i].num;
		l->num_unit = labels[i].str ? 0 : str_index(b, labels[i].num_unit);
		if (l->key < 0 || l->str < 0 || l->num_unit < 0)
			return -ENOMEM;
	}
	s = &b->samples[b->nsamples];
	s->loc_start = (uint32_t)b->nsample_locs;
	s->nloc = (uint32_t)nloc;
	s->label_start = (uint32_t)b->nlabels;
	s->nlabels = (uint32_t)nlabels;
	memcpy(b->sample_locs + b->nsample_locs, location_ids, nloc * sizeof(uint64_t));
	memcpy(b->values + b->nsamples * b->ntypes, values, b->ntypes * sizeof(int64_t));
	b->nsample_locs += nloc;
	b->nlabels += nlabels;
	b->nsamples++;
	return 0;
}

int pprof_add_sample_addrs(struct pprof_builder *b, const uint64_t *addrs, size_t naddrs,
			   const int64_t *values, const struct pprof_label *labels, size_t nlabels,
			   pprof_symbolize_fn fn, void *ctx)
{
	uint64_t ids[PPROF_MAX_STACK];
	struct pprof_frame frames[PPROF_MAX_FRAMES];
	int ret;

	if (naddrs > PPROF_MAX_STACK)
		naddrs = PPROF_MAX_STACK;
	for (size_t i = 0; i < naddrs; i++) {
		size_t n = 0;

		ids[i] = idmap_get(&b->loc_ids, addrs[i]);
		if (ids[i])
			continue;
		if (fn) {
			ret = fn(ctx, addrs[i], i, frames, PPROF_MAX_FRAMES, &n);
			if (ret < 0) {
				b->dropped++;
				return ret;
			}
		}
		ret = pprof_add_location(b, addrs[i], frames, n, &ids[i]);
		if (ret < 0) {
			b->dropped++;
			return ret;
		}
	}
	return pprof_add_sample(b, ids, naddrs, values, labels, nlabels);
}

size_t pprof_sample_count(const struct pprof_builder *b) { return b->nsamples; }
size_t pprof_location_count(const struct pprof_builder *b) { return b->nlocs; }
size_t pprof_dropped_samples(const struct pprof_builder *b) { return b->dropped; }
