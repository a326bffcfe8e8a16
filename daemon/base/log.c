#include "base/log.h"

#include <string.h>

enum log_level log_threshold = LOG_LEVEL_WARN;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	if (level > log_threshold)
		return;
	fprintf(stderr, "memdrift: %s%s", level == LOG_LEVEL_ERROR ? "" : level_names[level],
		level == LOG_LEVEL_ERROR ? "" : ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

int log_errno(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	return err;
}

int cli_fail(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	return status;
}

int set_err(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}
