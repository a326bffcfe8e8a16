/* pprof profile builder: interned tables while building, one protobuf-c
 * message tree built only at encode time, gzip through zlib. */
#include "output/pprof.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "profile.pb-c.h"
#include "base/util.h"

/* u64 -> id (ids start at 1; 0 marks an empty slot), open addressing. */
struct idmap {
	uint64_t *keys;
	uint64_t *vals;
	size_t cap, n; /* cap is a power of two */
};

struct pb_location {
	uint64_t address, mapping_id;
	uint32_t line_start, nlines;
};

struct pb_line {
	uint64_t function_id;
	int64_t line;
};

struct pb_function {
	int64_t name, system_name, filename, start_line;
};

struct pb_mapping {
	uint64_t start, limit, offset;
	int64_t filename, build_id;
	bool has_functions;
};

struct pb_sample {
	uint32_t loc_start, nloc, label_start, nlabels;
};

struct pb_label {
	int64_t key, str, num, num_unit;
};

struct pprof_builder {
	size_t ntypes;
	int64_t type[PPROF_MAX_SAMPLE_TYPES], unit[PPROF_MAX_SAMPLE_TYPES];
	int64_t period_type, period_unit, period;
	bool has_period;
	int64_t default_sample_type, drop_frames, keep_frames, time_nanos, duration_nanos;
	int64_t *comments;
	size_t ncomments, ccomments;

	char **strs;
	size_t nstrs, cstrs;
	uint32_t *str_slots; /* index+1 into strs, 0 = empty */
	size_t str_cap;

	struct pb_function *funcs;
	size_t nfuncs, cfuncs;
	struct idmap func_ids;

	struct pb_location *locs;
	size_t nlocs, clocs;
	struct idmap loc_ids;
	struct pb_line *lines;
	size_t nlines, clines;

	struct pb_mapping *maps;
	size_t nmaps, cmaps;

	struct pb_sample *samples;
	size_t nsamples, csamples;
	uint64_t *sample_locs;
	size_t nsample_locs, csample_locs;
	int64_t *values; /* ntypes per sample */
	size_t cvalues;
	struct pb_label *labels;
	size_t nlabels, clabels;

	size_t dropped;
};

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

/* All the protobuf-c structs of one encoding, freed together. */
struct pb_tree {
	Perftools__Profiles__Profile prof;
	Perftools__Profiles__ValueType *vt, **vtp, period_type;
	Perftools__Profiles__Sample *smp, **smpp;
	Perftools__Profiles__Label *lab, **labp;
	Perftools__Profiles__Mapping *map, **mapp;
	Perftools__Profiles__Location *loc, **locp;
	Perftools__Profiles__Line *line, **linep;
	Perftools__Profiles__Function *fn, **fnp;
};

static void pb_tree_free(struct pb_tree *t)
{
	free(t->vt);
	free(t->vtp);
	free(t->smp);
	free(t->smpp);
	free(t->lab);
	free(t->labp);
	free(t->map);
	free(t->mapp);
	free(t->loc);
	free(t->locp);
	free(t->line);
	free(t->linep);
	free(t->fn);
	free(t->fnp);
}

