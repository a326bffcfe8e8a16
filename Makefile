# memdrift — every artifact goes under .output/. `make V=1` shows commands.
OUTPUT := .output
CLANG ?= clang
CC ?= gcc
BPFTOOL ?= bpftool
PROTOC_C ?= protoc-c
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
VMLINUX_H ?= $(OUTPUT)/vmlinux.h

PKGS := libbpf libelf libdw capstone json-c libprotobuf-c libmicrohttpd libsystemd libcap zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS ?= -g -O2
ALL_CFLAGS := $(CFLAGS) -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-missing-field-initializers -D_GNU_SOURCE \
	-Iinclude -Idaemon -I$(OUTPUT) -I$(OUTPUT)/proto $(PKG_CFLAGS)
# every object's header dependencies, written by the compiler (-MMD -MP)
DEPFLAGS = -MMD -MP
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
PROTO_SRCS := $(wildcard daemon/output/*.proto)
PROTO_C := $(patsubst daemon/output/%.proto,$(OUTPUT)/proto/%.pb-c.c,$(PROTO_SRCS))
PROTO_OBJS := $(patsubst $(OUTPUT)/proto/%.c,$(OUTPUT)/proto/%.o,$(PROTO_C))
# the product: daemon/<stage>/*.c (README "How it works" names the stages)
DAEMON_SRCS := $(wildcard daemon/*/*.c)
DAEMON_OBJS := $(patsubst daemon/%.c,$(OUTPUT)/daemon/%.o,$(DAEMON_SRCS))
LIB_OBJS := $(filter-out $(OUTPUT)/daemon/cli/main.o,$(DAEMON_OBJS)) $(PROTO_OBJS)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(OUTPUT)/fuzz/%,$(FUZZ_SRCS))
FUZZ_LIB_SRCS := $(filter-out daemon/cli/main.c,$(DAEMON_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(OUTPUT)/tools/%,$(TOOL_SRCS))

.PHONY: all deps test demo clean unit fuzz fuzz-long tools targets realprogs e2e bench
.PHONY: demo-target install image
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

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c $(VMLINUX_H) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) $(DEPFLAGS) -include $(VMLINUX_H) -c $< -o $@

# scripts/bench/probe-cost's no-op program: built on demand, not a product part
$(OUTPUT)/bench_noop.bpf.o: scripts/bench/bench_noop.bpf.c $(VMLINUX_H) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) $(DEPFLAGS) -include $(VMLINUX_H) -c $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(OUTPUT)/proto/%.pb-c.c $(OUTPUT)/proto/%.pb-c.h: daemon/output/%.proto | $(OUTPUT)/proto
	$(call msg,PROTOC,$@)
	$(Q)$(PROTOC_C) --proto_path=daemon/output --c_out=$(OUTPUT)/proto $<

$(OUTPUT)/proto/%.o: $(OUTPUT)/proto/%.c
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# generated headers (skeletons, protobuf) are order-only: the first build
# makes them, -MMD records which object includes which
$(OUTPUT)/daemon/%.o: daemon/%.c | $(BPF_SKELS) $(PROTO_C)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D) && $(CC) $(ALL_CFLAGS) $(DEPFLAGS) -c $< -o $@

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

$(OUTPUT)/fuzzobj/%.o: daemon/%.c | $(BPF_SKELS) $(PROTO_C)
	$(call msg,FUZZ-CC,$@)
	$(Q)mkdir -p $(@D) && $(CLANG) $(FUZZ_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(OUTPUT)/fuzzobj/%.o: $(OUTPUT)/proto/%.c | $(OUTPUT)/fuzzobj
	$(call msg,FUZZ-CC,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(OUTPUT)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS) | $(OUTPUT)/fuzz
	$(call msg,FUZZ-LD,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) $(LDLIBS) -o $@

# The hostile-target suite: a cmocka test under ASan/UBSan, linked against
# the fuzzers' sanitized objects; the unit stage of tests/run-all.sh runs it.
HOSTILE_BIN := $(OUTPUT)/tests/test_hostile
$(HOSTILE_BIN): tests/hostile/test_hostile.c $(FUZZ_OBJS) | $(OUTPUT)/tests
	$(call msg,ASAN-LD,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fno-sanitize-recover=undefined $< $(FUZZ_OBJS) $(LDLIBS) -lcmocka -o $@

# Developer tools the e2e tests and benchmarks drive one module with.
$(OUTPUT)/tools/%: tests/tools/%.c $(LIB_OBJS) | $(OUTPUT)/tools
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $< $(LIB_OBJS) $(LDLIBS) -o $@

unit: $(UNIT_BINS) $(HOSTILE_BIN)
fuzz: $(FUZZ_BINS)
# every fuzzer FUZZ_LONG_TIME s (default 360), one at a time, on a kept corpus
fuzz-long: fuzz
	$(Q)bash tests/fuzz/run-long.sh
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
	$(Q)$(MAKE) --no-print-directory -j2 all unit fuzz tools targets realprogs
	$(Q)bash tests/run-all.sh

# The demo runs one program: scripts/demo.sh builds only that one, with the
# newest installed Go (tests/targets/build.sh builds every target for every
# toolchain).
demo: deps
	$(Q)$(MAKE) --no-print-directory -j2 all demo-target
	$(Q)bash scripts/demo.sh

demo-target:
	$(Q)bash scripts/demo.sh --build

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the systemd unit,
# the example config (kept when one exists) and memdrift(8), generated from
# the command table that --help prints.
PREFIX ?= /usr/local
install: $(OUTPUT)/memdrift
	$(Q)install -D -m 0755 $(OUTPUT)/memdrift $(DESTDIR)$(PREFIX)/bin/memdrift
	$(Q)install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)/etc/memdrift $(DESTDIR)$(PREFIX)/share/doc/memdrift
	$(Q)sed 's|/usr/local/|$(PREFIX)/|g' scripts/systemd/memdrift.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/memdrift.service
	$(Q)chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/memdrift.service
	$(Q)[ -e $(DESTDIR)/etc/memdrift/memdrift.conf ] || \
		install -m 0644 daemon/service/memdrift.conf.example $(DESTDIR)/etc/memdrift/memdrift.conf
	$(Q)$(OUTPUT)/memdrift help --man > $(DESTDIR)$(PREFIX)/share/man/man8/memdrift.8
	$(Q)install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/memdrift/README.md
	$(Q)echo "installed under $(DESTDIR)$(PREFIX) (unit: $(PREFIX)/lib/systemd/system/memdrift.service)"

# The container image (podman, offline; cached under .output/image).
image:
	$(Q)bash scripts/build-image

bench: deps
	$(Q)$(MAKE) --no-print-directory all tools targets
	$(Q)bash scripts/bench/run-all.sh

clean:
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)

-include $(wildcard $(OUTPUT)/*.d $(OUTPUT)/daemon/*/*.d $(OUTPUT)/fuzzobj/*/*.d)

.DELETE_ON_ERROR:
.SECONDARY:
