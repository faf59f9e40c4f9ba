/*
 * dev/cuda_cpu.h — the CUDA runtime, cuBLAS and NCCL emulated on the CPU, so that train_golf.cu's own kernels and
 * host code run unchanged on a machine without a GPU (`make cpu` builds train_golf_cpu with it).
 *
 * Contract
 *   Compiled by the system C++ compiler (C++17) with -Idev/cpu: dev/cpu/{cuda_runtime,cuda_fp16,cuda_bf16,
 *   cublas_v2,nccl}.h include this file, so train_golf.cu's includes stay as they are. The one difference in the
 *   source is KERNEL_LAUNCH(kernel, grid, block, smem, args...), defined here and, for nvcc, in train_golf.cu.
 *
 *   Execution model
 *     A launch runs its blocks on OS threads (OpenMP, GOLF_EMU_THREADS or OMP_NUM_THREADS of them); one OS
 *     thread runs one block at a time, start to end. Every CUDA thread of the block is a fiber with its own
 *     stack (GOLF_EMU_STACK_KB, default 64). A fiber runs until it exits, reaches __syncthreads() or a warp
 *     collective; `__shared__` is `static thread_local`, so a block's fibers share it and nothing else does.
 *     A thread that never waits runs to its end on the fiber that started it, and the next thread starts on
 *     the same stack: a kernel without barriers or collectives costs one function call per thread.
 *     GOLF_EMU_ORDER=forward|reverse|random:SEED is the order in which fibers start and resume between
 *     barriers (default forward): a kernel whose result depends on it has a race.
 *   Warp collectives (__shfl*_sync, __ballot_sync, __any_sync, __all_sync, __syncwarp) wait until every lane
 *     of the mask arrives at its next collective; the last to arrive computes every lane's result. Lanes are
 *     threads 32w..32w+31 of the block's linear thread index, as on the GPU.
 *   Tensor cores (section 5b): mma_bf16_16816 (mma.sync m16n8k16 bf16 -> fp32), ldmatrix_x4 [_trans] (and the .x2 form through golf_emu::ldmatrix),
 *     cp_async_16, cp_async_commit, cp_async_wait<N>: train_golf.cu's wrappers of those PTX instructions, with the
 *     PTX ISA's fragment layouts. mma and ldmatrix are collectives of all 32 lanes; a cp.async reads its source at
 *     issue and writes shared memory only at the cp_async_wait covering its group: a read before it sees old bytes.
 *   Faults, each reported with the kernel, its launch site, the block and thread, then exit(1):
 *     __syncthreads() reached by part of a block (the rest exited) or a block that can make no progress;
 *     a collective whose mask leaves out the calling lane, names a lane that exited or is not in the block,
 *     or whose lanes disagree on the operation or the mask (mma and ldmatrix too); an ldmatrix row or cp.async
 *     address not 16-byte aligned, a cp.async source outside the device allocations, a thread exiting with
 *     cp.async copies it never waited for; a launch over an H100's limits (threads per
 *     block, grid dimensions, dynamic shared memory over 48 KiB without the opt-in attribute or over its
 *     227 KiB); a copy, set or GEMM operand outside the device allocations (cudaMemcpy & co return
 *     cudaErrorInvalidValue, and cudaGetErrorString says what was outside what).
 *   Memory: cudaMalloc is one 256-byte aligned heap block per allocation (so ASan, `make cpu SANITIZE=1`, sees an overrun as a heap
 *     overflow), tracked with its size; streams and events run in order (everything is synchronous;
 *     cudaStreamWaitEvent checks its event and returns).
 *   Stream capture and graphs (section 8b): cudaStreamBeginCapture / EndCapture / IsCapturing, cudaGraphInstantiate,
 *     cudaGraphLaunch, cudaGraphExecDestroy, cudaGraphDestroy. While a stream is captured, every kernel launch (its
 *     arguments copied by value), cudaMemsetAsync, cudaMemcpyAsync, cuBLAS / cuBLASLt call and NCCL call issued to it
 *     is recorded instead of run; a launch of the instantiated graph runs them in order. Stream 0 in a runtime call
 *     (and KERNEL_LAUNCH's stream) is the per-thread default stream (train_golf is built with --default-stream
 *     per-thread), 0 inside a library is the legacy stream. Faults naming the call site: a capture begun in
 *     cudaStreamCaptureModeGlobal (another thread's CUDA call would invalidate it: ThreadLocal is what a step needs);
 *     during a capture a synchronous cudaMemcpy / cudaMemset, cudaDeviceSynchronize / cudaStreamSynchronize /
 *     cudaEventSynchronize, cudaMemcpyAsync to or from pageable host memory (a host read of device memory included),
 *     cudaMalloc / cudaFree / cudaMallocHost / cudaFreeHost, a library call on the legacy stream, a cuBLAS call on a
 *     handle without cublasSetWorkspace, a second capture; a launch of a graph never instantiated or destroyed, ending
 *     a capture never begun; a library call (cuBLAS, cuBLASLt, NCCL) on the legacy stream during a training step
 *     (between EMU_MARK("step") and EMU_MARK("step_end")), captured or not. One capture at a time.
 *   Versions: cudaRuntimeGetVersion is 12080, cudaDriverGetVersion GOLF_EMU_DRIVER_VERSION (default 12080); a driver
 *     older than the runtime makes cudaGetDeviceCount fail with cudaErrorInsufficientDriver.
 *   cuBLAS: cublasSgemm and cublasSgemmStridedBatched with cuBLAS's column-major meaning (ops, leading
 *     dimensions, strides, alpha, beta; beta = 0 never reads C), on CBLAS (OpenBLAS) or, without
 *     GOLF_EMU_CBLAS, loops: each entry summed in float32 over ascending k with no fused multiply-add (the bits of
 *     the plain scalar loop), run as vector-register tiles on OpenMP threads (GOLF_EMU_GEMM_WIDTH=4|8|16 caps the
 *     floats per vector; the widest the CPU has by default); CUBLAS_TF32_TENSOR_OP_MATH rounds the operands to
 *     TF32 (10 mantissa bits, nearest even) first. fp16/bf16 conversions round to nearest even, as the GPU's _rn intrinsics do.
 *   cuBLASLt (section 9b): cublasLtMatmul on bf16 A and B with CUBLAS_COMPUTE_32F, C = D in bf16 or float32,
 *     TRANSA / TRANSB, column-major layouts (strided batches: BATCH_COUNT, STRIDED_BATCH_OFFSET), the workspace
 *     preference and a one-algorithm heuristic; operands
 *     decoded exactly, summed in float32 as cublasSgemm, the result rounded to D's type (nearest even). Any other
 *     attribute, type or a layout that does not fit the op is a fault naming the call site.
 *   NCCL: a communicator of the processes that called ncclCommInitRank with one id. ncclGetUniqueId opens a
 *     TCP listener (MASTER_ADDR or 127.0.0.1, a free port) and writes its address into the id; the ranks
 *     connect to it (a star through rank 0). ncclAllReduce / ncclBroadcast / ncclAllGather move the bytes
 *     through rank 0, which combines in rank order (every rank gets the same bits). Counts are elements. A rank that
 *     is gone (its connection closed) is ncclRemoteError naming it; ncclCommAbort (any thread) shuts the connections
 *     down, after which ncclCommGetAsyncError says ncclRemoteError.
 *   The device: GOLF_EMU_DEVICES (default 8) H100 SXM 80GB with their properties.
 *   GOLF_EMU_LOG=path appends one line per launch and per GEMM, for dev/predict.py (fields separated by spaces):
 *     KERNEL FILE:LINE grid X,Y,Z block X,Y,Z smem BYTES us MICROSECONDS args A...
 *     cublasSgemm FILE:LINE m M n N k K batch B math fp32|tf32 us MICROSECONDS args A B C
 *     cudaMemcpy|cudaMemcpyAsync|cudaMemset - bytes N kind h2d|d2h|d2d|dev     (cudaMemsetAsync logs as cudaMemset)
 *     mark LABEL           (EMU_MARK(label) in train_golf.cu: where a phase of the training step begins)
 *   an argument A is p<id>+<offset>/<bytes> (a device pointer: allocation id, byte offset, the allocation's bytes),
 *   p0 (NULL), h (a pointer outside the device allocations), i<value> (an integer), f<value> (a float), s<bytes>
 *   (anything else). Allocation ids count the cudaMallocs of the process from 1. GOLF_EMU_EXIT_AT=LABEL ends the
 *   process (exit status 0) at the first mark LABEL: a run that logs one training step and stops.
 *   GOLF_EMU_LOG_ONLY=1: launches and GEMMs are checked and logged but not run (device memory keeps its values): the
 *   launch log of a big config in seconds, for dev/predict.py; what the run computes is then meaningless.
 *   GOLF_EMU_BLAS_THREADS (default 1): OpenBLAS's threads for the GEMMs (its spinning threads would take the cores).
 *
 * Contents
 *   1. keywords and built-in variables     2. fp16 / bf16        3. faults and allocations
 *   4. fibers                               5. the block scheduler, barriers, warp collectives (5b: tensor cores)
 *   6. launches                             7. atomics and math   8. runtime API: memory, streams, device (8b: capture, graphs)
 *   9. cuBLAS, 9b. cuBLASLt                 10. NCCL
 */
#ifndef GOLF_CUDA_CPU_H
#define GOLF_CUDA_CPU_H
#define GOLF_CPU 1

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>
#include <utility>
#include <type_traits>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef GOLF_EMU_CBLAS
#include <cblas.h>
#endif
#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif

// ----------------------------------------------------------------------------------------------------
// 1. keywords and built-in variables

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 u) : x(u.x), y(u.y), z(u.z) {}
};
inline thread_local uint3 threadIdx, blockIdx;   // the running fiber's (set at every switch), the running block's
inline thread_local dim3 blockDim, gridDim;
static const int warpSize = 32;

// ----------------------------------------------------------------------------------------------------
// 2. fp16 / bf16: storage types and round-to-nearest-even conversions

struct __half { uint16_t x; };
struct __nv_bfloat16 { uint16_t x; };
static inline uint32_t golf_f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float golf_u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// float -> binary16, nearest even (subnormals, overflow to inf, NaN kept quiet)
static inline __half __float2half_rn(float f) {
    uint32_t u = golf_f2u(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    __half h;
    if (a >= 0x7f800000u) { h.x = (uint16_t)(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u)); return h; }
    if (a >= 0x477ff000u) { h.x = (uint16_t)(sign | 0x7c00u); return h; }   // rounds to >= 65520: inf
    if (a < 0x38800000u) {   // below 2^-14: a subnormal half, value = m * 2^-24
        float r = nearbyintf(golf_u2f(a) * 16777216.0f);   // exact scaling; nearbyint rounds to nearest even
        h.x = (uint16_t)(sign | (uint32_t)r);
        return h;
    }
    uint32_t e = (a >> 23) - 112, m = a & 0x7fffffu, out = (e << 10) | (m >> 13), rest = m & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (out & 1u))) out++;
    h.x = (uint16_t)(sign | out);
    return h;
}
static inline float __half2float(__half h) {
    uint32_t sign = (uint32_t)(h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu;
    if (e == 0) return golf_u2f(sign) + (sign ? -1.f : 1.f) * (float)m * 5.9604644775390625e-8f;   // m * 2^-24
    if (e == 31) return golf_u2f(sign | 0x7f800000u | (m << 13));
    return golf_u2f(sign | ((e + 112) << 23) | (m << 13));
}
static inline __half __float2half(float f) { return __float2half_rn(f); }
// float -> bfloat16, nearest even (NaN kept quiet)
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = golf_f2u(f);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) { b.x = (uint16_t)((u >> 16) | 0x40u); return b; }
    u += 0x7fffu + ((u >> 16) & 1u);
    b.x = (uint16_t)(u >> 16);
    return b;
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline float __bfloat162float(__nv_bfloat16 b) { return golf_u2f((uint32_t)b.x << 16); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 b; b.x = u; return b; }

// ----------------------------------------------------------------------------------------------------
// 3. faults and allocations

typedef enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidConfiguration = 9,
               cudaErrorInsufficientDriver = 35, cudaErrorInvalidDevice = 101 } cudaError_t;
typedef cudaError_t cudaError;

