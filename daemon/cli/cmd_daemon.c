/* `memdrift daemon`: its options; the service itself is service/daemon.c. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/util.h"
#include "cli/commands.h"
#include "service/config.h"
#include "service/daemon.h"

const struct command_usage daemon_usage = {
	.args = "[--config FILE] [--set KEY=VALUE]... [--print-config | --check-config] [--duration D]",
	.text =
		"Watches every Go and JVM process on the host (selectors in the config\n"
		"choose), samples goroutines and heap from outside, counts JNI global refs\n"
		"by native stack, follows RSS and OOM kills with kernel tracepoints, and\n"
		"raises drift alerts as JSON lines on stdout (and\n"
		"alerts.file). Serves Prometheus metrics and pprof profiles on\n"
		"metrics.listen (profiles with metrics.token_file's token) and\n"
		"metrics.unix_socket (profiles to root and each process's own user).\n"
		"SIGHUP reloads the config and reopens alerts.file; a bad config keeps the\n"
		"old one. Needs CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH\n"
		"(and CAP_SYS_ADMIN for uprobes on some kernels), not root.\n"
		"\n"
		"  --config FILE     configuration file (see daemon/service/memdrift.conf.example)\n"
		"  --set KEY=VALUE   override one key (repeatable), e.g. --set detect.window=1m\n"
		"  --print-config    print the effective configuration and exit\n"
		"  --check-config    validate the configuration (file and --set) and exit:\n"
		"                    0 and one line when valid, 2 and the error otherwise\n"
		"  --duration D      stop after D (for tests and demos)\n",
};

int cmd_daemon(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "print-config", no_argument, NULL, 'P' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "duration", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct memdrift_config cfg;
	char err[CONFIG_ERR_MAX];
	struct daemon *d;
	bool print = false, check = false;
	uint64_t duration = 0;
	int c;

	d = calloc(1, sizeof(*d));
	if (!d)
		return cli_fail(1, "out of memory");
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:s:PCd:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			d->config_path = optarg;
			break;
		case 's':
			if (d->nsets >= DAEMON_MAX_SETS) {
				free(d);
				return cli_fail(2, "daemon: at most %d --set flags", DAEMON_MAX_SETS);
			}
			d->sets[d->nsets++] = optarg;
			break;
		case 'P':
			print = true;
			break;
		case 'C':
			check = true;
			break;
		case 'd':
			if (parse_duration_ns(optarg, &duration) < 0 || !duration) {
				free(d);
				return cli_fail(2, "daemon: --duration: '%s' is not a duration", optarg);
			}
			break;
		case 'h':
			command_print_usage(stdout, "daemon", &daemon_usage);
			free(d);
			return 0;
		default:
			free(d);
			return cli_fail(2, "daemon: unknown option or missing value '%s' (see 'memdrift daemon --help')",
				       argv[optind - 1]);
		}
	}
	if (optind != argc) {
		free(d);
		return cli_fail(2, "daemon: unexpected argument '%s'", argv[optind]);
	}
	if (config_load_with(d->config_path, d->sets, d->nsets, &cfg, err, sizeof(err)) < 0) {
		free(d);
		return cli_fail(2, "%s", err);
	}
	if (print || check) {
		if (print)
			config_write(stdout, &cfg);
		else
			printf("%s: configuration valid\n", d->config_path ? d->config_path : "(defaults)");
		free(d);
		return 0;
	}
	/* cfg is valid: the service takes d over */
	return daemon_run(d, &cfg, duration);
}
