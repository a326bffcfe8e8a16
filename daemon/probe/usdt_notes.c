/* .note.stapsdt parser. Each note (owner "stapsdt", type 3) holds three
 * addresses — probe site, .stapsdt.base as linked, semaphore — then the
 * strings provider, name, arguments. When prelink moved the object, the
 * site moves by the difference between the actual .stapsdt.base section
 * address and the one recorded in the note. */
#include "probe/usdt_notes.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "discover/proc.h"

#define NT_STAPSDT 3

static uint64_t read_addr(const uint8_t *p, bool is64, bool swap)
{
	uint64_t v = 0;

	if (is64) {
		memcpy(&v, p, 8);
		if (swap)
			v = __builtin_bswap64(v);
	} else {
		uint32_t w;

		memcpy(&w, p, 4);
		v = swap ? __builtin_bswap32(w) : w;
	}
	return v;
}

/* Link-time address -> file offset through the PT_LOAD segments. */
static int vaddr_to_offset(Elf *elf, uint64_t addr, uint64_t *off)
{
	size_t n;

	if (elf_getphdrnum(elf, &n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (addr >= ph.p_vaddr && addr < ph.p_vaddr + ph.p_filesz) {
			*off = addr - ph.p_vaddr + ph.p_offset;
			return 0;
		}
	}
	return -ENOENT;
}

/* Copies the string at src (at most *left bytes remain) into dst, truncated
 * to cap; returns where the next string starts and shrinks *left. */
static const char *next_str(char *dst, size_t cap, const char *src, size_t *left)
{
	size_t len = strnlen(src, *left), copy = len < cap ? len : cap - 1;

	memcpy(dst, src, copy);
	dst[copy] = 0;
	len = len < *left ? len + 1 : len;
	*left -= len;
	return src + len;
}

static int parse_elf(Elf *elf, struct usdt_notes *out, char *err, size_t errlen)
{
	const char *ident;
	bool is64, swap;
	size_t shstrndx, cap = 0;
	uint64_t base_section = 0;
	bool have_base_section = false;
	Elf_Scn *scn = NULL;

	memset(out, 0, sizeof(*out));
	if (elf_kind(elf) != ELF_K_ELF)
		return set_err(err, errlen, -ENOEXEC, "not an ELF object");
	ident = elf_getident(elf, NULL);
	if (!ident || elf_getshdrstrndx(elf, &shstrndx))
		return set_err(err, errlen, -ENOEXEC, "malformed ELF header: %s", elf_errmsg(-1));
	is64 = ident[EI_CLASS] == ELFCLASS64;
	swap = (ident[EI_DATA] == ELFDATA2MSB) != (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__);

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (name && !strcmp(name, ".stapsdt.base")) {
			base_section = sh.sh_addr;
			have_base_section = true;
		}
	}

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		const char *name;
		size_t off = 0, name_off, desc_off;
		GElf_Nhdr nh;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name || strcmp(name, ".note.stapsdt"))
			continue;
		data = elf_getdata(scn, NULL);
		if (!data || !data->d_buf)
			continue;
		while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
			const uint8_t *desc = (const uint8_t *)data->d_buf + desc_off;
			size_t asz = is64 ? 8 : 4, left;
			const char *s;
			struct usdt_note *note;

			if (nh.n_type != NT_STAPSDT || nh.n_namesz != 8 ||
			    memcmp((const char *)data->d_buf + name_off, "stapsdt", 8))
				continue;
			if (nh.n_descsz < 3 * asz + 3 || desc_off + nh.n_descsz > data->d_size)
				continue;
			if (out->n == USDT_MAX_NOTES) {
				out->truncated = true;
				break;
			}
			if (out->n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				void *nv = realloc(out->v, ncap * sizeof(*out->v));

				if (!nv) {
					usdt_notes_free(out);
					return set_err(err, errlen, -ENOMEM, "out of memory");
				}
				out->v = nv;
				cap = ncap;
			}
			note = &out->v[out->n];
			memset(note, 0, sizeof(*note));
			note->location = read_addr(desc, is64, swap);
			note->base = read_addr(desc + asz, is64, swap);
			note->semaphore = read_addr(desc + 2 * asz, is64, swap);
			s = (const char *)desc + 3 * asz;
			left = nh.n_descsz - 3 * asz;
			s = next_str(note->provider, sizeof(note->provider), s, &left);
			s = next_str(note->name, sizeof(note->name), s, &left);
			next_str(note->args, sizeof(note->args), s, &left);
			note->addr = note->location;
			if (have_base_section && note->base)
				note->addr += base_section - note->base;
			note->has_offset = !vaddr_to_offset(elf, note->addr, &note->file_offset);
			out->n++;
		}
	}
	return 0;
}