static int pb_tree_build(const struct pprof_builder *b, struct pb_tree *t)
{
	Perftools__Profiles__Profile *p = &t->prof;

	memset(t, 0, sizeof(*t));
	perftools__profiles__profile__init(p);
	/* +1 keeps calloc from returning NULL for empty tables */
	t->vt = calloc(b->ntypes + 1, sizeof(*t->vt));
	t->vtp = calloc(b->ntypes + 1, sizeof(*t->vtp));
	t->smp = calloc(b->nsamples + 1, sizeof(*t->smp));
	t->smpp = calloc(b->nsamples + 1, sizeof(*t->smpp));
	t->lab = calloc(b->nlabels + 1, sizeof(*t->lab));
	t->labp = calloc(b->nlabels + 1, sizeof(*t->labp));
	t->map = calloc(b->nmaps + 1, sizeof(*t->map));
	t->mapp = calloc(b->nmaps + 1, sizeof(*t->mapp));
	t->loc = calloc(b->nlocs + 1, sizeof(*t->loc));
	t->locp = calloc(b->nlocs + 1, sizeof(*t->locp));
	t->line = calloc(b->nlines + 1, sizeof(*t->line));
	t->linep = calloc(b->nlines + 1, sizeof(*t->linep));
	t->fn = calloc(b->nfuncs + 1, sizeof(*t->fn));
	t->fnp = calloc(b->nfuncs + 1, sizeof(*t->fnp));
	if (!t->vt || !t->vtp || !t->smp || !t->smpp || !t->lab || !t->labp || !t->map ||
	    !t->mapp || !t->loc || !t->locp || !t->line || !t->linep || !t->fn || !t->fnp) {
		pb_tree_free(t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->ntypes; i++) {
		perftools__profiles__value_type__init(&t->vt[i]);
		t->vt[i].type = b->type[i];
		t->vt[i].unit = b->unit[i];
		t->vtp[i] = &t->vt[i];
	}
	p->n_sample_type = b->ntypes;
	p->sample_type = t->vtp;
	for (size_t i = 0; i < b->nlabels; i++) {
		perftools__profiles__label__init(&t->lab[i]);
		t->lab[i].key = b->labels[i].key;
		t->lab[i].str = b->labels[i].str;
		t->lab[i].num = b->labels[i].num;
		t->lab[i].num_unit = b->labels[i].num_unit;
		t->labp[i] = &t->lab[i];
	}
	for (size_t i = 0; i < b->nsamples; i++) {
		const struct pb_sample *s = &b->samples[i];

		perftools__profiles__sample__init(&t->smp[i]);
		t->smp[i].n_location_id = s->nloc;
		t->smp[i].location_id = b->sample_locs + s->loc_start;
		t->smp[i].n_value = b->ntypes;
		t->smp[i].value = b->values + i * b->ntypes;
		t->smp[i].n_label = s->nlabels;
		t->smp[i].label = t->labp + s->label_start;
		t->smpp[i] = &t->smp[i];
	}
	p->n_sample = b->nsamples;
	p->sample = t->smpp;
	for (size_t i = 0; i < b->nmaps; i++) {
		const struct pb_mapping *m = &b->maps[i];

		perftools__profiles__mapping__init(&t->map[i]);
		t->map[i].id = i + 1;
		t->map[i].memory_start = m->start;
		t->map[i].memory_limit = m->limit;
		t->map[i].file_offset = m->offset;
		t->map[i].filename = m->filename;
		t->map[i].build_id = m->build_id;
		t->map[i].has_functions = m->has_functions;
		t->map[i].has_filenames = m->has_functions;
		t->map[i].has_line_numbers = m->has_functions;
		t->mapp[i] = &t->map[i];
	}
	p->n_mapping = b->nmaps;
	p->mapping = t->mapp;
	for (size_t i = 0; i < b->nlines; i++) {
		perftools__profiles__line__init(&t->line[i]);
		t->line[i].function_id = b->lines[i].function_id;
		t->line[i].line = b->lines[i].line;
		t->linep[i] = &t->line[i];
	}
	for (size_t i = 0; i < b->nlocs; i++) {
		const struct pb_location *l = &b->locs[i];

		perftools__profiles__location__init(&t->loc[i]);
		t->loc[i].id = i + 1;
		t->loc[i].mapping_id = l->mapping_id;
		t->loc[i].address = l->address;
		t->loc[i].n_line = l->nlines;
		t->loc[i].line = t->linep + l->line_start;
		t->locp[i] = &t->loc[i];
	}
	p->n_location = b->nlocs;
	p->location = t->locp;
	for (size_t i = 0; i < b->nfuncs; i++) {
		perftools__profiles__function__init(&t->fn[i]);
		t->fn[i].id = i + 1;
		t->fn[i].name = b->funcs[i].name;
		t->fn[i].system_name = b->funcs[i].system_name;
		t->fn[i].filename = b->funcs[i].filename;
		t->fn[i].start_line = b->funcs[i].start_line;
		t->fnp[i] = &t->fn[i];
	}
	p->n_function = b->nfuncs;
	p->function = t->fnp;
	p->n_string_table = b->nstrs;
	p->string_table = b->strs;
	p->drop_frames = b->drop_frames;
	p->keep_frames = b->keep_frames;
	p->time_nanos = b->time_nanos;
	p->duration_nanos = b->duration_nanos;
	if (b->has_period) {
		perftools__profiles__value_type__init(&t->period_type);
		t->period_type.type = b->period_type;
		t->period_type.unit = b->period_unit;
		p->period_type = &t->period_type;
		p->period = b->period;
	}
	p->n_comment = b->ncomments;
	p->comment = b->comments;
	p->default_sample_type = b->default_sample_type;
	return 0;
}

int pprof_encode(const struct pprof_builder *b, uint8_t **out, size_t *len)
{
	struct pb_tree t;
	size_t size;
	int ret;

	*out = NULL;
	*len = 0;
	ret = pb_tree_build(b, &t);
	if (ret < 0)
		return ret;
	size = perftools__profiles__profile__get_packed_size(&t.prof);
	*out = malloc(size + 1);
	if (!*out) {
		pb_tree_free(&t);
		return -ENOMEM;
	}
	*len = perftools__profiles__profile__pack(&t.prof, *out);
	pb_tree_free(&t);
	return 0;
}

int pprof_encode_gzip(const struct pprof_builder *b, uint8_t **out, size_t *len)
{
	uint8_t *raw, *gz;
	size_t rawlen, cap;
	z_stream zs = { 0 };
	int ret;

	*out = NULL;
	*len = 0;
	ret = pprof_encode(b, &raw, &rawlen);
	if (ret < 0)
		return ret;
	/* windowBits 15 + 16: a gzip wrapper, which pprof expects */
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(raw);
		return -ENOMEM;
	}
	cap = deflateBound(&zs, rawlen) + 64;
	gz = malloc(cap);
	if (!gz) {
		deflateEnd(&zs);
		free(raw);
		return -ENOMEM;
	}
	zs.next_in = raw;
	zs.avail_in = (uInt)rawlen;
	zs.next_out = gz;
	zs.avail_out = (uInt)cap;
	ret = deflate(&zs, Z_FINISH);
	*len = zs.total_out;
	deflateEnd(&zs);
	free(raw);
	if (ret != Z_STREAM_END) {
		free(gz);
		*len = 0;
		return -EIO;
	}
	*out = gz;
	return 0;
}

