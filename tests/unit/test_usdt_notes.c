/* .note.stapsdt parsing on a hand-built ELF (two notes, one prelink-moved
 * .stapsdt.base, one PT_LOAD), argument specs, and the installed libjvm. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "probe/usdt_notes.h"

#define VBASE 0x400000ull

struct fixture {
	uint8_t buf[8192];
	size_t len;
};

static size_t add_note(uint8_t *p, uint64_t loc, uint64_t base, uint64_t sem, const char *prov,
		       const char *name, const char *args)
{
	Elf64_Nhdr nh = { .n_namesz = 8, .n_type = 3 };
	size_t sl = strlen(prov) + strlen(name) + strlen(args) + 3, off = 0;

	nh.n_descsz = (Elf64_Word)(24 + sl);
	memcpy(p, &nh, sizeof(nh));
	off += sizeof(nh);
	memcpy(p + off, "stapsdt", 8);
	off += 8;
	memcpy(p + off, &loc, 8);
	memcpy(p + off + 8, &base, 8);
	memcpy(p + off + 16, &sem, 8);
	off += 24;
	strcpy((char *)p + off, prov);
	off += strlen(prov) + 1;
	strcpy((char *)p + off, name);
	off += strlen(name) + 1;
	strcpy((char *)p + off, args);
	off += strlen(args) + 1;
	return (off + 3) & ~(size_t)3;
}

/* ELF64 LE: header, one PT_LOAD (file 0 -> VBASE), .note.stapsdt at 0x200,
 * .stapsdt.base linked at VBASE+0x2000 but now at VBASE+0x2100, .shstrtab. */
static void build(struct fixture *f, bool moved)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)f->buf;
	Elf64_Phdr *ph = (Elf64_Phdr *)(f->buf + sizeof(*eh));
	const char shstr[] = "\0.note.stapsdt\0.stapsdt.base\0.shstrtab";
	size_t notes_len, shoff = 0x1000;
	Elf64_Shdr *sh = (Elf64_Shdr *)(f->buf + shoff);

	memset(f, 0, sizeof(*f));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_DYN;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_phoff = sizeof(*eh);
	eh->e_shoff = shoff;
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 1;
	eh->e_shentsize = sizeof(Elf64_Shdr);
	eh->e_shnum = 4;
	eh->e_shstrndx = 3;
	ph->p_type = PT_LOAD;
	ph->p_vaddr = VBASE;
	ph->p_offset = 0;
	ph->p_filesz = ph->p_memsz = 0x3000;

	notes_len = add_note(f->buf + 0x200, VBASE + 0x1000, VBASE + 0x2000, 0, "hotspot_jni",
			     "NewGlobalRef__return", "8@%rax");
	notes_len += add_note(f->buf + 0x200 + notes_len, VBASE + 0x1800, VBASE + 0x2000,
			      VBASE + 0x2800, "hotspot_jni", "DeleteGlobalRef__entry",
			      "8@%r13 -4@-8(%rbp)");
	memcpy(f->buf + 0x800, shstr, sizeof(shstr));

	sh[1] = (Elf64_Shdr){ .sh_name = 1, .sh_type = SHT_NOTE, .sh_offset = 0x200,
			      .sh_size = notes_len, .sh_addralign = 4 };
	sh[2] = (Elf64_Shdr){ .sh_name = 15, .sh_type = SHT_PROGBITS, .sh_flags = SHF_ALLOC,
			      .sh_addr = VBASE + (moved ? 0x2100 : 0x2000), .sh_offset = 0x900,
			      .sh_size = 1, .sh_addralign = 1 };
	sh[3] = (Elf64_Shdr){ .sh_name = 29, .sh_type = SHT_STRTAB, .sh_offset = 0x800,
			      .sh_size = sizeof(shstr), .sh_addralign = 1 };
	f->len = shoff + 4 * sizeof(Elf64_Shdr);
}

static void test_fixture_notes(void **state)
{
	struct fixture f;
	struct usdt_notes n;
	const struct usdt_note *a, *b;
	char err[256];

	(void)state;
	build(&f, false);
	assert_int_equal(usdt_notes_from_buffer(f.buf, f.len, &n, err, sizeof(err)), 0);
	assert_int_equal(n.n, 2);
	a = usdt_notes_find(&n, "hotspot_jni", "NewGlobalRef__return");
	b = usdt_notes_find(&n, "hotspot_jni", "DeleteGlobalRef__entry");
	assert_non_null(a);
	assert_non_null(b);
	assert_null(usdt_notes_find(&n, "hotspot_jni", "NewWeakGlobalRef__return"));
	assert_int_equal(a->location, VBASE + 0x1000);
	assert_int_equal(a->addr, VBASE + 0x1000);
	assert_true(a->has_offset);
	assert_int_equal(a->file_offset, 0x1000);
	assert_int_equal(a->semaphore, 0);
	assert_string_equal(a->args, "8@%rax");
	assert_int_equal(b->semaphore, VBASE + 0x2800);
	assert_string_equal(b->args, "8@%r13 -4@-8(%rbp)");
	usdt_notes_free(&n);
}

