/*
 * train_golf.cu — the golf trainer: the baseline model of openai/parameter-golf train_gpt.py, trained on
 * FineWeb shards within a wallclock cap on 1..8 GPUs, exported as a golf blob and scored.
 *
 * Contract
 *   ./train_golf [--name value ...]          one GPU
 *   mpirun -np N ./train_golf                N GPUs (built with MPI + NCCL); N must divide 8
 *   Every hyperparameter has train_gpt.py's environment-variable name and default (NUM_LAYERS, MATRIX_LR, ...);
 *   a flag `--num-layers 9` (the name lowercased, '_' -> '-') beats the environment. `--help` lists them all.
 *   The model and its math are test/reference.py's (and train_gpt.py's); the parameter table, the checkpoint
 *   and blob formats and the val_bpb byte tables come from golf_infer.c, the blob encoder from
 *   dev/golf_export.c, both included here. Logs follow train_gpt.py:
 *     step:N/M train_loss:x train_time:ms step_avg:ms, step:N/M val_loss:x val_bpb:y ...,
 *     final_<scheme>_roundtrip val_loss:x val_bpb:y, and the artifact byte count.
 *   Outputs (rank 0): logs/RUN_ID.txt, OUT_DIR/final_model.ckpt (float32), OUT_DIR/final_model.golf.
 *   Export options (test/reference.py has the same QAT and EMA): QAT=1 trains the matrices on their fake-quantized
 *   values from QAT_START_FRAC of training on (straight-through gradient); EMA_DECAY > 0 evaluates, saves and exports
 *   the EMA of the weights; GPTQ_RESERVE_SECONDS > 0 stops training that much before MAX_WALLCLOCK_SECONDS and
 *   exports with golf_export's GPTQ, calibrated on the CPU of rank 0 on the first GPTQ_TOKENS training tokens.
 *
 *   Numerics of this version: fp32 master weights, activations and gradients; GEMMs in cuBLAS fp32 (TF32
 *   tensor cores with MATH_TF32=1); attention is a fused online-softmax kernel per query (no T x T buffer).
 *   The init draws from golf's own generator (not PyTorch's): INIT_CKPT starts from a golf checkpoint, e.g.
 *   one written by `test/reference.py init`, for step-by-step comparisons.
 *
 * Contents
 *   1. checks          2. config (one table)        3. parameters and optimizer classes
 *   4. kernels         5. model: forward, backward  6. optimizers (Adam, Muon)
 *   7. data            8. evaluation                9. multi-GPU          10. checkpoint and export
 *   11. main (#ifndef TESTING)
 */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <sys/time.h>
#ifdef USE_MPI
#define OMPI_SKIP_MPICXX 1   // the C API only
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif
#ifdef USE_NCCL
#include <nccl.h>
#endif
#define GOLF_EXPORT_NO_MAIN
#include "dev/golf_export.c"   // includes golf_infer.c

// ----------------------------------------------------------------------------------------------------
// 1. checks

#define cudaCheck(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) \
    golf_die("CUDA: %s (%s:%d: %s)\n  hint: is a GPU visible (nvidia-smi)? out of memory: lower TRAIN_BATCH_TOKENS", \
             cudaGetErrorString(e_), __FILE__, __LINE__, #call); } while (0)
#define cublasCheck(call) do { cublasStatus_t s_ = (call); if (s_ != CUBLAS_STATUS_SUCCESS) \
    golf_die("cuBLAS status %d (%s:%d: %s)", (int)s_, __FILE__, __LINE__, #call); } while (0)
#ifdef USE_NCCL
#define ncclCheck(call) do { ncclResult_t r_ = (call); if (r_ != ncclSuccess) \
    golf_die("NCCL: %s (%s:%d: %s)\n  hint: NCCL_DEBUG=INFO shows more", ncclGetErrorString(r_), __FILE__, __LINE__, #call); } while (0)
#endif
#ifdef USE_MPI
#define mpiCheck(call) do { int m_ = (call); if (m_ != MPI_SUCCESS) golf_die("MPI error %d (%s:%d: %s)", m_, __FILE__, __LINE__, #call); } while (0)
#endif

static double wall_ms(void) { struct timeval tv; gettimeofday(&tv, NULL); return tv.tv_sec * 1e3 + tv.tv_usec * 1e-3; }

// ----------------------------------------------------------------------------------------------------
// 2. config: ONE table drives parsing, --help and the printed resolved config

typedef struct {
    char data_path[1024], tokenizer_path[1024], run_id[256], out_dir[1024], init_ckpt[1024], quant[16], quant_clip[16], dump_grads[1024];
    int seed, val_batch_size, val_loss_every, train_log_every, iterations, warmdown_iters, warmup_steps;
    int train_batch_tokens, train_seq_len, vocab_size, num_layers, num_kv_heads, model_dim, num_heads, mlp_mult;
    int tie_embeddings, muon_backend_steps, muon_momentum_warmup_steps, math_tf32, qat, gptq_tokens;
    double qat_start_frac, ema_decay, gptq_reserve_seconds;
    double max_wallclock_seconds, qk_gain_init, rope_base, logit_softcap, embed_lr, head_lr, tied_embed_lr;
    double tied_embed_init_std, matrix_lr, scalar_lr, muon_momentum, muon_momentum_warmup_start, beta1, beta2;
    double adam_eps, grad_clip_norm, sdclip_k;
} TrainConfig;

enum { OPT_INT, OPT_FLOAT, OPT_STR };
typedef struct { const char *name; int type; size_t offset, size; const char *dflt, *help; } ConfigEntry;

#define CI(field, name, d, help) {name, OPT_INT, offsetof(TrainConfig, field), sizeof(int), d, help}
#define CF(field, name, d, help) {name, OPT_FLOAT, offsetof(TrainConfig, field), sizeof(double), d, help}
#define CS(field, name, d, help) {name, OPT_STR, offsetof(TrainConfig, field), sizeof(((TrainConfig *)0)->field), d, help}
static const ConfigEntry CONFIG[] = {
    CS(data_path, "DATA_PATH", "./data/datasets/fineweb10B_sp1024", "folder of fineweb_{train,val}_*.bin shards"),
    CS(tokenizer_path, "TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model", "SentencePiece model for the val_bpb byte tables"),
    CS(run_id, "RUN_ID", "", "log name (logs/RUN_ID.txt); default: a time stamp"),
    CI(seed, "SEED", "1337", "init and data seed"),
    CI(val_batch_size, "VAL_BATCH_SIZE", "524288", "validated as train_gpt.py does; evaluation runs in training-sized batches"),
    CI(val_loss_every, "VAL_LOSS_EVERY", "1000", "validate every N steps (0: only at the end)"),
    CI(train_log_every, "TRAIN_LOG_EVERY", "200", "log the train loss every N steps (and the first 10)"),
    CI(iterations, "ITERATIONS", "20000", "training steps"),
    CI(warmdown_iters, "WARMDOWN_ITERS", "150", "linear LR warmdown length (steps, or their time under the wallclock cap)"),
    CI(warmup_steps, "WARMUP_STEPS", "10", "train_gpt.py primes torch.compile with these and undoes them; no effect here"),
    CI(train_batch_tokens, "TRAIN_BATCH_TOKENS", "524288", "tokens per optimizer step (all ranks and micro-steps)"),
    CI(train_seq_len, "TRAIN_SEQ_LEN", "1024", "sequence length"),
    CF(max_wallclock_seconds, "MAX_WALLCLOCK_SECONDS", "600", "stop training after this much training time (0: no cap)"),
    CF(qk_gain_init, "QK_GAIN_INIT", "1.5", "initial per-head q gain"),
    CI(vocab_size, "VOCAB_SIZE", "1024", "vocabulary size (must match the tokenizer)"),
    CI(num_layers, "NUM_LAYERS", "9", "transformer blocks"),
    CI(num_kv_heads, "NUM_KV_HEADS", "4", "key/value heads (GQA)"),
    CI(model_dim, "MODEL_DIM", "512", "model width"),
    CI(num_heads, "NUM_HEADS", "8", "attention heads"),
    CI(mlp_mult, "MLP_MULT", "2", "MLP hidden = MLP_MULT * MODEL_DIM"),
    CI(tie_embeddings, "TIE_EMBEDDINGS", "1", "lm_head shares the token embedding"),
    CF(rope_base, "ROPE_BASE", "10000", "RoPE base"),
    CF(logit_softcap, "LOGIT_SOFTCAP", "30", "logits = cap * tanh(logits / cap)"),
    CF(embed_lr, "EMBED_LR", "0.6", "Adam LR of the untied embedding"),
    CF(head_lr, "HEAD_LR", "0.008", "Adam LR of the untied lm_head"),
    CF(tied_embed_lr, "TIED_EMBED_LR", "0.05", "Adam LR of the tied embedding"),
    CF(tied_embed_init_std, "TIED_EMBED_INIT_STD", "0.005", "init std of the tied embedding"),
    CF(matrix_lr, "MATRIX_LR", "0.04", "Muon LR of the block matrices"),
    CF(scalar_lr, "SCALAR_LR", "0.04", "Adam LR of the control tensors"),
    CF(muon_momentum, "MUON_MOMENTUM", "0.95", "Muon momentum"),
    CI(muon_backend_steps, "MUON_BACKEND_STEPS", "5", "Newton-Schulz iterations"),
    CF(muon_momentum_warmup_start, "MUON_MOMENTUM_WARMUP_START", "0.85", "Muon momentum at step 0"),
    CI(muon_momentum_warmup_steps, "MUON_MOMENTUM_WARMUP_STEPS", "500", "steps to reach MUON_MOMENTUM"),
    CF(beta1, "BETA1", "0.9", "Adam beta1"),
    CF(beta2, "BETA2", "0.95", "Adam beta2"),
    CF(adam_eps, "ADAM_EPS", "1e-8", "Adam epsilon"),
    CF(grad_clip_norm, "GRAD_CLIP_NORM", "0", "clip the global gradient norm (0: off)"),
    CS(out_dir, "OUT_DIR", ".", "where final_model.ckpt and final_model.golf go"),
    CS(init_ckpt, "INIT_CKPT", "", "start from this golf checkpoint instead of the seeded init"),
    CS(quant, "QUANT", "int8", "export scheme of the matrices: int8 int6 int5 int4 ternary fp16"),
    CS(quant_clip, "QUANT_CLIP", "search", "per-row clip of the integer schemes: search (GPTQ-lite), none (row maximum), sdclip"),
    CF(sdclip_k, "SDCLIP_K", "12.5", "SDClip: row scale = SDCLIP_K * std(row) / qmax"),
    CI(qat, "QAT", "0", "1: quantization-aware training of the matrices at QUANT (fake-quantized forward, straight-through gradient)"),
    CF(qat_start_frac, "QAT_START_FRAC", "0", "QAT from this fraction of training on (of ITERATIONS, or of the wallclock cap)"),
    CF(ema_decay, "EMA_DECAY", "0", "EMA of the weights, ema = d*ema + (1-d)*w per step; evaluated and exported at the end (0: off)"),
    CF(gptq_reserve_seconds, "GPTQ_RESERVE_SECONDS", "0", "GPTQ export (0: off): seconds of MAX_WALLCLOCK_SECONDS kept for its CPU calibration"),
    CI(gptq_tokens, "GPTQ_TOKENS", "65536", "GPTQ calibration: the first N tokens of the train shards"),
    CI(math_tf32, "MATH_TF32", "0", "1: TF32 tensor cores in the fp32 GEMMs"),
    CS(dump_grads, "DUMP_GRADS", "", "write step 0's loss and gradients here (checkpoint format, grad.<name>), for tests"),
};
static const int NCONFIG = (int)(sizeof(CONFIG) / sizeof(CONFIG[0]));

// config_flag: "--num-layers" for "NUM_LAYERS".
static void config_flag(const char *name, char *out, size_t n) {
    size_t k = 0;
    out[k++] = '-'; out[k++] = '-';
    for (const char *p = name; *p && k + 1 < n; p++) out[k++] = *p == '_' ? '-' : (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    out[k] = 0;
}

// config_set: parse one value into the field of entry e; NULL or the problem.
static const char *config_set(TrainConfig *c, const ConfigEntry *e, const char *v) {
    char *end;
    void *dst = (char *)c + e->offset;
    if (e->type == OPT_STR) {
        if (strlen(v) >= e->size) return "value too long";
        strcpy((char *)dst, v);
        return NULL;
    }
    errno = 0;
    if (e->type == OPT_INT) {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L) return "not an integer";
        *(int *)dst = (int)x;
    } else {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) return "not a number";
        *(double *)dst = x;
    }
    return NULL;
}

static void config_help(void) {
    char flag[64];
    printf("usage: train_golf [--flag value ...]   (or the environment variable of the same name)\n\n");
    for (int i = 0; i < NCONFIG; i++) {
        config_flag(CONFIG[i].name, flag, sizeof(flag));
        printf("  %-30s %-28s default %-12s %s\n", flag, CONFIG[i].name, CONFIG[i].dflt[0] ? CONFIG[i].dflt : "\"\"", CONFIG[i].help);
    }
}

// config_validate: NULL or what is wrong with a resolved config.
static const char *config_validate(const TrainConfig *c, int world) {
    static char why[256];
    if (world < 1 || 8 % world) return "the number of ranks must divide 8 (1, 2, 4 or 8)";
    int accum = 8 / world;
    if (c->train_batch_tokens % (world * accum * c->train_seq_len))
        return "TRAIN_BATCH_TOKENS must be a multiple of 8 * TRAIN_SEQ_LEN";
    if (c->val_batch_size / (world * accum) < c->train_seq_len) return "VAL_BATCH_SIZE must give every rank at least one sequence";
    if (c->mlp_mult < 1) return "MLP_MULT must be positive";
    Config m = {c->vocab_size, c->num_layers, c->model_dim, c->num_heads, c->num_kv_heads, c->mlp_mult * c->model_dim, c->tie_embeddings,
                c->train_seq_len, (float)c->rope_base, (float)c->logit_softcap};
    const char *bad = config_check(&m);
    if (bad) { snprintf(why, sizeof(why), "model shape: %s", bad); return why; }
    if ((c->model_dim / c->num_heads) % 32 || c->model_dim / c->num_heads > 256) return "head_dim (MODEL_DIM / NUM_HEADS) must be a multiple of 32, at most 256";
    if (c->vocab_size > 65536) return "VOCAB_SIZE must be at most 65536 (uint16 shards)";
    if (c->iterations < 0 || c->warmup_steps < 0 || c->muon_backend_steps < 1) return "ITERATIONS/WARMUP_STEPS >= 0 and MUON_BACKEND_STEPS >= 1";
    int known = 0;
    for (int s = SCHEME_FP16; s < NUM_SCHEMES; s++) known |= strcmp(c->quant, SCHEME_NAME[s]) == 0;
    if (!known) return "QUANT must be one of fp16 int8 int6 int5 int4 ternary";
    if (clip_from_name(c->quant_clip) < 0) return "QUANT_CLIP must be search, none or sdclip";
    if ((c->qat != 0 && c->qat != 1) || !(c->qat_start_frac >= 0 && c->qat_start_frac <= 1)) return "QAT must be 0 or 1 and QAT_START_FRAC in [0, 1]";
    if (!(c->ema_decay >= 0 && c->ema_decay < 1)) return "EMA_DECAY must be in [0, 1)";
    if (c->gptq_reserve_seconds < 0 || (c->max_wallclock_seconds > 0 && c->gptq_reserve_seconds >= c->max_wallclock_seconds))
        return "GPTQ_RESERVE_SECONDS must be >= 0 and below MAX_WALLCLOCK_SECONDS";
    if (c->gptq_reserve_seconds > 0 && c->gptq_tokens < c->train_seq_len) return "GPTQ_TOKENS must hold at least one sequence of TRAIN_SEQ_LEN";
    return NULL;
}

// config_parse: defaults, then the environment, then --flags; dies (usage: exit 2) on unknown flags or bad values.
static void config_parse(TrainConfig *c, int argc, char **argv) {
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < NCONFIG; i++) {
        const char *v = getenv(CONFIG[i].name), *err = config_set(c, &CONFIG[i], CONFIG[i].dflt);
        if (err) golf_die("internal: default of %s: %s", CONFIG[i].name, err);
        if (v && (err = config_set(c, &CONFIG[i], v))) golf_die("environment %s='%s': %s", CONFIG[i].name, v, err);
    }
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-h") == 0 || strcmp(argv[a], "--help") == 0) { config_help(); exit(0); }
        const char *arg = argv[a], *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        int k;
        char flag[64];
        for (k = 0; k < NCONFIG; k++) { config_flag(CONFIG[k].name, flag, sizeof(flag)); if (strlen(flag) == len && strncmp(flag, arg, len) == 0) break; }
        if (k == NCONFIG) { fprintf(stderr, "train_golf: unknown argument '%s' (--help lists the flags)\n", arg); exit(2); }
        const char *v = eq ? eq + 1 : a + 1 < argc ? argv[++a] : NULL;
        if (!v) { fprintf(stderr, "train_golf: %s needs a value\n", flag); exit(2); }
        const char *err = config_set(c, &CONFIG[k], v);
        if (err) { fprintf(stderr, "train_golf: %s '%s': %s\n", flag, v, err); exit(2); }
    }
    if (!c->run_id[0]) snprintf(c->run_id, sizeof(c->run_id), "golf_%ld", (long)time(NULL));
}

