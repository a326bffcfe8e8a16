/* memdrift: dispatch from one command table; --help is generated from it. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/version.h"
#include "cli/commands.h"

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct command_usage version_usage = { "", "Prints memdrift's version.\n" };
static const struct command_usage help_usage = {
	"[--man]", "This help; --man prints the manual page (roff) from the same table.\n"
};

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const struct command_usage *usage;
	const char *summary;
} commands[] = {
	{ "attach", cmd_attach, &attach_usage,
	  "watch one process live: goroutines by site, births and deaths, final report" },
	{ "daemon", cmd_daemon, &daemon_usage,
	  "watch every Go process on the host; drift alerts, metrics, post-mortems" },
	{ "snapshot", cmd_snapshot, &snapshot_usage,
	  "one zero-overhead look at a Go process's goroutines and heap" },
	{ "ps", cmd_ps, &ps_usage, "processes memdrift can observe on this host, and how" },
	{ "version", cmd_version, &version_usage, "print the version" },
	{ "help", cmd_help, &help_usage, "this help; --man: the manual page (roff) from the same table" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: memdrift COMMAND [ARGS]\n\n"
		   "Watches Go and Java processes from the outside and reports memory drift.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-9s %s\n  %-9s   %s\n", commands[i].name, commands[i].usage->args, "",
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

/* Text as roff: a leading '.' or '\'' would be a request, '\\' an escape. */
static void roff_text(FILE *f, const char *s)
{
	bool bol = true;

	for (; *s; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", f);
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else
			fputc(*s, f);
		bol = *s == '\n';
	}
}

/* One command's --help text, captured from the command itself. */
static char *command_help_text(const struct command *c)
{
	char *argv[] = { (char *)c->name, "--help", NULL };
	FILE *saved = stdout, *mem;
	char *text = NULL;
	size_t len = 0;

	mem = open_memstream(&text, &len);
	if (!mem)
		return NULL;
	stdout = mem; /* glibc: stdout is assignable */
	c->run(2, argv);
	stdout = saved;
	fclose(mem);
	return text;
}

/* memdrift(8) from the command table and each command's --help. */
static void man_page(FILE *f)
{
	fprintf(f, ".TH MEMDRIFT 8 \"\" \"memdrift %s\" \"System Administration\"\n", MEMDRIFT_VERSION);
	fputs(".SH NAME\nmemdrift \\- watch Go and Java processes from the outside and report memory drift\n"
	      ".SH SYNOPSIS\n", f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		fprintf(f, ".B memdrift %s\n", commands[i].name);
		if (commands[i].usage->args[0]) {
			roff_text(f, commands[i].usage->args);
			fputc('\n', f);
		}
		fputs(".br\n", f);
	}
	fputs(".SH DESCRIPTION\nmemdrift observes running Go and JVM processes with eBPF and\n"
	      "process_vm_readv, never writing into their memory, and raises drift alerts\n"
	      "(goroutine leaks, Go heap growth, C memory and JNI references never freed,\n"
	      "RSS growth) with the source location.\n.SH COMMANDS\n", f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		char *help = commands[i].run == cmd_help || commands[i].run == cmd_version ?
				     NULL : command_help_text(&commands[i]);

		fprintf(f, ".SS %s\n", commands[i].name);
		roff_text(f, commands[i].summary);
		fputs(".\n", f);
		if (help && *help) {
			fputs(".PP\n.nf\n", f);
			roff_text(f, help);
			fputs(".fi\n", f);
		}
		free(help);
	}
	fputs(".SH ENVIRONMENT\n.TP\n.B MEMDRIFT_LOG\ndebug, info, warning or error: how much is logged to stderr.\n"
	      ".SH FILES\n.TP\n.I /etc/memdrift/memdrift.conf\nthe daemon's configuration "
	      "(every key: \n.BR \"memdrift daemon \\-\\-print\\-config\" ).\n"
	      ".TP\n.I /var/lib/memdrift\nstate.dir: OOM post-mortems.\n"
	      ".SH EXIT STATUS\n0 on success, 2 for usage errors, 1 otherwise.\n", f);
}

static int cmd_help(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--man")) {
		man_page(stdout);
		return 0;
	}
	if (argc > 1)
		return cli_fail(2, "help: unknown argument '%s'", argv[1]);
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
	cli_fail(2, "unknown command '%s' (see 'memdrift --help')", argv[1]);
	return 2;
}
