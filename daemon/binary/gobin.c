/* Go binary analysis: ELF loading, build info, build-id, address mapping and
 * struct offsets. The function table lives in gobin_pclntab.c, runtime global
 * recovery in gobin_globals.c. The file is mapped read-only once; every
 * offset taken from it is checked against the mapping before use, so a
 * corrupt or hostile file yields -ENOEXEC, never an out-of-bounds read. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "binary/gobin.h"
#include "binary/gobin_internal.h"
#include "discover/classify.h"
#include "discover/proc.h"

#define GOBIN_MAX_FILE_SIZE (4ull << 30)
/* real Go binaries: 10k-500k symbols (a kubelet ~250k) */
#define GOBIN_MAX_SYMTAB_ENTRIES (4u << 20)
#define BUILDINFO_MAGIC "\xff Go buildinf:"
#define BUILDINFO_MAGIC_LEN 14
#define BUILDINFO_HEADER_LEN 32
#define BUILDINFO_MAX_STRING (1u << 20)
#define NOTE_GNU_BUILD_ID 3
#define NOTE_GO_BUILD_ID 4

static bool range_ok(uint64_t total, uint64_t off, uint64_t size)
{
	return off <= total && size <= total - off;
}

int go_parse_version(const char *s, struct go_version *ver)
{
	const char *p;
	char *end;
	long v;

	memset(ver, 0, sizeof(*ver));
	if (!s)
		return -EINVAL;
	snprintf(ver->str, sizeof(ver->str), "%s", s);
	if (strncmp(s, "devel", 5) == 0) {
		/* "devel go1.24-abc..." names its base release; plain "devel +abc" does not. */
		p = strstr(s, "go1.");
		if (!p)
			return 0;
		s = p;
	}
	if (strncmp(s, "go", 2) != 0 || s[2] < '0' || s[2] > '9')
		return -EINVAL;
	p = s + 2;
	v = strtol(p, &end, 10);
	if (end == p || v < 0 || v > 1000)
		return -EINVAL;
	ver->major = (int)v;
	if (*end != '.')
		return 0; /* "go1" */
	p = end + 1;
	v = strtol(p, &end, 10);
	if (end == p || v < 0 || v > 1000 || *p == '-' || *p == '+')
		return -EINVAL;
	ver->minor = (int)v;
	if (*end == '.' && end[1] >= '0' && end[1] <= '9') {
		p = end + 1;
		v = strtol(p, &end, 10);
		if (v < 0 || v > 100000)
			return -EINVAL;
		ver->patch = (int)v;
	}
	/* anything after (rc2, beta1, " X:boringcrypto", "-bookworm") is kept in str only */
	return 0;
}

/* ---- address mapping ---- */

const uint8_t *gobin_vaddr_ptr(const struct gobin *bin, uint64_t vaddr, size_t *avail)
{
	for (int i = 0; i < bin->nsegs; i++) {
		const struct gobin_segment *s = &bin->segs[i];

		if (vaddr >= s->vaddr && vaddr - s->vaddr < s->filesz) {
			*avail = (size_t)(s->filesz - (vaddr - s->vaddr));
			return bin->map + s->offset + (vaddr - s->vaddr);
		}
	}
	return NULL;
}

bool gobin_read_u64(const struct gobin *bin, uint64_t vaddr, uint64_t *val)
{
	size_t avail;
	const uint8_t *p = gobin_vaddr_ptr(bin, vaddr, &avail);

	if (!p || avail < 8)
		return false;
	*val = gobin_le64(p);
	return true;
}

ssize_t gobin_read_vaddr(const struct gobin *bin, uint64_t vaddr, void *buf, size_t len)
{
	size_t avail;
	const uint8_t *p = gobin_vaddr_ptr(bin, vaddr, &avail);

	if (!p)
		return -ENOENT;
	if (len > avail)
		len = avail;
	memcpy(buf, p, len);
	return (ssize_t)len;
}

int gobin_vaddr_to_offset(const struct gobin *bin, uint64_t vaddr, uint64_t *offset)
{
	for (int i = 0; i < bin->nsegs; i++) {
		const struct gobin_segment *s = &bin->segs[i];

		if (vaddr >= s->vaddr && vaddr - s->vaddr < s->filesz) {
			*offset = s->offset + (vaddr - s->vaddr);
			return 0;
		}
	}
	return -ENOENT;
}

