/* libFuzzer: go_offsets_from_dwarf on arbitrary bytes must fail cleanly. It
 * takes a path (libelf maps the file), so each input goes through a file. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "binary/go_offsets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct go_offsets off;
	char err[256];
	FILE *f;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/fuzz-dwarf-offsets-%d", (int)getpid());
	f = fopen(path, "w");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	go_offsets_from_dwarf(path, 1, 22, &off, err, sizeof(err));
	return 0;
}
