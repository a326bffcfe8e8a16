/* Placeholder until the binary-analysis module lands: keeps the tree linking. */
#include <errno.h>

#include "gobin.h"
#include "log.h"

int gobin_open(const char *path, struct gobin **out, char *err, size_t errlen)
{
	*out = NULL;
	return set_err(err, errlen, -ENOSYS, "%s: Go binary analysis not built yet", path);
}
void gobin_free(struct gobin *bin) { (void)bin; }
