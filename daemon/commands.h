/* Subcommand entry points, dispatched from main.c's table. Each returns the
 * process exit status (0 ok, 1 runtime failure, 2 usage error). */
#ifndef MEMDRIFT_COMMANDS_H
#define MEMDRIFT_COMMANDS_H

int cmd_snapshot(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_attach(int argc, char **argv);
/* `memdrift ps --probes PID [--json]`: per probe, the chosen offset, the
 * instruction, and whether the kernel emulates it. */
int cmd_ps_probes(int pid, int json);

#endif