// config_print: every resolved value, one per line, through log.
static void config_print(const TrainConfig *c, void (*log)(const char *, ...)) {
    for (int i = 0; i < NCONFIG; i++) {
        const void *p = (const char *)c + CONFIG[i].offset;
        if (CONFIG[i].type == OPT_INT) log("config %s=%d", CONFIG[i].name, *(const int *)p);
        else if (CONFIG[i].type == OPT_FLOAT) log("config %s=%g", CONFIG[i].name, *(const double *)p);
        else log("config %s=%s", CONFIG[i].name, (const char *)p);
    }
}

static Config model_config(const TrainConfig *c) {
    Config m = {c->vocab_size, c->num_layers, c->model_dim, c->num_heads, c->num_kv_heads, c->mlp_mult * c->model_dim, c->tie_embeddings,
                c->train_seq_len, (float)c->rope_base, (float)c->logit_softcap};
    return m;
}

// ----------------------------------------------------------------------------------------------------
// 3. parameters and optimizer classes: golf_infer.c's parameter table gives every tensor a class; each class
//    has one optimizer and one LR (train_gpt.py's split)

enum { OPTIM_ADAM, OPTIM_MUON };
static int class_optimizer(int cls) { return cls == CLS_ATTN || cls == CLS_MLP ? OPTIM_MUON : OPTIM_ADAM; }
static double class_lr(const TrainConfig *c, int cls) {
    switch (cls) {
    case CLS_EMBED: return c->tie_embeddings ? c->tied_embed_lr : c->embed_lr;
    case CLS_HEAD: return c->head_lr;
    case CLS_ATTN: case CLS_MLP: return c->matrix_lr;
    default: return c->scalar_lr;
    }
}

// rng_normal: a standard normal from splitmix64 (Box-Muller).
static double rng_uniform(uint64_t *s) { return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0; }
static double rng_normal(uint64_t *s) { double u = rng_uniform(s), v = rng_uniform(s); return sqrt(-2 * log(u)) * cos(2 * M_PI * v); }

// init_params: train_gpt.py's init rules with golf's generator: embedding N(0, std) (N(0,1) untied), linear
// weights U(+-1/sqrt(fan_in)), output projections and lm_head zero, q_gain QK_GAIN_INIT, scales and skip
// weights 1, resid_mix [1; 0].
static void init_params(GolfModel *m, const TrainConfig *c) {
    uint64_t s = (uint64_t)c->seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < m->n; i++) {
        const ParamSpec *p = &m->spec[i];
        float *w = m->params + p->offset;
        size_t n = (size_t)p->rows * p->cols;
        const char *nm = p->name;
        int zero = strstr(nm, "attn.proj") || strstr(nm, "mlp.proj") || strcmp(nm, "lm_head.weight") == 0;
        for (size_t k = 0; k < n; k++) {
            if (p->cls == CLS_EMBED) w[k] = (float)(rng_normal(&s) * (c->tie_embeddings ? c->tied_embed_init_std : 1.0));
            else if (zero) w[k] = 0;
            else if (p->cls == CLS_ATTN || p->cls == CLS_MLP) w[k] = (float)((2 * rng_uniform(&s) - 1) / sqrt((double)p->cols));
            else if (strstr(nm, "q_gain")) w[k] = (float)c->qk_gain_init;
            else if (strstr(nm, "resid_mix")) w[k] = k < (size_t)p->cols ? 1.0f : 0.0f;
            else w[k] = 1.0f;
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// 4. kernels (fp32). N = tokens in the batch (B*T), d = model dim, rows are tokens.

static const float RMS_EPS_F = FLT_EPSILON;   // torch's rms_norm default for float32

__device__ float warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
__device__ float warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }

// embedding forward: out[n, :] = emb[tok[n], :]
__global__ void embedding_forward(float *out, const float *emb, const int *tok, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) out[i] = emb[(size_t)tok[i / d] * d + i % d];
}
// embedding backward: demb[tok[n], :] += dout[n, :]
__global__ void embedding_backward(float *demb, const float *dout, const int *tok, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) atomicAdd(&demb[(size_t)tok[i / d] * d + i % d], dout[i]);
}

