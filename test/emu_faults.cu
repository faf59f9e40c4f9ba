// test/emu_faults.cu — the CPU build's emulation (dev/cuda_cpu.h) on its own, for test/test_emu.py; built by
// `make test/emu_faults` from train_golf.cu (TESTING) so that its kernels can be driven one by one.
//   emu_faults FAULT          one faulty launch or copy (partial_barrier, shfl_exited, shfl_absent, mask_self,
//                             threads, grid, smem, smem_optin, memcpy_oob, memcpy_kind, deadlock, disagree): the
//                             fault's message on stderr, exit 1 (copies: the cudaError's text, exit 1)
//   emu_faults smem_ok        a 64 KiB dynamic shared launch after the opt-in: "ok"
//   emu_faults race           a kernel missing its barrier, then the same with it: two lines of output hex
//   emu_faults collectives    every warp collective against a scalar model on random inputs: "ok" or the mismatch
//   emu_faults convert        fp16 / bf16 / tf32 of the floats on stdin (one per line): "h b t" hex per line
//   emu_faults gemm           cublasSgemm / StridedBatched over ops, leading dimensions, alpha, beta (0 with NaN in
//                             C) against a float64 loop: the largest error relative to the largest |C|
//   emu_faults gemm_bits      the loops' cublasSgemm (no CBLAS) against the plain scalar loop it must equal bit for bit
//                             (ascending k, float32, no fused multiply-add) at sizes across its tile and k-slice edges,
//                             ops N/T, alpha, beta: "ok", the first differing entry and exit 1, or "cblas" (OpenBLAS's order)
//   emu_faults lt TA TB M N K DTYPE BETA SEED   one cublasLtMatmul (bf16 A, B; C = D of DTYPE bf16 or f32; alpha
//                             0.75; lda, ldb, ldd past the rows; C NaN when BETA is 0): m n k, then A, B, C (as
//                             decoded floats), D, one "%a" matrix per line, column-major; "padding" if D's rows past m changed
//   emu_faults lt_fault WHAT  a bad cuBLASLt call (ld, type, dims, attr, cd, algo, align, align16, batch, overlap, layout_attr):
//                             the fault's message, exit 1
//   emu_faults lt_batch       a strided batch of 3 bf16 matmuls (BATCH_COUNT, STRIDED_BATCH_OFFSET) against the 3 alone:
//                             "same" when every bit of D agrees, else "differ"
//   emu_faults kernels SEED   train_golf.cu's deterministic kernels on random inputs: one line per kernel, the
//                             name and a hex digest of its outputs (run under several GOLF_EMU_ORDERs, must agree)
//   emu_faults fused SEED     each fused kernel (FUSE=1) against the plain kernels it replaces: "same" or "DIFF" per case
//   emu_faults attention T HD H KV SEED [flash] [docs C]   the attention kernels on random inputs: q, k, v, dy, then y,
//                             lse, dq, dk, dv as float32 little-endian on stdout (checked against float64 by test_emu.py);
//                             flash: the bf16 tensor-core kernels (inputs rounded to bf16 first); docs C: DOC_ATTENTION's
//                             segments (doc_bounds, documents cut every C tokens) of random tokens whose BOS are sparse in
//                             the first half and dense in the second, then the tokens, ds and de follow the outputs
//   emu_faults ptx            mma.sync, ldmatrix x4 / x4.trans / x2, cp.async against scalar models of the PTX ISA on
//                             random fragments: "ok", or the mismatch and exit 1
//   emu_faults mma_skip | ldmatrix_misaligned | cp_async_pending   faults of the tensor-core instructions (as FAULT)
//   emu_faults graph N        a sequence of launches, sets, copies (pinned host <-> device, device to device) and GEMMs
//                             run eagerly N times, then captured once and replayed N times from the same start: "ok N"
//                             when the device bytes and the host's copies agree bit for bit, else the mismatch, exit 1
//   emu_faults graph_fault WHAT   what a stream capture forbids (memcpy, sync, stream_sync, d2h_pageable,
//                             h2d_pageable, malloc, legacy_gemm, no_workspace, twice, global: a capture in
//                             cudaStreamCaptureModeGlobal), a graph misused (uninstantiated, destroyed, end_unbegun) or
//                             a library call on the legacy stream inside a training step (legacy_step): the fault's
//                             message, exit 1
#define TESTING
#include "../train_golf.cu"
#include <vector>

__global__ void k_partial_barrier(float *x) {
    if (threadIdx.x >= 16) return;
    __syncthreads();
    x[threadIdx.x] = 1;
}
__global__ void k_shfl_exited(float *x) {
    if (threadIdx.x >= 16) return;
    x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}
__global__ void k_shfl(float *x, unsigned mask) { x[threadIdx.x] = __shfl_xor_sync(mask, (float)threadIdx.x, 1); }
__global__ void k_deadlock(float *x) {
    if (threadIdx.x == 0) x[0] = __shfl_sync(0xffffffffu, 1.f, 0);
    else __syncthreads();
}
__global__ void k_disagree(float *x) {
    if (threadIdx.x % 2) x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
    else x[threadIdx.x] = (float)__ballot_sync(0xffffffffu, 1);
}
__global__ void k_nop(float *x) { if (threadIdx.x == 0 && blockIdx.x == 0) x[0] = 1; }

// race: s[t] = 7t + 1, then each thread reads its neighbour's slot (after the barrier when sync != 0); without the
// barrier the result depends on which fiber ran first (forward: the neighbour has not written yet)
__global__ void k_race(int *out, int sync) {
    __shared__ int s[128];
    int t = threadIdx.x;
    s[t] = t * 7 + 1;
    if (sync) __syncthreads();
    out[t] = s[(t + 1) % 128];
}

// --- the tensor-core instructions (train_golf.cu 4b) against scalar models ---
// k_mma: each lane's raw registers a[4], b[2], c[4] from in (lane-major) into one mma; d[4] out
__global__ void k_mma(float *d, const uint32_t *a, const uint32_t *b, const float *c) {
    int l = threadIdx.x;
    mma_bf16_16816(d + 4 * l, a + 4 * l, b + 2 * l, c + 4 * l);
}
// k_ldmatrix: a 32 x 8 tile of 16-bit values into shared memory; lane l hands the address of row perm[l] to x4, x4.trans
// and x2 (whose lanes 16..31 give rows that are ignored); r: 10 registers a lane
__global__ void k_ldmatrix(uint32_t *r, const uint16_t *tile, const int *perm) {
    __shared__ uint16_t s[32][8] __attribute__((aligned(16)));
    int l = threadIdx.x;
    for (int i = 0; i < 8; i++) s[l][i] = tile[l * 8 + i];
    __syncthreads();
    ldmatrix_x4(r + 10 * l, &s[perm[l]][0]);
    ldmatrix_x4_trans(r + 10 * l + 4, &s[perm[l]][0]);
    golf_emu::ldmatrix(r + 10 * l + 8, &s[perm[l]][0], 2, 0);   // .x2: the emulator's general form (train_golf.cu has no x2 wrapper)
}
// k_cp_async: each of 32 threads copies 16 bytes of src into s1 (group 0) and 16 into s2 (group 1), then reads its
// neighbour's slots: after wait_group 1 (group 0 landed, group 1 not: s2 stale), after wait_group 0 (both landed);
// stale = 1 reads s1 before any wait (still zeros). out: 3 x 4 floats a thread
__global__ void k_cp_async(float *out, const float *src, int stale) {
    __shared__ float s1[32][4] __attribute__((aligned(16))), s2[32][4] __attribute__((aligned(16)));
    int t = threadIdx.x, n = (t + 1) % 32;
    for (int i = 0; i < 4; i++) s1[t][i] = s2[t][i] = 0.f;
    __syncthreads();
    cp_async_16(&s1[t][0], src + 4 * t);
    cp_async_commit();
    cp_async_16(&s2[t][0], src + 128 + 4 * t);
    cp_async_commit();
    if (!stale) cp_async_wait<1>();
    __syncthreads();
    for (int i = 0; i < 4; i++) { out[12 * t + i] = s1[n][i]; out[12 * t + 4 + i] = s2[n][i]; }
    __syncthreads();
    cp_async_wait<0>();
    __syncthreads();
    for (int i = 0; i < 4; i++) out[12 * t + 8 + i] = s2[n][i];
}
__global__ void k_mma_skip(float *x) {   // lane 5 skips the mma
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float c[4] = {0, 0, 0, 0}, d[4];
    if (threadIdx.x == 5) return;
    mma_bf16_16816(d, a, b, c);
    x[threadIdx.x] = d[0];
}
__global__ void k_ldmatrix_misaligned(uint32_t *r) {
    __shared__ uint16_t s[40][8] __attribute__((aligned(16)));
    for (int i = 0; i < 8; i++) s[threadIdx.x][i] = 0;
    __syncthreads();
    ldmatrix_x4(r + 4 * threadIdx.x, &s[threadIdx.x][threadIdx.x == 9 ? 4 : 0]);
}
__global__ void k_cp_async_pending(const float *src) {
    __shared__ float s[32][4] __attribute__((aligned(16)));
    cp_async_16(&s[threadIdx.x][0], src + 4 * threadIdx.x);
    cp_async_commit();
}