/* ---- .symtab ---- */

static int symtab_find(const struct gobin *bin, const char *name, uint64_t *addr, uint64_t *size)
{
	const uint8_t *syms = bin->map + bin->symtab.offset;
	const char *strs = (const char *)bin->map + bin->strtab.offset;
	size_t n = bin->symtab.size / sizeof(Elf64_Sym), nlen = strlen(name);

	if (!bin->has_symtab)
		return -ENOENT;
	for (size_t i = 1; i < n; i++) {
		Elf64_Sym sym;

		memcpy(&sym, syms + i * sizeof(sym), sizeof(sym));
		if (sym.st_name >= bin->strtab.size || bin->strtab.size - sym.st_name <= nlen)
			continue;
		if (memcmp(strs + sym.st_name, name, nlen + 1) != 0)
			continue;
		if (sym.st_shndx == SHN_UNDEF)
			continue;
		*addr = sym.st_value;
		if (size)
			*size = sym.st_size;
		return 0;
	}
	return -ENOENT;
}

int gobin_symtab_lookup(const struct gobin *bin, const char *name, uint64_t *addr)
{
	return symtab_find(bin, name, addr, NULL);
}

/* ---- build info ---- */

/* Reads a Go string header {ptr, len} at vaddr and copies the string. */
static int read_go_string(const struct gobin *bin, uint64_t hdr, unsigned ptr_size, bool big,
			  char *out, size_t outlen)
{
	uint8_t raw[16];
	uint64_t ptr = 0, len = 0;
	const uint8_t *p;
	size_t avail;

	if (gobin_read_vaddr(bin, hdr, raw, 2 * ptr_size) != (ssize_t)(2 * ptr_size))
		return -ENOEXEC;
	for (unsigned i = 0; i < ptr_size; i++) {
		unsigned sh = big ? 8 * (ptr_size - 1 - i) : 8 * i;

		ptr |= (uint64_t)raw[i] << sh;
		len |= (uint64_t)raw[ptr_size + i] << sh;
	}
	if (len == 0 || len > BUILDINFO_MAX_STRING)
		return -ENOEXEC;
	p = gobin_vaddr_ptr(bin, ptr, &avail);
	if (!p || avail < len)
		return -ENOEXEC;
	if (len >= outlen)
		len = outlen - 1;
	memcpy(out, p, len);
	out[len] = '\0';
	return 0;
}

int gobin_buildinfo_parse(const struct gobin *bin, const uint8_t *data, size_t len,
			  struct go_version *ver, char *err, size_t errlen)
{
	char str[sizeof(ver->str)];
	const uint8_t *hdr = NULL, *p, *end = data + len;
	unsigned ptr_size;
	uint64_t slen;
	uint8_t flags;
	int ret;

	memset(ver, 0, sizeof(*ver));
	/* The header sits at a 16-byte boundary of the section (or segment). */
	for (size_t off = 0; len >= BUILDINFO_HEADER_LEN && off <= len - BUILDINFO_HEADER_LEN;
	     off += 16) {
		if (memcmp(data + off, BUILDINFO_MAGIC, BUILDINFO_MAGIC_LEN) == 0) {
			hdr = data + off;
			break;
		}
	}
	if (!hdr)
		return set_err(err, errlen, -ENOENT, "no Go build info header");
	ptr_size = hdr[14];
	flags = hdr[15];
	if (flags & 2) {
		/* Go 1.18+: version and modinfo follow inline as uvarint-prefixed strings. */
		p = hdr + BUILDINFO_HEADER_LEN;
		if (!gobin_uvarint(&p, end, &slen) || slen > (uint64_t)(end - p))
			return set_err(err, errlen, -ENOEXEC, "truncated Go build info");
		if (slen == 0)
			return set_err(err, errlen, -ENOEXEC, "empty Go version in build info");
		if (slen >= sizeof(str))
			slen = sizeof(str) - 1;
		memcpy(str, p, slen);
		str[slen] = '\0';
	} else {
		if (ptr_size != 4 && ptr_size != 8)
			return set_err(err, errlen, -ENOEXEC, "bad pointer size %u in Go build info",
				       ptr_size);
		if (!bin)
			return set_err(err, errlen, -EAGAIN,
				       "pointer-format Go build info (before go1.18) needs the ELF to resolve");
		uint64_t ptr = 0;

		for (unsigned i = 0; i < ptr_size; i++)
			ptr |= (uint64_t)hdr[16 + i] << ((flags & 1) ? 8 * (ptr_size - 1 - i) : 8 * i);
		ret = read_go_string(bin, ptr, ptr_size, flags & 1, str, sizeof(str));
		if (ret)
			return set_err(err, errlen, ret, "unresolvable Go version pointer 0x%llx",
				       (unsigned long long)ptr);
	}
	for (char *c = str; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	ret = go_parse_version(str, ver);
	if (ret)
		return set_err(err, errlen, -ENOEXEC, "unparsable Go version \"%s\"", str);
	return 0;
}

int gobin_parse_buildinfo(const uint8_t *data, size_t len, struct go_version *ver, char *err,
			  size_t errlen)
{
	return gobin_buildinfo_parse(NULL, data, len, ver, err, errlen);
}

/* ---- ELF loading ---- */

static void hex_encode(const uint8_t *p, size_t n, char *out, size_t outlen)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && 2 * i + 2 < outlen; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * i] = '\0';
}

