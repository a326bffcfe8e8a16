/* HotSpot's structures read from the outside. See hotspot.h.
 *
 * The JVM publishes, in libjvm.so's dynamic symbol table, arrays describing
 * its own C++ classes: gHotSpotVMStructs (type, field, static?, offset or
 * address), gHotSpotVMTypes (type, size), gHotSpotVMIntConstants and
 * gHotSpotVMLongConstants, each with its entry layout in companion
 * variables (gHotSpotVMStructEntryTypeNameOffset, ...ArrayStride). The
 * serviceability agent (jhsdb) reads a dead or stopped JVM the same way;
 * this reads a live one with process_vm_readv, so each value is what the JVM
 * holds at that instant and a read of freed code answers "unresolved". */
#include "symbols/hotspot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "discover/proc.h"
#include "symbols/symbolize.h"

#define HS_MAX_HEAPS 16
#define HS_NAME_CACHE 4096
#define HS_ACC_NATIVE 0x0100 /* JVM_ACC_NATIVE */

/* The fields this reader needs, as (type, field) of gHotSpotVMStructs;
 * alternatives across JDK releases are separate entries. */
enum hs_field {
	F_CODECACHE_HEAPS,      /* static CodeCache::_heaps */
	F_GA_LEN, F_GA_DATA,    /* GrowableArrayBase::_len, GrowableArray<int>::_data */
	F_HEAP_MEMORY, F_HEAP_SEGMAP, F_HEAP_LOG2SEG,
	F_VS_LOW_BOUNDARY, F_VS_HIGH_BOUNDARY, F_VS_LOW, F_VS_HIGH,
	F_HB_HEADER, F_HBH_USED,
	F_CB_NAME, F_CB_FRAME_SIZE, F_CB_CODE_BEGIN, F_CB_CODE_OFFSET, F_CB_SIZE,
	F_NM_METHOD, F_CM_METHOD,
	F_M_CONSTMETHOD, F_M_ACCESS_FLAGS,
	F_CM_CONSTANTS, F_CM_NAME_INDEX, F_CM_SIG_INDEX, F_CM_FLAGS,
	F_CP_HOLDER,
	F_K_NAME,
	F_IK_METHODS,
	F_AM_LENGTH, F_AM_DATA, F_AI_LENGTH,
	F_SYM_LENGTH, F_SYM_BODY,
	F_INTERP_CODE, F_SQ_BUFFER, F_SQ_LIMIT,
	F_MAX,
};

static const struct {
	const char *type, *field;
} field_names[F_MAX] = {
	[F_CODECACHE_HEAPS] = { "CodeCache", "_heaps" },
	[F_GA_LEN] = { "GrowableArrayBase", "_len" },
	[F_GA_DATA] = { "GrowableArray<int>", "_data" },
	[F_HEAP_MEMORY] = { "CodeHeap", "_memory" },
	[F_HEAP_SEGMAP] = { "CodeHeap", "_segmap" },
	[F_HEAP_LOG2SEG] = { "CodeHeap", "_log2_segment_size" },
	[F_VS_LOW_BOUNDARY] = { "VirtualSpace", "_low_boundary" },
	[F_VS_HIGH_BOUNDARY] = { "VirtualSpace", "_high_boundary" },
	[F_VS_LOW] = { "VirtualSpace", "_low" },
	[F_VS_HIGH] = { "VirtualSpace", "_high" },
	[F_HB_HEADER] = { "HeapBlock", "_header" },
	[F_HBH_USED] = { "HeapBlock::Header", "_used" },
	[F_CB_NAME] = { "CodeBlob", "_name" },
	[F_CB_FRAME_SIZE] = { "CodeBlob", "_frame_size" },
	[F_CB_CODE_BEGIN] = { "CodeBlob", "_code_begin" },
	[F_CB_CODE_OFFSET] = { "CodeBlob", "_code_offset" },
	[F_CB_SIZE] = { "CodeBlob", "_size" },
	[F_NM_METHOD] = { "nmethod", "_method" },
	[F_CM_METHOD] = { "CompiledMethod", "_method" },
	[F_M_CONSTMETHOD] = { "Method", "_constMethod" },
	[F_M_ACCESS_FLAGS] = { "Method", "_access_flags" },
	[F_CM_CONSTANTS] = { "ConstMethod", "_constants" },
	[F_CM_NAME_INDEX] = { "ConstMethod", "_name_index" },
	[F_CM_SIG_INDEX] = { "ConstMethod", "_signature_index" },
	[F_CM_FLAGS] = { "ConstMethod", "_flags" },
	[F_CP_HOLDER] = { "ConstantPool", "_pool_holder" },
	[F_K_NAME] = { "Klass", "_name" },
	[F_IK_METHODS] = { "InstanceKlass", "_methods" },
	[F_AM_LENGTH] = { "Array<Method*>", "_length" },
	[F_AM_DATA] = { "Array<Method*>", "_data" },
	[F_AI_LENGTH] = { "Array<int>", "_length" }, /* every Array<T> has it there */
	[F_SYM_LENGTH] = { "Symbol", "_length" },
	[F_SYM_BODY] = { "Symbol", "_body" },
	[F_INTERP_CODE] = { "AbstractInterpreter", "_code" },
	[F_SQ_BUFFER] = { "StubQueue", "_stub_buffer" },
	[F_SQ_LIMIT] = { "StubQueue", "_buffer_limit" },
};

