/* libFuzzer: the daemon's config parser on arbitrary text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "service/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memdrift_config cfg;
	char err[CONFIG_ERR_MAX];
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	config_defaults(&cfg);
	if (config_parse_buffer("fuzz.conf", text, &cfg, err, sizeof(err)) == 0)
		(void)config_validate(&cfg, err, sizeof(err));
	free(text);
	return 0;
}
