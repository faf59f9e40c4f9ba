# golf — build and test.
#   make            tokenize, golf_infer (C, system compiler) and train_golf (CUDA, when nvcc is found)
#   make cpu        train_golf_cpu: train_golf.cu on the CPU (dev/cuda_cpu.h emulates CUDA, cuBLAS, NCCL);
#                   SANITIZE=1 builds train_golf_cpu_asan with ASan + UBSan
#   make test       every test that runs without a GPU (train_golf.cu's kernels through train_golf_cpu), each suite in
#                   turn and a summary at the end (ONLY=WORD: the suites whose command has WORD)
#   make test-gpu   GPU tests (skipped, with a message, when no CUDA device is visible)
#   make bench      benchmarks (dev/bench_*.sh)
#   make clean
# Overridable: ONLY, CC, CFLAGS, CXX, PYTHON, CUDA_HOME, NVCC, CUDA_ARCH, NVCCFLAGS, USE_MPI=0, USE_NCCL=0, CPU_BLAS=0, SANITIZE=1.

CC      ?= cc
CFLAGS  ?= -O3 -std=c99 -Wall -Wextra
LDLIBS  ?= -lm
# OpenMP for golf_infer's CPU forward pass, when the compiler has it (OPENMP= builds without)
OPENMP  ?= $(shell $(CC) -fopenmp -E -x c /dev/null >/dev/null 2>&1 && echo -fopenmp)
# golf_infer's fast build: the host's vector ISA and FMA contraction where the compiler takes them (NATIVE= for a
# portable binary)
NATIVE  ?= $(shell $(CC) -march=native -ffp-contract=fast -E -x c /dev/null >/dev/null 2>&1 && echo -march=native -ffp-contract=fast)
# Debian's python3 (with python3-torch, python3-sentencepiece, python3-numpy) is the test oracle.
PYTHON  ?= /usr/bin/python3
# the GPU tests need a PyTorch with CUDA (on a GPU machine, usually the python3 on PATH)
GPU_PYTHON ?= python3

# --- CUDA, MPI and NCCL detection ------------------------------------------------------------------
CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda /opt/cuda))
NVCC      ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard $(CUDA_HOME)/bin/nvcc))
CUDA_ARCH ?= 90
NVCCFLAGS ?= -O3 -std=c++17 -arch=sm_$(CUDA_ARCH) -lineinfo -Xcompiler -Wall,-Wextra
NVCC_LIBS := -lcublas -lcublasLt

comma := ,
# mpi_flags(WRAPPER,compile|link): an MPI compiler wrapper's flags: Open MPI's `--showme:compile` / `--showme:link`; else
# MPICH's and Intel MPI's `-show` (the whole command line: its -I/-D or -L/-l/-Wl words); else pkg-config's mpich or ompi
mpi_words = $(if $(filter compile,$(2)),-I% -D% -pthread,-L% -l% -Wl$(comma)% -pthread)
mpi_flags = $(or $(shell $(1) --showme:$(2) 2>/dev/null),$(filter $(mpi_words),$(shell $(1) -show 2>/dev/null)),$(shell \
            pkg-config --$(if $(filter compile,$(2)),cflags,libs) mpich 2>/dev/null || pkg-config --$(if $(filter compile,$(2)),cflags,libs) ompi 2>/dev/null))
USE_MPI  ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
USE_NCCL ?= $(if $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),1,0)
ifeq ($(USE_MPI),1)
  # mpicc's flags, with what nvcc does not take itself handed to the host compiler/linker
  MPI_CFLAGS := $(call mpi_flags,mpicc,compile)
  MPI_LFLAGS := $(call mpi_flags,mpicc,link)
  NVCC_MPI   := -DUSE_MPI $(filter -I% -D%,$(MPI_CFLAGS)) $(addprefix -Xcompiler ,$(filter-out -I% -D%,$(MPI_CFLAGS))) \
                $(filter -L% -l%,$(MPI_LFLAGS)) $(addprefix -Xlinker ,$(patsubst -Wl$(comma)%,%,$(filter -Wl$(comma)%,$(MPI_LFLAGS))))
endif
ifeq ($(USE_NCCL),1)
  NVCC_NCCL := -DUSE_NCCL -lnccl
endif

# plain `make` builds `all` (the C tools and, when nvcc is found, train_golf), whatever rule comes first below
.DEFAULT_GOAL := all

C_TARGETS    := tokenize $(if $(wildcard golf_infer.c),golf_infer golf_export)
CUDA_TARGETS := $(if $(and $(NVCC),$(wildcard train_golf.cu)),train_golf)

