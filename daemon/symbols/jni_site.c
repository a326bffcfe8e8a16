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
