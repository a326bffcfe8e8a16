/* TEMPORARY: weak placeholders so the tree links while modules are being
 * written in parallel; each real definition overrides its weak twin.
 * Deleted once gobin.c, go_offsets.c and attach.c have landed. */
#include <errno.h>
#include <stdio.h>

#include "commands.h"
#include "gobin.h"
#include "log.h"

#define WEAK __attribute__((weak))

WEAK int gobin_classify(const char *p, enum gobin_kind *k, struct go_version *v, char *e, size_t l)
{ (void)k; (void)v; return set_err(e, l, -ENOSYS, "%s: not built yet", p); }
WEAK const struct go_version *gobin_version(const struct gobin *b) { (void)b; return NULL; }
WEAK const char *gobin_path(const struct gobin *b) { (void)b; return ""; }
WEAK const char *gobin_build_id(const struct gobin *b) { (void)b; return ""; }
WEAK bool gobin_is_pie(const struct gobin *b) { (void)b; return false; }
WEAK bool gobin_has_symtab(const struct gobin *b) { (void)b; return false; }
WEAK bool gobin_has_dwarf(const struct gobin *b) { (void)b; return false; }
WEAK enum gobin_kind gobin_kind(const struct gobin *b) { (void)b; return GOBIN_NOT_GO; }
WEAK uint64_t gobin_base_vaddr(const struct gobin *b) { (void)b; return 0; }
WEAK int gobin_func_by_name(const struct gobin *b, const char *n, struct gobin_func *o)
{ (void)b; (void)n; (void)o; return -ENOSYS; }
WEAK int gobin_pc_lookup(const struct gobin *b, uint64_t pc, struct gobin_pcinfo *o)
{ (void)b; (void)pc; (void)o; return -ENOSYS; }
WEAK int gobin_global(const struct gobin *b, const char *n, uint64_t *a)
{ (void)b; (void)n; (void)a; return -ENOSYS; }
WEAK ssize_t gobin_read_vaddr(const struct gobin *b, uint64_t v, void *buf, size_t len)
{ (void)b; (void)v; (void)buf; (void)len; return -ENOSYS; }
WEAK int gobin_vaddr_to_offset(const struct gobin *b, uint64_t v, uint64_t *o)
{ (void)b; (void)v; (void)o; return -ENOSYS; }
WEAK const struct go_offsets *gobin_offsets(const struct gobin *b) { (void)b; return NULL; }
WEAK int gobin_parse_buildinfo(const uint8_t *d, size_t n, struct go_version *v, char *e, size_t l)
{ (void)d; (void)n; (void)v; (void)e; (void)l; return -ENOSYS; }
WEAK int go_parse_version(const char *s, struct go_version *v) { (void)s; (void)v; return -ENOSYS; }
WEAK int go_offsets_from_dwarf(const char *p, int ma, int mi, struct go_offsets *o, char *e, size_t l)
{ (void)p; (void)ma; (void)mi; (void)o; (void)e; (void)l; return -ENOSYS; }
WEAK const char *go_status_name(const struct go_offsets *o, uint32_t s) { (void)o; (void)s; return "?"; }
WEAK const char *go_wait_reason_name(const struct go_offsets *o, uint8_t r) { (void)o; (void)r; return "?"; }
WEAK int cmd_attach(int argc, char **argv)
{ (void)argc; (void)argv; return log_err(1, "attach: not built yet"); }
WEAK int cmd_ps_probes(int pid, int json)
{ (void)pid; (void)json; return log_err(1, "ps --probes: not built yet"); }