enum hs_type { T_HEAPBLOCK, T_METHOD, T_CONSTANTPOOL, T_MAX };
static const char *const type_names[T_MAX] = { "HeapBlock", "Method", "ConstantPool" };

struct hs_heap {
	uint64_t low, high;       /* _memory low_boundary .. high (committed) */
	uint64_t segmap;          /* _segmap low */
	unsigned log2seg;
};

struct hs_const {
	char name[64];
	int64_t value;
};

struct name_entry {
	uint64_t method, constmethod;
	uint64_t native_fn;
	char *name;
};

struct hotspot {
	pid_t pid;
	uint64_t bias;
	uint64_t sym[4];          /* runtime addresses of gHotSpotVM{Structs,Types,IntConstants,LongConstants} */
	uint64_t layout_sym[17];  /* the entry-layout variables */
	bool ready;
	int64_t off[F_MAX];       /* field offset (nonstatic) or address (static); -1 missing */
	int64_t size[T_MAX];
	struct hs_heap heaps[HS_MAX_HEAPS];
	size_t nheaps;
	uint64_t code_lo, code_hi, interp_lo, interp_hi;
	struct hs_const *consts;
	size_t nconsts;
	struct name_entry names[HS_NAME_CACHE]; /* direct-mapped by Method* */
};

/* Layout variables, in this order. */
static const char *const layout_names[17] = {
	"gHotSpotVMStructEntryTypeNameOffset", "gHotSpotVMStructEntryFieldNameOffset",
	"gHotSpotVMStructEntryIsStaticOffset", "gHotSpotVMStructEntryOffsetOffset",
	"gHotSpotVMStructEntryAddressOffset", "gHotSpotVMStructEntryArrayStride",
	"gHotSpotVMTypeEntryTypeNameOffset", "gHotSpotVMTypeEntrySizeOffset",
	"gHotSpotVMTypeEntryArrayStride",
	"gHotSpotVMIntConstantEntryNameOffset", "gHotSpotVMIntConstantEntryValueOffset",
	"gHotSpotVMIntConstantEntryArrayStride",
	"gHotSpotVMLongConstantEntryNameOffset", "gHotSpotVMLongConstantEntryValueOffset",
	"gHotSpotVMLongConstantEntryArrayStride",
	"gHotSpotVMStructEntryTypeStringOffset", "gHotSpotVMTypeEntryIsOopTypeOffset",
};
enum { L_S_TYPE, L_S_FIELD, L_S_STATIC, L_S_OFFSET, L_S_ADDR, L_S_STRIDE, L_T_TYPE, L_T_SIZE,
       L_T_STRIDE, L_I_NAME, L_I_VALUE, L_I_STRIDE, L_L_NAME, L_L_VALUE, L_L_STRIDE };

static int rd(const struct hotspot *h, uint64_t addr, void *buf, size_t len)
{
	if (!addr)
		return -EFAULT;
	return proc_read(h->pid, addr, buf, len);
}

static int rd_u64(const struct hotspot *h, uint64_t addr, uint64_t *v)
{
	return rd(h, addr, v, sizeof(*v));
}

