/* What every command shares: printing its usage. */
#include "cli/commands.h"

void command_print_usage(FILE *f, const char *name, const struct command_usage *u)
{
	fprintf(f, "usage: memdrift %s%s%s\n\n%s", name, u->args[0] ? " " : "", u->args, u->text);
}
