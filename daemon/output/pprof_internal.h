/* The pprof builder's state, shared by output/pprof.c (building: strings,
 * mappings, functions, locations, samples) and output/pprof_encode.c (the
 * protobuf tree, encoding, gzip, files). Internal to them. */
#ifndef MEMDRIFT_PPROF_INTERNAL_H
#define MEMDRIFT_PPROF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "output/pprof.h"

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

#endif
