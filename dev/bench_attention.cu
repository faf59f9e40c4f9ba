// dev/bench_attention.cu — attention-only speed of train_golf.cu's kernels: the bf16 tensor-core flash attention
// (PRECISION=bf16) against the fp32 SIMT kernels (PRECISION=fp32), forward and backward, on the same random inputs
// in one run. Built from train_golf.cu (TESTING), so the kernels and launch shapes are the trainer's own.
//   make dev/bench_attention        nvcc build (needs a GPU to run)
//   make dev/bench_attention_cpu    the CPU build (dev/cuda_cpu.h): the same code at a small shape, a smoke test of
//                                   this driver; its times are the emulator's, not a GPU's
// Usage: dev/bench_attention [--batch B] [--seq T] [--heads H] [--kv-heads KV] [--head-dim HD] [--iters N] [--doc-len L]
//   defaults: 8 x 1024, 8 heads, 4 kv heads, head_dim 64 (the baseline's attention at 65,536 tokens per GPU), 20 iters;
//   --doc-len L: DOC_ATTENTION's training form, the B x T tokens one stream of documents of L tokens (a BOS every L),
//   each cut every T (doc_bounds), the kernels skipping the tiles outside them
// Prints per kernel family: ms per call (mean over N after one warm-up), TFLOP/s, and the ratio flash / SIMT;
// then the largest |flash - SIMT| of y relative to max |y| (bf16 inputs: about 1e-2 expected; a sanity check only,
// the bound-checked comparison is test/test_emu.py's).
// FLOPs: causal pairs P = B H T (T + 1) / 2 (with --doc-len: H sum n (n + 1) / 2 over the segments of n tokens);
// forward 4 HD P (Q K^T and P V); backward 2.5x the forward (dQ, dK, dV plus the score recompute, FlashAttention's
// convention), whatever a kernel actually recomputes.
#define TESTING
#include "../train_golf.cu"

#define bench_die(...) do { fprintf(stderr, "bench_attention: " __VA_ARGS__); fputc('\n', stderr); exit(2); } while (0)

