# memdrift — every artifact goes under .output/. `make V=1` shows commands.
OUTPUT := .output
CLANG ?= clang
CC ?= gcc
BPFTOOL ?= bpftool
PROTOC_C ?= protoc-c
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
VMLINUX_H ?= $(OUTPUT)/vmlinux.h

PKGS := libbpf libelf libdw capstone json-c libprotobuf-c libmicrohttpd libsystemd zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS ?= -g -O2
ALL_CFLAGS := $(CFLAGS) -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-missing-field-initializers -D_GNU_SOURCE \
	-Iinclude -Idaemon -I$(OUTPUT) -I$(OUTPUT)/proto $(PKG_CFLAGS)
LDLIBS := $(PKG_LIBS) -lm -lpthread
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Iinclude -Ibpf -I$(OUTPUT) \
	-Wall -Wno-unused-function

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(patsubst $(OUTPUT)/%,%,$(2))";
endif

BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_SKELS := $(patsubst bpf/%.bpf.c,$(OUTPUT)/%.skel.h,$(BPF_SRCS))
PROTO_SRCS := $(wildcard daemon/*.proto)
PROTO_C := $(patsubst daemon/%.proto,$(OUTPUT)/proto/%.pb-c.c,$(PROTO_SRCS))
PROTO_OBJS := $(patsubst $(OUTPUT)/proto/%.c,$(OUTPUT)/proto/%.o,$(PROTO_C))
DAEMON_SRCS := $(wildcard daemon/*.c)
DAEMON_OBJS := $(patsubst daemon/%.c,$(OUTPUT)/daemon/%.o,$(DAEMON_SRCS))
LIB_OBJS := $(filter-out $(OUTPUT)/daemon/main.o,$(DAEMON_OBJS)) $(PROTO_OBJS)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(OUTPUT)/fuzz/%,$(FUZZ_SRCS))
FUZZ_LIB_SRCS := $(filter-out daemon/main.c,$(DAEMON_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(OUTPUT)/tools/%,$(TOOL_SRCS))

.PHONY: all deps test demo clean unit fuzz tools targets realprogs e2e bench
all: $(OUTPUT)/memdrift

deps:
	$(Q)bash scripts/install-deps.sh

$(OUTPUT) $(OUTPUT)/daemon $(OUTPUT)/tests $(OUTPUT)/proto $(OUTPUT)/fuzz $(OUTPUT)/tools:
	$(Q)mkdir -p $@

ifeq ($(VMLINUX_H),$(OUTPUT)/vmlinux.h)
$(OUTPUT)/vmlinux.h: | $(OUTPUT)
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@
endif

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c $(wildcard include/*.h) $(wildcard bpf/*.bpf.h) $(VMLINUX_H) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -include $(VMLINUX_H) -c $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(OUTPUT)/proto/%.pb-c.c $(OUTPUT)/proto/%.pb-c.h: daemon/%.proto | $(OUTPUT)/proto
	$(call msg,PROTOC,$@)
	$(Q)$(PROTOC_C) --proto_path=daemon --c_out=$(OUTPUT)/proto $<

$(OUTPUT)/proto/%.o: $(OUTPUT)/proto/%.c
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(OUTPUT)/daemon/%.o: daemon/%.c $(wildcard daemon/*.h) $(wildcard include/*.h) $(BPF_SKELS) $(PROTO_C) | $(OUTPUT)/daemon
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(OUTPUT)/memdrift: $(DAEMON_OBJS) $(PROTO_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $^ $(LDLIBS) -o $@

$(OUTPUT)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(OUTPUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< $(LIB_OBJS) $(LDLIBS) -lcmocka -o $@

# libFuzzer targets: the parsers rebuilt once with clang and sanitizers,
# each fuzzer linked against those objects.
FUZZ_CFLAGS = $(filter-out -Werror,$(ALL_CFLAGS)) -O1 -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJS := $(patsubst daemon/%.c,$(OUTPUT)/fuzzobj/%.o,$(FUZZ_LIB_SRCS)) \
	$(patsubst $(OUTPUT)/proto/%.c,$(OUTPUT)/fuzzobj/%.o,$(PROTO_C))

$(OUTPUT)/fuzzobj:
	$(Q)mkdir -p $@

$(OUTPUT)/fuzzobj/%.o: daemon/%.c $(wildcard daemon/*.h) $(wildcard include/*.h) $(BPF_SKELS) $(PROTO_C) | $(OUTPUT)/fuzzobj
	$(call msg,FUZZ-CC,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(OUTPUT)/fuzzobj/%.o: $(OUTPUT)/proto/%.c | $(OUTPUT)/fuzzobj
	$(call msg,FUZZ-CC,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(OUTPUT)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS) | $(OUTPUT)/fuzz
	$(call msg,FUZZ-LD,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) $(LDLIBS) -o $@

# Developer tools the e2e tests and benchmarks drive one module with.
$(OUTPUT)/tools/%: tests/tools/%.c $(LIB_OBJS) | $(OUTPUT)/tools
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< $(LIB_OBJS) $(LDLIBS) -o $@

unit: $(UNIT_BINS)
fuzz: $(FUZZ_BINS)
tools: $(TOOL_BINS)

# Go/cgo/Java targets for every installed toolchain, cached under .output/targets.
targets: | $(OUTPUT)
	$(Q)bash tests/targets/build.sh $(OUTPUT)/targets
	$(Q)bash tests/targets/jni/build.sh $(OUTPUT)/targets/jni

# Real Go servers from Debian's unstable suite, unpacked (not installed).
realprogs: | $(OUTPUT)
	$(Q)bash scripts/fetch-real-programs $(OUTPUT)/realprogs || \
		echo "  (test_real_programs will fail under CI=true, skip otherwise)"

test: deps
	$(Q)$(MAKE) --no-print-directory all unit fuzz tools targets realprogs
	$(Q)bash tests/run-all.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all targets
	$(Q)bash scripts/demo.sh

bench: deps
	$(Q)$(MAKE) --no-print-directory all tools targets
	$(Q)bash scripts/bench/run-all.sh

clean:
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)

.DELETE_ON_ERROR:
.SECONDARY:
