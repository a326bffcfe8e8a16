/* Go's pclntab: the function table every Go binary keeps for tracebacks,
 * so it survives -s -w and strip. Layouts: Go 1.16/1.17 (magic 0xfffffffa,
 * absolute entries), 1.18/1.19 (0xfffffff0, entries relative to textStart),
 * 1.20+ (0xfffffff1, _func gains startLine). Every table offset read from
 * the file is checked against the table it indexes. */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "binary/gobin.h"
#include "binary/gobin_internal.h"

#define PCLN_MAGIC_116 0xfffffffau
#define PCLN_MAGIC_118 0xfffffff0u
#define PCLN_MAGIC_120 0xfffffff1u
#define PCDATA_INL_TREE_INDEX 2
#define FUNCDATA_INL_TREE 3
#define PCVALUE_MAX_STEPS (1u << 20)

static const char unknown_name[] = "?";

static bool magic_format(uint32_t magic, enum gobin_pcln_format *fmt)
{
	switch (magic) {
	case PCLN_MAGIC_116: *fmt = PCLN_116; return true;
	case PCLN_MAGIC_118: *fmt = PCLN_118; return true;
	case PCLN_MAGIC_120: *fmt = PCLN_120; return true;
	}
	return false;
}

/* Parses and checks the pcHeader at pcln->base. */
static int parse_header(struct gobin_pcln *h, char *err, size_t errlen)
{
	const uint8_t *p = h->base;
	uint64_t offs[5];
	size_t hdr_len;

	if (h->size < 8 || !magic_format(gobin_le32(p), &h->format))
		return set_err(err, errlen, -ENOEXEC, "no Go pclntab magic");
	h->min_lc = p[6];
	h->ptr_size = p[7];
	if (p[4] || p[5] || (h->min_lc != 1 && h->min_lc != 2 && h->min_lc != 4) ||
	    h->ptr_size != 8)
		return set_err(err, errlen, -ENOEXEC, "unsupported pclntab header (minLC %u, ptrSize %u)",
			       h->min_lc, h->ptr_size);
	hdr_len = h->format == PCLN_116 ? 64 : 72;
	if (h->size < hdr_len)
		return set_err(err, errlen, -ENOEXEC, "truncated pclntab header");
	h->nfunc = gobin_le64(p + 8);
	h->nfiles = gobin_le64(p + 16);
	h->text_start = h->format == PCLN_116 ? 0 : gobin_le64(p + 24);
	for (int i = 0; i < 5; i++)
		offs[i] = gobin_le64(p + hdr_len - 40 + 8 * i);
	/* funcnametab, cutab, filetab, pctab, pclntable follow the header in this order */
	if (offs[0] < hdr_len)
		return set_err(err, errlen, -ENOEXEC, "corrupt pclntab header offsets");
	for (int i = 1; i < 5; i++)
		if (offs[i] < offs[i - 1])
			return set_err(err, errlen, -ENOEXEC, "corrupt pclntab header offsets");
	if (offs[4] > h->size)
		return set_err(err, errlen, -ENOEXEC, "pclntab tables beyond its end");
	h->funcname_off = offs[0];
	h->cu_off = offs[1];
	h->filetab_off = offs[2];
	h->pctab_off = offs[3];
	h->pcln_off = offs[4];
	h->funcname_len = offs[1] - offs[0];
	h->cu_len = offs[2] - offs[1];
	h->filetab_len = offs[3] - offs[2];
	h->pctab_len = offs[4] - offs[3];
	h->pcln_len = h->size - offs[4];
	if (h->nfunc == 0 || h->nfunc >= GOBIN_MAX_FUNCS)
		return set_err(err, errlen, -ENOEXEC, "implausible pclntab function count %llu",
			       (unsigned long long)h->nfunc);
	uint64_t ftab_entry = h->format == PCLN_116 ? 16 : 8;

	if ((h->nfunc + 1) * ftab_entry > h->pcln_len)
		return set_err(err, errlen, -ENOEXEC, "truncated pclntab function table");
	return 0;
}