int usdt_notes_from_buffer(const void *buf, size_t len, struct usdt_notes *out, char *err,
			   size_t errlen)
{
	Elf *elf;
	int ret;

	elf_version(EV_CURRENT);
	elf = elf_memory((char *)buf, len);
	if (!elf)
		return set_err(err, errlen, -ENOEXEC, "not an ELF object: %s", elf_errmsg(-1));
	ret = parse_elf(elf, out, err, errlen);
	elf_end(elf);
	return ret;
}

int usdt_notes_read(const char *path, struct usdt_notes *out, char *err, size_t errlen)
{
	Elf *elf;
	int fd, ret;

	memset(out, 0, sizeof(*out));
	elf_version(EV_CURRENT);
	fd = proc_open_untrusted(path, PROC_MAX_ELF_FILE, NULL);
	if (fd < 0)
		return set_err(err, errlen, fd, "open %s: %s", path, proc_open_error(fd));
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf) {
		close(fd);
		return set_err(err, errlen, -ENOEXEC, "%s: not an ELF object", path);
	}
	ret = parse_elf(elf, out, err, errlen);
	elf_end(elf);
	close(fd);
	return ret;
}

void usdt_notes_free(struct usdt_notes *notes)
{
	free(notes->v);
	notes->v = NULL;
	notes->n = 0;
}

const struct usdt_note *usdt_notes_find(const struct usdt_notes *notes, const char *provider,
					const char *name)
{
	for (size_t i = 0; i < notes->n; i++)
		if (!strcmp(notes->v[i].provider, provider) && !strcmp(notes->v[i].name, name))
			return &notes->v[i];
	return NULL;
}

int usdt_x86_reg(const char *name)
{
	/* Every width of each register: 64, 32, 16, 8 bits. */
	static const char *const names[17][5] = {
		{ "rax", "eax", "ax", "al", "ah" },    { "rbx", "ebx", "bx", "bl", "bh" },
		{ "rcx", "ecx", "cx", "cl", "ch" },    { "rdx", "edx", "dx", "dl", "dh" },
		{ "rsi", "esi", "si", "sil", NULL },   { "rdi", "edi", "di", "dil", NULL },
		{ "rbp", "ebp", "bp", "bpl", NULL },   { "rsp", "esp", "sp", "spl", NULL },
		{ "r8", "r8d", "r8w", "r8b", NULL },   { "r9", "r9d", "r9w", "r9b", NULL },
		{ "r10", "r10d", "r10w", "r10b", NULL }, { "r11", "r11d", "r11w", "r11b", NULL },
		{ "r12", "r12d", "r12w", "r12b", NULL }, { "r13", "r13d", "r13w", "r13b", NULL },
		{ "r14", "r14d", "r14w", "r14b", NULL }, { "r15", "r15d", "r15w", "r15b", NULL },
		{ "rip", "eip", NULL, NULL, NULL },
	};

	for (int i = 0; i < 17; i++)
		for (int j = 0; j < 5 && names[i][j]; j++)
			if (!strcmp(name, names[i][j]))
				return i;
	return -1;
}

static int parse_reg(const char **p, int *reg)
{
	char name[8];
	size_t n = 0;

	if (**p != '%')
		return -EINVAL;
	(*p)++;
	while (isalnum((unsigned char)**p) && n < sizeof(name) - 1)
		name[n++] = *(*p)++;
	name[n] = 0;
	*reg = usdt_x86_reg(name);
	return *reg < 0 ? -EINVAL : 0;
}

int usdt_arg_parse(const char *spec, int index, struct usdt_arg *out)
{
	const char *p = spec;
	char *end;
	long size;

	if (index < 0 || index >= USDT_MAX_ARGS)
		return -ENOENT;
	for (int i = 0;; i++) {
		while (*p == ' ')
			p++;
		if (!*p)
			return -ENOENT;
		if (i == index)
			break;
		while (*p && *p != ' ')
			p++;
	}
	memset(out, 0, sizeof(*out));
	size = strtol(p, &end, 10);
	if (end == p || *end != '@')
		return -EINVAL;
	out->is_signed = size < 0;
	out->size = (int)(size < 0 ? -size : size);
	if (out->size != 1 && out->size != 2 && out->size != 4 && out->size != 8)
		return -EINVAL;
	p = end + 1;
	if (*p == '$') {
		out->kind = USDT_ARG_CONST;
		out->value = strtoll(p + 1, &end, 0);
		if (end == p + 1)
			return -EINVAL;
		p = end;
	} else if (*p == '%') {
		out->kind = USDT_ARG_REG;
		if (parse_reg(&p, &out->reg))
			return -EINVAL;
	} else {
		out->kind = USDT_ARG_MEM;
		if (*p != '(') {
			out->value = strtoll(p, &end, 0);
			if (end == p)
				return -EINVAL;
			p = end;
		}
		if (*p != '(')
			return -EINVAL;
		p++;
		if (parse_reg(&p, &out->reg) || *p != ')') /* base only: no index */
			return -EINVAL;
		p++;
	}
	return (*p == ' ' || !*p) ? 0 : -EINVAL;
}