static float *bench_random(size_t n, uint64_t *state) {
    float *h = (float *)galloc(n * 4), *d;
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        h[i] = (float)((double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    cudaCheck(cudaMalloc(&d, n * 4));
    cudaCheck(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static int bench_arg(int argc, char **argv, int *i, const char *name, int *out) {
    if (strcmp(argv[*i], name)) return 0;
    if (*i + 1 >= argc) bench_die("%s needs a value", name);
    char *end;
    long v = strtol(argv[*i + 1], &end, 10);
    if (*end || v < 1 || v > 1 << 20) bench_die("%s '%s' must be a whole number in 1..1048576", name, argv[*i + 1]);
    *out = (int)v;
    *i += 1;
    return 1;
}

int main(int argc, char **argv) {
    int B = 8, T = 1024, H = 8, KV = 4, HD = 64, iters = 20, L = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s [--batch B] [--seq T] [--heads H] [--kv-heads KV] [--head-dim 64|128] [--iters N] [--doc-len L]\n", argv[0]);
            return 0;
        }
        if (!(bench_arg(argc, argv, &i, "--batch", &B) || bench_arg(argc, argv, &i, "--seq", &T) || bench_arg(argc, argv, &i, "--heads", &H) ||
              bench_arg(argc, argv, &i, "--kv-heads", &KV) || bench_arg(argc, argv, &i, "--head-dim", &HD) || bench_arg(argc, argv, &i, "--iters", &iters) ||
              bench_arg(argc, argv, &i, "--doc-len", &L)))
            bench_die("unknown argument '%s' (--help lists them)", argv[i]);
    }
    if (H % KV) bench_die("--heads %d must be a multiple of --kv-heads %d", H, KV);
    if (HD != 64 && HD != 128) bench_die("--head-dim must be 64 or 128 (the flash kernels' head dims)");
    size_t N = (size_t)B * T, nq = N * H * HD, nk = N * KV * HD, nl = (size_t)B * H * T;
    uint64_t seed = 1;
    float *q = bench_random(nq, &seed), *k = bench_random(nk, &seed), *v = bench_random(nk, &seed), *dy = bench_random(nq, &seed);
    float *y, *y2, *lse, *D, *dq, *dk, *dv;
    bf16 *q16, *k16, *v16, *dy16;
    cudaCheck(cudaMalloc(&y, nq * 4)); cudaCheck(cudaMalloc(&y2, nq * 4)); cudaCheck(cudaMalloc(&dq, nq * 4));
    cudaCheck(cudaMalloc(&dk, nk * 4)); cudaCheck(cudaMalloc(&dv, nk * 4));
    cudaCheck(cudaMalloc(&lse, nl * 4)); cudaCheck(cudaMalloc(&D, nl * 4));
    cudaCheck(cudaMalloc(&q16, nq * 2)); cudaCheck(cudaMalloc(&k16, nk * 2)); cudaCheck(cudaMalloc(&v16, nk * 2)); cudaCheck(cudaMalloc(&dy16, nq * 2));
    LAUNCH1D(to_bf16, nq, q16, q, 1.0f, nq);
    LAUNCH1D(to_bf16, nk, k16, k, 1.0f, nk);
    LAUNCH1D(to_bf16, nk, v16, v, 1.0f, nk);
    int *ds = NULL, *de = NULL, AB = B, AT = T;   // --doc-len: one stream of N tokens, its segments from doc_bounds
    double pairs = (double)B * H * T * (T + 1) / 2;
    if (L) {
        int *tok = (int *)galloc(N * sizeof(int)), *dtok;
        for (size_t n = 0; n < N; n++) tok[n] = n % L == 0 ? BOS_ID : 2;
        cudaCheck(cudaMalloc(&dtok, N * sizeof(int))); cudaCheck(cudaMalloc(&ds, N * sizeof(int))); cudaCheck(cudaMalloc(&de, N * sizeof(int)));
        cudaCheck(cudaMemcpy(dtok, tok, N * sizeof(int), cudaMemcpyHostToDevice));
        KERNEL_LAUNCH(doc_bounds, 1, DOC_THREADS, 0, ds, de, dtok, (int)N, (int)N, T);
        cudaCheck(cudaGetLastError());
        pairs = 0;
        for (size_t n = 0; n < N; n += (size_t)L) {   // document [n, end), segments of T from its start
            size_t end = n + L < N ? n + L : N;
            for (size_t s = n; s < end; s += (size_t)T) { double len = (double)((s + T < end ? s + T : end) - s); pairs += (double)H * len * (len + 1) / 2; }
        }
        AB = 1; AT = (int)N;
        free(tok); cudaCheck(cudaFree(dtok));
    }
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0)); cudaCheck(cudaEventCreate(&e1));
    // ms: the mean time of `iters` calls of f after one warm-up call
    auto ms = [&](auto f) {
        f();
        cudaCheck(cudaDeviceSynchronize());
        cudaCheck(cudaEventRecord(e0));
        for (int it = 0; it < iters; it++) f();
        cudaCheck(cudaEventRecord(e1));
        cudaCheck(cudaEventSynchronize(e1));
        float t;
        cudaCheck(cudaEventElapsedTime(&t, e0, e1));
        cudaCheck(cudaGetLastError());
        return (double)t / iters;
    };
    double t[4];
    with_flash_head_dim(HD, [&](auto HDc) {
        const int hd = decltype(HDc)::value;
        dim3 gq(blocks_for(AT, FA_BR), AB * H), gk(blocks_for(AT, FA_BR), AB * KV), sq(blocks_for(AT, ATT_ROWS), AB * H), sk(blocks_for(AT, ATT_ROWS), AB * KV);
        t[0] = ms([&] { KERNEL_LAUNCH(flash_forward<hd>, gq, FA_THREADS, 0, y, lse, q16, k16, v16, ds, AT, H, KV); });
        t[1] = ms([&] {
            LAUNCH1D(flash_backward_prep, N * H, dy16, D, dy, y, (int)N, AT, H, hd);
            KERNEL_LAUNCH(flash_backward_dq<hd>, gq, FA_THREADS, 0, dq, dy16, q16, k16, v16, lse, D, ds, AT, H, KV);
            KERNEL_LAUNCH(flash_backward_dkv<hd>, gk, FA_THREADS, 0, dk, dv, dy16, q16, k16, v16, lse, D, de, AT, H, KV);
        });
        t[2] = ms([&] { KERNEL_LAUNCH(attention_forward<hd>, sq, ATT_ROWS, 0, y2, lse, q, k, v, ds, AT, H, KV); });
        t[3] = ms([&] {
            KERNEL_LAUNCH(attention_backward_dq<hd>, sq, ATT_ROWS, 0, dq, D, dy, y2, q, k, v, lse, ds, AT, H, KV);
            KERNEL_LAUNCH(attention_backward_dkv<hd>, sk, ATT_ROWS, 0, dk, dv, dy, q, k, v, lse, D, de, AT, H, KV);
        });
    });
    float *hy = (float *)galloc(nq * 4), *hy2 = (float *)galloc(nq * 4);
    cudaCheck(cudaMemcpy(hy, y, nq * 4, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hy2, y2, nq * 4, cudaMemcpyDeviceToHost));
    double diff = 0, big = 0;
    for (size_t i = 0; i < nq; i++) { diff = fmax(diff, fabs((double)hy[i] - hy2[i])); big = fmax(big, fabs((double)hy2[i])); }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    double fwd = 4.0 * HD * pairs, bwd = 2.5 * fwd;
#ifdef GOLF_CPU
    const char *where = "the CPU build (emulated: times are not a GPU's)";
#else
    const char *where = prop.name;
#endif
    printf("attention %d x %d, %d heads (%d kv), head_dim %d, causal%s, %d iters, on %s\n", B, T, H, KV, HD, L ? ", in documents (--doc-len)" : "", iters, where);
    printf("  %-26s %10s %10s %9s\n", "kernels", "ms", "TFLOP/s", "vs SIMT");
    printf("  %-26s %10.3f %10.2f %8.2fx\n", "flash forward (bf16)", t[0], fwd / t[0] * 1e-9, t[2] / t[0]);
    printf("  %-26s %10.3f %10.2f %8.2fx\n", "flash backward (bf16)", t[1], bwd / t[1] * 1e-9, t[3] / t[1]);
    printf("  %-26s %10.3f %10.2f %9s\n", "SIMT forward (fp32)", t[2], fwd / t[2] * 1e-9, "");
    printf("  %-26s %10.3f %10.2f %9s\n", "SIMT backward (fp32)", t[3], bwd / t[3] * 1e-9, "");
    printf("  max |y_flash - y_simt| / max |y| = %.3e\n", big > 0 ? diff / big : diff);
    printf("bench_attention fwd_tflops:%.3f bwd_tflops:%.3f fwd_ms:%.4f bwd_ms:%.4f simt_fwd_ms:%.4f simt_bwd_ms:%.4f rel_diff:%.3e\n", fwd / t[0] * 1e-9,
           bwd / t[1] * 1e-9, t[0], t[1], t[2], t[3], big > 0 ? diff / big : diff);
    free(hy); free(hy2);
    return big > 0 && diff / big < 0.05 ? 0 : 1;
}
