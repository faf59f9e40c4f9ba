// test/train_host.cu — train_golf.cu's host code, callable without a GPU, for test/test_train_host.py.
//   train_host config [--flag value ...]                 the resolved config as NAME=value lines (exit 2 on bad flags)
//   train_host validate WORLD [--flag value ...]          "ok" or the problem (exit 1)
//   train_host batches PATTERN BATCH_TOKENS SEQ_LEN WORLD STEPS VOCAB
//       per step, the global batch as every rank would read it, micro-step by micro-step: a line "x ..." and "y ..."
//   train_host schedule [--flag value ...]                lines "lr STEP ELAPSED_MS VALUE", "qat STEP ELAPSED_MS 0|1" and
//                                                         "mu STEP VALUE" on a grid
//   train_host checkpoint OUT [--flag value ...]          the seeded init written as a golf checkpoint
//   train_host export CKPT OUT.golf [--flag value ...]    the blob train_golf's export writes for QUANT (GPTQ with
//                                                         GPTQ_RESERVE_SECONDS > 0, on DATA_PATH's train shards)
//   train_host dist PATTERN LOCAL REACHED_RANK TIMEOUT_S   started N times by `mpirun -np N` (built with USE_MPI) or
//       torchrun-style (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in each process's environment): every
//       rank prints "rank R world W local L launch M x0 X stop S sum U id HEX": its local rank, how it was started,
//       the first input token of its step-0 span of LOCAL tokens, the stop flag all ranks agree on when only rank
//       REACHED_RANK reached the cap (-1: none), the sum over ranks of rank + 1, and the 128 id bytes (NCCL's id
//       size) that rank 0 drew, as this rank received them; the bootstrap waits at most TIMEOUT_S seconds
#define TESTING
#include "../train_golf.cu"

static int flags_from(int argc, char **argv, int first, TrainConfig *c) {
    // config_parse reads argv[1..]: hand it "prog" + the flags
    char **v = (char **)galloc((size_t)(argc - first + 2) * sizeof(char *));
    int n = 0;
    v[n++] = argv[0];
    for (int i = first; i < argc; i++) v[n++] = argv[i];
    config_parse(c, n, v);
    free(v);
    return 0;
}

static void print_line(const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    vprintf(msg, ap);
    va_end(ap);
    putchar('\n');
}

