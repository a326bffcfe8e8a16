/* Helper of scripts/bench/probe-cost.
 *   probe-bench offset ELF SYMBOL entry|place
 *       prints "<file offset> <instruction>" of SYMBOL's entry, or of the
 *       point memdrift's placement (daemon/probe/probe_place.c) chooses;
 *   probe-bench run ELF OFFSET -- CMD [ARGS]
 *       attaches a no-op BPF uprobe at OFFSET (every process), runs CMD,
 *       prints the hit count to stderr, detaches, exits with CMD's status. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "bench_noop.skel.h"
#include "probe/probe_place.h"

static int find_symbol(Elf *elf, const char *name, uint64_t *vaddr)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;

	while ((scn = elf_nextscn(elf, scn))) {
		Elf_Data *data;

		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
			continue;
		data = elf_getdata(scn, NULL);
		for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *s;

			if (!gelf_getsym(data, i, &sym) || !sym.st_value)
				continue;
			s = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (s && (!strcmp(s, name) ||
				  (!strncmp(s, name, strlen(name)) && s[strlen(name)] == '@'))) {
				*vaddr = sym.st_value;
				return 0;
			}
		}
	}
	return -ENOENT;
}

static int vaddr_to_offset(Elf *elf, uint64_t vaddr, uint64_t *off)
{
	size_t n;

	elf_getphdrnum(elf, &n);
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz) {
			*off = vaddr - ph.p_vaddr + ph.p_offset;
			return 0;
		}
	}
	return -ENOENT;
}

static int cmd_offset(const char *path, const char *symbol, const char *how)
{
	struct probe_place place = {0};
	uint8_t code[64];
	uint64_t vaddr, off;
	int fd, err;
	Elf *elf;

	elf_version(EV_CURRENT);
	fd = open(path, O_RDONLY);
	if (fd < 0 || !(elf = elf_begin(fd, ELF_C_READ, NULL))) {
		fprintf(stderr, "probe-bench: cannot open %s\n", path);
		return 1;
	}
	if (find_symbol(elf, symbol, &vaddr) || vaddr_to_offset(elf, vaddr, &off)) {
		fprintf(stderr, "probe-bench: %s: no symbol %s\n", path, symbol);
		return 1;
	}
	if (pread(fd, code, sizeof(code), off) != sizeof(code))
		return 1;
	err = probe_place_x86(code, sizeof(code), vaddr, &place);
	if (err)
		return 1;
	if (!strcmp(how, "entry")) {
		bool emulated;

		probe_insn_info_x86(code, sizeof(code), vaddr, &emulated, place.insn,
				    sizeof(place.insn));
		place.offset = 0;
	}
	printf("%llu %s\n", (unsigned long long)(off + place.offset), place.insn);
	elf_end(elf);
	close(fd);
	return 0;
}

static int cmd_run(const char *path, uint64_t offset, char **argv)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts);
	struct bench_noop_bpf *skel;
	struct bpf_link *link;
	int status = 0;
	pid_t pid;

	skel = bench_noop_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "probe-bench: cannot load BPF: %s\n", strerror(errno));
		return 1;
	}
	link = bpf_program__attach_uprobe_opts(skel->progs.bench_noop, -1, path, offset, &opts);
	if (!link) {
		fprintf(stderr, "probe-bench: attach %s+%llu: %s\n", path,
			(unsigned long long)offset, strerror(errno));
		bench_noop_bpf__destroy(skel);
		return 1;
	}
	pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	fprintf(stderr, "hits %llu\n", (unsigned long long)skel->bss->bench_hits);
	bpf_link__destroy(link);
	bench_noop_bpf__destroy(skel);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "offset"))
		return cmd_offset(argv[2], argv[3], argv[4]);
	if (argc >= 6 && !strcmp(argv[1], "run") && !strcmp(argv[4], "--"))
		return cmd_run(argv[2], strtoull(argv[3], NULL, 0), argv + 5);
	fprintf(stderr, "usage: probe-bench offset ELF SYMBOL entry|place\n"
			"       probe-bench run ELF OFFSET -- CMD [ARGS]\n");
	return 2;
}