int gobin_pcln_find(struct gobin *bin, char *err, size_t errlen)
{
	/* no section headers: scan the loaded bytes for a header that parses */
	for (int i = 0; i < bin->nsegs; i++) {
		const struct gobin_segment *s = &bin->segs[i];
		const uint8_t *seg = bin->map + s->offset;

		for (uint64_t off = (4 - (s->vaddr & 3)) & 3; off + 72 <= s->filesz; off += 4) {
			enum gobin_pcln_format fmt;
			struct gobin_pcln h = { 0 };

			if (seg[off + 4] || seg[off + 5] || !magic_format(gobin_le32(seg + off), &fmt))
				continue;
			h.base = seg + off;
			h.size = (size_t)(s->filesz - off);
			h.vaddr = s->vaddr + off;
			if (parse_header(&h, NULL, 0) == 0) {
				bin->pcln = h;
				return 0;
			}
		}
	}
	return set_err(err, errlen, -ENOENT, "no Go pclntab");
}

/* NUL-terminated string at off inside [base, base+len), or NULL. */
static const char *table_string(const uint8_t *base, uint64_t len, uint64_t off)
{
	if (off >= len || !memchr(base + off, '\0', (size_t)(len - off)))
		return NULL;
	return (const char *)base + off;
}

static const uint8_t *pcln_table(const struct gobin *bin)
{
	return bin->pcln.base + bin->pcln.pcln_off;
}

static size_t func_struct_size(const struct gobin *bin)
{
	return bin->pcln.format == PCLN_118 ? 40 : 44;
}

/* Pointer to the _func of function i, checked to hold the fixed part. */
static const uint8_t *func_struct(const struct gobin *bin, size_t i)
{
	uint64_t off = bin->func_off[i];

	if (off > bin->pcln.pcln_len || bin->pcln.pcln_len - off < func_struct_size(bin))
		return NULL;
	return pcln_table(bin) + off;
}

static const char *func_name_at(const struct gobin *bin, int64_t name_off)
{
	const char *s;

	if (name_off < 0)
		return NULL;
	s = table_string(bin->pcln.base + bin->pcln.funcname_off, bin->pcln.funcname_len,
			 (uint64_t)name_off);
	return s;
}

static uint64_t find_moduledata(const struct gobin *bin)
{
	uint64_t addr, v;

	if (gobin_symtab_lookup(bin, "runtime.firstmoduledata", &addr) == 0 &&
	    gobin_read_u64(bin, addr, &v) && v == bin->pcln.vaddr)
		return addr;
	if (!bin->pcln.vaddr)
		return 0;
	/* 1.26+ gives runtime.firstmoduledata a section of its own */
	if (bin->go_module_section.present &&
	    gobin_read_u64(bin, bin->go_module_section.addr, &v) && v == bin->pcln.vaddr)
		return bin->go_module_section.addr;
	/* moduledata starts {pcHeader *, funcnametab []byte{ptr...}}: match both pointers */
	for (int i = 0; i < bin->nsegs; i++) {
		const struct gobin_segment *s = &bin->segs[i];
		const uint8_t *seg = bin->map + s->offset;

		if (!(s->flags & PF_W))
			continue;
		for (uint64_t off = (8 - (s->vaddr & 7)) & 7; off + 16 <= s->filesz; off += 8) {
			if (gobin_le64(seg + off) == bin->pcln.vaddr &&
			    gobin_le64(seg + off + 8) == bin->pcln.vaddr + bin->pcln.funcname_off)
				return s->vaddr + off;
		}
	}
	return 0;
}