namespace golf_emu {

struct Launch;   // the running launch (section 6)
inline thread_local const Launch *cur_launch = nullptr;
void fault(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
inline thread_local char last_error[512];   // what cudaGetErrorString / ncclGetErrorString say of the last failed call
inline int &in_step(void) { static int open = 0; return open; }   // 1 between the marks step and step_end (EMU_MARK)

struct Heap {
    std::mutex mu;
    std::map<uintptr_t, size_t> blocks;   // base -> bytes of every live device allocation
    std::map<uintptr_t, int> ids;         // base -> allocation id (1, 2, ... in cudaMalloc order), for the launch log
    std::map<uintptr_t, size_t> pinned;   // base -> bytes of every cudaMallocHost allocation (copies a capture may record)
    int next_id = 0;
    size_t in_use = 0, peak = 0;
};
Heap &heap();
// find: the allocation holding [p, p + n), or 0 (then *why says what is wrong)
int device_range(const void *p, size_t n, char *why, size_t whylen);
int overlaps_device(const void *p, size_t n);

}  // namespace golf_emu

// ----------------------------------------------------------------------------------------------------
// 4. fibers: a stack and a saved stack pointer each; golf_emu_switch saves the callee-saved registers on the
//    current stack, stores its stack pointer in *from and continues on `to` (x86-64 System V); other targets use
//    ucontext.

namespace golf_emu {

struct Fiber {
    char *stack = nullptr;   // lowest usable byte (a guard page lies below)
    size_t size = 0;
#if defined(__x86_64__)
    void *sp = nullptr;
#else
    ucontext_t uc;
#endif
    void *asan_fake = nullptr;
};

enum { T_UNSTARTED, T_RUNNING, T_READY, T_BARRIER, T_WARP, T_DONE };
enum { C_SHFL, C_SHFL_XOR, C_SHFL_UP, C_SHFL_DOWN, C_BALLOT, C_ANY, C_ALL, C_SYNCWARP, C_MMA, C_LDMATRIX };   // the last two: section 5b

struct LaneOp {              // one lane's pending warp collective
    int op, arg, width;
    unsigned mask;
    uint64_t value, result;
};

struct CpCopy {               // one cp.async of 16 bytes in flight: lands in *dst at the cp_async_wait covering its group
    void *dst;
    unsigned char bytes[16];   // the source, read at issue
    int group;                 // the thread's commit-group index it belongs to (the open group: not committed yet)
};

struct ThreadState {         // what the scheduler touches for every thread (16 bytes; the rest is in Block's side arrays)
    int state;
    Fiber *fiber;            // the fiber it runs on (after it started)
};
struct CpState {
    std::vector<CpCopy> cp;  // its cp.async copies in flight, in issue order
    int groups = 0;          // cp.async groups it has committed
};

struct Block {               // the scheduler of the block an OS thread is running
    int nthreads = 0, ndone = 0, nbarrier = 0, cursor = 0;
    std::vector<ThreadState> th;
    std::vector<LaneOp> lane;  // per thread: its pending warp collective
    std::vector<CpState> cp;   // per thread: its cp.async state (reset only after a block that used cp.async)
    int cp_used = 0;
    std::vector<int> order;  // start and resume order
    std::vector<int> warp_order, warp_pos;   // per warp: its threads in that order (32 slots), the next slot to look at
    std::vector<int> warp_fill;              // make_order's scratch
    int order_n = -1;                        // the block size order and warp_order were made for (fixed orders)
    int forward = 0;                         // order is 0, 1, 2, ...: a warp's order is its lane order
    std::vector<unsigned> warp_arrived;   // per warp: lanes waiting in a collective
    std::vector<unsigned> warp_exited;    // per warp: lanes that have exited
    std::vector<unsigned> warp_ready;     // per warp: lanes released from a wait, not yet resumed
    std::vector<Fiber *> pool, free_fibers;
    Fiber sched;             // the OS thread's own context
    int cur = -1;            // linear index of the running thread
    Fiber *cur_fiber = nullptr;
    uint64_t rng = 0;
    void *sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
};
inline thread_local Block *blk = nullptr;

}  // namespace golf_emu

// ----------------------------------------------------------------------------------------------------
// 5. barriers and warp collectives (implemented in section 5 of the implementation part)

void __syncthreads(void);
namespace golf_emu { uint64_t collective(int op, unsigned mask, uint64_t value, int arg, int width); }

template <class T> static inline uint64_t golf_bits(T v) { static_assert(sizeof(T) <= 8, "8 bytes at most"); uint64_t u = 0; memcpy(&u, &v, sizeof(T)); return u; }
template <class T> static inline T golf_unbits(uint64_t u) { T v; memcpy(&v, &u, sizeof(T)); return v; }
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) { return golf_unbits<T>(golf_emu::collective(golf_emu::C_SHFL, mask, golf_bits(v), src, width)); }
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) { return golf_unbits<T>(golf_emu::collective(golf_emu::C_SHFL_XOR, mask, golf_bits(v), lm, width)); }
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) { return golf_unbits<T>(golf_emu::collective(golf_emu::C_SHFL_UP, mask, golf_bits(v), (int)d, width)); }
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) { return golf_unbits<T>(golf_emu::collective(golf_emu::C_SHFL_DOWN, mask, golf_bits(v), (int)d, width)); }
static inline unsigned __ballot_sync(unsigned mask, int p) { return (unsigned)golf_emu::collective(golf_emu::C_BALLOT, mask, p != 0, 0, 32); }
static inline int __any_sync(unsigned mask, int p) { return (int)golf_emu::collective(golf_emu::C_ANY, mask, p != 0, 0, 32); }
static inline int __all_sync(unsigned mask, int p) { return (int)golf_emu::collective(golf_emu::C_ALL, mask, p != 0, 0, 32); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { golf_emu::collective(golf_emu::C_SYNCWARP, mask, 0, 0, 32); }
unsigned __activemask(void);

// ----------------------------------------------------------------------------------------------------
// 6. launches: KERNEL_LAUNCH(kernel, grid, block, smem, args...) converts the arguments to the kernel's
//    parameter types once (as a CUDA launch copies them), then runs every block.

namespace golf_emu {
struct Launch {
    const char *name, *file;
    int line;
    dim3 grid, block;
    size_t smem;
    const void *func;
    void (*threads)(const void *);       // run_threads for this kernel and args (section 5): the block's threads on the running fiber
    const void *args;
    std::string argtext;                 // the arguments as the launch log writes them (when GOLF_EMU_LOG is set)
};
void run(Launch &L);
FILE *launch_log(void);
// stream capture (section 8b): while the default stream (KERNEL_LAUNCH's) is captured, a launch is recorded, not run
int capture_default(void);
void record(std::function<void()> node);
inline int log_only(void) { static int on = getenv("GOLF_EMU_LOG_ONLY") && atoi(getenv("GOLF_EMU_LOG_ONLY")) != 0; return on; }
// arg_text: one kernel argument as the launch log writes it (the contract at the top)
std::string ptr_text(const void *p);
template <class T> std::string arg_text(const T &v) {
    char b[64];
    if constexpr (std::is_pointer<T>::value) return ptr_text((const void *)v);
    else if constexpr (std::is_integral<T>::value) snprintf(b, sizeof(b), "i%lld", (long long)v);
    else if constexpr (std::is_floating_point<T>::value) snprintf(b, sizeof(b), "f%.9g", (double)v);
    else snprintf(b, sizeof(b), "s%zu", sizeof(T));
    return b;
}
template <class F> void run_threads(F &&body);
// Bound: a launch's converted arguments; K, the kernel, is a template argument so that run_threads calls it directly
template <auto K, class... P> struct Bound {
    std::tuple<typename std::decay<P>::type...> a;
    static void threads(const void *self) { const Bound *b = (const Bound *)self; run_threads([b] { std::apply(K, b->a); }); }
};
template <auto K, class... P, class... A>
void launch(const char *name, const char *file, int line, dim3 grid, dim3 block, size_t smem, void (*k)(P...), A &&...a) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    Bound<K, P...> b{std::tuple<typename std::decay<P>::type...>(std::forward<A>(a)...)};
    Launch L{name, file, line, grid, block, smem, (const void *)k, &Bound<K, P...>::threads, &b, std::string()};
    if (launch_log()) std::apply([&L](const auto &...x) { ((L.argtext += " " + arg_text(x)), ...); }, b.a);
    if (capture_default()) {   // recorded with its converted arguments (by value); run at every cudaGraphLaunch
        auto keep = std::make_shared<Bound<K, P...>>(b);
        record([keep, L]() mutable { L.args = keep.get(); run(L); });
        return;
    }
    run(L);
}
}  // namespace golf_emu
#define KERNEL_LAUNCH(kernel, grid, block, smem, ...) golf_emu::launch<kernel>(#kernel, __FILE__, __LINE__, (grid), (block), (smem), kernel, __VA_ARGS__)
namespace golf_emu { void mark(const char *label); }
#define EMU_MARK(label) golf_emu::mark(label)

// ----------------------------------------------------------------------------------------------------
// 7. atomics (real ones: blocks run on several OS threads) and device math

template <class T> static inline T golf_atomic_float_add(T *p, T v) {
    typedef typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type U;
    U old = __atomic_load_n((U *)p, __ATOMIC_RELAXED), nw;
    do { T f; memcpy(&f, &old, sizeof(T)); f += v; memcpy(&nw, &f, sizeof(T)); }
    while (!__atomic_compare_exchange_n((U *)p, &old, nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    T r; memcpy(&r, &old, sizeof(T)); return r;
}
static inline float atomicAdd(float *p, float v) { return golf_atomic_float_add(p, v); }
static inline double atomicAdd(double *p, double v) { return golf_atomic_float_add(p, v); }
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline int atomicMax(int *p, int v) { int o = __atomic_load_n(p, __ATOMIC_RELAXED); while (o < v && !__atomic_compare_exchange_n(p, &o, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {} return o; }
static inline int atomicMin(int *p, int v) { int o = __atomic_load_n(p, __ATOMIC_RELAXED); while (o > v && !__atomic_compare_exchange_n(p, &o, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {} return o; }
static inline int atomicExch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
static inline int atomicCAS(int *p, int cmp, int v) { __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); return cmp; }
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
template <class T> static inline T __ldg(const T *p) { return *p; }

// ----------------------------------------------------------------------------------------------------
// 8. runtime API

enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
typedef struct golf_stream *cudaStream_t;
typedef struct golf_event { double ms; } *cudaEvent_t;
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, sharedMemPerMultiprocessor;
    int regsPerBlock, warpSize, maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3], multiProcessorCount, major, minor;
    int maxThreadsPerMultiProcessor, clockRate, memoryClockRate, memoryBusWidth, l2CacheSize;
};
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaMalloc(void **p, size_t n);
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
template <class T> static inline cudaError_t cudaMallocHost(T **p, size_t n) { return cudaMallocHost((void **)p, n); }
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaStreamCreate(cudaStream_t *s);
enum { cudaStreamDefault = 0, cudaStreamNonBlocking = 1 };
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaFuncSetAttribute(const void *f, cudaFuncAttribute a, int v);
template <class... P> static inline cudaError_t cudaFuncSetAttribute(void (*f)(P...), cudaFuncAttribute a, int v) { return cudaFuncSetAttribute((const void *)f, a, v); }

// 8b. stream capture and graphs (section 8b of the implementation part). Stream 0 in a runtime call is the
// per-thread default stream (train_golf is built with nvcc --default-stream per-thread), the stream KERNEL_LAUNCH
// uses; inside a library (cuBLAS's handle stream, cublasLtMatmul's and NCCL's argument) 0 is the legacy stream.
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1, cudaStreamCaptureStatusInvalidated = 2 };
struct golf_graph { std::vector<std::function<void()>> nodes; };        // a captured sequence, in issue order
struct golf_graph_exec { std::vector<std::function<void()>> nodes; };   // its instantiation (a copy, as CUDA's)
typedef golf_graph *cudaGraph_t;
typedef golf_graph_exec *cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphDestroy(cudaGraph_t g);

// ----------------------------------------------------------------------------------------------------
// 9. cuBLAS

typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_ALLOC_FAILED = 3, CUBLAS_STATUS_INVALID_VALUE = 7,
               CUBLAS_STATUS_EXECUTION_FAILED = 13 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TENSOR_OP_MATH = 1, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef struct golf_cublas { cublasMath_t math; cudaStream_t stream; void *workspace; size_t workspace_bytes; } *cublasHandle_t;
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *workspace, size_t bytes);
// cublasSgemm and cublasSgemmStridedBatched: macros over golf_cublasSgemm* (section 9 below), which add the call site

// ----------------------------------------------------------------------------------------------------
// 10. NCCL

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
typedef enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3, ncclInvalidArgument = 4,
               ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7 } ncclResult_t;
typedef enum { ncclInt8 = 0, ncclChar = 0, ncclUint8 = 1, ncclInt32 = 2, ncclInt = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
               ncclFloat16 = 6, ncclHalf = 6, ncclFloat32 = 7, ncclFloat = 7, ncclFloat64 = 8, ncclDouble = 8, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;
typedef struct golf_nccl *ncclComm_t;
const char *ncclGetErrorString(ncclResult_t r);
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t c);
ncclResult_t ncclCommAbort(ncclComm_t c);
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *e);
ncclResult_t ncclCommCount(ncclComm_t c, int *n);
ncclResult_t ncclCommUserRank(ncclComm_t c, int *r);
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, cudaStream_t s);
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t, int root, ncclComm_t c, cudaStream_t s);
ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, ncclDataType_t t, ncclComm_t c, cudaStream_t s);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);

// ====================================================================================================
// The implementation. This header is meant for one translation unit (train_golf.cu, or a test that includes it):
// the fiber switch is a global assembler symbol.

namespace golf_emu {

// --- 3. faults and allocations ------------------------------------------------------------------------

inline const char *env_or(const char *name, const char *d) { const char *v = getenv(name); return v && *v ? v : d; }

[[noreturn]] inline void fault(const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "golf_emu: fault");
    const Launch *L = cur_launch;
    if (L) fprintf(stderr, " in kernel %s launched at %s:%d", L->name, L->file, L->line);
    if (L && blk && blk->cur >= 0)
        fprintf(stderr, " (block (%u,%u,%u), thread (%u,%u,%u))", blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    fprintf(stderr, ": ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    _exit(1);
}

inline Heap &heap() { static Heap h; return h; }

inline int device_range(const void *p, size_t n, char *why, size_t whylen) {
    Heap &h = heap();
    std::lock_guard<std::mutex> g(h.mu);
    uintptr_t a = (uintptr_t)p;
    auto it = h.blocks.upper_bound(a);
    if (it != h.blocks.begin()) {
        --it;
        if (a >= it->first && a - it->first <= it->second && n <= it->second - (a - it->first)) return 1;
        if (a >= it->first && a < it->first + it->second) {
            snprintf(why, whylen, "%p + %zu bytes runs past the end of the device allocation %p of %zu bytes by %zu bytes", p, n,
                     (void *)it->first, it->second, (size_t)(a - it->first) + n - it->second);
            return 0;
        }
    }
    snprintf(why, whylen, "%p (%zu bytes) is not inside any device allocation (cudaMalloc)", p, n);
    return 0;
}

inline int overlaps_device(const void *p, size_t n) {
    Heap &h = heap();
    std::lock_guard<std::mutex> g(h.mu);
    uintptr_t a = (uintptr_t)p;
    auto it = h.blocks.upper_bound(a + (n ? n - 1 : 0));
    if (it == h.blocks.begin()) return 0;
    --it;
    return it->first + it->second > a;
}

// --- 4. fibers ----------------------------------------------------------------------------------------

#if defined(__x86_64__)
extern "C" void golf_emu_switch(void **from_sp, void *to_sp);
asm(".text\n"
    ".globl golf_emu_switch\n"
    ".type golf_emu_switch,@function\n"
    "golf_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size golf_emu_switch,.-golf_emu_switch\n");
#endif

void fiber_main(void);

// switch_to: suspend `from` (the caller's context) and continue `to`
inline void switch_to(Fiber *from, Fiber *to) {
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_start_switch_fiber(&from->asan_fake, to->stack ? to->stack : (char *)blk->sched_stack_bottom,
                                   to->stack ? to->size : blk->sched_stack_size);
#endif
#if defined(__x86_64__)
    golf_emu_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(from->asan_fake, nullptr, nullptr);
#endif
}

// new_fiber: a stack of GOLF_EMU_STACK_KB KiB (default 64; 512 under ASan) above a guard page, starting in fiber_main
inline Fiber *new_fiber(void) {
#ifdef __SANITIZE_ADDRESS__
    static const size_t dflt_kb = 512;
#else
    static const size_t dflt_kb = 64;
#endif
    static const size_t kb = (size_t)atol(env_or("GOLF_EMU_STACK_KB", "0")) > 0 ? (size_t)atol(env_or("GOLF_EMU_STACK_KB", "0")) : dflt_kb;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), size = (kb * 1024 + page - 1) / page * page;
    char *m = (char *)mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fault("cannot map a fiber stack of %zu KiB: %s", kb, strerror(errno));
    mprotect(m, page, PROT_NONE);   // overflowing the stack hits this page (SIGSEGV) instead of another fiber's stack
    Fiber *f = new Fiber;
    f->stack = m + page;
    f->size = size;
#if defined(__x86_64__)
    // stacks start at different offsets within a page (a multiple of 64 bytes): tops 4 KiB apart would all fall
    // into the same L1 cache set
    static thread_local unsigned color = 0;
    size_t shift = (size_t)(color++ * 7 % 64) * 64;
    void **top = (void **)(f->stack + size - shift);   // 16-byte aligned
    *--top = nullptr;                          // fiber_main's return address (it never returns)
    *--top = (void *)&fiber_main;              // where golf_emu_switch's ret goes
    for (int i = 0; i < 6; i++) *--top = nullptr;   // rbp rbx r12 r13 r14 r15
    f->sp = top;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = size;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, (void (*)(void))fiber_main, 0);
#endif
    return f;
}

// --- 5. the block scheduler, barriers, warp collectives -----------------------------------------------

inline const char *op_name(int op) {
    static const char *n[] = {"__shfl_sync", "__shfl_xor_sync", "__shfl_up_sync", "__shfl_down_sync", "__ballot_sync", "__any_sync",
                              "__all_sync", "__syncwarp", "mma.sync", "ldmatrix"};
    return n[op];
}

inline void set_thread_index(int t) {
    blk->cur = t;
    if (blockDim.y == 1 && blockDim.z == 1) { threadIdx.x = (unsigned)t; threadIdx.y = threadIdx.z = 0; return; }
    threadIdx.x = (unsigned)t % blockDim.x;
    threadIdx.y = (unsigned)t / blockDim.x % blockDim.y;
    threadIdx.z = (unsigned)t / (blockDim.x * blockDim.y);
}

// a thread that exits while lanes of its warp wait for it in a collective
inline void check_exit(Block *b, int t) {
    int w = t / 32;
    if (!b->warp_arrived[w]) return;
    for (int k = 0; k < 32 && 32 * w + k < b->nthreads; k++) {
        const ThreadState &o = b->th[32 * w + k];
        const LaneOp &ol = b->lane[32 * w + k];
        if (o.state == T_WARP && (ol.mask >> (t % 32) & 1u))
            fault("lane %d exited while lane %d waits for it in %s (mask 0x%08x)", t % 32, k, op_name(ol.op), ol.mask);
    }
}

// run_threads: start the block's unstarted threads in order, one after another on the running fiber (self), each
// running the kernel (body) to its end, until one waits (then the scheduler starts the next ones on another fiber
// and this loop goes on when that thread is resumed and ends) or none is left. Instantiated per kernel
// (Bound::threads), so the kernel is a direct call the compiler may inline.
template <class F> inline void run_threads(F &&body) {
    Block *b = blk;
    Fiber *self = b->cur_fiber;
    while (b->cursor < b->nthreads) {
        int t = b->order[b->cursor++];
        b->th[t].state = T_RUNNING;
        b->th[t].fiber = self;
        set_thread_index(t);
        body();
        b = blk;
        b->th[t].state = T_DONE;
        b->ndone++;
        if (b->cp_used && !b->cp[t].cp.empty())
            fault("thread exits with %zu cp.async copies it never waited for (cp_async_commit + cp_async_wait): their data is never read",
                  b->cp[t].cp.size());
        b->warp_exited[t / 32] |= 1u << (t % 32);
        check_exit(b, t);
    }
}

// fiber_main: run the launch's threads (run_threads) until none is left, then go back to the pool
inline void fiber_main(void) {
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(nullptr, (const void **)&blk->sched_stack_bottom, &blk->sched_stack_size);
#endif
    for (;;) {
        Fiber *self = blk->cur_fiber;
        cur_launch->threads(cur_launch->args);
        Block *b = blk;
        b->cur = -1;
        b->free_fibers.push_back(self);
        switch_to(self, &b->sched);
    }
}

