/* Developer tool and e2e driver for daemon/discover/procmon.c: prints every procmon
 * event as one JSON line on stdout.
 *
 *   procmon_dump [--scan] [--watch-all] [--watch PID]... [--no-rss] [--no-oom]
 *                [--min-bytes N --permille N]
 *
 * Reads commands on stdin, one a line: "watch PID", "unwatch PID", "stats",
 * "rss PID" (exact RSS from /proc), "maps PID" (kernel map entries of PID,
 * 0 = all), "quit". Prints {"type":"ready",...} once
 * the tracepoints are attached, and a final {"type":"stats",...} at exit
 * (quit, EOF on stdin, SIGINT or SIGTERM). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "discover/procmon.h"

static const char *const type_names[] = {
	[PROCMON_EXEC] = "exec", [PROCMON_EXIT] = "exit", [PROCMON_FORK] = "fork",
	[PROCMON_RSS] = "rss",   [PROCMON_OOM] = "oom",
};

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_rss(const struct procmon_rss *r)
{
	printf(",\"rss_file\":%" PRIu64 ",\"rss_anon\":%" PRIu64 ",\"rss_swap\":%" PRIu64
	       ",\"rss_shmem\":%" PRIu64, r->file, r->anon, r->swap, r->shmem);
}

static int print_event(void *ctx, const struct procmon_event *ev)
{
	(void)ctx;
	printf("{\"type\":\"%s\",\"ts_ns\":%" PRIu64 ",\"tgid\":%d,\"pid\":%d",
	       type_names[ev->type], ev->ts_ns, ev->tgid, ev->pid);
	switch (ev->type) {
	case PROCMON_EXEC:
		printf(",\"ppid\":%d,\"old_pid\":%d,\"initial\":%s,\"dev_major\":%u,\"dev_minor\":%u,"
		       "\"ino\":%" PRIu64 ",\"filename\":",
		       ev->ppid, ev->old_pid, ev->initial ? "true" : "false", major(ev->exe_dev),
		       minor(ev->exe_dev), (uint64_t)ev->exe_ino);
		json_str(ev->filename);
		break;
	case PROCMON_EXIT:
		printf(",\"exit_code\":%d,\"rss_valid\":%s", ev->exit_code,
		       ev->rss_valid ? "true" : "false");
		if (ev->rss_valid)
			print_rss(&ev->rss);
		break;
	case PROCMON_FORK:
		printf(",\"ppid\":%d", ev->ppid);
		break;
	case PROCMON_RSS:
		print_rss(&ev->rss);
		break;
	case PROCMON_OOM:
		printf(",\"uid\":%u,\"oom_score_adj\":%d,\"total_vm\":%" PRIu64 ",\"rss_valid\":%s",
		       ev->uid, ev->oom_score_adj, ev->total_vm, ev->rss_valid ? "true" : "false");
		if (ev->rss_valid)
			print_rss(&ev->rss);
		break;
	}
	printf(",\"comm\":");
	json_str(ev->comm);
	printf("}\n");
	fflush(stdout);
	return 0;
}

static void print_stats(struct procmon *pm)
{
	struct procmon_stats s;

	procmon__stats(pm, &s);
	printf("{\"type\":\"stats\",\"exec\":%" PRIu64 ",\"exit\":%" PRIu64 ",\"fork\":%" PRIu64
	       ",\"oom\":%" PRIu64 ",\"rss_events\":%" PRIu64 ",\"rss_records\":%" PRIu64
	       ",\"rss_unresolved\":%" PRIu64 ",\"ringbuf_drops\":%" PRIu64 ",\"mms_full\":%" PRIu64
	       ",\"tgid_mm_full\":%" PRIu64 ",\"watched_full\":%" PRIu64
	       ",\"decode_errors\":%" PRIu64 "}\n",
	       s.exec, s.exit, s.fork, s.oom, s.rss_events, s.rss_records, s.rss_unresolved,
	       s.ringbuf_drops, s.mms_full, s.tgid_mm_full, s.watched_full, s.decode_errors);
	fflush(stdout);
}

/* Returns 1 to quit. */
static int command(struct procmon *pm, char *line)
{
	struct procmon_rss r;
	int pid = 0, err;

	line[strcspn(line, "\n")] = '\0';
	if (!strcmp(line, "quit"))
		return 1;
	if (!strcmp(line, "stats")) {
		print_stats(pm);
		return 0;
	}
	if (sscanf(line, "maps %d", &pid) == 1) {
		struct procmon_map_counts mc;

		err = procmon__map_counts(pm, pid, &mc);
		printf("{\"type\":\"maps\",\"pid\":%d,\"watched\":%u,\"mms\":%u,\"tgid_mm\":%u}\n",
		       pid, mc.watched, mc.mms, mc.tgid_mm);
	} else if (sscanf(line, "watch %d", &pid) == 1)
		err = procmon__watch(pm, pid);
	else if (sscanf(line, "unwatch %d", &pid) == 1)
		err = procmon__unwatch(pm, pid);
	else if (sscanf(line, "rss %d", &pid) == 1) {
		err = procmon__rss(pid, &r);
		if (!err) {
			printf("{\"type\":\"proc_rss\",\"pid\":%d", pid);
			print_rss(&r);
			printf("}\n");
		}
	} else
		err = -EINVAL;
	printf("{\"type\":\"ack\",\"cmd\":");
	json_str(line);
	printf(",\"err\":%d}\n", err);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct procmon_callbacks cbs = {
		.on_exec = print_event, .on_exit = print_event, .on_fork = print_event,
		.on_rss = print_event,  .on_oom = print_event,
	};
	struct procmon_opts opts = {};
	struct epoll_event ev, evs[4];
	struct procmon_stats st;
	bool scan = false, quit = false;
	int watch[64], nwatch = 0;
	char line[256];
	size_t used = 0;
	struct procmon *pm;
	char err[512];
	int ep, sfd, i, n;
	sigset_t mask;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--scan"))
			scan = true;
		else if (!strcmp(argv[i], "--watch-all"))
			opts.rss_watch_all = true;
		else if (!strcmp(argv[i], "--no-rss"))
			opts.no_rss = true;
		else if (!strcmp(argv[i], "--no-oom"))
			opts.no_oom = true;
		else if (!strcmp(argv[i], "--watch") && i + 1 < argc && nwatch < 64)
			watch[nwatch++] = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--min-bytes") && i + 1 < argc) {
			opts.rss_throttle_set = true;
			opts.rss_min_delta_bytes = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--permille") && i + 1 < argc) {
			opts.rss_throttle_set = true;
			opts.rss_min_delta_permille = (uint32_t)strtoul(argv[++i], NULL, 0);
		} else {
			fprintf(stderr, "usage: %s [--scan] [--watch-all] [--watch PID]... [--no-rss] "
				"[--no-oom] [--min-bytes N --permille N]\n", argv[0]);
			return 2;
		}
	}
	if (opts.rss_throttle_set && !opts.rss_min_delta_bytes && !opts.rss_min_delta_permille)
		fprintf(stderr, "procmon_dump: throttle off: one record per RSS change\n");

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);

	if (procmon__new(&opts, &pm, err, sizeof(err))) {
		fprintf(stderr, "procmon_dump: %s\n", err);
		return 1;
	}
	for (i = 0; i < nwatch; i++)
		procmon__watch(pm, watch[i]);
	if (procmon__attach(pm, err, sizeof(err))) {
		fprintf(stderr, "procmon_dump: %s\n", err);
		procmon__free(pm);
		return 1;
	}
	procmon__stats(pm, &st);
	printf("{\"type\":\"ready\",\"pid\":%d,\"exit_group_dead\":%s,\"oom_task\":%s,"
	       "\"oom_probe\":\"%s\"}\n", getpid(), st.exit_group_dead ? "true" : "false",
	       st.oom_task ? "true" : "false", st.oom_probe);
	fflush(stdout);
	if (scan)
		procmon__scan(pm, &cbs);

	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.fd = procmon__fd(pm);
	epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev);
	ev.data.fd = sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.fd = STDIN_FILENO;
	epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev); /* fails harmlessly for a file */

	while (!quit) {
		n = epoll_wait(ep, evs, 4, 1000);
		if (n < 0 && errno != EINTR)
			break;
		for (i = 0; i < n; i++) {
			if (evs[i].data.fd == sfd) {
				quit = true;
			} else if (evs[i].data.fd == STDIN_FILENO) {
				/* read(), not stdio: a buffered second line would never
				 * wake epoll again. */
				ssize_t r = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
				char *nl;

				if (r <= 0) {
					quit = true;
					continue;
				}
				used += (size_t)r;
				line[used] = '\0';
				while (!quit && (nl = strchr(line, '\n'))) {
					*nl = '\0';
					quit = command(pm, line);
					used -= (size_t)(nl + 1 - line);
					memmove(line, nl + 1, used + 1);
				}
				if (used == sizeof(line) - 1)
					used = 0; /* an overlong line: drop it */
			} else {
				procmon__poll(pm, 0, &cbs);
			}
		}
	}
	procmon__poll(pm, 0, &cbs);
	print_stats(pm);
	close(ep);
	close(sfd);
	procmon__free(pm);
	return 0;
}