/* textStart: the header's (1.18+), except that Go 1.26 zeroes it. */
static uint64_t text_start(struct gobin *bin)
{
	uint64_t addr;

	if (bin->pcln.format == PCLN_116 || bin->pcln.text_start)
		return bin->pcln.text_start;
	if (gobin_symtab_lookup(bin, "runtime.text", &addr) == 0)
		return addr;
	if (bin->moduledata && gobin_read_u64(bin, bin->moduledata + 176, &addr) && addr)
		return addr;
	/* internal linking puts runtime.text at the start of .text; cgo builds do not */
	return bin->text_section.present ? bin->text_section.addr : 0;
}

static uint64_t find_gofunc(const struct gobin *bin)
{
	uint64_t addr, off;
	size_t avail;

	if (bin->pcln.format == PCLN_116)
		return 0;
	if (gobin_symtab_lookup(bin, "go:func.*", &addr) == 0 ||
	    gobin_symtab_lookup(bin, "go.func.*", &addr) == 0)
		return addr;
	/* moduledata.gofunc: 304 in 1.18/1.19; 320 once covctrs/ecovctrs came in
	 * 1.20; 344 in 1.27 (typedesclen, itaboffset and itabsize in, typelinks
	 * and itablinks out; 320 is then itaboffset, a small integer). A release
	 * newer than this list gets the newest offset, and any offset is
	 * believed only when it points into the file. */
	if (bin->pcln.format == PCLN_118)
		off = 304;
	else if (bin->ver.major == 1 && bin->ver.minor < 27)
		off = 320;
	else
		off = 344;
	if (bin->moduledata && gobin_read_u64(bin, bin->moduledata + off, &addr) &&
	    gobin_vaddr_ptr(bin, addr, &avail))
		return addr;
	return 0;
}

static int cmp_by_name(const void *a, const void *b, void *ctx)
{
	const struct gobin_func *funcs = ctx;

	return strcmp(funcs[*(const uint32_t *)a].name, funcs[*(const uint32_t *)b].name);
}

int gobin_pcln_build(struct gobin *bin, char *err, size_t errlen)
{
	const struct gobin_pcln *h;
	const uint8_t *ftab;
	uint64_t text, prev = 0;
	size_t n;
	int ret;

	ret = parse_header(&bin->pcln, err, errlen);
	if (ret)
		return ret;
	h = &bin->pcln;
	bin->moduledata = find_moduledata(bin);
	text = text_start(bin);
	if (h->format != PCLN_116 && !text)
		return set_err(err, errlen, -ENOEXEC, "cannot locate the text start of the pclntab");
	n = (size_t)h->nfunc;
	bin->funcs = calloc(n, sizeof(*bin->funcs));
	bin->func_off = calloc(n, sizeof(*bin->func_off));
	bin->by_name = calloc(n, sizeof(*bin->by_name));
	if (!bin->funcs || !bin->func_off || !bin->by_name)
		return set_err(err, errlen, -ENOMEM, "out of memory for %zu functions", n);
	ftab = pcln_table(bin);
	for (size_t i = 0; i <= n; i++) {
		uint64_t entry, funcoff;

		if (h->format == PCLN_116) {
			entry = gobin_le64(ftab + 16 * i);
			funcoff = gobin_le64(ftab + 16 * i + 8);
		} else {
			entry = text + gobin_le32(ftab + 8 * i);
			funcoff = gobin_le32(ftab + 8 * i + 4);
		}
		if (entry < prev)
			return set_err(err, errlen, -ENOEXEC, "pclntab function table not sorted");
		prev = entry;
		if (i > 0)
			bin->funcs[i - 1].end = entry;
		if (i == n)
			break;
		if (funcoff > UINT32_MAX)
			return set_err(err, errlen, -ENOEXEC, "corrupt pclntab function offset");
		bin->funcs[i].entry = entry;
		bin->func_off[i] = (uint32_t)funcoff;
		bin->by_name[i] = (uint32_t)i;

		const uint8_t *f = func_struct(bin, i);
		const char *name = NULL;

		if (f)
			name = func_name_at(bin, (int32_t)gobin_le32(f + (h->format == PCLN_116 ? 8 : 4)));
		bin->funcs[i].name = name ? name : unknown_name;
	}
	bin->nfuncs = n;
	qsort_r(bin->by_name, n, sizeof(*bin->by_name), cmp_by_name, bin->funcs);
	bin->gofunc = find_gofunc(bin);
	return 0;
}