static float bf16_val(uint16_t u) { return golf_u2f((uint32_t)u << 16); }
static uint16_t rand_bf16(uint64_t *r) { return __float2bfloat16_rn((float)(rng_uniform(r) * 4 - 2)).x; }

static int check_ptx(void) {
    uint64_t r = 2024;
    // mma: random registers of every lane; the model rebuilds A (16x16), B (16x8), C from the documented layout
    for (int rep = 0; rep < 4; rep++) {
        std::vector<uint32_t> a(128), b(64);
        std::vector<float> c(128), d(128);
        for (auto &x : a) x = (uint32_t)rand_bf16(&r) | (uint32_t)rand_bf16(&r) << 16;
        for (auto &x : b) x = (uint32_t)rand_bf16(&r) | (uint32_t)rand_bf16(&r) << 16;
        for (auto &x : c) x = (float)(rng_uniform(&r) * 8 - 4);
        double A[16][16], B[16][8], C[16][8];
        for (int l = 0; l < 32; l++) {
            int g = l / 4, t = l % 4;
            for (int j = 0; j < 2; j++) {   // element j of a register pair: the low half first
                A[g][2 * t + j] = bf16_val((uint16_t)(a[4 * l] >> 16 * j));
                A[g + 8][2 * t + j] = bf16_val((uint16_t)(a[4 * l + 1] >> 16 * j));
                A[g][2 * t + 8 + j] = bf16_val((uint16_t)(a[4 * l + 2] >> 16 * j));
                A[g + 8][2 * t + 8 + j] = bf16_val((uint16_t)(a[4 * l + 3] >> 16 * j));
                B[2 * t + j][g] = bf16_val((uint16_t)(b[2 * l] >> 16 * j));
                B[2 * t + 8 + j][g] = bf16_val((uint16_t)(b[2 * l + 1] >> 16 * j));
                C[g][2 * t + j] = c[4 * l + j];
                C[g + 8][2 * t + j] = c[4 * l + 2 + j];
            }
        }
        uint32_t *da, *db;
        float *dc, *dd;
        cudaCheck(cudaMalloc(&da, 512)); cudaCheck(cudaMalloc(&db, 256)); cudaCheck(cudaMalloc(&dc, 512)); cudaCheck(cudaMalloc(&dd, 512));
        cudaCheck(cudaMemcpy(da, a.data(), 512, cudaMemcpyHostToDevice)); cudaCheck(cudaMemcpy(db, b.data(), 256, cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(dc, c.data(), 512, cudaMemcpyHostToDevice));
        KERNEL_LAUNCH(k_mma, 1, 32, 0, dd, (const uint32_t *)da, (const uint32_t *)db, (const float *)dc);
        cudaCheck(cudaMemcpy(d.data(), dd, 512, cudaMemcpyDeviceToHost));
        for (int l = 0; l < 32; l++)
            for (int e = 0; e < 4; e++) {
                int i = l / 4 + 8 * (e / 2), j = 2 * (l % 4) + e % 2;
                float s = (float)C[i][j];   // the documented order: C, then the 16 exact products, fp32 additions in k order
                double s64 = C[i][j];
                for (int k = 0; k < 16; k++) { s += (float)(A[i][k] * B[k][j]); s64 += A[i][k] * B[k][j]; }
                if (golf_f2u(s) != golf_f2u(d[4 * l + e]) || fabs(s - s64) > 1e-5 * (1 + fabs(s64))) {
                    printf("mma: lane %d d[%d] = %.9g, the model says %.9g (float64 %.9g)\n", l, e, d[4 * l + e], s, s64);
                    return 1;
                }
            }
        cudaFree(da); cudaFree(db); cudaFree(dc); cudaFree(dd);
    }
    // ldmatrix: matrix i's row j is tile row perm[8i + j]; lane l gets (row l/4, columns 2(l%4), +1), transposed with .trans
    {
        std::vector<uint16_t> tile(256);
        std::vector<int> perm(32);
        for (auto &x : tile) x = (uint16_t)(rng_next(&r) & 0xffff);
        for (int i = 0; i < 32; i++) perm[i] = i;
        for (int i = 31; i > 0; i--) std::swap(perm[i], perm[rng_next(&r) % (uint64_t)(i + 1)]);
        uint16_t *dt;
        int *dp;
        uint32_t *dr;
        std::vector<uint32_t> got(320);
        cudaCheck(cudaMalloc(&dt, 512)); cudaCheck(cudaMalloc(&dp, 128)); cudaCheck(cudaMalloc(&dr, 1280));
        cudaCheck(cudaMemcpy(dt, tile.data(), 512, cudaMemcpyHostToDevice)); cudaCheck(cudaMemcpy(dp, perm.data(), 128, cudaMemcpyHostToDevice));
        KERNEL_LAUNCH(k_ldmatrix, 1, 32, 0, dr, (const uint16_t *)dt, (const int *)dp);
        cudaCheck(cudaMemcpy(got.data(), dr, 1280, cudaMemcpyDeviceToHost));
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 10; i++) {
                int m = i < 4 ? i : i < 8 ? i - 4 : i - 8, tr = i >= 4 && i < 8;
                auto M = [&](int row, int col) { return (uint32_t)tile[perm[8 * m + row] * 8 + col]; };
                int rr = l / 4, cc = 2 * (l % 4);
                uint32_t want = tr ? M(cc, rr) | M(cc + 1, rr) << 16 : M(rr, cc) | M(rr, cc + 1) << 16;
                if (got[10 * l + i] != want) {
                    printf("ldmatrix%s: lane %d register %d = %08x, the model says %08x\n", i < 4 ? "_x4" : i < 8 ? "_x4_trans" : "_x2", l, m, got[10 * l + i], want);
                    return 1;
                }
            }
        cudaFree(dt); cudaFree(dp); cudaFree(dr);
    }
    // cp.async: group 0 visible after wait_group 1, group 1 only after wait_group 0; read before any wait: stale zeros
    {
        std::vector<float> src(256), out(384), stale(384);
        for (auto &x : src) x = (float)(rng_uniform(&r) + 1);
        float *ds, *dout;
        cudaCheck(cudaMalloc(&ds, 1024)); cudaCheck(cudaMalloc(&dout, 1536));
        cudaCheck(cudaMemcpy(ds, src.data(), 1024, cudaMemcpyHostToDevice));
        KERNEL_LAUNCH(k_cp_async, 1, 32, 0, dout, (const float *)ds, 0);
        cudaCheck(cudaMemcpy(out.data(), dout, 1536, cudaMemcpyDeviceToHost));
        KERNEL_LAUNCH(k_cp_async, 1, 32, 0, dout, (const float *)ds, 1);
        cudaCheck(cudaMemcpy(stale.data(), dout, 1536, cudaMemcpyDeviceToHost));
        for (int t = 0; t < 32; t++)
            for (int i = 0; i < 4; i++) {
                int n = (t + 1) % 32;
                float w1 = src[4 * n + i], w2 = src[128 + 4 * n + i];
                if (out[12 * t + i] != w1 || out[12 * t + 4 + i] != 0.f || out[12 * t + 8 + i] != w2) {
                    printf("cp.async: thread %d reads %g %g %g, the model says %g (group 0 after wait_group 1), 0 (group 1 still in flight), %g\n", t,
                           out[12 * t + i], out[12 * t + 4 + i], out[12 * t + 8 + i], w1, w2);
                    return 1;
                }
                if (stale[12 * t + i] != 0.f || stale[12 * t + 8 + i] != w2) {
                    printf("cp.async: read before its wait, thread %d sees %g (the stale 0 expected)\n", t, stale[12 * t + i]);
                    return 1;
                }
            }
        if (!memcmp(out.data(), stale.data(), 1536)) { printf("cp.async: the stale read gives the same result as the waited one\n"); return 1; }
        cudaFree(ds); cudaFree(dout);
    }
    printf("ok\n");
    return 0;
}