// rmsnorm forward (warp per row): out = x * rstd, rstd = 1/sqrt(mean(x^2) + eps)
__global__ void rmsnorm_forward(float *out, float *rstd, const float *x, int rows, int d) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *xr = x + (size_t)row * d;
    float ss = 0;
    for (int i = lane; i < d; i += 32) ss += xr[i] * xr[i];
    float r = rsqrtf(warp_sum(ss) / d + RMS_EPS_F);
    for (int i = lane; i < d; i += 32) out[(size_t)row * d + i] = xr[i] * r;
    if (lane == 0) rstd[row] = r;
}
// rmsnorm backward: dx (+)= rstd * (dy - xhat * mean(dy * xhat)); accumulate when acc != 0
__global__ void rmsnorm_backward(float *dx, const float *dy, const float *x, const float *rstd, int rows, int d, int acc) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *xr = x + (size_t)row * d, *dyr = dy + (size_t)row * d;
    float r = rstd[row], dot = 0;
    for (int i = lane; i < d; i += 32) dot += dyr[i] * xr[i] * r;
    dot = warp_sum(dot) / d;
    for (int i = lane; i < d; i += 32) {
        float g = r * (dyr[i] - xr[i] * r * dot);
        dx[(size_t)row * d + i] = acc ? dx[(size_t)row * d + i] + g : g;
    }
}

// residual mix forward: out = mix[0, c] * x + mix[1, c] * x0
__global__ void mix_forward(float *out, const float *x, const float *x0, const float *mix, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) { int c = (int)(i % d); out[i] = mix[c] * x[i] + mix[d + c] * x0[i]; }
}
// residual mix backward (elementwise part): dx = mix0 * dout; dx0 += mix1 * dout
__global__ void mix_backward(float *dx, float *dx0, const float *dout, const float *mix, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) { int c = (int)(i % d); dx[i] = mix[c] * dout[i]; dx0[i] += mix[d + c] * dout[i]; }
}

// scaled add forward: x[n, c] (+)= s[c] * y[n, c]   (out = x + s*y written to out)
__global__ void scale_add_forward(float *out, const float *x, const float *s, const float *y, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) out[i] = x[i] + s[i % d] * y[i];
}
// scaled add backward (elementwise part): dy = s[c] * dout, or dy += when acc
__global__ void scale_backward(float *dy, const float *dout, const float *s, int N, int d, int acc) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) { float g = s[i % d] * dout[i]; dy[i] = acc ? dy[i] + g : g; }
}
// column dot: dcol[c] += sum_n a[n, c] * b[n, c]  (the gradient of a per-column scale)
__global__ void column_dot(float *dcol, const float *a, const float *b, int N, int d) {
    int c = blockIdx.x * 32 + threadIdx.x;
    if (c >= d) return;
    float s = 0;
    for (int n = blockIdx.y * blockDim.y + threadIdx.y; n < N; n += gridDim.y * blockDim.y) s += a[(size_t)n * d + c] * b[(size_t)n * d + c];
    atomicAdd(&dcol[c], s);
}

// relu^2 forward: u = relu(x)^2;  backward: dx = 2 relu(x) du
__global__ void relu2_forward(float *u, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float r = fmaxf(x[i], 0.f); u[i] = r * r; }
}
__global__ void relu2_backward(float *dx, const float *du, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = 2.f * fmaxf(x[i], 0.f) * du[i];
}

// q/k preparation forward (warp per token and head): out = gain[h] * rope(rmsnorm(raw)) over head_dim
__global__ void qk_prep_forward(float *out, float *rstd, const float *raw, const float *gain, const float *cosv, const float *sinv,
                                int N, int T, int heads, int hd) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * heads) return;
    int n = w / heads, h = w % heads, t = n % T, half = hd / 2;
    const float *x = raw + (size_t)w * hd;
    float ss = 0;
    for (int i = lane; i < hd; i += 32) ss += x[i] * x[i];
    float r = rsqrtf(warp_sum(ss) / hd + RMS_EPS_F), g = gain ? gain[h] : 1.f;
    for (int i = lane; i < half; i += 32) {
        float c = cosv[t * half + i], s = sinv[t * half + i], a = x[i] * r, b = x[i + half] * r;
        out[(size_t)w * hd + i] = g * (a * c + b * s);
        out[(size_t)w * hd + i + half] = g * (-a * s + b * c);
    }
    if (lane == 0) rstd[w] = r;
}
// q/k preparation backward: draw from dout through gain (dgain[h] += sum dout * rope), rope^T and rmsnorm
__global__ void qk_prep_backward(float *draw, float *dgain, const float *dout, const float *raw, const float *rstd, const float *gain,
                                 const float *cosv, const float *sinv, int N, int T, int heads, int hd) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * heads) return;
    int n = w / heads, h = w % heads, t = n % T, half = hd / 2;
    const float *x = raw + (size_t)w * hd, *dy = dout + (size_t)w * hd;
    float r = rstd[w], g = gain ? gain[h] : 1.f, dg = 0, dot = 0;
    float dxn[4][2];   // head_dim <= 256: up to 4 pairs per lane
    for (int i = lane, k = 0; i < half; i += 32, k++) {
        float c = cosv[t * half + i], s = sinv[t * half + i], a = x[i] * r, b = x[i + half] * r;
        dg += dy[i] * (a * c + b * s) + dy[i + half] * (-a * s + b * c);
        float d1 = g * dy[i], d2 = g * dy[i + half];
        dxn[k][0] = d1 * c - d2 * s;   // rope^T
        dxn[k][1] = d1 * s + d2 * c;
        dot += dxn[k][0] * a + dxn[k][1] * b;
    }
    dot = warp_sum(dot) / hd;
    dg = warp_sum(dg);
    for (int i = lane, k = 0; i < half; i += 32, k++) {
        draw[(size_t)w * hd + i] = r * (dxn[k][0] - x[i] * r * dot);
        draw[(size_t)w * hd + i + half] = r * (dxn[k][1] - x[i + half] * r * dot);
    }
    if (gain && lane == 0) atomicAdd(&dgain[h], dg);
}

// causal GQA attention forward (warp per query; online softmax, no T x T buffer):
// y[n, h] = sum_s softmax_s(q.k_s / sqrt(hd)) v_s over s <= t;  lse[(b*H + h)*T + t] saved for backward
__global__ void attention_forward(float *y, float *lse, const float *q, const float *k, const float *v, int B, int T, int H, int KV, int hd) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= B * H * T) return;
    int t = w % T, h = (w / T) % H, b = w / (T * H), kh = h / (H / KV), per = hd / 32;
    const float *qr = q + ((size_t)(b * T + t) * H + h) * hd;
    float qv[8], acc[8], m = -INFINITY, l = 0, scale = rsqrtf((float)hd);
    for (int j = 0; j < per; j++) { qv[j] = qr[lane + 32 * j]; acc[j] = 0; }
    for (int s = 0; s <= t; s++) {
        const float *kr = k + ((size_t)(b * T + s) * KV + kh) * hd, *vr = v + ((size_t)(b * T + s) * KV + kh) * hd;
        float dot = 0;
        for (int j = 0; j < per; j++) dot += qv[j] * kr[lane + 32 * j];
        float sc = warp_sum(dot) * scale, mn = fmaxf(m, sc), corr = expf(m - mn), p = expf(sc - mn);
        l = l * corr + p;
        for (int j = 0; j < per; j++) acc[j] = acc[j] * corr + p * vr[lane + 32 * j];
        m = mn;
    }
    float *yr = y + ((size_t)(b * T + t) * H + h) * hd;
    for (int j = 0; j < per; j++) yr[lane + 32 * j] = acc[j] / l;
    if (lane == 0) lse[((size_t)b * H + h) * T + t] = m + logf(l);
}
// attention backward, part 1 (warp per query): D = dy . y, then dq = scale * sum_s p (dy.v_s - D) k_s
__global__ void attention_backward_dq(float *dq, float *Dbuf, const float *dy, const float *y, const float *q, const float *k, const float *v,
                                      const float *lse, int B, int T, int H, int KV, int hd) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= B * H * T) return;
    int t = w % T, h = (w / T) % H, b = w / (T * H), kh = h / (H / KV), per = hd / 32;
    size_t row = ((size_t)(b * T + t) * H + h) * hd;
    float qv[8], dyv[8], acc[8], D = 0, scale = rsqrtf((float)hd), L = lse[((size_t)b * H + h) * T + t];
    for (int j = 0; j < per; j++) { qv[j] = q[row + lane + 32 * j]; dyv[j] = dy[row + lane + 32 * j]; D += dyv[j] * y[row + lane + 32 * j]; acc[j] = 0; }
    D = warp_sum(D);
    for (int s = 0; s <= t; s++) {
        const float *kr = k + ((size_t)(b * T + s) * KV + kh) * hd, *vr = v + ((size_t)(b * T + s) * KV + kh) * hd;
        float dot = 0, dp = 0;
        for (int j = 0; j < per; j++) { dot += qv[j] * kr[lane + 32 * j]; dp += dyv[j] * vr[lane + 32 * j]; }
        float p = expf(warp_sum(dot) * scale - L), ds = p * (warp_sum(dp) - D);
        for (int j = 0; j < per; j++) acc[j] += ds * kr[lane + 32 * j];
    }
    for (int j = 0; j < per; j++) dq[row + lane + 32 * j] = acc[j] * scale;
    if (lane == 0) Dbuf[((size_t)b * H + h) * T + t] = D;
}
// attention backward, part 2 (warp per key and kv head): dv_s = sum p dy_t, dk_s = scale * sum p (dy_t.v_s - D_t) q_t
// over the query heads of the group and t >= s
__global__ void attention_backward_dkv(float *dk, float *dv, const float *dy, const float *q, const float *k, const float *v, const float *lse,
                                       const float *Dbuf, int B, int T, int H, int KV, int hd) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= B * KV * T) return;
    int s = w % T, kh = (w / T) % KV, b = w / (T * KV), per = hd / 32, group = H / KV;
    size_t krow = ((size_t)(b * T + s) * KV + kh) * hd;
    float kv_[8], vv[8], dka[8], dva[8], scale = rsqrtf((float)hd);
    for (int j = 0; j < per; j++) { kv_[j] = k[krow + lane + 32 * j]; vv[j] = v[krow + lane + 32 * j]; dka[j] = dva[j] = 0; }
    for (int h = kh * group; h < (kh + 1) * group; h++)
        for (int t = s; t < T; t++) {
            size_t row = ((size_t)(b * T + t) * H + h) * hd;
            float dot = 0, dp = 0;
            for (int j = 0; j < per; j++) { dot += q[row + lane + 32 * j] * kv_[j]; dp += dy[row + lane + 32 * j] * vv[j]; }
            size_t li = ((size_t)b * H + h) * T + t;
            float p = expf(warp_sum(dot) * scale - lse[li]), ds = p * (warp_sum(dp) - Dbuf[li]);
            for (int j = 0; j < per; j++) { dva[j] += p * dy[row + lane + 32 * j]; dka[j] += ds * q[row + lane + 32 * j]; }
        }
    for (int j = 0; j < per; j++) { dk[krow + lane + 32 * j] = dka[j] * scale; dv[krow + lane + 32 * j] = dva[j]; }
}