// next_fiber: where a thread that waits goes: a ready lane of the same warp (in the block's order), else a fiber that
// starts the next unstarted thread, else the scheduler. A waiting lane hands over directly, so a warp collective
// costs one switch per lane, and a warp runs through its collectives on its own 32 stacks (they stay in cache).
inline Fiber *next_fiber(Block *b, int w) {
    if (w >= 0 && b->warp_ready[w]) {
        unsigned ready = b->warp_ready[w];
        int n = b->nthreads, start = b->warp_pos[w];
        if (b->forward) {   // the warp's lanes in lane order: the first ready one from where the last pick was, by a bit scan
            int p = (__builtin_ctz(start ? ready >> start | ready << (32 - start) : ready) + start) & 31, t = 32 * w + p;
            b->warp_pos[w] = (p + 1) & 31;
            b->warp_ready[w] &= ~(1u << p);
            b->th[t].state = T_RUNNING;
            return b->th[t].fiber;
        }
        for (int i = 0; i < 32; i++) {   // the warp's lanes in the block's order, from where the last pick was
            int p = (start + i) & 31, t = b->warp_order[(size_t)32 * w + p];
            if (t < n && (ready >> (t % 32) & 1u)) {
                b->warp_pos[w] = (p + 1) & 31;
                b->warp_ready[w] &= ~(1u << (t % 32));
                b->th[t].state = T_RUNNING;
                return b->th[t].fiber;
            }
        }
    }
    if (b->cursor < b->nthreads) {
        if (b->free_fibers.empty()) { b->pool.push_back(new_fiber()); b->free_fibers.push_back(b->pool.back()); }
        b->cur_fiber = b->free_fibers.back();
        b->free_fibers.pop_back();
        return b->cur_fiber;
    }
    return &b->sched;
}

// suspend the running thread (its state already set) until it is resumed
inline void suspend(int w) {
    Block *b = blk;
    int t = b->cur;
    switch_to(b->th[t].fiber, next_fiber(b, w));
    set_thread_index(t);   // blk is this OS thread's, unchanged
    b->th[t].state = T_RUNNING;
}

inline uint64_t next_rand(uint64_t *s) { uint64_t z = (*s += 0x9E3779B97F4A7C15ull); z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; z = (z ^ (z >> 27)) * 0x94D049BB133111EBull; return z ^ (z >> 31); }

struct Order { int mode; uint64_t seed; };   // mode 0 forward, 1 reverse, 2 random
inline Order order_setting(void) {
    static Order o = [] {
        Order r{0, 0};
        const char *v = env_or("GOLF_EMU_ORDER", "forward");
        if (strcmp(v, "forward") == 0) r.mode = 0;
        else if (strcmp(v, "reverse") == 0) r.mode = 1;
        else if (strncmp(v, "random:", 7) == 0 && v[7]) { char *e; r.mode = 2; r.seed = strtoull(v + 7, &e, 10); if (*e) r.mode = -1; }
        else r.mode = -1;
        if (r.mode < 0) { fprintf(stderr, "golf_emu: GOLF_EMU_ORDER='%s': expected forward, reverse or random:SEED\n", v); exit(2); }
        return r;
    }();
    return o;
}

inline void make_order(Block *b) {
    Order o = order_setting();
    int n = b->nthreads;
    b->forward = o.mode == 0;
    if (o.mode != 2 && b->order_n == n) { for (int w = 0; w < (n + 31) / 32; w++) b->warp_pos[w] = 0; return; }   // as last block
    b->order_n = o.mode != 2 ? n : -1;
    for (int i = 0; i < n; i++) b->order[i] = o.mode == 1 ? n - 1 - i : i;
    if (o.mode == 2)
        for (int i = n - 1; i > 0; i--) { int j = (int)(next_rand(&b->rng) % (uint64_t)(i + 1)); std::swap(b->order[i], b->order[j]); }
    int nw = (n + 31) / 32;
    std::vector<int> &fill = b->warp_fill;
    fill.assign((size_t)nw, 0);
    for (int w = 0; w < nw; w++) b->warp_pos[w] = 0;
    for (int i = 0; i < (int)b->warp_order.size(); i++) b->warp_order[i] = n;   // n: an empty slot (a partial last warp)
    for (int i = 0; i < n; i++) { int t = b->order[i], w = t / 32; b->warp_order[(size_t)32 * w + fill[w]++] = t; }
}

[[noreturn]] inline void stuck(Block *b) {
    int at_barrier = -1, exited = -1;
    for (int i = 0; i < b->nthreads; i++) {
        if (b->th[i].state == T_BARRIER && at_barrier < 0) at_barrier = i;
        if (b->th[i].state == T_DONE && exited < 0) exited = i;
    }
    for (int i = 0; i < b->nthreads; i++)
        if (b->th[i].state == T_WARP) {
            const LaneOp &o = b->lane[i];
            int w = i / 32, missing = -1;
            for (int k = 0; k < 32; k++)
                if ((o.mask >> k & 1u) && !(b->warp_arrived[w] >> k & 1u)) { missing = k; break; }
            set_thread_index(i);
            fault("no progress: lane %d waits in %s (mask 0x%08x) for lane %d, which is %s", i % 32, op_name(o.op), o.mask, missing,
                  missing >= 0 && b->th[32 * w + missing].state == T_BARRIER ? "at __syncthreads" : "waiting elsewhere");
        }
    if (at_barrier >= 0 && exited >= 0) {
        set_thread_index(at_barrier);
        fault("__syncthreads reached by %d of the block's %d threads: the other %d exited first (e.g. thread %d)", b->nbarrier, b->nthreads,
              b->ndone, exited);
    }
    fault("internal: a block with no runnable thread (%d done, %d at a barrier)", b->ndone, b->nbarrier);
}

// run_block: every thread of the current block (blockIdx, blockDim set) to its end
inline void run_block(Block *b) {
    int n = (int)(blockDim.x * blockDim.y * blockDim.z);
    if ((int)b->th.size() < n) { b->th.resize(n); b->lane.resize(n); b->cp.resize(n); b->order.resize(n); b->warp_arrived.resize((n + 31) / 32); b->warp_exited.resize((n + 31) / 32); b->warp_order.resize((size_t)32 * ((n + 31) / 32)); b->warp_pos.resize((n + 31) / 32); b->warp_ready.resize((n + 31) / 32); }
    b->nthreads = n;
    b->ndone = b->nbarrier = b->cursor = 0;
    for (int i = 0; i < n; i++) b->th[i].state = T_UNSTARTED;
    if (b->cp_used) {   // a thread's copies are all waited for when it exits: only the group counts remain
        for (auto &c : b->cp) { c.cp.clear(); c.groups = 0; }
        b->cp_used = 0;
    }
    for (int w = 0; w < (n + 31) / 32; w++) b->warp_arrived[w] = b->warp_exited[w] = b->warp_ready[w] = 0;
    make_order(b);
    while (b->ndone < n) {
        if (b->cursor < n) {   // threads left to start: on a free fiber
            if (b->free_fibers.empty()) { b->pool.push_back(new_fiber()); b->free_fibers.push_back(b->pool.back()); }
            b->cur_fiber = b->free_fibers.back();
            b->free_fibers.pop_back();
            switch_to(&b->sched, b->cur_fiber);
            continue;
        }
        int resumed = 0;
        for (int i = 0; i < n; i++) {
            int t = b->order[i];
            if (b->th[t].state != T_READY) continue;
            b->th[t].state = T_RUNNING;
            b->warp_ready[t / 32] &= ~(1u << (t % 32));
            resumed = 1;
            switch_to(&b->sched, b->th[t].fiber);
        }
        if (resumed || b->ndone == n) continue;
        if (b->nbarrier > 0 && b->nbarrier == n && b->ndone == 0) {   // everyone at the barrier: release it
            for (int i = 0; i < n; i++) { b->th[i].state = T_READY; b->warp_ready[i / 32] |= 1u << (i % 32); }
            b->nbarrier = 0;
            if (order_setting().mode == 2) make_order(b);
            continue;
        }
        stuck(b);
    }
    b->cur = -1;
}

}  // namespace golf_emu

inline void __syncthreads(void) {
    golf_emu::Block *b = golf_emu::blk;
    if (!b || b->cur < 0) golf_emu::fault("__syncthreads outside a kernel");
    b->th[b->cur].state = golf_emu::T_BARRIER;
    b->nbarrier++;
    golf_emu::suspend(-1);
}

inline unsigned __activemask(void) {
    golf_emu::Block *b = golf_emu::blk;
    if (!b || b->cur < 0) golf_emu::fault("__activemask outside a kernel");
    int w = b->cur / 32;
    unsigned m = 0;
    for (int k = 0; k < 32 && 32 * w + k < b->nthreads; k++)
        if (b->th[32 * w + k].state != golf_emu::T_DONE) m |= 1u << k;
    return m;
}

namespace golf_emu {

void tensor_op(int op, uint64_t *const frame);   // section 5b: an mma.sync or ldmatrix for the whole warp

// collective: the calling lane's part of a warp collective; returns its result once every lane of mask is there
inline uint64_t collective(int op, unsigned mask, uint64_t value, int arg, int width) {
    Block *b = blk;
    if (!b || b->cur < 0) fault("%s outside a kernel", op_name(op));
    int t = b->cur, w = t / 32, l = t % 32, present = b->nthreads - 32 * w < 32 ? b->nthreads - 32 * w : 32;
    unsigned exist = present == 32 ? 0xffffffffu : (1u << present) - 1;
    if (!(mask >> l & 1u)) fault("%s with mask 0x%08x, which leaves out the calling lane %d", op_name(op), mask, l);
    if (mask & ~exist) fault("%s with mask 0x%08x names lane %d, which is not in the block (%d threads: this warp has %d lanes)", op_name(op), mask,
                             __builtin_ctz(mask & ~exist), b->nthreads, present);
    if (width < 1 || width > 32 || (width & (width - 1))) fault("%s with width %d: not a power of two in 1..32", op_name(op), width);
    if (mask & b->warp_exited[w]) fault("%s with mask 0x%08x names lane %d, which has exited", op_name(op), mask, __builtin_ctz(mask & b->warp_exited[w]));
    ThreadState &me = b->th[t];
    LaneOp &mine = b->lane[t];
    mine.op = op; mine.mask = mask; mine.value = value; mine.arg = arg; mine.width = width;
    b->warp_arrived[w] |= 1u << l;
    if ((b->warp_arrived[w] & mask) != mask) {   // wait for the others
        me.state = T_WARP;
        suspend(w);
        return mine.result;
    }
    // the last lane to arrive: check that all agree, then give every lane its result (one pass per operation)
    ThreadState *lth = &b->th[32 * w];
    LaneOp *lane = &b->lane[32 * w];
    for (unsigned m = mask; m; m &= m - 1) {
        const LaneOp &o = lane[__builtin_ctz(m)];
        if (o.op != op || o.mask != mask)
            fault("lanes %d and %d meet in different collectives: %s (mask 0x%08x) and %s (mask 0x%08x)", l, __builtin_ctz(m), op_name(op), mask,
                  op_name(o.op), o.mask);
        lth[__builtin_ctz(m)].state = T_READY;
    }
    me.state = T_RUNNING;
    if (op <= C_SHFL_DOWN) {
        for (unsigned m = mask; m; m &= m - 1) {
            int k = __builtin_ctz(m);
            LaneOp &o = lane[k];
            int wd = o.width, base = k & ~(wd - 1), src = k;
            switch (op) {
            case C_SHFL: src = base + (o.arg & (wd - 1)); break;
            case C_SHFL_XOR: src = k ^ o.arg; if (src > base + wd - 1) src = k; break;
            case C_SHFL_UP: src = k - o.arg; if (src < base) src = k; break;
            default: src = k + o.arg; if (src > base + wd - 1) src = k; break;   // C_SHFL_DOWN
            }
            if ((unsigned)src > 31u || !(mask >> src & 1u))
                fault("lane %d's %s reads lane %d, which is not in the mask 0x%08x", k, op_name(op), src, mask);
            o.result = lane[src].value;
        }
    } else if (op == C_MMA || op == C_LDMATRIX) {   // every lane's value is a pointer to its operands and results
        uint64_t frame[32];
        for (int k = 0; k < 32; k++) frame[k] = lane[k].value;
        tensor_op(op, frame);
    } else {
        uint64_t vote = 0;
        for (unsigned m = mask; m; m &= m - 1) vote |= (uint64_t)(lane[__builtin_ctz(m)].value != 0) << __builtin_ctz(m);
        uint64_t r = op == C_BALLOT ? vote : op == C_ANY ? vote != 0 : op == C_ALL ? vote == mask : 0;
        for (unsigned m = mask; m; m &= m - 1) lane[__builtin_ctz(m)].result = r;
    }
    b->warp_ready[w] |= mask & ~(1u << l);
    b->warp_arrived[w] &= ~mask;
    return mine.result;
}

// --- 5b. tensor cores and asynchronous copies: mma.sync, ldmatrix, cp.async ----------------------------
// The PTX instructions behind train_golf.cu's wrappers (its chapter 4b), as the PTX ISA documents them:
//   "Matrix Fragments for mma.m16n8k16 with floating point type" (Warp Level Matrix Multiply-Accumulate),
//   "Warp-level matrix load instruction: ldmatrix", "Data Movement: cp.async, cp.async.commit_group,
//   cp.async.wait_group". mma and ldmatrix are .sync.aligned: a C_MMA / C_LDMATRIX collective of the full mask
//   (every lane takes part, or the collective faults as any other would), each lane's value a pointer to a frame
//   on its own stack; the last lane to arrive computes all 32 lanes' results through the frames.
//   Fragments (g = lane >> 2, t = lane % 4; a 32-bit register holds two 16-bit values, the lower index in the low
//   half): A 16x16 row: a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..2t+1], a[2] = A[g][2t+8..2t+9], a[3] = A[g+8][2t+8..2t+9];
//   B 16x8 col: b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]; C, D 16x8 fp32: c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1].
//   Accumulation: a bf16 x bf16 product is exact in fp32 (8 + 8 significant bits); D[i][j] = ((C[i][j] + p_0) + p_1)
//   ... + p_15 with p_k = A[i][k] B[k][j], each addition rounded to nearest even in fp32 (the hardware's order and
//   internal width are unspecified; train_golf.cu's tests bound the difference).

struct MmaFrame { const uint32_t *a, *b; const float *c; float *d; };
struct LdmFrame { const void *row; uint32_t *r; int n, trans; };

inline float bf16_lo(uint32_t u) { return golf_u2f(u << 16); }
inline float bf16_hi(uint32_t u) { return golf_u2f(u & 0xffff0000u); }

typedef float f4 __attribute__((vector_size(16)));   // 4 floats: one SSE / NEON register

inline void tensor_op(int op, uint64_t *const frame) {
    if (op == C_MMA) {
        float A[16][16], B[16][8], D[16][8];
        for (int l = 0; l < 32; l++) {
            const MmaFrame *f = (const MmaFrame *)(uintptr_t)frame[l];
            int g = l >> 2, t = l & 3;
            for (int h = 0; h < 2; h++) {   // h = 0: columns 2t..2t+1, 1: 2t+8..2t+9
                A[g][2 * t + 8 * h] = bf16_lo(f->a[2 * h]);     A[g][2 * t + 8 * h + 1] = bf16_hi(f->a[2 * h]);
                A[g + 8][2 * t + 8 * h] = bf16_lo(f->a[2 * h + 1]); A[g + 8][2 * t + 8 * h + 1] = bf16_hi(f->a[2 * h + 1]);
                B[2 * t + 8 * h][g] = bf16_lo(f->b[h]);         B[2 * t + 8 * h + 1][g] = bf16_hi(f->b[h]);
            }
            D[g][2 * t] = f->c[0]; D[g][2 * t + 1] = f->c[1]; D[g + 8][2 * t] = f->c[2]; D[g + 8][2 * t + 1] = f->c[3];
        }
        for (int i = 0; i < 16; i++) {   // a row's 8 columns as two 4-float vectors; each element adds k = 0..15 in order
            f4 d0, d1;
            memcpy(&d0, D[i], 16); memcpy(&d1, D[i] + 4, 16);
            for (int k = 0; k < 16; k++) {
                f4 b0, b1;
                memcpy(&b0, B[k], 16); memcpy(&b1, B[k] + 4, 16);
                d0 += A[i][k] * b0;   // exact product (8 x 8 significant bits), one rounding per addition
                d1 += A[i][k] * b1;
            }
            memcpy(D[i], &d0, 16); memcpy(D[i] + 4, &d1, 16);
        }
        for (int l = 0; l < 32; l++) {   // after every lane's C was read: d may be c
            const MmaFrame *f = (const MmaFrame *)(uintptr_t)frame[l];
            int g = l >> 2, t = l & 3;
            f->d[0] = D[g][2 * t]; f->d[1] = D[g][2 * t + 1]; f->d[2] = D[g + 8][2 * t]; f->d[3] = D[g + 8][2 * t + 1];
        }
        return;
    }
    // ldmatrix .m8n8 .xN [.trans] .b16: lanes 8i .. 8i+7 give the addresses of rows 0..7 of matrix i (16 bytes each,
    // 16-byte aligned); lane l receives r[i] = M_i[l/4][2(l%4)], M_i[l/4][2(l%4)+1], of M_i's transpose with .trans
    const LdmFrame *f0 = (const LdmFrame *)(uintptr_t)frame[0];
    int n = f0->n, trans = f0->trans;
    uint16_t M[4][8][8];
    for (int l = 0; l < 32; l++) {
        const LdmFrame *f = (const LdmFrame *)(uintptr_t)frame[l];
        if (f->n != n || f->trans != trans)
            fault("lanes 0 and %d meet in different ldmatrix forms (.x%d%s and .x%d%s)", l, n, trans ? ".trans" : "", f->n, f->trans ? ".trans" : "");
        if (l >= 8 * n) continue;
        if ((uintptr_t)f->row % 16) fault("ldmatrix: lane %d's row address %p is not 16-byte aligned", l, f->row);
        memcpy(M[l / 8][l % 8], f->row, 16);
    }
    for (int l = 0; l < 32; l++) {
        const LdmFrame *f = (const LdmFrame *)(uintptr_t)frame[l];
        int r = l >> 2, c = 2 * (l & 3);
        for (int i = 0; i < n; i++)
            f->r[i] = trans ? (uint32_t)M[i][c][r] | (uint32_t)M[i][c + 1][r] << 16 : (uint32_t)M[i][r][c] | (uint32_t)M[i][r][c + 1] << 16;
    }
}

inline void ldmatrix(uint32_t *r, const void *row, int n, int trans) {
    LdmFrame f{row, r, n, trans};
    collective(C_LDMATRIX, 0xffffffffu, (uint64_t)(uintptr_t)&f, 0, 32);
}
inline CpState &cp_thread(const char *what) {
    Block *b = blk;
    if (!b || b->cur < 0) fault("%s outside a kernel", what);
    b->cp_used = 1;
    return b->cp[b->cur];
}

}  // namespace golf_emu

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: d = A B + c for the warp's 16x16 A, 16x8 B, 16x8 c (fragments above)
static inline void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    golf_emu::MmaFrame f{a, b, c, d};
    golf_emu::collective(golf_emu::C_MMA, 0xffffffffu, (uint64_t)(uintptr_t)&f, 0, 32);
}
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 and .x2: four (two) 8x8 matrices of 16-bit values
static inline void ldmatrix_x4(uint32_t r[4], const void *smem) { golf_emu::ldmatrix(r, smem, 4, 0); }
static inline void ldmatrix_x4_trans(uint32_t r[4], const void *smem) { golf_emu::ldmatrix(r, smem, 4, 1); }
// cp.async.cg.shared.global [smem], [gmem], 16: the 16 source bytes are read now and land in shared memory only at
// the cp_async_wait that covers their group (the latest a GPU may deliver them), so reading before it reads stale data
static inline void cp_async_16(void *smem, const void *gmem) {
    golf_emu::CpState &th = golf_emu::cp_thread("cp.async");
    char why[200];
    if ((uintptr_t)smem % 16 || (uintptr_t)gmem % 16) golf_emu::fault("cp.async of 16 bytes from %p to %p: both must be 16-byte aligned", gmem, smem);
    if (!golf_emu::device_range(gmem, 16, why, sizeof(why))) golf_emu::fault("cp.async source: %s", why);
    golf_emu::CpCopy c;
    c.dst = smem;
    memcpy(c.bytes, gmem, 16);
    c.group = th.groups;
    th.cp.push_back(c);
}
// cp.async.commit_group: the thread's copies since the last commit form a group
static inline void cp_async_commit(void) { golf_emu::cp_thread("cp.async.commit_group").groups++; }
// cp.async.wait_group N: every committed group but the newest N has landed (uncommitted copies are not waited for)
template <int N> static inline void cp_async_wait(void) {
    golf_emu::CpState &th = golf_emu::cp_thread("cp.async.wait_group");
    size_t keep = 0;
    for (size_t i = 0; i < th.cp.size(); i++) {
        if (th.cp[i].group < th.groups - N) memcpy(th.cp[i].dst, th.cp[i].bytes, 16);
        else th.cp[keep++] = th.cp[i];
    }
    th.cp.resize(keep);
}