/* Walks an ELF note area for the GNU build-id (preferred) or the Go build id. */
static void scan_notes(struct gobin *bin, uint64_t off, uint64_t size, bool *have_gnu)
{
	const uint8_t *p = bin->map + off, *end = p + size;

	while (end - p >= 12) {
		uint32_t namesz = gobin_le32(p), descsz = gobin_le32(p + 4), type = gobin_le32(p + 8);
		uint64_t name_pad = ((uint64_t)namesz + 3) & ~3ull, desc_pad = ((uint64_t)descsz + 3) & ~3ull;
		const uint8_t *name = p + 12, *desc = name + name_pad;

		if (name_pad > (uint64_t)(end - name) || desc_pad > (uint64_t)(end - desc) ||
		    descsz > desc_pad)
			return;
		if (type == NOTE_GNU_BUILD_ID && namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
		    descsz) {
			hex_encode(desc, descsz, bin->build_id, sizeof(bin->build_id));
			*have_gnu = true;
		} else if (type == NOTE_GO_BUILD_ID && (namesz == 3 || namesz == 4) &&
			   memcmp(name, "Go", 3) == 0 &&
			   descsz && !*have_gnu) {
			hex_encode(desc, descsz, bin->build_id, sizeof(bin->build_id));
		}
		p = desc + desc_pad;
	}
}

/* DT_NEEDED names a libc (glibc or musl, discover/classify.h): the Go program
 * calls into C (cgo or the cgo resolver). */
static bool links_libc(const struct gobin *bin, const GElf_Phdr *dyn)
{
	uint64_t strtab = 0, strsz = 0;
	const uint8_t *d, *strs;
	size_t n, avail;

	if (!range_ok(bin->size, dyn->p_offset, dyn->p_filesz))
		return false;
	d = bin->map + dyn->p_offset;
	n = dyn->p_filesz / 16;
	for (size_t i = 0; i < n; i++) {
		uint64_t tag = gobin_le64(d + 16 * i), val = gobin_le64(d + 16 * i + 8);

		if (tag == DT_NULL)
			break;
		if (tag == DT_STRTAB)
			strtab = val;
		else if (tag == DT_STRSZ)
			strsz = val;
	}
	strs = gobin_vaddr_ptr(bin, strtab, &avail);
	if (!strs)
		return false;
	if (strsz > avail)
		strsz = avail;
	for (size_t i = 0; i < n; i++) {
		uint64_t tag = gobin_le64(d + 16 * i), val = gobin_le64(d + 16 * i + 8);

		if (tag == DT_NULL)
			break;
		if (tag != DT_NEEDED || val >= strsz)
			continue;
		const char *s = (const char *)strs + val;
		size_t max = strsz - val;

		if (strnlen(s, max) < max && classify_libc_soname(s) != LIBC_NONE)
			return true;
	}
	return false;
}