// softcapped cross-entropy (block per row), logits replaced by dloss/dlogits * grad_scale when grad_scale != 0:
// z = cap tanh(l / cap); loss[n] = logsumexp(z) - z[y]; dl = (softmax(z) - onehot(y)) (1 - tanh^2) grad_scale
__global__ void softcap_cross_entropy(float *logits, float *loss, const int *targets, int V, float cap, float grad_scale) {
    int n = blockIdx.x;
    float *l = logits + (size_t)n * V;
    __shared__ float red[32];
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, cap * tanhf(l[v] / cap));
    mx = warp_max(mx);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = mx;
    __syncthreads();
    if (threadIdx.x < 32) { float t = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : -INFINITY; t = warp_max(t); if (threadIdx.x == 0) red[0] = t; }
    __syncthreads();
    mx = red[0];
    __syncthreads();
    float sum = 0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) sum += expf(cap * tanhf(l[v] / cap) - mx);
    sum = warp_sum(sum);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = sum;
    __syncthreads();
    if (threadIdx.x < 32) { float t = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.f; t = warp_sum(t); if (threadIdx.x == 0) red[0] = t; }
    __syncthreads();
    float lse = mx + logf(red[0]);
    int y = targets[n];
    if (threadIdx.x == 0) loss[n] = lse - cap * tanhf(l[y] / cap);
    __syncthreads();
    if (grad_scale != 0.f)
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float th = tanhf(l[v] / cap), p = expf(cap * th - lse);
            l[v] = (p - (v == y ? 1.f : 0.f)) * (1.f - th * th) * grad_scale;
        }
}

// Adam (torch.optim.Adam's update): m, v moments; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
__global__ void adam_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] -= lr / bc1 * m[i] / (sqrtf(v[i]) / sqrtf(bc2) + eps);
}
// Muon momentum: buf = mu buf + g; u = g + mu buf (Nesterov)
__global__ void muon_momentum(float *u, float *buf, const float *g, size_t n, float mu) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { buf[i] = mu * buf[i] + g[i]; u[i] = g[i] + mu * buf[i]; }
}
// sum of squares into *out (atomic); used for norms
__global__ void sum_squares(float *out, const float *x, size_t n) {
    float s = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) s += x[i] * x[i];
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) atomicAdd(out, s);
}
// x *= 1 / (sqrt(*sumsq) + eps)
__global__ void scale_by_inverse_norm(float *x, const float *sumsq, size_t n, float eps) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] /= sqrtf(*sumsq) + eps;
}
// out[c, r] = in[r, c]
__global__ void transpose(float *out, const float *in, int rows, int cols) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)rows * cols) { int r = (int)(i / cols), c = (int)(i % cols); out[(size_t)c * rows + r] = in[i]; }
}
// y = a * x + y
__global__ void axpy(float *y, const float *x, float a, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i];
}
// x *= *scale_ptr-derived factor: clip coefficient min(1, max_norm / (sqrt(sumsq) + 1e-6))
__global__ void clip_scale(float *x, const float *sumsq, float max_norm, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float c = max_norm / (sqrtf(*sumsq) + 1e-6f);
    if (i < n && c < 1.f) x[i] *= c;
}

// block_max / block_sum: the maximum / double sum of every thread's v over the block (blockDim.x a multiple of 32,
// at most 1024); every thread gets the result.
__device__ float block_max(float v) {
    __shared__ float red[32];
    v = warp_max(v);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    v = -INFINITY;
    for (int i = 0; i < (int)blockDim.x / 32; i++) v = fmaxf(v, red[i]);
    return v;
}
__device__ double block_sum(double v) {
    __shared__ double red[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    v = 0;
    for (int i = 0; i < (int)blockDim.x / 32; i++) v += red[i];
    return v;
}

// fake quantization for QAT (block per row): out = the values golf_export --clip none writes for the row (the rule
// in its header): intB (group 0) scale = fp16(fp32(max|w|) / qmax); ternary, per group of `group` columns,
// scale = fp16(fp32(mean|w|)) (the sum in double, in another order than the exporter's); q = clamp(rint(w / scale)
// in double, -qmax, qmax), a zero scale gives 0; out = q * scale. The backward pass treats out as the weight and
// hands its gradient to w unchanged (straight-through).
__global__ void fake_quant_rows(float *out, const float *w, int cols, int qmax, int group) {
    const float *wr = w + (size_t)blockIdx.x * cols;
    float *o = out + (size_t)blockIdx.x * cols;
    int g = group > 0 && group < cols ? group : cols;
    for (int c0 = 0; c0 < cols; c0 += g) {
        int c1 = c0 + g < cols ? c0 + g : cols;
        float sf;
        if (group > 0) {
            double s = 0;
            for (int c = c0 + threadIdx.x; c < c1; c += blockDim.x) s += fabs((double)wr[c]);
            sf = (float)(block_sum(s) / (c1 - c0));
        } else {
            float m = 0;
            for (int c = c0 + threadIdx.x; c < c1; c += blockDim.x) m = fmaxf(m, fabsf(wr[c]));
            sf = block_max(m) / (float)qmax;
        }
        float scale = __half2float(__float2half_rn(sf));
        for (int c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
            double q = scale > 0 ? rint((double)wr[c] / (double)scale) : 0.0;
            q = q < -qmax ? -qmax : q > qmax ? qmax : q;
            o[c] = (float)q * scale;
        }
    }
}

// EMA of the weights: ema = d * ema + (1 - d) * p
__global__ void ema_update(float *ema, const float *p, size_t n, float d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) ema[i] = d * ema[i] + (1.f - d) * p[i];
}

// ----------------------------------------------------------------------------------------------------
// 5. model: device buffers, forward, backward

static int blocks_for(size_t n, int threads) { return (int)((n + threads - 1) / threads); }
#define LAUNCH1D(kernel, n, ...) do { size_t n_ = (n); if (n_) { kernel<<<blocks_for(n_, 256), 256>>>(__VA_ARGS__); cudaCheck(cudaGetLastError()); } } while (0)
#define LAUNCH_WARPS(kernel, warps, ...) do { size_t w_ = (warps); if (w_) { kernel<<<blocks_for(w_, 8), 256>>>(__VA_ARGS__); cudaCheck(cudaGetLastError()); } } while (0)

typedef struct {   // activations of one block for a batch of N tokens
    float *xin;     // [N, d] block input (after the skip add)
    float *xm;      // [N, d] after the residual mix
    float *h1, *r1; // [N, d], [N]: rmsnorm(xm)
    float *qr, *kr, *v;  // [N, d], [N, kv], [N, kv]: projections
    float *q, *k;   // [N, d], [N, kv]: after norm, RoPE, gain
    float *rq, *rk; // [N*H], [N*KV]: rstd of the q/k heads
    float *y, *lse; // [N, d], [B*H*T]: attention output and log-sum-exp
    float *ao;      // [N, d]: attention projection
    float *xa;      // [N, d]: xm + attn_scale * ao
    float *h2, *r2; // [N, d], [N]: rmsnorm(xa)
    float *up, *u;  // [N, F]: fc output, relu^2
    float *mo;      // [N, d]: MLP projection
    float *xout;    // [N, d]: xa + mlp_scale * mo
} BlockActs;

typedef struct {
    TrainConfig tc;
    GolfModel host;          // the parameter table (and a host copy of the weights when needed)
    Config c;
    int B, T, N;             // sequences, length, tokens per micro-batch
    float *params, *grads, *adam_m, *adam_v, *muon_buf;   // [numel] each, carved by the parameter table
    float *qparams, *ema;    // [numel] each when QAT / EMA_DECAY is on (else NULL): fake-quantized weights, the EMA
    float **dparam;          // [n] device pointer of every tensor (params; qparams for the QAT matrices while QAT runs)
    float **dgrad;           // [n] device pointer of every gradient
    BlockActs *acts;         // [L]
    float *x0, *r0, *hf, *rf, *logits, *loss;   // [N,d], [N], [N,d], [N], [N,V], [N]
    float *cosv, *sinv;      // [T, hd/2] RoPE tables
    int *tok, *tgt;          // [N] device tokens
    float *scratch[6];       // [N, max(d, F, kv)] backward temporaries
    float *Dbuf;             // [B*H*T]
    float **skip_grad;       // [num_skips][N, d]: gradient reaching an encoder output through its skip
    float *ns[5];            // Newton-Schulz scratch (largest matrix)
    float *norm;             // [1] reduction target
    cublasHandle_t blas;
} Trainer;

// gemm: C[M, N] = alpha * op(A) op(B) + beta * C in row-major terms; op(A) is M x K (A stored K x M when ta),
// op(B) is K x N (B stored N x K when tb).
static void gemm(Trainer *tr, int ta, int tb, int M, int N, int K, float alpha, const float *A, const float *B, float beta, float *C) {
    cublasCheck(cublasSgemm(tr->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, tb ? K : N, A,
                            ta ? M : K, &beta, C, N));
}

static float *dmalloc(size_t n) { float *p; cudaCheck(cudaMalloc(&p, (n ? n : 1) * sizeof(float))); cudaCheck(cudaMemset(p, 0, (n ? n : 1) * sizeof(float))); return p; }