namespace golf_emu {

// --- 6. launches --------------------------------------------------------------------------------------

inline std::map<const void *, int> &optin_smem() { static std::map<const void *, int> m; return m; }
inline int emu_threads(void) {
    static int n = [] {
        long v = atol(env_or("GOLF_EMU_THREADS", "0"));
#ifdef _OPENMP
        if (v <= 0) v = omp_get_max_threads();
#endif
        return v > 0 ? (int)v : 1;
    }();
    return n;
}
inline double now_us(void) { struct timeval tv; gettimeofday(&tv, nullptr); return tv.tv_sec * 1e6 + tv.tv_usec; }

inline void run(Launch &L) {
    const unsigned long long nthreads = (unsigned long long)L.block.x * L.block.y * L.block.z;
    const char *bad = nullptr;
    char why[256];
    if (!L.grid.x || !L.grid.y || !L.grid.z || !L.block.x || !L.block.y || !L.block.z) bad = "a zero grid or block dimension";
    else if (nthreads > 1024) bad = "more than 1024 threads per block";
    else if (L.block.x > 1024 || L.block.y > 1024 || L.block.z > 64) bad = "a block dimension over (1024, 1024, 64)";
    else if (L.grid.x > 2147483647u || L.grid.y > 65535 || L.grid.z > 65535) bad = "a grid dimension over (2^31 - 1, 65535, 65535)";
    if (bad) {
        snprintf(why, sizeof(why), "grid (%u,%u,%u) x block (%u,%u,%u): %s", L.grid.x, L.grid.y, L.grid.z, L.block.x, L.block.y, L.block.z, bad);
        cur_launch = &L;
        fault("launch over the device limits: %s", why);
    }
    if (L.smem > 48 * 1024) {
        auto it = optin_smem().find(L.func);
        int allowed = it == optin_smem().end() ? 0 : it->second;
        if (L.smem > (size_t)allowed) {
            cur_launch = &L;
            fault("launch over the device limits: %zu bytes of dynamic shared memory, over 48 KiB without the opt-in "
                  "(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) allows %d)", L.smem, allowed);
        }
    }
    double t0 = now_us();
    long long nblocks = log_only() ? 0 : (long long)L.grid.x * L.grid.y * L.grid.z;
    auto one = [&](long long i) {
        if (!blk) blk = new Block;
        cur_launch = &L;
        blockDim = L.block;
        gridDim = L.grid;
        blockIdx.x = (unsigned)(i % L.grid.x);
        blockIdx.y = (unsigned)(i / L.grid.x % L.grid.y);
        blockIdx.z = (unsigned)(i / ((long long)L.grid.x * L.grid.y));
        blk->rng = (uint64_t)order_setting().seed * 0x9E3779B97F4A7C15ull + (uint64_t)i;
        run_block(blk);
        cur_launch = nullptr;
    };
    int nt = emu_threads();
    if (nt > 1 && nblocks > 1) {
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt < nblocks ? nt : (int)nblocks)
#endif
        for (long long i = 0; i < nblocks; i++) one(i);
    } else
        for (long long i = 0; i < nblocks; i++) one(i);
    if (FILE *log = launch_log())
        fprintf(log, "%s %s:%d grid %u,%u,%u block %u,%u,%u smem %zu us %.1f args%s\n", L.name, L.file, L.line, L.grid.x, L.grid.y, L.grid.z,
                L.block.x, L.block.y, L.block.z, L.smem, now_us() - t0, L.argtext.c_str());
}
inline FILE *launch_log(void) {
    static FILE *log = [] {   // line-buffered: processes appending to one log write whole lines
        const char *p = getenv("GOLF_EMU_LOG");
        FILE *f = p && *p ? fopen(p, "a") : (FILE *)nullptr;
        if (p && *p && !f) { fprintf(stderr, "golf_emu: GOLF_EMU_LOG '%s': cannot open it: %s\n", p, strerror(errno)); exit(2); }
        if (f) setvbuf(f, nullptr, _IOLBF, 0);
        return f;
    }();
    return log;
}
inline std::string ptr_text(const void *p) {
    if (!p) return "p0";
    Heap &h = heap();
    std::lock_guard<std::mutex> g(h.mu);
    uintptr_t a = (uintptr_t)p;
    auto it = h.blocks.upper_bound(a);
    if (it == h.blocks.begin()) return "h";
    --it;
    if (a >= it->first + (it->second ? it->second : 1)) return "h";
    char b[96];
    snprintf(b, sizeof(b), "p%d+%zu/%zu", h.ids[it->first], (size_t)(a - it->first), it->second);
    return b;
}
// log_copy: a copy's or set's line (kind: h2d d2h d2d, or dev for a set); host-to-host copies are not logged
inline void log_copy(const char *fn, size_t n, const char *kind) {
    if (FILE *log = launch_log()) fprintf(log, "%s - bytes %zu kind %s\n", fn, n, kind);
}
inline void log_memcpy(const char *fn, const void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    if (!launch_log()) return;
    int dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice, sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) { dd = overlaps_device(dst, n); sd = overlaps_device(src, n); }
    if (dd || sd) log_copy(fn, n, dd && sd ? "d2d" : dd ? "h2d" : "d2h");
}
// mark: the line `mark LABEL` (EMU_MARK); GOLF_EMU_EXIT_AT=LABEL exits here. The marks step and step_end open and
// close a training step (in_step).
inline void mark(const char *label) {
    if (capture_default()) {   // a captured phase: its line comes at every replay
        std::string l = label;
        record([l] { mark(l.c_str()); });
        return;
    }
    if (!strcmp(label, "step")) in_step() = 1;
    if (!strcmp(label, "step_end")) in_step() = 0;
    if (FILE *log = launch_log()) fprintf(log, "mark %s\n", label);
    const char *stop = getenv("GOLF_EMU_EXIT_AT");
    if (stop && strcmp(stop, label) == 0) {
        fflush(nullptr);
        exit(0);
    }
}

// fail: r, after keeping the message for cudaGetErrorString / ncclGetErrorString
template <class R> inline R fail(R r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return r;
}

// --- 8b. stream capture: the state (the API is at the end of section 8) ----------------------------------
// One capture at a time (CUDA allows one per stream). While it is active, every kernel launch, cudaMemsetAsync,
// cudaMemcpyAsync (device to device, or between the device and pinned host memory), cuBLAS / cuBLASLt call and NCCL
// call issued to the captured stream becomes a node of its graph: a closure over the call's arguments, copied by
// value (alpha and beta too). cudaGraphLaunch runs the nodes in order, each as the call itself would have run (its
// checks, its launch-log line). What CUDA forbids during a capture is a fault naming the call site (the macros at
// the end of this file keep it) and the capture's.

inline thread_local const char *call_file = nullptr;   // the file:line of the last runtime call made through those macros
inline thread_local int call_line = 0;
inline int call_site(const char *file, int line) { call_file = file; call_line = line; return 0; }
inline std::string call_at(void) { return call_file ? std::string(call_file) + ":" + std::to_string(call_line) : std::string("?"); }

struct Capture {
    golf_graph *graph = nullptr;   // the graph being recorded; nullptr: no capture
    cudaStream_t stream = nullptr; // the captured stream (the default stream as cudaStreamPerThread)
    std::string site;              // where cudaStreamBeginCapture was called
    int replaying = 0;             // inside cudaGraphLaunch: the nodes' calls run, whatever is being captured
};
inline Capture &capture() { static Capture c; return c; }
inline int is_default(cudaStream_t s) { return s == 0 || s == cudaStreamPerThread; }
// captured: 1 when a runtime call on stream s (0: the per-thread default stream) is to be recorded
inline int captured(cudaStream_t s) {
    Capture &c = capture();
    return c.graph && !c.replaying && (s == c.stream || (is_default(s) && is_default(c.stream)));
}
inline int capture_default(void) { return captured(cudaStreamPerThread); }
inline void record(std::function<void()> node) { capture().graph->nodes.push_back(std::move(node)); }
// lib_captured: the same for a library call on stream s, where 0 is the legacy stream: a fault while capturing
inline int lib_captured(cudaStream_t s, const char *fn, const char *site) {
    Capture &c = capture();
    if ((s == 0 || s == cudaStreamLegacy) && in_step() && !c.replaying)
        fault("%s at %s: issued to the legacy default stream during a training step (between the marks step and step_end): it is "
              "ordered with the per-thread stream only by the legacy stream's implicit synchronisation; pass cudaStreamPerThread "
              "(cuBLAS: cublasSetStream)", fn, site);
    if (!c.graph || c.replaying) return 0;
    if (s == 0 || s == cudaStreamLegacy)
        fault("%s at %s: issued to the legacy default stream while a stream capture (begun at %s) is active: pass cudaStreamPerThread "
              "(cuBLAS: cublasSetStream)", fn, site, c.site.c_str());
    return captured(s);
}
// forbidden: a fault when a capture is active (fn: the call, what: what it does that a capture cannot hold)
inline void forbidden(const char *fn, const char *what) {
    Capture &c = capture();
    if (c.graph && !c.replaying) fault("%s at %s: %s while a stream capture (begun at %s) is active", fn, call_at().c_str(), what, c.site.c_str());
}
// pinned: 1 when [p, p + n) lies inside one cudaMallocHost allocation
inline int pinned(const void *p, size_t n) {
    Heap &h = heap();
    std::lock_guard<std::mutex> g(h.mu);
    uintptr_t a = (uintptr_t)p;
    auto it = h.pinned.upper_bound(a);
    if (it == h.pinned.begin()) return 0;
    --it;
    return a - it->first <= it->second && n <= it->second - (a - it->first);
}

}  // namespace golf_emu

// --- 8. runtime API ----------------------------------------------------------------------------------

inline const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    }
    return "cudaErrorUnknown";
}
inline const char *cudaGetErrorString(cudaError_t e) {
    if (e == cudaSuccess) return "no error";
    if (golf_emu::last_error[0]) return golf_emu::last_error;
    return cudaGetErrorName(e);
}
inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }   // a bad launch is a fault (section 6), never a pending error
inline cudaError_t cudaPeekAtLastError(void) { return cudaSuccess; }

inline cudaError_t cudaMalloc(void **p, size_t n) {
    golf_emu::forbidden("cudaMalloc", "an allocation (make it before the capture)");
    if (!p) return golf_emu::fail(cudaErrorInvalidValue, "cudaMalloc: a NULL pointer to store the address");
    golf_emu::Heap &h = golf_emu::heap();
    size_t total = (size_t)80 << 30;
    {
        std::lock_guard<std::mutex> g(h.mu);
        if (n > total - h.in_use) return golf_emu::fail(cudaErrorMemoryAllocation, "out of memory: %zu bytes asked, %zu of the device's 80 GiB in use", n, h.in_use);
    }
    void *q = NULL;   // 256-byte aligned, as cudaMalloc's (cuBLASLt's default alignment)
    if (posix_memalign(&q, 256, n ? n : 1)) q = NULL;
    if (!q) return golf_emu::fail(cudaErrorMemoryAllocation, "out of memory: host allocation of %zu bytes failed", n);
    std::lock_guard<std::mutex> g(h.mu);
    h.blocks[(uintptr_t)q] = n;
    h.ids[(uintptr_t)q] = ++h.next_id;
    h.in_use += n;
    if (h.in_use > h.peak) h.peak = h.in_use;
    *p = q;
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) {
    golf_emu::forbidden("cudaFree", "a free");
    if (!p) return cudaSuccess;
    golf_emu::Heap &h = golf_emu::heap();
    std::lock_guard<std::mutex> g(h.mu);
    auto it = h.blocks.find((uintptr_t)p);
    if (it == h.blocks.end()) return golf_emu::fail(cudaErrorInvalidValue, "cudaFree(%p): not the start of a device allocation", p);
    h.in_use -= it->second;
    h.ids.erase(it->first);
    h.blocks.erase(it);
    free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void **p, size_t n) {
    golf_emu::forbidden("cudaMallocHost", "an allocation (make it before the capture)");
    *p = malloc(n ? n : 1);
    if (!*p) return golf_emu::fail(cudaErrorMemoryAllocation, "cudaMallocHost: out of memory");
    golf_emu::Heap &h = golf_emu::heap();
    std::lock_guard<std::mutex> g(h.mu);
    h.pinned[(uintptr_t)*p] = n;
    return cudaSuccess;
}
inline cudaError_t cudaFreeHost(void *p) {
    golf_emu::forbidden("cudaFreeHost", "a free");
    if (!p) return cudaSuccess;
    golf_emu::Heap &h = golf_emu::heap();
    {
        std::lock_guard<std::mutex> g(h.mu);
        if (!h.pinned.erase((uintptr_t)p)) return golf_emu::fail(cudaErrorInvalidValue, "cudaFreeHost(%p): not the start of a cudaMallocHost allocation", p);
    }
    free(p);
    return cudaSuccess;
}

