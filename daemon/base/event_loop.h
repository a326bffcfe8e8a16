/* One event loop per memdrift process: epoll over ring-buffer fds, one
 * periodic timerfd and a signalfd for SIGINT/SIGTERM/SIGHUP. Callbacks get
 * a context pointer; a negative return stops the loop with that error. */
#ifndef MEMDRIFT_EVENT_LOOP_H
#define MEMDRIFT_EVENT_LOOP_H

#include <stdint.h>

#define EVENT_LOOP_MAX_SOURCES 32

struct event_loop;

/* fd readable (or, for the timer, expired: arg = expirations; for signals,
 * arg = signal number). */
typedef int (*event_loop_fn)(void *ctx, uint64_t arg);

int event_loop_new(struct event_loop **out);
void event_loop_free(struct event_loop *loop);

/* Watches fd for input. -E2BIG beyond EVENT_LOOP_MAX_SOURCES. */
int event_loop_add_fd(struct event_loop *loop, int fd, event_loop_fn fn, void *ctx);
int event_loop_remove_fd(struct event_loop *loop, int fd);

/* Periodic timer (first expiry after period_ns); one per loop. */
int event_loop_set_timer(struct event_loop *loop, uint64_t period_ns, event_loop_fn fn, void *ctx);

/* Blocks SIGINT, SIGTERM, SIGHUP and delivers them through a signalfd. */
int event_loop_catch_signals(struct event_loop *loop, event_loop_fn fn, void *ctx);

/* Runs until a callback returns non-zero (positive: clean stop, returned
 * as 0; negative: returned) or event_loop_stop(). */
int event_loop_run(struct event_loop *loop);
void event_loop_stop(struct event_loop *loop);

#endif