// collectives: every lane records the results of each collective for the host's scalar model
__global__ void k_collectives(unsigned *out, const unsigned *in) {
    int l = threadIdx.x % 32, w = threadIdx.x / 32;
    unsigned v = in[threadIdx.x], *o = out + (size_t)threadIdx.x * 16;
    o[0] = __shfl_sync(0xffffffffu, v, (l * 7 + 3) % 32);
    o[1] = __shfl_sync(0xffffffffu, v, l + 3, 8);
    o[2] = __shfl_xor_sync(0xffffffffu, v, 5);
    o[3] = __shfl_xor_sync(0xffffffffu, v, 6, 4);
    o[4] = __shfl_up_sync(0xffffffffu, v, 3);
    o[5] = __shfl_up_sync(0xffffffffu, v, 2, 16);
    o[6] = __shfl_down_sync(0xffffffffu, v, 4);
    o[7] = __shfl_down_sync(0xffffffffu, v, 3, 8);
    o[8] = __ballot_sync(0xffffffffu, v & 1);
    o[9] = (unsigned)__any_sync(0xffffffffu, (v & 15) == 0);
    o[10] = (unsigned)__all_sync(0xffffffffu, v != 12345);
    if (l < 16) o[11] = __shfl_xor_sync(0x0000ffffu, v, 3);   // a half-warp group
    else o[11] = __shfl_xor_sync(0xffff0000u, v, 9);
    o[12] = (unsigned)__shfl_sync(0xffffffffu, (double)v * 0.5, 31 - l);   // 8-byte values
    o[13] = (unsigned)w;
}

static unsigned host_shfl(const unsigned *v, int base, int l, int src, int width, int mode) {   // mode 0 idx 1 xor 2 up 3 down
    int seg = l & ~(width - 1), s;
    if (mode == 0) s = seg + (src & (width - 1));
    else if (mode == 1) { s = l ^ src; if (s > seg + width - 1) s = l; }
    else if (mode == 2) { s = l - src; if (s < seg) s = l; }
    else { s = l + src; if (s > seg + width - 1) s = l; }
    return v[base + s];
}

static int check_collectives(void) {
    const int n = 64;
    unsigned hin[n], hout[n * 16], *din, *dout;
    uint64_t r = 99;
    for (int i = 0; i < n; i++) hin[i] = (unsigned)(rng_next(&r) % 1000);
    hin[5] = 16;
    cudaCheck(cudaMalloc(&din, sizeof(hin)));
    cudaCheck(cudaMalloc(&dout, sizeof(hout)));
    cudaCheck(cudaMemcpy(din, hin, sizeof(hin), cudaMemcpyHostToDevice));
    KERNEL_LAUNCH(k_collectives, 1, n, 0, dout, din);
    cudaCheck(cudaMemcpy(hout, dout, sizeof(hout), cudaMemcpyDeviceToHost));
    for (int t = 0; t < n; t++) {
        int l = t % 32, base = t - l;
        unsigned want[14], ballot = 0, any = 0, all = 1;
        for (int k = 0; k < 32; k++) { ballot |= (hin[base + k] & 1u) << k; any |= (hin[base + k] & 15) == 0; all &= hin[base + k] != 12345; }
        want[0] = host_shfl(hin, base, l, (l * 7 + 3) % 32, 32, 0);
        want[1] = host_shfl(hin, base, l, l + 3, 8, 0);
        want[2] = host_shfl(hin, base, l, 5, 32, 1);
        want[3] = host_shfl(hin, base, l, 6, 4, 1);
        want[4] = host_shfl(hin, base, l, 3, 32, 2);
        want[5] = host_shfl(hin, base, l, 2, 16, 2);
        want[6] = host_shfl(hin, base, l, 4, 32, 3);
        want[7] = host_shfl(hin, base, l, 3, 8, 3);
        want[8] = ballot; want[9] = any; want[10] = all;
        int s11 = l < 16 ? l ^ 3 : l ^ 9;
        want[11] = hin[base + s11];
        want[12] = (unsigned)((double)hin[base + 31 - l] * 0.5);
        want[13] = (unsigned)(t / 32);
        for (int j = 0; j < 14; j++)
            if (hout[t * 16 + j] != want[j]) { printf("thread %d result %d: %u, the scalar model says %u\n", t, j, hout[t * 16 + j], want[j]); return 1; }
    }
    printf("ok\n");
    return 0;
}

static int check_gemm(void) {
    cublasHandle_t h;
    cublasCheck(cublasCreate(&h));
    uint64_t r = 7;
    double worst = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int bc = 0; bc < 3; bc++) {
                int m = 13, n = 7, k = 9, batch = bc == 2 ? 3 : 1;
                int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 2, ldc = m + 1;
                int acols = ta ? m : k, bcols = tb ? k : n;
                long long sA = (long long)lda * acols + 5, sB = (long long)ldb * bcols + 4, sC = (long long)ldc * n + 2;
                std::vector<float> A((size_t)sA * batch), B((size_t)sB * batch), C((size_t)sC * batch), C0;
                for (auto &x : A) x = (float)(rng_uniform(&r) * 2 - 1);
                for (auto &x : B) x = (float)(rng_uniform(&r) * 2 - 1);
                for (auto &x : C) x = (float)(rng_uniform(&r) * 2 - 1);
                float alpha = 0.75f, beta = bc == 0 ? 0.f : -1.25f;
                if (bc == 0) for (auto &x : C) x = NAN;   // beta = 0: C is never read
                C0 = C;
                float *dA, *dB, *dC;
                cudaCheck(cudaMalloc(&dA, A.size() * 4)); cudaCheck(cudaMalloc(&dB, B.size() * 4)); cudaCheck(cudaMalloc(&dC, C.size() * 4));
                cudaCheck(cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice));
                cudaCheck(cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice));
                cudaCheck(cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice));
                cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
                if (batch == 1) cublasCheck(cublasSgemm(h, oa, ob, m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc));
                else cublasCheck(cublasSgemmStridedBatched(h, oa, ob, m, n, k, &alpha, dA, lda, sA, dB, ldb, sB, &beta, dC, ldc, sC, batch));
                cudaCheck(cudaMemcpy(C.data(), dC, C.size() * 4, cudaMemcpyDeviceToHost));
                for (int bi = 0; bi < batch; bi++)
                    for (int j = 0; j < n; j++)
                        for (int i = 0; i < m; i++) {
                            double s = 0;
                            for (int p = 0; p < k; p++) {
                                double a = ta ? A[bi * sA + p + (size_t)i * lda] : A[bi * sA + i + (size_t)p * lda];
                                double b = tb ? B[bi * sB + j + (size_t)p * ldb] : B[bi * sB + p + (size_t)j * ldb];
                                s += a * b;
                            }
                            double want = alpha * s + (beta != 0 ? beta * (double)C0[bi * sC + i + (size_t)j * ldc] : 0.0);
                            double got = C[bi * sC + i + (size_t)j * ldc];
                            double e = fabs(got - want) / 4.0;   // |C| entries are O(1..4)
                            if (!(e <= 1e300)) e = 1e300;        // NaN: infinitely wrong
                            if (e > worst) worst = e;
                        }
                for (int bi = 0; bi < batch; bi++)   // the padding rows of C (i >= m) are untouched
                    for (int j = 0; j < n; j++)
                        if (memcmp(&C[bi * sC + m + (size_t)j * ldc], &C0[bi * sC + m + (size_t)j * ldc], 4)) { printf("padding of C written\n"); return 1; }
                cudaFree(dA); cudaFree(dB); cudaFree(dC);
            }
    printf("%.3e\n", worst);
    return 0;
}