# --- the CPU build of train_golf.cu -------------------------------------------------------------------------
# The same source compiled by the C++ compiler with dev/cpu/ first on the include path (its cuda_runtime.h,
# cublas_v2.h, nccl.h, cuda_fp16.h are dev/cuda_cpu.h); GEMMs on CBLAS (Debian's libopenblas-dev) when found,
# else loops; MPI when mpicxx is found; NCCL always (emulated over TCP).
CXX      ?= c++
CPU_BLAS ?= $(shell printf '\043include <cblas.h>\nint main(void) { return 0; }\n' | $(CXX) -x c++ - -lopenblas -o /dev/null >/dev/null 2>&1 && echo 1 || echo 0)
CPU_MPI_CFLAGS := $(if $(filter 1,$(USE_MPI)),-DUSE_MPI $(call mpi_flags,mpicxx,compile))
CPU_MPI_LFLAGS := $(if $(filter 1,$(USE_MPI)),$(call mpi_flags,mpicxx,link))
CPU_FLAGS_NOMPI := -x c++ -std=c++17 -g -Wall -Wextra -Wno-unused-function -Idev/cpu -I. -DUSE_NCCL $(OPENMP) \
                   $(if $(filter 1,$(CPU_BLAS)),-DGOLF_EMU_CBLAS)