static void record_section(struct gobin *bin, struct gobin_range *r, const GElf_Shdr *sh)
{
	if (sh->sh_type == SHT_NOBITS || !range_ok(bin->size, sh->sh_offset, sh->sh_size))
		return;
	r->offset = sh->sh_offset;
	r->size = sh->sh_size;
	r->addr = (sh->sh_flags & SHF_ALLOC) ? sh->sh_addr : 0;
	r->present = true;
}

struct elf_scan {
	struct gobin_range buildinfo, pclntab;
	bool dynamic_libc;
	bool has_cgo_symbol;
};

static int load_elf(struct gobin *bin, const char *path, struct elf_scan *sc, char *err,
		    size_t errlen)
{
	bool have_gnu_id = false;
	size_t nphdr, shstrndx, nsec = 0;
	struct stat st;
	Elf_Scn *scn = NULL;
	GElf_Ehdr eh;
	Elf *elf;
	void *map;
	int fd, ret = 0;

	memset(sc, 0, sizeof(*sc));
	fd = proc_open_untrusted(path, GOBIN_MAX_FILE_SIZE, NULL);
	if (fd < 0) {
		ret = fd;
		if (ret == -ENOENT || ret == -ENOTDIR)
			return set_err(err, errlen, -ENOENT, "%s: no such file", path);
		if (ret == -EACCES || ret == -EPERM)
			return set_err(err, errlen, -EACCES, "%s: permission denied", path);
		if (ret == -EISDIR || ret == -EINVAL || ret == -EFBIG || ret == -ELOOP)
			return set_err(err, errlen, -ENOEXEC, "%s: not an ELF file (%s)", path,
				       proc_open_error(ret));
		return set_err(err, errlen, ret, "%s: open: %s", path, proc_open_error(ret));
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		close(fd);
		return set_err(err, errlen, ret, "%s: stat: %s", path, strerror(-ret));
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr) ||
	    (uint64_t)st.st_size > GOBIN_MAX_FILE_SIZE) {
		close(fd);
		return set_err(err, errlen, -ENOEXEC, "%s: not an ELF file", path);
	}
	/* writable copy-on-write pages: libelf may convert headers in place */
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return set_err(err, errlen, -errno, "%s: mmap: %s", path, strerror(errno));
	bin->map = map;
	bin->size = (size_t)st.st_size;
	if (memcmp(map, ELFMAG, SELFMAG) != 0)
		return set_err(err, errlen, -ENOEXEC, "%s: not an ELF file", path);
	if (bin->map[EI_CLASS] != ELFCLASS64 || bin->map[EI_DATA] != ELFDATA2LSB)
		return set_err(err, errlen, -ENOEXEC, "%s: not a 64-bit little-endian ELF", path);

	elf_version(EV_CURRENT);
	elf = elf_memory((char *)map, bin->size);
	if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh)) {
		ret = set_err(err, errlen, -ENOEXEC, "%s: corrupt ELF header (%s)", path,
			      elf_errmsg(-1));
		goto out;
	}
	if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) {
		ret = set_err(err, errlen, -ENOEXEC, "%s: ELF is not an executable", path);
		goto out;
	}
	bin->pie = eh.e_type == ET_DYN;
	bin->machine = eh.e_machine;

	if (elf_getphdrnum(elf, &nphdr) != 0) {
		ret = set_err(err, errlen, -ENOEXEC, "%s: corrupt ELF program headers", path);
		goto out;
	}
	bin->base_vaddr = UINT64_MAX;
	GElf_Phdr dyn = { 0 };
	bool have_dyn = false;

	for (size_t i = 0; i < nphdr && i < 256; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, (int)i, &ph)) {
			ret = set_err(err, errlen, -ENOEXEC, "%s: corrupt ELF program header %zu",
				      path, i);
			goto out;
		}
		if (ph.p_type == PT_DYNAMIC) {
			dyn = ph;
			have_dyn = true;
		}
		if (ph.p_type == PT_NOTE && range_ok(bin->size, ph.p_offset, ph.p_filesz))
			scan_notes(bin, ph.p_offset, ph.p_filesz, &have_gnu_id);
		if (ph.p_type != PT_LOAD)
			continue;
		if (!range_ok(bin->size, ph.p_offset, ph.p_filesz) || ph.p_filesz > ph.p_memsz ||
		    ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
			ret = set_err(err, errlen, -ENOEXEC,
				      "%s: truncated or corrupt ELF (segment %zu outside the file)",
				      path, i);
			goto out;
		}
		if (bin->nsegs == GOBIN_MAX_SEGMENTS)
			continue;
		bin->segs[bin->nsegs++] = (struct gobin_segment){
			.vaddr = ph.p_vaddr, .memsz = ph.p_memsz,
			.offset = ph.p_offset, .filesz = ph.p_filesz, .flags = ph.p_flags,
		};
		uint64_t align = ph.p_align && !(ph.p_align & (ph.p_align - 1)) ? ph.p_align : 1;
		uint64_t base = ph.p_vaddr & ~(align - 1);

		if (base < bin->base_vaddr)
			bin->base_vaddr = base;
	}
	if (!bin->nsegs) {
		ret = set_err(err, errlen, -ENOEXEC, "%s: ELF has no loadable segment", path);
		goto out;
	}
	if (have_dyn)
		sc->dynamic_libc = links_libc(bin, &dyn);

	if (elf_getshdrnum(elf, &nsec) != 0 || elf_getshdrstrndx(elf, &shstrndx) != 0)
		nsec = 0; /* section headers are optional: fall back to segment scans */
	while (nsec && (scn = elf_nextscn(elf, scn)) != NULL) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name)
			continue;
		if (strcmp(name, ".go.buildinfo") == 0) {
			record_section(bin, &sc->buildinfo, &sh);
		} else if (strcmp(name, ".gopclntab") == 0 ||
			   strcmp(name, ".data.rel.ro.gopclntab") == 0) {
			record_section(bin, &sc->pclntab, &sh);
		} else if (strcmp(name, ".text") == 0) {
			record_section(bin, &bin->text_section, &sh);
		} else if (strcmp(name, ".go.module") == 0) {
			record_section(bin, &bin->go_module_section, &sh);
		} else if (strcmp(name, ".debug_info") == 0 || strcmp(name, ".zdebug_info") == 0) {
			bin->has_dwarf = sh.sh_size > 0 && sh.sh_type != SHT_NOBITS;
		} else if (sh.sh_type == SHT_NOTE && range_ok(bin->size, sh.sh_offset, sh.sh_size)) {
			scan_notes(bin, sh.sh_offset, sh.sh_size, &have_gnu_id);
		} else if (sh.sh_type == SHT_SYMTAB && sh.sh_entsize == sizeof(Elf64_Sym)) {
			GElf_Shdr strsh;
			Elf_Scn *strscn = elf_getscn(elf, sh.sh_link);

			record_section(bin, &bin->symtab, &sh);
			if (!strscn || !gelf_getshdr(strscn, &strsh) || strsh.sh_type != SHT_STRTAB)
				bin->symtab.present = false;
			else
				record_section(bin, &bin->strtab, &strsh);
			bin->has_symtab = bin->symtab.present && bin->strtab.present &&
					  bin->symtab.size >= 2 * sizeof(Elf64_Sym);
			/* each lookup scans it: a hostile size would cost seconds */
			if (bin->has_symtab &&
			    bin->symtab.size / sizeof(Elf64_Sym) > GOBIN_MAX_SYMTAB_ENTRIES) {
				log_warn("%s: .symtab of %llu entries (over %u): ignored", path,
					 (unsigned long long)(bin->symtab.size / sizeof(Elf64_Sym)),
					 GOBIN_MAX_SYMTAB_ENTRIES);
				bin->has_symtab = false;
			}
		}
	}
	if (bin->has_symtab) {
		uint64_t a;

		/* the C half of runtime/cgo; "_cgo_init" exists in every binary */
		sc->has_cgo_symbol = symtab_find(bin, "x_cgo_init", &a, NULL) == 0;
	}