// kernels: the deterministic kernels of train_golf.cu on random inputs, a digest of each one's outputs
static uint64_t digest(const float *d, size_t n) {
    std::vector<float> h(n);
    cudaCheck(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
    uint64_t x = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)h.data();
    for (size_t i = 0; i < n * 4; i++) x = (x ^ p[i]) * 1099511628211ull;
    return x;
}
static float *random_device(size_t n, uint64_t *r, float scale) {
    std::vector<float> h(n);
    for (auto &x : h) x = (float)((rng_uniform(r) * 2 - 1) * scale);
    float *d;
    cudaCheck(cudaMalloc(&d, n * 4));
    cudaCheck(cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice));
    return d;
}
static int run_kernels(uint64_t seed) {
    uint64_t r = seed;
    const int N = 96, d = 64, T = 48, H = 2, KV = 1, hd = 32, V = 200;
    float *x = random_device((size_t)N * d, &r, 1), *y = random_device((size_t)N * d, &r, 1), *o = random_device((size_t)N * d, &r, 1);
    float *rs = random_device(N * H, &r, 1), *g = random_device(H, &r, 1), *cs = random_device((size_t)T * hd, &r, 1), *sn = random_device((size_t)T * hd, &r, 1);
    float *logits = random_device((size_t)N * V, &r, 20), *loss = random_device(N, &r, 1), *w = random_device((size_t)8 * 300, &r, 1);
    float *q = random_device((size_t)N * H * hd, &r, 1), *k = random_device((size_t)N * KV * hd, &r, 1), *v = random_device((size_t)N * KV * hd, &r, 1);
    float *lse = random_device((size_t)N * H, &r, 1), *D = random_device((size_t)N * H, &r, 1), *dq = random_device((size_t)N * H * hd, &r, 1);
    float *dk = random_device((size_t)N * KV * hd, &r, 1), *dv = random_device((size_t)N * KV * hd, &r, 1);
    std::vector<int> ht(N);
    for (int i = 0; i < N; i++) ht[i] = i == 7 ? -1 : (int)(rng_next(&r) % V);
    int *tgt;
    cudaCheck(cudaMalloc(&tgt, N * 4));
    cudaCheck(cudaMemcpy(tgt, ht.data(), N * 4, cudaMemcpyHostToDevice));
    LAUNCH_ROWS(rmsnorm_forward<float>, N, o, rs, x, N, d, 1.0f);
    printf("rmsnorm_forward %016llx\n", (unsigned long long)(digest(o, (size_t)N * d) ^ digest(rs, N)));
    LAUNCH_ROWS(rmsnorm_backward, N, o, y, x, rs, N, d, 1);
    printf("rmsnorm_backward %016llx\n", (unsigned long long)digest(o, (size_t)N * d));
    LAUNCH_ROWS(mix_rmsnorm_forward<float>, N, dq, o, rs, x, y, w, N, d, 0.5f);
    printf("mix_rmsnorm_forward %016llx\n", (unsigned long long)(digest(dq, (size_t)N * d) ^ digest(o, (size_t)N * d) ^ digest(rs, N)));
    LAUNCH_ROWS(scale_add_rmsnorm_forward<float>, N, dq, o, rs, x, w, y, N, d, 0.5f);
    printf("scale_add_rmsnorm_forward %016llx\n", (unsigned long long)(digest(dq, (size_t)N * d) ^ digest(o, (size_t)N * d) ^ digest(rs, N)));
    LAUNCH_ROWS(qk_prep_forward, (size_t)N * H, o, rs, x, g, cs, sn, (const int *)NULL, N, T, H, hd, 16);
    printf("qk_prep_forward %016llx\n", (unsigned long long)digest(o, (size_t)N * d));
    LAUNCH_ROWS(softcap_cross_entropy, N, logits, loss, tgt, N, V, 30.f, 0.5f);
    printf("softcap_cross_entropy %016llx\n", (unsigned long long)(digest(logits, (size_t)N * V) ^ digest(loss, N)));
    KERNEL_LAUNCH(fake_quant_rows, 8, 256, 0, o, w, 300, 31, 0);
    printf("fake_quant_rows %016llx\n", (unsigned long long)digest(o, 8 * 300));
    KERNEL_LAUNCH(fake_quant_rows, 8, 256, 0, o, w, 300, 1, 64);
    printf("fake_quant_rows_ternary %016llx\n", (unsigned long long)digest(o, 8 * 300));
    KERNEL_LAUNCH(attention_forward<32>, dim3(blocks_for(T, ATT_ROWS), 2 * H), ATT_ROWS, 0, o, lse, q, k, v, (const int *)NULL, T, H, KV);
    printf("attention_forward %016llx\n", (unsigned long long)(digest(o, (size_t)N * H * hd) ^ digest(lse, (size_t)N * H)));
    KERNEL_LAUNCH(attention_backward_dq<32>, dim3(blocks_for(T, ATT_ROWS), 2 * H), ATT_ROWS, 0, dq, D, y, o, q, k, v, lse, (const int *)NULL, T, H, KV);
    KERNEL_LAUNCH(attention_backward_dkv<32>, dim3(blocks_for(T, ATT_ROWS), 2 * KV), ATT_ROWS, 0, dk, dv, y, q, k, v, lse, D, (const int *)NULL, T, H, KV);
    printf("attention_backward %016llx\n", (unsigned long long)(digest(dq, (size_t)N * H * hd) ^ digest(dk, (size_t)N * KV * hd) ^ digest(dv, (size_t)N * KV * hd)));
    return 0;
}

// fused: each fused kernel of train_golf.cu (FUSE=1) against the plain kernels it replaces, on random rows of
// d = 64 and d = 100 (a tail lane count), fp32 and bf16 outputs, ls 1 and 0.7; "name same" or "name DIFF" per case
// (the same per-element arithmetic in the same order: the bits must match)
static int bits_equal(const void *a, const void *b, size_t bytes) {
    std::vector<unsigned char> ha(bytes), hb(bytes);
    cudaCheck(cudaMemcpy(ha.data(), a, bytes, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hb.data(), b, bytes, cudaMemcpyDeviceToHost));
    return !memcmp(ha.data(), hb.data(), bytes);
}
template <class T> static void fused_case(const char *tag, int N, int d, float s, uint64_t *r) {
    float *x = random_device((size_t)N * d, r, 2), *x0 = random_device((size_t)N * d, r, 1), *mix = random_device((size_t)2 * d, r, 1.5f);
    float *m1 = random_device((size_t)N * d, r, 1), *m2 = random_device((size_t)N * d, r, 1), *r1 = random_device(N, r, 1), *r2 = random_device(N, r, 1);
    T *o1, *o2;
    cudaCheck(cudaMalloc(&o1, (size_t)N * d * sizeof(T)));
    cudaCheck(cudaMalloc(&o2, (size_t)N * d * sizeof(T)));
    size_t nd = (size_t)N * d, ob = nd * sizeof(T);
    LAUNCH1D(mix_forward, nd, m1, x, x0, mix, N, d);                                   // plain: mix, then the norm
    LAUNCH_ROWS(rmsnorm_forward<T>, N, o1, r1, m1, N, d, s);
    LAUNCH_ROWS(mix_rmsnorm_forward<T>, N, m2, o2, r2, x, x0, mix, N, d, s);          // fused
    printf("mix_rmsnorm_forward %s d=%d s=%g %s\n", tag, d, s, bits_equal(m1, m2, nd * 4) && bits_equal(o1, o2, ob) && bits_equal(r1, r2, N * 4) ? "same" : "DIFF");
    LAUNCH1D(scale_add_forward, nd, m1, x, mix, x0, N, d);                             // plain: scale-add, then the norm
    LAUNCH_ROWS(rmsnorm_forward<T>, N, o1, r1, m1, N, d, s);
    LAUNCH_ROWS(scale_add_rmsnorm_forward<T>, N, m2, o2, r2, x, mix, x0, N, d, s);    // fused
    printf("scale_add_rmsnorm_forward %s d=%d s=%g %s\n", tag, d, s, bits_equal(m1, m2, nd * 4) && bits_equal(o1, o2, ob) && bits_equal(r1, r2, N * 4) ? "same" : "DIFF");
    cudaFree(x); cudaFree(x0); cudaFree(mix); cudaFree(m1); cudaFree(m2); cudaFree(r1); cudaFree(r2); cudaFree(o1); cudaFree(o2);
}
static int run_fused(uint64_t seed) {
    uint64_t r = seed;
    for (int d : {64, 100})
        for (float s : {1.0f, 0.7f}) { fused_case<float>("fp32", 37, d, s, &r); fused_case<bf16>("bf16", 37, d, s, &r); }
    return 0;
}