int pprof_write_file(const struct pprof_builder *b, const char *path)
{
	char tmp[4096];
	uint8_t *gz;
	size_t len, off = 0;
	int fd, ret;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	ret = pprof_encode_gzip(b, &gz, &len);
	if (ret < 0)
		return ret;
	/* DIR may be writable by others: never follow or reuse what is there */
	fd = open_new_file(tmp, 0644);
	if (fd < 0) {
		free(gz);
		return fd;
	}
	while (off < len) {
		ssize_t n = write(fd, gz + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)n;
	}
	free(gz);
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0)
		unlink(tmp);
	return ret;
}

int pprof_gunzip(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *outlen)
{
	z_stream zs = { 0 };
	size_t cap = len * 4 + 1024;
	uint8_t *buf;
	int ret;

	*out = NULL;
	*outlen = 0;
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		return -ENOMEM;
	if (cap > max)
		cap = max;
	buf = malloc(cap ? cap : 1);
	if (!buf) {
		inflateEnd(&zs);
		return -ENOMEM;
	}
	zs.next_in = (uint8_t *)in;
	zs.avail_in = (uInt)len;
	for (;;) {
		zs.next_out = buf + zs.total_out;
		zs.avail_out = (uInt)(cap - zs.total_out);
		ret = inflate(&zs, Z_NO_FLUSH);
		if (ret == Z_STREAM_END)
			break;
		if (ret != Z_OK && ret != Z_BUF_ERROR) {
			ret = -EINVAL;
			goto fail;
		}
		if (zs.avail_out == 0) {
			uint8_t *bigger;

			if (cap >= max) {
				ret = -E2BIG;
				goto fail;
			}
			cap = cap * 2 > max ? max : cap * 2;
			bigger = realloc(buf, cap);
			if (!bigger) {
				ret = -ENOMEM;
				goto fail;
			}
			buf = bigger;
		} else if (zs.avail_in == 0) {
			ret = -EINVAL; /* truncated stream */
			goto fail;
		}
	}
	*outlen = zs.total_out;
	*out = buf;
	inflateEnd(&zs);
	return 0;
fail:
	inflateEnd(&zs);
	free(buf);
	return ret;
}