// memcpy_check: dst and src on the sides kind says, each wholly inside one allocation when on the device
inline cudaError_t memcpy_check(const char *fn, void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    char why[256];
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return golf_emu::fail(cudaErrorInvalidValue, "%s: unknown cudaMemcpyKind %d", fn, (int)kind);
    int dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice, sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) { dd = golf_emu::overlaps_device(dst, n); sd = golf_emu::overlaps_device(src, n); }
    if (!n) return cudaSuccess;
    if (dd && !golf_emu::device_range(dst, n, why, sizeof(why))) return golf_emu::fail(cudaErrorInvalidValue, "%s: destination %s", fn, why);
    if (sd && !golf_emu::device_range(src, n, why, sizeof(why))) return golf_emu::fail(cudaErrorInvalidValue, "%s: source %s", fn, why);
    if (!dd && golf_emu::overlaps_device(dst, n)) return golf_emu::fail(cudaErrorInvalidValue, "%s: destination %p is device memory but the kind says host", fn, dst);
    if (!sd && golf_emu::overlaps_device(src, n)) return golf_emu::fail(cudaErrorInvalidValue, "%s: source %p is device memory but the kind says host", fn, src);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    golf_emu::forbidden("cudaMemcpy", "a synchronous copy (the host waits for the device; cudaMemcpyAsync with pinned memory)");
    cudaError_t e = memcpy_check("cudaMemcpy", dst, src, n, kind);
    if (e == cudaSuccess && n) memmove(dst, src, n);
    if (e == cudaSuccess) golf_emu::log_memcpy("cudaMemcpy", dst, src, n, kind);
    return e;
}
inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
    cudaError_t e = memcpy_check("cudaMemcpyAsync", dst, src, n, kind);
    if (e == cudaSuccess && golf_emu::captured(s)) {   // recorded: the bytes move at every replay
        int dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice, sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
        if (kind == cudaMemcpyDefault) { dd = golf_emu::overlaps_device(dst, n); sd = golf_emu::overlaps_device(src, n); }
        if (!sd && !golf_emu::pinned(src, n))
            golf_emu::forbidden("cudaMemcpyAsync", "a copy from pageable host memory (synchronous: the source must be cudaMallocHost memory)");
        if (!dd && !golf_emu::pinned(dst, n))
            golf_emu::forbidden("cudaMemcpyAsync", "a host read of device memory into pageable host memory (synchronous: the destination must be cudaMallocHost memory)");
        golf_emu::record([=] {
            if (n) memmove(dst, src, n);
            golf_emu::log_memcpy("cudaMemcpyAsync", dst, src, n, kind);
        });
        return e;
    }
    if (e == cudaSuccess && n) memmove(dst, src, n);
    if (e == cudaSuccess) golf_emu::log_memcpy("cudaMemcpyAsync", dst, src, n, kind);
    return e;
}
namespace golf_emu {
// memset_now: n bytes at p set to v now (a cudaMemsetAsync's line in the launch log says cudaMemset too)
inline cudaError_t memset_now(void *p, int v, size_t n) {
    char why[256];
    if (n && !device_range(p, n, why, sizeof(why))) return fail(cudaErrorInvalidValue, "cudaMemset: %s", why);
    if (n) memset(p, v, n);
    log_copy("cudaMemset", n, "dev");
    return cudaSuccess;
}
}  // namespace golf_emu
inline cudaError_t cudaMemset(void *p, int v, size_t n) {
    golf_emu::forbidden("cudaMemset", "a synchronous set (cudaMemsetAsync)");
    return golf_emu::memset_now(p, v, n);
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    char why[256];
    if (!golf_emu::captured(s)) return golf_emu::memset_now(p, v, n);
    if (n && !golf_emu::device_range(p, n, why, sizeof(why))) return golf_emu::fail(cudaErrorInvalidValue, "cudaMemset: %s", why);
    golf_emu::record([=] { golf_emu::memset_now(p, v, n); });
    return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    golf_emu::Heap &h = golf_emu::heap();
    std::lock_guard<std::mutex> g(h.mu);
    *total_b = (size_t)80 << 30;
    *free_b = *total_b - h.in_use;
    return cudaSuccess;
}
inline int golf_emu_devices(void) { long n = atol(golf_emu::env_or("GOLF_EMU_DEVICES", "8")); return n > 0 && n <= 64 ? (int)n : 8; }
inline thread_local int golf_emu_device = 0;
// the runtime's CUDA version (12.8) and the driver's (GOLF_EMU_DRIVER_VERSION, default the same): a driver older than
// the runtime fails the first device call with cudaErrorInsufficientDriver, as CUDA's does
inline int golf_emu_runtime_version(void) { return 12080; }
inline int golf_emu_driver_version(void) { long v = atol(golf_emu::env_or("GOLF_EMU_DRIVER_VERSION", "12080")); return v > 0 ? (int)v : 12080; }
inline cudaError_t cudaDriverGetVersion(int *v) { *v = golf_emu_driver_version(); return cudaSuccess; }
inline cudaError_t cudaRuntimeGetVersion(int *v) { *v = golf_emu_runtime_version(); return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int *n) {
    if (golf_emu_driver_version() < golf_emu_runtime_version())
        return golf_emu::fail(cudaErrorInsufficientDriver, "CUDA driver version is insufficient for CUDA runtime version");
    *n = golf_emu_devices();
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
    if (d < 0 || d >= golf_emu_devices()) return golf_emu::fail(cudaErrorInvalidDevice, "cudaSetDevice(%d): the emulation has %d devices (GOLF_EMU_DEVICES)", d, golf_emu_devices());
    golf_emu_device = d;
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int *d) { *d = golf_emu_device; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d < 0 || d >= golf_emu_devices()) return golf_emu::fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties(%d): no such device", d);
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "NVIDIA H100 80GB HBM3 (CPU emulation)");
    p->totalGlobalMem = (size_t)80 << 30;
    p->sharedMemPerBlock = 48 * 1024;
    p->sharedMemPerBlockOptin = 227 * 1024;
    p->sharedMemPerMultiprocessor = 228 * 1024;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024; p->maxThreadsDim[1] = 1024; p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647; p->maxGridSize[1] = 65535; p->maxGridSize[2] = 65535;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    p->major = 9; p->minor = 0;
    p->clockRate = 1980000; p->memoryClockRate = 2619000; p->memoryBusWidth = 5120; p->l2CacheSize = 50 * 1024 * 1024;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize(void) { golf_emu::forbidden("cudaDeviceSynchronize", "a device synchronization"); return cudaSuccess; }
inline cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
struct golf_stream { int unused; };
inline cudaError_t cudaStreamCreate(cudaStream_t *s) { *s = new golf_stream(); return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    if (flags != cudaStreamDefault && flags != cudaStreamNonBlocking) return cudaErrorInvalidValue;
    *s = new golf_stream();
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) { delete s; return cudaSuccess; }
// cudaStreamWaitEvent: everything already ran in order; an event no cudaEventCreate made is an error
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned flags) { return e && flags == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { golf_emu::forbidden("cudaStreamSynchronize", "a stream synchronization"); return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = new golf_event{0}; return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { e->ms = golf_emu::now_us() * 1e-3; return cudaSuccess; }
inline cudaError_t cudaEventQuery(cudaEvent_t e) { return e ? cudaSuccess : cudaErrorInvalidValue; }   // everything before it ran
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { golf_emu::forbidden("cudaEventSynchronize", "an event synchronization"); return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { *ms = (float)(b->ms - a->ms); return cudaSuccess; }
inline cudaError_t cudaFuncSetAttribute(const void *f, cudaFuncAttribute a, int v) {
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize) return golf_emu::fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute %d is not emulated", (int)a);
    if (v < 0 || v > 227 * 1024) return golf_emu::fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: %d bytes of dynamic shared memory: over the H100's 227 KiB", v);
    golf_emu::optin_smem()[f] = v;
    return cudaSuccess;
}

// --- 8b. stream capture and graphs: the API (the state is above section 8) ----------------------------------

namespace golf_emu {
inline std::set<const void *> &live_graphs() { static std::set<const void *> s; return s; }   // graphs and execs not destroyed
inline void replay(const std::vector<std::function<void()>> &nodes) {
    Capture &c = capture();
    int was = c.replaying;
    c.replaying = 1;
    for (const auto &f : nodes) f();
    c.replaying = was;
}
}  // namespace golf_emu
inline cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    using namespace golf_emu;
    Capture &c = capture();
    std::string at = call_at();
    if (s == cudaStreamLegacy) fault("cudaStreamBeginCapture at %s: the legacy default stream cannot be captured (cudaStreamPerThread)", at.c_str());
    if (c.graph) fault("cudaStreamBeginCapture at %s: a capture is already active (begun at %s)", at.c_str(), c.site.c_str());
    if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) fault("cudaStreamBeginCapture at %s: unknown mode %d", at.c_str(), (int)mode);
    if (mode == cudaStreamCaptureModeGlobal)
        fault("cudaStreamBeginCapture at %s: cudaStreamCaptureModeGlobal: an unsafe CUDA call from any other thread (NCCL's or an MPI "
              "transport's helper threads) during the capture invalidates it; capture in cudaStreamCaptureModeThreadLocal", at.c_str());
    c.graph = new golf_graph();
    c.stream = is_default(s) ? cudaStreamPerThread : s;
    c.site = at;
    return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    using namespace golf_emu;
    Capture &c = capture();
    std::string at = call_at();
    if (!c.graph) fault("cudaStreamEndCapture at %s: ends a capture that was never begun (cudaStreamBeginCapture)", at.c_str());
    if (!captured(s)) fault("cudaStreamEndCapture at %s: stream %p is not the one captured since %s", at.c_str(), (void *)s, c.site.c_str());
    if (!g) fault("cudaStreamEndCapture at %s: a NULL pointer to store the graph", at.c_str());
    *g = c.graph;
    live_graphs().insert(c.graph);
    c.graph = nullptr;
    c.site.clear();
    return cudaSuccess;
}
inline cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    *status = golf_emu::captured(s) ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    using namespace golf_emu;
    std::string at = call_at();
    if (!e) fault("cudaGraphInstantiate at %s: a NULL pointer to store the instantiated graph", at.c_str());
    if (!g || !live_graphs().count(g)) fault("cudaGraphInstantiate at %s: %p is not a graph from cudaStreamEndCapture (or it was destroyed)", at.c_str(), (void *)g);
    *e = new golf_graph_exec{g->nodes};
    live_graphs().insert(*e);
    return cudaSuccess;
}
// cudaGraphLaunch: the nodes run in order (issued to a captured stream: recorded as one node that runs them)
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    using namespace golf_emu;
    std::string at = call_at();
    if (!e || !live_graphs().count(e))
        fault("cudaGraphLaunch at %s: %p is not an instantiated graph (cudaGraphInstantiate), or it was destroyed", at.c_str(), (void *)e);
    if (captured(s)) {
        std::vector<std::function<void()>> nodes = e->nodes;
        record([nodes] { replay(nodes); });
        return cudaSuccess;
    }
    replay(e->nodes);
    return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    using namespace golf_emu;
    if (!e || !live_graphs().erase(e)) fault("cudaGraphExecDestroy at %s: %p is not an instantiated graph (or it was destroyed already)", call_at().c_str(), (void *)e);
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    using namespace golf_emu;
    if (!g || !live_graphs().erase(g)) fault("cudaGraphDestroy at %s: %p is not a graph (or it was destroyed already)", call_at().c_str(), (void *)g);
    delete g;
    return cudaSuccess;
}

// --- 9. cuBLAS ---------------------------------------------------------------------------------------

// OpenBLAS's own threads spin (sched_yield) for a while after every GEMM, taking the cores from the blocks' OpenMP
// threads: GEMMs run on GOLF_EMU_BLAS_THREADS threads (default 1) when the BLAS is OpenBLAS
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    if (openblas_set_num_threads) {
        long n = atol(golf_emu::env_or("GOLF_EMU_BLAS_THREADS", "1"));
        openblas_set_num_threads(n > 0 ? (int)n : 1);
    }
    *h = new golf_cublas{CUBLAS_DEFAULT_MATH, nullptr, nullptr, 0};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { if (!h) return CUBLAS_STATUS_NOT_INITIALIZED; h->math = m; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) { if (!h) return CUBLAS_STATUS_NOT_INITIALIZED; h->stream = s; return CUBLAS_STATUS_SUCCESS; }
// cublasSetWorkspace: the handle's workspace, which must lie in device memory (a capture then never makes cuBLAS allocate)
inline cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *w, size_t bytes) {
    char why[256];
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && !golf_emu::device_range(w, bytes, why, sizeof(why)))
        golf_emu::fault("cublasSetWorkspace at %s: the workspace %s", golf_emu::call_at().c_str(), why);
    h->workspace = w;
    h->workspace_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