void gobin_pcln_free(struct gobin *bin)
{
	free(bin->funcs);
	free(bin->func_off);
	free(bin->by_name);
	bin->funcs = NULL;
	bin->func_off = NULL;
	bin->by_name = NULL;
	bin->nfuncs = 0;
}

int gobin_func_by_name(const struct gobin *bin, const char *name, struct gobin_func *out)
{
	size_t lo = 0, hi = bin->nfuncs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct gobin_func *f = &bin->funcs[bin->by_name[mid]];
		int c = strcmp(f->name, name);

		if (c == 0) {
			/* Stripped pclntabs name an ABI0 wrapper like its body
			 * ("runtime.goexit1" twice): the wrapper is a few bytes
			 * that call the body, so the largest of the namesakes is
			 * the function itself. */
			size_t first = mid, last = mid;

			while (first > 0 && !strcmp(bin->funcs[bin->by_name[first - 1]].name, name))
				first--;
			while (last + 1 < bin->nfuncs &&
			       !strcmp(bin->funcs[bin->by_name[last + 1]].name, name))
				last++;
			for (size_t i = first; i <= last; i++) {
				const struct gobin_func *g = &bin->funcs[bin->by_name[i]];

				if (g->end - g->entry > f->end - f->entry)
					f = g;
			}
			*out = *f;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

size_t gobin_funcs_with_prefix(const struct gobin *bin, const char *prefix, struct gobin_func *out,
			       size_t max)
{
	size_t lo = 0, hi = bin->nfuncs, n = 0, plen = strlen(prefix);

	while (lo < hi) { /* first name >= prefix */
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(bin->funcs[bin->by_name[mid]].name, prefix) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < bin->nfuncs; lo++) {
		const struct gobin_func *f = &bin->funcs[bin->by_name[lo]];

		if (strncmp(f->name, prefix, plen) != 0)
			break;
		if (n < max)
			out[n] = *f;
		n++;
	}
	return n;
}

static bool func_index(const struct gobin *bin, uint64_t pc, size_t *idx)
{
	size_t lo = 0, hi = bin->nfuncs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (bin->funcs[mid].entry <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	/* several zero-size entries may share an address: the last one holding pc wins */
	if (pc >= bin->funcs[lo - 1].end)
		return false;
	*idx = lo - 1;
	return true;
}

/* Go's pcvalue: value of table `off` at pc; pairs of (zigzag value delta,
 * pc delta * minLC) starting at value -1 from the function entry. */
static bool pcvalue(const struct gobin *bin, size_t fi, uint32_t off, uint64_t target,
		    int32_t *val)
{
	const uint8_t *tab = bin->pcln.base + bin->pcln.pctab_off;
	const uint8_t *p, *end = tab + bin->pcln.pctab_len;
	uint64_t entry = bin->funcs[fi].entry, pc = entry;
	int32_t v = -1;

	if (off == 0 || off >= bin->pcln.pctab_len)
		return false;
	p = tab + off;
	for (unsigned steps = 0; steps < PCVALUE_MAX_STEPS; steps++) {
		uint64_t uv, pcdelta;
		bool first = pc == entry;

		if (!gobin_uvarint(&p, end, &uv) || (uv == 0 && !first))
			return false;
		if (!gobin_uvarint(&p, end, &pcdelta))
			return false;
		int32_t delta = (uv & 1) ? ~(int32_t)(uint32_t)(uv >> 1) : (int32_t)(uint32_t)(uv >> 1);

		pc += pcdelta * bin->pcln.min_lc;
		v = (int32_t)((uint32_t)v + (uint32_t)delta);
		if (target < pc) {
			*val = v;
			return true;
		}
	}
	return false;
}

static const char *file_name(const struct gobin *bin, uint32_t cu_offset, int32_t fileno)
{
	const struct gobin_pcln *h = &bin->pcln;
	uint64_t idx, fileoff;

	if (fileno < 0)
		return NULL;
	idx = (uint64_t)cu_offset + (uint64_t)fileno;
	if (idx >= h->cu_len / 4)
		return NULL;
	fileoff = gobin_le32(h->base + h->cu_off + 4 * idx);
	if (fileoff == UINT32_MAX)
		return NULL;
	return table_string(h->base + h->filetab_off, h->filetab_len, fileoff);
}

/* Name of the innermost inlined function at pc (1.18+), or NULL when pc is
 * not inside inlined code. */
static const char *inlined_name(const struct gobin *bin, size_t fi, const uint8_t *f,
				uint64_t pc)
{
	size_t fsz = func_struct_size(bin), avail;
	const uint8_t *tree;
	uint32_t npcdata, nfuncdata, pcoff, fdoff, rec = bin->pcln.format == PCLN_118 ? 20 : 16;
	uint64_t foff = bin->func_off[fi];
	int32_t ix;

	if (bin->pcln.format == PCLN_116 || !bin->gofunc)
		return NULL;
	npcdata = gobin_le32(f + 28);
	nfuncdata = f[fsz - 1];
	if (npcdata <= PCDATA_INL_TREE_INDEX || nfuncdata <= FUNCDATA_INL_TREE)
		return NULL;
	uint64_t need = fsz + 4ull * npcdata + 4ull * nfuncdata;

	if (bin->pcln.pcln_len - foff < need)
		return NULL;
	pcoff = gobin_le32(f + fsz + 4 * PCDATA_INL_TREE_INDEX);
	fdoff = gobin_le32(f + fsz + 4ull * npcdata + 4 * FUNCDATA_INL_TREE);
	if (fdoff == UINT32_MAX || !pcvalue(bin, fi, pcoff, pc, &ix) || ix < 0)
		return NULL;
	tree = gobin_vaddr_ptr(bin, bin->gofunc + fdoff, &avail);
	if (!tree || avail / rec <= (uint64_t)ix)
		return NULL;
	tree += (uint64_t)ix * rec;
	/* 1.20+ {funcID u8, _ [3]u8, nameOff i32, parentPc i32, startLine i32};
	 * 1.18/1.19 {parent i16, funcID u8, _ u8, file i32, line i32, func_ i32, parentPc i32} */
	return func_name_at(bin, (int32_t)gobin_le32(tree + (rec == 16 ? 4 : 12)));
}

int gobin_pc_lookup(const struct gobin *bin, uint64_t pc, struct gobin_pcinfo *out)
{
	const bool old = bin->pcln.format == PCLN_116;
	const uint8_t *f;
	const char *inl;
	int32_t fileno, line;
	size_t fi;

	memset(out, 0, sizeof(*out));
	if (!func_index(bin, pc, &fi))
		return -ENOENT;
	out->func = bin->funcs[fi].name;
	out->entry = bin->funcs[fi].entry;
	out->file = "?";
	out->line = 0;
	f = func_struct(bin, fi);
	if (!f)
		return 0;
	/* pcfile/pcln/cuOffset sit 4 bytes later in the 1.16 layout (8-byte entry) */
	uint32_t pcfile = gobin_le32(f + (old ? 24 : 20)), pcln = gobin_le32(f + (old ? 28 : 24));
	uint32_t cu = gobin_le32(f + (old ? 36 : 32));

	if (pcvalue(bin, fi, pcfile, pc, &fileno)) {
		const char *name = file_name(bin, cu, fileno);

		if (name)
			out->file = name;
	}
	if (pcvalue(bin, fi, pcln, pc, &line))
		out->line = line;
	inl = inlined_name(bin, fi, f, pc);
	if (inl)
		out->func = inl;
	return 0;
}
