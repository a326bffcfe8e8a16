/* USDT (SystemTap SDT) probes of an ELF object, from its .note.stapsdt
 * notes: provider, name, address, argument specs. Parsed with libelf from a
 * path or a buffer (tests feed fixtures). */
#ifndef MEMDRIFT_USDT_NOTES_H
#define MEMDRIFT_USDT_NOTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USDT_NAME_MAX 64
#define USDT_ARGS_MAX 160
#define USDT_MAX_NOTES 8192 /* a libjvm has ~530; more is not a real object */
#define USDT_MAX_ARGS 12

struct usdt_note {
	char provider[USDT_NAME_MAX];
	char name[USDT_NAME_MAX];
	uint64_t location;    /* link-time address as written in the note */
	uint64_t base;        /* .stapsdt.base address as written (0: none) */
	uint64_t semaphore;   /* 0: no semaphore (always armed) */
	uint64_t addr;        /* location adjusted for prelinking */
	uint64_t file_offset; /* where a uprobe goes; valid when has_offset */
	bool has_offset;
	char args[USDT_ARGS_MAX]; /* "8@%r13 8@%r12" */
};

struct usdt_notes {
	struct usdt_note *v;
	size_t n;
	bool truncated; /* more than USDT_MAX_NOTES */
};

/* 0 (possibly n == 0: no notes) or negative errno with a reason in err. */
int usdt_notes_read(const char *path, struct usdt_notes *out, char *err, size_t errlen);
int usdt_notes_from_buffer(const void *buf, size_t len, struct usdt_notes *out, char *err,
			   size_t errlen);
void usdt_notes_free(struct usdt_notes *notes);
const struct usdt_note *usdt_notes_find(const struct usdt_notes *notes, const char *provider,
					const char *name);

enum usdt_arg_kind { USDT_ARG_CONST, USDT_ARG_REG, USDT_ARG_MEM };

/* One argument of a spec string. x86-64 register numbers, in this order:
 * ax bx cx dx si di bp sp r8..r15 ip (0..16), whatever the width named. */
struct usdt_arg {
	enum usdt_arg_kind kind;
	int size;        /* bytes: 1, 2, 4, 8 */
	bool is_signed;  /* negative size in the spec */
	int reg;         /* REG, MEM */
	int64_t value;   /* CONST: the value; MEM: the displacement */
};

/* The index-th (0-based) argument of spec. 0, -ENOENT (fewer arguments),
 * -EINVAL (unparsable or unsupported form, e.g. an index register). */
int usdt_arg_parse(const char *spec, int index, struct usdt_arg *out);
/* x86-64 register name without '%' ("rax", "eax", "r12d", "sil") -> 0..16,
 * or -1. */
int usdt_x86_reg(const char *name);

#endif