// attention: the three kernels on random q, k, v, dy of [1, T] sequences; raw float32 outputs on stdout
static void round_bf16_device(float *d, size_t n) {   // d = bf16(d): q, k, v that the flash kernels' casts keep exactly
    std::vector<float> h(n);
    cudaCheck(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
    for (auto &x : h) x = __bfloat162float(__float2bfloat16_rn(x));
    cudaCheck(cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice));
}
static int run_attention(int T, int hd, int H, int KV, uint64_t seed, int flash, int chunk) {
    uint64_t r = seed;
    size_t nq = (size_t)T * H * hd, nk = (size_t)T * KV * hd;
    float sc = flash ? 2.f : 1.f;   // flash: larger scores, a peakier softmax
    float *q = random_device(nq, &r, sc), *k = random_device(nk, &r, sc), *v = random_device(nk, &r, 1), *dy = random_device(nq, &r, 1);
    float *y, *lse, *dq, *D, *dk, *dv;
    int *ds = NULL, *de = NULL;
    std::vector<int> tok(T), hds(T), hde(T);
    if (chunk) {   // documents: a BOS at 1 in 300 tokens in the first half (long ones, cut every chunk), 1 in 12 after
        for (int n = 0; n < T; n++) tok[n] = rng_uniform(&r) < (n < T / 2 ? 1.0 / 300 : 1.0 / 12) ? BOS_ID : 2 + n % 7;
        int *dtok;
        cudaCheck(cudaMalloc(&dtok, (size_t)T * 4)); cudaCheck(cudaMalloc(&ds, (size_t)T * 4)); cudaCheck(cudaMalloc(&de, (size_t)T * 4));
        cudaCheck(cudaMemcpy(dtok, tok.data(), (size_t)T * 4, cudaMemcpyHostToDevice));
        KERNEL_LAUNCH(doc_bounds, 1, DOC_THREADS, 0, ds, de, dtok, T, T, chunk);
        cudaCheck(cudaGetLastError());
        cudaCheck(cudaMemcpy(hds.data(), ds, (size_t)T * 4, cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(hde.data(), de, (size_t)T * 4, cudaMemcpyDeviceToHost));
        cudaCheck(cudaFree(dtok));
    }
    cudaCheck(cudaMalloc(&y, nq * 4)); cudaCheck(cudaMalloc(&dq, nq * 4)); cudaCheck(cudaMalloc(&dk, nk * 4)); cudaCheck(cudaMalloc(&dv, nk * 4));
    cudaCheck(cudaMalloc(&lse, (size_t)T * H * 4)); cudaCheck(cudaMalloc(&D, (size_t)T * H * 4));
    if (flash) {
        round_bf16_device(q, nq); round_bf16_device(k, nk); round_bf16_device(v, nk);   // dy stays float32, as in training
        __nv_bfloat16 *q16, *k16, *v16, *dy16;
        cudaCheck(cudaMalloc(&q16, nq * 2)); cudaCheck(cudaMalloc(&k16, nk * 2)); cudaCheck(cudaMalloc(&v16, nk * 2)); cudaCheck(cudaMalloc(&dy16, nq * 2));
        LAUNCH1D(to_bf16, nq, q16, q, 1.0f, nq);
        LAUNCH1D(to_bf16, nk, k16, k, 1.0f, nk);
        LAUNCH1D(to_bf16, nk, v16, v, 1.0f, nk);
        with_flash_head_dim(hd, [&](auto HDc) {
            const int HD = decltype(HDc)::value;
            KERNEL_LAUNCH(flash_forward<HD>, dim3(blocks_for(T, FA_BR), H), FA_THREADS, 0, y, lse, q16, k16, v16, ds, T, H, KV);
            LAUNCH1D(flash_backward_prep, (size_t)T * H, dy16, D, dy, y, T, T, H, HD);
            KERNEL_LAUNCH(flash_backward_dq<HD>, dim3(blocks_for(T, FA_BR), H), FA_THREADS, 0, dq, dy16, q16, k16, v16, lse, D, ds, T, H, KV);
            KERNEL_LAUNCH(flash_backward_dkv<HD>, dim3(blocks_for(T, FA_BR), KV), FA_THREADS, 0, dk, dv, dy16, q16, k16, v16, lse, D, de, T, H, KV);
        });
    } else with_head_dim(hd, [&](auto HDc) {
        const int HD = decltype(HDc)::value;
        KERNEL_LAUNCH(attention_forward<HD>, dim3(blocks_for(T, ATT_ROWS), H), ATT_ROWS, 0, y, lse, q, k, v, ds, T, H, KV);
        KERNEL_LAUNCH(attention_backward_dq<HD>, dim3(blocks_for(T, ATT_ROWS), H), ATT_ROWS, 0, dq, D, dy, y, q, k, v, lse, ds, T, H, KV);
        KERNEL_LAUNCH(attention_backward_dkv<HD>, dim3(blocks_for(T, ATT_ROWS), KV), ATT_ROWS, 0, dk, dv, dy, q, k, v, lse, D, de, T, H, KV);
    });
    const float *outs[] = {q, k, v, dy, y, lse, dq, dk, dv};
    size_t ns[] = {nq, nk, nk, nq, nq, (size_t)T * H, nq, nk, nk};
    for (int i = 0; i < 9; i++) {
        std::vector<float> h(ns[i]);
        cudaCheck(cudaMemcpy(h.data(), outs[i], ns[i] * 4, cudaMemcpyDeviceToHost));
        fwrite(h.data(), 4, ns[i], stdout);
    }
    if (chunk)
        for (const std::vector<int> *a : {&tok, &hds, &hde}) {   // exact as float32 (T < 2^24)
            std::vector<float> h(a->begin(), a->end());
            fwrite(h.data(), 4, (size_t)T, stdout);
        }
    return 0;
}

// lt_run: see the header. Matrices are column-major; A is (TA ? k x m : m x k), B (TB ? n x k : k x n).
static int lt_run(int ta, int tb, int m, int n, int k, int f32, float beta, uint64_t seed) {
    cudaDataType_t dt = f32 ? CUDA_R_32F : CUDA_R_16BF;
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n, lda = ar + 3, ldb = br + 1, ldd = m + 2;
    size_t na = (size_t)lda * ac, nb = (size_t)ldb * bc, nd = (size_t)ldd * n, es = f32 ? 4 : 2;
    std::vector<bf16> A(na), B(nb);
    std::vector<uint8_t> C(nd * es), D0;
    for (auto &x : A) x = __float2bfloat16_rn((float)(rng_normal(&seed)));
    for (auto &x : B) x = __float2bfloat16_rn((float)(rng_normal(&seed)));
    for (size_t i = 0; i < nd; i++) {
        float v = beta == 0.f ? NAN : (float)rng_normal(&seed);
        if (f32) memcpy(&C[i * 4], &v, 4);
        else { bf16 b = __float2bfloat16_rn(v); memcpy(&C[i * 2], &b, 2); }
    }
    bf16 *dA, *dB;
    void *dC, *ws;
    cudaCheck(cudaMalloc(&dA, na * 2)); cudaCheck(cudaMalloc(&dB, nb * 2)); cudaCheck(cudaMalloc(&dC, nd * es)); cudaCheck(cudaMalloc(&ws, 1 << 20));
    cudaCheck(cudaMemcpy(dA, A.data(), na * 2, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(dB, B.data(), nb * 2, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(dC, C.data(), nd * es, cudaMemcpyHostToDevice));
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulPreference_t pref;
    int32_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint64_t wsb = 1 << 20;
    cublasCheck(cublasLtCreate(&h));
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    cublasCheck(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ar, ac, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, br, bc, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, dt, m, n, ldd));
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)));
    cublasLtMatmulHeuristicResult_t res;
    int got = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, ld, ld, pref, 1, &res, &got));
    float alpha = 0.75f;
    cublasCheck(cublasLtMatmul(h, desc, &alpha, dA, la, dB, lb, &beta, dC, ld, dC, ld, &res.algo, ws, wsb, 0));
    D0 = C;
    cudaCheck(cudaMemcpy(C.data(), dC, nd * es, cudaMemcpyDeviceToHost));
    auto val = [&](const std::vector<uint8_t> &v, size_t i) {
        if (f32) { float f; memcpy(&f, &v[i * 4], 4); return f; }
        bf16 b; memcpy(&b, &v[i * 2], 2); return __bfloat162float(b);
    };
    for (int j = 0; j < n; j++)
        for (int i = m; i < ldd; i++)
            if (memcmp(&C[((size_t)j * ldd + i) * es], &D0[((size_t)j * ldd + i) * es], es)) { printf("padding\n"); return 1; }
    printf("%d %d %d\n", m, n, k);
    for (int j = 0; j < ac; j++) for (int i = 0; i < ar; i++) printf("%a%c", __bfloat162float(A[(size_t)j * lda + i]), i == ar - 1 && j == ac - 1 ? '\n' : ' ');
    for (int j = 0; j < bc; j++) for (int i = 0; i < br; i++) printf("%a%c", __bfloat162float(B[(size_t)j * ldb + i]), i == br - 1 && j == bc - 1 ? '\n' : ' ');
    for (int j = 0; j < n; j++) for (int i = 0; i < m; i++) printf("%a%c", val(D0, (size_t)j * ldd + i), i == m - 1 && j == n - 1 ? '\n' : ' ');
    for (int j = 0; j < n; j++) for (int i = 0; i < m; i++) printf("%a%c", val(C, (size_t)j * ldd + i), i == m - 1 && j == n - 1 ? '\n' : ' ');
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la)); cublasCheck(cublasLtMatrixLayoutDestroy(lb)); cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
    cublasCheck(cublasLtDestroy(h));
    return 0;
}