/* A NUL-terminated string of the target (at most len-1 bytes). */
static int rd_str(const struct hotspot *h, uint64_t addr, char *buf, size_t len)
{
	size_t got = 0;

	while (got + 1 < len) {
		size_t chunk = len - 1 - got < 32 ? len - 1 - got : 32;
		/* do not cross a page: the string may end just before an unmapped one */
		uint64_t to_page = 4096 - ((addr + got) & 4095);

		if (chunk > to_page)
			chunk = to_page;
		if (rd(h, addr + got, buf + got, chunk))
			return -EFAULT;
		for (size_t i = 0; i < chunk; i++)
			if (!buf[got + i]) {
				buf[got + i] = 0;
				return 0;
			}
		got += chunk;
	}
	buf[got] = 0;
	return 0;
}

int hotspot_open(pid_t pid, const char *libjvm_path, uint64_t bias, struct hotspot **out,
		 char *err, size_t errlen)
{
	static const char *const tables[4] = { "gHotSpotVMStructs", "gHotSpotVMTypes",
					       "gHotSpotVMIntConstants", "gHotSpotVMLongConstants" };
	struct hotspot *h = calloc(1, sizeof(*h));
	uint64_t a;

	if (!h)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	h->pid = pid;
	h->bias = bias;
	for (int i = 0; i < 4; i++) {
		if (symbolize_elf_symbol(libjvm_path, tables[i], &a, NULL, NULL)) {
			free(h);
			return set_err(err, errlen, -ENOENT, "%s: no %s (not a HotSpot libjvm)",
				       libjvm_path, tables[i]);
		}
		h->sym[i] = a + bias;
	}
	for (int i = 0; i < 17; i++) {
		if (symbolize_elf_symbol(libjvm_path, layout_names[i], &a, NULL, NULL)) {
			free(h);
			return set_err(err, errlen, -ENOENT, "%s: no %s", libjvm_path, layout_names[i]);
		}
		h->layout_sym[i] = a + bias;
	}
	for (int i = 0; i < F_MAX; i++)
		h->off[i] = -1;
	*out = h;
	return 0;
}

static int read_structs(struct hotspot *h, const uint64_t *lay)
{
	uint64_t base, stride = lay[L_S_STRIDE];
	char type[80], field[80];

	if (rd_u64(h, h->sym[0], &base) || !base || !stride || stride > 4096)
		return -EAGAIN;
	for (size_t i = 0; i < 20000; i++) {
		uint64_t e = base + i * stride, tn, fn, v;
		int32_t is_static;
		int want = -1;

		if (rd_u64(h, e + lay[L_S_TYPE], &tn))
			return -EFAULT;
		if (!tn)
			return 0;
		if (rd_str(h, tn, type, sizeof(type)))
			continue;
		for (int f = 0; f < F_MAX && want < 0; f++)
			if (!strcmp(field_names[f].type, type))
				want = f;
		if (want < 0)
			continue;
		if (rd_u64(h, e + lay[L_S_FIELD], &fn) || rd_str(h, fn, field, sizeof(field)) ||
		    rd(h, e + lay[L_S_STATIC], &is_static, sizeof(is_static)))
			continue;
		for (int f = 0; f < F_MAX; f++) {
			if (strcmp(field_names[f].type, type) || strcmp(field_names[f].field, field))
				continue;
			if (rd_u64(h, e + (is_static ? lay[L_S_ADDR] : lay[L_S_OFFSET]), &v))
				break;
			h->off[f] = (int64_t)v;
		}
	}
	return 0;
}

static int read_types(struct hotspot *h, const uint64_t *lay)
{
	uint64_t base, stride = lay[L_T_STRIDE];
	char type[80];

	if (rd_u64(h, h->sym[1], &base) || !base || !stride || stride > 4096)
		return -EAGAIN;
	for (int t = 0; t < T_MAX; t++)
		h->size[t] = -1;
	for (size_t i = 0; i < 20000; i++) {
		uint64_t e = base + i * stride, tn, sz;

		if (rd_u64(h, e + lay[L_T_TYPE], &tn))
			return -EFAULT;
		if (!tn)
			return 0;
		if (rd_str(h, tn, type, sizeof(type)))
			continue;
		for (int t = 0; t < T_MAX; t++)
			if (!strcmp(type_names[t], type) && !rd_u64(h, e + lay[L_T_SIZE], &sz))
				h->size[t] = (int64_t)sz;
	}
	return 0;
}

