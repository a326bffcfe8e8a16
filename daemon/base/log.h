/* Logging and error helpers. Library code returns 0 or a negative errno
 * and says why in the caller's err buffer (set_err); where it must log,
 * `return log_errno(-errno, "open %s", path);`. Commands end with an exit
 * status: `return cli_fail(2, "attach: bad --interval");`. */
#ifndef MEMDRIFT_LOG_H
#define MEMDRIFT_LOG_H

#include <stdarg.h>
#include <stdio.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

extern enum log_level log_threshold;

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs "memdrift: <message>" at error level and returns err (a negative
 * errno, passed through). */
int log_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, returning a command's exit status (1 runtime failure, 2 usage
 * error): cli/ and the daemon's run function only. */
int cli_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Formats into a caller's error buffer (one line, no trailing newline) and returns ret. */
int set_err(char *err, size_t errlen, int ret, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