// lt_fault: one bad cuBLASLt call on a 4 x 4 x 4 bf16 GEMM: an ld under the rows, an fp32 operand, B's layout with
// another k, an epilogue attribute, C's layout other than D's, an algorithm the heuristic did not return, an A 2 bytes
// past an allocation's start (under the 16 bytes every cuBLASLt operand needs), one 16 bytes past it (under the
// default 256-byte alignment the heuristic assumed); batches: A's layout with
// BATCH_COUNT 2 and the others 1, every layout with 2 entries but D's stride 0 (overlapping entries), the ORDER attribute
static int lt_fault(const char *what) {
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t l16, l32, l45, lw;
    cublasLtMatmulPreference_t pref;
    bf16 *d;
    cudaCheck(cudaMalloc(&d, 256 * 2));
    cublasCheck(cublasLtCreate(&h));
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    if (!strcmp(what, "ld")) cublasCheck(cublasLtMatrixLayoutCreate(&lw, CUDA_R_16BF, 4, 4, 3));
    if (!strcmp(what, "attr")) { int32_t e = 1; cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e))); }
    cublasCheck(cublasLtMatrixLayoutCreate(&l16, CUDA_R_16BF, 4, 4, 4));
    cublasCheck(cublasLtMatrixLayoutCreate(&l32, CUDA_R_32F, 4, 4, 4));
    cublasCheck(cublasLtMatrixLayoutCreate(&l45, CUDA_R_16BF, 5, 4, 5));
    int32_t two = 2, order = 0;
    int64_t stride16 = 16, stride0 = 0;
    if (!strcmp(what, "layout_attr")) cublasCheck(cublasLtMatrixLayoutSetAttribute(l16, CUBLASLT_MATRIX_LAYOUT_ORDER, &order, sizeof(order)));
    if (!strcmp(what, "batch") || !strcmp(what, "overlap")) {
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l16, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &two, sizeof(two)));
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l16, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, !strcmp(what, "batch") ? &stride16 : &stride0, sizeof(int64_t)));
    }
    if (!strcmp(what, "overlap")) {   // A and B (l32 below) as l16, D's stride 0
        cublasCheck(cublasLtMatrixLayoutDestroy(l32));
        cublasCheck(cublasLtMatrixLayoutCreate(&l32, CUDA_R_16BF, 4, 4, 4));
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l32, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &two, sizeof(two)));
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l32, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride16, sizeof(stride16)));
    }
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulHeuristicResult_t res;
    int got = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(h, desc, l16, l16, l16, l16, pref, 1, &res, &got));
    float one = 1, zero = 0;
    int type = !strcmp(what, "type"), dims = !strcmp(what, "dims"), cd = !strcmp(what, "cd");
    if (!strcmp(what, "algo")) res.algo.data[0] = 0;
    const bf16 *a = !strcmp(what, "align") ? d + 1 : !strcmp(what, "align16") ? d + 8 : d;   // 2 bytes / 16 bytes past the start
    if (!strcmp(what, "batch")) {   // A with 2 entries, B, C, D with 1
        cublasLtMatrixLayout_t one16;
        cublasCheck(cublasLtMatrixLayoutCreate(&one16, CUDA_R_16BF, 4, 4, 4));
        cublasCheck(cublasLtMatmul(h, desc, &one, a, l16, d, one16, &zero, d, one16, d, one16, &res.algo, NULL, 0, 0));
    } else if (!strcmp(what, "overlap"))   // A, B 2 entries 16 apart; C = D 2 entries at one place
        cublasCheck(cublasLtMatmul(h, desc, &one, a, l32, d, l32, &zero, d, l16, d, l16, &res.algo, NULL, 0, 0));
    else cublasCheck(cublasLtMatmul(h, desc, &one, a, type ? l32 : l16, d, dims ? l45 : l16, &zero, d, cd ? l32 : l16, d, l16, &res.algo, NULL, 0, 0));
    printf("no fault\n");
    return 0;
}

// --- stream capture and graphs (dev/cuda_cpu.h section 8b) ---
// k_mix: x = a * x + in (a passed by value: the capture keeps the value it had); k_squash: x = x / (1 + |x|) + z
__global__ void k_mix(float *x, const float *in, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = a * x[i] + in[i];
}
__global__ void k_squash(float *x, const float *z, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] / (1.0f + fabsf(x[i])) + z[i];
}

struct GraphRig {   // the sequence's buffers: device x, y, z, in, w (32 x 32 each); pinned host in, out
    float *x, *y, *z, *in, *w, *h_in, *h_out;
    cublasHandle_t blas;
};
static const int GN = 32 * 32;
static void rig_start(GraphRig *g) {   // the same start for the eager and the replayed runs
    uint64_t r = 7;
    std::vector<float> h(GN);
    for (float &v : h) v = (float)(rng_uniform(&r) * 2 - 1);
    cudaCheck(cudaMemcpy(g->x, h.data(), GN * 4, cudaMemcpyHostToDevice));
    for (float &v : h) v = (float)(rng_uniform(&r) * 0.2 - 0.1);
    cudaCheck(cudaMemcpy(g->w, h.data(), GN * 4, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemset(g->z, 0x3c, GN * 4));
}
// rig_sequence: one step; the host fills h_in before it and reads h_out after it
static void rig_sequence(GraphRig *g, float a) {
    float one = 1, zero = 0;
    cudaCheck(cudaMemcpyAsync(g->in, g->h_in, GN * 4, cudaMemcpyHostToDevice, cudaStreamPerThread));
    KERNEL_LAUNCH(k_mix, 4, 256, 0, g->x, g->in, a, GN);
    cublasCheck(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_T, 32, 32, 32, &one, g->x, 32, g->w, 32, &zero, g->y, 32));
    cudaCheck(cudaMemcpyAsync(g->x, g->y, GN * 4, cudaMemcpyDeviceToDevice, cudaStreamPerThread));
    cudaCheck(cudaMemsetAsync(g->z, 0, GN * 2, cudaStreamPerThread));   // the first half of z
    KERNEL_LAUNCH(k_squash, 4, 256, 0, g->x, g->z, GN);
    cudaCheck(cudaMemcpyAsync(g->h_out, g->x, GN * 4, cudaMemcpyDeviceToHost, cudaStreamPerThread));
}
static void rig_input(GraphRig *g, int step) { for (int i = 0; i < GN; i++) g->h_in[i] = (float)((i * 37 + step * 11) % 97) / 97.0f - 0.5f; }

