/* OOM post-mortems (output/postmortem.c): when the kernel's OOM killer
 * chooses a watched process, one oom_kill alert and a directory under
 * state.dir with what the daemon knows (series, sites, profiles while the
 * victim is still readable), kept within the retention limits. */
#ifndef MEMDRIFT_POSTMORTEM_H
#define MEMDRIFT_POSTMORTEM_H

#include "discover/procmon.h"

struct daemon;

/* procmon on_oom callback; ctx: the daemon. */
int daemon_on_oom(void *ctx, const struct procmon_event *oom);
/* Retention: the oldest post-mortems over state.postmortem_max_* go. */
void postmortem_prune(struct daemon *d);

#endif