/* Both constant tables, entries "name" = value (int entries widened). */
static int read_constants(struct hotspot *h, const uint64_t *lay)
{
	for (int k = 0; k < 2; k++) {
		uint64_t base, stride = lay[k ? L_L_STRIDE : L_I_STRIDE];
		uint64_t name_off = lay[k ? L_L_NAME : L_I_NAME], val_off = lay[k ? L_L_VALUE : L_I_VALUE];

		if (rd_u64(h, h->sym[2 + k], &base) || !base || !stride || stride > 4096)
			return -EAGAIN;
		for (size_t i = 0; i < 20000; i++) {
			uint64_t e = base + i * stride, nm;
			struct hs_const c = { 0 };
			struct hs_const *grown;

			if (rd_u64(h, e + name_off, &nm))
				return -EFAULT;
			if (!nm)
				break;
			if (rd_str(h, nm, c.name, sizeof(c.name)))
				continue;
			if (k) {
				if (rd(h, e + val_off, &c.value, 8))
					continue;
			} else {
				int32_t v;

				if (rd(h, e + val_off, &v, 4))
					continue;
				c.value = v;
			}
			if (!(h->nconsts & 255)) {
				grown = realloc(h->consts, (h->nconsts + 256) * sizeof(*grown));
				if (!grown)
					return -ENOMEM;
				h->consts = grown;
			}
			h->consts[h->nconsts++] = c;
		}
	}
	return 0;
}

int hotspot_constant(const struct hotspot *h, const char *name, int64_t *value)
{
	for (size_t i = 0; i < h->nconsts; i++)
		if (!strcmp(h->consts[i].name, name)) {
			*value = h->consts[i].value;
			return 0;
		}
	return -ENOENT;
}

/* CodeCache::_heaps: a GrowableArray<CodeHeap*>* (static). */
static int read_heaps(struct hotspot *h)
{
	uint64_t ga, data, heap;
	int32_t len;
	int8_t log2;

	h->nheaps = 0;
	h->code_lo = UINT64_MAX;
	h->code_hi = 0;
	if (rd_u64(h, (uint64_t)h->off[F_CODECACHE_HEAPS], &ga) || !ga)
		return -EAGAIN;
	if (rd(h, ga + (uint64_t)h->off[F_GA_LEN], &len, 4) ||
	    rd_u64(h, ga + (uint64_t)h->off[F_GA_DATA], &data) || len <= 0 || !data)
		return -EAGAIN;
	for (int i = 0; i < len && h->nheaps < HS_MAX_HEAPS; i++) {
		struct hs_heap *hp = &h->heaps[h->nheaps];
		uint64_t mem, seg;

		if (rd_u64(h, data + (uint64_t)i * 8, &heap) || !heap)
			continue;
		mem = heap + (uint64_t)h->off[F_HEAP_MEMORY];
		seg = heap + (uint64_t)h->off[F_HEAP_SEGMAP];
		if (rd_u64(h, mem + (uint64_t)h->off[F_VS_LOW_BOUNDARY], &hp->low) ||
		    rd_u64(h, mem + (uint64_t)h->off[F_VS_HIGH_BOUNDARY], &hp->high) ||
		    rd_u64(h, seg + (uint64_t)h->off[F_VS_LOW], &hp->segmap) ||
		    rd(h, heap + (uint64_t)h->off[F_HEAP_LOG2SEG], &log2, 1) || log2 <= 0 ||
		    log2 > 20 || hp->high <= hp->low || !hp->segmap)
			continue;
		hp->log2seg = (unsigned)log2;
		if (hp->low < h->code_lo)
			h->code_lo = hp->low;
		if (hp->high > h->code_hi)
			h->code_hi = hp->high;
		h->nheaps++;
	}
	return h->nheaps ? 0 : -EAGAIN;
}

static int read_interpreter(struct hotspot *h)
{
	uint64_t sq, buf;
	int32_t limit;

	if (rd_u64(h, (uint64_t)h->off[F_INTERP_CODE], &sq) || !sq ||
	    rd_u64(h, sq + (uint64_t)h->off[F_SQ_BUFFER], &buf) ||
	    rd(h, sq + (uint64_t)h->off[F_SQ_LIMIT], &limit, 4) || !buf || limit <= 0)
		return -EAGAIN;
	h->interp_lo = buf;
	h->interp_hi = buf + (uint64_t)limit;
	return 0;
}