static void trainer_alloc(Trainer *tr, int B) {
    const Config *c = &tr->c;
    int d = c->model_dim, hd = d / c->num_heads, kv = c->num_kv_heads * hd, F = c->mlp_hidden, T = c->train_seq_len, L = c->num_layers;
    tr->B = B; tr->T = T; tr->N = B * T;
    size_t N = (size_t)tr->N, numel = tr->host.numel;
    tr->params = dmalloc(numel); tr->grads = dmalloc(numel); tr->adam_m = dmalloc(numel); tr->adam_v = dmalloc(numel); tr->muon_buf = dmalloc(numel);
    tr->dparam = (float **)galloc((size_t)tr->host.n * sizeof(float *));
    tr->dgrad = (float **)galloc((size_t)tr->host.n * sizeof(float *));
    for (int i = 0; i < tr->host.n; i++) { tr->dparam[i] = tr->params + tr->host.spec[i].offset; tr->dgrad[i] = tr->grads + tr->host.spec[i].offset; }
    tr->acts = (BlockActs *)galloc((size_t)L * sizeof(BlockActs));
    for (int l = 0; l < L; l++) {
        BlockActs *a = &tr->acts[l];
        a->xin = dmalloc(N * d); a->xm = dmalloc(N * d); a->h1 = dmalloc(N * d); a->r1 = dmalloc(N);
        a->qr = dmalloc(N * d); a->kr = dmalloc(N * kv); a->v = dmalloc(N * kv); a->q = dmalloc(N * d); a->k = dmalloc(N * kv);
        a->rq = dmalloc(N * c->num_heads); a->rk = dmalloc(N * c->num_kv_heads);
        a->y = dmalloc(N * d); a->lse = dmalloc(N * c->num_heads); a->ao = dmalloc(N * d); a->xa = dmalloc(N * d);
        a->h2 = dmalloc(N * d); a->r2 = dmalloc(N); a->up = dmalloc(N * F); a->u = dmalloc(N * F); a->mo = dmalloc(N * d); a->xout = dmalloc(N * d);
    }
    tr->x0 = dmalloc(N * d); tr->r0 = dmalloc(N); tr->hf = dmalloc(N * d); tr->rf = dmalloc(N);
    tr->logits = dmalloc(N * c->vocab_size); tr->loss = dmalloc(N);
    int wmax = d > F ? d : F;
    for (int i = 0; i < 6; i++) tr->scratch[i] = dmalloc(N * wmax);
    tr->Dbuf = dmalloc(N * c->num_heads);
    tr->skip_grad = (float **)galloc((size_t)(L + 1) * sizeof(float *));
    for (int l = 0; l < L / 2; l++) tr->skip_grad[l] = dmalloc(N * d);
    size_t big = 0;
    for (int i = 0; i < tr->host.n; i++) { size_t s = (size_t)tr->host.spec[i].rows * tr->host.spec[i].cols; if (s > big) big = s; }
    int side = d > F ? d : F;
    for (int i = 0; i < 5; i++) tr->ns[i] = dmalloc(big > (size_t)side * side ? big : (size_t)side * side);
    tr->norm = dmalloc(1);
    cudaCheck(cudaMalloc(&tr->tok, N * sizeof(int)));
    cudaCheck(cudaMalloc(&tr->tgt, N * sizeof(int)));
    // RoPE tables, computed like torch in float32 (inv_freq = 1 / base^(2i/hd), angle = t * inv_freq), cos/sin rounded once
    int half = hd / 2;
    float *hc = (float *)galloc((size_t)T * half * 4), *hs = (float *)galloc((size_t)T * half * 4);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float inv = 1.0f / powf(c->rope_base, (float)(2 * i) / (float)hd), ang = (float)t * inv;
            hc[t * half + i] = (float)cos((double)ang); hs[t * half + i] = (float)sin((double)ang);
        }
    tr->cosv = dmalloc((size_t)T * half); tr->sinv = dmalloc((size_t)T * half);
    cudaCheck(cudaMemcpy(tr->cosv, hc, (size_t)T * half * 4, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(tr->sinv, hs, (size_t)T * half * 4, cudaMemcpyHostToDevice));
    free(hc); free(hs);
    if (tr->tc.qat) tr->qparams = dmalloc(numel);
    if (tr->tc.ema_decay > 0) tr->ema = dmalloc(numel);
    cublasCheck(cublasCreate(&tr->blas));
    cublasCheck(cublasSetMathMode(tr->blas, tr->tc.math_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

// tensor index helpers into the parameter table (golf_infer.c's model_layout order)
static int P_EMB(void) { return 0; }
static int P_LAYER(int l, int k) { return 1 + 10 * l + k; }   // k: c_q c_k c_v proj fc mlp_proj q_gain attn_scale mlp_scale resid_mix
enum { K_CQ, K_CK, K_CV, K_PROJ, K_FC, K_MPROJ, K_QGAIN, K_ASCALE, K_MSCALE, K_MIX };
static int P_SKIP(const Config *c) { return 1 + 10 * c->num_layers; }
static int P_HEAD(const Config *c) { return c->tie_embeddings ? P_EMB() : P_SKIP(c) + 1; }

// forward: loss per token into tr->loss; with grad_scale != 0 also leaves dloss/dlogits in tr->logits.
static void forward(Trainer *tr, float grad_scale) {
    const Config *c = &tr->c;
    int N = tr->N, d = c->model_dim, H = c->num_heads, KV = c->num_kv_heads, hd = d / H, kv = KV * hd, F = c->mlp_hidden, L = c->num_layers;
    int enc = L / 2, ns = num_skips(c);
    float **P = tr->dparam;
    LAUNCH1D(embedding_forward, (size_t)N * d, tr->scratch[0], P[P_EMB()], tr->tok, N, d);
    LAUNCH_WARPS(rmsnorm_forward, N, tr->x0, tr->r0, tr->scratch[0], N, d);
    for (int l = 0; l < L; l++) {
        BlockActs *a = &tr->acts[l];
        const float *prev = l == 0 ? tr->x0 : tr->acts[l - 1].xout;
        int i = l - enc;   // decoder index
        if (i >= 0 && i < ns) LAUNCH1D(scale_add_forward, (size_t)N * d, a->xin, prev, P[P_SKIP(c)] + (size_t)i * d, tr->acts[enc - 1 - i].xout, N, d);
        else cudaCheck(cudaMemcpyAsync(a->xin, prev, (size_t)N * d * 4, cudaMemcpyDeviceToDevice));
        LAUNCH1D(mix_forward, (size_t)N * d, a->xm, a->xin, tr->x0, P[P_LAYER(l, K_MIX)], N, d);
        LAUNCH_WARPS(rmsnorm_forward, N, a->h1, a->r1, a->xm, N, d);
        gemm(tr, 0, 1, N, d, d, 1, a->h1, P[P_LAYER(l, K_CQ)], 0, a->qr);
        gemm(tr, 0, 1, N, kv, d, 1, a->h1, P[P_LAYER(l, K_CK)], 0, a->kr);
        gemm(tr, 0, 1, N, kv, d, 1, a->h1, P[P_LAYER(l, K_CV)], 0, a->v);
        LAUNCH_WARPS(qk_prep_forward, (size_t)N * H, a->q, a->rq, a->qr, P[P_LAYER(l, K_QGAIN)], tr->cosv, tr->sinv, N, tr->T, H, hd);
        LAUNCH_WARPS(qk_prep_forward, (size_t)N * KV, a->k, a->rk, a->kr, (const float *)NULL, tr->cosv, tr->sinv, N, tr->T, KV, hd);
        LAUNCH_WARPS(attention_forward, (size_t)N * H, a->y, a->lse, a->q, a->k, a->v, tr->B, tr->T, H, KV, hd);
        gemm(tr, 0, 1, N, d, d, 1, a->y, P[P_LAYER(l, K_PROJ)], 0, a->ao);
        LAUNCH1D(scale_add_forward, (size_t)N * d, a->xa, a->xm, P[P_LAYER(l, K_ASCALE)], a->ao, N, d);
        LAUNCH_WARPS(rmsnorm_forward, N, a->h2, a->r2, a->xa, N, d);
        gemm(tr, 0, 1, N, F, d, 1, a->h2, P[P_LAYER(l, K_FC)], 0, a->up);
        LAUNCH1D(relu2_forward, (size_t)N * F, a->u, a->up, (size_t)N * F);
        gemm(tr, 0, 1, N, d, F, 1, a->u, P[P_LAYER(l, K_MPROJ)], 0, a->mo);
        LAUNCH1D(scale_add_forward, (size_t)N * d, a->xout, a->xa, P[P_LAYER(l, K_MSCALE)], a->mo, N, d);
    }
    LAUNCH_WARPS(rmsnorm_forward, N, tr->hf, tr->rf, tr->acts[L - 1].xout, N, d);
    gemm(tr, 0, 1, N, c->vocab_size, d, 1, tr->hf, P[P_HEAD(c)], 0, tr->logits);
    softcap_cross_entropy<<<N, 256>>>(tr->logits, tr->loss, tr->tgt, c->vocab_size, c->logit_softcap, grad_scale);
    cudaCheck(cudaGetLastError());
}

// column_grad: dcol += sum over tokens of a * b (per column)
static void column_grad(float *dcol, const float *a, const float *b, int N, int d) {
    dim3 grid((d + 31) / 32, 64), block(32, 8);
    column_dot<<<grid, block>>>(dcol, a, b, N, d);
    cudaCheck(cudaGetLastError());
}

// backward: gradients of every parameter ADDED into tr->grads (forward must have run with grad_scale != 0).
static void backward(Trainer *tr) {
    const Config *c = &tr->c;
    int N = tr->N, d = c->model_dim, H = c->num_heads, KV = c->num_kv_heads, hd = d / H, kv = KV * hd, F = c->mlp_hidden, L = c->num_layers;
    int enc = L / 2, ns = num_skips(c);
    float **P = tr->dparam, **G = tr->dgrad;
    float *dx = tr->scratch[0], *dx0 = tr->scratch[1], *t1 = tr->scratch[2], *t2 = tr->scratch[3], *t3 = tr->scratch[4], *t4 = tr->scratch[5];
    cudaCheck(cudaMemsetAsync(dx0, 0, (size_t)N * d * 4));
    // head: logits = hf @ W^T, tr->logits holds dL/dlogits
    gemm(tr, 1, 0, c->vocab_size, d, N, 1, tr->logits, tr->hf, 1, G[P_HEAD(c)]);
    gemm(tr, 0, 0, N, d, c->vocab_size, 1, tr->logits, P[P_HEAD(c)], 0, t1);
    LAUNCH_WARPS(rmsnorm_backward, N, dx, t1, tr->acts[L - 1].xout, tr->rf, N, d, 0);
    for (int l = L - 1; l >= 0; l--) {
        BlockActs *a = &tr->acts[l];
        if (l < enc && l >= enc - ns) LAUNCH1D(axpy, (size_t)N * d, dx, tr->skip_grad[l], 1.0f, (size_t)N * d);   // its skip's gradient
        // dx = dL/dxout[l]
        column_grad(G[P_LAYER(l, K_MSCALE)], dx, a->mo, N, d);
        LAUNCH1D(scale_backward, (size_t)N * d, t1, dx, P[P_LAYER(l, K_MSCALE)], N, d, 0);                   // dmo
        gemm(tr, 1, 0, d, F, N, 1, t1, a->u, 1, G[P_LAYER(l, K_MPROJ)]);                                      // dW mlp.proj
        gemm(tr, 0, 0, N, F, d, 1, t1, P[P_LAYER(l, K_MPROJ)], 0, t2);                                        // du
        LAUNCH1D(relu2_backward, (size_t)N * F, t2, t2, a->up, (size_t)N * F);                                // dup
        gemm(tr, 1, 0, F, d, N, 1, t2, a->h2, 1, G[P_LAYER(l, K_FC)]);                                        // dW fc
        gemm(tr, 0, 0, N, d, F, 1, t2, P[P_LAYER(l, K_FC)], 0, t1);                                           // dh2
        LAUNCH_WARPS(rmsnorm_backward, N, dx, t1, a->xa, a->r2, N, d, 1);                                     // dxa
        column_grad(G[P_LAYER(l, K_ASCALE)], dx, a->ao, N, d);
        LAUNCH1D(scale_backward, (size_t)N * d, t1, dx, P[P_LAYER(l, K_ASCALE)], N, d, 0);                   // dao
        gemm(tr, 1, 0, d, d, N, 1, t1, a->y, 1, G[P_LAYER(l, K_PROJ)]);                                       // dW proj
        gemm(tr, 0, 0, N, d, d, 1, t1, P[P_LAYER(l, K_PROJ)], 0, t2);                                         // dy
        LAUNCH_WARPS(attention_backward_dq, (size_t)N * H, t3, tr->Dbuf, t2, a->y, a->q, a->k, a->v, a->lse, tr->B, tr->T, H, KV, hd);
        LAUNCH_WARPS(attention_backward_dkv, (size_t)N * KV, t4, t1, t2, a->q, a->k, a->v, a->lse, tr->Dbuf, tr->B, tr->T, H, KV, hd);
        // t3 = dq, t4 = dk, t1 = dv (all after the q/k preparation)
        gemm(tr, 1, 0, kv, d, N, 1, t1, a->h1, 1, G[P_LAYER(l, K_CV)]);
        gemm(tr, 0, 0, N, d, kv, 1, t1, P[P_LAYER(l, K_CV)], 0, t2);                                          // dh1, from v
        LAUNCH_WARPS(qk_prep_backward, (size_t)N * KV, t1, (float *)NULL, t4, a->kr, a->rk, (const float *)NULL, tr->cosv, tr->sinv, N, tr->T, KV, hd);
        gemm(tr, 1, 0, kv, d, N, 1, t1, a->h1, 1, G[P_LAYER(l, K_CK)]);
        gemm(tr, 0, 0, N, d, kv, 1, t1, P[P_LAYER(l, K_CK)], 1, t2);                                          // + from k
        LAUNCH_WARPS(qk_prep_backward, (size_t)N * H, t1, G[P_LAYER(l, K_QGAIN)], t3, a->qr, a->rq, P[P_LAYER(l, K_QGAIN)], tr->cosv, tr->sinv, N, tr->T, H, hd);
        gemm(tr, 1, 0, d, d, N, 1, t1, a->h1, 1, G[P_LAYER(l, K_CQ)]);
        gemm(tr, 0, 0, N, d, d, 1, t1, P[P_LAYER(l, K_CQ)], 1, t2);                                           // + from q
        LAUNCH_WARPS(rmsnorm_backward, N, dx, t2, a->xm, a->r1, N, d, 1);                                     // dxm
        column_grad(G[P_LAYER(l, K_MIX)], dx, a->xin, N, d);
        column_grad(G[P_LAYER(l, K_MIX)] + d, dx, tr->x0, N, d);
        LAUNCH1D(mix_backward, (size_t)N * d, dx, dx0, dx, P[P_LAYER(l, K_MIX)], N, d);                       // dxin
        int i = l - enc;
        if (i >= 0 && i < ns) {   // xin = xout[l-1] + w_i * xout[enc-1-i]
            column_grad(G[P_SKIP(c)] + (size_t)i * d, dx, tr->acts[enc - 1 - i].xout, N, d);
            LAUNCH1D(scale_backward, (size_t)N * d, tr->skip_grad[enc - 1 - i], dx, P[P_SKIP(c)] + (size_t)i * d, N, d, 0);
        }
        // dx is now dL/dxin[l] = dL/dxout[l-1] (or, for l = 0, part of dL/dx0)
    }
    LAUNCH1D(axpy, (size_t)N * d, dx, dx0, 1.0f, (size_t)N * d);                                               // dL/dx0 in total
    LAUNCH1D(embedding_forward, (size_t)N * d, t1, P[P_EMB()], tr->tok, N, d);                                 // the raw embeddings again
    LAUNCH_WARPS(rmsnorm_backward, N, t2, dx, t1, tr->r0, N, d, 0);
    LAUNCH1D(embedding_backward, (size_t)N * d, G[P_EMB()], t2, tr->tok, N, d);
}

// ----------------------------------------------------------------------------------------------------
// 6. optimizers: Adam (embeddings, head, control tensors) and Muon (block matrices), stepped per tensor

// newton_schulz: X (rows x cols, rows <= cols, in ns[0]) <- the quintic Newton-Schulz iteration, `steps` times:
// A = X X^T, B = b A + c A A, X = a X + B X with (a, b, c) = (3.4445, -4.7750, 2.0315).
static float *newton_schulz(Trainer *tr, int rows, int cols, int steps) {
    float *X = tr->ns[0], *A = tr->ns[1], *Bm = tr->ns[2], *Xn = tr->ns[3];
    for (int s = 0; s < steps; s++) {
        gemm(tr, 0, 1, rows, rows, cols, 1, X, X, 0, A);
        cudaCheck(cudaMemcpyAsync(Bm, A, (size_t)rows * rows * 4, cudaMemcpyDeviceToDevice));
        gemm(tr, 0, 0, rows, rows, rows, 2.0315f, A, A, -4.7750f, Bm);
        cudaCheck(cudaMemcpyAsync(Xn, X, (size_t)rows * cols * 4, cudaMemcpyDeviceToDevice));
        gemm(tr, 0, 0, rows, cols, rows, 1, Bm, X, 3.4445f, Xn);
        float *t = X; X = Xn; Xn = t;
    }
    tr->ns[0] = X; tr->ns[3] = Xn;
    return X;
}

// muon_step: one tensor: momentum, normalize, orthogonalize (on the transpose when rows > cols), and
// p -= lr * sqrt(max(1, rows/cols)) * X.
static void muon_step(Trainer *tr, int i, float lr, float mu) {
    const ParamSpec *s = &tr->host.spec[i];
    size_t n = (size_t)s->rows * s->cols;
    float *u = tr->ns[4];
    LAUNCH1D(muon_momentum, n, u, tr->muon_buf + s->offset, tr->dgrad[i], n, mu);
    cudaCheck(cudaMemsetAsync(tr->norm, 0, 4));
    sum_squares<<<256, 256>>>(tr->norm, u, n);
    cudaCheck(cudaGetLastError());
    LAUNCH1D(scale_by_inverse_norm, n, u, tr->norm, n, 1e-7f);
    int transposed = s->rows > s->cols, r = transposed ? s->cols : s->rows, cc = transposed ? s->rows : s->cols;
    if (transposed) LAUNCH1D(transpose, n, tr->ns[0], u, s->rows, s->cols);
    else cudaCheck(cudaMemcpyAsync(tr->ns[0], u, n * 4, cudaMemcpyDeviceToDevice));
    float *X = newton_schulz(tr, r, cc, tr->tc.muon_backend_steps);
    if (transposed) { LAUNCH1D(transpose, n, u, X, r, cc); X = u; }
    float scale = sqrtf(fmaxf(1.0f, (float)s->rows / (float)s->cols));
    LAUNCH1D(axpy, n, tr->dparam[i], X, -lr * scale, n);
}

// train_cap_seconds: the training wallclock cap: MAX_WALLCLOCK_SECONDS less the GPTQ export's reserve (0: no cap).
static double train_cap_seconds(const TrainConfig *c) { return c->max_wallclock_seconds > 0 ? c->max_wallclock_seconds - c->gptq_reserve_seconds : 0; }

// lr_mul: train_gpt.py's warmdown: by iterations without a wallclock cap, else by the time left
static double lr_mul(const TrainConfig *c, int step, double elapsed_ms) {
    if (c->warmdown_iters <= 0) return 1.0;
    double cap = train_cap_seconds(c);
    if (cap <= 0) {
        int start = c->iterations - c->warmdown_iters > 0 ? c->iterations - c->warmdown_iters : 0;
        if (step >= start && step < c->iterations) { double v = (double)(c->iterations - step) / (c->warmdown_iters > 1 ? c->warmdown_iters : 1); return v > 0 ? v : 0; }
        return 1.0;
    }
    double step_ms = elapsed_ms / (step > 1 ? step : 1), warmdown_ms = c->warmdown_iters * step_ms;
    double remaining = 1000.0 * cap - elapsed_ms;
    if (remaining < 0) remaining = 0;
    return remaining <= warmdown_ms ? remaining / (warmdown_ms > 1e-9 ? warmdown_ms : 1e-9) : 1.0;
}

// qat_active: QAT=1 and training progress >= QAT_START_FRAC: step / ITERATIONS, or elapsed time over the training
// cap when there is one (test/reference.py's qat_active)
static int qat_active(const TrainConfig *c, int step, double elapsed_ms) {
    if (!c->qat) return 0;
    double cap = train_cap_seconds(c);
    return cap > 0 ? elapsed_ms >= c->qat_start_frac * 1000.0 * cap : step >= c->qat_start_frac * c->iterations;
}

// muon_momentum_at: linear warmup from MUON_MOMENTUM_WARMUP_START to MUON_MOMENTUM
static double muon_momentum_at(const TrainConfig *c, int step) {
    double frac = c->muon_momentum_warmup_steps > 0 ? (double)step / c->muon_momentum_warmup_steps : 1.0;
    if (frac > 1) frac = 1;
    return (1 - frac) * c->muon_momentum_warmup_start + frac * c->muon_momentum;
}

// optimizer_step: every tensor by its class's optimizer and LR times lr_scale; adam_t counts Adam steps.
static void optimizer_step(Trainer *tr, double lr_scale, double mu, int adam_t) {
    const TrainConfig *c = &tr->tc;
    if (c->grad_clip_norm > 0) {
        cudaCheck(cudaMemsetAsync(tr->norm, 0, 4));
        sum_squares<<<1024, 256>>>(tr->norm, tr->grads, tr->host.numel);
        LAUNCH1D(clip_scale, tr->host.numel, tr->grads, tr->norm, (float)c->grad_clip_norm, tr->host.numel);
    }
    float bc1 = (float)(1 - pow(c->beta1, adam_t)), bc2 = (float)(1 - pow(c->beta2, adam_t));
    for (int i = 0; i < tr->host.n; i++) {
        const ParamSpec *s = &tr->host.spec[i];
        size_t n = (size_t)s->rows * s->cols;
        float lr = (float)(class_lr(c, s->cls) * lr_scale);
        if (class_optimizer(s->cls) == OPTIM_MUON) muon_step(tr, i, lr, (float)mu);
        else LAUNCH1D(adam_update, n, tr->dparam[i], tr->dgrad[i], tr->adam_m + s->offset, tr->adam_v + s->offset, n, lr, (float)c->beta1,
                      (float)c->beta2, (float)c->adam_eps, bc1, bc2);
    }
}

// qat_weights: on: the QAT matrices (attention, MLP and the untied head, at QUANT when that is an integer or
// ternary scheme) are fake-quantized into qparams and the forward and backward passes read them there; off: the
// master weights again (the optimizer steps those).
static ExportOptions export_options(const TrainConfig *c);
static void qat_weights(Trainer *tr, int on) {
    ExportOptions o = export_options(&tr->tc);
    int scheme = o.scheme[CLS_MLP], offset, qmax;
    if (scheme < SCHEME_INT8) return;
    scheme_levels(scheme, &offset, &qmax);
    for (int i = 0; i < tr->host.n; i++) {
        const ParamSpec *s = &tr->host.spec[i];
        if (s->cls != CLS_ATTN && s->cls != CLS_MLP && s->cls != CLS_HEAD) continue;
        if (on) {
            fake_quant_rows<<<s->rows, 256>>>(tr->qparams + s->offset, tr->params + s->offset, s->cols, qmax, scheme == SCHEME_TERNARY ? o.group : 0);
            cudaCheck(cudaGetLastError());
        }
        tr->dparam[i] = (on ? tr->qparams : tr->params) + s->offset;
    }
}

// ----------------------------------------------------------------------------------------------------
// 7. data: train_gpt.py's stream — shards in sorted order, wrapping around; every micro-step takes one
//    contiguous chunk of world * (local + 1) tokens and each rank its own span of local + 1

typedef struct {
    glob_t files;
    size_t file;          // index of the loaded shard
    int32_t *tok;         // its tokens
    size_t ntok, pos;
    int vocab;
} TokenStream;

static void stream_open(TokenStream *s, const char *pattern, int vocab) {
    memset(s, 0, sizeof(*s));
    s->files = shard_glob(pattern);
    s->vocab = vocab;
    s->tok = load_shard_file(s->files.gl_pathv[0], &s->ntok, vocab);
}

// stream_take: the next n tokens into out, crossing shard ends.
static void stream_take(TokenStream *s, int32_t *out, size_t n) {
    while (n) {
        if (s->pos == s->ntok) {
            free(s->tok);
            s->file = (s->file + 1) % s->files.gl_pathc;
            s->tok = load_shard_file(s->files.gl_pathv[s->file], &s->ntok, s->vocab);
            s->pos = 0;
            continue;
        }
        size_t k = s->ntok - s->pos < n ? s->ntok - s->pos : n;
        memcpy(out, s->tok + s->pos, k * sizeof(int32_t));
        out += k; s->pos += k; n -= k;
    }
}

static void stream_close(TokenStream *s) { free(s->tok); globfree(&s->files); memset(s, 0, sizeof(*s)); }

// next_batch: this rank's inputs x and targets y (local tokens each) of the next micro-step.
static void next_batch(TokenStream *s, int32_t *chunk, int32_t *x, int32_t *y, size_t local, int rank, int world) {
    stream_take(s, chunk, (local + 1) * (size_t)world);
    const int32_t *span = chunk + (size_t)rank * (local + 1);
    memcpy(x, span, local * sizeof(int32_t));
    memcpy(y, span + 1, local * sizeof(int32_t));
}

// ----------------------------------------------------------------------------------------------------
// 8. evaluation: train_gpt.py's val_loss / val_bpb over the val split cut to a multiple of TRAIN_SEQ_LEN

typedef struct { int rank, world; } Dist;
static void all_reduce_doubles(const Dist *dd, double *v, int n);

static void upload_tokens(Trainer *tr, const int32_t *x, const int32_t *y) {
    cudaCheck(cudaMemcpy(tr->tok, x, (size_t)tr->N * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(tr->tgt, y, (size_t)tr->N * sizeof(int), cudaMemcpyHostToDevice));
}

// evaluate_val: the rank's share of sequences in batches of tr->B (short last batches padded and not counted).
static void evaluate_val(Trainer *tr, const Dist *dd, const int32_t *val, size_t nval, const ByteLut *lut, double *loss_out, double *bpb_out) {
    int T = tr->T;
    size_t total = (nval - 1) / T, s0 = total * dd->rank / dd->world, s1 = total * (dd->rank + 1) / dd->world;
    double sums[3] = {0, 0, 0};   // nll, tokens, bytes
    float *loss = (float *)galloc((size_t)tr->N * sizeof(float));
    int32_t *x = (int32_t *)galloc((size_t)tr->N * 4), *y = (int32_t *)galloc((size_t)tr->N * 4);
    for (size_t s = s0; s < s1; s += tr->B) {
        size_t nseq = s1 - s < (size_t)tr->B ? s1 - s : (size_t)tr->B;
        for (size_t k = 0; k < (size_t)tr->N; k++) {
            size_t src = s * T + (k < nseq * T ? k : 0);
            x[k] = val[src]; y[k] = val[src + 1];
        }
        upload_tokens(tr, x, y);
        forward(tr, 0.0f);
        cudaCheck(cudaMemcpy(loss, tr->loss, (size_t)tr->N * sizeof(float), cudaMemcpyDeviceToHost));
        for (size_t k = 0; k < nseq * T; k++) {
            sums[0] += loss[k];
            sums[1] += 1;
            sums[2] += lut->base_bytes[y[k]] + (lut->has_leading_space[y[k]] && !lut->is_boundary[x[k]]);
        }
    }
    all_reduce_doubles(dd, sums, 3);
    *loss_out = sums[0] / sums[1];
    *bpb_out = *loss_out / log(2.0) * sums[1] / sums[2];
    free(loss); free(x); free(y);
}

// ----------------------------------------------------------------------------------------------------
// 9. multi-GPU: MPI starts the ranks, NCCL sums the gradients

#ifdef USE_NCCL
static ncclComm_t g_nccl;
#endif

static Dist dist_init(int *argc, char ***argv) {
    Dist dd = {0, 1};
#ifdef USE_MPI
    mpiCheck(MPI_Init(argc, argv));
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &dd.rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &dd.world));
#else
    (void)argc; (void)argv;
#endif
    return dd;
}

// local_rank: the rank among the processes on this host (they share its GPUs).
static int local_rank(const Dist *dd) {
#ifdef USE_MPI
    MPI_Comm local;
    int r;
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, dd->rank, MPI_INFO_NULL, &local));
    mpiCheck(MPI_Comm_rank(local, &r));
    mpiCheck(MPI_Comm_free(&local));
    return r;
#else
    return dd->rank;
#endif
}

