/* pprof profiles out of the builder: the protobuf tree, encoding, gzip
 * (and gunzip for readers), atomic file writes. See pprof.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/util.h"
#include "output/pprof.h"
#include "output/pprof_internal.h"
#include "profile.pb-c.h"

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
