/* libFuzzer: the hsperfdata parser and the .note.stapsdt / USDT argument
 * parsers on arbitrary bytes (files a JVM or a hostile container controls). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probe/usdt_notes.h"
#include "watch/hsperf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hsperf_stats stats;
	struct usdt_notes notes;
	struct usdt_arg arg;
	char err[256];
	uint8_t *copy = malloc(size ? size : 1);
	char *spec;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	(void)hsperf_stats_from_buffer(copy, size, &stats, err, sizeof(err));
	memset(&notes, 0, sizeof(notes));
	if (usdt_notes_from_buffer(copy, size, &notes, err, sizeof(err)) == 0)
		usdt_notes_free(&notes);
	free(copy);
	spec = malloc(size + 1);
	if (!spec)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	for (int i = 0; i < 4; i++)
		(void)usdt_arg_parse(spec, i, &arg);
	free(spec);
	return 0;
}