static int check_graph(int n) {
    GraphRig g;
    float **dev[] = {&g.x, &g.y, &g.z, &g.in, &g.w};
    for (float **d : dev) cudaCheck(cudaMalloc(d, GN * 4));
    cudaCheck(cudaMallocHost(&g.h_in, GN * 4));
    cudaCheck(cudaMallocHost(&g.h_out, GN * 4));
    cublasCheck(cublasCreate(&g.blas));
    cublasCheck(cublasSetStream(g.blas, cudaStreamPerThread));
    void *ws;   // the handle's own workspace, so that a capture never makes cuBLAS allocate
    cudaCheck(cudaMalloc(&ws, 1 << 20));
    cublasCheck(cublasSetWorkspace(g.blas, ws, 1 << 20));
    std::vector<float> seen[2], last[2];
    for (int mode = 0; mode < 2; mode++) {   // 0: eager, 1: captured once, replayed
        rig_start(&g);
        float a = 0.75f;
        cudaGraph_t graph = NULL;
        cudaGraphExec_t exec = NULL;
        if (mode) {
            cudaStreamCaptureStatus st;
            cudaCheck(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal));
            cudaCheck(cudaStreamIsCapturing(cudaStreamPerThread, &st));
            if (st != cudaStreamCaptureStatusActive) { printf("cudaStreamIsCapturing: not active during the capture\n"); return 1; }
            rig_sequence(&g, a);
            cudaCheck(cudaStreamEndCapture(cudaStreamPerThread, &graph));
            cudaCheck(cudaGraphInstantiate(&exec, graph, 0));
            a = 99.0f;   // the captured launch keeps 0.75
        }
        for (int step = 0; step < n; step++) {
            rig_input(&g, step);
            if (mode) cudaCheck(cudaGraphLaunch(exec, cudaStreamPerThread));
            else rig_sequence(&g, a);
            cudaCheck(cudaStreamSynchronize(cudaStreamPerThread));
            seen[mode].insert(seen[mode].end(), g.h_out, g.h_out + GN);
        }
        last[mode].resize(GN);
        cudaCheck(cudaMemcpy(last[mode].data(), g.x, GN * 4, cudaMemcpyDeviceToHost));
        if (mode) { cudaCheck(cudaGraphExecDestroy(exec)); cudaCheck(cudaGraphDestroy(graph)); }
    }
    if (memcmp(seen[0].data(), seen[1].data(), seen[0].size() * 4) || memcmp(last[0].data(), last[1].data(), GN * 4)) {
        for (size_t i = 0; i < seen[0].size(); i++)
            if (memcmp(&seen[0][i], &seen[1][i], 4)) { printf("step %zu element %zu: eager %a, replayed %a\n", i / GN, i % GN, seen[0][i], seen[1][i]); break; }
        return 1;
    }
    printf("ok %d\n", n);
    return 0;
}

// graph_fault: one thing a capture forbids (inside a capture of the default stream), or a graph misused
static int graph_fault(const char *what) {
    float *d, host[64];
    cudaGraph_t graph;
    cudaGraphExec_t exec = NULL;
    cudaCheck(cudaMalloc(&d, 256 * 4));
    cublasHandle_t blas;
    cublasCheck(cublasCreate(&blas));   // its stream never set: the legacy default stream
    if (!strcmp(what, "end_unbegun")) cudaCheck(cudaStreamEndCapture(cudaStreamPerThread, &graph));
    if (!strcmp(what, "uninstantiated")) cudaCheck(cudaGraphLaunch(exec, cudaStreamPerThread));
    if (!strcmp(what, "global")) cudaCheck(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeGlobal));
    if (!strcmp(what, "legacy_step")) {   // outside any capture, but inside a training step
        float one = 1, zero = 0;
        EMU_MARK("step");
        cublasCheck(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, d, 8, d + 64, 8, &zero, d + 128, 8));
    }
    if (!strcmp(what, "no_workspace")) cublasCheck(cublasSetStream(blas, cudaStreamPerThread));
    cudaCheck(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal));
    KERNEL_LAUNCH(k_nop, 1, 32, 0, d);
    if (!strcmp(what, "memcpy")) cudaCheck(cudaMemcpy(d, host, sizeof(host), cudaMemcpyHostToDevice));
    else if (!strcmp(what, "sync")) cudaCheck(cudaDeviceSynchronize());
    else if (!strcmp(what, "stream_sync")) cudaCheck(cudaStreamSynchronize(cudaStreamPerThread));
    else if (!strcmp(what, "d2h_pageable")) cudaCheck(cudaMemcpyAsync(host, d, sizeof(host), cudaMemcpyDeviceToHost, cudaStreamPerThread));
    else if (!strcmp(what, "h2d_pageable")) cudaCheck(cudaMemcpyAsync(d, host, sizeof(host), cudaMemcpyHostToDevice, cudaStreamPerThread));
    else if (!strcmp(what, "malloc")) { float *e; cudaCheck(cudaMalloc(&e, 64)); }
    else if (!strcmp(what, "twice")) cudaCheck(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal));
    else if (!strcmp(what, "legacy_gemm") || !strcmp(what, "no_workspace")) {
        float one = 1, zero = 0;
        cublasCheck(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, d, 8, d + 64, 8, &zero, d + 128, 8));
    }
    cudaCheck(cudaStreamEndCapture(cudaStreamPerThread, &graph));
    cudaCheck(cudaGraphInstantiate(&exec, graph, 0));
    if (!strcmp(what, "destroyed")) {
        cudaCheck(cudaGraphExecDestroy(exec));
        cudaCheck(cudaGraphLaunch(exec, cudaStreamPerThread));
    }
    printf("no fault\n");
    return 0;
}

