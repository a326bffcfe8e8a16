/* Growable text buffer for rendering (metrics, JSON lines, reports). */
#ifndef MEMDRIFT_STRBUF_H
#define MEMDRIFT_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *buf;
	size_t len, cap;
	size_t limit; /* 0 = unbounded; beyond it appends are dropped */
	bool truncated;
};

void strbuf_init(struct strbuf *sb, size_t limit);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int strbuf_append(struct strbuf *sb, const char *s, size_t n);
/* Hands the buffer to the caller (free() it); sb is reset. */
char *strbuf_steal(struct strbuf *sb, size_t *len);
void strbuf_free(struct strbuf *sb);

#endif
