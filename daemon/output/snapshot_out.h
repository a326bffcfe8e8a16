/* Rendering a snapshot: JSON (the `snapshot --json` schema) and pprof files. */
#ifndef MEMDRIFT_SNAPSHOT_OUT_H
#define MEMDRIFT_SNAPSHOT_OUT_H

#include <json-c/json.h>

#include "watch/heapprof.h"
#include "watch/snapshot.h"

json_object *snapshot_to_json(const struct go_target *t, const struct go_snapshot *snap,
			      const struct snap_site *sites, size_t nsites);

struct pprof_builder;

/* Goroutines by creation site as a pprof profile, in memory (*out: free with
 * pprof_builder_free): what DIR/goroutine.pb.gz holds and the daemon's
 * /debug/pprof/goroutine serves. 0 or negative errno with a reason in err. */
int snapshot_goroutine_pprof(const struct go_target *t, const struct go_snapshot *snap,
			     struct pprof_builder **out, char *err, size_t errlen);

/* DIR/goroutine.pb.gz (goroutines by creation site) and, when hp is given,
 * DIR/heap.pb.gz. 0 or negative errno with a reason in err. */
int snapshot_write_pprof(const struct go_target *t, const struct go_snapshot *snap,
			 const struct heap_profile *hp, const char *dir, char *err, size_t errlen);

#endif
