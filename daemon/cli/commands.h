/* Subcommand entry points, dispatched from main.c's table. Each returns the
 * process exit status (0 ok, 1 runtime failure, 2 usage error). */
#ifndef MEMDRIFT_COMMANDS_H
#define MEMDRIFT_COMMANDS_H

#include <stdio.h>

/* A command's usage: the arguments after "memdrift NAME" and the text
 * below them. --help prints both, and main.c's command table (the
 * top-level help and the man page) reads the same args: one source. */
struct command_usage {
	const char *args;
	const char *text;
};
extern const struct command_usage attach_usage, daemon_usage, snapshot_usage, ps_usage;
/* "usage: memdrift NAME ARGS", a blank line, the text. */
void command_print_usage(FILE *f, const char *name, const struct command_usage *u);

int cmd_snapshot(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
/* `memdrift ps --probes PID [--json]`: per probe, the chosen offset, the
 * instruction, and whether the kernel emulates it. */
int cmd_ps_probes(int pid, int json);

/* Options of `memdrift attach` shared by the Go and JVM paths. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct attach_options {
	uint64_t interval_ns;  /* live view refresh (default 2 s) */
	uint64_t duration_ns;  /* 0 = until Ctrl-C */
	bool json;             /* one JSON object per interval */
	const char *pprof_dir; /* write profiles here at exit, or NULL */
};

/* attach to a JVM (libjvm.so mapped): JNI global/weak refs by native stack */
int attach_jvm(pid_t pid, const struct attach_options *opts);

#endif
