/* offsets-dump BINARY: prints what scripts/gen-go-offsets needs from one Go
 * binary, one fact per line:
 *   field NAME VALUE         struct go_offsets fields, read by OUR DWARF
 *                            reader (go_offsets_from_dwarf, no table merged)
 *   waitconst VALUE NAME     DWARF constants runtime.waitReason*
 *   waitstr INDEX TEXT       runtime.waitReasonStrings[INDEX], from .symtab
 * Built by the generator against daemon/binary/go_offsets.c; not part of memdrift. */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "binary/go_offsets.h"

static int dump_wait_constants(Elf *elf)
{
	Dwarf *dw = dwarf_begin_elf(elf, DWARF_C_READ, NULL);
	Dwarf_Off off = 0, next;
	size_t hsize;
	int n = 0;

	if (!dw)
		return -ENODATA;
	while (dwarf_nextcu(dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
		Dwarf_Die cu, die;
		const char *cuname;

		if (!dwarf_offdie(dw, off + hsize, &cu))
			break;
		off = next;
		cuname = dwarf_diename(&cu);
		if (!cuname || strcmp(cuname, "runtime") != 0 || dwarf_child(&cu, &die) != 0)
			continue;
		do {
			const char *name = dwarf_diename(&die);
			Dwarf_Attribute attr;
			Dwarf_Sword v;

			if (dwarf_tag(&die) != DW_TAG_constant || !name ||
			    strncmp(name, "runtime.waitReason", 18) != 0 ||
			    !dwarf_attr(&die, DW_AT_const_value, &attr) || dwarf_formsdata(&attr, &v) != 0)
				continue;
			printf("waitconst %lld %s\n", (long long)v, name + 8);
			n++;
		} while (dwarf_siblingof(&die, &die) == 0);
	}
	dwarf_end(dw);
	return n;
}

/* Copies len bytes at link-time address vaddr out of the section holding it. */
static int read_vaddr(Elf *elf, uint64_t vaddr, void *buf, size_t len)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS || !(sh.sh_flags & SHF_ALLOC))
			continue;
		if (vaddr < sh.sh_addr || vaddr + len > sh.sh_addr + sh.sh_size)
			continue;
		data = elf_rawdata(scn, NULL);
		if (!data || vaddr - sh.sh_addr + len > data->d_size)
			return -EIO;
		memcpy(buf, (char *)data->d_buf + (vaddr - sh.sh_addr), len);
		return 0;
	}
	return -ENOENT;
}

static int dump_wait_strings(Elf *elf)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB)
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *name;

			if (!gelf_getsym(data, (int)i, &sym))
				continue;
			name = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (!name || strcmp(name, "runtime.waitReasonStrings") != 0)
				continue;
			for (uint64_t k = 0; k < sym.st_size / 16; k++) {
				uint64_t hdr[2];
				char text[256];

				if (read_vaddr(elf, sym.st_value + k * 16, hdr, sizeof(hdr)) < 0 ||
				    hdr[1] >= sizeof(text))
					return -EIO;
				if (hdr[1] && read_vaddr(elf, hdr[0], text, hdr[1]) < 0)
					return -EIO;
				text[hdr[1]] = '\0';
				printf("waitstr %llu %s\n", (unsigned long long)k, text);
			}
			return 0;
		}
	}
	return -ENOENT;
}

int main(int argc, char **argv)
{
	struct go_offsets off;
	char err[256];
	Elf *elf;
	int fd, ret;

	if (argc != 2) {
		fprintf(stderr, "usage: %s GO-BINARY\n", argv[0]);
		return 2;
	}
	/* Version 0.0 has no table entry, so only DWARF's own answers show. */
	ret = go_offsets_from_dwarf(argv[1], 0, 0, &off, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "offsets-dump: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < go_offsets_nfields; i++)
		printf("field %s %d\n", go_offsets_fields[i].name, go_offsets_field(&off, i));

	fd = open(argv[1], O_RDONLY);
	elf_version(EV_CURRENT);
	elf = fd < 0 ? NULL : elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf) {
		fprintf(stderr, "offsets-dump: cannot reopen %s\n", argv[1]);
		return 1;
	}
	if (dump_wait_constants(elf) <= 0) {
		fprintf(stderr, "offsets-dump: no runtime.waitReason* constants in DWARF\n");
		return 1;
	}
	if (dump_wait_strings(elf) < 0) {
		fprintf(stderr, "offsets-dump: cannot read runtime.waitReasonStrings\n");
		return 1;
	}
	elf_end(elf);
	close(fd);
	return 0;
}