static void dist_init_gpu(const Dist *dd) {
    int ndev = 0;
    cudaCheck(cudaGetDeviceCount(&ndev));
    int lr = local_rank(dd);
    if (lr >= ndev) golf_die("rank %d is local rank %d but this host has %d GPUs", dd->rank, lr, ndev);
    cudaCheck(cudaSetDevice(lr));
    if (dd->world == 1) return;
#if defined(USE_MPI) && defined(USE_NCCL)
    ncclUniqueId id;
    if (dd->rank == 0) ncclCheck(ncclGetUniqueId(&id));
    mpiCheck(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
    ncclCheck(ncclCommInitRank(&g_nccl, dd->world, id, dd->rank));
#else
    golf_die("%d ranks but this build has no NCCL: rebuild with NCCL (make prints what it found)", dd->world);
#endif
}

// all_reduce_grads: sum the gradients of all ranks (counts are elements).
static void all_reduce_grads(Trainer *tr, const Dist *dd) {
    if (dd->world == 1) return;
#ifdef USE_NCCL
    ncclCheck(ncclAllReduce(tr->grads, tr->grads, tr->host.numel, ncclFloat, ncclSum, g_nccl, 0));
#else
    (void)tr;
#endif
}

static void all_reduce_doubles(const Dist *dd, double *v, int n) {
    if (dd->world == 1) return;
#ifdef USE_MPI
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
#else
    (void)v; (void)n;
#endif
}

// agree_stop: every rank stops when any rank reached the wallclock cap.
static int agree_stop(const Dist *dd, int reached) {
#ifdef USE_MPI
    if (dd->world > 1) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &reached, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
#else
    (void)dd;
#endif
    return reached;
}

static void dist_finish(const Dist *dd) {
#ifdef USE_NCCL
    if (dd->world > 1) ncclCommDestroy(g_nccl);
#endif
#ifdef USE_MPI
    MPI_Finalize();
#endif
    (void)dd;
}

// ----------------------------------------------------------------------------------------------------
// 10. checkpoint (golf_infer.c's float32 format) and export

// container_write: the checkpoint format with one float32 record per tensor of the parameter table, named
// prefix + name, holding values (laid out like the parameters), and a record "debug.loss" when loss != NULL;
// written to PATH.tmp, then renamed.
static void container_write(const char *path, const GolfModel *m, const float *values, const char *prefix, int steps, const float *loss) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) golf_die("cannot create '%s': %s", tmp, strerror(errno));
    Bytes b = {NULL, 0, 0};
    const Config *c = &m->c;
    uint32_t h[CKPT_HEADER_INTS] = {CKPT_MAGIC, CKPT_VERSION, (uint32_t)m->n + (loss ? 1 : 0), (uint32_t)c->vocab_size, (uint32_t)c->num_layers,
                                    (uint32_t)c->model_dim, (uint32_t)c->num_heads, (uint32_t)c->num_kv_heads, (uint32_t)c->mlp_hidden,
                                    (uint32_t)c->tie_embeddings, f32_bits(c->rope_base), f32_bits(c->logit_softcap), (uint32_t)c->train_seq_len,
                                    (uint32_t)steps};
    for (int i = 0; i < CKPT_HEADER_INTS; i++) bytes_u32(&b, h[i]);
    for (int i = 0; i < m->n; i++) {
        const ParamSpec *s = &m->spec[i];
        bytes_u32(&b, (uint32_t)(strlen(prefix) + strlen(s->name)));
        bytes_put(&b, prefix, strlen(prefix));
        bytes_put(&b, s->name, strlen(s->name));
        bytes_u32(&b, 0);
        bytes_u32(&b, (uint32_t)s->ndim);
        for (int k = 0; k < s->ndim; k++) bytes_u32(&b, (uint32_t)s->dims[k]);
        for (size_t k = 0; k < (size_t)s->rows * s->cols; k++) bytes_u32(&b, f32_bits(values[s->offset + k]));
    }
    if (loss) {
        bytes_u32(&b, 10); bytes_put(&b, "debug.loss", 10); bytes_u32(&b, 0); bytes_u32(&b, 1); bytes_u32(&b, 1); bytes_u32(&b, f32_bits(*loss));
    }
    if (fwrite(b.p, 1, b.n, f) != b.n || fclose(f) != 0) { remove(tmp); golf_die("cannot write '%s': %s", tmp, strerror(errno)); }
    if (rename(tmp, path) != 0) golf_die("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    free(b.p);
}

