/* Shared by the developer tools (tests/tools/NAME_dump.c): stop on SIGINT or
 * SIGTERM, and wall-clock seconds for the "ts" of their JSON lines (the
 * e2e tests compare them with file mtimes and time.time()). */
#ifndef MEMDRIFT_TOOL_H
#define MEMDRIFT_TOOL_H

#include <signal.h>

#include "base/util.h"

static volatile sig_atomic_t tool_stop;

static void tool_on_signal(int sig)
{
	(void)sig;
	tool_stop = 1;
}

static inline void tool_catch_stop(void)
{
	signal(SIGINT, tool_on_signal);
	signal(SIGTERM, tool_on_signal);
}

static inline double tool_now_s(void)
{
	return (double)now_realtime_ns() / 1e9;
}

#endif