out:
	elf_end(elf);
	return ret;
}

/* Build info from the section, else the first writable PT_LOAD (stripped section headers). */
static int find_buildinfo(struct gobin *bin, const struct elf_scan *sc, struct go_version *ver,
			  char *err, size_t errlen)
{
	if (sc->buildinfo.present)
		return gobin_buildinfo_parse(bin, bin->map + sc->buildinfo.offset, sc->buildinfo.size,
					     ver, err, errlen);
	for (int i = 0; i < bin->nsegs; i++) {
		const struct gobin_segment *s = &bin->segs[i];
		uint64_t skip;

		if (!(s->flags & PF_W))
			continue;
		/* the magic is 16-byte aligned in memory, not necessarily in the file */
		skip = (16 - (s->vaddr & 15)) & 15;
		if (skip >= s->filesz)
			return set_err(err, errlen, -ENOENT, "no Go build info header");
		return gobin_buildinfo_parse(bin, bin->map + s->offset + skip, s->filesz - skip, ver,
					     err, errlen);
	}
	return set_err(err, errlen, -ENOENT, "no Go build info header");
}

static struct gobin *gobin_alloc(const char *path)
{
	struct gobin *bin = calloc(1, sizeof(*bin));

	if (!bin)
		return NULL;
	bin->path = strdup(path);
	if (!bin->path) {
		free(bin);
		return NULL;
	}
	return bin;
}