int hotspot_refresh(struct hotspot *h, char *err, size_t errlen)
{
	uint64_t lay[17];
	static const enum hs_field needed[] = {
		F_CODECACHE_HEAPS, F_GA_LEN, F_GA_DATA, F_HEAP_MEMORY, F_HEAP_SEGMAP, F_HEAP_LOG2SEG,
		F_VS_LOW_BOUNDARY, F_VS_HIGH_BOUNDARY, F_VS_LOW, F_HB_HEADER, F_HBH_USED, F_CB_NAME,
		F_CB_FRAME_SIZE, F_M_CONSTMETHOD, F_CM_CONSTANTS, F_CM_NAME_INDEX, F_CM_SIG_INDEX,
		F_CP_HOLDER, F_K_NAME, F_SYM_LENGTH, F_SYM_BODY, F_INTERP_CODE, F_SQ_BUFFER, F_SQ_LIMIT,
	};
	int ret;

	if (h->ready)
		return 0;
	for (int i = 0; i < 17; i++)
		if (rd_u64(h, h->layout_sym[i], &lay[i]))
			return set_err(err, errlen, -EFAULT, "read %s", layout_names[i]);
	if (!lay[L_S_STRIDE] || !lay[L_T_STRIDE])
		return set_err(err, errlen, -EAGAIN, "JVM still starting (vmStructs not published)");
	ret = read_structs(h, lay);
	if (!ret)
		ret = read_types(h, lay);
	if (!ret) {
		free(h->consts);
		h->consts = NULL;
		h->nconsts = 0;
		ret = read_constants(h, lay);
	}
	if (ret)
		return set_err(err, errlen, ret, "read vmStructs: %s", strerror(-ret));
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		if (h->off[needed[i]] < 0)
			return set_err(err, errlen, -ENOTSUP, "vmStructs has no %s::%s",
				       field_names[needed[i]].type, field_names[needed[i]].field);
	if (h->off[F_NM_METHOD] < 0 && h->off[F_CM_METHOD] < 0)
		return set_err(err, errlen, -ENOTSUP, "vmStructs has no nmethod::_method");
	if (h->size[T_HEAPBLOCK] <= 0 || h->size[T_METHOD] <= 0 || h->size[T_CONSTANTPOOL] <= 0)
		return set_err(err, errlen, -ENOTSUP, "vmTypes lacks HeapBlock/Method/ConstantPool sizes");
	ret = read_heaps(h);
	if (!ret)
		ret = read_interpreter(h);
	if (ret)
		return set_err(err, errlen, ret, "code cache not set up yet");
	h->ready = true;
	return 0;
}

bool hotspot_ready(const struct hotspot *h)
{
	return h->ready;
}

void hotspot_code_ranges(const struct hotspot *h, uint64_t *code_lo, uint64_t *code_hi,
			 uint64_t *interp_lo, uint64_t *interp_hi)
{
	*code_lo = h->ready ? h->code_lo : 0;
	*code_hi = h->ready ? h->code_hi : 0;
	*interp_lo = h->ready ? h->interp_lo : 0;
	*interp_hi = h->ready ? h->interp_hi : 0;
}

/* CodeHeap::find_block_for: the segment map holds, per segment, 0 at a
 * block's first segment, a backwards hop count inside a block, and 0xff
 * (free_sentinel) where nothing was ever allocated. */
static int find_block(const struct hotspot *h, const struct hs_heap *hp, uint64_t pc, uint64_t *block)
{
	uint64_t idx = (pc - hp->low) >> hp->log2seg;
	uint8_t map[256];

	/* 1024 windows of 255 segments: blobs up to ~32 MiB at 128-byte
	 * segments (a hostile map costs at most 1024 reads) */
	for (int hops = 0; hops < 1024; hops++) {
		uint64_t from = idx >= 255 ? idx - 255 : 0;
		size_t n = (size_t)(idx - from + 1);
		uint8_t b;

		if (rd(h, hp->segmap + from, map, n))
			return -EFAULT;
		/* walk back within this window */
		for (;;) {
			b = map[idx - from];
			if (b == 0xff)
				return -ENOENT;
			if (!b) {
				*block = hp->low + (idx << hp->log2seg);
				return 0;
			}
			if (idx < b)
				return -ENOENT;
			idx -= b;
			if (idx < from)
				break;
		}
	}
	return -ELOOP;
}

