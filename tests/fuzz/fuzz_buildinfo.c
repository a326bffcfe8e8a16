/* libFuzzer: the .go.buildinfo parser and the version parser on raw bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "binary/gobin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct go_version ver;
	char err[128], *s;

	/* exact-size heap copy so ASan sees any read past the end */
	uint8_t *copy = malloc(size ? size : 1);

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	(void)gobin_parse_buildinfo(copy, size, &ver, err, sizeof(err));
	free(copy);

	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	(void)go_parse_version(s, &ver);
	free(s);
	return 0;
}