void gobin_free(struct gobin *bin)
{
	if (!bin)
		return;
	gobin_pcln_free(bin);
	if (bin->map)
		munmap((void *)bin->map, bin->size);
	free(bin->path);
	free(bin);
}

int gobin_classify(const char *path, enum gobin_kind *kind, struct go_version *ver, char *err,
		   size_t errlen)
{
	struct gobin *bin = gobin_alloc(path);
	struct elf_scan sc;
	struct go_version v;
	char why[128];
	int ret;

	*kind = GOBIN_NOT_GO;
	if (ver)
		memset(ver, 0, sizeof(*ver));
	if (!bin)
		return set_err(err, errlen, -ENOMEM, "%s: out of memory", path);
	ret = load_elf(bin, path, &sc, err, errlen);
	if (ret)
		goto out;
	ret = find_buildinfo(bin, &sc, &v, why, sizeof(why));
	if (ret == 0 || sc.pclntab.present || gobin_pcln_find(bin, why, sizeof(why)) == 0) {
		*kind = sc.dynamic_libc || sc.has_cgo_symbol ? GOBIN_GO_CGO : GOBIN_GO;
		if (ret == 0 && ver)
			*ver = v;
	}
	ret = 0;
out:
	gobin_free(bin);
	return ret;
}

static void wait_reasons_from_symtab(struct gobin *bin)
{
	uint64_t addr, size;
	int n;

	if (symtab_find(bin, "runtime.waitReasonStrings", &addr, &size) != 0 || size % 16)
		return;
	n = (int)(size / 16);
	if (n <= 0)
		return;
	if (n > GO_MAX_WAIT_REASONS)
		n = GO_MAX_WAIT_REASONS;
	for (int i = 0; i < n; i++) {
		char *dst = bin->offsets.wait_reasons[i];
		uint64_t ptr, len;
		const uint8_t *p;
		size_t avail;

		dst[0] = '\0';
		if (!gobin_read_u64(bin, addr + 16ull * i, &ptr) ||
		    !gobin_read_u64(bin, addr + 16ull * i + 8, &len))
			return;
		p = gobin_vaddr_ptr(bin, ptr, &avail);
		if (!p || len > avail)
			continue; /* "" for an empty slot: go_wait_reason_name falls back */
		if (len >= GO_WAIT_REASON_LEN)
			len = GO_WAIT_REASON_LEN - 1;
		memcpy(dst, p, len);
		dst[len] = '\0';
	}
	bin->offsets.n_wait_reasons = n;
}

static int fill_offsets(struct gobin *bin, unsigned flags, char *err, size_t errlen)
{
	const struct go_version *v = &bin->ver;
	char why[160] = "";
	int ret = -ENOTSUP;

	if (flags & GOBIN_OPEN_SKIP_OFFSETS)
		return 0;
	if (bin->has_dwarf) {
		ret = go_offsets_from_dwarf(bin->path, v->major, v->minor, &bin->offsets, why,
					    sizeof(why));
		if (ret == -ERANGE || ret == -E2BIG)
			log_warn("%s: DWARF offsets: %s", bin->path, why); /* hostile or corrupt */
		else if (ret)
			log_debug("%s: DWARF offsets: %s", bin->path, why);
	}
	if (ret) /* the table row confirmed by the code, or the code alone */
		ret = gobin_offsets_from_code(bin, err, errlen);
	if (ret) {
		memset(&bin->offsets, 0, sizeof(bin->offsets));
		if (flags & GOBIN_OPEN_ALLOW_NO_OFFSETS)
			return 0;
		if (bin->has_dwarf && why[0]) {
			size_t l = strlen(err);

			snprintf(err + l, errlen - l, " (DWARF: %s)", why);
		}
		return ret;
	}
	bin->have_offsets = true;
	wait_reasons_from_symtab(bin);
	return 0;
}