int hotspot_find_blob(struct hotspot *h, uint64_t pc, struct hotspot_blob *out)
{
	uint64_t block, blob, name_ptr;
	uint8_t used;
	int32_t fs;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!h->ready && hotspot_refresh(h, NULL, 0))
		return -EAGAIN;
	if (pc < h->code_lo || pc >= h->code_hi)
		return 0; /* HS_BLOB_NONE */
	out->kind = HS_BLOB_FREE;
	for (size_t i = 0; i < h->nheaps; i++) {
		const struct hs_heap *hp = &h->heaps[i];

		if (pc < hp->low || pc >= hp->high)
			continue;
		ret = find_block(h, hp, pc, &block);
		if (ret == -ENOENT)
			return 0;
		if (ret)
			return ret;
		if (rd(h, block + (uint64_t)h->off[F_HB_HEADER] + (uint64_t)h->off[F_HBH_USED], &used, 1))
			return -EFAULT;
		if (!used)
			return 0; /* a free block: the code was flushed */
		blob = block + (uint64_t)h->size[T_HEAPBLOCK];
		if (rd_u64(h, blob + (uint64_t)h->off[F_CB_NAME], &name_ptr) ||
		    rd_str(h, name_ptr, out->name, sizeof(out->name)) ||
		    rd(h, blob + (uint64_t)h->off[F_CB_FRAME_SIZE], &fs, 4))
			return -EFAULT;
		out->start = blob;
		out->frame_size = fs;
		if (!strcmp(out->name, "Interpreter")) {
			out->kind = HS_BLOB_INTERPRETER;
		} else if (!strcmp(out->name, "nmethod") || !strcmp(out->name, "native nmethod")) {
			int64_t mo = h->off[F_NM_METHOD] >= 0 ? h->off[F_NM_METHOD] : h->off[F_CM_METHOD];

			if (rd_u64(h, blob + (uint64_t)mo, &out->method))
				return -EFAULT;
			out->kind = out->name[0] == 'n' && out->name[1] == 'a' ? HS_BLOB_NATIVE
										 : HS_BLOB_NMETHOD;
		} else {
			out->kind = HS_BLOB_STUB;
		}
		return 0;
	}
	return 0;
}

/* A Symbol's text (modified UTF-8, shown as is). */
static int read_symbol(struct hotspot *h, uint64_t sym, char *buf, size_t len)
{
	uint16_t n;

	if (rd(h, sym + (uint64_t)h->off[F_SYM_LENGTH], &n, 2))
		return -EFAULT;
	if (n >= len)
		n = (uint16_t)(len - 1);
	if (n && rd(h, sym + (uint64_t)h->off[F_SYM_BODY], buf, n))
		return -EFAULT;
	buf[n] = 0;
	return 0;
}

struct method_bits {
	uint64_t constmethod, cp, holder, name_sym, sig_sym;
};

static int method_bits(struct hotspot *h, uint64_t method, struct method_bits *b)
{
	uint16_t ni, si;
	uint64_t cp_base;

	if (rd_u64(h, method + (uint64_t)h->off[F_M_CONSTMETHOD], &b->constmethod) ||
	    rd_u64(h, b->constmethod + (uint64_t)h->off[F_CM_CONSTANTS], &b->cp) ||
	    rd(h, b->constmethod + (uint64_t)h->off[F_CM_NAME_INDEX], &ni, 2) ||
	    rd(h, b->constmethod + (uint64_t)h->off[F_CM_SIG_INDEX], &si, 2) ||
	    rd_u64(h, b->cp + (uint64_t)h->off[F_CP_HOLDER], &b->holder))
		return -EFAULT;
	/* constant pool entries follow the ConstantPool object; a utf8 entry
	 * holds its Symbol* */
	cp_base = b->cp + (uint64_t)h->size[T_CONSTANTPOOL];
	if (rd_u64(h, cp_base + (uint64_t)ni * 8, &b->name_sym) ||
	    rd_u64(h, cp_base + (uint64_t)si * 8, &b->sig_sym) || !b->name_sym || !b->sig_sym)
		return -EFAULT;
	return 0;
}