// lt_batch: D_i = A_i B_i^T (i < 3; 5 x 6 x 7, bf16 A and B, float32 D) as one strided batch and as 3 matmuls
static int lt_batch(void) {
    const int m = 5, n = 6, k = 7, nb = 3;
    size_t na = (size_t)m * k, nbb = (size_t)n * k, nd = (size_t)m * n;
    std::vector<bf16> A(nb * na), B(nb * nbb);
    uint64_t seed = 77;
    for (auto &x : A) x = __float2bfloat16_rn((float)rng_normal(&seed));
    for (auto &x : B) x = __float2bfloat16_rn((float)rng_normal(&seed));
    bf16 *dA, *dB;
    float *dD, *dE;
    cudaCheck(cudaMalloc(&dA, nb * na * 2)); cudaCheck(cudaMalloc(&dB, nb * nbb * 2));
    cudaCheck(cudaMalloc(&dD, nb * nd * 4)); cudaCheck(cudaMalloc(&dE, nb * nd * 4));
    cudaCheck(cudaMemcpy(dA, A.data(), nb * na * 2, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(dB, B.data(), nb * nbb * 2, cudaMemcpyHostToDevice));
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld, la1, lb1, ld1;
    int32_t opb = CUBLAS_OP_T, bc = nb;
    int64_t sa = (int64_t)na, sb = (int64_t)nbb, sd = (int64_t)nd;
    cublasCheck(cublasLtCreate(&h));
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    cublasCheck(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, m, k, m)); cublasCheck(cublasLtMatrixLayoutCreate(&la1, CUDA_R_16BF, m, k, m));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, n, k, n)); cublasCheck(cublasLtMatrixLayoutCreate(&lb1, CUDA_R_16BF, n, k, n));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, m)); cublasCheck(cublasLtMatrixLayoutCreate(&ld1, CUDA_R_32F, m, n, m));
    cublasLtMatrixLayout_t lay[3] = {la, lb, ld};
    int64_t st[3] = {sa, sb, sd};
    for (int i = 0; i < 3; i++) {
        cublasCheck(cublasLtMatrixLayoutSetAttribute(lay[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
        cublasCheck(cublasLtMatrixLayoutSetAttribute(lay[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st[i], sizeof(st[i])));
    }
    float one = 1, zero = 0;
    cublasCheck(cublasLtMatmul(h, desc, &one, dA, la, dB, lb, &zero, dD, ld, dD, ld, NULL, NULL, 0, 0));
    for (int i = 0; i < nb; i++)
        cublasCheck(cublasLtMatmul(h, desc, &one, dA + i * na, la1, dB + i * nbb, lb1, &zero, dE + i * nd, ld1, dE + i * nd, ld1, NULL, NULL, 0, 0));
    std::vector<float> D(nb * nd), E(nb * nd);
    cudaCheck(cudaMemcpy(D.data(), dD, nb * nd * 4, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(E.data(), dE, nb * nd * 4, cudaMemcpyDeviceToHost));
    printf("%s\n", memcmp(D.data(), E.data(), nb * nd * 4) ? "differ" : "same");
    return 0;
}

// check_gemm_bits: the loops' GEMM is the scalar loop C(i,j) = alpha s (+ beta C(i,j)), s += a b for p = 0..k-1
static int check_gemm_bits(void) {
#ifdef GOLF_EMU_CBLAS
    printf("cblas\n");
    return 0;
#else
    cublasHandle_t h;
    cublasCheck(cublasCreate(&h));
    uint64_t r = 19;
    static const int shapes[][3] = {{77, 41, 300}, {1, 1, 1}, {33, 7, 256}, {64, 12, 513}, {5, 130, 3}, {40, 6, 0}};
    for (const auto &sh : shapes)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bc = 0; bc < 2; bc++) {
                    int m = sh[0], n = sh[1], k = sh[2], lda = (ta ? k : m) + 1, ldb = (tb ? n : k) + 2, ldc = m + 3;
                    std::vector<float> A((size_t)lda * (ta ? m : k) + 1), B((size_t)ldb * (tb ? k : n) + 1), C((size_t)ldc * n), want;
                    for (auto &x : A) x = (float)(rng_uniform(&r) * 2 - 1) * (rng_uniform(&r) < 0.1 ? 1e4f : 1.f);   // wide range: rounding matters
                    for (auto &x : B) x = (float)(rng_uniform(&r) * 2 - 1);
                    for (auto &x : C) x = (float)(rng_uniform(&r) * 2 - 1);
                    float alpha = 0.7f, beta = bc ? -1.3f : 0.f;
                    want = C;
                    for (int j = 0; j < n; j++)
                        for (int i = 0; i < m; i++) {
                            float s = 0;
                            for (int p = 0; p < k; p++) s += (ta ? A[p + (size_t)i * lda] : A[i + (size_t)p * lda]) * (tb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb]);
                            float &c = want[i + (size_t)j * ldc];
                            c = beta == 0.f ? alpha * s : alpha * s + beta * c;
                        }
                    float *dA, *dB, *dC;
                    cudaCheck(cudaMalloc(&dA, A.size() * 4)); cudaCheck(cudaMalloc(&dB, B.size() * 4)); cudaCheck(cudaMalloc(&dC, C.size() * 4));
                    cudaCheck(cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice));
                    cudaCheck(cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice));
                    cudaCheck(cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice));
                    cublasCheck(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc));
                    cudaCheck(cudaMemcpy(C.data(), dC, C.size() * 4, cudaMemcpyDeviceToHost));
                    cudaFree(dA); cudaFree(dB); cudaFree(dC);
                    for (size_t e = 0; e < C.size(); e++)
                        if (memcmp(&C[e], &want[e], 4)) {
                            printf("%dx%dx%d op %d%d beta %g: entry %zu is %a, the scalar loop gives %a\n", m, n, k, ta, tb, beta, e, C[e], want[e]);
                            return 1;
                        }
                }
    printf("ok\n");
    return 0;
#endif
}

int main(int argc, char **argv) {
    g_golf_prog = "emu_faults";
    if (argc < 2) { fprintf(stderr, "usage: emu_faults FAULT|smem_ok|race|collectives|convert|gemm|ptx|kernels SEED|fused SEED|attention T HD H KV SEED [flash] [docs C]\n"); return 2; }
    const char *w = argv[1];
    float *x;
    cudaCheck(cudaMalloc(&x, 4096 * 4));
    char host[8192];
    if (!strcmp(w, "partial_barrier")) KERNEL_LAUNCH(k_partial_barrier, 1, 64, 0, x);
    else if (!strcmp(w, "shfl_exited")) KERNEL_LAUNCH(k_shfl_exited, 1, 32, 0, x);
    else if (!strcmp(w, "shfl_absent")) KERNEL_LAUNCH(k_shfl, 1, 48, 0, x, 0xffffffffu);
    else if (!strcmp(w, "mask_self")) KERNEL_LAUNCH(k_shfl, 1, 32, 0, x, 0x1u);
    else if (!strcmp(w, "deadlock")) KERNEL_LAUNCH(k_deadlock, 1, 32, 0, x);
    else if (!strcmp(w, "disagree")) KERNEL_LAUNCH(k_disagree, 1, 32, 0, x);
    else if (!strcmp(w, "threads")) KERNEL_LAUNCH(k_nop, 1, 2048, 0, x);
    else if (!strcmp(w, "grid")) KERNEL_LAUNCH(k_nop, dim3(1, 70000), 32, 0, x);
    else if (!strcmp(w, "smem")) KERNEL_LAUNCH(k_nop, 1, 32, 64 * 1024, x);
    else if (!strcmp(w, "smem_optin")) cudaCheck(cudaFuncSetAttribute(k_nop, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024));
    else if (!strcmp(w, "smem_ok")) {
        cudaCheck(cudaFuncSetAttribute(k_nop, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
        KERNEL_LAUNCH(k_nop, 1, 32, 64 * 1024, x);
        printf("ok\n");
    } else if (!strcmp(w, "memcpy_oob")) cudaCheck(cudaMemcpy(x + 4000, host, 8192, cudaMemcpyHostToDevice));
    else if (!strcmp(w, "memcpy_kind")) cudaCheck(cudaMemcpy(x, x + 16, 64, cudaMemcpyHostToDevice));
    else if (!strcmp(w, "race")) {
        int *o;
        cudaCheck(cudaMalloc(&o, 128 * 4));
        for (int sync = 0; sync < 2; sync++) {
            KERNEL_LAUNCH(k_race, 1, 128, 0, o, sync);
            printf("%016llx\n", (unsigned long long)digest((const float *)o, 128));
        }
    } else if (!strcmp(w, "collectives")) return check_collectives();
    else if (!strcmp(w, "gemm")) return check_gemm();
    else if (!strcmp(w, "gemm_bits")) return check_gemm_bits();
    else if (!strcmp(w, "convert")) {
        double f;
        while (scanf("%lf", &f) == 1) {
            float v = (float)f;
            printf("%04x %04x %08x\n", __float2half_rn(v).x, __float2bfloat16_rn(v).x, golf_f2u(golf_emu::tf32(v)));
        }
    } else if (!strcmp(w, "lt") && argc == 10)
        return lt_run(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), !strcmp(argv[7], "f32"), (float)atof(argv[8]),
                      strtoull(argv[9], NULL, 10));
    else if (!strcmp(w, "lt_fault") && argc == 3) return lt_fault(argv[2]);
    else if (!strcmp(w, "lt_batch")) return lt_batch();
    else if (!strcmp(w, "kernels") && argc == 3) return run_kernels(strtoull(argv[2], NULL, 10));
    else if (!strcmp(w, "fused") && argc == 3) return run_fused(strtoull(argv[2], NULL, 10));
    else if (!strcmp(w, "attention") && argc >= 7) {
        int flash = argc > 7 && !strcmp(argv[7], "flash"), at = 7 + flash, chunk = 0;
        if (argc == at + 2 && !strcmp(argv[at], "docs") && atoi(argv[at + 1]) > 0) chunk = atoi(argv[at + 1]);
        else if (argc != at) { fprintf(stderr, "emu_faults: attention T HD H KV SEED [flash] [docs C]\n"); return 2; }
        return run_attention(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), strtoull(argv[6], NULL, 10), flash, chunk);
    }
    else if (!strcmp(w, "ptx")) return check_ptx();
    else if (!strcmp(w, "graph") && argc == 3) return check_graph(atoi(argv[2]));
    else if (!strcmp(w, "graph_fault") && argc == 3) return graph_fault(argv[2]);
    else if (!strcmp(w, "mma_skip")) KERNEL_LAUNCH(k_mma_skip, 1, 32, 0, x);
    else if (!strcmp(w, "ldmatrix_misaligned")) KERNEL_LAUNCH(k_ldmatrix_misaligned, 1, 32, 0, (uint32_t *)x);
    else if (!strcmp(w, "cp_async_pending")) KERNEL_LAUNCH(k_cp_async_pending, 1, 32, 0, (const float *)x);
    else { fprintf(stderr, "emu_faults: unknown check '%s'\n", w); return 2; }
    return 0;
}
