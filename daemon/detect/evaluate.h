/* The daemon's per-kind evaluation (detect/evaluate.c): each tick, every
 * watched process's series go through the pure detectors (detect.h), with
 * the layers that explain an RSS growth, into the alert table. */
#ifndef MEMDRIFT_EVALUATE_H
#define MEMDRIFT_EVALUATE_H

#include <stdint.h>

struct daemon;
struct watched;

/* now: monotonic, ts: wall clock (ns). */
void daemon_evaluate(struct daemon *d, struct watched *w, uint64_t now, uint64_t ts);

#endif