static void checkpoint_write(const char *path, const GolfModel *m, int steps) { container_write(path, m, m->params, "", steps, NULL); }

static void params_download(Trainer *tr) { cudaCheck(cudaMemcpy(tr->host.params, tr->params, tr->host.numel * 4, cudaMemcpyDeviceToHost)); }
static void params_upload(Trainer *tr) { cudaCheck(cudaMemcpy(tr->params, tr->host.params, tr->host.numel * 4, cudaMemcpyHostToDevice)); }

// export_options: QUANT for the matrices and the embedding, fp32 control tensors (train_gpt.py keeps them).
static ExportOptions export_options(const TrainConfig *c) {
    ExportOptions o = export_defaults();
    int s = scheme_from_name(c->quant);
    for (int k = 0; k < NUM_CLASSES; k++) o.scheme[k] = k == CLS_CONTROL ? SCHEME_FP32 : s;
    o.clip = clip_from_name(c->quant_clip);
    o.sd_k = (float)c->sdclip_k;
    o.quiet = 1;
    return o;
}

// export_blob: the blob of m under the config's export settings; with GPTQ_RESERVE_SECONDS > 0 by GPTQ, calibrated
// on the CPU on the first GPTQ_TOKENS tokens of DATA_PATH's train shards in windows of TRAIN_SEQ_LEN. Returns the
// milliseconds it took.
static double export_blob(const GolfModel *m, const TrainConfig *c, Bytes *blob) {
    double t0 = wall_ms();
    ExportOptions o = export_options(c);
    Hessians hs;
    memset(&hs, 0, sizeof(hs));
    if (c->gptq_reserve_seconds > 0) {
        char pattern[2048];
        snprintf(pattern, sizeof(pattern), "%s/fineweb_train_*.bin", c->data_path);
        hessians_collect(&hs, m, pattern, (size_t)c->gptq_tokens, c->train_seq_len);
        o.hess = &hs;
    }
    blob_encode(m, &o, blob);
    hessians_free(&hs);
    return wall_ms() - t0;
}