CPU_LIBS_NOMPI  := $(if $(filter 1,$(CPU_BLAS)),-lopenblas) -lm
CPU_FLAGS := $(CPU_FLAGS_NOMPI) $(CPU_MPI_CFLAGS)
CPU_LIBS  := $(CPU_MPI_LFLAGS) $(CPU_LIBS_NOMPI)
CPU_BIN   := train_golf_cpu$(if $(filter 1,$(SANITIZE)),_asan)
CPU_ASAN  := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CPU_DEPS  := train_golf.cu golf_infer.c dev/golf_export.c dev/cuda_cpu.h $(wildcard dev/cpu/*.h)

cpu: $(CPU_BIN)
train_golf_cpu: $(CPU_DEPS)
	$(CXX) -O3 $(CPU_FLAGS) -o $@ train_golf.cu $(CPU_LIBS)
train_golf_cpu_asan: $(CPU_DEPS)
	$(CXX) $(CPU_ASAN) $(CPU_FLAGS) -o $@ train_golf.cu $(CPU_LIBS)
# the emulator's own checks (test/emu_faults.cu: faults, collectives, orders, copies)
test/emu_faults: test/emu_faults.cu $(CPU_DEPS)
	$(CXX) -O2 $(CPU_FLAGS) -Wno-unused-variable -o $@ $< $(CPU_LIBS)
# train_golf.cu's host code (test/train_host.cu, -DTESTING) on the CPU build, without MPI and, when mpicxx is found,
# with it, for test/test_train_host.py (needs no nvcc)
test/train_host_cpu: test/train_host.cu $(CPU_DEPS)
	$(CXX) -O1 $(CPU_FLAGS_NOMPI) -o $@ $< $(CPU_LIBS_NOMPI)
test/train_host_cpu_mpi: test/train_host.cu $(CPU_DEPS)
	$(CXX) -O1 $(CPU_FLAGS) -o $@ $< $(CPU_LIBS)
# attention-only speed: flash (bf16) against SIMT (fp32) kernels; the CPU build is a smoke test of the driver
dev/bench_attention: dev/bench_attention.cu train_golf.cu golf_infer.c dev/golf_export.c
	$(NVCC) $(NVCCFLAGS) $(if $(OPENMP),-Xcompiler $(OPENMP) -lgomp) -I. -o $@ $< $(NVCC_LIBS) $(NVCC_MPI) $(NVCC_NCCL)
dev/bench_attention_cpu: dev/bench_attention.cu $(CPU_DEPS)
	$(CXX) -O2 $(CPU_FLAGS) -Wno-unused-variable -o $@ $< $(CPU_LIBS)

.PHONY: all buildinfo cpu test test-gpu bench clean
all: buildinfo $(C_TARGETS) $(CUDA_TARGETS)

buildinfo:
	@echo "golf build: CC=$(CC)"
	@echo "  tokenize    yes"
	@echo "  golf_infer  $(if $(wildcard golf_infer.c),yes$(if $(OPENMP), (OpenMP), (no OpenMP))$(if $(NATIVE), $(NATIVE), portable),skipped: golf_infer.c is not in this checkout)"
	@echo "  train_golf  $(if $(CUDA_TARGETS),yes (nvcc $(NVCC), sm_$(CUDA_ARCH)),skipped: $(if $(NVCC),train_golf.cu is not in this checkout,no nvcc found (set CUDA_HOME or NVCC)))"
	@echo "  train_golf_cpu  (make cpu) $(CXX), BLAS $(if $(filter 1,$(CPU_BLAS)),OpenBLAS,loops (no cblas.h + -lopenblas))"
	@echo "  MPI         $(if $(filter 1,$(USE_MPI)),found (mpicc),not found: single-process build)"
	@echo "  NCCL        $(if $(filter 1,$(USE_NCCL)),found,not found: single-GPU build)"

tokenize: tokenize.c golf_infer.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

golf_infer: golf_infer.c
	$(CC) $(CFLAGS) $(NATIVE) $(OPENMP) -o $@ $< $(LDLIBS)

# the blob encoder (quantize + entropy code + write); it includes golf_infer.c for the format and, for GPTQ's
# calibration, the forward pass (OpenMP like golf_infer)
golf_export: dev/golf_export.c golf_infer.c
	$(CC) $(CFLAGS) $(OPENMP) -I. -o $@ $< $(LDLIBS)

# OpenMP on the host side: the CPU GPTQ of the export (GPTQ_RESERVE_SECONDS) runs golf_infer.c's forward pass;
# --default-stream per-thread: every launch on the per-thread default stream, which a CUDA graph capture can record
train_golf: train_golf.cu golf_infer.c dev/golf_export.c
	$(NVCC) $(NVCCFLAGS) --default-stream per-thread $(if $(OPENMP),-Xcompiler $(OPENMP) -lgomp) -I. -o $@ $< $(NVCC_LIBS) $(NVCC_MPI) $(NVCC_NCCL)

# --- tests and benchmarks -----------------------------------------------------------------------------
# OpenMP threads that spin while waiting slow everything down when the tests share the cores
test: export OMP_WAIT_POLICY = passive
test: tokenize golf_infer golf_export $(CUDA_TARGETS) train_golf_cpu train_golf_cpu_asan test/emu_faults dev/bench_attention_cpu \
      test/train_host_cpu $(if $(filter 1,$(USE_MPI)),test/train_host_cpu_mpi)
	$(PYTHON) test/run_suites.py $(if $(ONLY),--only $(ONLY)) \
	  '$(PYTHON) test/test_tokenize.py --tokenize ./tokenize' \
	  '$(PYTHON) test/test_reference.py' \
	  '$(PYTHON) test/test_features.py' \
	  '$(PYTHON) test/test_infer.py' \
	  '$(PYTHON) test/test_arch.py' \
	  '$(PYTHON) test/test_records.py' \
	  '$(PYTHON) test/test_quant.py' \
	  '$(PYTHON) test/test_train_host.py --exe test/train_host_cpu $(if $(filter 1,$(USE_MPI)),--exe-mpi test/train_host_cpu_mpi) $(if $(NVCC),--nvcc $(NVCC))' \
	  '$(PYTHON) test/test_tools.py' \
	  '$(PYTHON) test/test_quickstart.py' \
	  '$(PYTHON) test/test_submit.py' \
	  '$(PYTHON) test/test_badinput.py' \
	  '$(PYTHON) test/test_emu.py' \
	  '$(PYTHON) test/test_plan.py' \
	  '$(PYTHON) test/test_survive.py' \
	  '$(PYTHON) test/test_gpu.py --cpu'

test-gpu:
	@if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q GPU; then \
	  echo "test-gpu: no CUDA device visible (nvidia-smi lists none): GPU tests skipped"; \
	elif [ -z "$(CUDA_TARGETS)" ]; then \
	  echo "test-gpu: train_golf is not built (no train_golf.cu or no nvcc): GPU tests skipped"; \
	else $(MAKE) --no-print-directory train_golf golf_infer && $(GPU_PYTHON) test/test_gpu.py; fi

bench: tokenize golf_infer golf_export
	bash dev/bench_tokenize.sh
	bash dev/bench_compress.sh
	bash dev/bench_train.sh
	bash dev/bench_infer.sh

clean:
	rm -f tokenize golf_infer golf_export train_golf train_golf_cpu train_golf_cpu_asan test/emu_faults test/train_host_cpu test/train_host_cpu_mpi dev/bench_attention dev/bench_attention_cpu