namespace golf_emu {
// captured_workspace: a cuBLAS call recorded by a capture needs the handle's own workspace (cublasSetWorkspace);
// without one cuBLAS may allocate it inside the capture
inline void captured_workspace(cublasHandle_t h, const char *fn, const char *site) {
    if (!h->workspace)
        fault("%s at %s: recorded by a stream capture (begun at %s) on a cuBLAS handle without a workspace: cuBLAS may allocate "
              "one inside the capture (cublasSetWorkspace)", fn, site, capture().site.c_str());
}
inline float tf32(float x) {   // nearest even to 10 mantissa bits (inf and NaN kept)
    uint32_t u = golf_f2u(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    u += 0xfffu + ((u >> 13) & 1u);
    return golf_u2f(u & 0xffffe000u);
}
// operand: the float extent of a column-major rows x cols matrix with leading dimension ld must lie in device memory
inline void gemm_operand(const char *fn, const char *site, const char *what, const float *p, int rows, int cols, int ld) {
    if (rows == 0 || cols == 0) return;
    char why[256];
    size_t n = ((size_t)(cols - 1) * ld + rows) * sizeof(float);
    if (!device_range(p, n, why, sizeof(why))) fault("%s at %s: operand %s (%d x %d, ld %d): %s", fn, site, what, rows, cols, ld, why);
}
#ifndef GOLF_EMU_CBLAS
// The loops' GEMM (no CBLAS): every C(i,j) is s = op(A)(i,0) op(B)(0,j) + ... summed in float32 in ascending p from
// s = 0, one rounded multiply and one rounded add per term (never fused), then alpha s, or alpha s + beta C(i,j).
// Made fast without changing a bit: op(A) is packed in panels of MR = 2W rows, op(B) by columns, a tile of MR x
// GEMM_NR sums on vector registers of W floats (the widest the CPU has, picked at run time: a lane's arithmetic is
// the scalar one), k in slices of GEMM_KC (a partial sum is stored and reloaded exactly), and OpenMP threads
// (GOLF_EMU_THREADS) take whole panels: the bits depend on neither the width nor the thread count.
enum { GEMM_NR = 6, GEMM_KC = 256 };
// GEMM_NO_FMA: a multiply and an add stay two rounded operations (AVX-512F brings FMA, which compilers contract into)
#if defined(__clang__)
#define GEMM_NO_FMA
#define GEMM_NO_FMA_BODY _Pragma("clang fp contract(off)")
#else
#define GEMM_NO_FMA __attribute__((optimize("fp-contract=off")))
#define GEMM_NO_FMA_BODY
#endif
// gemm_tile_body: t (GEMM_NR columns of MR floats) += the kc terms of panel slice a (kc rows of MR) and of columns b
// (GEMM_NR of them, ldb apart); first: start from zero instead of t
template <int W> static inline __attribute__((always_inline)) void gemm_tile_body(int kc, const float *a, const float *b, size_t ldb, float *t, int first) {
    GEMM_NO_FMA_BODY
    typedef float V __attribute__((vector_size(W * 4)));
    V c[GEMM_NR][2];   // unrolled loops over it: it lives in registers
#pragma GCC unroll 16
    for (int j = 0; j < 2 * GEMM_NR; j++) {
        if (first) c[j / 2][j % 2] = V{};
        else memcpy(&c[j / 2][j % 2], t + (size_t)j * W, sizeof(V));
    }
    for (int p = 0; p < kc; p++) {
        V a0, a1;
        memcpy(&a0, a + (size_t)p * 2 * W, sizeof(V));
        memcpy(&a1, a + (size_t)p * 2 * W + W, sizeof(V));
#pragma GCC unroll 16
        for (int j = 0; j < GEMM_NR; j++) {
            float bj = b[(size_t)j * ldb + p];
            c[j][0] = c[j][0] + a0 * bj;   // a rounded product, then a rounded sum: GEMM_NO_FMA keeps them apart
            c[j][1] = c[j][1] + a1 * bj;
        }
    }
#pragma GCC unroll 16
    for (int j = 0; j < 2 * GEMM_NR; j++) memcpy(t + (size_t)j * W, &c[j / 2][j % 2], sizeof(V));
}
typedef void (*gemm_tile_fn)(int, const float *, const float *, size_t, float *, int);
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) GEMM_NO_FMA static void gemm_tile16(int kc, const float *a, const float *b, size_t ldb, float *t, int first) { gemm_tile_body<16>(kc, a, b, ldb, t, first); }
__attribute__((target("avx"))) GEMM_NO_FMA static void gemm_tile8(int kc, const float *a, const float *b, size_t ldb, float *t, int first) { gemm_tile_body<8>(kc, a, b, ldb, t, first); }
#endif
GEMM_NO_FMA static void gemm_tile4(int kc, const float *a, const float *b, size_t ldb, float *t, int first) { gemm_tile_body<4>(kc, a, b, ldb, t, first); }
// gemm_width: W, the floats per vector register of the tile function it returns (GOLF_EMU_GEMM_WIDTH=4|8|16 caps it)
inline int gemm_width(gemm_tile_fn *fn) {
    static int w = [] {
        int cap = atoi(env_or("GOLF_EMU_GEMM_WIDTH", "16")), v = 4;
#if defined(__x86_64__) && defined(__GNUC__)
        __builtin_cpu_init();
        if (cap >= 16 && __builtin_cpu_supports("avx512f")) v = 16;
        else if (cap >= 8 && __builtin_cpu_supports("avx")) v = 8;
#endif
        return v;
    }();
#if defined(__x86_64__) && defined(__GNUC__)
    *fn = w == 16 ? gemm_tile16 : w == 8 ? gemm_tile8 : gemm_tile4;
#else
    *fn = gemm_tile4;
#endif
    return w;
}
inline void gemm_loops(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    gemm_tile_fn tile;
    const int mr = 2 * gemm_width(&tile), np = (m + mr - 1) / mr, nb = (n + GEMM_NR - 1) / GEMM_NR;
    const size_t kk = k > 0 ? (size_t)k : 1;
    // ap: panel q, row p, lane r = op(A)(q mr + r, p) (zero past m); bp: column j, row p = op(B)(p, j) (zero past n);
    // acc: panel q, column j, lane r = the sum so far of C(q mr + r, j)
    std::vector<float> ap((size_t)np * kk * mr, 0.f), bp((size_t)nb * GEMM_NR * kk, 0.f), acc((size_t)np * nb * GEMM_NR * mr);
    for (int q = 0; q < np; q++) {
        int r1 = m - q * mr < mr ? m - q * mr : mr;
        float *dst = ap.data() + (size_t)q * kk * mr;
        const float *src = A + (size_t)q * mr * (ta ? lda : 1);
        if (ta) for (int r = 0; r < r1; r++) for (int p = 0; p < k; p++) dst[(size_t)p * mr + r] = src[p + (size_t)r * lda];
        else for (int p = 0; p < k; p++) memcpy(dst + (size_t)p * mr, src + (size_t)p * lda, (size_t)r1 * sizeof(float));
    }
    for (int j = 0; j < n; j++) {
        float *dst = bp.data() + (size_t)j * kk;
        if (tb) for (int p = 0; p < k; p++) dst[p] = B[j + (size_t)p * ldb];
        else memcpy(dst, B + (size_t)j * ldb, (size_t)k * sizeof(float));
    }
    int nt = emu_threads() < np ? emu_threads() : np;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt > 0 ? nt : 1)
#endif
    for (int q = 0; q < np; q++) {
        float *t = acc.data() + (size_t)q * nb * GEMM_NR * mr;
        if (k == 0) std::fill(t, t + (size_t)nb * GEMM_NR * mr, 0.f);
        for (int p0 = 0; p0 < k; p0 += GEMM_KC) {
            int kc = k - p0 < GEMM_KC ? k - p0 : GEMM_KC;
            for (int jb = 0; jb < nb; jb++)
                tile(kc, ap.data() + ((size_t)q * kk + p0) * mr, bp.data() + (size_t)jb * GEMM_NR * kk + p0, kk, t + (size_t)jb * GEMM_NR * mr, p0 == 0);
        }
    }
    for (int j = 0; j < n; j++)
        for (int q = 0; q < np; q++) {
            const float *s = acc.data() + ((size_t)q * nb * GEMM_NR + j) * mr;
            float *c = C + (size_t)j * ldc + (size_t)q * mr;
            int r1 = m - q * mr < mr ? m - q * mr : mr;
            if (beta == 0.f) for (int r = 0; r < r1; r++) c[r] = alpha * s[r];
            else for (int r = 0; r < r1; r++) c[r] = alpha * s[r] + beta * c[r];
        }
}
#endif
// gemm: one column-major C = alpha op(A) op(B) + beta C (cuBLAS's meaning; C is not read when beta = 0)
inline void gemm(cublasMath_t math, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc) {
    std::vector<float> ra, rb;
    if (math == CUBLAS_TF32_TENSOR_OP_MATH && k > 0) {
        size_t na = (size_t)((ta ? m : k) - 1) * lda + (ta ? k : m), nb = (size_t)((tb ? k : n) - 1) * ldb + (tb ? n : k);
        ra.assign(A, A + na); rb.assign(B, B + nb);
        for (float &x : ra) x = tf32(x);
        for (float &x : rb) x = tf32(x);
        A = ra.data(); B = rb.data();
    }
#ifdef GOLF_EMU_CBLAS
    if (m && n) cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    if (m && n) gemm_loops(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}
inline cublasStatus_t gemm_args(const char *fn, const char *site, cublasHandle_t h, int ta, int tb, int m, int n, int k, const float *A, int lda,
                                const float *B, int ldb, const float *C, int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) || m < 0 || n < 0 || k < 0 ||
        lda < (ta ? (k > 1 ? k : 1) : (m > 1 ? m : 1)) || ldb < (tb ? (n > 1 ? n : 1) : (k > 1 ? k : 1)) || ldc < (m > 1 ? m : 1)) {
        fprintf(stderr, "golf_emu: %s at %s: invalid arguments (op %d %d, m %d n %d k %d, ld %d %d %d)\n", fn, site, ta, tb, m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (k > 0) {
        gemm_operand(fn, site, "A", A, ta ? k : m, ta ? m : k, lda);
        gemm_operand(fn, site, "B", B, tb ? n : k, tb ? k : n, ldb);
    }
    gemm_operand(fn, site, "C", C, m, n, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
inline std::string site_of(const char *file, int line) { return std::string(file) + ":" + std::to_string(line); }
// log_gemm: a GEMM's line in the launch log (the contract at the top); A, B, C are the first batch entry's operands
inline void log_gemm(const char *fn, const char *site, int m, int n, int k, int batch, const char *math, const void *A, const void *B, const void *C,
                     double us) {
    if (FILE *log = launch_log())
        fprintf(log, "%s %s m %d n %d k %d batch %d math %s us %.1f args %s %s %s\n", fn, site, m, n, k, batch, math, us, ptr_text(A).c_str(),
                ptr_text(B).c_str(), ptr_text(C).c_str());
}
inline const char *math_name(cublasHandle_t h) { return h->math == CUBLAS_TF32_TENSOR_OP_MATH ? "tf32" : "fp32"; }
}  // namespace golf_emu

inline cublasStatus_t golf_cublasSgemm(const char *file, int line, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                       const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta, float *C, int ldc) {
    std::string site = golf_emu::site_of(file, line);
    cublasStatus_t s = golf_emu::gemm_args("cublasSgemm", site.c_str(), h, ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
    if (s == CUBLAS_STATUS_SUCCESS && golf_emu::lib_captured(h->stream, "cublasSgemm", site.c_str())) {   // alpha, beta read now
        golf_emu::captured_workspace(h, "cublasSgemm", site.c_str());
        float a = *alpha, b = *beta;
        golf_emu::record([=] { golf_cublasSgemm(file, line, h, ta, tb, m, n, k, &a, A, lda, B, ldb, &b, C, ldc); });
        return s;
    }
    double t0 = golf_emu::now_us();
    if (s == CUBLAS_STATUS_SUCCESS && !golf_emu::log_only()) golf_emu::gemm(h->math, ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
    if (s == CUBLAS_STATUS_SUCCESS) golf_emu::log_gemm("cublasSgemm", site.c_str(), m, n, k, 1, golf_emu::math_name(h), A, B, C, golf_emu::now_us() - t0);
    return s;
}
inline cublasStatus_t golf_cublasSgemmStridedBatched(const char *file, int line, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                     int n, int k, const float *alpha, const float *A, int lda, long long sA, const float *B, int ldb,
                                                     long long sB, const float *beta, float *C, int ldc, long long sC, int batch) {
    std::string site = golf_emu::site_of(file, line);
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = golf_emu::gemm_args("cublasSgemmStridedBatched", site.c_str(), h, ta, tb, m, n, k, A + i * sA, lda, B + i * sB, ldb, C + i * sC, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    if (golf_emu::lib_captured(h->stream, "cublasSgemmStridedBatched", site.c_str())) {
        golf_emu::captured_workspace(h, "cublasSgemmStridedBatched", site.c_str());
        float a = *alpha, b = *beta;
        golf_emu::record([=] { golf_cublasSgemmStridedBatched(file, line, h, ta, tb, m, n, k, &a, A, lda, sA, B, ldb, sB, &b, C, ldc, sC, batch); });
        return CUBLAS_STATUS_SUCCESS;
    }
    double t0 = golf_emu::now_us();
    for (int i = 0; i < batch && !golf_emu::log_only(); i++) golf_emu::gemm(h->math, ta, tb, m, n, k, *alpha, A + i * sA, lda, B + i * sB, ldb, *beta, C + i * sC, ldc);
    golf_emu::log_gemm("cublasSgemmStridedBatched", site.c_str(), m, n, k, batch, golf_emu::math_name(h), A, B, C, golf_emu::now_us() - t0);
    return CUBLAS_STATUS_SUCCESS;
}
#define cublasSgemm(...) golf_cublasSgemm(__FILE__, __LINE__, __VA_ARGS__)
#define cublasSgemmStridedBatched(...) golf_cublasSgemmStridedBatched(__FILE__, __LINE__, __VA_ARGS__)

// --- 9b. cuBLASLt: the matmul train_golf.cu's PRECISION=bf16 uses -------------------------------------
// Handles, a matmul descriptor (compute type CUBLAS_COMPUTE_32F, scale type CUDA_R_32F, TRANSA / TRANSB only),
// column-major matrix layouts (CUDA_R_16BF or CUDA_R_32F; of the layout attributes only BATCH_COUNT, an int32_t >= 1,
// and STRIDED_BATCH_OFFSET, an int64_t >= 0 in elements, are emulated: every layout of a matmul must hold the same
// batch count, D's entries must not overlap, and every entry's pointer meets the algorithm's alignments), a preference with
// MAX_WORKSPACE_BYTES and MIN_ALIGNMENT_{A,B,C,D}_BYTES (default 256, as cuBLASLt's), a heuristic that returns one
// algorithm for those alignments (a pointer less aligned at the matmul is a fault, as it can be an error on a GPU; so is,
// with an algorithm from the heuristic, any operand under 16 bytes: on Hopper the heuristic may have none for it),
// and cublasLtMatmul: D = alpha op(A) op(B) + beta C
// with A and B in bf16 (decoded exactly), the products summed in float32 by the emulator's sgemm (OpenBLAS's order,
// or the loops' ascending k), then d = alpha * acc + beta * c in float32 (C not read when beta = 0), rounded to D's
// type (nearest even for bf16). C and D: the same layout. Anything else is a fault naming the call site.

typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0, CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1, CUBLASLT_MATMUL_DESC_TRANSA = 3,
               CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7 } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8 } cublasLtMatmulPreferenceAttributes_t;
typedef enum { CUBLASLT_MATRIX_LAYOUT_TYPE = 0, CUBLASLT_MATRIX_LAYOUT_ORDER = 1, CUBLASLT_MATRIX_LAYOUT_ROWS = 2, CUBLASLT_MATRIX_LAYOUT_COLS = 3,
               CUBLASLT_MATRIX_LAYOUT_LD = 4, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6 } cublasLtMatrixLayoutAttribute_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct { cublasLtMatmulAlgo_t algo; size_t workspaceSize; cublasStatus_t state; float wavesCount; int reserved[4]; } cublasLtMatmulHeuristicResult_t;
struct golf_lt { int magic; };
struct golf_lt_desc { int magic; cublasComputeType_t compute; cudaDataType_t scale; int ta, tb; };
struct golf_lt_layout { int magic; cudaDataType_t type; uint64_t rows, cols; int64_t ld; int32_t batch; int64_t stride; };   // stride: elements
struct golf_lt_pref { int magic; uint64_t workspace; uint32_t align[4]; };   // align: A, B, C, D
typedef golf_lt *cublasLtHandle_t;
typedef golf_lt_desc *cublasLtMatmulDesc_t;
typedef golf_lt_layout *cublasLtMatrixLayout_t;
typedef golf_lt_pref *cublasLtMatmulPreference_t;

namespace golf_emu {
enum { LT_HANDLE = 0x6c74680, LT_DESC = 0x6c74640, LT_LAYOUT = 0x6c746c0, LT_PREF = 0x6c74700, LT_ALGO = 0x6c746100 };
inline const char *lt_type_name(int t) { return t == CUDA_R_32F ? "CUDA_R_32F" : t == CUDA_R_16BF ? "CUDA_R_16BF" : "unknown"; }
inline size_t lt_type_bytes(int t) { return t == CUDA_R_32F ? 4 : 2; }
// lt_check: a handle / descriptor the emulator made (magic), else a fault at the call site
template <class T> inline void lt_object(const char *fn, const char *site, const char *what, const T *p, int magic) {
    if (!p || p->magic != magic) fault("%s at %s: %s is %s", fn, site, what, p ? "not one cublasLt*Create made (or destroyed)" : "NULL");
}
// lt_operand: layout l describes `rows` x `cols` (the op's shape) in a type the call takes, its bytes lie in device memory
inline void lt_operand(const char *fn, const char *site, const char *what, const void *p, const golf_lt_layout *l, uint64_t rows, uint64_t cols,
                       int bf16_only) {
    lt_object(fn, site, what, l, LT_LAYOUT);
    if (l->rows != rows || l->cols != cols)
        fault("%s at %s: layout of %s is %llu x %llu but the op needs %llu x %llu", fn, site, what, (unsigned long long)l->rows,
              (unsigned long long)l->cols, (unsigned long long)rows, (unsigned long long)cols);
    if (l->ld < (int64_t)(l->rows > 1 ? l->rows : 1)) fault("%s at %s: layout of %s: ld %lld < rows %llu (column-major)", fn, site, what, (long long)l->ld, (unsigned long long)l->rows);
    if (bf16_only && l->type != CUDA_R_16BF) fault("%s at %s: %s is %s: only CUDA_R_16BF operands are emulated", fn, site, what, lt_type_name(l->type));
    if (rows == 0 || cols == 0) return;
    char why[256];
    size_t n = ((size_t)(cols - 1) * (size_t)l->ld + rows) * lt_type_bytes(l->type);
    if (!p) fault("%s at %s: %s is NULL", fn, site, what);
    if (!device_range(p, n, why, sizeof(why))) fault("%s at %s: operand %s (%llu x %llu, ld %lld): %s", fn, site, what, (unsigned long long)rows,
                                                     (unsigned long long)cols, (long long)l->ld, why);
}
// lt_decode: a column-major bf16 (or float) matrix, rows x cols with leading dimension ld, as floats (the same ld)
inline std::vector<float> lt_decode(const void *p, const golf_lt_layout *l) {
    size_t n = l->rows && l->cols ? (size_t)(l->cols - 1) * (size_t)l->ld + l->rows : 0;
    std::vector<float> out(n);
    if (l->type == CUDA_R_32F) memcpy(out.data(), p, n * 4);
    else for (size_t i = 0; i < n; i++) out[i] = __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    return out;
}
}  // namespace golf_emu

inline cublasStatus_t golf_ltCreate(cublasLtHandle_t *h) { *h = new golf_lt{golf_emu::LT_HANDLE}; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t golf_ltDestroy(const char *file, int line, cublasLtHandle_t h) {
    std::string site = golf_emu::site_of(file, line);
    golf_emu::lt_object("cublasLtDestroy", site.c_str(), "the handle", h, golf_emu::LT_HANDLE);
    h->magic = 0; delete h;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatmulDescCreate(const char *file, int line, cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    std::string site = golf_emu::site_of(file, line);
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F)
        golf_emu::fault("cublasLtMatmulDescCreate at %s: compute type %d, scale type %d: only CUBLAS_COMPUTE_32F with CUDA_R_32F is emulated", site.c_str(),
                        (int)compute, (int)scale);
    *d = new golf_lt_desc{golf_emu::LT_DESC, compute, scale, CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatmulDescDestroy(const char *file, int line, cublasLtMatmulDesc_t d) {
    std::string site = golf_emu::site_of(file, line);
    golf_emu::lt_object("cublasLtMatmulDescDestroy", site.c_str(), "the descriptor", d, golf_emu::LT_DESC);
    d->magic = 0; delete d;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatmulDescSetAttribute(const char *file, int line, cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf,
                                                    size_t size) {
    std::string site = golf_emu::site_of(file, line);
    golf_emu::lt_object("cublasLtMatmulDescSetAttribute", site.c_str(), "the descriptor", d, golf_emu::LT_DESC);
    if (a != CUBLASLT_MATMUL_DESC_TRANSA && a != CUBLASLT_MATMUL_DESC_TRANSB)
        golf_emu::fault("cublasLtMatmulDescSetAttribute at %s: attribute %d is not emulated (TRANSA and TRANSB are)", site.c_str(), (int)a);
    if (size != sizeof(int32_t)) golf_emu::fault("cublasLtMatmulDescSetAttribute at %s: TRANSA/TRANSB take an int32_t, got %zu bytes", site.c_str(), size);
    int32_t op;
    memcpy(&op, buf, 4);
    if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) golf_emu::fault("cublasLtMatmulDescSetAttribute at %s: operation %d is not emulated (N and T are)", site.c_str(), op);
    (a == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = op;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatrixLayoutCreate(const char *file, int line, cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols,
                                                int64_t ld) {
    std::string site = golf_emu::site_of(file, line);
    if (type != CUDA_R_16BF && type != CUDA_R_32F)
        golf_emu::fault("cublasLtMatrixLayoutCreate at %s: data type %d is not emulated (CUDA_R_16BF and CUDA_R_32F are)", site.c_str(), (int)type);
    if (ld < (int64_t)(rows > 1 ? rows : 1) || rows > INT32_MAX || cols > INT32_MAX)
        golf_emu::fault("cublasLtMatrixLayoutCreate at %s: %llu x %llu with ld %lld (column-major: ld >= rows)", site.c_str(), (unsigned long long)rows,
                        (unsigned long long)cols, (long long)ld);
    *l = new golf_lt_layout{golf_emu::LT_LAYOUT, type, rows, cols, ld, 1, 0};
    return CUBLAS_STATUS_SUCCESS;
}
// cublasLtMatrixLayoutSetAttribute: BATCH_COUNT (int32_t >= 1) and STRIDED_BATCH_OFFSET (int64_t >= 0, elements); others fault
inline cublasStatus_t golf_ltMatrixLayoutSetAttribute(const char *file, int line, cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                      const void *buf, size_t size) {
    std::string site = golf_emu::site_of(file, line);
    const char *fn = "cublasLtMatrixLayoutSetAttribute";
    golf_emu::lt_object(fn, site.c_str(), "the layout", l, golf_emu::LT_LAYOUT);
    if (!buf) golf_emu::fault("%s at %s: the value is NULL", fn, site.c_str());
    if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) {
        int32_t v;
        if (size != sizeof(v)) golf_emu::fault("%s at %s: BATCH_COUNT takes an int32_t, got %zu bytes", fn, site.c_str(), size);
        memcpy(&v, buf, sizeof(v));
        if (v < 1) golf_emu::fault("%s at %s: BATCH_COUNT %d (must be >= 1)", fn, site.c_str(), (int)v);
        l->batch = v;
    } else if (a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET) {
        int64_t v;
        if (size != sizeof(v)) golf_emu::fault("%s at %s: STRIDED_BATCH_OFFSET takes an int64_t, got %zu bytes", fn, site.c_str(), size);
        memcpy(&v, buf, sizeof(v));
        if (v < 0) golf_emu::fault("%s at %s: STRIDED_BATCH_OFFSET %lld (must be >= 0)", fn, site.c_str(), (long long)v);
        l->stride = v;
    } else
        golf_emu::fault("%s at %s: attribute %d is not emulated (BATCH_COUNT and STRIDED_BATCH_OFFSET are)", fn, site.c_str(), (int)a);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatrixLayoutDestroy(const char *file, int line, cublasLtMatrixLayout_t l) {
    std::string site = golf_emu::site_of(file, line);
    golf_emu::lt_object("cublasLtMatrixLayoutDestroy", site.c_str(), "the layout", l, golf_emu::LT_LAYOUT);
    l->magic = 0; delete l;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new golf_lt_pref{golf_emu::LT_PREF, 0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatmulPreferenceDestroy(const char *file, int line, cublasLtMatmulPreference_t p) {
    std::string site = golf_emu::site_of(file, line);
    golf_emu::lt_object("cublasLtMatmulPreferenceDestroy", site.c_str(), "the preference", p, golf_emu::LT_PREF);
    p->magic = 0; delete p;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatmulPreferenceSetAttribute(const char *file, int line, cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a,
                                                          const void *buf, size_t size) {
    std::string site = golf_emu::site_of(file, line);
    golf_emu::lt_object("cublasLtMatmulPreferenceSetAttribute", site.c_str(), "the preference", p, golf_emu::LT_PREF);
    if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES && size == sizeof(uint32_t)) {
        uint32_t v;
        memcpy(&v, buf, 4);
        if (v == 0 || (v & (v - 1))) golf_emu::fault("cublasLtMatmulPreferenceSetAttribute at %s: alignment %u is not a power of two", site.c_str(), v);
        p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || size != sizeof(uint64_t))
        golf_emu::fault("cublasLtMatmulPreferenceSetAttribute at %s: attribute %d (%zu bytes): only MAX_WORKSPACE_BYTES (a uint64_t) and "
                        "MIN_ALIGNMENT_{A,B,C,D}_BYTES (a uint32_t) are emulated", site.c_str(), (int)a, size);
    memcpy(&p->workspace, buf, 8);
    return CUBLAS_STATUS_SUCCESS;
}
// the one algorithm: its data[0] marks it, data[1..3] hold the descriptor's ops and D's type it was chosen for,
// data[4..7] the preference's alignments of A, B, C, D
inline cublasStatus_t golf_ltMatmulAlgoGetHeuristic(const char *file, int line, cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A,
                                                    cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t p,
                                                    int requested, cublasLtMatmulHeuristicResult_t *results, int *returned) {
    std::string site = golf_emu::site_of(file, line);
    const char *fn = "cublasLtMatmulAlgoGetHeuristic";
    golf_emu::lt_object(fn, site.c_str(), "the handle", h, golf_emu::LT_HANDLE);
    golf_emu::lt_object(fn, site.c_str(), "the descriptor", d, golf_emu::LT_DESC);
    golf_emu::lt_object(fn, site.c_str(), "the preference", p, golf_emu::LT_PREF);
    for (auto *l : {A, B, C, D}) golf_emu::lt_object(fn, site.c_str(), "a layout", l, golf_emu::LT_LAYOUT);
    if (requested < 1 || !results || !returned) golf_emu::fault("%s at %s: %d results requested (or NULL arrays)", fn, site.c_str(), requested);
    memset(results, 0, sizeof(*results));
    results[0].algo.data[0] = golf_emu::LT_ALGO; results[0].algo.data[1] = (uint64_t)d->ta; results[0].algo.data[2] = (uint64_t)d->tb;
    results[0].algo.data[3] = (uint64_t)D->type;
    for (int i = 0; i < 4; i++) results[0].algo.data[4 + i] = p->align[i];
    results[0].workspaceSize = 0; results[0].state = CUBLAS_STATUS_SUCCESS; results[0].wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t golf_ltMatmul(const char *file, int line, cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                                    cublasLtMatrixLayout_t Al, const void *B, cublasLtMatrixLayout_t Bl, const void *beta, const void *C,
                                    cublasLtMatrixLayout_t Cl, void *D, cublasLtMatrixLayout_t Dl, const cublasLtMatmulAlgo_t *algo, void *ws,
                                    size_t wsbytes, cudaStream_t stream) {
    std::string site = golf_emu::site_of(file, line);
    const char *fn = "cublasLtMatmul", *s = site.c_str();
    if (golf_emu::lib_captured(stream, fn, s)) {   // alpha and beta (float, CUBLAS_COMPUTE_32F) read now, the rest at every replay
        float a = 0, b = 0;
        if (alpha) memcpy(&a, alpha, 4);
        if (beta) memcpy(&b, beta, 4);
        int na = !alpha, nb = !beta;
        golf_emu::record([=] {
            golf_ltMatmul(file, line, h, d, na ? nullptr : &a, A, Al, B, Bl, nb ? nullptr : &b, C, Cl, D, Dl, algo, ws, wsbytes, stream);
        });
        return CUBLAS_STATUS_SUCCESS;
    }
    golf_emu::lt_object(fn, s, "the handle", h, golf_emu::LT_HANDLE);
    golf_emu::lt_object(fn, s, "the descriptor", d, golf_emu::LT_DESC);
    golf_emu::lt_object(fn, s, "layout D", Dl, golf_emu::LT_LAYOUT);
    golf_emu::lt_object(fn, s, "layout A", Al, golf_emu::LT_LAYOUT);
    if (!alpha || !beta) golf_emu::fault("%s at %s: alpha or beta is NULL", fn, s);
    uint64_t m = Dl->rows, n = Dl->cols, k = d->ta == CUBLAS_OP_T ? Al->rows : Al->cols;
    golf_emu::lt_object(fn, s, "layout B", Bl, golf_emu::LT_LAYOUT);
    golf_emu::lt_object(fn, s, "layout C", Cl, golf_emu::LT_LAYOUT);
    int batch = Dl->batch;
    if (Al->batch != batch || Bl->batch != batch || Cl->batch != batch)
        golf_emu::fault("%s at %s: batch counts A %d, B %d, C %d, D %d: only equal counts are emulated", fn, s, (int)Al->batch, (int)Bl->batch,
                        (int)Cl->batch, (int)batch);
    if (batch > 1 && m && n && (uint64_t)Dl->stride < (n - 1) * (uint64_t)Dl->ld + m)
        golf_emu::fault("%s at %s: D's batch entries overlap (STRIDED_BATCH_OFFSET %lld under the %llu x %llu matrix, ld %lld)", fn, s,
                        (long long)Dl->stride, (unsigned long long)m, (unsigned long long)n, (long long)Dl->ld);
    // batch entry i's operands: the base pointers plus i strides (elements of each layout's type)
    auto at = [](const void *p, const golf_lt_layout *l, int i) {
        return p ? (const void *)((const char *)p + (size_t)i * (size_t)l->stride * golf_emu::lt_type_bytes(l->type)) : p;
    };
    float fa, fb;
    memcpy(&fa, alpha, 4); memcpy(&fb, beta, 4);
    if (Cl->type != Dl->type || Cl->rows != Dl->rows || Cl->cols != Dl->cols || Cl->ld != Dl->ld || Cl->stride != Dl->stride)
        golf_emu::fault("%s at %s: C's layout (%s %llu x %llu, ld %lld, stride %lld) differs from D's (%s %llu x %llu, ld %lld, stride %lld): not emulated",
                        fn, s, golf_emu::lt_type_name(Cl->type), (unsigned long long)Cl->rows, (unsigned long long)Cl->cols, (long long)Cl->ld,
                        (long long)Cl->stride, golf_emu::lt_type_name(Dl->type), (unsigned long long)Dl->rows, (unsigned long long)Dl->cols,
                        (long long)Dl->ld, (long long)Dl->stride);
    for (int i = 0; i < batch; i++) {
        golf_emu::lt_operand(fn, s, "A", at(A, Al, i), Al, d->ta == CUBLAS_OP_T ? k : m, d->ta == CUBLAS_OP_T ? m : k, 1);
        golf_emu::lt_operand(fn, s, "B", at(B, Bl, i), Bl, d->tb == CUBLAS_OP_T ? n : k, d->tb == CUBLAS_OP_T ? k : n, 1);
        golf_emu::lt_operand(fn, s, "D", at(D, Dl, i), Dl, m, n, 0);
        if (fb != 0.f) golf_emu::lt_operand(fn, s, "C", at(C, Cl, i), Cl, m, n, 0);
    }
    if (algo && (algo->data[0] != (uint64_t)golf_emu::LT_ALGO || algo->data[1] != (uint64_t)d->ta || algo->data[2] != (uint64_t)d->tb ||
                 algo->data[3] != (uint64_t)Dl->type))
        golf_emu::fault("%s at %s: the algorithm is not one cublasLtMatmulAlgoGetHeuristic returned for this descriptor and D type", fn, s);
    for (int e = 0; e < batch; e++) {
        const void *ptr[4] = {at(A, Al, e), at(B, Bl, e), at(C, Cl, e), at(D, Dl, e)};
        for (int i = 0; i < 4; i++) {
            uintptr_t u = (uintptr_t)ptr[i];
            uint64_t al = u ? (u & (~u + 1)) : 256;   // the lowest set bit: the pointer's alignment
            if (algo && al < 16 && (i != 2 || fb != 0.f))   // a heuristic's algorithm: Hopper's tensor-core kernels move 16-byte vectors
                golf_emu::fault("%s at %s: %c (batch entry %d) is aligned to %llu bytes: cuBLASLt's tensor-core kernels need 16 "
                                "(the heuristic may return no algorithm on a GPU); keep every operand 16-byte aligned", fn, s, "ABCD"[i], e,
                                (unsigned long long)al);
            if (algo && al < algo->data[4 + i])
                golf_emu::fault("%s at %s: %c (batch entry %d) is aligned to %llu bytes, under the %llu the algorithm was chosen for "
                                "(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%c_BYTES)", fn, s, "ABCD"[i], e, (unsigned long long)al,
                                (unsigned long long)algo->data[4 + i], "ABCD"[i]);
        }
    }
    if (wsbytes) {
        char why[256];
        if (!ws || !golf_emu::device_range(ws, wsbytes, why, sizeof(why))) golf_emu::fault("%s at %s: workspace of %zu bytes: %s", fn, s, wsbytes, ws ? why : "NULL");
    }
    double t0 = golf_emu::now_us();
    if (m == 0 || n == 0 || golf_emu::log_only()) {
        golf_emu::log_gemm(fn, s, (int)m, (int)n, (int)k, batch, "bf16", A, B, D, 0.0);
        return CUBLAS_STATUS_SUCCESS;
    }
    for (int e = 0; e < batch; e++) {   // each entry as one unbatched matmul
        const void *Ce = at(C, Cl, e);
        void *De = (void *)at(D, Dl, e);
        std::vector<float> a = golf_emu::lt_decode(at(A, Al, e), Al), b = golf_emu::lt_decode(at(B, Bl, e), Bl), acc((size_t)m * n);
        golf_emu::gemm(CUBLAS_DEFAULT_MATH, d->ta == CUBLAS_OP_T, d->tb == CUBLAS_OP_T, (int)m, (int)n, (int)k, 1.0f, a.data(), (int)Al->ld, b.data(),
                       (int)Bl->ld, 0.0f, acc.data(), (int)m);
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) {
                size_t o = (size_t)j * Dl->ld + i;
                float c = 0.f;
                if (fb != 0.f) c = Cl->type == CUDA_R_32F ? ((const float *)Ce)[o] : __bfloat162float(((const __nv_bfloat16 *)Ce)[o]);
                float v = fb != 0.f ? fa * acc[(size_t)j * m + i] + fb * c : fa * acc[(size_t)j * m + i];
                if (Dl->type == CUDA_R_32F) ((float *)De)[o] = v;
                else ((__nv_bfloat16 *)De)[o] = __float2bfloat16_rn(v);
            }
    }
    golf_emu::log_gemm(fn, s, (int)m, (int)n, (int)k, batch, "bf16", A, B, D, golf_emu::now_us() - t0);
    return CUBLAS_STATUS_SUCCESS;
}
#define cublasLtCreate(h) golf_ltCreate(h)
#define cublasLtDestroy(...) golf_ltDestroy(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatmulDescCreate(...) golf_ltMatmulDescCreate(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatmulDescDestroy(...) golf_ltMatmulDescDestroy(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatmulDescSetAttribute(...) golf_ltMatmulDescSetAttribute(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatrixLayoutCreate(...) golf_ltMatrixLayoutCreate(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatrixLayoutDestroy(...) golf_ltMatrixLayoutDestroy(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatrixLayoutSetAttribute(...) golf_ltMatrixLayoutSetAttribute(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatmulPreferenceCreate(p) golf_ltMatmulPreferenceCreate(p)
#define cublasLtMatmulPreferenceDestroy(...) golf_ltMatmulPreferenceDestroy(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatmulPreferenceSetAttribute(...) golf_ltMatmulPreferenceSetAttribute(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatmulAlgoGetHeuristic(...) golf_ltMatmulAlgoGetHeuristic(__FILE__, __LINE__, __VA_ARGS__)
#define cublasLtMatmul(...) golf_ltMatmul(__FILE__, __LINE__, __VA_ARGS__)

// --- 10. NCCL: a star through rank 0 over TCP --------------------------------------------------------

struct golf_nccl {
    int rank, n;
    std::vector<int> peer;   // rank 0: the socket of every other rank; others: peer[0] is rank 0's
    std::atomic<int> aborted{0};   // ncclCommAbort was called (from any thread)
};

namespace golf_emu {
static const uint32_t NCCL_MAGIC = 0x6e63636cu;   // "nccl"
struct IdBytes { uint32_t magic, addr, port, pid, listen_fd; };
inline int io_all(int fd, void *p, size_t n, int sending) {
    char *c = (char *)p;
    while (n) {
        ssize_t k = sending ? send(fd, c, n, MSG_NOSIGNAL) : recv(fd, c, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        c += k;
        n -= (size_t)k;
    }
    return 1;
}
inline double nccl_timeout_s(void) { double t = atof(env_or("DIST_TIMEOUT", "300")); return t > 0 ? t : 300; }
inline size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    }
    return 0;
}
template <class T> inline void combine_as(T *acc, const T *x, size_t n, ncclRedOp_t op) {
    for (size_t i = 0; i < n; i++)
        switch (op) {
        case ncclSum: case ncclAvg: acc[i] += x[i]; break;
        case ncclProd: acc[i] *= x[i]; break;
        case ncclMax: acc[i] = x[i] > acc[i] ? x[i] : acc[i]; break;
        case ncclMin: acc[i] = x[i] < acc[i] ? x[i] : acc[i]; break;
        }
}
// combine: acc = acc op x, elementwise; 0 when the type is not emulated for reductions (fp16 / bf16)
inline int combine(void *acc, const void *x, size_t n, ncclDataType_t t, ncclRedOp_t op) {
    switch (t) {
    case ncclFloat32: combine_as((float *)acc, (const float *)x, n, op); return 1;
    case ncclFloat64: combine_as((double *)acc, (const double *)x, n, op); return 1;
    case ncclInt32: combine_as((int32_t *)acc, (const int32_t *)x, n, op); return 1;
    case ncclUint32: combine_as((uint32_t *)acc, (const uint32_t *)x, n, op); return 1;
    case ncclInt64: combine_as((int64_t *)acc, (const int64_t *)x, n, op); return 1;
    case ncclUint64: combine_as((uint64_t *)acc, (const uint64_t *)x, n, op); return 1;
    case ncclInt8: combine_as((int8_t *)acc, (const int8_t *)x, n, op); return 1;
    case ncclUint8: combine_as((uint8_t *)acc, (const uint8_t *)x, n, op); return 1;
    default: return 0;
    }
}
inline ncclResult_t nccl_buffers(const char *fn, const void *send_p, size_t send_n, const void *recv_p, size_t recv_n) {
    char why[256];
    if (send_n && !device_range(send_p, send_n, why, sizeof(why))) return fail(ncclInvalidArgument, "%s: send buffer %s", fn, why);
    if (recv_n && !device_range(recv_p, recv_n, why, sizeof(why))) return fail(ncclInvalidArgument, "%s: receive buffer %s", fn, why);
    return ncclSuccess;
}
}  // namespace golf_emu

inline const char *ncclGetErrorString(ncclResult_t r) {
    if (r == ncclSuccess) return "no error";
    if (golf_emu::last_error[0]) return golf_emu::last_error;
    return "NCCL error";
}

// ncclGetUniqueId: a listener on a free port; the id holds its IPv4 address and port, and this process's id
inline ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    using namespace golf_emu;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return fail(ncclSystemError, "ncclGetUniqueId: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 128) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return fail(ncclSystemError, "ncclGetUniqueId: cannot listen on a free TCP port: %s", strerror(errno));
    }
    uint32_t addr = htonl(INADDR_LOOPBACK);
    const char *host = getenv("MASTER_ADDR");
    if (host && *host) {
        struct addrinfo hints, *res = nullptr;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_INET;
        if (getaddrinfo(host, nullptr, &hints, &res) == 0 && res) { addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr; freeaddrinfo(res); }
    }
    IdBytes b{NCCL_MAGIC, addr, a.sin_port, (uint32_t)getpid(), (uint32_t)fd};
    memset(id, 0, sizeof(*id));
    memcpy(id->internal, &b, sizeof(b));
    return ncclSuccess;
}

// ncclCommInitRank: rank 0 (the process that drew the id) accepts nranks - 1 hellos {magic, rank, nranks}; the
// others connect to it (retrying until DIST_TIMEOUT) and say hello
inline ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    using namespace golf_emu;
    IdBytes b;
    memcpy(&b, id.internal, sizeof(b));
    if (b.magic != NCCL_MAGIC) return fail(ncclInvalidArgument, "ncclCommInitRank: the id was not made by ncclGetUniqueId");
    if (nranks < 1 || rank < 0 || rank >= nranks) return fail(ncclInvalidArgument, "ncclCommInitRank: rank %d of %d", rank, nranks);
    golf_nccl *c = new golf_nccl{rank, nranks, std::vector<int>((size_t)nranks, -1)};
    double deadline = now_us() + nccl_timeout_s() * 1e6;
    if (rank == 0) {
        if (b.pid != (uint32_t)getpid()) return fail(ncclInvalidUsage, "ncclCommInitRank: rank 0 must be the process that called ncclGetUniqueId");
        for (int got = 1; got < nranks;) {
            struct pollfd p = {(int)b.listen_fd, POLLIN, 0};
            int left = (int)((deadline - now_us()) / 1000);
            if (left <= 0 || poll(&p, 1, left) <= 0)
                return fail(ncclSystemError, "ncclCommInitRank: %d of %d ranks connected within DIST_TIMEOUT", got, nranks);
            int fd = accept((int)b.listen_fd, nullptr, nullptr);
            if (fd < 0) continue;
            uint32_t hello[3];
            if (!io_all(fd, hello, sizeof(hello), 0) || hello[0] != NCCL_MAGIC || hello[2] != (uint32_t)nranks || hello[1] == 0 ||
                hello[1] >= (uint32_t)nranks || c->peer[hello[1]] >= 0) {
                close(fd);
                return fail(ncclRemoteError, "ncclCommInitRank: a bad hello (rank %u of %u)", hello[1], hello[2]);
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            c->peer[hello[1]] = fd;
            got++;
        }
        close((int)b.listen_fd);
    } else {
        int fd = -1;
        while (fd < 0) {
            fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a;
            memset(&a, 0, sizeof(a));
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = b.addr;
            a.sin_port = (uint16_t)b.port;
            if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) break;
            close(fd);
            fd = -1;
            if (now_us() > deadline) return fail(ncclSystemError, "ncclCommInitRank: rank %d cannot reach rank 0 within DIST_TIMEOUT", rank);
            usleep(20000);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        uint32_t hello[3] = {NCCL_MAGIC, (uint32_t)rank, (uint32_t)nranks};
        if (!io_all(fd, hello, sizeof(hello), 1)) return fail(ncclSystemError, "ncclCommInitRank: rank %d: hello not sent", rank);
        c->peer[0] = fd;
    }
    *comm = c;
    return ncclSuccess;
}
inline ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c) return ncclSuccess;
    for (int fd : c->peer)
        if (fd >= 0) close(fd);
    delete c;
    return ncclSuccess;
}
// ncclCommAbort (from any thread, e.g. a watchdog): the connections are shut down, so a collective waiting on them
// returns ncclRemoteError; the communicator is not freed (the thread blocked in it may still hold it)
inline ncclResult_t ncclCommAbort(ncclComm_t c) {
    if (!c) return ncclSuccess;
    c->aborted = 1;
    for (int fd : c->peer)
        if (fd >= 0) shutdown(fd, SHUT_RDWR);
    return ncclSuccess;
}
// ncclCommGetAsyncError: ncclRemoteError once aborted, else ncclSuccess (the emulation's collectives report their
// errors when called)
inline ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *e) {
    if (!c || !e) return ncclInvalidArgument;
    *e = c->aborted ? ncclRemoteError : ncclSuccess;
    return ncclSuccess;
}
inline ncclResult_t ncclCommCount(ncclComm_t c, int *n) { *n = c->n; return ncclSuccess; }
inline ncclResult_t ncclCommUserRank(ncclComm_t c, int *r) { *r = c->rank; return ncclSuccess; }
inline ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
inline ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

namespace golf_emu {
// star_exchange: rank 0 receives `up` bytes from every rank r > 0 into gather + r * up (rank 0's own part is
// already there), calls reduce, then sends `down` bytes of result to every rank; the others send and receive
template <class F> inline ncclResult_t star(ncclComm_t c, const char *fn, const void *mine, size_t up, char *gather, void *result, size_t down, F reduce) {
    if (c->rank == 0) {
        for (int r = 1; r < c->n; r++)
            if (!io_all(c->peer[r], gather + (size_t)r * up, up, 0)) return fail(ncclRemoteError, "%s: rank %d is gone", fn, r);
        reduce();
        for (int r = 1; r < c->n; r++)
            if (!io_all(c->peer[r], result, down, 1)) return fail(ncclRemoteError, "%s: rank %d is gone", fn, r);
    } else {
        if (!io_all(c->peer[0], (void *)mine, up, 1) || !io_all(c->peer[0], result, down, 0)) return fail(ncclRemoteError, "%s: rank 0 is gone", fn);
    }
    return ncclSuccess;
}
}  // namespace golf_emu

// ncclAllReduce: rank 0 combines the ranks' buffers in rank order, every rank receives the same bits
inline ncclResult_t ncclAllReduce(const void *send_p, void *recv_p, size_t count, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, cudaStream_t s) {
    using namespace golf_emu;
    if (lib_captured(s, "ncclAllReduce", "?")) { record([=] { ncclAllReduce(send_p, recv_p, count, t, op, c, s); }); return ncclSuccess; }
    size_t es = type_size(t), n = count * es;
    if (!c) return fail(ncclInvalidArgument, "ncclAllReduce: no communicator");
    ncclResult_t r = nccl_buffers("ncclAllReduce", send_p, n, recv_p, n);
    if (r != ncclSuccess) return r;
    std::vector<char> acc(send_p != recv_p || c->rank != 0 ? n : 0), all;
    if (c->rank == 0) all.resize(n * (size_t)c->n);
    if (c->rank == 0) memcpy(all.data(), send_p, n);
    int ok = 1;
    r = star(c, "ncclAllReduce", send_p, n, all.data(), recv_p, n, [&] {
        for (int k = 1; k < c->n && ok; k++) ok = combine(all.data(), all.data() + (size_t)k * n, count, t, op);
        if (op == ncclAvg && ok) {
            if (t == ncclFloat32) for (size_t i = 0; i < count; i++) ((float *)all.data())[i] /= (float)c->n;
            else if (t == ncclFloat64) for (size_t i = 0; i < count; i++) ((double *)all.data())[i] /= c->n;
            else ok = 0;
        }
        memcpy(recv_p, all.data(), n);
    });
    if (!ok) return fail(ncclInvalidArgument, "ncclAllReduce: data type %d with op %d is not emulated", (int)t, (int)op);
    return r;
}
inline ncclResult_t ncclBroadcast(const void *send_p, void *recv_p, size_t count, ncclDataType_t t, int root, ncclComm_t c, cudaStream_t s) {
    using namespace golf_emu;
    if (lib_captured(s, "ncclBroadcast", "?")) { record([=] { ncclBroadcast(send_p, recv_p, count, t, root, c, s); }); return ncclSuccess; }
    size_t n = count * type_size(t);
    if (!c || root < 0 || root >= c->n) return fail(ncclInvalidArgument, "ncclBroadcast: bad root %d", root);
    ncclResult_t r = nccl_buffers("ncclBroadcast", send_p, c->rank == root ? n : 0, recv_p, n);
    if (r != ncclSuccess) return r;
    if (c->rank == root && send_p != recv_p) memmove(recv_p, send_p, n);
    // the root's bytes go up to rank 0 (when another rank is root) and down to everyone
    if (root != 0) {
        if (c->rank == root && !io_all(c->peer[0], recv_p, n, 1)) return fail(ncclRemoteError, "ncclBroadcast: rank 0 is gone");
        if (c->rank == 0 && !io_all(c->peer[root], recv_p, n, 0)) return fail(ncclRemoteError, "ncclBroadcast: rank %d is gone", root);
    }
    if (c->rank == 0) {
        for (int k = 1; k < c->n; k++)
            if (k != root && !io_all(c->peer[k], recv_p, n, 1)) return fail(ncclRemoteError, "ncclBroadcast: rank %d is gone", k);
    } else if (c->rank != root && !io_all(c->peer[0], recv_p, n, 0)) return fail(ncclRemoteError, "ncclBroadcast: rank 0 is gone");
    return ncclSuccess;
}
inline ncclResult_t ncclAllGather(const void *send_p, void *recv_p, size_t count, ncclDataType_t t, ncclComm_t c, cudaStream_t s) {
    using namespace golf_emu;
    if (lib_captured(s, "ncclAllGather", "?")) { record([=] { ncclAllGather(send_p, recv_p, count, t, c, s); }); return ncclSuccess; }
    size_t n = count * type_size(t);
    if (!c) return fail(ncclInvalidArgument, "ncclAllGather: no communicator");
    ncclResult_t r = nccl_buffers("ncclAllGather", send_p, n, recv_p, n * (size_t)c->n);
    if (r != ncclSuccess) return r;
    std::vector<char> mine((const char *)send_p, (const char *)send_p + n);
    if (c->rank == 0) memcpy((char *)recv_p, mine.data(), n);
    return star(c, "ncclAllGather", mine.data(), n, (char *)recv_p, recv_p, n * (size_t)c->n, [] {});
}

// The call site of the runtime calls that can fault during a stream capture (section 8b's messages name it)
#define cudaMalloc(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaMalloc(__VA_ARGS__))
#define cudaFree(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaFree(__VA_ARGS__))
#define cudaMallocHost(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaMallocHost(__VA_ARGS__))
#define cudaFreeHost(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaFreeHost(__VA_ARGS__))
#define cudaMemcpy(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaMemcpy(__VA_ARGS__))
#define cudaMemcpyAsync(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaMemcpyAsync(__VA_ARGS__))
#define cudaMemset(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaMemset(__VA_ARGS__))
#define cudaDeviceSynchronize(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaDeviceSynchronize(__VA_ARGS__))
#define cudaStreamSynchronize(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaStreamSynchronize(__VA_ARGS__))
#define cudaEventSynchronize(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaEventSynchronize(__VA_ARGS__))
#define cudaStreamBeginCapture(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaStreamBeginCapture(__VA_ARGS__))
#define cudaStreamEndCapture(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaStreamEndCapture(__VA_ARGS__))
#define cudaGraphInstantiate(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaGraphInstantiate(__VA_ARGS__))
#define cudaGraphLaunch(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaGraphLaunch(__VA_ARGS__))
#define cudaGraphExecDestroy(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaGraphExecDestroy(__VA_ARGS__))
#define cudaGraphDestroy(...) (golf_emu::call_site(__FILE__, __LINE__), ::cudaGraphDestroy(__VA_ARGS__))

#endif  // GOLF_CUDA_CPU_H
