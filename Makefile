# medflow — build, test, fuzz, bench.
#
#   make deps            install Debian packages (apt-get; idempotent)
#   make                 ./medflow, CPU build, gcc, warnings are errors
#   make CC=clang        the same with clang
#   make test            unit + integration tests (ends with "N passed, N failed")
#   make test SAN=1      the same under ASan + UBSan
#   make CUDA=1          adds the CUDA backend (needs nvcc; kernels/cuda/*.cu)
#   make CUDA=1 cuda-test  GPU test programs (tests/cuda/); exit 77 = no GPU here
#   make fuzz            libFuzzer targets (clang) in build/fuzz/
#   make bench           benchmarks (tests/bench/), results to BENCHMARKS.md
#   make docs            regenerate docs/kinds.md and docs/cli-reference.md
#   make fmt / lint      clang-format / cppcheck
#   make check-layout    every #include allowed by its folder's README (tests/check_layout.py)
#
# Objects go to build/<compiler>[-san][-cuda]/ so gcc, clang and sanitizer
# builds never mix; ./medflow is a copy of the last build's binary.

CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
SAN ?= 0
CUDA ?= 0
V ?= 0
Q := $(if $(filter 1,$(V)),,@)

CFG := $(notdir $(firstword $(CC)))$(if $(filter 1,$(SAN)),-san)$(if $(filter 1,$(CUDA)),-cuda)
BUILD := build/$(CFG)

PKGS := yaml-0.1 libarchive libgit2 libcrypto openblas libprotobuf-c zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wvla
ifeq ($(findstring clang,$(CC)),)
WARN += -Wno-format-truncation
endif
CFLAGS_BASE := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -D_FILE_OFFSET_BITS=64 \
	-O2 -g -fopenmp $(WARN) -I. -I$(BUILD)/gen $(PKG_CFLAGS) -MMD -MP \
	-DMF_VERSION='"$(VERSION)"' -DMF_GIT_REV='"$(GIT_REV)"'
LDLIBS_BASE := $(PKG_LIBS) -lzstd -fopenmp -lm -lpthread

# ---- MPI (CPU data parallelism; optional: built in when pkg-config finds Open MPI) ----
# MPI=0 leaves it out; without it a `ranks: N` stage fails with a message saying how to rebuild.
MPI ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
CFLAGS_BASE += -DMF_HAVE_MPI $(shell pkg-config --cflags ompi-c)
LDLIBS_BASE += $(shell pkg-config --libs ompi-c)
endif

ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -O1
LDLIBS_BASE += -fsanitize=address,undefined
endif