int main(int argc, char **argv) {
    g_golf_prog = "train_host";
    if (argc < 2) { fprintf(stderr, "usage: train_host config|validate|batches|schedule|checkpoint|export|dist ...\n"); return 2; }
    const char *cmd = argv[1];
    TrainConfig c;
    if (strcmp(cmd, "config") == 0) {
        flags_from(argc, argv, 2, &c);
        config_print(&c, print_line);
        return 0;
    }
    if (strcmp(cmd, "validate") == 0 && argc >= 3) {
        flags_from(argc, argv, 3, &c);
        const char *bad = config_validate(&c, atoi(argv[2]));
        printf("%s\n", bad ? bad : "ok");
        return bad ? 1 : 0;
    }
    if (strcmp(cmd, "batches") == 0 && argc == 8) {
        size_t batch = (size_t)atol(argv[3]);
        int world = atoi(argv[5]), steps = atoi(argv[6]), vocab = atoi(argv[7]), accum = 8 / world;
        size_t local = batch / (size_t)(world * accum);
        TokenStream *s = (TokenStream *)galloc((size_t)world * sizeof(TokenStream));
        for (int r = 0; r < world; r++) stream_open(&s[r], argv[2], vocab);   // every rank reads the whole stream
        int32_t *chunk = (int32_t *)galloc((local + 1) * world * 4), *x = (int32_t *)galloc(local * 4), *y = (int32_t *)galloc(local * 4);
        for (int step = 0; step < steps; step++) {
            Bytes xs = {NULL, 0, 0}, ys = {NULL, 0, 0};
            char num[16];
            for (int m = 0; m < accum; m++)
                for (int r = 0; r < world; r++) {
                    next_batch(&s[r], chunk, x, y, local, r, world);
                    for (size_t k = 0; k < local; k++) {
                        snprintf(num, sizeof(num), " %d", x[k]); bytes_put(&xs, num, strlen(num));
                        snprintf(num, sizeof(num), " %d", y[k]); bytes_put(&ys, num, strlen(num));
                    }
                }
            printf("x%.*s\ny%.*s\n", (int)xs.n, (const char *)xs.p, (int)ys.n, (const char *)ys.p);
            free(xs.p); free(ys.p);
        }
        for (int r = 0; r < world; r++) stream_close(&s[r]);
        return 0;
    }
    if (strcmp(cmd, "schedule") == 0) {
        flags_from(argc, argv, 2, &c);
        for (int step = 0; step <= c.iterations + 2; step += c.iterations > 50 ? c.iterations / 50 : 1)
            for (double ms = 0; ms <= 1200.0 * c.max_wallclock_seconds + 1; ms += c.max_wallclock_seconds > 0 ? 100.0 * c.max_wallclock_seconds : 1e9)
                printf("lr %d %.6f %.17g\nqat %d %.6f %d\n", step, ms, lr_mul(&c, step, ms), step, ms, qat_active(&c, step, ms));
        for (int step = 0; step <= c.muon_momentum_warmup_steps + 5; step++) printf("mu %d %.17g\n", step, muon_momentum_at(&c, step));
        return 0;
    }
    if (strcmp(cmd, "checkpoint") == 0 && argc >= 3) {
        flags_from(argc, argv, 3, &c);
        GolfModel m;
        Config mc;
        const char *bad = model_config(&c, &mc);
        if (bad) golf_die("config: %s", bad);
        model_layout(&m, &mc);
        init_params(&m, &c);
        checkpoint_write(argv[2], &m, 0);
        model_free(&m);
        return 0;
    }
    if (strcmp(cmd, "export") == 0 && argc >= 4) {
        flags_from(argc, argv, 4, &c);
        GolfModel m;
        model_load_file(&m, argv[2], NULL);
        Bytes blob;
        export_blob(&m, &c, &blob);
        FILE *f = fopen(argv[3], "wb");
        if (!f || fwrite(blob.p, 1, blob.n, f) != blob.n || fclose(f) != 0) golf_die("cannot write '%s'", argv[3]);
        free(blob.p);
        model_free(&m);
        return 0;
    }
    if (strcmp(cmd, "dist") == 0 && argc == 6) {
        Dist dd = dist_init(&argc, &argv);
        size_t local = (size_t)atol(argv[3]);
        uint8_t id[128];
        uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)wall_ms();
        for (int k = 0; k < 128; k++) id[k] = dd.rank == 0 ? (uint8_t)(rng_next(&seed) >> 56) : 0;
        dist_bootstrap(&dd, id, sizeof(id), atof(argv[5]));
        TokenStream s;
        stream_open(&s, argv[2], 65536);
        int32_t *chunk = (int32_t *)galloc((local + 1) * dd.world * 4), *x = (int32_t *)galloc(local * 4), *y = (int32_t *)galloc(local * 4);
        next_batch(&s, chunk, x, y, local, dd.rank, dd.world);
        double stop = dd.rank == atoi(argv[4]) ? 1 : 0;   // main's agreed stop: any rank's flag, the maximum over the ranks
        dist_reduce(&dd, &stop, 1, RED_MAX);
        double sum = dd.rank + 1;
        all_reduce_doubles(&dd, &sum, 1);
        char hex[257];
        for (int k = 0; k < 128; k++) snprintf(hex + 2 * k, 3, "%02x", id[k]);
        printf("rank %d world %d local %d launch %s x0 %d stop %d sum %.17g id %s\n", dd.rank, dd.world, dd.local_rank, DIST_MODE_NAME[dd.mode],
               x[0], (int)stop, sum, hex);
        fflush(stdout);
        stream_close(&s);
        dist_finish(&dd);
        return 0;
    }
    fprintf(stderr, "train_host: unknown or incomplete command '%s'\n", cmd);
    return 2;
}