/* Does the holder declare another method with this name (an overload)? */
static bool overloaded(struct hotspot *h, uint64_t holder, uint64_t method, uint64_t name_sym)
{
	uint64_t arr, m;
	int32_t n;

	int64_t len_off = h->off[F_AM_LENGTH] >= 0 ? h->off[F_AM_LENGTH] : h->off[F_AI_LENGTH];

	if (h->off[F_IK_METHODS] < 0 || len_off < 0 || h->off[F_AM_DATA] < 0 ||
	    rd_u64(h, holder + (uint64_t)h->off[F_IK_METHODS], &arr) || !arr ||
	    rd(h, arr + (uint64_t)len_off, &n, 4) || n <= 0 || n > 65535)
		return false;
	for (int32_t i = 0; i < n; i++) {
		struct method_bits b;

		if (rd_u64(h, arr + (uint64_t)h->off[F_AM_DATA] + (uint64_t)i * 8, &m) || !m ||
		    m == method)
			continue;
		if (!method_bits(h, m, &b) && b.name_sym == name_sym)
			return true;
	}
	return false;
}

static bool method_is_native(struct hotspot *h, uint64_t method, uint64_t constmethod)
{
	uint32_t flags;

	if (h->off[F_M_ACCESS_FLAGS] >= 0 &&
	    !rd(h, method + (uint64_t)h->off[F_M_ACCESS_FLAGS], &flags, 4))
		return flags & HS_ACC_NATIVE;
	(void)constmethod;
	return false;
}

int hotspot_method_name(struct hotspot *h, uint64_t method, char *buf, size_t len,
			uint64_t *native_fn)
{
	struct name_entry *e = &h->names[(method >> 3) % HS_NAME_CACHE];
	struct method_bits b;
	char klass[256], name[128], sig[256], full[700];
	uint64_t kname, fn = 0;

	if (native_fn)
		*native_fn = 0;
	if (!h->ready && hotspot_refresh(h, NULL, 0))
		return -EAGAIN;
	if (!method || (method & 7))
		return -EINVAL;
	if (e->name && e->method == method) {
		uint64_t cm;

		/* same Method still (a freed Method's memory may be reused) */
		if (!rd_u64(h, method + (uint64_t)h->off[F_M_CONSTMETHOD], &cm) && cm == e->constmethod) {
			snprintf(buf, len, "%s", e->name);
			if (native_fn) {
				if (!e->native_fn && method_is_native(h, method, cm))
					rd_u64(h, method + (uint64_t)h->size[T_METHOD], &e->native_fn);
				*native_fn = e->native_fn;
			}
			return 0;
		}
	}
	if (method_bits(h, method, &b) || rd_u64(h, b.holder + (uint64_t)h->off[F_K_NAME], &kname) ||
	    read_symbol(h, kname, klass, sizeof(klass)) || read_symbol(h, b.name_sym, name, sizeof(name)) ||
	    read_symbol(h, b.sig_sym, sig, sizeof(sig)))
		return -EFAULT;
	/* external name, as the JVM prints it: '/' -> '.', and a hidden
	 * class's "+0x..." suffix -> "/0x..." */
	for (char *p = klass; *p; p++)
		if (*p == '/')
			*p = '.';
	{
		char *plus = strrchr(klass, '+');

		if (plus && plus[1] == '0' && plus[2] == 'x')
			*plus = '/';
	}
	if (overloaded(h, b.holder, method, b.name_sym))
		snprintf(full, sizeof(full), "%s.%s%s", klass, name, sig);
	else
		snprintf(full, sizeof(full), "%s.%s", klass, name);
	/* Method::native_function(): the word right after the Method object */
	if (method_is_native(h, method, b.constmethod))
		rd_u64(h, method + (uint64_t)h->size[T_METHOD], &fn);
	free(e->name);
	e->name = strdup(full);
	e->method = method;
	e->constmethod = b.constmethod;
	e->native_fn = fn;
	if (native_fn)
		*native_fn = fn;
	snprintf(buf, len, "%s", full);
	return 0;
}

void hotspot_free(struct hotspot *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < HS_NAME_CACHE; i++)
		free(h->names[i].name);
	free(h->consts);
	free(h);
}
