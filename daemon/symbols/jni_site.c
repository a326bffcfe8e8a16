#include "symbols/jni_site.h"

#include <stdio.h>

#include "base/util.h"

void jni_site_key(uint32_t kind, const struct native_frame *nf, size_t n, size_t first, char *key,
		  size_t len)
{
	snprintf(key, len, "%s|%s@%s", kind == JNI_KIND_WEAK ? "weak" : "global",
		 n ? nf[first].function : "[no stack]", n ? path_base(nf[first].object) : "");
}

uint64_t jni_site_id(const char *key)
{
	uint64_t h = hash_fnv1a_str(HASH_FNV1A_INIT, key);

	return h ? h : 1;
}

int jni_site_of(const struct jni_site *r, int32_t *stack_site, int32_t *nostack_site,
		struct symbolizer *sym, bool *refreshed, jni_site_new_fn new_site, void *ctx)
{
	uint32_t kind = r->kind & 1;
	int32_t *slot = r->stackid >= 0 && r->stackid < JNI_MAX_STACKS ? &stack_site[r->stackid]
								       : &nostack_site[kind];
	int idx;

	if (*slot)
		return *slot - 1;
	if (!*refreshed) {
		symbolizer_refresh(sym);
		*refreshed = true;
	}
	idx = new_site(ctx, r->stackid, kind);
	if (idx >= 0)
		*slot = idx + 1;
	return idx;
}