// broadcast_bytes: rank 0's bytes to every rank (the blob: only rank 0 encodes it).
static void broadcast_bytes(const Dist *dd, Bytes *b) {
#ifdef USE_MPI
    if (dd->world == 1) return;
    unsigned long long n = b->n;
    mpiCheck(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD));
    if (n > 0x7FFFFFFFull) golf_die("the blob (%llu bytes) is too large to broadcast", n);
    if (dd->rank != 0) { b->p = (uint8_t *)galloc((size_t)n); b->n = b->cap = (size_t)n; }
    mpiCheck(MPI_Bcast(b->p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD));
#else
    (void)dd; (void)b;
#endif
}

// ----------------------------------------------------------------------------------------------------
// 11. main

#ifndef TESTING
static FILE *g_log;
static int g_master = 1;
static void log0(const char *fmt, ...) {
    if (!g_master) return;
    va_list ap;
    va_start(ap, fmt); vprintf(fmt, ap); va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (g_log) { va_start(ap, fmt); vfprintf(g_log, fmt, ap); va_end(ap); fputc('\n', g_log); fflush(g_log); }
}

int main(int argc, char **argv) {
    g_golf_prog = "train_golf";
    Dist dd = dist_init(&argc, &argv);
    g_master = dd.rank == 0;
    Trainer tr;
    memset(&tr, 0, sizeof(tr));
    config_parse(&tr.tc, argc, argv);
    const TrainConfig *tc = &tr.tc;
    const char *bad = config_validate(tc, dd.world);
    if (bad) golf_die("config: %s", bad);
    if (g_master) {
        mkdir("logs", 0777);
        char path[512];
        snprintf(path, sizeof(path), "logs/%s.txt", tc->run_id);
        g_log = fopen(path, "w");
        if (!g_log) golf_die("cannot create '%s': %s", path, strerror(errno));
        printf("%s\n", path);
    }
    config_print(tc, log0);
    dist_init_gpu(&dd);
    int accum = 8 / dd.world;
    size_t local = (size_t)tc->train_batch_tokens / (dd.world * accum);
    tr.c = model_config(tc);
    model_layout(&tr.host, &tr.c);
    trainer_alloc(&tr, (int)(local / tc->train_seq_len));
    if (tc->init_ckpt[0]) {
        size_t n;
        uint8_t *p = read_file(tc->init_ckpt, &n);
        GolfModel ck;
        char why[512];
        const char *err = checkpoint_load(&ck, p, n, why, sizeof(why));
        if (err) golf_die("INIT_CKPT '%s': %s", tc->init_ckpt, err);
        if (ck.numel != tr.host.numel || memcmp(&ck.c, &tr.c, sizeof(Config)) != 0) golf_die("INIT_CKPT '%s' has another model shape than the config", tc->init_ckpt);
        memcpy(tr.host.params, ck.params, ck.numel * 4);
        model_free(&ck);
        free(p);
    } else init_params(&tr.host, tc);
    params_upload(&tr);
    if (tr.ema) cudaCheck(cudaMemcpy(tr.ema, tr.params, tr.host.numel * 4, cudaMemcpyDeviceToDevice));   // the EMA starts at the initial weights
    log0("model_params:%zu", tr.host.numel);
    log0("world_size:%d grad_accum_steps:%d", dd.world, accum);

    // tokenizer tables and the val split
    size_t n;
    uint8_t *mp = read_file(tc->tokenizer_path, &n);
    Pieces pieces;
    const char *err = pieces_parse(&pieces, mp, n);
    if (err) golf_die("TOKENIZER_PATH '%s': %s", tc->tokenizer_path, err);
    free(mp);
    if (pieces.n != tc->vocab_size) golf_die("VOCAB_SIZE=%d does not match tokenizer vocab_size=%d (%s)", tc->vocab_size, pieces.n, tc->tokenizer_path);
    ByteLut lut;
    byte_lut_build(&lut, &pieces, tc->vocab_size);
    char pattern[2048];
    snprintf(pattern, sizeof(pattern), "%s/fineweb_val_*.bin", tc->data_path);
    size_t nval;
    int32_t *val = load_shards(pattern, &nval, tc->vocab_size);
    if (nval < (size_t)tc->train_seq_len + 1) golf_die("the val split (%zu tokens) is shorter than one sequence", nval);
    nval = (nval - 1) / tc->train_seq_len * tc->train_seq_len + 1;
    log0("val_loader:shards pattern=%s tokens:%zu", pattern, nval - 1);
    snprintf(pattern, sizeof(pattern), "%s/fineweb_train_*.bin", tc->data_path);
    TokenStream stream;
    stream_open(&stream, pattern, tc->vocab_size);
    int32_t *chunk = (int32_t *)galloc((local + 1) * dd.world * 4), *x = (int32_t *)galloc(local * 4), *y = (int32_t *)galloc(local * 4);
    float grad_scale = 1.0f / (float)(local * accum * dd.world);   // mean over the global batch, summed over ranks

    // training
    double train_ms = 0, t0 = wall_ms(), pre_loss = 0, pre_bpb = 0;
    int step = 0, stop_after = -1, adam_t = 0, qat_on = 0;
    float *loss = (float *)galloc(local * sizeof(float));
    for (;;) {
        int last = step == tc->iterations || (stop_after >= 0 && step >= stop_after);
        if (last && tr.ema) {   // from here on the weights are the EMA: evaluated, saved and exported
            cudaCheck(cudaMemcpy(tr.params, tr.ema, tr.host.numel * 4, cudaMemcpyDeviceToDevice));
            log0("ema: the final weights are the EMA (decay %g)", tc->ema_decay);
        }
        if (last || (tc->val_loss_every > 0 && step % tc->val_loss_every == 0)) {
            cudaCheck(cudaDeviceSynchronize());
            train_ms += wall_ms() - t0;
            double vl, vb;
            evaluate_val(&tr, &dd, val, nval, &lut, &vl, &vb);
            pre_loss = vl; pre_bpb = vb;
            log0("step:%d/%d val_loss:%.4f val_bpb:%.4f train_time:%.0fms step_avg:%.2fms", step, tc->iterations, vl, vb, train_ms, train_ms / (step > 1 ? step : 1));
            t0 = wall_ms();
        }
        if (last) {
            if (stop_after >= 0 && step < tc->iterations) log0("stopping_early: wallclock_cap train_time:%.0fms step:%d/%d", train_ms, step, tc->iterations);
            break;
        }
        double elapsed = train_ms + wall_ms() - t0, scale = lr_mul(tc, step, elapsed), train_loss = 0;
        if (qat_on != qat_active(tc, step, elapsed)) { qat_on = !qat_on; log0("qat:%s step:%d scheme:%s", qat_on ? "on" : "off", step, tc->quant); }
        if (qat_on) qat_weights(&tr, 1);
        cudaCheck(cudaMemsetAsync(tr.grads, 0, tr.host.numel * 4));
        for (int micro = 0; micro < accum; micro++) {
            next_batch(&stream, chunk, x, y, local, dd.rank, dd.world);
            upload_tokens(&tr, x, y);
            forward(&tr, grad_scale);
            backward(&tr);
            cudaCheck(cudaMemcpy(loss, tr.loss, local * sizeof(float), cudaMemcpyDeviceToHost));
            double s = 0;
            for (size_t k = 0; k < local; k++) s += loss[k];
            train_loss += s / local / accum;
        }
        all_reduce_grads(&tr, &dd);
        if (step == 0 && tc->dump_grads[0] && g_master) {
            float *g = (float *)galloc(tr.host.numel * sizeof(float)), l = (float)train_loss;
            cudaCheck(cudaMemcpy(g, tr.grads, tr.host.numel * 4, cudaMemcpyDeviceToHost));
            container_write(tc->dump_grads, &tr.host, g, "grad.", 0, &l);
            free(g);
        }
        if (qat_on) qat_weights(&tr, 0);
        optimizer_step(&tr, scale, muon_momentum_at(tc, step), ++adam_t);
        if (tr.ema) LAUNCH1D(ema_update, tr.host.numel, tr.ema, tr.params, tr.host.numel, (float)tc->ema_decay);
        step++;
        cudaCheck(cudaDeviceSynchronize());
        double approx = train_ms + wall_ms() - t0;
        if (tc->train_log_every > 0 && (step <= 10 || step % tc->train_log_every == 0 || stop_after >= 0))
            log0("step:%d/%d train_loss:%.4f train_time:%.0fms step_avg:%.2fms", step, tc->iterations, train_loss, approx, approx / step);
        int reached = train_cap_seconds(tc) > 0 && approx >= 1000.0 * train_cap_seconds(tc);
        if (stop_after < 0 && agree_stop(&dd, reached)) stop_after = step;
    }
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    log0("peak memory: %zu MiB in use of %zu MiB", (total_b - free_b) >> 20, total_b >> 20);

    // export: checkpoint, blob, and the score of the decoded blob
    params_download(&tr);
    char ck_path[2048], blob_path[2048];
    snprintf(ck_path, sizeof(ck_path), "%s/final_model.ckpt", tc->out_dir);
    snprintf(blob_path, sizeof(blob_path), "%s/final_model.golf", tc->out_dir);
    Bytes blob = {NULL, 0, 0};
    if (g_master) {   // rank 0 encodes
        double ms = export_blob(&tr.host, tc, &blob);
        if (tc->gptq_reserve_seconds > 0)
            log0("gptq: calibration on %d train tokens and export in %.0fms (reserve %.0fms)%s", tc->gptq_tokens, ms, 1000.0 * tc->gptq_reserve_seconds,
                 ms > 1000.0 * tc->gptq_reserve_seconds ? ": OVER the reserve, raise GPTQ_RESERVE_SECONDS or lower GPTQ_TOKENS" : "");
    }
    broadcast_bytes(&dd, &blob);
    if (g_master) {
        log0("final_prequant_exact val_loss:%.8f val_bpb:%.8f", pre_loss, pre_bpb);
        checkpoint_write(ck_path, &tr.host, step);
        FILE *f = fopen(blob_path, "wb");
        if (!f || fwrite(blob.p, 1, blob.n, f) != blob.n || fclose(f) != 0) golf_die("cannot write '%s': %s", blob_path, strerror(errno));
        log0("Serialized model %s: %zu bytes", tc->quant, blob.n);
    }
    GolfModel back;
    char why[512];
    if ((err = blob_load(&back, blob.p, blob.n, why, sizeof(why)))) golf_die("the exported blob does not decode: %s", err);
    memcpy(tr.host.params, back.params, back.numel * 4);
    params_upload(&tr);
    double qt = wall_ms(), ql, qb;
    evaluate_val(&tr, &dd, val, nval, &lut, &ql, &qb);
    log0("final_%s_roundtrip val_loss:%.4f val_bpb:%.4f eval_time:%.0fms", tc->quant, ql, qb, wall_ms() - qt);
    log0("final_%s_roundtrip_exact val_loss:%.8f val_bpb:%.8f", tc->quant, ql, qb);
    char line[512];
    log0("%s", artifact_line(code_path(argv[0]), blob.n, line, sizeof(line)));
    free(blob.p);
    model_free(&back);
    stream_close(&stream);
    dist_finish(&dd);
    return 0;
}
#endif
