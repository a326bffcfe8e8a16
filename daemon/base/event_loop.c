/* epoll + timerfd + signalfd: see event_loop.h. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "base/event_loop.h"
#include "base/log.h"

enum source_kind { SOURCE_FD, SOURCE_TIMER, SOURCE_SIGNAL };

struct source {
	int fd;
	enum source_kind kind;
	event_loop_fn fn;
	void *ctx;
	bool used;
};

struct event_loop {
	int epfd;
	int timer_fd, signal_fd;
	bool stop;
	sigset_t old_mask;
	bool mask_changed;
	struct source sources[EVENT_LOOP_MAX_SOURCES];
};

int event_loop_new(struct event_loop **out)
{
	struct event_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return -ENOMEM;
	loop->timer_fd = loop->signal_fd = -1;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int err = -errno;

		free(loop);
		return log_errno(err, "epoll_create1: %s", strerror(-err));
	}
	*out = loop;
	return 0;
}

void event_loop_free(struct event_loop *loop)
{
	if (!loop)
		return;
	if (loop->timer_fd >= 0)
		close(loop->timer_fd);
	if (loop->signal_fd >= 0)
		close(loop->signal_fd);
	if (loop->mask_changed)
		sigprocmask(SIG_SETMASK, &loop->old_mask, NULL);
	close(loop->epfd);
	free(loop);
}

static int add_source(struct event_loop *loop, int fd, enum source_kind kind, event_loop_fn fn,
		      void *ctx)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int i;

	for (i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		if (!loop->sources[i].used)
			break;
	if (i == EVENT_LOOP_MAX_SOURCES)
		return log_errno(-E2BIG, "event loop: more than %d sources", EVENT_LOOP_MAX_SOURCES);
	ev.data.u32 = i;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev))
		return log_errno(-errno, "epoll_ctl(ADD, %d): %s", fd, strerror(errno));
	loop->sources[i] = (struct source){.fd = fd, .kind = kind, .fn = fn, .ctx = ctx, .used = true};
	return 0;
}

int event_loop_add_fd(struct event_loop *loop, int fd, event_loop_fn fn, void *ctx)
{
	return add_source(loop, fd, SOURCE_FD, fn, ctx);
}

int event_loop_remove_fd(struct event_loop *loop, int fd)
{
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++) {
		if (loop->sources[i].used && loop->sources[i].fd == fd) {
			epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
			loop->sources[i].used = false;
			return 0;
		}
	}
	return -ENOENT;
}

int event_loop_set_timer(struct event_loop *loop, uint64_t period_ns, event_loop_fn fn, void *ctx)
{
	struct itimerspec its = {
		.it_interval = {.tv_sec = period_ns / 1000000000ull, .tv_nsec = period_ns % 1000000000ull},
	};
	int err;

	if (!period_ns || loop->timer_fd >= 0)
		return -EINVAL;
	its.it_value = its.it_interval;
	loop->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (loop->timer_fd < 0)
		return log_errno(-errno, "timerfd_create: %s", strerror(errno));
	if (timerfd_settime(loop->timer_fd, 0, &its, NULL))
		return log_errno(-errno, "timerfd_settime: %s", strerror(errno));
	err = add_source(loop, loop->timer_fd, SOURCE_TIMER, fn, ctx);
	return err;
}

int event_loop_catch_signals(struct event_loop *loop, event_loop_fn fn, void *ctx)
{
	sigset_t mask;

	if (loop->signal_fd >= 0)
		return -EINVAL;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, &loop->old_mask))
		return log_errno(-errno, "sigprocmask: %s", strerror(errno));
	loop->mask_changed = true;
	loop->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (loop->signal_fd < 0)
		return log_errno(-errno, "signalfd: %s", strerror(errno));
	return add_source(loop, loop->signal_fd, SOURCE_SIGNAL, fn, ctx);
}

void event_loop_stop(struct event_loop *loop)
{
	loop->stop = true;
}

/* Reads what woke a timer or signal source; 0 = spurious wakeup. */
static uint64_t source_arg(const struct source *s)
{
	struct signalfd_siginfo si;
	uint64_t expirations = 0;

	switch (s->kind) {
	case SOURCE_TIMER:
		if (read(s->fd, &expirations, sizeof(expirations)) != sizeof(expirations))
			return 0;
		return expirations;
	case SOURCE_SIGNAL:
		if (read(s->fd, &si, sizeof(si)) != sizeof(si))
			return 0;
		return si.ssi_signo;
	default:
		return 1;
	}
}

int event_loop_run(struct event_loop *loop)
{
	struct epoll_event evs[EVENT_LOOP_MAX_SOURCES];

	loop->stop = false;
	while (!loop->stop) {
		int n = epoll_wait(loop->epfd, evs, EVENT_LOOP_MAX_SOURCES, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return log_errno(-errno, "epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n && !loop->stop; i++) {
			struct source *s = &loop->sources[evs[i].data.u32];
			uint64_t arg;
			int ret;

			if (!s->used)
				continue;
			arg = source_arg(s);
			if (!arg)
				continue;
			ret = s->fn(s->ctx, arg);
			if (ret < 0)
				return ret;
			if (ret > 0)
				return 0;
		}
	}
	return 0;
}