static void test_fixture_prelinked(void **state)
{
	struct fixture f;
	struct usdt_notes n;
	char err[256];

	(void)state;
	build(&f, true); /* .stapsdt.base moved by 0x100: probe sites move too */
	assert_int_equal(usdt_notes_from_buffer(f.buf, f.len, &n, err, sizeof(err)), 0);
	assert_int_equal(n.n, 2);
	assert_int_equal(n.v[0].location, VBASE + 0x1000);
	assert_int_equal(n.v[0].addr, VBASE + 0x1100);
	assert_int_equal(n.v[0].file_offset, 0x1100);
	usdt_notes_free(&n);
}

static void test_not_elf(void **state)
{
	char junk[256], err[256];
	struct usdt_notes n;

	(void)state;
	memset(junk, 0x41, sizeof(junk));
	assert_int_equal(usdt_notes_from_buffer(junk, sizeof(junk), &n, err, sizeof(err)), -ENOEXEC);
	assert_int_not_equal(err[0], 0);
	assert_int_equal(usdt_notes_read("/nonexistent/libjvm.so", &n, err, sizeof(err)), -ENOENT);
}

static void test_truncated_notes(void **state)
{
	struct fixture f;
	struct usdt_notes n;
	char err[256];

	(void)state;
	build(&f, false);
	/* The first note claims more descriptor bytes than its section holds. */
	((Elf64_Nhdr *)(f.buf + 0x200))->n_descsz = 4000;
	assert_int_equal(usdt_notes_from_buffer(f.buf, f.len, &n, err, sizeof(err)), 0);
	assert_true(n.n <= 1);
	usdt_notes_free(&n);
}

static void test_arg_parse(void **state)
{
	struct usdt_arg a;

	(void)state;
	assert_int_equal(usdt_arg_parse("8@%r13 8@%r12", 0, &a), 0);
	assert_int_equal(a.kind, USDT_ARG_REG);
	assert_int_equal(a.reg, 13);
	assert_int_equal(a.size, 8);
	assert_false(a.is_signed);
	assert_int_equal(usdt_arg_parse("8@%r13 8@%r12", 1, &a), 0);
	assert_int_equal(a.reg, 12);
	assert_int_equal(usdt_arg_parse("8@%r13 8@%r12", 2, &a), -ENOENT);
	assert_int_equal(usdt_arg_parse("", 0, &a), -ENOENT);
	assert_int_equal(usdt_arg_parse("-4@-8(%rbp)", 0, &a), 0);
	assert_int_equal(a.kind, USDT_ARG_MEM);
	assert_int_equal(a.reg, 6);
	assert_int_equal(a.value, -8);
	assert_int_equal(a.size, 4);
	assert_true(a.is_signed);
	assert_int_equal(usdt_arg_parse("8@(%rdi)", 0, &a), 0);
	assert_int_equal(a.kind, USDT_ARG_MEM);
	assert_int_equal(a.reg, 5);
	assert_int_equal(a.value, 0);
	assert_int_equal(usdt_arg_parse("4@$42", 0, &a), 0);
	assert_int_equal(a.kind, USDT_ARG_CONST);
	assert_int_equal(a.value, 42);
	assert_int_equal(usdt_arg_parse("1@%sil", 0, &a), 0);
	assert_int_equal(a.reg, 4);
	assert_int_equal(usdt_arg_parse("4@%eax", 0, &a), 0);
	assert_int_equal(a.reg, 0);
	assert_int_equal(usdt_arg_parse("8@8(%rax,%rbx,8)", 0, &a), -EINVAL); /* index reg */
	assert_int_equal(usdt_arg_parse("3@%rax", 0, &a), -EINVAL);
	assert_int_equal(usdt_arg_parse("8@%xmm0", 0, &a), -EINVAL);
	assert_int_equal(usdt_arg_parse("8%rax", 0, &a), -EINVAL);
	assert_int_equal(usdt_x86_reg("r15d"), 15);
	assert_int_equal(usdt_x86_reg("rip"), 16);
	assert_int_equal(usdt_x86_reg("foo"), -1);
}

/* The installed JDK's libjvm, when there is one: the four hotspot_jni
 * probes memdrift uses, no semaphores, handle args as the notes say. */
static void test_real_libjvm(void **state)
{
	const char *path = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so";
	const char *names[] = { "NewGlobalRef__return", "NewWeakGlobalRef__return",
				"DeleteGlobalRef__entry", "DeleteWeakGlobalRef__entry" };
	struct usdt_notes n;
	char err[256];

	(void)state;
	if (access(path, R_OK))
		skip();
	assert_int_equal(usdt_notes_read(path, &n, err, sizeof(err)), 0);
	assert_true(n.n > 100);
	for (int i = 0; i < 4; i++) {
		const struct usdt_note *u = usdt_notes_find(&n, "hotspot_jni", names[i]);
		struct usdt_arg a;

		assert_non_null(u);
		assert_int_equal(u->semaphore, 0);
		assert_true(u->has_offset);
		assert_int_equal(usdt_arg_parse(u->args, i < 2 ? 0 : 1, &a), 0);
		assert_int_equal(a.size, 8);
	}
	usdt_notes_free(&n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_notes),  cmocka_unit_test(test_fixture_prelinked),
		cmocka_unit_test(test_not_elf),        cmocka_unit_test(test_truncated_notes),
		cmocka_unit_test(test_arg_parse),      cmocka_unit_test(test_real_libjvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