int gobin_open_flags(const char *path, unsigned flags, struct gobin **out, char *err,
		     size_t errlen)
{
	struct gobin *bin = gobin_alloc(path);
	struct elf_scan sc;
	char why[160];
	int ret;

	*out = NULL;
	if (!bin)
		return set_err(err, errlen, -ENOMEM, "%s: out of memory", path);
	ret = load_elf(bin, path, &sc, err, errlen);
	if (ret)
		goto fail;
	ret = find_buildinfo(bin, &sc, &bin->ver, why, sizeof(why));
	if (ret == -ENOENT) {
		ret = set_err(err, errlen, -EPROTONOSUPPORT, "%s: not a Go binary (no Go build info)",
			      path);
		goto fail;
	}
	if (ret) {
		ret = set_err(err, errlen, ret == -EAGAIN ? -ENOEXEC : ret, "%s: %s", path, why);
		goto fail;
	}
	if (bin->ver.major > 0 && (bin->ver.major < GO_MIN_MAJOR ||
				   (bin->ver.major == GO_MIN_MAJOR && bin->ver.minor < GO_MIN_MINOR))) {
		ret = set_err(err, errlen, -EPROTONOSUPPORT,
			      "%s: %s is older than go%d.%d, the oldest supported", path,
			      bin->ver.str, GO_MIN_MAJOR, GO_MIN_MINOR);
		goto fail;
	}
	bin->kind = sc.dynamic_libc || sc.has_cgo_symbol ? GOBIN_GO_CGO : GOBIN_GO;
	if (sc.pclntab.present) {
		bin->pcln.base = bin->map + sc.pclntab.offset;
		bin->pcln.size = sc.pclntab.size;
		bin->pcln.vaddr = sc.pclntab.addr;
	} else {
		ret = gobin_pcln_find(bin, why, sizeof(why));
		if (ret) {
			ret = set_err(err, errlen, -ENOEXEC, "%s: %s", path, why);
			goto fail;
		}
	}
	ret = gobin_pcln_build(bin, why, sizeof(why));
	if (ret) {
		ret = set_err(err, errlen, ret, "%s: %s", path, why);
		goto fail;
	}
	gobin_globals_recover(bin);
	ret = fill_offsets(bin, flags, err, errlen);
	if (ret)
		goto fail;
	*out = bin;
	return 0;
fail:
	gobin_free(bin);
	return ret;
}

int gobin_open(const char *path, struct gobin **out, char *err, size_t errlen)
{
	return gobin_open_flags(path, 0, out, err, errlen);
}

const struct go_version *gobin_version(const struct gobin *bin) { return &bin->ver; }
const char *gobin_path(const struct gobin *bin) { return bin->path; }
const char *gobin_build_id(const struct gobin *bin) { return bin->build_id; }
bool gobin_is_pie(const struct gobin *bin) { return bin->pie; }
bool gobin_has_symtab(const struct gobin *bin) { return bin->has_symtab; }
bool gobin_has_dwarf(const struct gobin *bin) { return bin->has_dwarf; }
enum gobin_kind gobin_kind(const struct gobin *bin) { return bin->kind; }
uint64_t gobin_base_vaddr(const struct gobin *bin) { return bin->base_vaddr; }

const struct go_offsets *gobin_offsets(const struct gobin *bin)
{
	return bin->have_offsets ? &bin->offsets : NULL;
}

int gobin_global(const struct gobin *bin, const char *name, uint64_t *addr)
{
	for (int i = 0; i < bin->nglobals; i++) {
		if (strcmp(bin->globals[i].name, name) == 0) {
			*addr = bin->globals[i].addr;
			return 0;
		}
	}
	return symtab_find(bin, name, addr, NULL);
}