# ---- CUDA (optional) ----
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CU_SRCS := $(wildcard kernels/cuda/*.cu)
CU_OBJS :=
ifeq ($(CUDA),1)
ifeq ($(strip $(NVCC)),)
$(error CUDA=1 but nvcc was not found; install the CUDA toolkit or put nvcc on PATH)
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CFLAGS_BASE += -DMF_HAVE_CUDA -I$(CUDA_HOME)/include
LDLIBS_BASE += -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lnccl -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
NVCCFLAGS ?= -O3 -std=c++17 -I. -MMD -MP -Xcompiler -fPIC,-Wall \
	-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
CU_OBJS := $(patsubst %.cu,$(BUILD)/%.o,$(CU_SRCS))
endif

# The numerics-relevant build identity (kernels/build_id.c): the flags that change floating-point results.
BUILD_ID_FLAGS := $(strip $(filter -O% -march=% -mtune=% -ffast-math -ffp-% -fsanitize=% -DMF_HAVE_CUDA -DMF_HAVE_MPI,$(CFLAGS_BASE) $(CFLAGS)))
$(BUILD)/kernels/build_id.o: CFLAGS_BASE += -DMF_BUILD_FLAGS='"$(BUILD_ID_FLAGS)"'

# ---- sources ----
LIB_DIRS := common artifacts kernels tokenizer modelio stages engine
LIB_SRCS := $(filter-out engine/main.c,$(shell find $(LIB_DIRS) -name '*.c' -not -path 'kernels/cuda/*' 2>/dev/null | sort))
LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
# Protocol buffer schemas compiled by protoc-c at build time into $(BUILD)/gen/ (the
# SentencePiece model format: tokenizer/sentencepiece_model.proto).
PROTOS := $(shell find $(LIB_DIRS) -name '*.proto' 2>/dev/null | sort)
PROTO_HDRS := $(patsubst %.proto,$(BUILD)/gen/%.pb-c.h,$(PROTOS))
PROTO_OBJS := $(patsubst %.proto,$(BUILD)/gen/%.pb-c.o,$(PROTOS))
LIB_OBJS += $(PROTO_OBJS)
TEST_SRCS := $(shell find tests -name '*.c' -not -path 'tests/fuzz/*' -not -path 'tests/bench/*' -not -path 'tests/cuda/*' 2>/dev/null | sort)
TEST_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(TEST_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

# keep fuzz objects between builds (they are intermediates of pattern rules)
.SECONDARY:

# medflow is phony: with `.SECONDARY:` above, make would otherwise keep a CPU ./medflow after
# `make CUDA=1` (the missing build/gcc-cuda/medflow counts as an intermediate it need not make).
.PHONY: all deps docs test fuzz fuzz-run bench fmt lint clean help medflow check-layout
all: medflow

help:
	@sed -n '2,17p' Makefile

$(BUILD)/libmedflow.a: $(LIB_OBJS) $(CU_OBJS)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/medflow: $(BUILD)/engine/main.o $(BUILD)/libmedflow.a
	$(Q)$(CC) -o $@ $^ $(LDLIBS_BASE)

# copy + rename: a running medflow keeps its binary (no "text file busy")
medflow: $(BUILD)/medflow
	$(Q)cp $< $@.tmp && mv -f $@.tmp $@
	@echo "built ./medflow ($(CFG))"

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: %.proto
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC-C $<"
	$(Q)protoc-c --proto_path=. --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	@echo "  CC $<"
	$(Q)$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@

# sources that include a generated header wait for it (the first build has no .d files yet)
$(LIB_OBJS) $(TEST_OBJS) $(BUILD)/engine/main.o: | $(PROTO_HDRS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(filter 1,$(V)),,echo "  CC $<")
	$(Q)$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	@echo "  NVCC $<"
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/tests/runner: $(TEST_OBJS) $(BUILD)/libmedflow.a
	$(Q)$(CC) -o $@ $(TEST_OBJS) $(BUILD)/libmedflow.a $(LDLIBS_BASE)

# The engine tests run stages of test-only kinds (sleep, fail, write-file, copy-input, ranks)
# through this second binary: the real engine/main.c linked with tests/engine/testkinds.c,
# which registers them. ./medflow never contains them.
TESTKINDS_BIN := $(BUILD)/tests/medflow-testkinds
$(TESTKINDS_BIN): $(BUILD)/engine/main.o $(BUILD)/tests/engine/testkinds.o $(BUILD)/libmedflow.a
	$(Q)$(CC) -o $@ $^ $(LDLIBS_BASE)

# TESTS=filter limits the run to tests whose name contains it. The suite checks the CPU backend
# (its fixtures' tolerances are the CPU's), also in a CUDA build on a GPU machine: models default
# to MEDFLOW_BACKEND=cpu unless the caller sets it (the GPU checks are `make CUDA=1 cuda-test`).
test: medflow $(BUILD)/tests/runner $(TESTKINDS_BIN)
	$(Q)MEDFLOW_BACKEND=$${MEDFLOW_BACKEND:-cpu} MEDFLOW_BIN=./medflow MEDFLOW_TESTKINDS_BIN=./$(TESTKINDS_BIN) \
		./$(BUILD)/tests/runner $(TESTS)

check-layout:
	$(Q)python3 tests/check_layout.py

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		build-essential gcc clang llvm libclang-rt-dev pkg-config git ca-certificates \
		libyaml-dev libarchive-dev libgit2-dev libssl-dev libopenblas-dev libzstd-dev zlib1g-dev zstd \
		python3 chromium fonts-wqy-zenhei libprotobuf-c-dev protobuf-c-compiler \
		libopenmpi-dev openmpi-bin slurm-wlm munge

# ---- fuzzing (clang + libFuzzer) ----
FUZZ_BUILD := build/fuzz
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -D_FILE_OFFSET_BITS=64 -g -O1 -I. -I$(FUZZ_BUILD)/gen \
	$(PKG_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -fopenmp \
	-DMF_VERSION='"$(VERSION)"' -DMF_GIT_REV='"$(GIT_REV)"'
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(LIB_SRCS)) $(patsubst %.proto,$(FUZZ_BUILD)/gen/%.pb-c.o,$(PROTOS))
FUZZ_PROTO_HDRS := $(patsubst %.proto,$(FUZZ_BUILD)/gen/%.pb-c.h,$(PROTOS))
$(FUZZ_LIB_OBJS): | $(FUZZ_PROTO_HDRS)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/gen/%.pb-c.c $(FUZZ_BUILD)/gen/%.pb-c.h: %.proto
	@mkdir -p $(FUZZ_BUILD)/gen
	$(Q)protoc-c --proto_path=. --c_out=$(FUZZ_BUILD)/gen $<

$(FUZZ_BUILD)/gen/%.pb-c.o: $(FUZZ_BUILD)/gen/%.pb-c.c
	$(Q)clang $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJS)
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(PKG_LIBS) -lzstd -lm -lpthread

fuzz: $(FUZZ_BINS)
	@echo "fuzz targets: $(FUZZ_BINS)"
	@echo "run one: make fuzz-run TARGET=fuzz_graph SECONDS=600"

TARGET ?= fuzz_graph
SECONDS ?= 60
fuzz-run: fuzz
	@mkdir -p build/fuzz/corpus-$(TARGET)
	./build/fuzz/$(TARGET) -max_total_time=$(SECONDS) -print_final_stats=1 \
		build/fuzz/corpus-$(TARGET) $(wildcard tests/fuzz/seeds/$(TARGET))

bench: medflow
	$(Q)for s in tests/bench/bench_*.sh; do echo "== $$s"; bash $$s || exit 1; done

# Generated docs: the stage kinds (from the registry) and the command reference (from --help).
docs: medflow
	./medflow kinds --markdown > docs/kinds.md
	bash docs/gen-cli-reference.sh ./medflow

fmt:
	clang-format -i $$(find $(LIB_DIRS) tests -name '*.[ch]')

lint:
	cppcheck --quiet --enable=warning,performance,portability --error-exitcode=1 -I. $(LIB_DIRS)

clean:
	rm -rf build medflow

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BUILD)/engine/main.d $(CU_OBJS:.o=.d)

# ---- kernels benchmark (tests/bench/bench_kernels.c; run by tests/bench/bench_kernels.sh) ----
.PHONY: bench-kernels-bin print-bench-kernels-bin
bench-kernels-bin: $(BUILD)/bench_kernels
print-bench-kernels-bin:
	@echo $(BUILD)/bench_kernels
$(BUILD)/bench_kernels: tests/bench/bench_kernels.c $(BUILD)/libmedflow.a
	$(Q)$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libmedflow.a $(LDLIBS_BASE)

# ---- GPU test programs (tests/cuda/*.c|*.cu, one binary each; CUDA=1 only) ----
# Each prints "N passed, N failed" and exits 0/1, or exits 77 when no CUDA device
# is usable (reported as "no GPU", never as a pass).
CUDA_TEST_SRCS := $(wildcard tests/cuda/*.c tests/cuda/*.cu)
CUDA_TEST_BINS := $(patsubst tests/cuda/%,$(BUILD)/tests/cuda/%,$(basename $(CUDA_TEST_SRCS)))
.PHONY: cuda-tests cuda-test
ifeq ($(CUDA),1)
$(BUILD)/tests/cuda/%: $(BUILD)/tests/cuda/%.o $(BUILD)/libmedflow.a
	$(Q)$(CC) -o $@ $< $(BUILD)/libmedflow.a $(LDLIBS_BASE)
cuda-tests: $(CUDA_TEST_BINS)
	@echo "GPU test programs: $(CUDA_TEST_BINS)"
cuda-test: cuda-tests
	$(Q)rc=0; for t in $(CUDA_TEST_BINS); do echo "== $$t"; ./$$t; s=$$?; \
		if [ $$s = 77 ]; then echo "   (no GPU: not run)"; elif [ $$s != 0 ]; then rc=1; fi; done; exit $$rc
else
cuda-tests cuda-test:
	@echo "the GPU test programs need the CUDA build: make CUDA=1 $@"; exit 2
endif

# ---- CUDA kernel benchmark (tests/bench/bench_cuda_kernels.cu; tests/bench/bench_cuda_kernels.sh runs it
#      beside PyTorch). Not a tests/cuda program: cuda-test runs every one of those. ----
.PHONY: bench-cuda-kernels print-bench-cuda-kernels-bin
print-bench-cuda-kernels-bin:
	@echo $(BUILD)/bench_cuda_kernels
ifeq ($(CUDA),1)
bench-cuda-kernels: $(BUILD)/bench_cuda_kernels
$(BUILD)/bench_cuda_kernels: $(BUILD)/tests/bench/bench_cuda_kernels.o $(BUILD)/libmedflow.a
	$(Q)$(CC) -o $@ $^ $(LDLIBS_BASE)
else
bench-cuda-kernels:
	@echo "the CUDA kernel benchmark needs the CUDA build: make CUDA=1 $@"; exit 2
endif
