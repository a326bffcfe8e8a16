/* memdrift: dispatch from one command table; --help is generated from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "log.h"
#include "version.h"

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *args;
	const char *summary;
} commands[] = {
	{ "attach", cmd_attach, "PID [--trace SETS] [--interval D] [--duration D] [--json]",
	  "watch one process live: goroutines by site, births and deaths, final report" },
	{ "daemon", cmd_daemon, "[--config FILE] [--set KEY=VALUE]... [--print-config]",
	  "watch every Go process on the host; drift alerts, metrics, post-mortems" },
	{ "snapshot", cmd_snapshot, "PID [--json]",
	  "one zero-overhead look at a Go process's goroutines and heap" },
	{ "ps", cmd_ps, "[--json] | --probes PID [--json]",
	  "processes memdrift can observe on this host, and how" },
	{ "version", cmd_version, "", "print the version" },
	{ "help", cmd_help, "", "this help" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: memdrift COMMAND [ARGS]\n\n"
		   "Watches Go and Java processes from the outside and reports memory drift.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-9s %s\n  %-9s   %s\n", commands[i].name, commands[i].args, "",
			commands[i].summary);
	fprintf(f, "\n'memdrift COMMAND --help' describes a command's options.\n"
		   "MEMDRIFT_LOG=debug|info|warning|error sets how much is logged to stderr.\n");
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("memdrift %s\n", MEMDRIFT_VERSION);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	usage(stdout);
	return 0;
}

static void set_log_level(void)
{
	const char *lvl = getenv("MEMDRIFT_LOG");

	if (!lvl)
		return;
	if (!strcmp(lvl, "debug"))
		log_threshold = LOG_LEVEL_DEBUG;
	else if (!strcmp(lvl, "info"))
		log_threshold = LOG_LEVEL_INFO;
	else if (!strcmp(lvl, "error"))
		log_threshold = LOG_LEVEL_ERROR;
	else
		log_threshold = LOG_LEVEL_WARN;
}

int main(int argc, char **argv)
{
	set_log_level();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	log_err(2, "unknown command '%s' (see 'memdrift --help')", argv[1]);
	return 2;
}
