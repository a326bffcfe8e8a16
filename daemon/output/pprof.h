/* A generic pprof profile builder (profile.proto, gzip-compressed), shared by
 * the Go heap, goroutine, native (C outstanding) and JNI profiles.
 *
 * Usage:
 *   struct pprof_value_type types[] = { { "inuse_space", "bytes" } };
 *   pprof_builder_new(types, 1, &b);
 *   pprof_set_period(b, "space", "bytes", 524288);
 *   pprof_add_mapping(b, start, limit, offset, "/usr/bin/x", build_id, true, NULL);
 *   pprof_add_sample_addrs(b, pcs, npcs, values, NULL, 0, my_symbolizer, ctx);
 *   pprof_write_file(b, "DIR/heap.pb.gz");
 *   pprof_builder_free(b);
 *
 * Strings are copied into the builder, so callers' strings only need to live
 * for the duration of a call. Locations are deduplicated by address, functions
 * by (name, file), strings by content. Everything is bounded (PPROF_MAX_*);
 * hitting a bound returns -E2BIG and is counted in pprof_dropped_samples(). */
#ifndef MEMDRIFT_PPROF_H
#define MEMDRIFT_PPROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PPROF_MAX_SAMPLE_TYPES 8
#define PPROF_MAX_SAMPLES (1u << 20)
#define PPROF_MAX_LOCATIONS (1u << 20)
#define PPROF_MAX_STRINGS (1u << 21)
#define PPROF_MAX_STACK 1024      /* locations per sample */
#define PPROF_MAX_FRAMES 32       /* inline frames per location */
#define PPROF_MAX_LABELS 16       /* labels per sample */
#define PPROF_MAX_MAPPINGS 4096

struct pprof_builder;

struct pprof_value_type {
	const char *type; /* "inuse_space", "goroutine", ... */
	const char *unit; /* "bytes", "count", ... */
};

/* One source line of a location; a location holds several when calls were
 * inlined, innermost (callee) first. */
struct pprof_frame {
	const char *function;    /* NULL or "" -> "??" */
	const char *system_name; /* NULL -> same as function */
	const char *file;        /* NULL -> "" */
	int64_t line;
	int64_t start_line;      /* 0 when unknown */
};

/* str set -> string label; else numeric label num (unit num_unit or NULL). */
struct pprof_label {
	const char *key;
	const char *str;
	int64_t num;
	const char *num_unit;
};

/* Resolves one address into at most max frames (innermost first); *n = 0 for
 * an unknown address. index is the position in the stack (0 = leaf), so a
 * caller can tell the leaf IP from return addresses (lookup at addr-1).
 * Return 0 or a negative errno (the sample is then dropped). */
typedef int (*pprof_symbolize_fn)(void *ctx, uint64_t address, size_t index,
				  struct pprof_frame *frames, size_t max, size_t *n);

/* 0, -EINVAL (0 or more than PPROF_MAX_SAMPLE_TYPES types), -ENOMEM. */
int pprof_builder_new(const struct pprof_value_type *sample_types, size_t ntypes,
		      struct pprof_builder **out);
void pprof_builder_free(struct pprof_builder *b);

int pprof_set_period(struct pprof_builder *b, const char *type, const char *unit, int64_t period);
/* Must name one of the sample types; -EINVAL otherwise. */
int pprof_set_default_sample_type(struct pprof_builder *b, const char *type);
/* Regexp (fully matched) of frames that viewers drop with their callees,
 * e.g. "runtime\\..*" hides the allocator above the user's allocation site
 * while the frames stay in the file. */
int pprof_set_drop_frames(struct pprof_builder *b, const char *regexp);
int pprof_set_keep_frames(struct pprof_builder *b, const char *regexp);
void pprof_set_time(struct pprof_builder *b, int64_t time_nanos, int64_t duration_nanos);
int pprof_add_comment(struct pprof_builder *b, const char *comment);

/* A mapped object [start, limit) at file_offset. Locations added later get the
 * mapping that contains their address. id may be NULL. */
int pprof_add_mapping(struct pprof_builder *b, uint64_t start, uint64_t limit,
		      uint64_t file_offset, const char *filename, const char *build_id,
		      bool has_functions, uint64_t *id);

/* Id of the location already added for address, or 0. */
uint64_t pprof_find_location(const struct pprof_builder *b, uint64_t address);
/* Adds (or finds) the location at address with its frames. nframes may be 0
 * (unsymbolized). 0, -E2BIG, -ENOMEM, -EINVAL. */
int pprof_add_location(struct pprof_builder *b, uint64_t address, const struct pprof_frame *frames,
		       size_t nframes, uint64_t *id);

/* Adds a sample: location ids leaf first, one value per sample type. */
int pprof_add_sample(struct pprof_builder *b, const uint64_t *location_ids, size_t nloc,
		     const int64_t *values, const struct pprof_label *labels, size_t nlabels);
/* Same from raw addresses (leaf first): each new address is symbolized once
 * through fn (may be NULL: unsymbolized locations). */
int pprof_add_sample_addrs(struct pprof_builder *b, const uint64_t *addrs, size_t naddrs,
			   const int64_t *values, const struct pprof_label *labels, size_t nlabels,
			   pprof_symbolize_fn fn, void *ctx);

size_t pprof_sample_count(const struct pprof_builder *b);
size_t pprof_location_count(const struct pprof_builder *b);
size_t pprof_dropped_samples(const struct pprof_builder *b);

/* Serialized profile.proto, not compressed (*out malloc'd). */
int pprof_encode(const struct pprof_builder *b, uint8_t **out, size_t *len);
/* Serialized and gzip-compressed, what `go tool pprof` reads (*out malloc'd). */
int pprof_encode_gzip(const struct pprof_builder *b, uint8_t **out, size_t *len);
/* Writes the gzip form to path (tmp + rename). */
int pprof_write_file(const struct pprof_builder *b, const char *path);

/* Inflates a gzip buffer (for tests and readers). *out malloc'd; max bounds
 * the output. 0, -EINVAL (not gzip / corrupt), -E2BIG, -ENOMEM. */
int pprof_gunzip(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *outlen);

#endif
