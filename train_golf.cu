/*
 * train_golf.cu — the golf trainer: the baseline model of openai/parameter-golf train_gpt.py and the records'
 * options (BigramHash, SmearGate, XSA, partial RoPE, LN scale, parallel residuals, depth recurrence, gates, attention
 * within documents, ValueEmbedding; presets
 * r0322 / r0405), trained on FineWeb shards within a wallclock cap on 1..8 GPUs, exported as a golf blob and scored.
 *
 * Contract
 *   ./train_golf [--name value ...]          one GPU
 *   mpirun -np N ./train_golf                N GPUs (built with MPI + NCCL); N must divide 8
 *   RANK=r WORLD_SIZE=N LOCAL_RANK=l MASTER_ADDR=host MASTER_PORT=p ./train_golf
 *                                            torchrun-style: one process per GPU started by any launcher (built with
 *                                            NCCL; no MPI needed): rank 0 hands out the NCCL id over TCP (section 9)
 *   Every hyperparameter has train_gpt.py's environment-variable name and default (NUM_LAYERS, MATRIX_LR, ...);
 *   a flag `--num-layers 9` (the name lowercased, '_' -> '-') beats the environment. `--help` lists them all.
 *   The model and its math are test/reference.py's (and train_gpt.py's); the parameter table, the checkpoint
 *   and blob formats and the val_bpb byte tables come from golf_infer.c, the blob encoder from
 *   dev/golf_export.c, both included here. Logs follow train_gpt.py:
 *     step:N/M train_loss:x train_time:ms step_avg:ms, step:N/M val_loss:x val_bpb:y ...,
 *     final_<scheme>_roundtrip val_loss:x val_bpb:y eval_time:ms, and the artifact byte count; at the start the
 *     resolved config (config NAME=value), "command:" (the environment settings and argv that reproduce it),
 *     "code:" (bytes and CRC-32 of golf_infer.c and train_golf.cu beside the binary), "train_loader:" and "hardware:".
 *   Outputs (rank 0), once every input is checked (config, tokenizer, shards and their tokens, RESUME's state):
 *   logs/RUN_ID.txt, and in OUT_DIR (created if missing): train.log (the same log), final_model.ckpt (float32),
 *   final_model.golf: the run folder that dev/submit.sh packages.
 *   Surviving a run: CHECKPOINT_EVERY (steps) / CHECKPOINT_EVERY_SECONDS write OUT_DIR/train_state.bin, RESUME=path
 *   continues from it (the uninterrupted run's bits in the CPU build); a non-finite loss or gradient norm stops every
 *   rank with the state of the last good step (ON_NONFINITE=skip skips the update); SIGTERM / SIGINT finish the step,
 *   write the state and exit 143 / 130; a watchdog ends every rank within DIST_TIMEOUT of a dead, stopped or stalled
 *   one, naming a dead or stopped rank (its heartbeat, section 9).
 *   PRESET=cpu and VAL_MAX_TOKENS=N size a run for the CPU build (make cpu: train_golf_cpu, CUDA emulated).
 *   PLAN_MEMORY=1 prints the device memory plan per GPU instead (bytes per buffer class from trainer_alloc's own
 *   sizes, the cuBLAS workspace, the fit on an H100 80GB) and exits, touching no GPU (dev/bench_train.sh --memory).
 *   Activation memory: LOGIT_CHUNK tokens of logits at a time (the head's forward, CE gradient and GEMMs per chunk);
 *   RECOMPUTE=1 recomputes the norm outputs, xm, xa and relu^2 in the backward from what each position keeps;
 *   FUSE=1 runs the residual mix / scale-add and the next norm as one kernel (both: the plain path's bits).
 *   Export options (test/reference.py has the same QAT and EMA): QAT=1 trains the matrices on their fake-quantized
 *   values from QAT_START_FRAC of training on (straight-through gradient); EMA_DECAY > 0 evaluates, saves and exports
 *   the EMA of the weights; GPTQ_RESERVE_SECONDS > 0 stops training that much before MAX_WALLCLOCK_SECONDS and
 *   exports with golf_export's GPTQ, calibrated on the CPU of rank 0 on the first GPTQ_TOKENS training tokens.
 *
 *   Numerics (PRECISION): fp32 master weights, optimizer state, residual stream, norms, softmax statistics, the loss
 *   and every reduction. PRECISION=bf16 (the default; train_gpt.py's autocast as tensor cores compute it): every GEMM,
 *   forward and gradient, through cuBLASLt on bf16 operands with fp32 accumulation (a bf16 shadow of the weights; the
 *   MLP's and the final norm's outputs, the fc output and relu^2 kept only in bf16, other operands cast on the
 *   fly); forward GEMM outputs rounded to bf16, dX and dW in fp32; attention as flash kernels on tensor cores for
 *   head_dim 64 and 128 (FLASH_ATTENTION=1, the default: bf16 q, k, v, dy, P and dS into mma.sync, fp32 accumulation,
 *   softmax / lse / D and y, dq, dk, dv in fp32; chapter 4c), otherwise the SIMT kernels on bf16-rounded q, k; Muon's
 *   Newton-Schulz in bf16.
 *   test/reference.py --device cpu --amp models all of it. PRECISION=fp32: the exact path, GEMMs in cuBLAS fp32 (TF32
 *   tensor cores with MATH_TF32=1), attention a fused online-softmax SIMT kernel per query (no T x T buffer).
 *   CUDA_GRAPH=1 (the default): a step's micro-steps are captured once as a CUDA graph and replayed, with no host
 *   sync inside the step (main, chapter 11; built with nvcc --default-stream per-thread); 0 issues them eagerly.
 *   The init draws from golf's own generator (not PyTorch's): INIT_CKPT starts from a golf checkpoint, e.g.
 *   one written by `test/reference.py init`, for step-by-step comparisons.
 *
 * Contents
 *   1. checks          2. config (one table)        3. parameters and optimizer classes
 *   4. kernels (4b: PTX wrappers, 4c: flash attention)   5. model: forward, backward  6. optimizers (Adam, Muon)
 *   7. data            8. evaluation                9. multi-GPU          10. checkpoint and export
 *   11. main (#ifndef TESTING)
 */
#include <cublas_v2.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <float.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <type_traits>
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

// KERNEL_LAUNCH(kernel, grid, block, dynamic shared bytes, args...): every kernel launch of this file. `make cpu`
// compiles this file with dev/cpu/ first on the include path: its cuda_runtime.h (dev/cuda_cpu.h) emulates the
// runtime, cuBLAS and NCCL on the CPU and defines its own KERNEL_LAUNCH; nothing else differs.
#ifndef KERNEL_LAUNCH
#define KERNEL_LAUNCH(kernel, grid, block, smem, ...) kernel<<<(grid), (block), (smem)>>>(__VA_ARGS__)
#endif
// EMU_MARK(label): a line in the CPU build's launch log (GOLF_EMU_LOG) where a phase of the training step begins
// (dev/predict.py cuts one step out of the log with them); nothing in the nvcc build.
#ifndef EMU_MARK
#define EMU_MARK(label) ((void)0)
#endif

// ----------------------------------------------------------------------------------------------------
// 1. checks

#define cudaCheck(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) \
    golf_die("CUDA: %s (%s:%d: %s)\n  hint: %s", cudaGetErrorString(e_), __FILE__, __LINE__, #call, \
             e_ == cudaErrorInsufficientDriver ? "the NVIDIA driver is older than the CUDA toolkit train_golf was built with: update the " \
             "driver (nvidia-smi shows the CUDA version it supports) or rebuild with an older toolkit (CUDA_HOME=...)" \
             : "is a GPU visible (nvidia-smi)? out of memory: lower TRAIN_BATCH_TOKENS"); } while (0)
#define cublasCheck(call) do { cublasStatus_t s_ = (call); if (s_ != CUBLAS_STATUS_SUCCESS) \
    golf_die("cuBLAS status %d (%s:%d: %s)", (int)s_, __FILE__, __LINE__, #call); } while (0)
#ifdef USE_NCCL
#define ncclCheck(call) do { ncclResult_t r_ = (call); if (r_ != ncclSuccess) \
    golf_die("rank %d: NCCL: %s (%s:%d: %s)\n  hint: NCCL_DEBUG=INFO shows more", g_rank, ncclGetErrorString(r_), __FILE__, __LINE__, #call); } while (0)
#endif
#ifdef USE_MPI
#define mpiCheck(call) do { int m_ = (call); if (m_ != MPI_SUCCESS) golf_die("MPI error %d (%s:%d: %s)", m_, __FILE__, __LINE__, #call); } while (0)
#endif

static double wall_ms(void) { struct timeval tv; gettimeofday(&tv, NULL); return tv.tv_sec * 1e3 + tv.tv_usec * 1e-3; }
static int g_master = 1;   // rank 0: the one process that logs and writes files (main sets it)
static int g_rank = 0;     // this process's rank, for the messages of the checks above (main sets it)

// ----------------------------------------------------------------------------------------------------
// 2. config: ONE table drives parsing, --help and the printed resolved config

typedef struct {
    char data_path[1024], tokenizer_path[1024], run_id[256], out_dir[1024], init_ckpt[1024], quant[16], quant_embed[16], quant_clip[16], dump_grads[1024], precision[8];
    int seed, val_batch_size, val_loss_every, train_log_every, iterations, warmdown_iters, warmup_steps;
    int train_batch_tokens, train_seq_len, vocab_size, num_layers, num_kv_heads, model_dim, num_heads, mlp_mult;
    int tie_embeddings, muon_backend_steps, muon_momentum_warmup_steps, math_tf32, eval_stride, qat, gptq_tokens, ttt_chunk_tokens, ttt_steps;
    double ttt_lr;
    double qat_start_frac, ema_decay, gptq_reserve_seconds;
    double max_wallclock_seconds, qk_gain_init, rope_base, logit_softcap, embed_lr, head_lr, tied_embed_lr;
    double tied_embed_init_std, matrix_lr, scalar_lr, muon_momentum, muon_momentum_warmup_start, beta1, beta2;
    double adam_eps, grad_clip_norm, sdclip_k, muon_wd, adam_wd, warmdown_frac, min_lr_frac, dist_timeout, bucket_cap_mb;
    int muon_eq_r, muon_polar_express, flash_attention;
    // architecture options (golf_infer.c's Config; README "Presets and the records they reproduce")
    int mlp_hidden, bigram_vocab_size, bigram_dim, smear_gate, xsa_last_n, rope_dims, ln_scale, parallel_from, skip_gates, attn_out_gate, doc_attention;
    double mlp_leaky_slope, loop_start_frac, attn_out_gate_scale;
    char parallel_form[16];
    int ve_enabled, ve_dim;
    char ve_layers[256];
    char loop_encoder[256], loop_decoder[256], preset[32];
    int plan_memory, cuda_graph, logit_chunk, recompute, fuse;
    int val_max_tokens;
    // surviving a run (chapter 10's training state; main): CHECKPOINT_EVERY, RESUME, ON_NONFINITE
    int checkpoint_every;
    double checkpoint_every_seconds;
    char resume[1024], on_nonfinite[8];
} TrainConfig;

enum { OPT_INT, OPT_FLOAT, OPT_STR };
typedef struct { const char *name; int type; size_t offset, size; const char *dflt, *help; } ConfigEntry;

#define CI(field, name, d, help) {name, OPT_INT, offsetof(TrainConfig, field), sizeof(int), d, help}
#define CF(field, name, d, help) {name, OPT_FLOAT, offsetof(TrainConfig, field), sizeof(double), d, help}
#define CS(field, name, d, help) {name, OPT_STR, offsetof(TrainConfig, field), sizeof(((TrainConfig *)0)->field), d, help}
static const ConfigEntry CONFIG[] = {
    CS(data_path, "DATA_PATH", "./data/datasets/fineweb10B_sp1024", "folder of fineweb_{train,val}_*.bin shards (with fineweb_val_bytes_*.bin, a CaseOps val set: val_bpb counts their bytes)"),
    CS(tokenizer_path, "TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model", "SentencePiece model for the val_bpb byte tables"),
    CS(run_id, "RUN_ID", "", "log name (logs/RUN_ID.txt); default: a time stamp"),
    CI(seed, "SEED", "1337", "init and data seed"),
    CI(val_batch_size, "VAL_BATCH_SIZE", "524288", "validated as train_gpt.py does; evaluation runs in training-sized batches"),
    CI(eval_stride, "EVAL_STRIDE", "0", "sliding-window eval: windows of TRAIN_SEQ_LEN every N tokens, each scoring its last N (0: non-overlapping)"),
    CI(ttt_chunk_tokens, "TTT_CHUNK_TOKENS", "0", "score-first test-time training in the final eval: chunks of N tokens (0: off; a multiple of TRAIN_SEQ_LEN)"),
    CF(ttt_lr, "TTT_LR", "0.002", "TTT: SGD learning rate"),
    CI(ttt_steps, "TTT_STEPS", "1", "TTT: SGD steps per chunk, each on the whole chunk"),
    CI(val_loss_every, "VAL_LOSS_EVERY", "1000", "validate every N steps (0: only at the end)"),
    CI(val_max_tokens, "VAL_MAX_TOKENS", "0", "score only the first N val tokens (0: all of them; golf_infer --max-tokens N scores the same)"),
    CI(train_log_every, "TRAIN_LOG_EVERY", "200", "log the train loss every N steps (and the first 10)"),
    CI(iterations, "ITERATIONS", "20000", "training steps"),
    CI(warmdown_iters, "WARMDOWN_ITERS", "150", "linear LR warmdown length (steps, or their time under the wallclock cap)"),
    CF(warmdown_frac, "WARMDOWN_FRAC", "0", "> 0: warmdown over this last fraction of training (wallclock under a cap), instead of WARMDOWN_ITERS"),
    CF(min_lr_frac, "MIN_LR_FRAC", "0", "floor of the LR multiplier"),
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
    CI(mlp_hidden, "MLP_HIDDEN", "0", "MLP hidden size; overrides MLP_MULT when > 0"),
    CF(mlp_leaky_slope, "MLP_LEAKY_SLOPE", "0", "MLP activation (x > 0 ? x : slope x)^2; 0 = relu^2, 0.5 = LeakyReLU(0.5)^2"),
    CI(bigram_vocab_size, "BIGRAM_VOCAB_SIZE", "0", "BigramHash buckets (0: off)"),
    CI(bigram_dim, "BIGRAM_DIM", "128", "BigramHash embedding width"),
    CI(smear_gate, "SMEAR_GATE", "0", "1: SmearGate, April form (04-27, 04-29): e_t += lam sigmoid(w . e_t[:12]) e_{t-1} on the raw embedding, before its norm"),
    CI(xsa_last_n, "XSA_LAST_N", "0", "XSA on the last N layers"),
    CI(rope_dims, "ROPE_DIMS", "0", "RoPE on the first R dims of each head (0: all)"),
    CI(ln_scale, "LN_SCALE", "0", "1: block norms times 1/sqrt(layer + 1)"),
    CI(parallel_from, "PARALLEL_FROM", "0", "layers >= P run two residual lanes, in PARALLEL_FORM's form (0: off)"),
    CS(parallel_form, "PARALLEL_FORM", "0429", "0429: 04-29's lanes (lane 0 carried raw, attention and MLP side by side, skips into lane 0); 0331: 03-31's "
                                               "(attention, then the MLP on lane 1's mix, each into both lanes; skips into both); 0331-virtual: 03-31's, P counting schedule positions"),
    CI(skip_gates, "SKIP_GATES", "0", "1: gated U-Net skips as 04-05's: lerp(w skip, x, sigmoid(g))"),
    CI(attn_out_gate, "ATTN_OUT_GATE", "0", "1: per-head sigmoid gate on the attention output (04-29's sparse gate)"),
    CF(attn_out_gate_scale, "ATTN_OUT_GATE_SCALE", "1", "the output gate is sigmoid(scale w . x[:12]) (04-27's run: 0.5, its SPARSE_ATTN_GATE_SCALE)"),
    CI(doc_attention, "DOC_ATTENTION", "0", "1: attention within documents (04-10): a BOS starts one, cut every TRAIN_SEQ_LEN; training runs a micro-batch as one stream, eval each window apart"),
    CI(ve_enabled, "VE_ENABLED", "0", "1: ValueEmbedding (03-31): v += s_p * scale * proj(ve_embed[tok]) before attention at the VE_LAYERS positions"),
    CI(ve_dim, "VE_DIM", "128", "ValueEmbedding table width (no projection when it equals the kv width)"),
    CS(ve_layers, "VE_LAYERS", "9,10", "ValueEmbedding: the schedule positions (virtual layers, increasing, below 64) whose values get it"),
    CS(loop_encoder, "LOOP_ENCODER", "", "depth recurrence: encoder layer indices, e.g. 0,1,2,3,4,5,3,4"),
    CS(loop_decoder, "LOOP_DECODER", "", "depth recurrence: decoder layer indices, e.g. 5,3,4,5,6,7,8,9,10"),
    CF(loop_start_frac, "LOOP_START_FRAC", "0", "use the loop schedule from this fraction of training on"),
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
    CF(muon_wd, "MUON_WD", "0", "Muon decoupled weight decay: p *= 1 - lr * MUON_WD before each update"),
    CI(muon_eq_r, "MUON_EQ_R", "0", "1: MuonEq-R, each row of the update divided by its L2 norm before Newton-Schulz"),
    CI(muon_polar_express, "MUON_POLAR_EXPRESS", "0", "1: Polar Express per-iteration Newton-Schulz coefficients"),
    CF(adam_wd, "ADAM_WD", "0", "Adam decoupled weight decay: p *= 1 - lr * ADAM_WD before each update"),
    CF(beta1, "BETA1", "0.9", "Adam beta1"),
    CF(beta2, "BETA2", "0.95", "Adam beta2"),
    CF(adam_eps, "ADAM_EPS", "1e-8", "Adam epsilon"),
    CF(grad_clip_norm, "GRAD_CLIP_NORM", "0", "clip the global gradient norm (0: off)"),
    CS(preset, "PRESET", "baseline", "a record's recipe, or cpu (a small model for the CPU build); listed below --help's table; env and flags override it"),
    CS(out_dir, "OUT_DIR", ".", "where final_model.ckpt and final_model.golf go"),
    CS(init_ckpt, "INIT_CKPT", "", "start from this golf checkpoint instead of the seeded init"),
    CS(quant, "QUANT", "int8", "export scheme of the matrices: int8 int6 int5 int4 ternary fp16"),
    CS(quant_embed, "QUANT_EMBED", "", "export scheme of the embeddings (default: QUANT)"),
    CS(quant_clip, "QUANT_CLIP", "search", "per-row clip of the integer schemes: search (GPTQ-lite), none (row maximum), sdclip"),
    CF(sdclip_k, "SDCLIP_K", "12.5", "SDClip: row scale = SDCLIP_K * std(row) / qmax"),
    CI(qat, "QAT", "0", "1: quantization-aware training of the matrices at QUANT (fake-quantized forward, straight-through gradient)"),
    CF(qat_start_frac, "QAT_START_FRAC", "0", "QAT from this fraction of training on (of ITERATIONS, or of the wallclock cap)"),
    CF(ema_decay, "EMA_DECAY", "0", "EMA of the weights, ema = d*ema + (1-d)*w per step; evaluated and exported at the end (0: off)"),
    CF(gptq_reserve_seconds, "GPTQ_RESERVE_SECONDS", "0", "GPTQ export (0: off): seconds of MAX_WALLCLOCK_SECONDS kept for its CPU calibration"),
    CI(gptq_tokens, "GPTQ_TOKENS", "65536", "GPTQ calibration: the first N tokens of the train shards"),
    CS(precision, "PRECISION", "bf16", "bf16 (train_gpt.py's autocast): GEMMs and attention on bf16 operands with fp32 accumulation; fp32: everything in fp32 (the exact path)"),
    CI(plan_memory, "PLAN_MEMORY", "0", "1: print the device memory plan of this config per GPU and exit (no GPU used; dev/bench_train.sh --memory)"),
    CI(flash_attention, "FLASH_ATTENTION", "1", "1: with PRECISION=bf16 and head_dim 64 or 128, attention on the tensor-core flash kernels (4c); 0: the SIMT kernels on bf16-rounded q, k, v"),
    CI(logit_chunk, "LOGIT_CHUNK", "8192", "tokens per pass of the head (logits, softcapped CE and its gradient, lm_head GEMMs) over a chunk; 0: the whole micro-batch"),
    CI(recompute, "RECOMPUTE", "1", "1: the backward recomputes the norm outputs and relu^2 from what it keeps (one buffer each); 0: every block position keeps them"),
    CI(fuse, "FUSE", "1", "1: the residual mix and the scale-add each fused with the norm after it (one pass, the same bits); 0: the plain kernels"),
    CI(math_tf32, "MATH_TF32", "0", "1: TF32 tensor cores in the fp32 GEMMs"),
    CI(cuda_graph, "CUDA_GRAPH", "1", "1: a training step's micro-steps captured once as a CUDA graph and replayed (main); 0: issued eagerly"),
    CS(dump_grads, "DUMP_GRADS", "", "write step 0's loss and gradients here (checkpoint format, grad.<name>), for tests"),
    CF(dist_timeout, "DIST_TIMEOUT", "300", "seconds the ranks of a RANK/WORLD_SIZE launch wait for each other at the start"),
    CF(bucket_cap_mb, "BUCKET_CAP_MB", "25", "several ranks: MiB of the flat gradient buffer per all-reduce bucket, each started as soon as backward completes it"),
    CI(checkpoint_every, "CHECKPOINT_EVERY", "0", "write the training state (OUT_DIR/train_state.bin) after every N steps (0: off)"),
    CF(checkpoint_every_seconds, "CHECKPOINT_EVERY_SECONDS", "0", "write the training state when this many seconds of training passed since the last (0: off)"),
    CS(resume, "RESUME", "", "continue the run whose training state is this file (same config and code)"),
    CS(on_nonfinite, "ON_NONFINITE", "stop", "a non-finite train loss or gradient norm: stop (write the last good state, exit 1) or skip (the step's update)"),
};
static const int NCONFIG = (int)(sizeof(CONFIG) / sizeof(CONFIG[0]));

// Presets: a record's settings as NAME=value words, applied over the defaults and under the environment
// and flags. Keys a preset sets that this build lacks are errors (the table is checked at start).
typedef struct { const char *name, *settings, *record; } Preset;   // record: the folder of openai/parameter-golf's
                                                                   // records/track_10min_16mb/ it reproduces
static const Preset PRESETS[] = {
    {"baseline", "", "2026-03-17_NaiveBaseline"},
    // from RECORDS.md, then (guesses) the optimizer settings of the record's lineage; ROPE_BASE: the record's Rotary
    // rescales its base for sequences past 1024 (base * (T / 1024)^(R / (R - 2)), R = 16), at T = 2048 22081.79, written to the 6 digits the config log prints
    {"r0322", "NUM_LAYERS=11 MLP_MULT=3 TRAIN_SEQ_LEN=2048 TRAIN_BATCH_TOKENS=786432 XSA_LAST_N=4 ROPE_DIMS=16 ROPE_BASE=22081.8 LN_SCALE=1 EMA_DECAY=0.997 "
              "BIGRAM_VOCAB_SIZE=2048 BIGRAM_DIM=128 SMEAR_GATE=1 MUON_WD=0.04 WARMDOWN_ITERS=3500 EVAL_STRIDE=64 QUANT=int6 QUANT_CLIP=search "
              "ADAM_WD=0.04 MATRIX_LR=0.025 SCALAR_LR=0.025 TIED_EMBED_LR=0.035 MUON_MOMENTUM=0.99 MUON_MOMENTUM_WARMUP_START=0.92 "
              "MUON_MOMENTUM_WARMUP_STEPS=1500 GRAD_CLIP_NORM=0.3",
     "2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233"},
    // the record's defaults (its run command sets none): layers 4-5 run three times, 0,1,2,3,4,5,4,5,4,5,6,7,8,9,10
    // cut after its first 7 positions; no parallel residuals; test/test_records.py checks them against its code
    {"r0405", "VOCAB_SIZE=8192 DATA_PATH=./data/datasets/fineweb10B_sp8192 TOKENIZER_PATH=./data/tokenizers/fineweb_8192_bpe.model "
              "TIE_EMBEDDINGS=1 NUM_LAYERS=11 MLP_MULT=4 TRAIN_SEQ_LEN=2048 TRAIN_BATCH_TOKENS=786432 MUON_EQ_R=1 MUON_WD=0.085 "
              "LOOP_START_FRAC=0.5 QK_GAIN_INIT=4 MLP_LEAKY_SLOPE=0.5 EVAL_STRIDE=64 "
              "LOOP_ENCODER=0,1,2,3,4,5,4 LOOP_DECODER=5,4,5,6,7,8,9,10 XSA_LAST_N=11 ROPE_DIMS=16 LN_SCALE=1 SKIP_GATES=1 "
              "EMA_DECAY=0.997 GRAD_CLIP_NORM=0.3 MUON_MOMENTUM=0.99 MUON_MOMENTUM_WARMUP_START=0.92 MUON_MOMENTUM_WARMUP_STEPS=1500 "
              "MATRIX_LR=0.02 SCALAR_LR=0.02 TIED_EMBED_LR=0.03 WARMDOWN_FRAC=0.667 QUANT=int6 QUANT_EMBED=int8 QUANT_CLIP=sdclip",
     "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2"},
    // not a record: a model the CPU build (make cpu) trains in minutes, scored on a cut of the val split
    {"cpu", "NUM_LAYERS=2 MODEL_DIM=128 NUM_HEADS=2 NUM_KV_HEADS=1 TRAIN_SEQ_LEN=128 TRAIN_BATCH_TOKENS=4096 VAL_BATCH_SIZE=4096 "
            "VAL_MAX_TOKENS=65536 ITERATIONS=100000 MAX_WALLCLOCK_SECONDS=90 WARMDOWN_ITERS=20 VAL_LOSS_EVERY=0 TRAIN_LOG_EVERY=10",
     "none: the CPU build's first run (2x128, seq 128, 4,096 tokens/step for 90 s, val on its first 65,536 tokens)"},
};

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

// config_help: --help: the table, the presets, and a first command for this build (prog: the binary's name).
static void config_help(const char *prog) {
    char flag[64];
    const char *base = strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog;
    printf("usage: %s [--flag value ...]   (or the environment variable of the same name)\n\n", base);
    for (int i = 0; i < NCONFIG; i++) {
        config_flag(CONFIG[i].name, flag, sizeof(flag));
        printf("  %-30s %-28s default %-12s %s\n", flag, CONFIG[i].name, CONFIG[i].dflt[0] ? CONFIG[i].dflt : "\"\"", CONFIG[i].help);
    }
    printf("\npresets (--preset NAME: the record of openai/parameter-golf records/track_10min_16mb/ it reproduces):\n");
    for (size_t p = 0; p < sizeof(PRESETS) / sizeof(PRESETS[0]); p++) printf("  %-10s %s\n", PRESETS[p].name, PRESETS[p].record);
#ifdef GOLF_CPU
    printf("\nThis is the CPU build: train_golf.cu with CUDA emulated on the CPU (every kernel runs, slowly). A first run:\n"
           "  %s --preset cpu --data-path ../shared/data/sample_sp1024 --tokenizer-path ../shared/tokenizers/fineweb_1024_bpe.model\n"
           "(or DATA_PATH/TOKENIZER_PATH of your shards; bash dev/quickstart.sh does it all)\n", prog);
#else
    printf("\nOn 8 GPUs: mpirun -np 8 %s (as root: mpirun --allow-run-as-root); one GPU: %s\n", prog, prog);
#endif
}

// parse_layer_list: "0,1,2" into idx (at most cap); the count, or -1 when it is not such a list.
static int parse_layer_list(const char *s, int *idx, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v >= MAX_LAYERS || n == cap) return -1;
        idx[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

// model_config: golf_infer.c's Config of a resolved TrainConfig; NULL or the problem (a bad loop list or PARALLEL_FORM).
static const char *model_config(const TrainConfig *c, Config *m) {
    memset(m, 0, sizeof(*m));
    m->vocab_size = c->vocab_size; m->num_layers = c->num_layers; m->model_dim = c->model_dim; m->num_heads = c->num_heads;
    m->num_kv_heads = c->num_kv_heads; m->mlp_hidden = c->mlp_hidden > 0 ? c->mlp_hidden : c->mlp_mult * c->model_dim;
    m->tie_embeddings = c->tie_embeddings; m->train_seq_len = c->train_seq_len;
    m->rope_base = (float)c->rope_base; m->logit_softcap = (float)c->logit_softcap; m->mlp_leaky_slope = (float)c->mlp_leaky_slope;
    m->bigram_vocab = c->bigram_vocab_size; m->bigram_dim = c->bigram_vocab_size ? c->bigram_dim : 0;   // 0 when off, as the headers store it
    m->smear_gate = c->smear_gate; m->xsa_last_n = c->xsa_last_n;
    m->rope_dims = c->rope_dims; m->ln_scale = c->ln_scale; m->parallel_from = c->parallel_from; m->skip_gates = c->skip_gates;
    m->attn_out_gate = c->attn_out_gate; m->attn_gate_scale = (float)c->attn_out_gate_scale; m->doc_attention = c->doc_attention;
    for (m->parallel_form = 0; m->parallel_form < NUM_PARALLEL_FORMS && strcmp(c->parallel_form, PARALLEL_FORM_NAME[m->parallel_form]); m->parallel_form++) {}
    if (m->parallel_form == NUM_PARALLEL_FORMS) return "PARALLEL_FORM must be 0429, 0331 or 0331-virtual";
    m->loop_enc = parse_layer_list(c->loop_encoder, m->loop, MAX_SCHEDULE);
    m->loop_dec = m->loop_enc < 0 ? -1 : parse_layer_list(c->loop_decoder, m->loop + m->loop_enc, MAX_SCHEDULE - m->loop_enc);
    if (m->loop_enc < 0 || m->loop_dec < 0) return "LOOP_ENCODER/LOOP_DECODER must be comma lists of layer indices, 32 entries at most in all";
    int ve[64], nve = c->ve_enabled ? parse_layer_list(c->ve_layers, ve, 64) : 0;   // the record: an empty list is off
    if (c->ve_enabled != 0 && c->ve_enabled != 1) return "VE_ENABLED must be 0 or 1";
    if (nve < 0) return "VE_LAYERS must be a comma list of schedule positions, 64 at most";
    for (int k = 0; k < nve; k++) {
        if (ve[k] >= 64 || (k && ve[k] <= ve[k - 1])) return "VE_LAYERS must list increasing schedule positions below 64";
        m->ve_mask[ve[k] / 32] |= 1u << (ve[k] % 32);
    }
    m->ve_dim = nve ? c->ve_dim : 0;   // 0 when off, as the headers store it
    if (nve && c->ve_dim < 1) return "VE_DIM must be >= 1";
    return config_check(m);
}

// export_scheme: the blob scheme QUANT / QUANT_EMBED name (fp16 .. ternary), or -1.
static int export_scheme(const char *name) { int s = scheme_index(name); return s >= SCHEME_FP16 ? s : -1; }

// config_validate: NULL or what is wrong with a resolved config.
static const char *config_validate(const TrainConfig *c, int world) {
    static char why[256];
    if (world < 1 || 8 % world) return "the number of ranks must divide 8 (1, 2, 4 or 8)";
    int accum = 8 / world;
    if (c->train_seq_len < 1 || c->train_batch_tokens < 1) return "TRAIN_SEQ_LEN and TRAIN_BATCH_TOKENS must be positive";
    if (c->train_batch_tokens % (world * accum * c->train_seq_len))
        return "TRAIN_BATCH_TOKENS must be a multiple of 8 * TRAIN_SEQ_LEN";
    if (c->val_batch_size / (world * accum) < c->train_seq_len) return "VAL_BATCH_SIZE must give every rank at least one sequence";
    if (c->mlp_mult < 1 || c->mlp_hidden < 0) return "MLP_MULT must be positive and MLP_HIDDEN >= 0";
    Config m;
    const char *bad = model_config(c, &m);
    if (bad) { snprintf(why, sizeof(why), "model shape: %s", bad); return why; }
    if (c->eval_stride < 0 || c->eval_stride > c->train_seq_len) return "EVAL_STRIDE must be in 0..TRAIN_SEQ_LEN";
    if (c->ttt_chunk_tokens < 0 || c->ttt_chunk_tokens % c->train_seq_len || c->ttt_steps < 1 || !(c->ttt_lr >= 0))
        return "TTT_CHUNK_TOKENS must be 0 or a multiple of TRAIN_SEQ_LEN, TTT_STEPS >= 1, TTT_LR >= 0";
    if (!(c->loop_start_frac >= 0 && c->loop_start_frac <= 1)) return "LOOP_START_FRAC must be in [0, 1]";
    if (c->logit_chunk < 0 || (c->recompute != 0 && c->recompute != 1) || (c->fuse != 0 && c->fuse != 1)) return "LOGIT_CHUNK must be >= 0, RECOMPUTE and FUSE 0 or 1";
    if (!(c->warmdown_frac >= 0 && c->warmdown_frac <= 1) || !(c->min_lr_frac >= 0 && c->min_lr_frac <= 1)) return "WARMDOWN_FRAC and MIN_LR_FRAC must be in [0, 1]";
    if (c->muon_wd < 0 || c->adam_wd < 0) return "MUON_WD and ADAM_WD must be >= 0";
    // the options golf_infer.c and test/reference.py run, that this version's GPU kernels do not yet
    if (m.bigram_vocab && m.bigram_dim > m.model_dim) return "BIGRAM_DIM must be at most MODEL_DIM (train_golf's scratch buffers)";
    if (m.ve_dim > m.model_dim) return "VE_DIM must be at most MODEL_DIM (train_golf's scratch buffers)";
    if ((c->model_dim / c->num_heads) % 32 || c->model_dim / c->num_heads > 256) return "head_dim (MODEL_DIM / NUM_HEADS) must be a multiple of 32, at most 256";
    if (c->vocab_size > 65536) return "VOCAB_SIZE must be at most 65536 (uint16 shards)";
    if (c->iterations < 0 || c->warmup_steps < 0 || c->muon_backend_steps < 1) return "ITERATIONS/WARMUP_STEPS >= 0 and MUON_BACKEND_STEPS >= 1";
    if (export_scheme(c->quant) < 0) return "QUANT must be one of fp16 int8 int6 int5 int4 ternary";
    if (c->quant_embed[0] && export_scheme(c->quant_embed) < 0) return "QUANT_EMBED must be one of fp16 int8 int6 int5 int4 ternary (or empty: QUANT)";
    if (clip_from_name(c->quant_clip) < 0) return "QUANT_CLIP must be search, none or sdclip";
    if (strcmp(c->precision, "bf16") && strcmp(c->precision, "fp32")) return "PRECISION must be bf16 or fp32";
    if (c->flash_attention != 0 && c->flash_attention != 1) return "FLASH_ATTENTION must be 0 or 1";
    if (!(c->dist_timeout > 0)) return "DIST_TIMEOUT must be positive";
    if (!(c->bucket_cap_mb > 0)) return "BUCKET_CAP_MB must be positive";
    if (c->embed_lr < 0 || c->head_lr < 0 || c->tied_embed_lr < 0 || c->matrix_lr < 0 || c->scalar_lr < 0 || c->grad_clip_norm < 0)
        return "learning rates (EMBED_LR, HEAD_LR, TIED_EMBED_LR, MATRIX_LR, SCALAR_LR) and GRAD_CLIP_NORM must be >= 0";
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->muon_momentum >= 0 && c->muon_momentum < 1) ||
        !(c->muon_momentum_warmup_start >= 0 && c->muon_momentum_warmup_start < 1))
        return "BETA1, BETA2, MUON_MOMENTUM and MUON_MOMENTUM_WARMUP_START must be in [0, 1)";
    if (!(c->adam_eps > 0) || c->tied_embed_init_std < 0 || c->max_wallclock_seconds < 0)
        return "ADAM_EPS must be > 0, TIED_EMBED_INIT_STD and MAX_WALLCLOCK_SECONDS >= 0";
    if (c->warmdown_iters < 0 || c->muon_momentum_warmup_steps < 0 || c->train_log_every < 0 || c->val_loss_every < 0)
        return "WARMDOWN_ITERS, MUON_MOMENTUM_WARMUP_STEPS, TRAIN_LOG_EVERY and VAL_LOSS_EVERY must be >= 0";
    if (c->bigram_vocab_size < 0 || (c->bigram_vocab_size > 0 && c->bigram_dim < 1)) return "BIGRAM_VOCAB_SIZE must be >= 0 and BIGRAM_DIM >= 1";
    if (c->sdclip_k < 0.001) return "SDCLIP_K must be at least 0.001";
    if (c->checkpoint_every < 0 || !(c->checkpoint_every_seconds >= 0)) return "CHECKPOINT_EVERY and CHECKPOINT_EVERY_SECONDS must be >= 0";
    if (strcmp(c->on_nonfinite, "stop") && strcmp(c->on_nonfinite, "skip")) return "ON_NONFINITE must be stop or skip";
    if ((c->qat != 0 && c->qat != 1) || !(c->qat_start_frac >= 0 && c->qat_start_frac <= 1)) return "QAT must be 0 or 1 and QAT_START_FRAC in [0, 1]";
    if (!(c->ema_decay >= 0 && c->ema_decay < 1)) return "EMA_DECAY must be in [0, 1)";
    if (c->gptq_reserve_seconds < 0 || (c->max_wallclock_seconds > 0 && c->gptq_reserve_seconds >= c->max_wallclock_seconds))
        return "GPTQ_RESERVE_SECONDS must be >= 0 and below MAX_WALLCLOCK_SECONDS";
    if (c->gptq_reserve_seconds > 0 && c->gptq_tokens < c->train_seq_len) return "GPTQ_TOKENS must hold at least one sequence of TRAIN_SEQ_LEN";
    return NULL;
}

static int config_find(const char *name, size_t len) {
    for (int k = 0; k < NCONFIG; k++) if (strlen(CONFIG[k].name) == len && strncmp(CONFIG[k].name, name, len) == 0) return k;
    return -1;
}

// preset_apply: the settings of preset `name` into c; NULL or the problem.
static const char *preset_apply(TrainConfig *c, const char *name) {
    static char why[256];
    for (size_t p = 0; p < sizeof(PRESETS) / sizeof(PRESETS[0]); p++) {
        if (strcmp(PRESETS[p].name, name) != 0) continue;
        for (const char *w = PRESETS[p].settings; *w;) {
            const char *eq = strchr(w, '='), *end = strchr(w, ' ');
            if (!end) end = w + strlen(w);
            int k = eq && eq < end ? config_find(w, (size_t)(eq - w)) : -1;
            char v[256];
            snprintf(v, sizeof(v), "%.*s", k >= 0 ? (int)(end - eq - 1) : 0, k >= 0 ? eq + 1 : "");
            if (k < 0 || config_set(c, &CONFIG[k], v)) { snprintf(why, sizeof(why), "internal: preset %s: bad setting '%.*s'", name, (int)(end - w), w); return why; }
            w = *end ? end + 1 : end;
        }
        return NULL;
    }
    int k = snprintf(why, sizeof(why), "unknown preset '%s' (one of:", name);
    for (size_t p = 0; p < sizeof(PRESETS) / sizeof(PRESETS[0]) && k < (int)sizeof(why); p++) k += snprintf(why + k, sizeof(why) - k, " %s", PRESETS[p].name);
    if (k < (int)sizeof(why)) snprintf(why + k, sizeof(why) - k, ")");
    return why;
}

// config_parse: defaults, then the preset, then the environment, then --flags; dies (usage: exit 2) on unknown
// flags or bad values.
static void config_parse(TrainConfig *c, int argc, char **argv) {
    memset(c, 0, sizeof(*c));
    const char *preset = getenv("PRESET");
    for (int a = 1; a < argc; a++) {   // the preset goes first, so look for it before the rest
        if (strncmp(argv[a], "--preset=", 9) == 0) preset = argv[a] + 9;
        else if (strcmp(argv[a], "--preset") == 0 && a + 1 < argc) preset = argv[a + 1];
    }
    for (int i = 0; i < NCONFIG; i++) {
        const char *err = config_set(c, &CONFIG[i], CONFIG[i].dflt);
        if (err) golf_die("internal: default of %s: %s", CONFIG[i].name, err);
    }
    if (preset) {
        const char *err = preset_apply(c, preset);
        if (err) { fprintf(stderr, "train_golf: %s\n", err); exit(2); }
    }
    for (int i = 0; i < NCONFIG; i++) {
        const char *v = getenv(CONFIG[i].name), *err;
        if (v && (err = config_set(c, &CONFIG[i], v))) golf_die("environment %s='%s': %s", CONFIG[i].name, v, err);
    }
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-h") == 0 || strcmp(argv[a], "--help") == 0) { config_help(argv[0]); exit(0); }
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

// shell_quote: s appended to out (capacity n) as one shell word (single quotes when it needs them).
static void shell_quote(const char *s, char *out, size_t n) {
    size_t k = strlen(out);
    int plain = *s != 0;
    for (const char *p = s; *p; p++) plain &= isalnum((unsigned char)*p) || strchr("_./=:,+-@%", *p) != NULL;
    if (plain) { snprintf(out + k, n - k, "%s", s); return; }
    if (k + 1 < n) out[k++] = '\'';
    for (const char *p = s; *p && k + 5 < n; p++) {
        if (*p == '\'') { memcpy(out + k, "'\\''", 4); k += 4; }
        else out[k++] = *p;
    }
    if (k + 1 < n) out[k++] = '\'';
    out[k] = 0;
}

// config_command: the command line that reproduces this run's config: NAME=value for every table variable set in the
// environment, then argv, shell-quoted, into out (capacity n).
static void config_command(int argc, char **argv, char *out, size_t n) {
    out[0] = 0;
    char word[2048];
    for (int i = 0; i < NCONFIG; i++) {
        const char *v = getenv(CONFIG[i].name);
        if (!v) continue;
        snprintf(word, sizeof(word), "%s=%s", CONFIG[i].name, v);
        shell_quote(word, out, n);
        strncat(out, " ", n - strlen(out) - 1);
    }
    for (int a = 0; a < argc; a++) {
        shell_quote(argv[a], out, n);
        if (a + 1 < argc) strncat(out, " ", n - strlen(out) - 1);
    }
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
// weights 1, resid_mix [1; 0]; the options' tensors as README "Presets and the records they reproduce" says: BigramHash table
// N(0, 0.02), projection 0, scale 0.05; SmearGate, output gates and skip gates 0; lane_rho 1.1, lane_mix 1;
// parallel_resid sqrt(1.1), parallel_post 1 (03-31's); ValueEmbedding table N(0, 0.01), projection 0, scale 0.1,
// layer scales 1.
static void init_params(GolfModel *m, const TrainConfig *c) {
    uint64_t s = (uint64_t)c->seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < m->n; i++) {
        const ParamSpec *p = &m->spec[i];
        float *w = m->params + p->offset;
        size_t n = (size_t)p->rows * p->cols;
        const char *nm = p->name;
        int zero = strstr(nm, "attn.proj") || strstr(nm, "mlp.proj") || strcmp(nm, "lm_head.weight") == 0 || strcmp(nm, "bigram.proj.weight") == 0 ||
                   strcmp(nm, "ve_shared.proj.weight") == 0 ||
                   strncmp(nm, "smear.", 6) == 0 || strstr(nm, "gate_w") || strcmp(nm, "skip_gates") == 0;
        for (size_t k = 0; k < n; k++) {
            if (strcmp(nm, "bigram.embed.weight") == 0) w[k] = (float)(rng_normal(&s) * 0.02);
            else if (strcmp(nm, "ve_shared.embed.weight") == 0) w[k] = (float)(rng_normal(&s) * 0.01);
            else if (p->cls == CLS_EMBED) w[k] = (float)(rng_normal(&s) * (c->tie_embeddings ? c->tied_embed_init_std : 1.0));
            else if (zero) w[k] = 0;
            else if (strcmp(nm, "bigram.scale") == 0) w[k] = 0.05f;
            else if (strcmp(nm, "ve_shared.scale") == 0) w[k] = 0.1f;
            else if (strstr(nm, "lane_rho")) w[k] = 1.1f;
            else if (strstr(nm, "parallel_resid")) w[k] = (float)sqrt(1.1);
            else if (p->cls == CLS_ATTN || p->cls == CLS_MLP) w[k] = (float)((2 * rng_uniform(&s) - 1) / sqrt((double)p->cols));
            else if (strstr(nm, "q_gain")) w[k] = (float)c->qk_gain_init;
            else if (strstr(nm, "resid_mix")) w[k] = k < (size_t)p->cols ? 1.0f : 0.0f;
            else w[k] = 1.0f;
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// 4. kernels (fp32; the bf16 conversions at the end). N = tokens in the batch (B*T), d = model dim, rows are tokens.

static const float RMS_EPS_F = FLT_EPSILON;   // torch's rms_norm default for float32

// Activations that only feed GEMMs (the MLP's and the final norm's outputs, relu^2) are written as T: float, or bf16
// under PRECISION=bf16 (the GEMM's operand as it is, no float copy). store_scaled: *p = T(s v), nearest even for bf16
// (s: LN_SCALE's factor, applied before the rounding as autocast sees x * ls; 1 elsewhere)
typedef __nv_bfloat16 bf16;
__device__ inline void store_scaled(float *p, float v, float s) { *p = v * s; }
__device__ inline void store_scaled(bf16 *p, float v, float s) { *p = __float2bfloat16_rn(v * s); }

__device__ float warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
__device__ float warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }
// Row kernels (LAUNCH_ROWS): a half warp of ROW_LANES lanes per row; row_sum / row_max reduce over the half warp (both
// halves of a warp call them together, so a half past the last row works on that row and stores nothing). Half as
// many lanes as a warp per row: the same work per warp on a GPU, a third of the lane exchanges in the CPU build.
#define ROW_LANES 16
__device__ float row_sum(float v) { for (int o = ROW_LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, ROW_LANES); return v; }
__device__ float row_max(float v) { for (int o = ROW_LANES / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o, ROW_LANES)); return v; }
// row_of: this thread's row and lane; 0 when its whole warp is past the last row (it returns), else *store says
// whether its half warp's row exists (the other half repeats the last row)
__device__ int row_of(int rows, int *row, int *lane, bool *store) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t / 32 * (32 / ROW_LANES) >= rows) return 0;
    *row = t / ROW_LANES; *lane = t % ROW_LANES; *store = *row < rows;
    if (!*store) *row = rows - 1;
    return 1;
}

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

// BigramHash index: idx[n] = V_b - 1 at a sequence start, else (36313 t_n xor 27191 t_{n-1}) mod (V_b - 1)
__global__ void bigram_index(int *idx, const int *tok, int N, int T, int Vb) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N) idx[n] = n % T == 0 ? Vb - 1 : (int)(((36313LL * tok[n]) ^ (27191LL * tok[n - 1])) % (Vb - 1));
}
// scaled add forward: y += s[0] * x;  backward of s: out[0] += sum of a * b (both use it)
__global__ void add_scaled(float *y, const float *x, const float *s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += s[0] * x[i];
}
__global__ void dot_accumulate(float *out, const float *a, const float *b, size_t n) {
    float s = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) s += a[i] * b[i];
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) atomicAdd(out, s);
}

// SmearGate forward (warp per token): g = sigmoid(w . x[n, :12]); out[n] = x[n] + lam g x[n-1], except at a sequence
// start or a BOS (id 1), where out = x and g = 0
__device__ bool smeared(const int *tok, int n, int T) { return n % T != 0 && tok[n] != 1; }
__global__ void smear_forward(float *out, float *g, const float *x, const float *w, const float *lam, const int *tok, int N, int T, int d) {
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *xn = x + (size_t)n * d;
    float z = lane < 12 ? w[lane] * xn[lane] : 0.f;
    z = warp_sum(z);
    float gn = smeared(tok, n, T) ? 1.f / (1.f + expf(-z)) : 0.f, c = lam[0] * gn;
    for (int i = lane; i < d; i += 32) out[(size_t)n * d + i] = gn != 0.f ? xn[i] + c * xn[i - d] : xn[i];
    if (lane == 0) g[n] = gn;
}
// SmearGate backward: dx[n] = dout[n] + [dz w on the first 12] + lam g[n+1] dout[n+1]; dw += dz x[n, :12],
// dlam += g (dout[n] . x[n-1]), dz = lam (dout[n] . x[n-1]) g (1 - g)
__global__ void smear_backward(float *dx, float *dw, float *dlam, const float *dout, const float *x, const float *g, const float *w,
                               const float *lam, const int *tok, int N, int T, int d) {
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *dn = dout + (size_t)n * d;
    float dz = 0.f;
    if (smeared(tok, n, T)) {
        float c = 0.f;
        for (int i = lane; i < d; i += 32) c += dn[i] * x[(size_t)(n - 1) * d + i];
        c = warp_sum(c);
        dz = lam[0] * c * g[n] * (1.f - g[n]);
        if (lane < 12) atomicAdd(&dw[lane], dz * x[(size_t)n * d + lane]);
        if (lane == 0) atomicAdd(dlam, g[n] * c);
    }
    float next = n + 1 < N && smeared(tok, n + 1, T) ? lam[0] * g[n + 1] : 0.f;
    for (int i = lane; i < d; i += 32)
        dx[(size_t)n * d + i] = dn[i] + (i < 12 ? dz * w[i] : 0.f) + (next != 0.f ? next * dout[(size_t)(n + 1) * d + i] : 0.f);
}

// XSA forward (warp per token and head): out = y - (y . v / |v|^2) v, v the token's own value head of the group
__global__ void xsa_forward(float *out, const float *y, const float *v, int N, int H, int KV, int hd) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * H) return;
    int n = w / H, h = w % H;
    const float *yh = y + (size_t)w * hd, *vh = v + ((size_t)n * KV + h / (H / KV)) * hd;
    float yv = 0.f, vv = 0.f;
    for (int i = lane; i < hd; i += 32) { yv += yh[i] * vh[i]; vv += vh[i] * vh[i]; }
    yv = warp_sum(yv); vv = warp_sum(vv);
    float cf = vv > 0.f ? yv / vv : 0.f;
    for (int i = lane; i < hd; i += 32) out[(size_t)w * hd + i] = yh[i] - cf * vh[i];
}
// XSA backward: dy = dout - (dout . v / |v|^2) v;  dv += -c dout - (dout . v) (y - 2 c v) / |v|^2, c = y . v / |v|^2
__global__ void xsa_backward(float *dy, float *dv, const float *dout, const float *y, const float *v, int N, int H, int KV, int hd) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * H) return;
    int n = w / H, h = w % H;
    size_t vo = ((size_t)n * KV + h / (H / KV)) * hd;
    const float *yh = y + (size_t)w * hd, *vh = v + vo, *gh = dout + (size_t)w * hd;
    float yv = 0.f, vv = 0.f, gv = 0.f;
    for (int i = lane; i < hd; i += 32) { yv += yh[i] * vh[i]; vv += vh[i] * vh[i]; gv += gh[i] * vh[i]; }
    yv = warp_sum(yv); vv = warp_sum(vv); gv = warp_sum(gv);
    if (vv <= 0.f) { for (int i = lane; i < hd; i += 32) dy[(size_t)w * hd + i] = gh[i]; return; }
    float cf = yv / vv;
    for (int i = lane; i < hd; i += 32) {
        dy[(size_t)w * hd + i] = gh[i] - gv / vv * vh[i];
        atomicAdd(&dv[vo + i], -cf * gh[i] - gv * (yh[i] - 2.f * cf * vh[i]) / vv);
    }
}

// attention output gate forward (warp per token and head): out = sg y, sg = sigmoid(ls * gw[h] . h1[n, :12])
__global__ void attn_gate_forward(float *out, float *sg, const float *y, const float *h1, const float *gw, float ls, int N, int H, int hd, int d) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * H) return;
    int n = w / H, h = w % H;
    float z = lane < 12 ? gw[h * 12 + lane] * h1[(size_t)n * d + lane] : 0.f;
    z = warp_sum(z) * ls;
    float s = 1.f / (1.f + expf(-z));
    for (int i = lane; i < hd; i += 32) out[(size_t)w * hd + i] = s * y[(size_t)w * hd + i];
    if (lane == 0) sg[w] = s;
}
// attention output gate backward: dy = sg dout; dz = (dout . y) sg (1 - sg); dgw[h] += dz ls h1[n, :12]; dh1[n, :12] += dz ls gw[h]
__global__ void attn_gate_backward(float *dy, float *dgw, float *dh1, const float *dout, const float *y, const float *h1, const float *gw,
                                   const float *sg, float ls, int N, int H, int hd, int d) {
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (w >= N * H) return;
    int n = w / H, h = w % H;
    float s = sg[w], gy = 0.f;
    for (int i = lane; i < hd; i += 32) { gy += dout[(size_t)w * hd + i] * y[(size_t)w * hd + i]; dy[(size_t)w * hd + i] = s * dout[(size_t)w * hd + i]; }
    float dz = warp_sum(gy) * s * (1.f - s) * ls;
    if (lane < 12) { atomicAdd(&dgw[h * 12 + lane], dz * h1[(size_t)n * d + lane]); atomicAdd(&dh1[(size_t)n * d + lane], dz * gw[h * 12 + lane]); }
}

// lane mean (parallel residuals merging): out = (a + b) / 2
__global__ void lane_mean(float *out, const float *a, const float *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = 0.5f * (a[i] + b[i]);
}
// parallel residual lanes forward: with A = attn_scale ao and M = mlp_scale mo,
// out0 = rho0 l0 + mix00 A + mix01 M, out1 = rho1 x1 + mix10 A + mix11 M (l0: lane 0 as it came in, not its residual mix)
__global__ void lane_combine_forward(float *out0, float *out1, const float *l0, const float *x1, const float *ao, const float *mo,
                                     const float *as, const float *ms, const float *rho, const float *mix, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * d) return;
    float A = as[i % d] * ao[i], M = ms[i % d] * mo[i];
    out0[i] = rho[0] * l0[i] + mix[0] * A + mix[1] * M;
    out1[i] = rho[1] * x1[i] + mix[2] * A + mix[3] * M;
}
// parallel residual lanes backward (l0: lane 0 as it came in): from d0, d1 (the lanes' output gradients): gA = mix00 d0 + mix10 d1,
// gM = mix01 d0 + mix11 d1, d0 <- rho0 d0, d1 <- rho1 d1 (the direct paths); drho and dmix summed over elements
__global__ void lane_combine_backward(float *gA, float *gM, float *d0, float *d1, float *drho, float *dmix, const float *l0, const float *x1,
                                      const float *ao, const float *mo, const float *as, const float *ms, const float *rho, const float *mix,
                                      int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s[6] = {0, 0, 0, 0, 0, 0};
    if (i < (size_t)N * d) {
        float A = as[i % d] * ao[i], M = ms[i % d] * mo[i], g0 = d0[i], g1 = d1[i];
        gA[i] = mix[0] * g0 + mix[2] * g1;
        gM[i] = mix[1] * g0 + mix[3] * g1;
        s[0] = l0[i] * g0; s[1] = x1[i] * g1; s[2] = A * g0; s[3] = M * g0; s[4] = A * g1; s[5] = M * g1;
        d0[i] = rho[0] * g0;
        d1[i] = rho[1] * g1;
    }
    for (int k = 0; k < 6; k++) {
        float v = warp_sum(s[k]);
        if (threadIdx.x % 32 == 0 && v != 0.f) atomicAdd(k < 2 ? &drho[k] : &dmix[k - 2], v);
    }
}

// 03-31's lanes (PARALLEL_FORM=0331): with A = attn_scale ao, M = mlp_scale mo, r = parallel_resid, p = parallel_post
// ([branch][lane]) and the lanes l0, l1 as they came in: after attention each lane is m_k = r0 l_k + p0k A; the MLP reads
// the residual mix of m1; its output makes out_k = r1 m_k + p1k M.
// par_mid_mix: the MLP's input xa = mix0 m1 + mix1 x0 (mix: resid_mix [2, d])
__global__ void par_mid_mix(float *xa, const float *l1, const float *ao, const float *x0, const float *as, const float *mix, const float *r,
                            const float *p, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * d) return;
    int c = (int)(i % d);
    xa[i] = mix[c] * (r[0] * l1[i] + p[1] * (as[c] * ao[i])) + mix[d + c] * x0[i];
}
// par_mid1: m1 alone (backward's column sums of the MLP's residual mix)
__global__ void par_mid1(float *m1, const float *l1, const float *ao, const float *as, const float *r, const float *p, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) m1[i] = r[0] * l1[i] + p[1] * (as[i % d] * ao[i]);
}
// par_combine_forward: out_k = r1 m_k + p1k M for both lanes
__global__ void par_combine_forward(float *out0, float *out1, const float *l0, const float *l1, const float *ao, const float *mo,
                                    const float *as, const float *ms, const float *r, const float *p, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * d) return;
    int c = (int)(i % d);
    float A = as[c] * ao[i], M = ms[c] * mo[i];
    out0[i] = r[1] * (r[0] * l0[i] + p[0] * A) + p[2] * M;
    out1[i] = r[1] * (r[0] * l1[i] + p[1] * A) + p[3] * M;
}
// par_mlp_backward: from d0, d1 (the lanes' output gradients): gM = p10 d0 + p11 d1; dr1 += sum m0 d0 + m1 d1,
// dp1k += sum M dk; d_k <- r1 d_k (the gradients of m_k through the direct path)
__global__ void par_mlp_backward(float *gM, float *d0, float *d1, float *dr, float *dp, const float *l0, const float *l1, const float *ao,
                                 const float *mo, const float *as, const float *ms, const float *r, const float *p, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s[3] = {0, 0, 0};
    if (i < (size_t)N * d) {
        int c = (int)(i % d);
        float A = as[c] * ao[i], M = ms[c] * mo[i], g0 = d0[i], g1 = d1[i];
        gM[i] = p[2] * g0 + p[3] * g1;
        s[0] = (r[0] * l0[i] + p[0] * A) * g0 + (r[0] * l1[i] + p[1] * A) * g1; s[1] = M * g0; s[2] = M * g1;
        d0[i] = r[1] * g0;
        d1[i] = r[1] * g1;
    }
    for (int k = 0; k < 3; k++) {
        float v = warp_sum(s[k]);
        if (threadIdx.x % 32 == 0 && v != 0.f) atomicAdd(k == 0 ? &dr[1] : &dp[1 + k], v);
    }
}
// par_attn_backward: from the gradients d0, d1 of m0, m1: gA = p00 d0 + p01 d1; dr0 += sum l0 d0 + l1 d1, dp0k += sum A dk;
// d_k <- r0 d_k (the lanes' input gradients through the direct path)
__global__ void par_attn_backward(float *gA, float *d0, float *d1, float *dr, float *dp, const float *l0, const float *l1, const float *ao,
                                  const float *as, const float *r, const float *p, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s[3] = {0, 0, 0};
    if (i < (size_t)N * d) {
        float A = as[i % d] * ao[i], g0 = d0[i], g1 = d1[i];
        gA[i] = p[0] * g0 + p[1] * g1;
        s[0] = l0[i] * g0 + l1[i] * g1; s[1] = A * g0; s[2] = A * g1;
        d0[i] = r[0] * g0;
        d1[i] = r[0] * g1;
    }
    for (int k = 0; k < 3; k++) {
        float v = warp_sum(s[k]);
        if (threadIdx.x % 32 == 0 && v != 0.f) atomicAdd(k == 0 ? &dr[0] : &dp[k - 1], v);
    }
}

// U-Net skip into a lane (lane 0; 03-31's form: each lane): out = x + w sk, or gated (SKIP_GATES) lerp(w sk, x, s) =
// s x + (1 - s) w sk, s = sigmoid(g)
__device__ float skip_gate_of(const float *g, int c) { return g ? 1.f / (1.f + expf(-g[c])) : 1.f; }
__global__ void skip_forward(float *out, const float *x, const float *sk, const float *w, const float *g, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * d) return;
    int c = (int)(i % d);
    float ws = w[c] * sk[i];
    if (g) { float s = skip_gate_of(g, c); out[i] = s * x[i] + (1.f - s) * ws; }
    else out[i] = x[i] + ws;
}
// skip backward (elementwise part): from dout (in dx): dsk = (1 - s) w dout (w dout ungated), dx = s dout (dout ungated)
__global__ void skip_backward(float *dx, float *dsk, const float *w, const float *g, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * d) return;
    int c = (int)(i % d);
    float s = skip_gate_of(g, c), go = dx[i];
    dsk[i] = (g ? 1.f - s : 1.f) * w[c] * go;
    dx[i] = s * go;
}
// skip weight gradients from the column sums S[c] = sum sk dout, S[d + c] = sum x dout (gated only):
// dw += (1 - s) S (S ungated), dg += s (1 - s) (S[d + c] - w S)
__global__ void skip_weight_grads(float *dw, float *dg, const float *S, const float *w, const float *g, int d) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d) return;
    float s = skip_gate_of(g, i);
    dw[i] += (g ? 1.f - s : 1.f) * S[i];
    if (g) dg[i] += s * (1.f - s) * (S[d + i] - w[i] * S[i]);
}

// rmsnorm forward (row kernel): out = T(s x rstd), rstd = 1/sqrt(mean(x^2) + eps)
template <class T> __global__ void rmsnorm_forward(T *out, float *rstd, const float *x, int rows, int d, float s) {
    int row, lane;
    bool store;
    if (!row_of(rows, &row, &lane, &store)) return;
    const float *xr = x + (size_t)row * d;
    float ss = 0;
    for (int i = lane; i < d; i += ROW_LANES) ss += xr[i] * xr[i];
    float r = rsqrtf(row_sum(ss) / d + RMS_EPS_F);
    if (!store) return;
    for (int i = lane; i < d; i += ROW_LANES) store_scaled(&out[(size_t)row * d + i], xr[i] * r, s);
    if (lane == 0) rstd[row] = r;
}
// rmsnorm backward (row kernel): dx (+)= rstd * (dy - xhat * mean(dy * xhat)); accumulate when acc != 0
__global__ void rmsnorm_backward(float *dx, const float *dy, const float *x, const float *rstd, int rows, int d, int acc) {
    int row, lane;
    bool store;
    if (!row_of(rows, &row, &lane, &store)) return;
    const float *xr = x + (size_t)row * d, *dyr = dy + (size_t)row * d;
    float r = rstd[row], dot = 0;
    for (int i = lane; i < d; i += ROW_LANES) dot += dyr[i] * xr[i] * r;
    dot = row_sum(dot) / d;
    if (!store) return;
    for (int i = lane; i < d; i += ROW_LANES) {
        float g = r * (dyr[i] - xr[i] * r * dot);
        dx[(size_t)row * d + i] = acc ? dx[(size_t)row * d + i] + g : g;
    }
}

// Fused forms (FUSE=1) of a residual step and the norm after it, one pass over the row instead of two: the same
// per-element expressions in the same order as the plain kernels (mix_forward / scale_add_forward, then
// rmsnorm_forward), so the same bits. The residual output is written too (the next step and the backward read it).
// mix + rmsnorm forward (row kernel): xm = mix[0, c] x + mix[1, c] x0; out = T(s xm rstd), rstd of xm (xm != x, x0)
template <class T> __global__ void mix_rmsnorm_forward(float *xm, T *out, float *rstd, const float *x, const float *x0, const float *mix, int rows, int d, float s) {
    int row, lane;
    bool store;
    if (!row_of(rows, &row, &lane, &store)) return;
    size_t o = (size_t)row * d;
    float ss = 0;
    for (int i = lane; i < d; i += ROW_LANES) {
        float m = mix[i] * x[o + i] + mix[d + i] * x0[o + i];
        ss += m * m;
        if (store) xm[o + i] = m;
    }
    float r = rsqrtf(row_sum(ss) / d + RMS_EPS_F);
    if (!store) return;
    for (int i = lane; i < d; i += ROW_LANES) store_scaled(&out[o + i], xm[o + i] * r, s);
    if (lane == 0) rstd[row] = r;
}
// scale-add + rmsnorm forward (row kernel): xa = x + sc[c] y; out = T(s xa rstd), rstd of xa (xa != x, y)
template <class T> __global__ void scale_add_rmsnorm_forward(float *xa, T *out, float *rstd, const float *x, const float *sc, const float *y, int rows, int d, float s) {
    int row, lane;
    bool store;
    if (!row_of(rows, &row, &lane, &store)) return;
    size_t o = (size_t)row * d;
    float ss = 0;
    for (int i = lane; i < d; i += ROW_LANES) {
        float m = x[o + i] + sc[i] * y[o + i];
        ss += m * m;
        if (store) xa[o + i] = m;
    }
    float r = rsqrtf(row_sum(ss) / d + RMS_EPS_F);
    if (!store) return;
    for (int i = lane; i < d; i += ROW_LANES) store_scaled(&out[o + i], xa[o + i] * r, s);
    if (lane == 0) rstd[row] = r;
}

// residual mix forward: out = mix[0, c] * x + mix[1, c] * x0
__global__ void mix_forward(float *out, const float *x, const float *x0, const float *mix, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) { int c = (int)(i % d); out[i] = mix[c] * x[i] + mix[d + c] * x0[i]; }
}
// residual mix backward (elementwise part): dx = mix0 * dout; dx0 += mix1 * dout (dx may be dout: read it first)
__global__ void mix_backward(float *dx, float *dx0, const float *dout, const float *mix, int N, int d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * d) { int c = (int)(i % d); float g = dout[i]; dx[i] = mix[c] * g; dx0[i] += mix[d + c] * g; }
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

// (leaky) relu^2 forward: u = T(r^2) with r = x > 0 ? x : slope x;  backward: dx = 2 r (x > 0 ? 1 : slope) du.
// x: float, or bf16 under PRECISION=bf16 (the fc GEMM's bf16 output kept as it is; widened exactly on load, so the
// same bits as the float copy gemm_act would have widened)
__device__ inline float load_f(const float *p) { return *p; }
__device__ inline float load_f(const bf16 *p) { return __bfloat162float(*p); }
template <class T> __global__ void relu2_forward(T *u, const T *xp, float slope, size_t n) {   // x and u of one type
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float x = load_f(&xp[i]), r = x > 0.f ? x : slope * x; store_scaled(&u[i], r * r, 1.0f); }
}
template <class TX> __global__ void relu2_backward(float *dx, const float *du, const TX *xp, float slope, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float x = load_f(&xp[i]); dx[i] = x > 0.f ? 2.f * x * du[i] : 2.f * slope * slope * x * du[i]; }
}

// q/k preparation forward (row kernel, a row per token and head): out = gain[h] * rope(rmsnorm(raw)) over head_dim, RoPE on
// the first R dims (pairs i, i + R/2), the rest only normalized and scaled; the RoPE position of token n is n mod T, or
// with document segments ds (DOC_ATTENTION; else NULL) n - ds[n], its place in its segment
__global__ void qk_prep_forward(float *out, float *rstd, const float *raw, const float *gain, const float *cosv, const float *sinv,
                                const int *ds, int N, int T, int heads, int hd, int R) {
    int w, lane;
    bool store;
    if (!row_of(N * heads, &w, &lane, &store)) return;
    int n = w / heads, h = w % heads, t = ds ? n - ds[n] : n % T, half = R / 2;
    const float *x = raw + (size_t)w * hd;
    float ss = 0;
    for (int i = lane; i < hd; i += ROW_LANES) ss += x[i] * x[i];
    float r = rsqrtf(row_sum(ss) / hd + RMS_EPS_F), g = gain ? gain[h] : 1.f;
    if (!store) return;
    for (int i = lane; i < half; i += ROW_LANES) {
        float c = cosv[t * half + i], s = sinv[t * half + i], a = x[i] * r, b = x[i + half] * r;
        out[(size_t)w * hd + i] = g * (a * c + b * s);
        out[(size_t)w * hd + i + half] = g * (-a * s + b * c);
    }
    for (int i = R + lane; i < hd; i += ROW_LANES) out[(size_t)w * hd + i] = g * (x[i] * r);
    if (lane == 0) rstd[w] = r;
}
// q/k preparation backward: draw from dout through gain (dgain[h] += sum dout * rope), rope^T and rmsnorm
__global__ void qk_prep_backward(float *draw, float *dgain, const float *dout, const float *raw, const float *rstd, const float *gain,
                                 const float *cosv, const float *sinv, const int *ds, int N, int T, int heads, int hd, int R) {
    int w, lane;
    bool store;
    if (!row_of(N * heads, &w, &lane, &store)) return;
    int n = w / heads, h = w % heads, t = ds ? n - ds[n] : n % T, half = R / 2;
    const float *x = raw + (size_t)w * hd, *dy = dout + (size_t)w * hd;
    float r = rstd[w], g = gain ? gain[h] : 1.f, dg = 0, dot = 0;
    float dxn[128 / ROW_LANES][2], dxp[256 / ROW_LANES];   // head_dim <= 256: up to 8 rotated pairs and 16 plain dims per lane
    for (int i = lane, k = 0; i < half; i += ROW_LANES, k++) {
        float c = cosv[t * half + i], s = sinv[t * half + i], a = x[i] * r, b = x[i + half] * r;
        dg += dy[i] * (a * c + b * s) + dy[i + half] * (-a * s + b * c);
        float d1 = g * dy[i], d2 = g * dy[i + half];
        dxn[k][0] = d1 * c - d2 * s;   // rope^T
        dxn[k][1] = d1 * s + d2 * c;
        dot += dxn[k][0] * a + dxn[k][1] * b;
    }
    for (int i = R + lane, k = 0; i < hd; i += ROW_LANES, k++) {   // dims past R: no rotation
        float a = x[i] * r;
        dg += dy[i] * a;
        dxp[k] = g * dy[i];
        dot += dxp[k] * a;
    }
    dot = row_sum(dot) / hd;
    dg = row_sum(dg);
    if (!store) return;
    for (int i = lane, k = 0; i < half; i += ROW_LANES, k++) {
        draw[(size_t)w * hd + i] = r * (dxn[k][0] - x[i] * r * dot);
        draw[(size_t)w * hd + i + half] = r * (dxn[k][1] - x[i + half] * r * dot);
    }
    for (int i = R + lane, k = 0; i < hd; i += ROW_LANES, k++) draw[(size_t)w * hd + i] = r * (dxp[k] - x[i] * r * dot);
    if (gain && lane == 0) atomicAdd(&dgain[h], dg);
}

// Document segments (DOC_ATTENTION, the 2026-04-10 record's cu_seqlens): a document starts at the first token of each
// group of G tokens (training: the micro-batch, G = N; evaluation: each window, G = T) and at every BOS, and is cut
// into segments of at most T tokens from its start (the record's max_doc_len). Query n attends to the keys
// ds[n] .. n of its segment; de[n] is one past the segment's last token (key s is seen by the queries s .. de[s] - 1).
// One block of DOC_THREADS threads, each owning a run of consecutive tokens: the runs' first and last document
// starts go to shared memory, each thread takes the nearest ones before and after its run from the others', then
// walks its run forward (ds) and back (de). Once per micro-step, for every layer.
#define DOC_THREADS 256
__device__ bool doc_starts_at(const int *tok, int n, int G) { return n % G == 0 || tok[n] == BOS_ID; }
__global__ void doc_bounds(int *ds, int *de, const int *tok, int N, int G, int T) {
    __shared__ int first[DOC_THREADS], last[DOC_THREADS];
    int me = threadIdx.x, per = (N + DOC_THREADS - 1) / DOC_THREADS, lo = me * per, hi = lo + per < N ? lo + per : N;
    int f = N, l = -1;
    for (int n = lo; n < hi; n++)
        if (doc_starts_at(tok, n, G)) { if (f == N) f = n; l = n; }
    first[me] = f; last[me] = l;
    __syncthreads();
    int start = 0, next = N;   // the last document start before this run (token 0 is one), the first after it
    for (int j = 0; j < me; j++) start = last[j] > start ? last[j] : start;
    for (int j = me + 1; j < DOC_THREADS; j++) next = first[j] < next ? first[j] : next;
    for (int n = lo; n < hi; n++) {
        if (doc_starts_at(tok, n, G)) start = n;
        ds[n] = start + (n - start) / T * T;
    }
    for (int n = hi - 1; n >= lo; n--) {
        de[n] = next < ds[n] + T ? next : ds[n] + T;
        if (doc_starts_at(tok, n, G)) next = n;
    }
}

// causal GQA attention, fp32 SIMT: one thread per query (forward, dq) or per key (dk, dv), the other side streamed
// through shared-memory tiles of att_kt rows; every sum runs in one thread in a fixed order (deterministic), no
// T x T buffer. Blocks of ATT_ROWS threads cover ATT_ROWS queries (keys) of one (sequence, head); grid
// (ceil(T / ATT_ROWS), B * heads). HD = head_dim, a template parameter (a multiple of 32 up to 256). With document
// segments ds, de (DOC_ATTENTION; else NULL; then B = 1 and T = the micro-batch's N) query t sees keys ds[t] .. t
// only, and a block streams only the tiles its segments reach (a query block from its first query's ds, a key block
// up to its last key's de).
#define ATT_ROWS 64
template <int HD> struct AttTile { static const int rows = HD > 128 ? 16 : 32; };   // keeps the two tiles under 48 KiB

// att_load: rows r0 .. r0 + rows - 1 of the [B*T, heads, HD] tensors a and b (head hh of sequence bq) into the
// tiles (zeros past T); the block waits before (the previous tile is consumed) and after
template <int HD> __device__ void att_load(float (*ta)[HD], float (*tb)[HD], const float *a, const float *b, int bq, int r0, int T, int heads, int hh) {
    const int rows = AttTile<HD>::rows;
    __syncthreads();
    for (int e = threadIdx.x; e < rows * HD; e += blockDim.x) {
        int j = e / HD, i = e % HD, r = r0 + j;
        size_t o = ((size_t)(bq * T + r) * heads + hh) * HD + i;
        ta[j][i] = r < T ? a[o] : 0.f;
        tb[j][i] = r < T ? b[o] : 0.f;
    }
    __syncthreads();
}

// attention forward: y[t] = sum_{s <= t} softmax_s(q_t . k_s / sqrt(HD)) v_s;  lse[(b*H + h)*T + t] = log sum_s exp(score)
template <int HD> __global__ void attention_forward(float *y, float *lse, const float *q, const float *k, const float *v, const int *ds,
                                                    int T, int H, int KV) {
    const int rows = AttTile<HD>::rows;
    __shared__ float ks[rows][HD], vs[rows][HD];
    int b = blockIdx.y / H, h = blockIdx.y % H, kh = h / (H / KV), q0 = blockIdx.x * ATT_ROWS, t = q0 + threadIdx.x;
    int last = (q0 + ATT_ROWS < T ? q0 + ATT_ROWS : T) - 1;   // the block's last query: later keys are masked for all
    float qv[HD], acc[HD], sc[rows], m = -INFINITY, l = 0.f, scale = rsqrtf((float)HD);
    const float *qr = q + ((size_t)(b * T + (t < T ? t : 0)) * H + h) * HD;
    for (int i = 0; i < HD; i++) { qv[i] = qr[i]; acc[i] = 0.f; }
    for (int s0 = ds ? ds[q0] : 0; s0 <= last; s0 += rows) {
        att_load<HD>(ks, vs, k, v, b, s0, T, KV, kh);
        int n = t < T ? (t - s0 + 1 < rows ? t - s0 + 1 : rows) : 0;   // keys s0 .. min(t, s0 + rows - 1)
        int j0 = ds && t < T && ds[t] > s0 ? ds[t] - s0 : 0;          // from the segment's first key on
        if (n <= j0) continue;
        float mt = m;
        for (int j = j0; j < n; j++) {
            float dot = 0.f;
            for (int i = 0; i < HD; i++) dot += qv[i] * ks[j][i];
            sc[j] = dot * scale;
            mt = fmaxf(mt, sc[j]);
        }
        float corr = expf(m - mt);
        l *= corr;
        for (int i = 0; i < HD; i++) acc[i] *= corr;
        for (int j = j0; j < n; j++) {
            float p = expf(sc[j] - mt);
            l += p;
            for (int i = 0; i < HD; i++) acc[i] += p * vs[j][i];
        }
        m = mt;
    }
    if (t >= T) return;
    float *yr = y + ((size_t)(b * T + t) * H + h) * HD;
    for (int i = 0; i < HD; i++) yr[i] = acc[i] / l;
    lse[((size_t)b * H + h) * T + t] = m + logf(l);
}
// attention backward, queries (thread per query): D_t = dy_t . y_t; dq_t = scale sum_{s <= t} p_ts (dy_t . v_s - D_t) k_s
template <int HD> __global__ void attention_backward_dq(float *dq, float *Dbuf, const float *dy, const float *y, const float *q, const float *k,
                                                        const float *v, const float *lse, const int *ds, int T, int H, int KV) {
    const int rows = AttTile<HD>::rows;
    __shared__ float ks[rows][HD], vs[rows][HD];
    int b = blockIdx.y / H, h = blockIdx.y % H, kh = h / (H / KV), q0 = blockIdx.x * ATT_ROWS, t = q0 + threadIdx.x;
    int last = (q0 + ATT_ROWS < T ? q0 + ATT_ROWS : T) - 1;
    size_t row = ((size_t)(b * T + (t < T ? t : 0)) * H + h) * HD;
    float qv[HD], dyv[HD], acc[HD], D = 0.f, scale = rsqrtf((float)HD), L = t < T ? lse[((size_t)b * H + h) * T + t] : 0.f;
    for (int i = 0; i < HD; i++) { qv[i] = q[row + i]; dyv[i] = dy[row + i]; D += dyv[i] * y[row + i]; acc[i] = 0.f; }
    for (int s0 = ds ? ds[q0] : 0; s0 <= last; s0 += rows) {
        att_load<HD>(ks, vs, k, v, b, s0, T, KV, kh);
        int n = t < T ? (t - s0 + 1 < rows ? t - s0 + 1 : rows) : 0;
        for (int j = ds && t < T && ds[t] > s0 ? ds[t] - s0 : 0; j < n; j++) {
            float dot = 0.f, dp = 0.f;
            for (int i = 0; i < HD; i++) { dot += qv[i] * ks[j][i]; dp += dyv[i] * vs[j][i]; }
            float ds = expf(dot * scale - L) * (dp - D);
            for (int i = 0; i < HD; i++) acc[i] += ds * ks[j][i];
        }
    }
    if (t >= T) return;
    for (int i = 0; i < HD; i++) dq[row + i] = acc[i] * scale;
    Dbuf[((size_t)b * H + h) * T + t] = D;
}
// attention backward, keys (thread per key and kv head; after the dq kernel, which writes D): over the query heads of
// the group and t >= s: dv_s = sum p_ts dy_t, dk_s = scale sum p_ts (dy_t . v_s - D_t) q_t
template <int HD> __global__ void attention_backward_dkv(float *dk, float *dv, const float *dy, const float *q, const float *k, const float *v,
                                                         const float *lse, const float *Dbuf, const int *de, int T, int H, int KV) {
    const int rows = AttTile<HD>::rows;
    __shared__ float qs[rows][HD], dys[rows][HD];
    int b = blockIdx.y / KV, kh = blockIdx.y % KV, s_first = blockIdx.x * ATT_ROWS, s = s_first + threadIdx.x, group = H / KV;
    size_t krow = ((size_t)(b * T + (s < T ? s : 0)) * KV + kh) * HD;
    float kv_[HD], vv[HD], dka[HD], dva[HD], scale = rsqrtf((float)HD);
    for (int i = 0; i < HD; i++) { kv_[i] = k[krow + i]; vv[i] = v[krow + i]; dka[i] = dva[i] = 0.f; }
    int tend = de ? de[(s_first + ATT_ROWS < T ? s_first + ATT_ROWS : T) - 1] : T, tmine = de && s < T ? de[s] : T;   // past the block's (this key's) last query
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        const float *L = lse + ((size_t)b * H + h) * T, *Dh = Dbuf + ((size_t)b * H + h) * T;
        for (int t0 = s_first; t0 < tend; t0 += rows) {   // queries before the block's first key see none of its keys
            att_load<HD>(qs, dys, q, dy, b, t0, T, H, h);
            if (s >= T) continue;
            for (int j = 0; j < rows; j++) {
                int t = t0 + j;
                if (t < s || t >= tmine) continue;
                float dot = 0.f, dp = 0.f;
                for (int i = 0; i < HD; i++) { dot += qs[j][i] * kv_[i]; dp += dys[j][i] * vv[i]; }
                float p = expf(dot * scale - L[t]), ds = p * (dp - Dh[t]);
                for (int i = 0; i < HD; i++) { dva[i] += p * dys[j][i]; dka[i] += ds * qs[j][i]; }
            }
        }
    }
    if (s >= T) return;
    for (int i = 0; i < HD; i++) { dk[krow + i] = dka[i] * scale; dv[krow + i] = dva[i]; }
}

// softcapped cross-entropy (row kernel), logits replaced by dloss/dlogits * grad_scale when grad_scale != 0:
// z = cap tanh(l / cap); loss[n] = logsumexp(z) - z[y]; dl = (softmax(z) - onehot(y)) (1 - tanh^2) grad_scale.
// Every lane reads z[y] before the __syncwarp that precedes the writes, so no lane overwrites it first.
__global__ void softcap_cross_entropy(float *logits, float *loss, const int *targets, int N, int V, float cap, float grad_scale) {
    int n, lane;
    bool store;
    if (!row_of(N, &n, &lane, &store)) return;
    int y = targets[n], pad = y < 0;   // a padding row (target -1): no loss, no gradient; it still joins the shuffles
    float *l = logits + (size_t)n * V;
    if (pad) y = 0;
    float mx = -INFINITY, sum = 0.f;
    for (int v = lane; v < V; v += ROW_LANES) mx = fmaxf(mx, cap * tanhf(l[v] / cap));
    mx = row_max(mx);
    for (int v = lane; v < V; v += ROW_LANES) sum += expf(cap * tanhf(l[v] / cap) - mx);
    float zy = cap * tanhf(l[y] / cap), lse = mx + logf(row_sum(sum));
    __syncwarp();   // every lane's read of l[y] before any lane's write below: a shuffle orders no memory
    if (!store) return;
    if (pad) {
        if (lane == 0) loss[n] = 0.f;
        if (grad_scale != 0.f) for (int v = lane; v < V; v += ROW_LANES) l[v] = 0.f;
        return;
    }
    if (lane == 0) loss[n] = lse - zy;
    if (grad_scale != 0.f)
        for (int v = lane; v < V; v += ROW_LANES) {
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
// the gradient's sum of squares without atomics, so that every run and every rank (holding the same all-reduced
// gradient) gets the same bits: sum_squares_blocks writes block b's sum of its grid-stride elements to part[b] (a fixed
// order: per thread, then the warp tree, then the block's warps in order), sum_partials (one warp) sums the nb partial
// sums in order per lane, then by the warp tree, into *out. A NaN or an infinity anywhere makes *out non-finite.
#define NORM_BLOCKS 1024
__global__ void sum_squares_blocks(float *part, const float *x, size_t n) {
    __shared__ float red[32];
    float s = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) s += x[i] * x[i];
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0;
        for (int w = 0; w < (int)blockDim.x / 32; w++) t += red[w];
        part[blockIdx.x] = t;
    }
}
__global__ void sum_partials(float *out, const float *part, int nb) {
    float s = 0;
    for (int i = threadIdx.x; i < nb; i += 32) s += part[i];
    s = warp_sum(s);
    if (threadIdx.x == 0) *out = s;
}
// MuonEq-R (warp per row): each row of x (rows x cols) divided by its L2 norm; zero rows stay zero
__global__ void row_normalize(float *x, int rows, int cols) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    float *row = x + (size_t)r * cols, ss = 0;
    for (int i = lane; i < cols; i += 32) ss += row[i] * row[i];
    ss = warp_sum(ss);
    if (ss > 0.f) { float inv = rsqrtf(ss); for (int i = lane; i < cols; i += 32) row[i] *= inv; }
}
// x *= a (decoupled weight decay: a = 1 - lr * wd)
__global__ void scale_inplace(float *x, float a, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= a;
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

// --- bf16 (PRECISION=bf16): conversions round to nearest even, as the tensor cores' bf16 outputs and torch's casts do
// to_bf16: out = bf16(s x);  widen_bf16: out = float(b) (exact);  round_bf16: x = float(bf16(x)) in place
__global__ void to_bf16(bf16 *out, const float *x, float s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(s * x[i]);
}
__global__ void widen_bf16(float *out, const bf16 *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __bfloat162float(b[i]);
}
__global__ void round_bf16(float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
}
// bf16 Newton-Schulz's elementwise steps, each operation computed in float and rounded to bf16 as torch's bf16
// tensors are: out = bf16(bf16(p x) + bf16(q y)) (out may be x or y: same index)
__global__ void ns_combine_bf16(bf16 *out, const bf16 *x, const bf16 *y, float p, float q, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = __bfloat162float(__float2bfloat16_rn(p * __bfloat162float(x[i]))), b = __bfloat162float(__float2bfloat16_rn(q * __bfloat162float(y[i])));
    out[i] = __float2bfloat16_rn(a + b);
}

// ----------------------------------------------------------------------------------------------------
// 4b. tensor cores: the PTX instructions of the bf16 attention, one wrapper each. nvcc compiles the inline asm below;
// the CPU build (GOLF_CPU) takes dev/cuda_cpu.h's versions of the same functions, which follow the PTX ISA
// ("Matrix Fragments for mma.m16n8k16 with floating point type", "Warp-level matrix load instruction: ldmatrix",
// "cp.async"), fragment layouts included. g = lane >> 2, t = lane % 4; a uint32_t holds two bf16, the lower index
// in the low half. A 16x16 (row): a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] = A[g+8][2t+8..];
// B 16x8 (col): b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]; C, D 16x8 fp32: c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][..].
// mma and ldmatrix are warp-collective (.sync.aligned): all 32 lanes execute them together.

#ifndef GOLF_CPU
// d = A B + c (m16n8k16, bf16 operands, fp32 accumulation): mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
// r[i] = this lane's part of 8x8 matrix i, whose rows lanes 8i..8i+7 address: ldmatrix.sync.aligned.m8n8.x4.shared.b16
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
// the same of the transposed matrices: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
// 16 bytes global -> shared, asynchronous (lands by the cp_async_wait covering it): cp.async.cg.shared.global [..], [..], 16
__device__ __forceinline__ void cp_async_16(void *smem, const void *gmem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
// close this thread's group of copies issued since the last commit: cp.async.commit_group
__device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
// wait until at most N of this thread's committed groups are in flight: cp.async.wait_group N
template <int N> __device__ __forceinline__ void cp_async_wait(void) { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
#endif

// two floats as bf16 (nearest even) in one register, lo in the low half: an mma operand
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16 | (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo));
}

// ----------------------------------------------------------------------------------------------------
// 4c. flash attention on tensor cores (PRECISION=bf16, head_dim 64 or 128; other head dims keep the fp32 SIMT kernels
// above). Causal GQA as attention_forward / _dq / _dkv compute it, from bf16 q, k, v (dy) in the same [B*T, heads, HD]
// layouts; scores and products by mma.sync on bf16 operands with fp32 accumulation: Q K^T, P V, dY V^T, dS K, P^T dY,
// dS^T Q, where P and dS are rounded to bf16 for their mma; softmax, lse, D and every scale in fp32. y, lse, dq, dk,
// dv are fp32. Blocks of FA_THREADS = 4 warps own FA_BR = 64 rows (16 a warp): queries (forward, dq) or keys (dk, dv);
// the other side streams through shared memory in tiles of FA_BC = 32 rows, loaded by cp.async into two stages (the
// next tile lands while this one is used). Causal: a query block reads the key tiles up to its last query, a key block
// the query tiles from its first key on. With document segments ds, de (DOC_ATTENTION, the SIMT kernels' rule; else
// NULL) a query block starts at the tile of its first query's ds and a key block stops after the tile of its last
// key's de: the tiles outside the block's segments are never loaded. Each output element is summed by one lane in a
// fixed order: deterministic.
// Shared memory: FaSmem, 4 x 32 x HD bf16 (32 KiB at HD = 128), under the 48 KiB of a launch without the opt-in.
#define FA_BR 64
#define FA_BC 32
#define FA_THREADS 128
template <int HD> struct alignas(16) FaSmem { uint16_t t[4][FA_BC][HD]; };   // t[2s], t[2s+1]: the two tiles of stage s

// fa_load: rows r0 .. r0 + rows - 1 of head hh of sequence bq of a [B*T, heads, HD] bf16 tensor into dst [rows][HD]
// by cp.async, 16 bytes a copy (rows past T: zeros, stored at once); the caller commits and waits
template <int HD> __device__ void fa_load(uint16_t *dst, const __nv_bfloat16 *src, int rows, int bq, int r0, int T, int heads, int hh) {
    for (int e = threadIdx.x; e < rows * (HD / 8); e += blockDim.x) {
        int j = e / (HD / 8), c = e % (HD / 8), r = r0 + j;
        uint16_t *d = dst + j * HD + c * 8;
        if (r < T) cp_async_16(d, src + ((size_t)(bq * T + r) * heads + hh) * HD + c * 8);
        else for (int i = 0; i < 8; i++) d[i] = 0;
    }
}
// ldmatrix row addresses (this lane's) of the 16 x 16 block at row r0, column c0 of a [..][ld] tile:
// fa_rows_first: matrices (rows r0.., c0..), (r0+8.., c0..), (r0.., c0+8..), (r0+8.., c0+8..): an A fragment; with
//   .trans, B fragments of two n-tiles (b of columns c0.. in r[0..1], of c0+8.. in r[2..3]) from a [k][n] tile
// fa_cols_first: matrices (r0.., c0..), (r0.., c0+8..), (r0+8.., c0..), (r0+8.., c0+8..): B fragments of two n-tiles
//   (rows r0.. in r[0..1], r0+8.. in r[2..3]) from an [n][k] tile
__device__ __forceinline__ const uint16_t *fa_rows_first(const uint16_t *tile, int ld, int r0, int c0) {
    int l = threadIdx.x & 31;
    return tile + (size_t)(r0 + (l & 7) + ((l >> 3) & 1) * 8) * ld + c0 + (l >> 4) * 8;
}
__device__ __forceinline__ const uint16_t *fa_cols_first(const uint16_t *tile, int ld, int r0, int c0) {
    int l = threadIdx.x & 31;
    return tile + (size_t)(r0 + (l & 7) + (l >> 4) * 8) * ld + c0 + ((l >> 3) & 1) * 8;
}
// fa_scores: s[FA_BC/8][4] = X Y^T for the warp's 16 rows X (A fragments xf, HD/16 of them) and the FA_BC rows of the
// [FA_BC][HD] tile Y; sums over the head dims 16 at a time in order
template <int HD> __device__ void fa_scores(float (*s)[4], const uint32_t (*xf)[4], const uint16_t *Y) {
    for (int n = 0; n < FA_BC / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
    for (int kk = 0; kk < HD / 16; kk++)
        for (int np = 0; np < FA_BC / 16; np++) {
            uint32_t yb[4];
            ldmatrix_x4(yb, fa_cols_first(Y, HD, 16 * np, 16 * kk));
            mma_bf16_16816(s[2 * np], xf[kk], yb, s[2 * np]);
            mma_bf16_16816(s[2 * np + 1], xf[kk], yb + 2, s[2 * np + 1]);
        }
}
// fa_accum: acc[HD/8][4] += bf16(p) Z for the warp's 16 x FA_BC p (in the mma C layout of FA_BC/8 n-tiles, which is
// the A layout of FA_BC/16 k-blocks) and the [FA_BC][HD] tile Z (through ldmatrix .trans)
template <int HD> __device__ void fa_accum(float (*acc)[4], const float (*p)[4], const uint16_t *Z) {
    for (int kk = 0; kk < FA_BC / 16; kk++) {
        uint32_t pa[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                          pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]), pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
        for (int dp = 0; dp < HD / 16; dp++) {
            uint32_t zb[4];
            ldmatrix_x4_trans(zb, fa_rows_first(Z, HD, 16 * kk, 16 * dp));
            mma_bf16_16816(acc[2 * dp], pa, zb, acc[2 * dp]);
            mma_bf16_16816(acc[2 * dp + 1], pa, zb + 2, acc[2 * dp + 1]);
        }
    }
}
// fa_frags: the warp's 16 rows of a [64][HD] tile as A fragments f[HD/16][4]
template <int HD> __device__ void fa_frags(uint32_t (*f)[4], const uint16_t *tile) {
    for (int kk = 0; kk < HD / 16; kk++) ldmatrix_x4(f[kk], fa_rows_first(tile, HD, 16 * (threadIdx.x >> 5), 16 * kk));
}
__device__ __forceinline__ float quad_max(float v) { v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1)); return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2)); }
__device__ __forceinline__ float quad_sum(float v) { v += __shfl_xor_sync(0xffffffffu, v, 1); return v + __shfl_xor_sync(0xffffffffu, v, 2); }

// flash forward: y[t] = sum_{s <= t} softmax_s(q_t . k_s / sqrt(HD)) v_s, lse[(b*H + h)*T + t] = log sum_s exp(score);
// grid (ceil(T / FA_BR), B * H), FA_THREADS threads
template <int HD> __global__ void __launch_bounds__(FA_THREADS) flash_forward(float *y, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                                                              const __nv_bfloat16 *v, const int *ds, int T, int H, int KV) {
    __shared__ FaSmem<HD> S;
    const int w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    const int b = blockIdx.y / H, h = blockIdx.y % H, kh = h / (H / KV), q0 = blockIdx.x * FA_BR;
    const int j0 = ds ? ds[q0] / FA_BC : 0;                                    // the first key tile the block's queries see
    const int ntiles = ((q0 + FA_BR < T ? q0 + FA_BR : T) - 1) / FA_BC + 1;   // key tiles up to the block's last query
    const int row[2] = {q0 + 16 * w + g, q0 + 16 * w + g + 8};                 // this lane's two queries
    const int lo[2] = {ds && row[0] < T ? ds[row[0]] : 0, ds && row[1] < T ? ds[row[1]] : 0};   // and their first keys
    const float scale = rsqrtf((float)HD);
    fa_load<HD>(&S.t[2][0][0], q, FA_BR, b, q0, T, H, h);   // Q over stage 1 (t[2], t[3]), key tile j0 into stage 0
    fa_load<HD>(&S.t[0][0][0], k, FA_BC, b, j0 * FA_BC, T, KV, kh);
    fa_load<HD>(&S.t[1][0][0], v, FA_BC, b, j0 * FA_BC, T, KV, kh);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[HD / 16][4];
    fa_frags<HD>(qf, &S.t[2][0][0]);
    __syncthreads();   // Q is in registers: stage 1 is free
    float acc[HD / 8][4], s[FA_BC / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    for (int i = 0; i < HD / 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
    for (int j = j0; j < ntiles; j++) {
        int st = (j - j0) & 1;
        if (j + 1 < ntiles) {
            fa_load<HD>(&S.t[2 * (st ^ 1)][0][0], k, FA_BC, b, (j + 1) * FA_BC, T, KV, kh);
            fa_load<HD>(&S.t[2 * (st ^ 1) + 1][0][0], v, FA_BC, b, (j + 1) * FA_BC, T, KV, kh);
            cp_async_commit();
            cp_async_wait<1>();   // tile j has landed, tile j + 1 may be in flight
        } else cp_async_wait<0>();
        __syncthreads();
        fa_scores<HD>(s, qf, &S.t[2 * st][0][0]);
        float mt[2] = {m[0], m[1]}, corr[2], mz[2];
        for (int n = 0; n < FA_BC / 8; n++)
            for (int e = 0; e < 4; e++) {
                int key = j * FA_BC + 8 * n + 2 * tq + (e & 1);   // without documents key 0 is in every query's tile 0: m is finite
                s[n][e] = key <= row[e >> 1] && key >= lo[e >> 1] ? s[n][e] * scale : -INFINITY;
                mt[e >> 1] = fmaxf(mt[e >> 1], s[n][e]);
            }
        // a row whose segment starts past this tile (documents) keeps m = -inf: its rescale is 1 and its p are 0
        for (int r = 0; r < 2; r++) {
            mt[r] = quad_max(mt[r]);
            corr[r] = mt[r] == -INFINITY ? 1.f : expf(m[r] - mt[r]);
            m[r] = mt[r]; l[r] *= corr[r];
            mz[r] = mt[r] == -INFINITY ? 0.f : mt[r];
        }
        for (int n = 0; n < FA_BC / 8; n++)
            for (int e = 0; e < 4; e++) { s[n][e] = expf(s[n][e] - mz[e >> 1]); l[e >> 1] += s[n][e]; }
        for (int i = 0; i < HD / 8; i++)
            for (int e = 0; e < 4; e++) acc[i][e] *= corr[e >> 1];
        fa_accum<HD>(acc, s, &S.t[2 * st + 1][0][0]);
        __syncthreads();   // stage st is consumed: the next iteration loads into it
    }
    for (int r = 0; r < 2; r++) l[r] = quad_sum(l[r]);   // this lane's partial sums -> the row's (the same bits in all 4 lanes)
    for (int i = 0; i < HD / 8; i++)
        for (int e = 0; e < 4; e++)
            if (row[e >> 1] < T) y[((size_t)(b * T + row[e >> 1]) * H + h) * HD + 8 * i + 2 * tq + (e & 1)] = acc[i][e] / l[e >> 1];
    if (tq == 0)
        for (int r = 0; r < 2; r++)
            if (row[r] < T) lse[((size_t)b * H + h) * T + row[r]] = m[r] + logf(l[r]);
}
// flash backward, before the two passes (thread per token and head): dy16 = bf16(dy), D[(b*H + h)*T + t] = dy16_t . y_t
// (fp32 sums; from the rounded dy that dP = dy16 . v reads, so that sum_s P_ts (dP_ts - D_t) = 0 holds up to y's rounding)
__global__ void flash_backward_prep(__nv_bfloat16 *dy16, float *D, const float *dy, const float *y, int N, int T, int H, int HD) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * H) return;
    const float *a = dy + (size_t)i * HD, *c = y + (size_t)i * HD;
    float s = 0.f;
    for (int e = 0; e < HD; e++) {
        __nv_bfloat16 r = __float2bfloat16_rn(a[e]);
        dy16[(size_t)i * HD + e] = r;
        s += __bfloat162float(r) * c[e];
    }
    int n = i / H, h = i % H;
    D[((size_t)(n / T) * H + h) * T + n % T] = s;
}
// flash backward, queries (block per 64 queries of a head): dq_t = scale sum_{s <= t} p_ts (dy_t . v_s - D_t) k_s with
// p_ts = exp(q_t . k_s scale - lse_t); grid (ceil(T / FA_BR), B * H)
template <int HD> __global__ void __launch_bounds__(FA_THREADS) flash_backward_dq(float *dq, const __nv_bfloat16 *dy, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                                                                  const __nv_bfloat16 *v, const float *lse, const float *Dbuf, const int *ds,
                                                                                  int T, int H, int KV) {
    __shared__ FaSmem<HD> S;
    const int w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3;
    const int b = blockIdx.y / H, h = blockIdx.y % H, kh = h / (H / KV), q0 = blockIdx.x * FA_BR;
    const int j0 = ds ? ds[q0] / FA_BC : 0, ntiles = ((q0 + FA_BR < T ? q0 + FA_BR : T) - 1) / FA_BC + 1;
    const int row[2] = {q0 + 16 * w + g, q0 + 16 * w + g + 8};
    const int lo[2] = {ds && row[0] < T ? ds[row[0]] : 0, ds && row[1] < T ? ds[row[1]] : 0};
    const float scale = rsqrtf((float)HD);
    float L[2], Dr[2];
    for (int r = 0; r < 2; r++) {
        L[r] = row[r] < T ? lse[((size_t)b * H + h) * T + row[r]] : 0.f;
        Dr[r] = row[r] < T ? Dbuf[((size_t)b * H + h) * T + row[r]] : 0.f;
    }
    fa_load<HD>(&S.t[0][0][0], q, FA_BR, b, q0, T, H, h);   // Q over stage 0, dY over stage 1
    fa_load<HD>(&S.t[2][0][0], dy, FA_BR, b, q0, T, H, h);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[HD / 16][4], df[HD / 16][4];
    fa_frags<HD>(qf, &S.t[0][0][0]);
    fa_frags<HD>(df, &S.t[2][0][0]);
    __syncthreads();
    fa_load<HD>(&S.t[0][0][0], k, FA_BC, b, j0 * FA_BC, T, KV, kh);
    fa_load<HD>(&S.t[1][0][0], v, FA_BC, b, j0 * FA_BC, T, KV, kh);
    cp_async_commit();
    float acc[HD / 8][4], s[FA_BC / 8][4], dp[FA_BC / 8][4];
    for (int i = 0; i < HD / 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
    for (int j = j0; j < ntiles; j++) {
        int st = (j - j0) & 1;
        if (j + 1 < ntiles) {
            fa_load<HD>(&S.t[2 * (st ^ 1)][0][0], k, FA_BC, b, (j + 1) * FA_BC, T, KV, kh);
            fa_load<HD>(&S.t[2 * (st ^ 1) + 1][0][0], v, FA_BC, b, (j + 1) * FA_BC, T, KV, kh);
            cp_async_commit();
            cp_async_wait<1>();
        } else cp_async_wait<0>();
        __syncthreads();
        fa_scores<HD>(s, qf, &S.t[2 * st][0][0]);        // q_t . k_s
        fa_scores<HD>(dp, df, &S.t[2 * st + 1][0][0]);   // dy_t . v_s
        for (int n = 0; n < FA_BC / 8; n++)
            for (int e = 0; e < 4; e++) {
                int key = j * FA_BC + 8 * n + 2 * tq + (e & 1), r = e >> 1;
                float p = key <= row[r] && key >= lo[r] ? expf(s[n][e] * scale - L[r]) : 0.f;
                s[n][e] = p * (dp[n][e] - Dr[r]);   // dS
            }
        fa_accum<HD>(acc, s, &S.t[2 * st][0][0]);   // + dS K
        __syncthreads();
    }
    for (int i = 0; i < HD / 8; i++)
        for (int e = 0; e < 4; e++)
            if (row[e >> 1] < T) dq[((size_t)(b * T + row[e >> 1]) * H + h) * HD + 8 * i + 2 * tq + (e & 1)] = acc[i][e] * scale;
}
// fa_load_q: query tile `it` of a key block's list (head kh * group + it / cnt, tile first + it % cnt) into stage st:
// Q, dY by cp.async, lse and D by plain loads (zeros past T)
template <int HD> __device__ void fa_load_q(FaSmem<HD> &S, float (*sL)[FA_BC], float (*sD)[FA_BC], int st, int it, int cnt, int first, const __nv_bfloat16 *q,
                                            const __nv_bfloat16 *dy, const float *lse, const float *Dbuf, int b, int kh, int group, int T, int H) {
    int hh = kh * group + it / cnt, t0 = (first + it % cnt) * FA_BC;
    fa_load<HD>(&S.t[2 * st][0][0], q, FA_BC, b, t0, T, H, hh);
    fa_load<HD>(&S.t[2 * st + 1][0][0], dy, FA_BC, b, t0, T, H, hh);
    for (int e = threadIdx.x; e < FA_BC; e += blockDim.x) {
        int t = t0 + e;
        sL[st][e] = t < T ? lse[((size_t)b * H + hh) * T + t] : 0.f;
        sD[st][e] = t < T ? Dbuf[((size_t)b * H + hh) * T + t] : 0.f;
    }
}
// flash backward, keys (block per 64 keys of a kv head; after flash_backward_prep), over the group's query heads and
// t >= s: dv_s = sum p_ts dy_t, dk_s = scale sum p_ts (dy_t . v_s - D_t) q_t; grid (ceil(T / FA_BR), B * KV)
template <int HD> __global__ void __launch_bounds__(FA_THREADS) flash_backward_dkv(float *dk, float *dv, const __nv_bfloat16 *dy, const __nv_bfloat16 *q,
                                                                                   const __nv_bfloat16 *k, const __nv_bfloat16 *v, const float *lse,
                                                                                   const float *Dbuf, const int *de, int T, int H, int KV) {
    __shared__ FaSmem<HD> S;
    __shared__ float sL[2][FA_BC], sD[2][FA_BC];
    const int w = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, tq = threadIdx.x & 3, group = H / KV;
    const int b = blockIdx.y / KV, kh = blockIdx.y % KV, s0 = blockIdx.x * FA_BR;
    const int tend = de ? de[(s0 + FA_BR < T ? s0 + FA_BR : T) - 1] : T;                           // past the block's last query
    const int first = s0 / FA_BC, cnt = (tend + FA_BC - 1) / FA_BC - first, items = group * cnt;   // query tiles from the first key on
    const int row[2] = {s0 + 16 * w + g, s0 + 16 * w + g + 8};                                      // this lane's two keys
    const int hi[2] = {de && row[0] < T ? de[row[0]] : T, de && row[1] < T ? de[row[1]] : T};       // past their last queries
    const float scale = rsqrtf((float)HD);
    fa_load<HD>(&S.t[0][0][0], k, FA_BR, b, s0, T, KV, kh);   // K over stage 0, V over stage 1
    fa_load<HD>(&S.t[2][0][0], v, FA_BR, b, s0, T, KV, kh);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t kf[HD / 16][4], vf[HD / 16][4];
    fa_frags<HD>(kf, &S.t[0][0][0]);
    fa_frags<HD>(vf, &S.t[2][0][0]);
    __syncthreads();
    fa_load_q<HD>(S, sL, sD, 0, 0, cnt, first, q, dy, lse, Dbuf, b, kh, group, T, H);
    cp_async_commit();
    float dka[HD / 8][4], dva[HD / 8][4], p[FA_BC / 8][4], ds[FA_BC / 8][4];
    for (int i = 0; i < HD / 8; i++)
        for (int e = 0; e < 4; e++) dka[i][e] = dva[i][e] = 0.f;
    for (int it = 0; it < items; it++) {
        int st = it & 1, t0 = (first + it % cnt) * FA_BC;
        if (it + 1 < items) {
            fa_load_q<HD>(S, sL, sD, st ^ 1, it + 1, cnt, first, q, dy, lse, Dbuf, b, kh, group, T, H);
            cp_async_commit();
            cp_async_wait<1>();
        } else cp_async_wait<0>();
        __syncthreads();
        fa_scores<HD>(p, kf, &S.t[2 * st][0][0]);        // k_s . q_t (rows keys, columns queries)
        fa_scores<HD>(ds, vf, &S.t[2 * st + 1][0][0]);   // v_s . dy_t
        for (int n = 0; n < FA_BC / 8; n++)
            for (int e = 0; e < 4; e++) {
                int c = 8 * n + 2 * tq + (e & 1), t = t0 + c;
                float pv = t >= row[e >> 1] && t < hi[e >> 1] ? expf(p[n][e] * scale - sL[st][c]) : 0.f;
                ds[n][e] = pv * (ds[n][e] - sD[st][c]);
                p[n][e] = pv;
            }
        fa_accum<HD>(dva, p, &S.t[2 * st + 1][0][0]);   // + P^T dY
        fa_accum<HD>(dka, ds, &S.t[2 * st][0][0]);      // + dS^T Q
        __syncthreads();
    }
    for (int i = 0; i < HD / 8; i++)
        for (int e = 0; e < 4; e++)
            if (row[e >> 1] < T) {
                size_t o = ((size_t)(b * T + row[e >> 1]) * KV + kh) * HD + 8 * i + 2 * tq + (e & 1);
                dk[o] = dka[i][e] * scale;
                dv[o] = dva[i][e];
            }
}

// ----------------------------------------------------------------------------------------------------
// 5. model: device buffers, forward, backward

static int blocks_for(size_t n, int threads) { return (int)((n + threads - 1) / threads); }
#define LAUNCH1D(kernel, n, ...) do { size_t n_ = (n); if (n_) { KERNEL_LAUNCH(kernel, blocks_for(n_, 256), 256, 0, __VA_ARGS__); cudaCheck(cudaGetLastError()); } } while (0)
// with_head_dim: f(std::integral_constant<int, hd>) for the head dims config_validate allows (multiples of 32 up to 256)
template <class F> static void with_head_dim(int hd, F f) {
    switch (hd) {
    case 32: f(std::integral_constant<int, 32>()); break;
    case 64: f(std::integral_constant<int, 64>()); break;
    case 96: f(std::integral_constant<int, 96>()); break;
    case 128: f(std::integral_constant<int, 128>()); break;
    case 160: f(std::integral_constant<int, 160>()); break;
    case 192: f(std::integral_constant<int, 192>()); break;
    case 224: f(std::integral_constant<int, 224>()); break;
    case 256: f(std::integral_constant<int, 256>()); break;
    default: golf_die("internal: head_dim %d (config_validate allows multiples of 32 up to 256)", hd);
    }
}
// with_flash_head_dim: the same for the flash kernels' head dims (64, 128)
template <class F> static void with_flash_head_dim(int hd, F f) {
    if (hd == 64) f(std::integral_constant<int, 64>());
    else if (hd == 128) f(std::integral_constant<int, 128>());
    else golf_die("internal: flash attention for head_dim %d (64 or 128 only)", hd);
}
#define LAUNCH_ROWS(kernel, rows, ...) LAUNCH1D(kernel, (size_t)(rows) * ROW_LANES, __VA_ARGS__)
#define LAUNCH_WARPS(kernel, warps, ...) do { size_t w_ = (warps); if (w_) { KERNEL_LAUNCH(kernel, blocks_for(w_, 8), 256, 0, __VA_ARGS__); cudaCheck(cudaGetLastError()); } } while (0)

typedef struct {   // activations of one block for a batch of N tokens
    float *xin;     // [N, d] block input (lane 0 of a parallel block; after the skip)
    float *xm;      // [N, d] after the residual mix
    float *h1, *r1; // [N, d], [N]: rmsnorm(xm)
    float *qr, *kr, *v;  // [N, d], [N, kv], [N, kv]: projections
    float *q, *k;   // [N, d], [N, kv]: after norm, RoPE, gain
    float *rq, *rk; // [N*H], [N*KV]: rstd of the q/k heads
    float *y, *lse; // [N, d], [B*H*T]: attention output and log-sum-exp
    float *yx;      // [N, d]: after XSA and the output gate (= y when both are off)
    float *ya;      // [N, d]: after XSA, before the gate (= y without XSA)
    float *sg;      // [N*H]: output gate values (ATTN_OUT_GATE)
    float *ao;      // [N, d]: attention projection
    float *xa;      // [N, d]: xm + attn_scale * ao (03-31's lanes: the MLP's residual mix, par_mid_mix)
    float *h2, *r2; // [N, d], [N]: rmsnorm(xa) (h2: PRECISION=fp32)
    float *up, *u;  // [N, F]: fc output, relu^2 (both PRECISION=fp32)
    bf16 *h2b, *ub; // [N, d], [N, F]: ls * h2 and u in bf16 (PRECISION=bf16: the only copy)
    bf16 *upb;      // [N, F]: the fc output in bf16 (PRECISION=bf16: the GEMM's own bf16 result, the only copy)
    float *mo;      // [N, d]: MLP projection
    float *xout;    // [N, d]: xa + mlp_scale * mo (lane 0 of a parallel block)
    float *xin1, *xout1;  // [N, d]: lane 1 in and out (PARALLEL_FROM; else NULL); a sequential block after lanes: their mean
    float *sk;      // [N, d]: what an encoder position hands to its skip: xout, or the lane mean
    float *sk1;     // [N, d]: 03-31's lanes: what it hands to lane 1's skip: xout1, or xout (one stream)
    float *skbuf;   // [N, d]: the lane mean's buffer (PARALLEL_FROM, 04-29's lanes)
} BlockActs;

typedef struct {
    TrainConfig tc;
    GolfModel host;          // the parameter table (and a host copy of the weights when needed)
    Config c;
    int B, T, N;             // sequences, length, tokens per micro-batch
    float *params, *grads, *adam_m, *adam_v, *muon_buf;   // [numel] each, carved by the parameter table
    float *qparams, *ema;    // [numel] each when QAT / EMA_DECAY is on (else NULL): fake-quantized weights, the EMA
    float **dparam;          // [n] device pointer of every tensor (params; qparams for the QAT matrices while QAT runs)
    BlockActs *acts;         // [positions]: one per virtual layer of the longer schedule
    int looped;              // 1: the loop schedule (LOOP_ENCODER/LOOP_DECODER) runs, 0: the plain one
    float *e;                // [N, d] token (+ BigramHash) embeddings
    float *xn, *smear_g;     // [N, d], [N]: SmearGate(e), the norm's input, and the gate values (SMEAR_GATE)
    int *bidx;               // [N] BigramHash indices
    float *be, *bp;          // [N, d_b], [N, d]: BigramHash rows and their projection
    float *vee, *vep, *veb, *dveb;   // [N, d_ve], [N, kv] x 3: ValueEmbedding rows, their projection, the base scale * vep, dL/dbase
    float *dvx;              // [N, kv]: XSA's part of dv
    float *gate_dh;          // [N, d]: the attention output gate's part of dh1
    float *lane_g[2], *dlane1;   // [N, d] each (PARALLEL_FROM): branch gradients gA, gM; lane 1's gradient
    float *xf;               // [N, d]: the lane mean before the final norm (PARALLEL_FROM)
    const float *final_in;   // the final norm's input of the last forward
    float *vec[2];           // [d], [2, d]: scratch, column sums
    float *x0, *r0, *hf, *rf, *logits, *loss;   // [N,d], [N], [N,d], [N], [chunk,V], [N] (hf: PRECISION=fp32)
    int chunk;               // tokens per pass of the head (LOGIT_CHUNK, at most N): logits live only a chunk at a time
    float *dhf;              // [N, d]: dL/dhf, left by forward for backward (= scratch[2], backward's first t1)
    bf16 *hfb;               // [N, d]: the final norm's output in bf16 (PRECISION=bf16: the only copy)
    float *cosv, *sinv;      // [T, hd/2] RoPE tables
    int *tok, *tgt;          // [N] device tokens
    int *ds, *de;            // [N] DOC_ATTENTION: each token's document segment, first key and one past its last query (doc_bounds)
    float *scratch[6];       // [N, max(d, F, kv)] backward temporaries
    float *Dbuf;             // [B*H*T]
    __nv_bfloat16 *q16, *k16, *v16, *dy16;   // [N, d], [N, kv], [N, kv], [N, d]: bf16 copies for the flash kernels (4c) of the
                                             // layer at hand; only under PRECISION=bf16 with head_dim 64 or 128 (else NULL)
    float **skip_grad;       // [encoder positions][N, d]: gradient reaching an encoder output through its skip
    float **skip_grad1;      // the same for lane 1 of a parallel encoder position (03-31's lanes; else NULL)
    float *ns[5];            // Newton-Schulz scratch: [batch, rows, cols] of the largest Muon group (muon_alloc, chapter 6)
    struct MuonPlan *muon;   // the Muon matrices grouped by shape, this rank's share of each (chapter 6)
    int rank, world;         // this process among the ranks (chapter 9; 0 and 1 for one process), set before trainer_alloc
    float *norm;             // [1] reduction target
    cublasHandle_t blas;
    // PRECISION=bf16 (use_bf16): GEMMs through cuBLASLt on bf16 operands (section "GEMMs" below)
    int use_bf16;
    bf16 *wbf;               // bf16 shadow of the weights in use (dparam), rebuilt at the first GEMM after params_changed
    size_t *wbf_off;         // [n]: tensor i's place in wbf (every tensor 256-byte aligned, as cuBLASLt's fast kernels want)
    int shadow_stale;        // 1: the weights changed since the shadow was built
    bf16 *lt_in[2], *lt_out; // [lt_cap] each: activation operands cast to bf16, a bf16 GEMM output before it is widened
    size_t lt_cap;
    bf16 *nsb[4];            // bf16 Newton-Schulz buffers (X, A, B, BX; as ns)
    cublasLtHandle_t lt;
    void *lt_ws;             // [LT_WORKSPACE bytes]
    struct LtPlan *plans;    // [LT_MAX_PLANS]: one per GEMM shape and operand alignment, made at its first call
    int nplans;
} Trainer;

// --- GEMMs. gemm: C[M, N] = alpha * op(A) op(B) + beta * C in row-major terms; op(A) is M x K (A stored K x M when
// ta), op(B) is K x N (B stored N x K when tb); C float32. PRECISION=fp32: cublasSgemm. PRECISION=bf16: cuBLASLt with
// A and B in bf16 (a weight from the bf16 shadow wbf, a bf16 activation as it is, any other float operand cast on
// the fly into lt_in), float32 accumulation
// (CUBLAS_COMPUTE_32F) and C float32 (so dW accumulates into the float32 gradients with beta = 1), as autocast's
// tensor-core GEMMs. gemm_act: a forward GEMM that produces an activation (beta = 0): under PRECISION=bf16 its output is
// rounded to bf16 (D in bf16, as autocast's bf16 outputs), then held in float32; alpha scales the activation A before
// its cast (autocast casts x * ls). gemm_dw: dW[M, N] += s dY^T X (dY [K, M], X [K, N]), the gradient of such a GEMM's
// weight: under PRECISION=bf16, s scales X before its cast, as in the forward.
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS's "A" is our B and its "B" our A.
#define LT_WORKSPACE ((size_t)32 << 20)
#define LT_MAX_PLANS 256
struct LtPlan {   // one GEMM shape and operand alignment: its descriptor, layouts (C = D) and the heuristic's algorithm
    int ta, tb, M, N, K, dtype, align[3];   // align: bytes (up to 256) of our A, B and C pointers (and of their strides)
    int batch;                              // > 1: a packed strided batch (entry i of A at A + i M K, B + i K N, C + i M N)
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
};

// align_of: the alignment of p in bytes, up to 256 (cuBLASLt's default assumption)
static int align_of(const void *p) { uintptr_t u = (uintptr_t)p; return u % 256 == 0 ? 256 : (int)(u & (~u + 1)); }

// lt_plan: the plan of (ta, tb, M, N, K, D type, alignments, batch), made and cached at its first use. The gradients
// of the parameter table (dW's C) start where their tensor does, so their alignment varies: the heuristic is told it.
// A batch (Muon's Newton-Schulz, chapter 6) is packed: every entry's alignment is its base's and its stride's.
static int align_batched(const void *p, size_t stride_bytes, int batch) {
    return batch > 1 ? align_of((const void *)((uintptr_t)p | (uintptr_t)stride_bytes)) : align_of(p);
}
static const LtPlan *lt_plan(Trainer *tr, int ta, int tb, int M, int N, int K, cudaDataType_t dtype, const void *A, const void *B, const void *C, int batch) {
    size_t cb = dtype == CUDA_R_16BF ? 2 : 4;
    int al[3] = {align_batched(A, (size_t)M * K * 2, batch), align_batched(B, (size_t)K * N * 2, batch), align_batched(C, (size_t)M * N * cb, batch)};
    for (int i = 0; i < tr->nplans; i++) {
        const LtPlan *p = &tr->plans[i];
        if (p->ta == ta && p->tb == tb && p->M == M && p->N == N && p->K == K && p->dtype == (int)dtype && p->align[0] == al[0] && p->align[1] == al[1] &&
            p->align[2] == al[2] && p->batch == batch)
            return p;
    }
    if (tr->nplans == LT_MAX_PLANS) golf_die("internal: more than %d GEMM plans", LT_MAX_PLANS);
    LtPlan *p = &tr->plans[tr->nplans++];
    p->ta = ta; p->tb = tb; p->M = M; p->N = N; p->K = K; p->dtype = (int)dtype; p->batch = batch;
    for (int i = 0; i < 3; i++) p->align[i] = al[i];
    int32_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, tb ? K : N, tb ? N : K, tb ? K : N));   // our B, column-major
    cublasCheck(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, ta ? M : K, ta ? K : M, ta ? M : K));   // our A
    cublasCheck(cublasLtMatrixLayoutCreate(&p->d, dtype, N, M, N));                                   // C^T
    if (batch > 1) {   // entry strides in elements: cuBLAS's A is our B [K, N], its B our A [M, K], D our C [M, N]
        int32_t bc = batch;
        int64_t stride[3] = {(int64_t)K * N, (int64_t)M * K, (int64_t)M * N};
        cublasLtMatrixLayout_t lay[3] = {p->a, p->b, p->d};
        for (int i = 0; i < 3; i++) {
            cublasCheck(cublasLtMatrixLayoutSetAttribute(lay[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
            cublasCheck(cublasLtMatrixLayoutSetAttribute(lay[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride[i], sizeof(stride[i])));
        }
    }
    cublasLtMatmulPreference_t pref;
    uint64_t ws = LT_WORKSPACE;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    uint32_t a_cm = (uint32_t)al[1], b_cm = (uint32_t)al[0], c_cm = (uint32_t)al[2];   // cuBLAS's A is our B
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a_cm, sizeof(a_cm)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b_cm, sizeof(b_cm)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c_cm, sizeof(c_cm)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c_cm, sizeof(c_cm)));
    cublasLtMatmulHeuristicResult_t h;
    int got = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(tr->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &h, &got));
    if (got < 1) golf_die("cuBLASLt has no algorithm for a bf16 GEMM %d x %d x %d (ta %d, tb %d, batch %d)", M, N, K, ta, tb, batch);
    p->algo = h.algo;
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    return p;
}

// lt_gemm: gemm's bf16 form on bf16 A, B; C of type dtype (CUDA_R_32F or CUDA_R_16BF; beta = 0 for bf16); batch > 1:
// that many packed entries (lt_plan)
static void lt_gemm(Trainer *tr, int ta, int tb, int M, int N, int K, float alpha, const bf16 *A, const bf16 *B, float beta, void *C, cudaDataType_t dtype,
                    int batch = 1) {
    const LtPlan *p = lt_plan(tr, ta, tb, M, N, K, dtype, A, B, C, batch);
    cublasCheck(cublasLtMatmul(tr->lt, p->desc, &alpha, B, p->a, A, p->b, &beta, C, p->d, C, p->d, &p->algo, tr->lt_ws, LT_WORKSPACE, cudaStreamPerThread));
}

// shadow_refresh: wbf = bf16 of the weights in use (params, and qparams for the QAT matrices while QAT runs); only
// the matrices a GEMM reads (2-D tensors) are kept there
static void shadow_refresh(Trainer *tr) {
    for (int i = 0; i < tr->host.n; i++) {
        const ParamSpec *s = &tr->host.spec[i];
        size_t n = (size_t)s->rows * s->cols;
        if (tr->wbf_off[i] != SIZE_MAX) LAUNCH1D(to_bf16, n, tr->wbf + tr->wbf_off[i], tr->dparam[i], 1.0f, n);
    }
    tr->shadow_stale = 0;
}
// params_changed: every place that writes the weights (or switches dparam) calls it: the bf16 shadow is stale
static void params_changed(Trainer *tr) { tr->shadow_stale = 1; }

// bf16_operand: x [n] as a bf16 GEMM operand: a weight's shadow (rebuilt first when stale), or bf16(s x) cast into
// lt_in[slot] (s: a scale autocast applies before the cast, LN_SCALE's on the norm outputs)
static const bf16 *bf16_operand(Trainer *, const bf16 *x, size_t, int, float s) {   // an activation written in bf16
    if (s != 1.0f) golf_die("internal: a scale on a bf16 activation (it belongs in the kernel that wrote it)");
    return x;
}
static const bf16 *bf16_operand(Trainer *tr, const float *x, size_t n, int slot, float s) {
    size_t numel = tr->host.numel;
    size_t off = x >= tr->params && x < tr->params + numel ? (size_t)(x - tr->params)
                 : tr->qparams && x >= tr->qparams && x < tr->qparams + numel ? (size_t)(x - tr->qparams) : SIZE_MAX;
    if (off != SIZE_MAX) {   // a weight: the tensor it starts (PARAM's), found by its offset
        int lo = 0, hi = tr->host.n - 1;
        while (lo < hi) { int mid = (lo + hi + 1) / 2; if (tr->host.spec[mid].offset <= off) lo = mid; else hi = mid - 1; }
        if (s != 1.0f || tr->host.spec[lo].offset != off || tr->wbf_off[lo] == SIZE_MAX) golf_die("internal: a GEMM weight operand that is no whole matrix");
        if (tr->shadow_stale) shadow_refresh(tr);
        return tr->wbf + tr->wbf_off[lo];
    }
    if (n > tr->lt_cap) golf_die("internal: a GEMM operand of %zu values over the bf16 scratch's %zu", n, tr->lt_cap);
    LAUNCH1D(to_bf16, n, tr->lt_in[slot], x, s, n);
    return tr->lt_in[slot];
}

// (A and B: float, or bf16 activations under PRECISION=bf16)
template <class TA, class TB>
static void gemm(Trainer *tr, int ta, int tb, int M, int N, int K, float alpha, const TA *A, const TB *B, float beta, float *C) {
    if (tr->use_bf16) {
        lt_gemm(tr, ta, tb, M, N, K, alpha, bf16_operand(tr, A, (size_t)M * K, 0, 1.0f), bf16_operand(tr, B, (size_t)K * N, 1, 1.0f), beta, C, CUDA_R_32F);
        return;
    }
    if constexpr (std::is_same<TA, float>::value && std::is_same<TB, float>::value)
        cublasCheck(cublasSgemm(tr->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, tb ? K : N, A,
                                ta ? M : K, &beta, C, N));
    else golf_die("internal: a bf16 GEMM operand under PRECISION=fp32");
}
template <class TA>
static void gemm_act(Trainer *tr, int ta, int tb, int M, int N, int K, float alpha, const TA *A, const float *B, float *C) {
    if (!tr->use_bf16) { gemm(tr, ta, tb, M, N, K, alpha, A, B, 0.0f, C); return; }
    size_t n = (size_t)M * N;
    if (n > tr->lt_cap) golf_die("internal: a GEMM output of %zu values over the bf16 scratch's %zu", n, tr->lt_cap);
    lt_gemm(tr, ta, tb, M, N, K, 1, bf16_operand(tr, A, (size_t)M * K, 0, alpha), bf16_operand(tr, B, (size_t)K * N, 1, 1.0f), 0, tr->lt_out, CUDA_R_16BF);
    LAUNCH1D(widen_bf16, n, C, tr->lt_out, n);
}
// gemm_bf16_out (PRECISION=bf16): C[M, N] = bf16(op(A) op(B)), the tensor cores' bf16 output kept as it is (what
// gemm_act widens into float; here it stays bf16 for a consumer that reads bf16)
template <class TA>
static void gemm_bf16_out(Trainer *tr, int ta, int tb, int M, int N, int K, const TA *A, const float *B, bf16 *C) {
    if (!tr->use_bf16) golf_die("internal: a bf16 GEMM output under PRECISION=fp32");
    lt_gemm(tr, ta, tb, M, N, K, 1, bf16_operand(tr, A, (size_t)M * K, 0, 1.0f), bf16_operand(tr, B, (size_t)K * N, 1, 1.0f), 0, C, CUDA_R_16BF);
}
template <class TX> static void gemm_dw(Trainer *tr, int M, int N, int K, float s, const float *dY, const TX *X, float *dW) {
    if (!tr->use_bf16) { gemm(tr, 1, 0, M, N, K, s, dY, X, 1.0f, dW); return; }
    lt_gemm(tr, 1, 0, M, N, K, 1, bf16_operand(tr, dY, (size_t)M * K, 0, 1.0f), bf16_operand(tr, X, (size_t)K * N, 1, s), 1, dW, CUDA_R_32F);
}

// Device memory: every allocation of the trainer goes through dmalloc_bytes, the one accounting point: it counts the
// bytes under the class last set by mem_class(). With PLAN_MEMORY=1 it counts and hands out NULL, so that
// trainer_alloc's own size arithmetic is the plan of any config, on any machine (memory_plan_print; main then exits).
enum { MEM_WEIGHTS, MEM_GRADS, MEM_OPTIM, MEM_BLOCK_ACTS, MEM_EMBED_ACTS, MEM_LOGITS, MEM_SCRATCH, MEM_NS, MEM_SMALL, MEM_CLASSES };
static const char *MEM_CLASS_NAME[MEM_CLASSES] = {
    "weights (params; QAT copy, EMA when on)", "gradients", "optimizer state (Adam m, v; Muon momentum)", "block activations (all positions)",
    "embedding, lanes, final norm", "logits of one head chunk (dlogits in place), loss", "backward scratch and skip gradients", "Newton-Schulz scratch",
    "tokens, RoPE tables, small"};
// cuBLAS's workspace, allocated here (dmalloc) and handed to the handle with cublasSetWorkspace, so that cuBLAS never
// allocates one itself inside a CUDA graph capture; the size of cuBLAS's own default on Hopper, 32 MiB
static const size_t CUBLAS_WORKSPACE_BYTES = (size_t)32 << 20;
static struct { int cls, plan_only; size_t bytes[MEM_CLASSES], count[MEM_CLASSES], in_use, peak; } g_mem;
static void mem_class(int cls) { g_mem.cls = cls; }
static void *dmalloc_bytes(size_t n) {
    g_mem.bytes[g_mem.cls] += n; g_mem.count[g_mem.cls]++;
    g_mem.in_use += n; if (g_mem.in_use > g_mem.peak) g_mem.peak = g_mem.in_use;
    if (g_mem.plan_only) return NULL;
    void *p = nullptr;
    cudaCheck(cudaMalloc(&p, n));
    cudaCheck(cudaMemset(p, 0, n));
    return p;
}
static float *dmalloc(size_t n) { return (float *)dmalloc_bytes((n ? n : 1) * sizeof(float)); }
static bf16 *dmalloc_bf16(size_t n) { return (bf16 *)dmalloc_bytes((n ? n : 1) * sizeof(bf16)); }

static void muon_alloc(Trainer *tr);
static void trainer_alloc(Trainer *tr, int B) {
    const Config *c = &tr->c;
    int d = c->model_dim, hd = d / c->num_heads, kv = c->num_kv_heads * hd, F = c->mlp_hidden, T = c->train_seq_len;
    tr->B = B; tr->T = T; tr->N = B * T;
    size_t N = (size_t)tr->N, numel = tr->host.numel;
    mem_class(MEM_WEIGHTS); tr->params = dmalloc(numel);
    mem_class(MEM_GRADS); tr->grads = dmalloc(numel);
    mem_class(MEM_OPTIM); tr->adam_m = dmalloc(numel); tr->adam_v = dmalloc(numel); tr->muon_buf = dmalloc(numel);
    tr->dparam = (float **)galloc((size_t)tr->host.n * sizeof(float *));
    for (int i = 0; i < tr->host.n && tr->params; i++) { tr->dparam[i] = tr->params + tr->host.spec[i].offset; }
    int e0, d0, e1, d1, idx[MAX_LAYERS];
    int npos = schedule(c, 0, &e0, &d0, idx), nloop = schedule(c, 1, &e1, &d1, idx), P = npos > nloop ? npos : nloop;
    tr->acts = (BlockActs *)galloc((size_t)P * sizeof(BlockActs));
    // RECOMPUTE=1: xm, h1, xa, h2 and u (cheap elementwise / row functions of what a position keeps) get one buffer
    // shared by all positions; forward writes them there, backward's block_recompute rewrites them, same bits
    int b16 = strcmp(tr->tc.precision, "bf16") == 0, rc = tr->tc.recompute;
    BlockActs sh;
    memset(&sh, 0, sizeof(sh));
    if (rc) {
        mem_class(MEM_SCRATCH);
        sh.xm = dmalloc(N * d); sh.h1 = dmalloc(N * d); sh.xa = dmalloc(N * d);
        if (b16) { sh.h2b = dmalloc_bf16(N * d); sh.ub = dmalloc_bf16(N * F); }
        else { sh.h2 = dmalloc(N * d); sh.u = dmalloc(N * F); }
    }
    mem_class(MEM_BLOCK_ACTS);
    for (int l = 0; l < P; l++) {
        BlockActs *a = &tr->acts[l];
        a->xin = dmalloc(N * d); a->xm = rc ? sh.xm : dmalloc(N * d); a->h1 = rc ? sh.h1 : dmalloc(N * d); a->r1 = dmalloc(N);
        a->qr = dmalloc(N * d); a->kr = dmalloc(N * kv); a->v = dmalloc(N * kv); a->q = dmalloc(N * d); a->k = dmalloc(N * kv);
        a->rq = dmalloc(N * c->num_heads); a->rk = dmalloc(N * c->num_kv_heads);
        a->y = dmalloc(N * d); a->lse = dmalloc(N * c->num_heads); a->ao = dmalloc(N * d); a->xa = rc ? sh.xa : dmalloc(N * d);
        a->r2 = dmalloc(N); a->mo = dmalloc(N * d); a->xout = dmalloc(N * d);
        a->up = b16 ? NULL : dmalloc(N * F); a->upb = b16 ? dmalloc_bf16(N * F) : NULL;
        a->h2 = a->u = NULL; a->h2b = a->ub = NULL;
        if (rc) { a->h2 = sh.h2; a->u = sh.u; a->h2b = sh.h2b; a->ub = sh.ub; }
        else if (b16) { a->h2b = dmalloc_bf16(N * d); a->ub = dmalloc_bf16(N * F); }
        else { a->h2 = dmalloc(N * d); a->u = dmalloc(N * F); }
        a->ya = c->xsa_last_n ? dmalloc(N * d) : a->y;
        a->yx = c->attn_out_gate ? dmalloc(N * d) : a->ya;
        a->sg = c->attn_out_gate ? dmalloc(N * c->num_heads) : NULL;
        a->xin1 = c->parallel_from ? dmalloc(N * d) : NULL;
        a->xout1 = c->parallel_from ? dmalloc(N * d) : NULL;
        a->skbuf = c->parallel_from && c->parallel_form == PARALLEL_0429 ? dmalloc(N * d) : NULL;
        a->sk = a->sk1 = a->xout;
    }
    mem_class(MEM_SCRATCH);
    for (int k = 0; k < 2; k++) tr->lane_g[k] = c->parallel_from ? dmalloc(N * d) : NULL;
    tr->dlane1 = c->parallel_from ? dmalloc(N * d) : NULL;
    mem_class(MEM_EMBED_ACTS);
    tr->xf = c->parallel_from ? dmalloc(N * d) : NULL;
    tr->e = dmalloc(N * d); tr->xn = dmalloc(N * d); tr->smear_g = dmalloc(N);
    mem_class(MEM_SMALL); tr->bidx = (int *)dmalloc_bytes(N * sizeof(int));
    mem_class(MEM_EMBED_ACTS);
    tr->be = dmalloc(N * (c->bigram_vocab ? c->bigram_dim : 1)); tr->bp = dmalloc(c->bigram_vocab ? N * d : 1);
    tr->vee = dmalloc(c->ve_dim ? N * c->ve_dim : 1); tr->vep = dmalloc(c->ve_dim && c->ve_dim != kv ? N * kv : 1); tr->veb = dmalloc(c->ve_dim ? N * kv : 1);
    mem_class(MEM_SCRATCH);
    tr->dveb = dmalloc(c->ve_dim ? N * kv : 1);
    tr->dvx = dmalloc(c->xsa_last_n ? N * kv : 1);
    tr->gate_dh = dmalloc(c->attn_out_gate ? N * d : 1);
    mem_class(MEM_SMALL); tr->vec[0] = dmalloc(d); tr->vec[1] = dmalloc(2 * d);
    mem_class(MEM_EMBED_ACTS); tr->x0 = dmalloc(N * d); tr->r0 = dmalloc(N); tr->rf = dmalloc(N);
    if (strcmp(tr->tc.precision, "bf16") == 0) tr->hfb = dmalloc_bf16(N * d);
    else tr->hf = dmalloc(N * d);
    tr->chunk = tr->tc.logit_chunk > 0 && tr->tc.logit_chunk < tr->N ? tr->tc.logit_chunk : tr->N;
    mem_class(MEM_LOGITS); tr->logits = dmalloc((size_t)tr->chunk * c->vocab_size); tr->loss = dmalloc(N);
    mem_class(MEM_SCRATCH);
    int wmax = d > F ? d : F;
    for (int i = 0; i < 6; i++) tr->scratch[i] = dmalloc(N * wmax);
    tr->dhf = tr->scratch[2];
    tr->Dbuf = dmalloc(N * c->num_heads);
    tr->q16 = tr->k16 = tr->v16 = tr->dy16 = NULL;
    if (!strcmp(tr->tc.precision, "bf16") && tr->tc.flash_attention && (hd == 64 || hd == 128)) {
        tr->q16 = (__nv_bfloat16 *)dmalloc_bytes(N * d * sizeof(__nv_bfloat16)); tr->dy16 = (__nv_bfloat16 *)dmalloc_bytes(N * d * sizeof(__nv_bfloat16));
        tr->k16 = (__nv_bfloat16 *)dmalloc_bytes(N * kv * sizeof(__nv_bfloat16)); tr->v16 = (__nv_bfloat16 *)dmalloc_bytes(N * kv * sizeof(__nv_bfloat16));
    }
    int emax = e0 > e1 ? e0 : e1;
    tr->skip_grad = (float **)galloc((size_t)(emax + 1) * sizeof(float *));
    for (int l = 0; l < emax; l++) tr->skip_grad[l] = dmalloc(N * d);
    tr->skip_grad1 = NULL;
    if (c->parallel_from && c->parallel_form != PARALLEL_0429) {
        tr->skip_grad1 = (float **)galloc((size_t)(emax + 1) * sizeof(float *));
        for (int l = 0; l < emax; l++) tr->skip_grad1[l] = dmalloc(N * d);
    }
    tr->looped = c->loop_enc > 0;
    mem_class(MEM_SMALL);
    tr->norm = dmalloc(1 + NORM_BLOCKS);   // the gradient's sum of squares, then sum_squares_blocks's partial sums
    tr->tok = (int *)dmalloc_bytes(N * sizeof(int));
    tr->tgt = (int *)dmalloc_bytes(N * sizeof(int));
    tr->ds = c->doc_attention ? (int *)dmalloc_bytes(N * sizeof(int)) : NULL;
    tr->de = c->doc_attention ? (int *)dmalloc_bytes(N * sizeof(int)) : NULL;
    // RoPE tables, computed like torch in float32 (inv_freq = 1 / base^(2i/R), angle = t * inv_freq), cos/sin rounded once
    int R = c->rope_dims ? c->rope_dims : hd, half = R / 2;
    float *hc = (float *)galloc((size_t)T * half * 4), *hs = (float *)galloc((size_t)T * half * 4);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float inv = 1.0f / powf(c->rope_base, (float)(2 * i) / (float)R), ang = (float)t * inv;
            hc[t * half + i] = (float)cos((double)ang); hs[t * half + i] = (float)sin((double)ang);
        }
    tr->cosv = dmalloc((size_t)T * half); tr->sinv = dmalloc((size_t)T * half);
    if (!g_mem.plan_only) {
        cudaCheck(cudaMemcpy(tr->cosv, hc, (size_t)T * half * 4, cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(tr->sinv, hs, (size_t)T * half * 4, cudaMemcpyHostToDevice));
    }
    free(hc); free(hs);
    mem_class(MEM_WEIGHTS);
    if (tr->tc.qat) tr->qparams = dmalloc(numel);
    if (tr->tc.ema_decay > 0) tr->ema = dmalloc(numel);
    tr->use_bf16 = strcmp(tr->tc.precision, "bf16") == 0;
    if (tr->use_bf16) {   // the shadow, the operand scratch (the widest activation: [N, max(d, F, d_b)] or [chunk, V]), NS buffers
        size_t w = (size_t)(d > F ? d : F);
        if ((size_t)c->bigram_dim > w) w = c->bigram_dim;
        tr->lt_cap = N * w > (size_t)tr->chunk * c->vocab_size ? N * w : (size_t)tr->chunk * c->vocab_size;
        tr->wbf_off = (size_t *)galloc((size_t)tr->host.n * sizeof(size_t));
        size_t at = 0;
        for (int i = 0; i < tr->host.n; i++) {
            const ParamSpec *s = &tr->host.spec[i];
            tr->wbf_off[i] = s->ndim == 2 ? at : SIZE_MAX;
            if (s->ndim == 2) at += ((size_t)s->rows * s->cols + 127) / 128 * 128;
        }
        mem_class(MEM_WEIGHTS); tr->wbf = dmalloc_bf16(at);
        mem_class(MEM_SCRATCH);
        for (int i = 0; i < 2; i++) tr->lt_in[i] = dmalloc_bf16(tr->lt_cap);
        tr->lt_out = dmalloc_bf16(tr->lt_cap);
        tr->lt_ws = dmalloc_bytes(LT_WORKSPACE);
    }
    muon_alloc(tr);   // Muon's groups and Newton-Schulz buffers (chapter 6)
    mem_class(MEM_SCRATCH);
    void *blas_ws = dmalloc_bytes(CUBLAS_WORKSPACE_BYTES);
    if (g_mem.plan_only) return;
    cublasCheck(cublasCreate(&tr->blas));
    cublasCheck(cublasSetStream(tr->blas, cudaStreamPerThread));   // the stream every launch uses, so that a capture holds the GEMMs
    cublasCheck(cublasSetWorkspace(tr->blas, blas_ws, CUBLAS_WORKSPACE_BYTES));
    cublasCheck(cublasSetMathMode(tr->blas, tr->tc.math_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    if (tr->use_bf16) {
        cublasCheck(cublasLtCreate(&tr->lt));
        tr->plans = (LtPlan *)galloc(LT_MAX_PLANS * sizeof(LtPlan));
        tr->shadow_stale = 1;
    }
}

// memory_plan_print: the bytes trainer_alloc asked for, per class (the cuBLAS workspace among them), and the fit on an H100
// 80GB (81,559 MiB, less 512 MiB for the CUDA context); the last line is one key:value summary for scripts.
static void memory_plan_print(const Trainer *tr) {
    const Config *c = &tr->c;
    int e, dcount, idx[MAX_LAYERS], npos = schedule(c, 0, &e, &dcount, idx), nloop = schedule(c, 1, &e, &dcount, idx), P = npos > nloop ? npos : nloop;
    size_t total = 0, count = 0;
    for (int k = 0; k < MEM_CLASSES; k++) { total += g_mem.bytes[k]; count += g_mem.count[k]; }
    const double MiB = 1048576.0, card = 81559 * MiB, usable = card - 512 * MiB;
    size_t planned = total;   // the cuBLAS workspace is one of the scratch allocations
    printf("memory plan per GPU (PLAN_MEMORY=1; trainer_alloc's sizes, nothing allocated): %d x %d = %d tokens per micro-step "
           "(TRAIN_BATCH_TOKENS %d / 8), %d block positions, %zu parameters\n", tr->B, tr->T, tr->N, tr->tc.train_batch_tokens, P, tr->host.numel);
    printf("  %-48s %6s %16s %12s\n", "class", "allocs", "bytes", "MiB");
    for (int k = 0; k < MEM_CLASSES; k++) {
        printf("  %-48s %6zu %16zu %12.1f\n", MEM_CLASS_NAME[k], g_mem.count[k], g_mem.bytes[k], g_mem.bytes[k] / MiB);
        if (k == MEM_BLOCK_ACTS) printf("  %-48s %6s %16zu %12.1f\n", "  per block position", "", g_mem.bytes[k] / P, g_mem.bytes[k] / P / MiB);
    }
    printf("  %-48s %6zu %16zu %12.1f\n", "allocated by train_golf (dmalloc)", count, total, total / MiB);
    printf("  %-48s %6s %16zu %12.1f\n", "  of which the cuBLAS workspace (cublasSetWorkspace)", "", CUBLAS_WORKSPACE_BYTES, CUBLAS_WORKSPACE_BYTES / MiB);
    printf("  %-48s %6s %16zu %12.1f\n", "planned total", "", planned, planned / MiB);
    printf("  cudaMalloc rounds each allocation up (at most 2 MiB each: at most %.0f MiB more); the CUDA context (~512 MiB) is outside the plan\n",
           count * 2.0);
    int fits = planned <= usable;
    printf("  H100 80GB: %.0f MiB, %.0f MiB usable after the context: %s (%.1f%% of it%s)\n", card / MiB, usable / MiB, fits ? "fits" : "DOES NOT FIT",
           100.0 * planned / usable, fits ? "" : "; lower TRAIN_BATCH_TOKENS or keep fewer activations");
    printf("memory_plan allocated_bytes:%zu workspace_bytes:%zu planned_bytes:%zu usable_bytes:%.0f fits:%d train_batch_tokens:%d train_seq_len:%d "
           "vocab_size:%d\n", total, CUBLAS_WORKSPACE_BYTES, planned, usable, fits, tr->tc.train_batch_tokens, tr->T, c->vocab_size);
}

// PARAM / GRAD: the device weights and gradient behind one of golf_infer.c's named host views (GolfModel's
// tok_emb, layer[l].c_q, ...), found by its offset in the parameter table: PARAM is the tensor's dparam entry (the
// fake-quantized copy while QAT runs), GRAD the same offset in the flat gradient buffer.
static float *param_of(const Trainer *tr, const float *view) {
    size_t off = (size_t)(view - tr->host.params);
    int lo = 0, hi = tr->host.n - 1;
    while (lo < hi) { int mid = (lo + hi + 1) / 2; if (tr->host.spec[mid].offset <= off) lo = mid; else hi = mid - 1; }
    if (tr->host.spec[lo].offset != off) golf_die("internal: a parameter view that starts no tensor (offset %zu)", off);
    return tr->dparam[lo];
}
#define PARAM(view) param_of(tr, (view))
#define GRAD(view) (tr->grads + ((view) - tr->host.params))

// embed_forward: x0 = rmsnorm(SmearGate(tok_emb[tok] + BigramHash)), keeping what the backward needs.
static void embed_forward(Trainer *tr) {
    const Config *c = &tr->c;
    const GolfModel *m = &tr->host;
    int N = tr->N, d = c->model_dim;
    LAUNCH1D(embedding_forward, (size_t)N * d, tr->e, PARAM(m->tok_emb), tr->tok, N, d);
    if (c->bigram_vocab) {
        LAUNCH1D(bigram_index, (size_t)N, tr->bidx, tr->tok, N, tr->T, c->bigram_vocab);
        LAUNCH1D(embedding_forward, (size_t)N * c->bigram_dim, tr->be, PARAM(m->bigram_embed), tr->bidx, N, c->bigram_dim);
        gemm_act(tr, 0, 1, N, d, c->bigram_dim, 1, tr->be, PARAM(m->bigram_proj), tr->bp);
        LAUNCH1D(add_scaled, (size_t)N * d, tr->e, tr->bp, PARAM(m->bigram_scale), (size_t)N * d);
    }
    if (c->smear_gate) LAUNCH_WARPS(smear_forward, N, tr->xn, tr->smear_g, tr->e, PARAM(m->smear_w), PARAM(m->smear_lam), tr->tok, N, tr->T, d);
    LAUNCH_ROWS(rmsnorm_forward<float>, N, tr->x0, tr->r0, c->smear_gate ? tr->xn : tr->e, N, d, 1.0f);
}

// ve_forward (VE_ENABLED): the ValueEmbedding base veb = ve_shared.scale * proj(ve_embed[tok]), once per forward (vee
// the rows, vep their projection; without a projection vep is vee); every listed position adds s_p veb to its v
static const float *ve_proj_out(const Trainer *tr) { return tr->host.ve_proj ? tr->vep : tr->vee; }
static void ve_forward(Trainer *tr) {
    const GolfModel *m = &tr->host;
    int N = tr->N, dv = tr->c.ve_dim, kv = tr->c.num_kv_heads * (tr->c.model_dim / tr->c.num_heads);
    LAUNCH1D(embedding_forward, (size_t)N * dv, tr->vee, PARAM(m->ve_embed), tr->tok, N, dv);
    if (m->ve_proj) gemm_act(tr, 0, 1, N, kv, dv, 1, tr->vee, PARAM(m->ve_proj), tr->vep);
    LAUNCH1D(scale_backward, (size_t)N * kv, tr->veb, ve_proj_out(tr), PARAM(m->ve_scale), N * kv, 1, 0);   // veb = scale vep
}
// ve_backward: from dL/dveb (summed over the listed positions by backward) to ve_shared.scale, proj and the table
// (scatter-add); t1, t2 scratch
static void ve_backward(Trainer *tr, float *t1, float *t2) {
    const GolfModel *m = &tr->host;
    int N = tr->N, dv = tr->c.ve_dim, kv = tr->c.num_kv_heads * (tr->c.model_dim / tr->c.num_heads);
    KERNEL_LAUNCH(dot_accumulate, 256, 256, 0, GRAD(m->ve_scale), tr->dveb, ve_proj_out(tr), (size_t)N * kv);
    cudaCheck(cudaGetLastError());
    LAUNCH1D(scale_backward, (size_t)N * kv, t1, tr->dveb, PARAM(m->ve_scale), N * kv, 1, 0);   // t1 = dvep = scale dveb
    if (m->ve_proj) {
        gemm(tr, 1, 0, kv, dv, N, 1, t1, tr->vee, 1, GRAD(m->ve_proj));
        gemm(tr, 0, 0, N, dv, kv, 1, t1, PARAM(m->ve_proj), 0, t2);                                  // t2 = dvee [N, d_ve]
    }
    LAUNCH1D(embedding_backward, (size_t)N * dv, GRAD(m->ve_embed), m->ve_proj ? t2 : t1, tr->tok, N, dv);
}

// skip_params: decoder skip i's weights and gates (gates NULL without SKIP_GATES); grads = 1: their gradients
static void skip_params(const Trainer *tr, int i, float **w, float **g, int grads) {
    const GolfModel *m = &tr->host;
    size_t o = (size_t)i * tr->c.model_dim;
    *w = (grads ? GRAD(m->skip_weights) : PARAM(m->skip_weights)) + o;
    *g = m->skip_gates ? (grads ? GRAD(m->skip_gates) : PARAM(m->skip_gates)) + o : NULL;
}

// flash_cast: tr->q16, k16, v16 = bf16 of the block's q, k, v (flash attention's inputs)
static void flash_cast(Trainer *tr, const BlockActs *a, int N, int d, int kv) {
    LAUNCH1D(to_bf16, (size_t)N * d, tr->q16, a->q, 1.0f, (size_t)N * d);
    LAUNCH1D(to_bf16, (size_t)N * kv, tr->k16, a->k, 1.0f, (size_t)N * kv);
    LAUNCH1D(to_bf16, (size_t)N * kv, tr->v16, a->v, 1.0f, (size_t)N * kv);
}

// attn_norm: xm = mix(xin, x0) and h1 = rmsnorm(xm) (rstd r1) of position a; FUSE=1: one pass (mix_rmsnorm_forward)
static void attn_norm(Trainer *tr, BlockActs *a, const LayerParams *lp) {
    int N = tr->N, d = tr->c.model_dim;
    if (tr->tc.fuse) { LAUNCH_ROWS(mix_rmsnorm_forward<float>, N, a->xm, a->h1, a->r1, a->xin, tr->x0, PARAM(lp->resid_mix), N, d, 1.0f); return; }
    LAUNCH1D(mix_forward, (size_t)N * d, a->xm, a->xin, tr->x0, PARAM(lp->resid_mix), N, d);
    LAUNCH_ROWS(rmsnorm_forward<float>, N, a->h1, a->r1, a->xm, N, d, 1.0f);
}
// mlp_norm: xa = xm + attn_scale ao (a plain block; a parallel block's MLP reads lane 1, xin1, or with 03-31's lanes
// xa = the residual mix of lane 1 after attention, par_mid_mix) and h2 = rmsnorm of the MLP's input (rstd r2): fp32
// into h2 (ls goes on the GEMM), bf16 into h2b with ls before the rounding; FUSE=1 on a plain block: one pass
// (scale_add_rmsnorm_forward)
template <class T> static void mlp_norm_into(Trainer *tr, BlockActs *a, const LayerParams *lp, int par, T *h2, float s) {
    int N = tr->N, d = tr->c.model_dim;
    if (!par && tr->tc.fuse) { LAUNCH_ROWS(scale_add_rmsnorm_forward<T>, N, a->xa, h2, a->r2, a->xm, PARAM(lp->attn_scale), a->ao, N, d, s); return; }
    const float *in = a->xa;
    if (!par) LAUNCH1D(scale_add_forward, (size_t)N * d, a->xa, a->xm, PARAM(lp->attn_scale), a->ao, N, d);
    else if (tr->c.parallel_form != PARALLEL_0429)
        LAUNCH1D(par_mid_mix, (size_t)N * d, a->xa, a->xin1, a->ao, tr->x0, PARAM(lp->attn_scale), PARAM(lp->resid_mix), PARAM(lp->par_resid),
                 PARAM(lp->par_post), N, d);
    else in = a->xin1;
    LAUNCH_ROWS(rmsnorm_forward<T>, N, h2, a->r2, in, N, d, s);
}
static void mlp_norm(Trainer *tr, BlockActs *a, const LayerParams *lp, int par, float ls) {
    if (tr->use_bf16) mlp_norm_into(tr, a, lp, par, a->h2b, ls);
    else mlp_norm_into(tr, a, lp, par, a->h2, 1.0f);
}

// head_chunks: the head over tr->chunk tokens at a time, so that no [N, V] logits exist. Per chunk [n0, n0 + nc):
// logits[nc, V] = hf[n0:] @ W^T; softcapped CE (loss[n0:], and with grad_scale != 0 the logits replaced by
// dL/dlogits, in the same kernel); then at once GRAD(lm_head) += dlogits^T hf[n0:] and dhf[n0:] = dlogits @ W.
// A token's loss and dlogits are the unchunked ones (per row the same GEMM and kernel); lm_head's gradient sums the
// chunks in order (one GEMM per chunk, beta 1), so its fp32 rounding differs from one GEMM over N by summation order.
template <class TH> static void head_chunks(Trainer *tr, const TH *hf, float grad_scale) {
    const Config *c = &tr->c;
    int N = tr->N, d = c->model_dim, V = c->vocab_size;
    const float *W = PARAM(tr->host.lm_head);
    for (int n0 = 0; n0 < N; n0 += tr->chunk) {
        int nc = N - n0 < tr->chunk ? N - n0 : tr->chunk;
        const TH *h = hf + (size_t)n0 * d;
        gemm_act(tr, 0, 1, nc, V, d, 1, h, W, tr->logits);
        LAUNCH_ROWS(softcap_cross_entropy, nc, tr->logits, tr->loss + n0, tr->tgt + n0, nc, V, c->logit_softcap, grad_scale);
        if (grad_scale == 0.f) continue;
        gemm(tr, 1, 0, V, d, nc, 1, tr->logits, h, 1, GRAD(tr->host.lm_head));
        gemm(tr, 0, 0, nc, d, V, 1, tr->logits, W, 0, tr->dhf + (size_t)n0 * d);
    }
}

// attn_rows: the attention kernels' sequences and length: B of T, or with DOC_ATTENTION one of N (the segments
// bound every query's keys)
static void attn_rows(const Trainer *tr, int *B, int *T) { *B = tr->ds ? 1 : tr->B; *T = tr->ds ? tr->N : tr->T; }

// forward: loss per token into tr->loss; with grad_scale != 0 also the head's gradients: GRAD(lm_head) (added) and
// dL/dhf in tr->dhf, for backward (which must follow before the next forward). DOC_ATTENTION's documents run across
// the micro-batch's sequences when packed (training), else each sequence is apart (evaluation, TTT).
// Runs the schedule of tr->looped; acts[pos] holds virtual position pos (physical layer idx[pos]).
static void forward(Trainer *tr, float grad_scale, int packed) {
    const Config *c = &tr->c;
    int N = tr->N, d = c->model_dim, H = c->num_heads, KV = c->num_kv_heads, hd = d / H, kv = KV * hd, F = c->mlp_hidden;
    int enc, dec, idx[MAX_LAYERS], P = schedule(c, tr->looped, &enc, &dec, idx), ns = num_skips(enc, dec);
    int R = c->rope_dims ? c->rope_dims : hd, AB, AT;
    size_t nd = (size_t)N * d;
    attn_rows(tr, &AB, &AT);
    if (tr->ds) {   // every layer's (and backward's) document segments, from this micro-batch's tokens
        KERNEL_LAUNCH(doc_bounds, 1, DOC_THREADS, 0, tr->ds, tr->de, tr->tok, N, packed ? N : tr->T, tr->T);
        cudaCheck(cudaGetLastError());
    }
    embed_forward(tr);
    if (c->ve_dim) ve_forward(tr);
    int lanes = 1, form = c->parallel_form;   // live residual lanes: 2 inside a run of parallel blocks
    for (int pos = 0; pos < P; pos++) {
        BlockActs *a = &tr->acts[pos];
        int l = idx[pos], par = parallel_at(c, idx, pos);
        const LayerParams *lp = &tr->host.layer[l];
        float ls = ln_scale_of(c, l);
        const float *prev = pos == 0 ? tr->x0 : tr->acts[pos - 1].xout, *prev1 = lanes == 2 ? tr->acts[pos - 1].xout1 : NULL;
        // the block's lanes first (a sequential block merges two into xin1, a parallel one starts lane 1 from the
        // stream), then the skip into lane 0 only (03-31's lanes: into each lane its own, lane 1's from xin1 in place)
        if (!par && lanes == 2) { LAUNCH1D(lane_mean, nd, a->xin1, prev, prev1, nd); prev = a->xin1; lanes = 1; }   // merge
        else if (par) { cudaCheck(cudaMemcpyAsync(a->xin1, lanes == 2 ? prev1 : prev, nd * 4, cudaMemcpyDeviceToDevice)); lanes = 2; }
        int i = pos - enc;   // decoder index
        if (i >= 0 && i < ns) {
            float *w, *g;
            skip_params(tr, i, &w, &g, 0);
            LAUNCH1D(skip_forward, nd, a->xin, prev, tr->acts[enc - 1 - i].sk, w, g, N, d);
            if (par && form != PARALLEL_0429) LAUNCH1D(skip_forward, nd, a->xin1, a->xin1, tr->acts[enc - 1 - i].sk1, w, g, N, d);
        } else cudaCheck(cudaMemcpyAsync(a->xin, prev, nd * 4, cudaMemcpyDeviceToDevice));
        attn_norm(tr, a, lp);
        gemm_act(tr, 0, 1, N, d, d, ls, a->h1, PARAM(lp->c_q), a->qr);   // ls: LN_SCALE's 1/sqrt(l+1) on the norm output
        gemm_act(tr, 0, 1, N, kv, d, ls, a->h1, PARAM(lp->c_k), a->kr);
        gemm_act(tr, 0, 1, N, kv, d, ls, a->h1, PARAM(lp->c_v), a->v);
        int vs = ve_slot(c, pos);
        if (vs >= 0) {   // ValueEmbedding: v += s_p veb (bf16: the sum rounded, autocast's bf16 add; attention and XSA read it)
            LAUNCH1D(add_scaled, (size_t)N * kv, a->v, tr->veb, PARAM(tr->host.ve_layer_scales) + vs, (size_t)N * kv);
            if (tr->use_bf16) LAUNCH1D(round_bf16, (size_t)N * kv, a->v, (size_t)N * kv);
        }
        LAUNCH_ROWS(qk_prep_forward, (size_t)N * H, a->q, a->rq, a->qr, PARAM(lp->q_gain), tr->cosv, tr->sinv, tr->ds, N, tr->T, H, hd, R);
        LAUNCH_ROWS(qk_prep_forward, (size_t)N * KV, a->k, a->rk, a->kr, (const float *)NULL, tr->cosv, tr->sinv, tr->ds, N, tr->T, KV, hd, R);
        if (tr->q16) {   // PRECISION=bf16: the tensor-core kernels on bf16 copies of q, k, v
            flash_cast(tr, a, N, d, kv);
            with_flash_head_dim(hd, [&](auto HDc) {
                KERNEL_LAUNCH(flash_forward<decltype(HDc)::value>, dim3(blocks_for(AT, FA_BR), AB * H), FA_THREADS, 0, a->y, a->lse, tr->q16, tr->k16, tr->v16, tr->ds, AT, H, KV);
            });
        } else {
            if (tr->use_bf16) {   // the SIMT kernels read q and k rounded to bf16, as SDPA under autocast (v is a bf16 GEMM output already)
                LAUNCH1D(round_bf16, (size_t)N * d, a->q, (size_t)N * d);
                LAUNCH1D(round_bf16, (size_t)N * kv, a->k, (size_t)N * kv);
            }
            with_head_dim(hd, [&](auto HDc) {
                KERNEL_LAUNCH(attention_forward<decltype(HDc)::value>, dim3(blocks_for(AT, ATT_ROWS), AB * H), ATT_ROWS, 0, a->y, a->lse, a->q, a->k, a->v, tr->ds, AT, H, KV);
            });
        }
        cudaCheck(cudaGetLastError());
        int xsa = c->xsa_last_n && l >= c->num_layers - c->xsa_last_n;
        if (a->ya != a->y) {   // XSA buffer exists: apply it on the XSA layers, copy elsewhere
            if (xsa) LAUNCH_WARPS(xsa_forward, (size_t)N * H, a->ya, a->y, a->v, N, H, KV, hd);
            else cudaCheck(cudaMemcpyAsync(a->ya, a->y, (size_t)N * d * 4, cudaMemcpyDeviceToDevice));
        }
        // the gate's input is ls h1, its logit scaled by ATTN_OUT_GATE_SCALE: one factor on the dot product
        if (a->sg) LAUNCH_WARPS(attn_gate_forward, (size_t)N * H, a->yx, a->sg, a->ya, a->h1, PARAM(lp->attn_gate), ls * c->attn_gate_scale, N, H, hd, d);
        gemm_act(tr, 0, 1, N, d, d, 1, a->yx, PARAM(lp->proj), a->ao);
        mlp_norm(tr, a, lp, par, ls);
        if (tr->use_bf16) {   // h2 and u in bf16 only; ls applied before h2's rounding
            gemm_bf16_out(tr, 0, 1, N, F, d, a->h2b, PARAM(lp->fc), a->upb);
            LAUNCH1D(relu2_forward<bf16>, (size_t)N * F, a->ub, a->upb, c->mlp_leaky_slope, (size_t)N * F);
            gemm_act(tr, 0, 1, N, d, F, 1, a->ub, PARAM(lp->mlp_proj), a->mo);
        } else {
            gemm_act(tr, 0, 1, N, F, d, ls, a->h2, PARAM(lp->fc), a->up);
            LAUNCH1D(relu2_forward<float>, (size_t)N * F, a->u, a->up, c->mlp_leaky_slope, (size_t)N * F);
            gemm_act(tr, 0, 1, N, d, F, 1, a->u, PARAM(lp->mlp_proj), a->mo);
        }
        if (!par) LAUNCH1D(scale_add_forward, nd, a->xout, a->xa, PARAM(lp->mlp_scale), a->mo, N, d);
        else if (form != PARALLEL_0429)
            LAUNCH1D(par_combine_forward, nd, a->xout, a->xout1, a->xin, a->xin1, a->ao, a->mo, PARAM(lp->attn_scale), PARAM(lp->mlp_scale),
                     PARAM(lp->par_resid), PARAM(lp->par_post), N, d);
        else LAUNCH1D(lane_combine_forward, nd, a->xout, a->xout1, a->xin, a->xin1, a->ao, a->mo, PARAM(lp->attn_scale), PARAM(lp->mlp_scale),
                      PARAM(lp->lane_rho), PARAM(lp->lane_mix), N, d);
        a->sk = a->sk1 = a->xout;
        if (lanes == 2 && form != PARALLEL_0429) a->sk1 = a->xout1;   // 03-31: a skip takes both lanes
        else if (lanes == 2 && pos < enc) { LAUNCH1D(lane_mean, nd, a->skbuf, a->xout, a->xout1, nd); a->sk = a->skbuf; }   // a skip takes the lane mean
    }
    tr->final_in = tr->acts[P - 1].xout;
    if (lanes == 2) { LAUNCH1D(lane_mean, nd, tr->xf, tr->acts[P - 1].xout, tr->acts[P - 1].xout1, nd); tr->final_in = tr->xf; }
    if (tr->use_bf16) {
        LAUNCH_ROWS(rmsnorm_forward<bf16>, N, tr->hfb, tr->rf, tr->final_in, N, d, 1.0f);
        head_chunks(tr, tr->hfb, grad_scale);
    } else {
        LAUNCH_ROWS(rmsnorm_forward<float>, N, tr->hf, tr->rf, tr->final_in, N, d, 1.0f);
        head_chunks(tr, tr->hf, grad_scale);
    }
}

// column_grad: dcol += sum over tokens of a * b (per column)
static void column_grad(float *dcol, const float *a, const float *b, int N, int d) {
    dim3 grid((d + 31) / 32, 64), block(32, 8);
    KERNEL_LAUNCH(column_dot, grid, block, 0, dcol, a, b, N, d);
    cudaCheck(cudaGetLastError());
}

// embed_backward: from dL/dx0 (in dx) to the embedding tables, SmearGate and BigramHash parameters; t1, t2 scratch.
static void embed_backward(Trainer *tr, float *dx, float *t1, float *t2) {
    const Config *c = &tr->c;
    const GolfModel *m = &tr->host;
    int N = tr->N, d = c->model_dim;
    LAUNCH_ROWS(rmsnorm_backward, N, t2, dx, c->smear_gate ? tr->xn : tr->e, tr->r0, N, d, 0);   // t2 = dL/d(the norm's input)
    if (c->smear_gate) {   // t2: dL/dxn -> dL/de
        LAUNCH_WARPS(smear_backward, N, t1, GRAD(m->smear_w), GRAD(m->smear_lam), t2, tr->e, tr->smear_g, PARAM(m->smear_w), PARAM(m->smear_lam),
                     tr->tok, N, tr->T, d);
        cudaCheck(cudaMemcpyAsync(t2, t1, (size_t)N * d * 4, cudaMemcpyDeviceToDevice));
    }
    LAUNCH1D(embedding_backward, (size_t)N * d, GRAD(m->tok_emb), t2, tr->tok, N, d);
    if (c->bigram_vocab) {   // e += scale * bp, bp = be @ proj^T, be = bigram.embed[idx]
        int db = c->bigram_dim;
        KERNEL_LAUNCH(dot_accumulate, 256, 256, 0, GRAD(m->bigram_scale), t2, tr->bp, (size_t)N * d);
        cudaCheck(cudaGetLastError());
        cudaCheck(cudaMemsetAsync(t1, 0, (size_t)N * d * 4));
        LAUNCH1D(add_scaled, (size_t)N * d, t1, t2, PARAM(m->bigram_scale), (size_t)N * d);   // t1 = dbp
        gemm(tr, 1, 0, d, db, N, 1, t1, tr->be, 1, GRAD(m->bigram_proj));
        gemm(tr, 0, 0, N, db, d, 1, t1, PARAM(m->bigram_proj), 0, t2);                        // t2 = dbe [N, db]
        LAUNCH1D(embedding_backward, (size_t)N * db, GRAD(m->bigram_embed), t2, tr->bidx, N, db);
    }
}

// block_recompute (RECOMPUTE=1): xm, h1, xa, h2 (their rstd too) and u of position a again, by forward's own steps
// (attn_norm, mlp_norm, relu2_forward) on the same inputs, so the same bits
static void block_recompute(Trainer *tr, BlockActs *a, const LayerParams *lp, int par, float ls) {
    const Config *c = &tr->c;
    size_t nF = (size_t)tr->N * c->mlp_hidden;
    attn_norm(tr, a, lp);
    mlp_norm(tr, a, lp, par, ls);
    if (tr->use_bf16) LAUNCH1D(relu2_forward<bf16>, nF, a->ub, a->upb, c->mlp_leaky_slope, nF);
    else LAUNCH1D(relu2_forward<float>, nF, a->u, a->up, c->mlp_leaky_slope, nF);
}

// grad_ready (chapter 9): backward's hook: physical layer l's gradients are complete (l < 0: all of them); with
// several ranks it starts the all-reduce of every bucket that is now complete (the accumulation's last micro-step).
static void grad_ready(Trainer *tr, int layer);

// backward: gradients of every parameter ADDED into tr->grads (forward must have run with grad_scale != 0), along
// the same schedule; a physical layer used at several positions gathers the gradients of all of them.
static void backward(Trainer *tr) {
    const Config *c = &tr->c;
    const GolfModel *m = &tr->host;
    int N = tr->N, d = c->model_dim, H = c->num_heads, KV = c->num_kv_heads, hd = d / H, kv = KV * hd, F = c->mlp_hidden;
    int enc, dec, idx[MAX_LAYERS], P = schedule(c, tr->looped, &enc, &dec, idx), ns = num_skips(enc, dec);
    float *dx = tr->scratch[0], *dx0 = tr->scratch[1], *t1 = tr->scratch[2], *t2 = tr->scratch[3], *t3 = tr->scratch[4], *t4 = tr->scratch[5];
    cudaCheck(cudaMemsetAsync(dx0, 0, (size_t)N * d * 4));
    if (c->ve_dim) cudaCheck(cudaMemsetAsync(tr->dveb, 0, (size_t)N * kv * 4));
    // head: forward's head_chunks left dL/dhf in t1 (tr->dhf) and added lm_head's gradient
    if (t1 != tr->dhf) golf_die("internal: dL/dhf is not in backward's first scratch");
    size_t nd = (size_t)N * d;
    float *dx1 = tr->dlane1;   // lane 1's gradient while two lanes are live
    LAUNCH_ROWS(rmsnorm_backward, N, dx, t1, tr->final_in, tr->rf, N, d, 0);
    if (parallel_at(c, idx, P - 1)) {   // the final norm read the lane mean
        LAUNCH1D(scale_inplace, nd, dx, 0.5f, nd);
        cudaCheck(cudaMemcpyAsync(dx1, dx, nd * 4, cudaMemcpyDeviceToDevice));
    }
    int R = c->rope_dims ? c->rope_dims : hd, AB, AT;
    attn_rows(tr, &AB, &AT);
    for (int pos = P - 1; pos >= 0; pos--) {
        BlockActs *a = &tr->acts[pos];
        int l = idx[pos], par = parallel_at(c, idx, pos), lanes_in = pos > 0 && parallel_at(c, idx, pos - 1) ? 2 : 1;
        int p331 = par && c->parallel_form != PARALLEL_0429;   // 03-31's lanes
        const LayerParams *lp = &m->layer[l];
        float ls = ln_scale_of(c, l);
        if (tr->tc.recompute) block_recompute(tr, a, lp, par, ls);
        if (pos < enc && pos >= enc - ns && c->parallel_form != PARALLEL_0429) {   // its skips' gradients, lane by lane
            LAUNCH1D(axpy, nd, dx, tr->skip_grad[pos], 1.0f, nd);
            if (par) LAUNCH1D(axpy, nd, dx1, tr->skip_grad1[pos], 1.0f, nd);
        } else if (pos < enc && pos >= enc - ns) {   // its skip's gradient (halved onto both lanes when it handed on their mean)
            LAUNCH1D(axpy, nd, dx, tr->skip_grad[pos], par ? 0.5f : 1.0f, nd);
            if (par) LAUNCH1D(axpy, nd, dx1, tr->skip_grad[pos], 0.5f, nd);
        }
        // dx = dL/dxout[pos] (and dx1 = dL/dxout1[pos] in a parallel block). gM, gA: the gradients of the MLP and
        // attention branch outputs (mlp_scale mo, attn_scale ao); the MLP's norm input gradient accumulates into mlp_acc.
        float *gM = dx, *gA = dx, *mlp_acc = dx;
        const float *mlp_in = a->xa;
        if (p331) {   // 03-31: the MLP's branch first (dx, dx1 become the gradients of the lanes after attention, m0 and m1);
                      // its input gradient, of the residual mix of m1, goes to lane_g[1] once gM there is used
            gM = mlp_acc = tr->lane_g[1];
            LAUNCH1D(par_mlp_backward, nd, gM, dx, dx1, GRAD(lp->par_resid), GRAD(lp->par_post), a->xin, a->xin1, a->ao, a->mo,
                     PARAM(lp->attn_scale), PARAM(lp->mlp_scale), PARAM(lp->par_resid), PARAM(lp->par_post), N, d);
        } else if (par) {
            gA = tr->lane_g[0]; gM = tr->lane_g[1]; mlp_acc = dx1; mlp_in = a->xin1;
            LAUNCH1D(lane_combine_backward, nd, gA, gM, dx, dx1, GRAD(lp->lane_rho), GRAD(lp->lane_mix), a->xin, a->xin1, a->ao, a->mo,
                     PARAM(lp->attn_scale), PARAM(lp->mlp_scale), PARAM(lp->lane_rho), PARAM(lp->lane_mix), N, d);
        }
        column_grad(GRAD(lp->mlp_scale), gM, a->mo, N, d);
        LAUNCH1D(scale_backward, (size_t)N * d, t1, gM, PARAM(lp->mlp_scale), N, d, 0);                   // dmo
        if (tr->use_bf16) gemm(tr, 1, 0, d, F, N, 1, t1, a->ub, 1, GRAD(lp->mlp_proj));                  // dW mlp.proj
        else gemm(tr, 1, 0, d, F, N, 1, t1, a->u, 1, GRAD(lp->mlp_proj));
        gemm(tr, 0, 0, N, F, d, 1, t1, PARAM(lp->mlp_proj), 0, t2);                                        // du
        if (tr->use_bf16) LAUNCH1D(relu2_backward<bf16>, (size_t)N * F, t2, t2, a->upb, c->mlp_leaky_slope, (size_t)N * F);   // dup
        else LAUNCH1D(relu2_backward<float>, (size_t)N * F, t2, t2, a->up, c->mlp_leaky_slope, (size_t)N * F);
        if (tr->use_bf16) gemm_dw(tr, F, d, N, 1, t2, a->h2b, GRAD(lp->fc));                             // dW fc (ls is in h2b)
        else gemm_dw(tr, F, d, N, ls, t2, a->h2, GRAD(lp->fc));
        gemm(tr, 0, 0, N, d, F, ls, t2, PARAM(lp->fc), 0, t1);                                             // dh2
        LAUNCH_ROWS(rmsnorm_backward, N, mlp_acc, t1, mlp_in, a->r2, N, d, p331 ? 0 : 1);                    // dxa (lane 1)
        if (p331) {   // xa = mix0 m1 + mix1 x0 (m1 again into lane_g[0], free until gA): resid_mix's columns, dx0 and m1's
                      // gradient; then the attention branch, whose output gradient gA goes to lane_g[0]
            float *dxa = tr->lane_g[1], *m1 = tr->lane_g[0];
            LAUNCH1D(par_mid1, nd, m1, a->xin1, a->ao, PARAM(lp->attn_scale), PARAM(lp->par_resid), PARAM(lp->par_post), N, d);
            column_grad(GRAD(lp->resid_mix), dxa, m1, N, d);
            column_grad(GRAD(lp->resid_mix) + d, dxa, tr->x0, N, d);
            LAUNCH1D(mix_backward, nd, dxa, dx0, dxa, PARAM(lp->resid_mix), N, d);
            LAUNCH1D(axpy, nd, dx1, dxa, 1.0f, nd);
            gA = tr->lane_g[0];
            LAUNCH1D(par_attn_backward, nd, gA, dx, dx1, GRAD(lp->par_resid), GRAD(lp->par_post), a->xin, a->xin1, a->ao,
                     PARAM(lp->attn_scale), PARAM(lp->par_resid), PARAM(lp->par_post), N, d);
        }
        column_grad(GRAD(lp->attn_scale), gA, a->ao, N, d);
        LAUNCH1D(scale_backward, (size_t)N * d, t1, gA, PARAM(lp->attn_scale), N, d, 0);                   // dao
        gemm(tr, 1, 0, d, d, N, 1, t1, a->yx, 1, GRAD(lp->proj));                                          // dW proj
        gemm(tr, 0, 0, N, d, d, 1, t1, PARAM(lp->proj), 0, t2);                                            // dyx
        float *dy = t2, *other = t3, *swap;   // dy walks back through the gate and XSA, ping-ponging with t3
        if (a->sg) {   // dyx -> dya; the gate's part of dh1 into gate_dh
            cudaCheck(cudaMemsetAsync(tr->gate_dh, 0, (size_t)N * d * 4));
            LAUNCH_WARPS(attn_gate_backward, (size_t)N * H, other, GRAD(lp->attn_gate), tr->gate_dh, dy, a->ya, a->h1, PARAM(lp->attn_gate), a->sg,
                         ls * c->attn_gate_scale, N, H, hd, d);
            swap = dy; dy = other; other = swap;
        }
        int xsa = c->xsa_last_n && l >= c->num_layers - c->xsa_last_n;
        if (xsa) {   // dya -> dy; XSA's part of dv into dvx
            cudaCheck(cudaMemsetAsync(tr->dvx, 0, (size_t)N * kv * 4));
            LAUNCH_WARPS(xsa_backward, (size_t)N * H, other, tr->dvx, dy, a->y, a->v, N, H, KV, hd);
            swap = dy; dy = other; other = swap;
        }
        if (tr->q16) {   // the bf16 copies again (they hold the last forward layer's), dy's and D
            flash_cast(tr, a, N, d, kv);
            LAUNCH1D(flash_backward_prep, (size_t)N * H, tr->dy16, tr->Dbuf, dy, a->y, N, AT, H, hd);
            with_flash_head_dim(hd, [&](auto HDc) {
                dim3 gq(blocks_for(AT, FA_BR), AB * H), gk(blocks_for(AT, FA_BR), AB * KV);
                KERNEL_LAUNCH(flash_backward_dq<decltype(HDc)::value>, gq, FA_THREADS, 0, t4, tr->dy16, tr->q16, tr->k16, tr->v16, a->lse, tr->Dbuf, tr->ds, AT, H, KV);
                KERNEL_LAUNCH(flash_backward_dkv<decltype(HDc)::value>, gk, FA_THREADS, 0, other, t1, tr->dy16, tr->q16, tr->k16, tr->v16, a->lse, tr->Dbuf, tr->de, AT, H, KV);
            });
        } else
            with_head_dim(hd, [&](auto HDc) {
                dim3 gq(blocks_for(AT, ATT_ROWS), AB * H), gk(blocks_for(AT, ATT_ROWS), AB * KV);
                KERNEL_LAUNCH(attention_backward_dq<decltype(HDc)::value>, gq, ATT_ROWS, 0, t4, tr->Dbuf, dy, a->y, a->q, a->k, a->v, a->lse, tr->ds, AT, H, KV);
                KERNEL_LAUNCH(attention_backward_dkv<decltype(HDc)::value>, gk, ATT_ROWS, 0, other, t1, dy, a->q, a->k, a->v, a->lse, tr->Dbuf, tr->de, AT, H, KV);
            });
        cudaCheck(cudaGetLastError());
        // t4 = dq, other = dk, t1 = dv (all after the q/k preparation); dy's buffer collects dh1 from here on
        float *dh1 = dy;
        if (xsa) LAUNCH1D(axpy, (size_t)N * kv, t1, tr->dvx, 1.0f, (size_t)N * kv);
        int vs = ve_slot(c, pos);
        if (vs >= 0) {   // v = c_v h1 + s_p veb: s_p's gradient sum(dv veb); dL/dveb += s_p dv (ve_backward takes it on)
            KERNEL_LAUNCH(dot_accumulate, 256, 256, 0, GRAD(m->ve_layer_scales) + vs, t1, tr->veb, (size_t)N * kv);
            cudaCheck(cudaGetLastError());
            LAUNCH1D(add_scaled, (size_t)N * kv, tr->dveb, t1, PARAM(m->ve_layer_scales) + vs, (size_t)N * kv);
        }
        gemm_dw(tr, kv, d, N, ls, t1, a->h1, GRAD(lp->c_v));
        gemm(tr, 0, 0, N, d, kv, ls, t1, PARAM(lp->c_v), 0, dh1);                                          // dh1, from v
        LAUNCH_ROWS(qk_prep_backward, (size_t)N * KV, t1, (float *)NULL, other, a->kr, a->rk, (const float *)NULL, tr->cosv, tr->sinv, tr->ds, N, tr->T, KV, hd, R);
        gemm_dw(tr, kv, d, N, ls, t1, a->h1, GRAD(lp->c_k));
        gemm(tr, 0, 0, N, d, kv, ls, t1, PARAM(lp->c_k), 1, dh1);                                          // + from k
        LAUNCH_ROWS(qk_prep_backward, (size_t)N * H, t1, GRAD(lp->q_gain), t4, a->qr, a->rq, PARAM(lp->q_gain), tr->cosv, tr->sinv, tr->ds, N, tr->T, H, hd, R);
        gemm_dw(tr, d, d, N, ls, t1, a->h1, GRAD(lp->c_q));
        gemm(tr, 0, 0, N, d, d, ls, t1, PARAM(lp->c_q), 1, dh1);                                           // + from q
        if (a->sg) LAUNCH1D(axpy, (size_t)N * d, dh1, tr->gate_dh, 1.0f, (size_t)N * d);                       // + from the gate
        // dxm: the residual mix's gradient; a parallel block's lane 0 goes on raw (dx holds its direct part), so its
        // attention part is taken alone (in lane_g[0], free after dao) and added after the mix's backward
        float *dxm = par ? tr->lane_g[0] : dx;
        LAUNCH_ROWS(rmsnorm_backward, N, dxm, dh1, a->xm, a->r1, N, d, par ? 0 : 1);
        column_grad(GRAD(lp->resid_mix), dxm, a->xin, N, d);
        column_grad(GRAD(lp->resid_mix) + d, dxm, tr->x0, N, d);
        LAUNCH1D(mix_backward, (size_t)N * d, dxm, dx0, dxm, PARAM(lp->resid_mix), N, d);                     // dxin
        if (par) LAUNCH1D(axpy, nd, dx, dxm, 1.0f, nd);
        int i = pos - enc;
        if (i >= 0 && i < ns) {   // xin = skip(base, sk[enc-1-i]) into lane 0: base + w sk, or s base + (1 - s) w sk
            int e = enc - 1 - i;   // (03-31's lanes: xin1 = skip(base1, sk1[e]) too, the same weights)
            const float *sk = tr->acts[e].sk, *base = !par && lanes_in == 2 ? a->xin1 : pos == 0 ? tr->x0 : tr->acts[pos - 1].xout;
            const float *base1 = lanes_in == 2 ? tr->acts[pos - 1].xout1 : base;
            float *w, *g, *dw, *dg;
            skip_params(tr, i, &w, &g, 0);
            skip_params(tr, i, &dw, &dg, 1);
            cudaCheck(cudaMemsetAsync(tr->vec[1], 0, (size_t)2 * d * 4));
            column_grad(tr->vec[1], dx, sk, N, d);
            if (g) column_grad(tr->vec[1] + d, dx, base, N, d);
            if (p331) column_grad(tr->vec[1], dx1, tr->acts[e].sk1, N, d);
            if (p331 && g) column_grad(tr->vec[1] + d, dx1, base1, N, d);
            LAUNCH1D(skip_weight_grads, (size_t)d, dw, dg, tr->vec[1], w, g, d);
            LAUNCH1D(skip_backward, nd, dx, tr->skip_grad[e], w, g, N, d);                                    // dx: dL/dbase
            if (p331 && parallel_at(c, idx, e)) LAUNCH1D(skip_backward, nd, dx1, tr->skip_grad1[e], w, g, N, d);   // dx1: dL/dbase1
            else if (p331) {   // one stream fed both lanes' skips: its gradient is the sum
                LAUNCH1D(skip_backward, nd, dx1, t1, w, g, N, d);
                LAUNCH1D(axpy, nd, tr->skip_grad[e], t1, 1.0f, nd);
            }
        }
        if (!par && lanes_in == 2) {   // the block merged two lanes: each gets half
            LAUNCH1D(scale_inplace, nd, dx, 0.5f, nd);
            cudaCheck(cudaMemcpyAsync(dx1, dx, nd * 4, cudaMemcpyDeviceToDevice));
        } else if (par && lanes_in == 1) LAUNCH1D(axpy, nd, dx, dx1, 1.0f, nd);   // the block split one stream in two
        // dx is now dL/dxin[pos] = dL/dxout[pos-1] (or, for pos = 0, part of dL/dx0)
        int used_again = 0;   // --- hook (chapter 9): layer l is complete after its last position in backward's order
        for (int q = 0; q < pos; q++) used_again |= idx[q] == l;
        if (!used_again) grad_ready(tr, l);
    }
    LAUNCH1D(axpy, (size_t)N * d, dx, dx0, 1.0f, (size_t)N * d);                                               // dL/dx0 in total
    embed_backward(tr, dx, t1, t2);
    if (c->ve_dim) ve_backward(tr, t1, t2);
    grad_ready(tr, -1);   // --- hook (chapter 9): everything is complete
}

// ----------------------------------------------------------------------------------------------------
// 6. optimizers: Adam (embeddings, head, control tensors) stepped per tensor; Muon (block matrices) batched by shape
//
//    Muon's groups: the Muon matrices of one shape and class (all c_q and proj of every layer, all c_k and c_v, all
//    fc, all mlp.proj, ...), each in parameter-table order. Per group, momentum (Nesterov), [MuonEq-R,] the
//    normalization and the Newton-Schulz iterations run once on a packed [batch, rows, cols] stack (strided-batched
//    GEMMs: cublasSgemmStridedBatched, or cuBLASLt's batched layouts under PRECISION=bf16), each matrix with the
//    arithmetic it had alone (the same kernels' per-element expressions, the same per-matrix norm reduction, one
//    GEMM per entry). With several ranks, as train_gpt.py's distributed Muon, the work is split: group g's `count`
//    matrices go to the ranks in order, q = ceil(count / world) each (rank r: matrices [r q, min((r + 1) q, count)));
//    each rank updates the momentum of and orthogonalizes only its share, the updates are gathered (ncclAllGather of
//    q matrices per rank: rank-major, so table order) and every rank applies all of them. A matrix's update is then
//    computed by exactly one rank with one process's arithmetic (bit-identical for the same gradient); the momentum
//    of the other ranks' matrices is never read on a rank.

// Newton-Schulz coefficients (a, b, c): the baseline's fixed triple, and Polar Express's per-iteration ones
// (MUON_POLAR_EXPRESS; iterations past the fifth reuse the last).
static const float NS_FIXED[3] = {3.4445f, -4.7750f, 2.0315f};
static const float NS_POLAR[5][3] = {{8.1566f, -22.4833f, 15.8788f}, {4.0429f, -2.8089f, 0.5000f}, {3.8917f, -2.7725f, 0.5061f},
                                     {3.2858f, -2.3681f, 0.4645f}, {2.3465f, -1.7098f, 0.4232f}};

// --- Muon's batched kernels: over a packed stack of `total` = batch * n values (n = rows * cols per matrix); the
// _at kernels address the flat parameter buffers through off[k], the offset of the stack's matrix k there.
// muon_momentum_stack: at the group's offsets buf = mu buf + g, and u = g + mu buf (Nesterov) packed [batch, n]
__global__ void muon_momentum_stack(float *u, float *buf, const float *g, const size_t *off, size_t n, size_t total, float mu) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t o = off[i / n] + i % n;
    buf[o] = mu * buf[o] + g[o]; u[i] = g[o] + mu * buf[o];
}
// out[k] += sum of squares of matrix k (blockIdx.y) of x [batch, n]: sum_squares's reduction per matrix
__global__ void sum_squares_batched(float *out, const float *x, size_t n) {
    x += (size_t)blockIdx.y * n;
    float s = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) s += x[i] * x[i];
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) atomicAdd(out + blockIdx.y, s);
}
// matrix k of x [batch, n] /= sqrt(sumsq[k]) + eps: in float32, or (bf16 values) in bf16: the norm sqrt(sumsq[k])
// rounded, plus eps rounded, the quotient rounded
__global__ void scale_by_inverse_norm_batched(float *x, const float *sumsq, size_t n, size_t total, float eps) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) x[i] /= sqrtf(sumsq[i / n]) + eps;
}
__global__ void scale_by_inverse_norm_bf16_batched(float *x, const float *sumsq, size_t n, size_t total, float eps) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    float nb = __bfloat162float(__float2bfloat16_rn(sqrtf(sumsq[i / n]))), den = __bfloat162float(__float2bfloat16_rn(nb + eps));
    x[i] = __bfloat162float(__float2bfloat16_rn(x[i] / den));
}
// out[k][c, r] = in[k][r, c] for every matrix k of the stack (rows x cols each)
__global__ void transpose_batched(float *out, const float *in, int rows, int cols, size_t total) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t rc = (size_t)rows * cols, k = i / rc, j = i % rc;
    int r = (int)(j / cols), c = (int)(j % cols);
    out[k * rc + (size_t)c * rows + r] = in[i];
}
// p at the offsets *= a (decoupled weight decay, a = 1 - lr wd);  p at the offsets += a x (x packed [batch, n])
__global__ void scale_at(float *p, const size_t *off, size_t n, size_t total, float a) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) p[off[i / n] + i % n] *= a;
}
__global__ void axpy_at(float *p, const float *x, const size_t *off, size_t n, size_t total, float a) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) p[off[i / n] + i % n] += a * x[i];
}

typedef struct {
    int cls, rows, cols, count;   // the class, the shape [rows, cols] and the number of its matrices
    int share, first, mine;       // q = ceil(count / world); this rank's first matrix and how many it computes (<= q)
    int *tensor;                  // [count] their parameter-table indices, in table order
    size_t *doff;                 // [count] device: their offsets in the flat buffers (params, grads, muon_buf)
} MuonGroup;
typedef struct MuonPlan {
    int n;                        // groups
    MuonGroup *g;                 // [n], in the order of their first matrix in the table
    float *norms;                 // [largest count]: per-matrix sums of squares
    float *gathered;              // [world q rows cols] of the largest group: every rank's updates (world > 1; else NULL)
} MuonPlan;

// muon_alloc: the groups of the parameter table, this rank's share of each, and the Newton-Schulz buffers: ns[0..4]
// (and nsb[0..3] under PRECISION=bf16) hold the largest stack a rank computes, [q, rows, cols] (q = count for one
// process; A = X X^T [q, r, r] fits as r = min(rows, cols)). Called by trainer_alloc (counted in the memory plan).
static void muon_alloc(Trainer *tr) {
    const GolfModel *m = &tr->host;
    int world = tr->world > 0 ? tr->world : 1, rank = tr->rank;
    MuonPlan *P = (MuonPlan *)galloc(sizeof(MuonPlan));
    memset(P, 0, sizeof(*P));
    P->g = (MuonGroup *)galloc((size_t)m->n * sizeof(MuonGroup));
    for (int i = 0; i < m->n; i++) {
        const ParamSpec *s = &m->spec[i];
        if (class_optimizer(s->cls) != OPTIM_MUON) continue;
        int k = 0;
        while (k < P->n && !(P->g[k].cls == s->cls && P->g[k].rows == s->rows && P->g[k].cols == s->cols)) k++;
        MuonGroup *g = &P->g[k];
        if (k == P->n) {
            memset(g, 0, sizeof(*g));
            g->cls = s->cls; g->rows = s->rows; g->cols = s->cols;
            g->tensor = (int *)galloc((size_t)m->n * sizeof(int));
            P->n++;
        }
        g->tensor[g->count++] = i;
    }
    size_t nsn = 1, gath = 1;
    int cmax = 1;
    for (int k = 0; k < P->n; k++) {
        MuonGroup *g = &P->g[k];
        size_t n = (size_t)g->rows * g->cols;
        g->share = (g->count + world - 1) / world;
        g->first = rank * g->share < g->count ? rank * g->share : g->count;
        g->mine = g->count - g->first < g->share ? g->count - g->first : g->share;
        if ((size_t)g->share * n > nsn) nsn = (size_t)g->share * n;
        if ((size_t)world * g->share * n > gath) gath = (size_t)world * g->share * n;
        if (g->count > cmax) cmax = g->count;
    }
    mem_class(MEM_NS);
    for (int i = 0; i < 5; i++) tr->ns[i] = dmalloc(nsn);
    if (tr->use_bf16)
        for (int i = 0; i < 4; i++) tr->nsb[i] = dmalloc_bf16(nsn);
    P->gathered = world > 1 ? dmalloc(gath) : NULL;
    mem_class(MEM_SMALL);
    P->norms = dmalloc(cmax);
    for (int k = 0; k < P->n; k++) {
        MuonGroup *g = &P->g[k];
        g->doff = (size_t *)dmalloc_bytes((size_t)g->count * sizeof(size_t));
        size_t *h = (size_t *)galloc((size_t)g->count * sizeof(size_t));
        for (int j = 0; j < g->count; j++) h[j] = m->spec[g->tensor[j]].offset;
        if (!g_mem.plan_only) cudaCheck(cudaMemcpy(g->doff, h, (size_t)g->count * sizeof(size_t), cudaMemcpyHostToDevice));
        free(h);
    }
    tr->muon = P;
}

// gemm_batched: gemm (PRECISION=fp32) on `batch` packed entries: entry i of A at A + i M K, of B at B + i K N, of C
// at C + i M N; one cublasSgemmStridedBatched.
static void gemm_batched(Trainer *tr, int ta, int tb, int M, int N, int K, float alpha, const float *A, const float *B, float beta, float *C, int batch) {
    cublasCheck(cublasSgemmStridedBatched(tr->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, tb ? K : N,
                                          (long long)K * N, A, ta ? M : K, (long long)M * K, &beta, C, N, (long long)M * N, batch));
}

// newton_schulz: X [batch, rows, cols] (rows <= cols, in ns[0]) <- the quintic Newton-Schulz iteration on every
// matrix, `steps` times: A = X X^T, B = b A + c A A, X = a X + B X.
static float *newton_schulz(Trainer *tr, int rows, int cols, int steps, int batch) {
    float *X = tr->ns[0], *A = tr->ns[1], *Bm = tr->ns[2], *Xn = tr->ns[3];
    size_t na = (size_t)batch * rows * rows, nx = (size_t)batch * rows * cols;
    for (int s = 0; s < steps; s++) {
        const float *k = tr->tc.muon_polar_express ? NS_POLAR[s < 4 ? s : 4] : NS_FIXED;
        gemm_batched(tr, 0, 1, rows, rows, cols, 1, X, X, 0, A, batch);             // A = X X^T   [batch, rows, rows]
        cudaCheck(cudaMemcpyAsync(Bm, A, na * 4, cudaMemcpyDeviceToDevice));
        gemm_batched(tr, 0, 0, rows, rows, rows, k[2], A, A, k[1], Bm, batch);      // B = b A + c A A
        cudaCheck(cudaMemcpyAsync(Xn, X, nx * 4, cudaMemcpyDeviceToDevice));
        gemm_batched(tr, 0, 0, rows, cols, rows, 1, Bm, X, k[0], Xn, batch);        // X = a X + B X   [batch, rows, cols]
        float *t = X; X = Xn; Xn = t;
    }
    tr->ns[0] = X; tr->ns[3] = Xn;
    return X;
}
// newton_schulz_bf16 (PRECISION=bf16): the same iteration as train_gpt.py runs it, X in bf16, every product on bf16
// operands with float32 accumulation rounded to bf16, every elementwise step rounded to bf16 (test/reference.py's
// zeropower_via_newtonschulz5 on the CPU): A = X X^T, B = b A + c (A A), X = a X + B X; each GEMM one batched
// cuBLASLt matmul over the stack. X in ns[0] (float32 holding bf16 values) in and out.
static float *newton_schulz_bf16(Trainer *tr, int rows, int cols, int steps, int batch) {
    bf16 *X = tr->nsb[0], *A = tr->nsb[1], *Bm = tr->nsb[2], *BX = tr->nsb[3];
    size_t nx = (size_t)batch * rows * cols, na = (size_t)batch * rows * rows;
    LAUNCH1D(to_bf16, nx, X, tr->ns[0], 1.0f, nx);
    for (int s = 0; s < steps; s++) {
        const float *k = tr->tc.muon_polar_express ? NS_POLAR[s < 4 ? s : 4] : NS_FIXED;
        lt_gemm(tr, 0, 1, rows, rows, cols, 1, X, X, 0, A, CUDA_R_16BF, batch);     // A = X X^T      [batch, rows, rows]
        lt_gemm(tr, 0, 0, rows, rows, rows, 1, A, A, 0, Bm, CUDA_R_16BF, batch);    // A A
        LAUNCH1D(ns_combine_bf16, na, Bm, A, Bm, k[1], k[2], na);                    // B = b A + c A A
        lt_gemm(tr, 0, 0, rows, cols, rows, 1, Bm, X, 0, BX, CUDA_R_16BF, batch);   // B X            [batch, rows, cols]
        LAUNCH1D(ns_combine_bf16, nx, X, X, BX, k[0], 1.0f, nx);                     // X = a X + B X
    }
    LAUNCH1D(widen_bf16, nx, tr->ns[0], X, nx);
    return tr->ns[0];
}

static void muon_all_gather(const float *send, float *recv, size_t count);   // chapter 9

// muon_group_step: one group: this rank's share gets momentum, [MuonEq-R row normalization,] normalization and
// orthogonalization (on the transposes when rows > cols); with several ranks the updates are gathered; then every
// matrix of the group gets [decoupled weight decay p *= 1 - lr wd,] and p -= lr * sqrt(max(1, rows/cols)) * X.
// PRECISION=bf16 as train_gpt.py: the update rounded to bf16 before the normalization, normalized and orthogonalized
// in bf16, scaled in bf16 (p -= lr * bf16(scale X)); momentum and p stay float32.
static void muon_group_step(Trainer *tr, const MuonGroup *g, float lr, float mu) {
    const TrainConfig *c = &tr->tc;
    int b = g->mine, b16 = tr->use_bf16, R = g->rows, C = g->cols;
    size_t n = (size_t)R * C, nb = (size_t)b * n, nall = (size_t)g->count * n;
    float *u = tr->ns[4], *X = tr->ns[0], *norms = tr->muon->norms;
    float scale = sqrtf(fmaxf(1.0f, (float)R / (float)C));
    if (b > 0) {
        LAUNCH1D(muon_momentum_stack, nb, u, tr->muon_buf, tr->grads, g->doff + g->first, n, nb, mu);     // u [b, R, C]
        if (c->muon_eq_r) LAUNCH_WARPS(row_normalize, (size_t)b * R, u, b * R, C);
        if (b16) LAUNCH1D(round_bf16, nb, u, nb);
        cudaCheck(cudaMemsetAsync(norms, 0, (size_t)b * 4));
        KERNEL_LAUNCH(sum_squares_batched, dim3(256, b), 256, 0, norms, u, n);
        cudaCheck(cudaGetLastError());
        if (b16) LAUNCH1D(scale_by_inverse_norm_bf16_batched, nb, u, norms, n, nb, 1e-7f);
        else LAUNCH1D(scale_by_inverse_norm_batched, nb, u, norms, n, nb, 1e-7f);
        int transposed = R > C, r = transposed ? C : R, cc = transposed ? R : C;
        if (transposed) LAUNCH1D(transpose_batched, nb, tr->ns[0], u, R, C, nb);                        // [b, C, R]
        else cudaCheck(cudaMemcpyAsync(tr->ns[0], u, nb * 4, cudaMemcpyDeviceToDevice));
        X = b16 ? newton_schulz_bf16(tr, r, cc, c->muon_backend_steps, b) : newton_schulz(tr, r, cc, c->muon_backend_steps, b);
        if (transposed) { LAUNCH1D(transpose_batched, nb, u, X, r, cc, nb); X = u; }                     // [b, R, C]
        if (b16 && scale != 1.0f) { LAUNCH1D(scale_inplace, nb, X, scale, nb); LAUNCH1D(round_bf16, nb, X, nb); }
    }
    const float *upd = X;
    if (tr->world > 1) {   // every rank's q updates (X holds at least q matrices; past `mine` they are never applied)
        muon_all_gather(X, tr->muon->gathered, (size_t)g->share * n);
        upd = tr->muon->gathered;
    }
    if (c->muon_wd > 0) LAUNCH1D(scale_at, nall, tr->params, g->doff, n, nall, (float)(1.0 - lr * c->muon_wd));
    LAUNCH1D(axpy_at, nall, tr->params, upd, g->doff, n, nall, b16 ? -lr : -lr * scale);
}

// train_cap_seconds: the training wallclock cap: MAX_WALLCLOCK_SECONDS less the GPTQ export's reserve (0: no cap).
static double train_cap_seconds(const TrainConfig *c) { return c->max_wallclock_seconds > 0 ? c->max_wallclock_seconds - c->gptq_reserve_seconds : 0; }

// training_fraction: how far training is (the time base of WARMDOWN_FRAC and LOOP_START_FRAC): elapsed time over
// the training cap when there is one, else step / ITERATIONS; in [0, 1].
static double training_fraction(const TrainConfig *c, int step, double elapsed_ms) {
    double cap = train_cap_seconds(c);
    double f = cap > 0 ? elapsed_ms / (1000.0 * cap) : (double)step / (c->iterations > 1 ? c->iterations : 1);
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

// warmdown_mul: train_gpt.py's warmdown (by iterations without a wallclock cap, else by the time left), or with
// WARMDOWN_FRAC > 0 over that last fraction of training.
static double warmdown_mul(const TrainConfig *c, int step, double elapsed_ms) {
    if (c->warmdown_frac > 0) { double v = (1.0 - training_fraction(c, step, elapsed_ms)) / c->warmdown_frac; return v < 1 ? v : 1; }
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

// lr_mul: the LR multiplier of every class: the warmdown, never below MIN_LR_FRAC.
static double lr_mul(const TrainConfig *c, int step, double elapsed_ms) {
    double v = warmdown_mul(c, step, elapsed_ms);
    return v > c->min_lr_frac ? v : c->min_lr_frac;
}

// qat_active: QAT=1 and training_fraction >= QAT_START_FRAC (test/reference.py's qat_active)
static int qat_active(const TrainConfig *c, int step, double elapsed_ms) { return c->qat && training_fraction(c, step, elapsed_ms) >= c->qat_start_frac; }

// muon_momentum_at: linear warmup from MUON_MOMENTUM_WARMUP_START to MUON_MOMENTUM
static double muon_momentum_at(const TrainConfig *c, int step) {
    double frac = c->muon_momentum_warmup_steps > 0 ? (double)step / c->muon_momentum_warmup_steps : 1.0;
    if (frac > 1) frac = 1;
    return (1 - frac) * c->muon_momentum_warmup_start + frac * c->muon_momentum;
}

// grad_sumsq: the gradient's sum of squares into tr->norm[0] (deterministic: the same bits on every rank)
static void grad_sumsq(Trainer *tr) {
    KERNEL_LAUNCH(sum_squares_blocks, NORM_BLOCKS, 256, 0, tr->norm + 1, tr->grads, tr->host.numel);
    cudaCheck(cudaGetLastError());
    KERNEL_LAUNCH(sum_partials, 1, 32, 0, tr->norm, tr->norm + 1, NORM_BLOCKS);
    cudaCheck(cudaGetLastError());
}

// optimizer_step: every tensor by its class's optimizer and LR times lr_scale (Adam per tensor, Muon per group);
// adam_t counts Adam steps. GRAD_CLIP_NORM reads grad_sumsq's tr->norm[0] (computed before).
static void optimizer_step(Trainer *tr, double lr_scale, double mu, int adam_t) {
    const TrainConfig *c = &tr->tc;
    if (c->grad_clip_norm > 0) LAUNCH1D(clip_scale, tr->host.numel, tr->grads, tr->norm, (float)c->grad_clip_norm, tr->host.numel);
    float bc1 = (float)(1 - pow(c->beta1, adam_t)), bc2 = (float)(1 - pow(c->beta2, adam_t));
    for (int i = 0; i < tr->host.n; i++) {
        const ParamSpec *s = &tr->host.spec[i];
        size_t n = (size_t)s->rows * s->cols;
        float lr = (float)(class_lr(c, s->cls) * lr_scale);
        if (class_optimizer(s->cls) == OPTIM_MUON) {   // stepped by its group below, in the master weights
            if (tr->dparam[i] != tr->params + s->offset) golf_die("internal: Muon steps the master weights (QAT's copy is still in use)");
            continue;
        }
        if (c->adam_wd > 0) LAUNCH1D(scale_inplace, n, tr->dparam[i], (float)(1.0 - lr * c->adam_wd), n);
        LAUNCH1D(adam_update, n, tr->dparam[i], tr->grads + s->offset, tr->adam_m + s->offset, tr->adam_v + s->offset, n, lr, (float)c->beta1,
                      (float)c->beta2, (float)c->adam_eps, bc1, bc2);
    }
    for (int k = 0; k < tr->muon->n; k++) {
        const MuonGroup *g = &tr->muon->g[k];
        muon_group_step(tr, g, (float)(class_lr(c, g->cls) * lr_scale), (float)mu);
    }
    params_changed(tr);
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
            KERNEL_LAUNCH(fake_quant_rows, s->rows, 256, 0, tr->qparams + s->offset, tr->params + s->offset, s->cols, qmax, scheme == SCHEME_TERNARY ? o.group : 0);
            cudaCheck(cudaGetLastError());
        }
        tr->dparam[i] = (on ? tr->qparams : tr->params) + s->offset;
    }
    params_changed(tr);
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

enum { DIST_SINGLE, DIST_MPI, DIST_ENV };   // how the ranks were started (section 9)
enum { RED_SUM, RED_MAX };
typedef struct { int rank, world, local_rank, mode, *peer; } Dist;   // peer: an env launch's sockets (section 9)
static void all_reduce_doubles(const Dist *dd, double *v, int n);

static void upload_tokens(Trainer *tr, const int32_t *x, const int32_t *y) {
    cudaCheck(cudaMemcpy(tr->tok, x, (size_t)tr->N * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(tr->tgt, y, (size_t)tr->N * sizeof(int), cudaMemcpyHostToDevice));
}

// score_windows: add the NLL, target count and bytes of windows [w0, w1) (tokens val[start, start + T], scoring
// positions from[w]..T-1) into sums, in batches of tr->B windows (short last batches padded and not counted).
// eval_progress: a line on stderr (rank 0) at most every 10 s of an evaluation: windows scored of this rank's share.
static struct { double t0, last; size_t done, total; } g_eval;
static void eval_progress(size_t n) {
    g_eval.done += n;
    double now = wall_ms();
    if (!g_master || now - g_eval.last < 10000 || g_eval.done >= g_eval.total) return;
    g_eval.last = now;
    double s = (now - g_eval.t0) / 1000;
    fprintf(stderr, "eval: %zu/%zu windows (%.0f%%) in %.0fs, about %.0fs left\n", g_eval.done, g_eval.total, 100.0 * g_eval.done / g_eval.total, s,
            s * (g_eval.total - g_eval.done) / g_eval.done);
}

static void score_windows(Trainer *tr, const int32_t *val, const size_t *start, const int *from, size_t w0, size_t w1, const ByteLut *lut, double *sums) {
    int T = tr->T;
    float *loss = (float *)galloc((size_t)tr->N * sizeof(float));
    int32_t *x = (int32_t *)galloc((size_t)tr->N * 4), *y = (int32_t *)galloc((size_t)tr->N * 4);
    for (size_t w = w0; w < w1; w += tr->B) {
        size_t nb = w1 - w < (size_t)tr->B ? w1 - w : (size_t)tr->B;
        for (size_t k = 0; k < (size_t)tr->N; k++) {
            size_t b = k / T, src = b < nb ? start[w + b] + k % T : 0;
            x[k] = val[src]; y[k] = val[src + 1];
        }
        upload_tokens(tr, x, y);
        forward(tr, 0.0f, 0);
        cudaCheck(cudaMemcpy(loss, tr->loss, (size_t)tr->N * sizeof(float), cudaMemcpyDeviceToHost));
        for (size_t k = 0; k < nb * T; k++) {
            if ((int)(k % T) < from[w + k / T]) continue;   // scored by an earlier window
            sums[0] += loss[k];
            sums[1] += 1;
            sums[2] += target_bytes(lut, val, start[w + k / T] + k % T + 1);
        }
        eval_progress(nb);
    }
    free(loss); free(x); free(y);
}

// ttt_train_chunk: TTT_STEPS plain SGD steps (lr TTT_LR, every parameter), each on the mean loss of the chunk's
// sequences val[c0 + jT, c0 + (j+1)T] (targets one later), the ranks splitting the sequences and summing gradients.
static void all_reduce_grads(Trainer *tr, const Dist *dd);
static void ttt_train_chunk(Trainer *tr, const Dist *dd, const int32_t *val, size_t c0, size_t nseq) {
    int T = tr->T;
    size_t s0 = nseq * dd->rank / dd->world, s1 = nseq * (dd->rank + 1) / dd->world;
    int32_t *x = (int32_t *)galloc((size_t)tr->N * 4), *y = (int32_t *)galloc((size_t)tr->N * 4);
    float grad_scale = 1.0f / (float)(nseq * T);
    for (int step = 0; step < tr->tc.ttt_steps; step++) {
        cudaCheck(cudaMemsetAsync(tr->grads, 0, tr->host.numel * 4));
        for (size_t s = s0; s < s1; s += tr->B) {
            size_t nb = s1 - s < (size_t)tr->B ? s1 - s : (size_t)tr->B;
            for (size_t k = 0; k < (size_t)tr->N; k++) {
                size_t b = k / T, src = c0 + (s + b) * T + k % T;
                x[k] = b < nb ? val[src] : 0;
                y[k] = b < nb ? val[src + 1] : -1;   // padding rows carry no loss
            }
            upload_tokens(tr, x, y);
            forward(tr, grad_scale, 0);
            backward(tr);
        }
        all_reduce_grads(tr, dd);
        LAUNCH1D(axpy, tr->host.numel, tr->params, tr->grads, -(float)tr->tc.ttt_lr, tr->host.numel);
        params_changed(tr);
    }
    free(x); free(y);
}

// evaluate_val: golf_infer.c's eval_windows (EVAL_STRIDE; 0 = train_gpt.py's non-overlapping sequences), each
// rank scoring its share. With TTT_CHUNK_TOKENS = C > 0, legal score-first test-time training (test/reference.py's
// evaluate_ttt): targets are cut into chunks of C; the windows whose first scored target lies in chunk k are scored
// with the current weights, then (except after the last chunk) the weights train on chunk k; so every target is
// scored before any weight has seen it (only when ttt is set: the final eval). The loop schedule runs when there is
// one. Changes the weights under TTT.
static void evaluate_val(Trainer *tr, const Dist *dd, const int32_t *val, size_t nval, const ByteLut *lut, int ttt, double *loss_out, double *bpb_out) {
    int T = tr->T;
    size_t targets = nval - 1, nw = eval_windows(targets, T, tr->tc.eval_stride, NULL, NULL), C = ttt ? (size_t)tr->tc.ttt_chunk_tokens : 0;
    int was_looped = tr->looped;
    tr->looped = tr->c.loop_enc > 0;   // eval always runs the loop schedule when there is one
    size_t *start = (size_t *)galloc(nw * sizeof(size_t));
    int *from = (int *)galloc(nw * sizeof(int));
    eval_windows(targets, T, tr->tc.eval_stride, start, from);
    g_eval.t0 = g_eval.last = wall_ms();
    g_eval.done = 0;
    g_eval.total = nw * (dd->rank + 1) / dd->world - nw * dd->rank / dd->world;
    double sums[3] = {0, 0, 0};   // nll, tokens, bytes
    if (!C) score_windows(tr, val, start, from, nw * dd->rank / dd->world, nw * (dd->rank + 1) / dd->world, lut, sums);
    else
        for (size_t k = 0, w = 0; w < nw; k++) {   // windows come in the order of their first scored target
            size_t e = w;
            while (e < nw && (start[e] + (size_t)from[e]) / C == k) e++;
            score_windows(tr, val, start, from, w + (e - w) * dd->rank / dd->world, w + (e - w) * (dd->rank + 1) / dd->world, lut, sums);
            w = e;
            if ((k + 1) * C < targets) ttt_train_chunk(tr, dd, val, k * C, C / T);
        }
    all_reduce_doubles(dd, sums, 3);
    *loss_out = sums[0] / sums[1];
    *bpb_out = *loss_out / log(2.0) * sums[1] / sums[2];
    free(start); free(from);
    tr->looped = was_looped;
}

// ----------------------------------------------------------------------------------------------------
// 9. multi-GPU: who the ranks are, one NCCL communicator (the gradient buckets, Muon's gather), host-side reductions
//
//    The launch is decided once, in dist_init: started by mpirun (Open MPI, MPICH, PMIx set their variables):
//    MPI's rank and size, the local rank from MPI's shared-memory split, the NCCL id broadcast over MPI and host
//    reductions with MPI_Allreduce. Started torchrun-style (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
//    MASTER_PORT in the environment, no mpirun): those values, and a TCP star through rank 0:
//      rank 0 listens on MASTER_PORT (all IPv4 addresses); every other rank connects to MASTER_ADDR:MASTER_PORT
//      and sends a hello of four little-endian uint32 {DIST_MAGIC, rank, world, local_rank}; once all world - 1
//      hellos are in and valid, rank 0 sends each the id bytes. The connections stay open: a reduction is every
//      rank r > 0 sending its n doubles (host byte order: all ranks run the same binary on the same
//      architecture), rank 0 combining them in rank order and sending the result back (so every rank gets the
//      same bits). Both sides give up after DIST_TIMEOUT seconds at the start, naming what is missing.
//      Under torchrun, TORCHELASTIC_USE_AGENT_STORE=True says torchrun's agent already serves its own store on
//      MASTER_PORT: the star then uses MASTER_PORT + 1 (dist_port).
//    Otherwise one process.

#ifdef USE_NCCL
static ncclComm_t g_nccl;
#endif
static const char *DIST_MODE_NAME[] = {"single", "mpirun", "env"};
static const uint32_t DIST_MAGIC = 0x676f6c66u;   // "golf"

// env_int: the integer in environment variable name (must be in lo..hi) into *out; 0 when unset; dies on bad values.
static int env_int(const char *name, int *out, long lo, long hi) {
    const char *v = getenv(name);
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        golf_die("environment %s='%s': not an integer in %ld..%ld\n  hint: torchrun-style launches set RANK, WORLD_SIZE, LOCAL_RANK, "
                 "MASTER_ADDR and MASTER_PORT for every process", name, v, lo, hi);
    *out = (int)x;
    return 1;
}

// torchrun_holds_port: 1 when torchrun's agent serves its store on MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True).
static int torchrun_holds_port(void) {
    const char *v = getenv("TORCHELASTIC_USE_AGENT_STORE");
    return v && strcmp(v, "True") == 0;
}

// dist_port: the star's TCP port: MASTER_PORT, + 1 when torchrun's agent holds MASTER_PORT; 0 when unset; dies on bad values.
static int dist_port(void) {
    int port = 0, agent = torchrun_holds_port();
    if (!env_int("MASTER_PORT", &port, 1, agent ? 65534 : 65535)) return 0;
    return port + agent;
}

// dist_init: this process's rank, world size and local rank (the one place that decides them; no network yet):
// mpirun's (when built with MPI), else torchrun-style variables', else one process.
static Dist dist_init(int *argc, char ***argv) {
    Dist dd = {0, 1, 0, DIST_SINGLE, NULL};
    int by_env = getenv("RANK") || getenv("WORLD_SIZE") || getenv("LOCAL_RANK");
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK")) {
#ifdef USE_MPI
        mpiCheck(MPI_Init(argc, argv));
        mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &dd.rank));
        mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &dd.world));
        MPI_Comm local;   // the ranks on this host share its GPUs
        mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, dd.rank, MPI_INFO_NULL, &local));
        mpiCheck(MPI_Comm_rank(local, &dd.local_rank));
        mpiCheck(MPI_Comm_free(&local));
        dd.mode = DIST_MPI;
        return dd;
#else
        if (!by_env)
            golf_die("started by mpirun, but this build has no MPI\n  hint: install libopenmpi-dev and rebuild (make prints what it found), "
                     "or launch torchrun-style with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT");
#endif
    }
    (void)argc; (void)argv;
    if (!by_env) return dd;
    const char *need[3] = {"RANK", "WORLD_SIZE", "LOCAL_RANK"};
    int have = 0;
    char missing[64] = "";
    for (int i = 0; i < 3; i++) {
        if (getenv(need[i])) have++;
        else snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s", need[i]);
    }
    if (have < 3) golf_die("environment: RANK, WORLD_SIZE and LOCAL_RANK go together, but%s %s not set\n  hint: a torchrun-style launch "
                           "sets all three (and MASTER_ADDR, MASTER_PORT) for every process", missing, have == 2 ? "is" : "are");
    env_int("WORLD_SIZE", &dd.world, 1, 65536);
    env_int("RANK", &dd.rank, 0, 65535);
    env_int("LOCAL_RANK", &dd.local_rank, 0, 65535);
    if (dd.rank >= dd.world) golf_die("environment RANK=%d: must be below WORLD_SIZE=%d", dd.rank, dd.world);
    int lw;
    if (env_int("LOCAL_WORLD_SIZE", &lw, 1, 65536) && dd.local_rank >= lw)
        golf_die("environment LOCAL_RANK=%d: must be below LOCAL_WORLD_SIZE=%d", dd.local_rank, lw);
    if (dd.world > 1) {
        if (!getenv("MASTER_ADDR") || !getenv("MASTER_ADDR")[0])
            golf_die("environment: WORLD_SIZE=%d but MASTER_ADDR is not set\n  hint: MASTER_ADDR is rank 0's host (IPv4 address or name), "
                     "MASTER_PORT a free TCP port on it", dd.world);
        if (!dist_port())
            golf_die("environment: WORLD_SIZE=%d but MASTER_PORT is not set\n  hint: a free TCP port on rank 0's host, e.g. 29500", dd.world);
    }
    dd.mode = DIST_ENV;
    return dd;
}

// sock_io: send (out = 1) or receive exactly n bytes before wall_ms() reaches deadline (< 0: none); NULL or the problem.
static const char *sock_io(int fd, void *buf, size_t n, int out, double deadline) {
    uint8_t *p = (uint8_t *)buf;
    while (n) {
        if (deadline >= 0) {
            double left = deadline - wall_ms();
            struct pollfd pf = {fd, (short)(out ? POLLOUT : POLLIN), 0};
            int r = left > 0 ? poll(&pf, 1, (int)left + 1) : 0;
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return strerror(errno);
            if (r == 0) return "timed out";
        }
        ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return strerror(errno);
        if (k == 0) return "the connection was closed";
        p += k;
        n -= (size_t)k;
    }
    return NULL;
}

// sock_connect: a TCP connection to addr:port, retried until deadline (rank 0 may start later); -1 and *why on failure.
static int sock_connect(const char *addr, int port, double deadline, char *why, size_t nwhy) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int g = getaddrinfo(addr, ps, &hints, &res);
    if (g != 0) { snprintf(why, nwhy, "MASTER_ADDR '%s' does not resolve: %s", addr, gai_strerror(g)); return -1; }
    snprintf(why, nwhy, "timed out");
    int fd = -1;
    for (;;) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) { snprintf(why, nwhy, "socket: %s", strerror(errno)); break; }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        int r = connect(fd, res->ai_addr, res->ai_addrlen), err = r == 0 ? 0 : errno;
        if (err == EINPROGRESS) {   // wait for the handshake, at most 1 s per try
            struct pollfd pf = {fd, POLLOUT, 0};
            double left = deadline - wall_ms();
            if (poll(&pf, 1, left < 1000 ? (left > 0 ? (int)left : 0) : 1000) == 1) {
                socklen_t len = sizeof(err);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            } else err = ETIMEDOUT;
        }
        if (err == 0) { fcntl(fd, F_SETFL, 0); break; }
        snprintf(why, nwhy, "%s", strerror(err));
        close(fd);
        fd = -1;
        if (wall_ms() + 100 > deadline) break;
        usleep(100 * 1000);
    }
    freeaddrinfo(res);
    if (fd >= 0) { int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); }
    return fd;
}

// sock_listen: a TCP listener on port (0: a free one) of every IPv4 address, its port in *bound; -1 (errno set) on failure.
static int sock_listen(int port, int *bound) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    sa.sin_port = htons((uint16_t)port);
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 256) != 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

// dist_hello: rank r's hello on fd: four little-endian uint32 {magic, rank, world, local_rank}; NULL or the problem.
static const char *dist_hello(const Dist *dd, int fd, uint32_t magic, double deadline) {
    uint8_t h[16];
    uint32_t v[4] = {magic, (uint32_t)dd->rank, (uint32_t)dd->world, (uint32_t)dd->local_rank};
    for (int k = 0; k < 16; k++) h[k] = (uint8_t)(v[k / 4] >> (8 * (k % 4)));
    return sock_io(fd, h, sizeof(h), 1, deadline);
}

// dist_accept: rank 0's side of a star: every other rank's connection to listener lfd (where: "port N", for the
// messages), its hello checked against magic, in fd[rank]; closes lfd; dies naming what is wrong.
static void dist_accept(const Dist *dd, int lfd, uint32_t magic, int *fd, const char *where, double deadline, double timeout_s) {
    int one = 1;
    for (int got = 0; got < dd->world - 1;) {
        struct pollfd pf = {lfd, POLLIN, 0};
        double left = deadline - wall_ms();
        int r = left > 0 ? poll(&pf, 1, (int)left + 1) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            char list[256] = "";
            for (int k = 1, shown = 0; k < dd->world && shown < 16; k++)
                if (fd[k] < 0) { snprintf(list + strlen(list), sizeof(list) - strlen(list), " %d", k); shown++; }
            golf_die("rank 0: only %d of %d other ranks connected to %s within DIST_TIMEOUT=%gs (missing:%s%s)\n  hint: start every "
                     "rank with the same MASTER_ADDR/MASTER_PORT/WORLD_SIZE; check that they can reach this host",
                     got, dd->world - 1, where, timeout_s, list, dd->world - 1 - got > 16 ? " ..." : "");
        }
        int c = accept(lfd, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        uint8_t h[16];
        const char *err = sock_io(c, h, sizeof(h), 0, deadline);
        if (err) golf_die("rank 0: reading a hello on %s: %s", where, err);
        uint32_t m = rd32(h), rank = rd32(h + 4), world = rd32(h + 8);
        if (m != magic) golf_die("rank 0: a connection to %s that is not a train_golf rank (another program?)", where);
        if ((int)world != dd->world) golf_die("rank 0: rank %u says WORLD_SIZE=%u but rank 0 has WORLD_SIZE=%d", rank, world, dd->world);
        if (rank < 1 || (int)rank >= dd->world) golf_die("rank 0: a process says RANK=%u: must be in 1..%d", rank, dd->world - 1);
        if (fd[rank] >= 0) golf_die("rank 0: two processes say RANK=%u\n  hint: give every process its own RANK", rank);
        fd[rank] = c;
        got++;
    }
    close(lfd);
}

// dist_bootstrap: connect the ranks and give every rank rank 0's n bytes of id (the NCCL unique id): MPI_Bcast under
// mpirun; the TCP star of an env launch (waiting at most timeout_s seconds); nothing for one rank.
static GOLF_UNUSED void dist_bootstrap(Dist *dd, uint8_t *id, size_t n, double timeout_s) {
    if (dd->world == 1) return;
#ifdef USE_MPI
    if (dd->mode == DIST_MPI) { mpiCheck(MPI_Bcast(id, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD)); return; }
#endif
    if (dd->mode != DIST_ENV) golf_die("internal: %d ranks without a launch that connects them", dd->world);
    const char *addr = getenv("MASTER_ADDR");
    int port = dist_port();
    double deadline = wall_ms() + 1000.0 * timeout_s;
    dd->peer = (int *)galloc((size_t)dd->world * sizeof(int));
    for (int k = 0; k < dd->world; k++) dd->peer[k] = -1;
    if (dd->rank == 0) {
        int bound, lfd = sock_listen(port, &bound);
        if (lfd < 0)
            golf_die("rank 0: cannot listen on port %d (MASTER_PORT%s): %s\n  hint: %s", port,
                     torchrun_holds_port() ? " + 1: torchrun's agent holds MASTER_PORT" : "",
                     strerror(errno),
                     errno == EADDRINUSE ? "another program or run uses that port: pick another MASTER_PORT" : "check MASTER_PORT");
        char where[32];
        snprintf(where, sizeof(where), "port %d", port);
        dist_accept(dd, lfd, DIST_MAGIC, dd->peer, where, deadline, timeout_s);
        for (int k = 1; k < dd->world; k++) {
            const char *err = sock_io(dd->peer[k], id, n, 1, deadline);
            if (err) golf_die("rank 0: sending the id to rank %d: %s", k, err);
        }
        return;
    }
    char why[256];
    int fd = sock_connect(addr, port, deadline, why, sizeof(why));
    if (fd < 0)
        golf_die("rank %d: cannot reach rank 0 at MASTER_ADDR=%s port %d within DIST_TIMEOUT=%gs: %s\n  hint: start rank 0 too; "
                 "check MASTER_ADDR/MASTER_PORT and that this host can reach it", dd->rank, addr, port, timeout_s, why);
    const char *err = dist_hello(dd, fd, DIST_MAGIC, deadline);
    if (!err) err = sock_io(fd, id, n, 0, deadline);
    if (err) golf_die("rank %d: no id from rank 0 at %s:%d: %s\n  hint: rank 0's output says why (a missing rank, a duplicate RANK, "
                      "another WORLD_SIZE)", dd->rank, addr, port, err);
    dd->peer[0] = fd;
}

// --- The watchdog (several ranks, armed during training): a thread that ends this rank with a message, aborting the
//     NCCL communicator (ncclCommAbort) so that nothing waits on it, and exits 1 when
//       - another rank ends the run (its last heartbeat says so, and whom it blames),
//       - a rank's heartbeat connection closed (the process died), or its heartbeat stopped for DIST_TIMEOUT seconds
//         (the process is stopped, e.g. by SIGSTOP, frozen or cut off: its watchdog sends nothing either),
//       - the main thread made no progress (watchdog_beat: every step, every host reduction) for DIST_TIMEOUT seconds:
//         it then names the rank whose heartbeat stopped, when one did,
//       - NCCL reports an asynchronous error.
//     It is disarmed before a rank may leave on purpose (signals, a non-finite stop, the end of training).
//     The heartbeat is the watchdogs' own star of TCP connections through rank 0, beside the reductions', under both
//     launches (beat_connect): rank 0 listens on a free port and sends its number over the env launch's star, or with
//     rank 0's host name by MPI_Bcast under mpirun; every other rank connects (to MASTER_ADDR, else to that host name)
//     and says hello {BEAT_MAGIC, rank, world, local_rank}. Every BEAT_MS each watchdog sends a beat, eight
//     little-endian uint32 {BEAT_MAGIC, rank, steps done, blame + 1, blame's silence in ms, blame's steps done, stop,
//     work done}: rank r > 0 to rank 0; rank 0 to every rank, blaming the rank it heard from least recently (the others
//     hear only rank 0). stop is BEAT_STOP_NONE until the rank ends the run: its last beat says why, and rank 0 passes
//     it on. work done is 1 once the device has finished the current step's forward and backward (an event recorded
//     after them, which the watchdog queries): when no rank progresses and every heartbeat arrives, a rank whose work
//     is not done while another's is hangs in its work (a kernel that never ends), and the others wait for it in the
//     gradient all-reduce; rank 0, which hears everyone, names it (BEAT_STOP_BEHIND).
static double g_dist_timeout_s = 300, g_gptq_reserve_s = 0;   // DIST_TIMEOUT and GPTQ_RESERVE_SECONDS, set by main
static const uint32_t BEAT_MAGIC = 0x62656174u;   // "beat"
enum { BEAT_MS = 500, BEAT_WORDS = 8, BEAT_BYTES = 4 * BEAT_WORDS };
// why a run ends: blame's output says; blame is silent; gone; behind (its work of the step is not done, the others' is)
enum { BEAT_STOP_NONE, BEAT_STOP_OUTPUT, BEAT_STOP_SILENT, BEAT_STOP_GONE, BEAT_STOP_BEHIND };
static struct {
    int64_t beat_ms;
    int armed, started, steps, work_step;   // work_step: the step (from 1) whose work_done event is recorded (0: none yet)
    cudaEvent_t work_done;
    const Dist *dd;
    pthread_t thread;
    int *fd, *fill, *closed, *cut;   // per rank: its heartbeat socket (-1: none), bytes of its next beat received, its end seen, a beat cut in two
    double *heard;                   // per rank: when its last beat arrived (wall_ms)
    uint32_t *got;                   // [world][BEAT_WORDS]: the last beat of each rank
    uint8_t *part;                   // [world][BEAT_BYTES]: the beat being received
} g_watch;
static void watchdog_beat(void) { __atomic_store_n(&g_watch.beat_ms, (int64_t)wall_ms(), __ATOMIC_RELAXED); }
static void watchdog_arm(int on) { watchdog_beat(); __atomic_store_n(&g_watch.armed, on, __ATOMIC_RELEASE); }
// watchdog_step: progress at the start of a step, steps the steps done so far (the heartbeat carries it).
static void watchdog_step(int steps) { watchdog_beat(); __atomic_store_n(&g_watch.steps, steps, __ATOMIC_RELAXED); }
// watchdog_work: the step's forward and backward are issued: the event after them marks when the device is done
static void watchdog_work(int step) {
    if (!g_watch.started) return;
    cudaCheck(cudaEventRecord(g_watch.work_done, cudaStreamPerThread));
    __atomic_store_n(&g_watch.work_step, step, __ATOMIC_RELEASE);
}
// work_done: 1 when the device has done the forward and backward of the step after `steps` (the watchdog's query)
static uint32_t work_done(void) {
    int steps = __atomic_load_n(&g_watch.steps, __ATOMIC_RELAXED);
    return __atomic_load_n(&g_watch.work_step, __ATOMIC_ACQUIRE) == steps + 1 && cudaEventQuery(g_watch.work_done) == cudaSuccess;
}

// beat_connect: the heartbeat star (above) within timeout_s seconds; dies naming what is missing.
static void beat_connect(const Dist *dd, double timeout_s) {
    size_t W = (size_t)dd->world;
    g_watch.fd = (int *)galloc(W * sizeof(int));
    g_watch.fill = (int *)galloc(W * sizeof(int));
    g_watch.closed = (int *)galloc(W * sizeof(int));
    g_watch.cut = (int *)galloc(W * sizeof(int));
    g_watch.heard = (double *)galloc(W * sizeof(double));
    g_watch.got = (uint32_t *)galloc(W * BEAT_BYTES);
    g_watch.part = (uint8_t *)galloc(W * BEAT_BYTES);
    for (size_t k = 0; k < W; k++) g_watch.fd[k] = -1;
    memset(g_watch.fill, 0, W * sizeof(int)); memset(g_watch.closed, 0, W * sizeof(int)); memset(g_watch.cut, 0, W * sizeof(int));
    memset(g_watch.got, 0, W * BEAT_BYTES);
    double deadline = wall_ms() + 1000.0 * timeout_s;
    char host[256] = "";   // rank 0's host name
    uint32_t port = 0;
    int lfd = -1, bound = 0;
    const char *err;
    if (dd->rank == 0) {
        if ((lfd = sock_listen(0, &bound)) < 0) golf_die("rank 0: cannot listen on a free TCP port for the heartbeat: %s", strerror(errno));
        port = (uint32_t)bound;
        gethostname(host, sizeof(host) - 1);
    }
    if (dd->mode == DIST_ENV) {   // the port over the star (host byte order, as the reductions)
        for (int k = 1; dd->rank == 0 && k < dd->world; k++)
            if ((err = sock_io(dd->peer[k], &port, 4, 1, deadline))) golf_die("rank 0: sending the heartbeat port to rank %d: %s", k, err);
        if (dd->rank != 0 && (err = sock_io(dd->peer[0], &port, 4, 0, deadline)))
            golf_die("rank %d: no heartbeat port from rank 0: %s\n  hint: rank 0's output says why", dd->rank, err);
    }
#ifdef USE_MPI
    if (dd->mode == DIST_MPI) {
        uint8_t b[4 + sizeof(host)];
        memcpy(b, &port, 4); memcpy(b + 4, host, sizeof(host));
        mpiCheck(MPI_Bcast(b, (int)sizeof(b), MPI_BYTE, 0, MPI_COMM_WORLD));
        memcpy(&port, b, 4); memcpy(host, b + 4, sizeof(host));
        host[sizeof(host) - 1] = 0;
    }
#endif
    if (dd->rank == 0) {
        char where[64];
        snprintf(where, sizeof(where), "the heartbeat port %u", port);
        dist_accept(dd, lfd, BEAT_MAGIC, g_watch.fd, where, deadline, timeout_s);
    } else {
        const char *addr = getenv("MASTER_ADDR");
        char mine[256] = "", why[256];
        gethostname(mine, sizeof(mine) - 1);
        if (!addr || !addr[0]) addr = strcmp(host, mine) == 0 ? "127.0.0.1" : host;   // mpirun: rank 0's host
        int fd = sock_connect(addr, (int)port, deadline, why, sizeof(why));
        err = fd < 0 ? why : dist_hello(dd, fd, BEAT_MAGIC, deadline);
        if (err)
            golf_die("rank %d: cannot reach rank 0's heartbeat port at %s:%u within DIST_TIMEOUT=%gs: %s\n  hint: set MASTER_ADDR to an address "
                     "of rank 0's host that this one reaches", dd->rank, addr, port, timeout_s, err);
        g_watch.fd[0] = fd;
    }
    double now = wall_ms();
    for (size_t k = 0; k < W; k++) g_watch.heard[k] = now;
}

// beat_poll: every beat that arrived (heard, got) and every heartbeat connection that closed (closed), at time now.
static void beat_poll(double now) {
    for (int k = 0; k < g_watch.dd->world; k++) {
        uint8_t *part = g_watch.part + (size_t)k * BEAT_BYTES;
        while (g_watch.fd[k] >= 0 && !g_watch.closed[k]) {
            ssize_t r = recv(g_watch.fd[k], part + g_watch.fill[k], (size_t)(BEAT_BYTES - g_watch.fill[k]), MSG_DONTWAIT);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (r <= 0) { g_watch.closed[k] = 1; break; }
            if ((g_watch.fill[k] += (int)r) < BEAT_BYTES) continue;
            g_watch.fill[k] = 0;
            uint32_t *w = g_watch.got + (size_t)k * BEAT_WORDS;
            for (int i = 0; i < BEAT_WORDS; i++) w[i] = rd32(part + 4 * i);
            if (w[0] != BEAT_MAGIC || w[1] != (uint32_t)k) { memset(w, 0, BEAT_BYTES); g_watch.closed[k] = 1; break; }   // no beat: as good as gone
            g_watch.heard[k] = now;
        }
    }
}

// beat_send: this rank's beat (stop: BEAT_STOP_*; blame: the rank it names or -1, with its silence and steps done) to
// every rank it is connected to. It never waits: a full buffer (a peer that reads nothing) drops the beat, and on a
// connection where one was cut in two no more are sent.
static void beat_send(int stop, int blame, double quiet_ms, uint32_t blame_steps) {
    uint32_t w[BEAT_WORDS] = {BEAT_MAGIC, (uint32_t)g_watch.dd->rank, (uint32_t)__atomic_load_n(&g_watch.steps, __ATOMIC_RELAXED),
                              (uint32_t)(blame + 1), (uint32_t)fmin(quiet_ms, 4e9), blame_steps, (uint32_t)stop, work_done()};
    uint8_t b[BEAT_BYTES];
    for (int i = 0; i < BEAT_BYTES; i++) b[i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
    for (int k = 0; k < g_watch.dd->world; k++) {
        if (g_watch.fd[k] < 0 || g_watch.cut[k]) continue;
        ssize_t r = send(g_watch.fd[k], b, sizeof(b), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0 && r < (ssize_t)sizeof(b)) g_watch.cut[k] = 1;
    }
}

// beat_quietest: the connected rank heard from least recently (-1: none), its silence at time now in *quiet_ms.
static int beat_quietest(double now, double *quiet_ms) {
    int q = -1;
    *quiet_ms = 0;
    for (int k = 0; k < g_watch.dd->world; k++)
        if (g_watch.fd[k] >= 0 && !g_watch.closed[k] && (q < 0 || now - g_watch.heard[k] > *quiet_ms)) { q = k; *quiet_ms = now - g_watch.heard[k]; }
    return q;
}

// silent_text: why, naming rank k whose heartbeat stopped quiet_ms ago after steps steps, as rank via reports (-1: this one).
static void silent_text(char *why, size_t n, int k, double quiet_ms, uint32_t steps, int via) {
    char who[32] = "";
    if (via >= 0) snprintf(who, sizeof(who), " (as rank %d reports)", via);
    snprintf(why, n, "rank %d does not respond%s: no heartbeat from it for %.0fs (steps done: %u): it is stopped (SIGSTOP?), frozen "
             "or cut off", k, who, quiet_ms / 1000, steps);
}

// behind_text: why, naming rank k whose work of step `steps` + 1 is not done while another rank's is, as rank via reports
static void behind_text(char *why, size_t n, int k, uint32_t steps, int via) {
    char who[32] = "";
    if (via >= 0) snprintf(who, sizeof(who), " (as rank %d reports)", via);
    snprintf(why, n, "rank %d hangs in its work%s: its forward and backward of step %u are not done on its device, while "
             "other ranks finished theirs and wait for it in the gradient all-reduce (a kernel that never ends?)", k, who, steps + 1);
}

// behind_rank: the first rank whose work of the current step is not done while another's is (-1: none; rank 0 only,
// which hears every rank), its steps done in *steps
static int behind_rank(uint32_t *steps) {
    const Dist *dd = g_watch.dd;
    uint32_t best = 0, lo = UINT32_MAX;
    int k_lo = -1;
    for (int k = 0; k < dd->world; k++) {
        const uint32_t *w = g_watch.got + (size_t)k * BEAT_WORDS;
        uint32_t st = k == 0 ? (uint32_t)__atomic_load_n(&g_watch.steps, __ATOMIC_RELAXED) : w[2], done = k == 0 ? work_done() : w[7];
        uint32_t prog = 2 * st + done;   // steps done, then the current step's work
        if (prog > best) best = prog;
        if (prog < lo) { lo = prog; k_lo = k; *steps = st; }
    }
    return lo < best ? k_lo : -1;
}

static void *watchdog_main(void *) {
    const Dist *dd = g_watch.dd;
    char why[768];
    double next_beat = 0;
    for (;;) {
        usleep(100 * 1000);
        double now = wall_ms(), quiet;
        beat_poll(now);
        int q = beat_quietest(now, &quiet);
        if (now >= next_beat) {
            beat_send(BEAT_STOP_NONE, dd->rank == 0 ? q : -1, quiet, q >= 0 ? g_watch.got[(size_t)q * BEAT_WORDS + 2] : 0);
            next_beat = now + BEAT_MS;
        }
        if (!__atomic_load_n(&g_watch.armed, __ATOMIC_ACQUIRE)) continue;
        why[0] = 0;
        double limit = 1000.0 * g_dist_timeout_s, idle = now - (double)__atomic_load_n(&g_watch.beat_ms, __ATOMIC_RELAXED);
        double silent = fmin(4.0 * BEAT_MS, limit / 2);   // a heartbeat this late has stopped (a live watchdog beats every BEAT_MS)
        int stop = BEAT_STOP_OUTPUT, blame = dd->rank;   // this rank's verdict, for its last beat
        double blame_quiet = 0;
        uint32_t blame_steps = 0;
        for (int k = 0; k < dd->world && !why[0]; k++) {   // another rank ends the run: its verdict
            const uint32_t *w = g_watch.got + (size_t)k * BEAT_WORDS;
            if (w[6] == BEAT_STOP_NONE) continue;
            stop = (int)w[6]; blame = (int)w[3] - 1; blame_quiet = w[4]; blame_steps = w[5];
            if (blame < 0 || blame >= dd->world) { stop = BEAT_STOP_OUTPUT; blame = k; }
            if (stop == BEAT_STOP_SILENT) silent_text(why, sizeof(why), blame, blame_quiet, blame_steps, k);
            else if (stop == BEAT_STOP_BEHIND) behind_text(why, sizeof(why), blame, blame_steps, k);
            else if (stop == BEAT_STOP_GONE) snprintf(why, sizeof(why), "rank %d is gone (rank %d saw its connection close)", blame, k);
            else { stop = BEAT_STOP_OUTPUT; snprintf(why, sizeof(why), "rank %d ends the run (its output says why)", blame); }
        }
        for (int k = 0; k < dd->world && !why[0]; k++)
            if (g_watch.closed[k]) {
                stop = BEAT_STOP_GONE; blame = k;
                snprintf(why, sizeof(why), "rank %d is gone (its connection to %s closed)", k, dd->rank == 0 ? "rank 0" : "this rank");
            }
        if (!why[0] && q >= 0 && quiet > limit) {
            stop = BEAT_STOP_SILENT; blame = q; blame_quiet = quiet; blame_steps = g_watch.got[(size_t)q * BEAT_WORDS + 2];
            silent_text(why, sizeof(why), q, quiet, blame_steps, -1);
        }
        if (!why[0] && idle > limit) {   // no progress: blame a rank whose heartbeat stopped (rank 0 names one it does not hear)
            const uint32_t *w0 = g_watch.got;
            int n = snprintf(why, sizeof(why), "no progress for %.0fs (DIST_TIMEOUT=%gs): ", idle / 1000, g_dist_timeout_s);
            if (q >= 0 && quiet > silent) {
                stop = BEAT_STOP_SILENT; blame = q; blame_quiet = quiet; blame_steps = g_watch.got[(size_t)q * BEAT_WORDS + 2];
                silent_text(why + n, sizeof(why) - n, q, quiet, blame_steps, -1);
            } else if (dd->rank != 0 && w0[3] >= 1 && (int)w0[3] <= dd->world && w0[4] > silent) {
                stop = BEAT_STOP_SILENT; blame = (int)w0[3] - 1; blame_quiet = w0[4]; blame_steps = w0[5];
                silent_text(why + n, sizeof(why) - n, blame, blame_quiet, blame_steps, 0);
            } else if (dd->rank == 0 && (blame = behind_rank(&blame_steps)) >= 0) {
                stop = BEAT_STOP_BEHIND;
                behind_text(why + n, sizeof(why) - n, blame, blame_steps, -1);
            } else if (dd->rank != 0 && 2 * (uint32_t)__atomic_load_n(&g_watch.steps, __ATOMIC_RELAXED) + work_done() < 2 * w0[2] + w0[7]) {
                stop = BEAT_STOP_BEHIND; blame = dd->rank; blame_steps = (uint32_t)__atomic_load_n(&g_watch.steps, __ATOMIC_RELAXED);
                behind_text(why + n, sizeof(why) - n, blame, blame_steps, -1);
            } else if (dd->rank != 0 && idle < limit + 4.0 * BEAT_MS) {
                why[0] = 0;   // rank 0 hears every rank: its verdict first
            } else {
                snprintf(why + n, sizeof(why) - n, "every rank's heartbeat arrives and every rank's work of the step is in the same state: a rank "
                         "hangs in a collective, or this one does");
            }
        }
#ifdef USE_NCCL
        ncclResult_t async = ncclSuccess;
        if (!why[0] && ncclCommGetAsyncError(g_nccl, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
            snprintf(why, sizeof(why), "NCCL reports an asynchronous error: %.300s", ncclGetErrorString(async));
#endif
        if (!why[0] || !__atomic_load_n(&g_watch.armed, __ATOMIC_ACQUIRE)) continue;
        beat_poll(wall_ms());   // nothing left unread: closing a socket that holds unread bytes resets it, losing the last beat
        beat_send(stop, blame, blame_quiet, blame_steps);
        for (int k = 0; k < dd->world; k++)
            if (g_watch.fd[k] >= 0) shutdown(g_watch.fd[k], SHUT_WR);
        fprintf(stderr, "train_golf: error: rank %d: %s: stopping every rank\n  hint: the first rank's output that names another "
                "reason is the cause\n", dd->rank, why);
        fflush(NULL);
        usleep(3 * 100 * 1000);   // three of the others' polls: they read the last beat before this rank's connections close
        beat_poll(wall_ms());
#ifdef USE_NCCL
        ncclCommAbort(g_nccl);
#endif
        _exit(1);
    }
    return NULL;
}
// watchdog_start: the heartbeat star and the thread (several ranks; after the NCCL communicator exists), disarmed.
static void watchdog_start(const Dist *dd, double timeout_s) {
    if (dd->world == 1 || g_watch.started) return;
    g_watch.dd = dd;
    cudaCheck(cudaEventCreate(&g_watch.work_done));
    beat_connect(dd, timeout_s);
    if (pthread_create(&g_watch.thread, NULL, watchdog_main, NULL) != 0) golf_die("rank %d: cannot start the watchdog thread: %s", dd->rank, strerror(errno));
    pthread_detach(g_watch.thread);
    g_watch.started = 1;
}

// dist_reduce: v[0..n) summed (RED_SUM) or maximized (RED_MAX) over all ranks, the same result on every rank.
static void dist_reduce(const Dist *dd, double *v, int n, int op) {
    if (dd->world == 1) return;
#ifdef USE_MPI
    if (dd->mode == DIST_MPI) { mpiCheck(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, op == RED_SUM ? MPI_SUM : MPI_MAX, MPI_COMM_WORLD)); return; }
#endif
    if (dd->mode != DIST_ENV || !dd->peer) golf_die("internal: a reduction over %d ranks before they were connected", dd->world);
    // every socket operation has DIST_TIMEOUT; while the watchdog is armed it names the rank at fault at DIST_TIMEOUT,
    // and a rank other than 0 waits up to 4 beats for rank 0's verdict: the reduction's own timeout comes 1 s after that
    double grace = __atomic_load_n(&g_watch.armed, __ATOMIC_ACQUIRE) ? 4.0 * BEAT_MS + 1000.0 : 0.0;
    double in[16], deadline = wall_ms() + 1000.0 * g_dist_timeout_s + grace;
    if (n > 16) golf_die("internal: dist_reduce of %d values (at most 16)", n);
    size_t bytes = (size_t)n * sizeof(double);
    const char *err;
    if (dd->rank == 0) {
        for (int r = 1; r < dd->world; r++) {
            if ((err = sock_io(dd->peer[r], in, bytes, 0, deadline)))
                golf_die("rank 0: lost rank %d during a reduction: %s (DIST_TIMEOUT=%gs)\n  hint: see rank %d's output", r, err, g_dist_timeout_s, r);
            for (int k = 0; k < n; k++) v[k] = op == RED_SUM ? v[k] + in[k] : (in[k] > v[k] ? in[k] : v[k]);
        }
        for (int r = 1; r < dd->world; r++)
            if ((err = sock_io(dd->peer[r], v, bytes, 1, deadline))) golf_die("rank 0: lost rank %d during a reduction: %s", r, err);
        watchdog_beat();
        return;
    }
    if ((err = sock_io(dd->peer[0], v, bytes, 1, deadline)) || (err = sock_io(dd->peer[0], v, bytes, 0, deadline)))
        golf_die("rank %d: lost rank 0 during a reduction: %s (DIST_TIMEOUT=%gs)\n  hint: see rank 0's output", dd->rank, err, g_dist_timeout_s);
    watchdog_beat();
}

static void all_reduce_doubles(const Dist *dd, double *v, int n) { dist_reduce(dd, v, n, RED_SUM); }

// dist_init_gpu: this rank's GPU (its local rank) and, for several ranks, the NCCL communicator.
static void dist_init_gpu(Dist *dd, double timeout_s) {
    int ndev = 0, drv = 0, rt = 0;
    cudaCheck(cudaRuntimeGetVersion(&rt));
    if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0)
        golf_die("rank %d: no NVIDIA driver found (cudaDriverGetVersion)\n  hint: install the NVIDIA driver; nvidia-smi must list the GPUs", dd->rank);
    if (drv < rt)   // the first device call would fail with a bare "CUDA driver version is insufficient"
        golf_die("rank %d: the NVIDIA driver supports CUDA up to %d.%d, but train_golf was built with CUDA %d.%d\n  hint: update the driver, "
                 "or rebuild with a CUDA toolkit no newer than %d.%d (make CUDA_HOME=/usr/local/cuda-%d.%d)", dd->rank, drv / 1000, drv % 1000 / 10,
                 rt / 1000, rt % 1000 / 10, drv / 1000, drv % 1000 / 10, drv / 1000, drv % 1000 / 10);
    cudaCheck(cudaGetDeviceCount(&ndev));
    if (dd->local_rank >= ndev) golf_die("rank %d is local rank %d but this host has %d GPUs", dd->rank, dd->local_rank, ndev);
    cudaCheck(cudaSetDevice(dd->local_rank));
    if (dd->world == 1) return;
#ifdef USE_NCCL
    ncclUniqueId id;
    if (dd->rank == 0) ncclCheck(ncclGetUniqueId(&id));
    dist_bootstrap(dd, (uint8_t *)&id, sizeof(id), timeout_s);
    ncclCheck(ncclCommInitRank(&g_nccl, dd->world, id, dd->rank));
#else
    (void)timeout_s;
    golf_die("%d ranks but this build has no NCCL: rebuild with NCCL (make prints what it found)", dd->world);
#endif
}

// all_reduce_grads: sum the gradients of all ranks (counts are elements).
static void all_reduce_grads(Trainer *tr, const Dist *dd) {
    if (dd->world == 1) return;
#ifdef USE_NCCL
    ncclCheck(ncclAllReduce(tr->grads, tr->grads, tr->host.numel, ncclFloat, ncclSum, g_nccl, cudaStreamPerThread));
#else
    (void)tr;
#endif
}

// --- Gradient buckets: the flat gradient buffer in parameter-table order cut into buckets of BUCKET_CAP_MB (the last
//     shorter). On the accumulation's last micro-step (grad_buckets_begin(tr, 1)), backward calls grad_ready(tr, l)
//     once physical layer l's gradients are complete (after its last position in backward's order) and
//     grad_ready(tr, -1) at its end; each call starts the all-reduce of every bucket all of whose tensors are now
//     complete, on the communication stream after an event on the compute stream (the same order on every rank:
//     the schedule is). grad_buckets_wait makes the compute stream wait for all of them (the optimizer comes next).
//     One process: nothing. NCCL gets explicit streams (the comm stream, cudaStreamPerThread): libnccl is not built
//     with per-thread default streams, so a 0 there would be the legacy stream.
typedef struct {
    int n;                       // buckets
    size_t cap;                  // elements per bucket
    int *first, *last;           // [n] the first and last tensor (table index) bucket b overlaps
    int *issued, *done;          // [n] all-reduce started this step; [tensors] gradient complete this step
    int *layer_first;            // [L + 1] table index of layer l's first tensor (layer_first[L]: past the last layer's)
    int live;                    // 1: this backward is the last micro-step's: grad_ready starts buckets
    cudaStream_t comm;           // the communication stream (non-blocking: no implicit order with the legacy stream)
    cudaEvent_t ready, finished; // compute stream -> comm stream; comm stream -> compute stream
} GradBuckets;
static GradBuckets g_buckets;

// grad_buckets_init: the buckets of tr's parameter table (several ranks; after trainer_alloc).
static void grad_buckets_init(Trainer *tr) {
    GradBuckets *B = &g_buckets;
    const GolfModel *m = &tr->host;
    memset(B, 0, sizeof(*B));
    if (tr->world == 1) return;
    double cap = tr->tc.bucket_cap_mb * 1048576.0 / sizeof(float);
    B->cap = cap < 1 ? 1 : cap > (double)m->numel ? m->numel : (size_t)cap;
    B->n = (int)((m->numel + B->cap - 1) / B->cap);
    B->first = (int *)galloc((size_t)B->n * sizeof(int)); B->last = (int *)galloc((size_t)B->n * sizeof(int));
    B->issued = (int *)galloc((size_t)B->n * sizeof(int)); B->done = (int *)galloc((size_t)m->n * sizeof(int));
    for (int b = 0, t = 0; b < B->n; b++) {   // tensor t spans [offset, offset + rows cols)
        size_t lo = (size_t)b * B->cap, hi = lo + B->cap < m->numel ? lo + B->cap : m->numel;
        while (m->spec[t].offset + (size_t)m->spec[t].rows * m->spec[t].cols <= lo) t++;
        B->first[b] = t;
        int u = t;
        while (u + 1 < m->n && m->spec[u + 1].offset < hi) u++;
        B->last[b] = u;
    }
    int L = tr->c.num_layers;
    B->layer_first = (int *)galloc((size_t)(L + 1) * sizeof(int));
    for (int l = 0; l <= L; l++) {
        size_t off = l < L ? (size_t)(m->layer[l].c_q - m->params) : (size_t)(m->skip_weights - m->params);
        int i = 0;
        while (i < m->n && m->spec[i].offset != off) i++;
        if (i == m->n) golf_die("internal: layer %d's first tensor is not in the parameter table", l);
        B->layer_first[l] = i;
    }
    cudaCheck(cudaStreamCreateWithFlags(&B->comm, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreate(&B->ready));
    cudaCheck(cudaEventCreate(&B->finished));
}

// grad_buckets_begin: before a micro-step's backward; live = 1 on the accumulation's last micro-step.
static void grad_buckets_begin(Trainer *tr, int live) {
    GradBuckets *B = &g_buckets;
    if (tr->world == 1) return;
    B->live = live;
    memset(B->issued, 0, (size_t)B->n * sizeof(int));
    memset(B->done, 0, (size_t)tr->host.n * sizeof(int));
}

static void grad_ready(Trainer *tr, int layer) {
    GradBuckets *B = &g_buckets;
    if (tr->world == 1 || !B->live) return;
    int t0 = layer < 0 ? 0 : B->layer_first[layer], t1 = layer < 0 ? tr->host.n : B->layer_first[layer + 1];
    for (int t = t0; t < t1; t++) B->done[t] = 1;
    int recorded = 0;
    for (int b = 0; b < B->n; b++) {
        if (B->issued[b]) continue;
        int complete = 1;
        for (int t = B->first[b]; t <= B->last[b] && complete; t++) complete = B->done[t];
        if (!complete) continue;
        if (!recorded) {   // the comm stream starts after everything backward queued so far
            cudaCheck(cudaEventRecord(B->ready, cudaStreamPerThread));
            cudaCheck(cudaStreamWaitEvent(B->comm, B->ready, 0));
            recorded = 1;
        }
        size_t lo = (size_t)b * B->cap, len = lo + B->cap < tr->host.numel ? B->cap : tr->host.numel - lo;
#ifdef USE_NCCL
        ncclCheck(ncclAllReduce(tr->grads + lo, tr->grads + lo, len, ncclFloat, ncclSum, g_nccl, B->comm));
#else
        (void)len;
        golf_die("internal: gradient buckets over several ranks in a build without NCCL");
#endif
        B->issued[b] = 1;
    }
}

// grad_buckets_wait: after the last micro-step: the compute stream waits for every bucket's all-reduce.
static void grad_buckets_wait(Trainer *tr) {
    GradBuckets *B = &g_buckets;
    if (tr->world == 1) return;
    for (int b = 0; b < B->n; b++)
        if (!B->issued[b]) golf_die("internal: gradient bucket %d of %d was never all-reduced (a tensor backward never completed)", b, B->n);
    cudaCheck(cudaEventRecord(B->finished, B->comm));
    cudaCheck(cudaStreamWaitEvent(cudaStreamPerThread, B->finished, 0));
    B->live = 0;
}

// muon_all_gather: recv [world, count] = every rank's send [count], in rank order (counts are elements; Muon's
// sharded updates, chapter 6)
static void muon_all_gather(const float *send, float *recv, size_t count) {
#ifdef USE_NCCL
    ncclCheck(ncclAllGather(send, recv, count, ncclFloat, g_nccl, cudaStreamPerThread));
#else
    (void)send; (void)recv; (void)count;
    golf_die("internal: Muon's gather over several ranks in a build without NCCL");
#endif
}

static void dist_finish(Dist *dd) {
#ifdef USE_NCCL
    if (dd->world > 1) ncclCommDestroy(g_nccl);
#endif
#ifdef USE_MPI
    if (dd->mode == DIST_MPI) MPI_Finalize();
#endif
    if (dd->peer) {
        for (int k = 0; k < dd->world; k++)
            if (dd->peer[k] >= 0) close(dd->peer[k]);
        free(dd->peer);
        dd->peer = NULL;
    }
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
    uint32_t h[CKPT_HEADER_INTS] = {CKPT_MAGIC, CKPT_VERSION, (uint32_t)m->n + (loss ? 1 : 0)};
    Config cc = *c;
    config_header(&cc, h, 1);
    h[13] = (uint32_t)steps;
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
static void params_upload(Trainer *tr) { cudaCheck(cudaMemcpy(tr->params, tr->host.params, tr->host.numel * 4, cudaMemcpyHostToDevice)); params_changed(tr); }

// export_options: QUANT for the matrices and the embedding, fp32 control tensors (train_gpt.py keeps them).
static ExportOptions export_options(const TrainConfig *c) {
    ExportOptions o = export_defaults();
    int s = export_scheme(c->quant);
    for (int k = 0; k < NUM_CLASSES; k++) o.scheme[k] = k == CLS_CONTROL ? SCHEME_FP32 : s;
    if (c->quant_embed[0]) o.scheme[CLS_EMBED] = export_scheme(c->quant_embed);
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

// broadcast_bytes: rank 0's bytes to every rank (the blob: only rank 0 encodes it): MPI_Bcast under mpirun, rank 0's
// sockets in a torchrun-style launch (the size as a uint64, then the bytes).
static void broadcast_bytes(const Dist *dd, Bytes *b) {
    if (dd->world == 1) return;
    unsigned long long n = b->n;
#ifdef USE_MPI
    if (dd->mode == DIST_MPI) {
        mpiCheck(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD));
        if (n > 0x7FFFFFFFull) golf_die("the blob (%llu bytes) is too large to broadcast", n);
        if (dd->rank != 0) { b->p = (uint8_t *)galloc((size_t)n); b->n = b->cap = (size_t)n; }
        mpiCheck(MPI_Bcast(b->p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD));
        return;
    }
#endif
    if (dd->mode != DIST_ENV || !dd->peer) golf_die("internal: a broadcast over %d ranks before they were connected", dd->world);
    const char *err;
    // rank 0 encodes the blob (GPTQ within its reserve) while the others wait: DIST_TIMEOUT plus that reserve
    double deadline = wall_ms() + 1000.0 * (g_dist_timeout_s + g_gptq_reserve_s);
    if (dd->rank == 0) {
        for (int r = 1; r < dd->world; r++)
            if ((err = sock_io(dd->peer[r], &n, sizeof(n), 1, deadline)) || (err = sock_io(dd->peer[r], b->p, (size_t)n, 1, deadline)))
                golf_die("rank 0: lost rank %d while sending the blob: %s\n  hint: see rank %d's output", r, err, r);
        return;
    }
    if ((err = sock_io(dd->peer[0], &n, sizeof(n), 0, deadline)))
        golf_die("rank %d: lost rank 0 before the blob: %s (DIST_TIMEOUT=%gs + GPTQ_RESERVE_SECONDS)\n  hint: see rank 0's output", dd->rank, err, g_dist_timeout_s);
    b->p = (uint8_t *)galloc((size_t)n ? (size_t)n : 1);
    b->n = b->cap = (size_t)n;
    if ((err = sock_io(dd->peer[0], b->p, (size_t)n, 0, deadline))) golf_die("rank %d: lost rank 0 during the blob: %s\n  hint: see rank 0's output", dd->rank, err);
}

// --- The training state: what a run needs to go on after a step as if it had never stopped (CHECKPOINT_EVERY,
//     CHECKPOINT_EVERY_SECONDS, RESUME; also written on SIGTERM/SIGINT and before a non-finite stop, main). One file,
//     OUT_DIR/train_state.bin, written by rank 0 under PATH.tmp, flushed to disk, then renamed over PATH. Host byte
//     order (little-endian on every machine train_golf runs on):
//       u32 STATE_MAGIC, STATE_VERSION, world, has_ema; u64 numel
//       u32 CRC-32 of golf_infer.c and of train_golf.cu beside the binary (0 when not found)
//       u32 n, then n bytes: "NAME=value\n" for every config entry that decides what is computed (state_free's are not)
//       i32 step (steps done), adam_t, qat_on, stop_after; f64 train_ms (training time so far)
//       u64 shard index and position in it, u64 shard count: the data stream (every rank reads the same stream and
//         takes its own span of each chunk, so this one position is every rank's)
//       f32 [numel] each: the weights, Adam m, Adam v, Muon momentum (every rank's share), the EMA (when has_ema)
//       u32 CRC-32 of every byte before it
//     No random numbers are drawn after the init, so there is no generator state; QAT's fake-quantized weights and the
//     bf16 shadow are recomputed from the weights. Under PRECISION=fp32 or bf16 the CPU build with GOLF_EMU_THREADS=1
//     resumes bit for bit. On a GPU the float atomics (embedding_backward, dot_accumulate, column_dot, the gate and
//     gain gradients, Muon's per-matrix norms) sum in an order that varies from run to run, resumed or not.

static const uint32_t STATE_MAGIC = 0x74736c67u;   // "glst"
static const uint32_t STATE_VERSION = 1;
typedef struct { int step, adam_t, qat_on, stop_after; double train_ms; size_t file, pos; } RunState;
static uint32_t g_code_crc[2];   // CRC-32 of CODE_FILES beside the binary (log_code), 0 when missing
static const char *CODE_FILES[2] = {"golf_infer.c", "train_golf.cu"};

// code_file: the path of CODE_FILES[k] beside the binary (golf_infer.c's code_path's folder).
static void code_file(const char *argv0, int k, char *path, size_t n) {
    const char *gi = code_path(argv0);
    snprintf(path, n, "%.*s%s", (int)(strlen(gi) - strlen("golf_infer.c")), gi, CODE_FILES[k]);
}

// state_free: 1 for the config entries that control the run but not what it computes (a resume may change them).
static int state_free(const char *name) {
    static const char *FREE[] = {"RUN_ID", "OUT_DIR", "RESUME", "CHECKPOINT_EVERY", "CHECKPOINT_EVERY_SECONDS", "ON_NONFINITE", "DIST_TIMEOUT",
                                 "TRAIN_LOG_EVERY", "VAL_LOSS_EVERY", "CUDA_GRAPH", "DUMP_GRADS", "PLAN_MEMORY", "DATA_PATH", "TOKENIZER_PATH"};
    for (size_t i = 0; i < sizeof(FREE) / sizeof(FREE[0]); i++) if (strcmp(FREE[i], name) == 0) return 1;
    return 0;
}

// state_config: the "NAME=value\n" lines of the entries that decide the computation (floats to the last bit).
static void state_config(const TrainConfig *c, Bytes *b) {
    char line[1400];
    for (int i = 0; i < NCONFIG; i++) {
        if (state_free(CONFIG[i].name)) continue;
        const void *p = (const char *)c + CONFIG[i].offset;
        if (CONFIG[i].type == OPT_INT) snprintf(line, sizeof(line), "%s=%d\n", CONFIG[i].name, *(const int *)p);
        else if (CONFIG[i].type == OPT_FLOAT) snprintf(line, sizeof(line), "%s=%.17g\n", CONFIG[i].name, *(const double *)p);
        else snprintf(line, sizeof(line), "%s=%s\n", CONFIG[i].name, (const char *)p);
        bytes_put(b, line, strlen(line));
    }
}

// muon_shares: zero, in host momentum mom, every Muon matrix this rank does not update (another rank's share).
static void muon_shares(const Trainer *tr, float *mom) {
    for (int k = 0; k < tr->muon->n; k++) {
        const MuonGroup *g = &tr->muon->g[k];
        for (int j = 0; j < g->count; j++) {
            const ParamSpec *s = &tr->host.spec[g->tensor[j]];
            if (j < g->first || j >= g->first + g->mine) memset(mom + s->offset, 0, (size_t)s->rows * s->cols * 4);
        }
    }
}

// state_write: the training state at rs into path (rank 0 writes; every rank must call it: the Muon momentum of all
// shares is summed over the ranks as integers, each rank's other entries being zero, so its bits arrive unchanged).
// Uses the gradient buffer as scratch.
static void state_write(const char *path, Trainer *tr, const Dist *dd, const RunState *rs, size_t nfiles) {
    size_t numel = tr->host.numel;
    float *host = (float *)galloc(numel * 4);
    const float *mom_dev = tr->muon_buf;
    if (dd->world > 1) {
#ifdef USE_NCCL
        cudaCheck(cudaMemcpy(tr->grads, tr->muon_buf, numel * 4, cudaMemcpyDeviceToDevice));
        ncclCheck(ncclAllReduce(tr->grads, tr->grads, numel, ncclInt32, ncclSum, g_nccl, cudaStreamPerThread));
        mom_dev = tr->grads;
#endif
    }
    if (dd->rank != 0) { cudaCheck(cudaDeviceSynchronize()); free(host); return; }
    Bytes b = {NULL, 0, 0}, conf = {NULL, 0, 0};
    uint32_t head[4] = {STATE_MAGIC, STATE_VERSION, (uint32_t)dd->world, tr->ema != NULL};
    uint64_t n64 = numel, where[3] = {rs->file, rs->pos, nfiles};
    int32_t ints[4] = {rs->step, rs->adam_t, rs->qat_on, rs->stop_after};
    state_config(&tr->tc, &conf);
    uint32_t clen = (uint32_t)conf.n;
    bytes_put(&b, head, sizeof(head)); bytes_put(&b, &n64, 8); bytes_put(&b, g_code_crc, 8);
    bytes_put(&b, &clen, 4); bytes_put(&b, conf.p, conf.n);
    bytes_put(&b, ints, sizeof(ints)); bytes_put(&b, &rs->train_ms, 8); bytes_put(&b, where, sizeof(where));
    const float *tensors[5] = {tr->params, tr->adam_m, tr->adam_v, mom_dev, tr->ema};
    for (int k = 0; k < (tr->ema ? 5 : 4); k++) {
        cudaCheck(cudaMemcpy(host, tensors[k], numel * 4, cudaMemcpyDeviceToHost));
        bytes_put(&b, host, numel * 4);
    }
    uint32_t crc = crc32(b.p, b.n);
    bytes_put(&b, &crc, 4);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) golf_die("cannot create '%s': %s\n  hint: OUT_DIR must be writable (the training state goes there)", tmp, strerror(errno));
    if (fwrite(b.p, 1, b.n, f) != b.n || fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
        remove(tmp);
        golf_die("cannot write '%s': %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) golf_die("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    free(b.p); free(conf.p); free(host);
}

// state_check: the training state in path, checked against this run before any work (every rank reads it): its
// header first (magic, version, the size it implies against the file's), then its checksum, world size, code, config,
// parameter count (numel, has_ema) and data position (the train shards of stream s, shard_tokens: the token count of
// each); dies naming the file and what differs. Returns the file's bytes (for state_apply) and its run state in rs.
static uint8_t *state_check(const char *path, const TrainConfig *tc, const Dist *dd, size_t numel, int has_ema, const TokenStream *s,
                            const size_t *shard_tokens, RunState *rs) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) golf_die("RESUME '%s': cannot open it: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) golf_die("RESUME '%s': %s", path, S_ISDIR(st.st_mode) ? "it is a folder, not a file" : "not a regular file");
    uint8_t h[36];
    size_t got = fread(h, 1, sizeof(h), f);
    fclose(f);
    uint32_t head[4], code[2], clen;
    uint64_t n64, where[3];
    memset(head, 0, sizeof(head));
    if (got == sizeof(h)) memcpy(head, h, 16);
    if (got < sizeof(h) || head[0] != STATE_MAGIC)
        golf_die("RESUME '%s': not a train_golf training state (%s)", path, got < sizeof(h) ? "too short" : "wrong magic");
    if (head[1] != STATE_VERSION) golf_die("RESUME '%s': state version %u, this train_golf reads version %u", path, head[1], STATE_VERSION);
    memcpy(&n64, h + 16, 8); memcpy(code, h + 24, 8); memcpy(&clen, h + 32, 4);
    double want = 36.0 + clen + 16 + 8 + 24 + (double)n64 * 4 * (head[3] ? 5 : 4) + 4;   // in double: a damaged count cannot wrap
    if ((double)st.st_size != want)
        golf_die("RESUME '%s': wrong size: the file is truncated or corrupted (%lld bytes, its header says %.0f)\n  hint: an older state (a copy) "
                 "or a fresh run", path, (long long)st.st_size, want);
    size_t n;
    uint8_t *p = read_file(path, &n);
    if (n != (size_t)want || crc32(p, n - 4) != rd32(p + n - 4))
        golf_die("RESUME '%s': %s: the file is truncated or corrupted\n  hint: an older state (a copy) or a fresh run", path,
                 n != (size_t)want ? "wrong size" : "checksum mismatch");
    if ((int)head[2] != dd->world)
        golf_die("RESUME '%s': written by a run of %u ranks, this one has %d\n  hint: resume with the same number of ranks (the data split "
                 "and Muon's shares depend on it)", path, head[2], dd->world);
    for (int k = 0; k < 2; k++)
        if (code[k] != g_code_crc[k])
            golf_die("RESUME '%s': written by other code: %s crc32:%08x there, %08x here\n  hint: resume with the code that wrote it", path,
                     CODE_FILES[k], (unsigned)code[k], (unsigned)g_code_crc[k]);
    Bytes conf = {NULL, 0, 0};
    state_config(tc, &conf);
    const char *theirs = (const char *)p + 36;
    if (clen != conf.n || memcmp(theirs, conf.p, conf.n) != 0) {   // name every entry that differs
        char diff[2048] = "";
        const char *a = theirs, *ae = theirs + clen, *b = (const char *)conf.p, *be = b + conf.n;
        while (a < ae || b < be) {
            const char *an = (const char *)memchr(a, '\n', (size_t)(ae - a)), *bn = (const char *)memchr(b, '\n', (size_t)(be - b));
            if (!an) an = ae;
            if (!bn) bn = be;
            if (an - a != bn - b || memcmp(a, b, (size_t)(an - a)) != 0)
                snprintf(diff + strlen(diff), sizeof(diff) - strlen(diff), "\n  there %.*s, here %.*s", (int)(an - a), a, (int)(bn - b), b);
            a = an < ae ? an + 1 : ae;
            b = bn < be ? bn + 1 : be;
        }
        golf_die("RESUME '%s': written by another config:%s\n  hint: resume with the settings of the run that wrote it", path, diff);
    }
    free(conf.p);
    if (n64 != numel || (head[3] != 0) != (has_ema != 0)) golf_die("internal: RESUME '%s': the same config with another parameter count", path);
    const uint8_t *q = p + 36 + clen;
    int32_t ints[4];
    memcpy(ints, q, 16); memcpy(&rs->train_ms, q + 16, 8); memcpy(where, q + 24, 24);
    rs->step = ints[0]; rs->adam_t = ints[1]; rs->qat_on = ints[2]; rs->stop_after = ints[3];
    if (where[2] != s->files.gl_pathc || where[0] >= where[2])
        golf_die("RESUME '%s': the run read %llu train shards, DATA_PATH '%s' holds %zu\n  hint: resume on the same data", path,
                 (unsigned long long)where[2], tc->data_path, (size_t)s->files.gl_pathc);
    if (where[1] > shard_tokens[where[0]])
        golf_die("RESUME '%s': the run stood at token %llu of '%s', which holds %zu\n  hint: resume on the same data", path,
                 (unsigned long long)where[1], s->files.gl_pathv[where[0]], shard_tokens[where[0]]);
    rs->file = (size_t)where[0];
    rs->pos = (size_t)where[1];
    return p;
}

// state_apply: the checked state p (state_check; freed here) onto the trainer, and the data stream s to its position rs.
static void state_apply(uint8_t *p, Trainer *tr, const RunState *rs, TokenStream *s) {
    size_t numel = tr->host.numel;
    uint32_t clen;
    memcpy(&clen, p + 32, 4);
    if (rs->file != s->file) {
        free(s->tok);
        s->file = rs->file;
        s->tok = load_shard_file(s->files.gl_pathv[s->file], &s->ntok, s->vocab);
    }
    s->pos = rs->pos;
    float *host = (float *)galloc(numel * 4);
    float *tensors[5] = {tr->params, tr->adam_m, tr->adam_v, tr->muon_buf, tr->ema};
    const uint8_t *q = p + 36 + clen + 48;
    for (int k = 0; k < (tr->ema ? 5 : 4); k++, q += numel * 4) {
        memcpy(host, q, numel * 4);
        if (k == 3) muon_shares(tr, host);
        cudaCheck(cudaMemcpy(tensors[k], host, numel * 4, cudaMemcpyHostToDevice));
    }
    params_changed(tr);
    free(host); free(p);
}

// ----------------------------------------------------------------------------------------------------
// 11. main

#ifndef TESTING
static FILE *g_log[2];   // logs/RUN_ID.txt and OUT_DIR/train.log (the run folder's copy, for dev/submit.sh), from logs_open on
static Bytes g_log_early;   // what log0 printed before logs_open: nothing is written before the inputs are checked
static int g_log_opened;
static void log0(const char *fmt, ...) {
    if (!g_master) return;
    va_list ap;
    va_start(ap, fmt); vprintf(fmt, ap); va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (!g_log_opened) {
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        char *line = (char *)galloc((size_t)n + 2);
        va_start(ap, fmt); vsnprintf(line, (size_t)n + 1, fmt, ap); va_end(ap);
        line[n] = '\n';
        bytes_put(&g_log_early, line, (size_t)n + 1);
        free(line);
    }
    for (int k = 0; k < 2; k++)
        if (g_log[k]) { va_start(ap, fmt); vfprintf(g_log[k], fmt, ap); va_end(ap); fputc('\n', g_log[k]); fflush(g_log[k]); }
}

// outputs_check: rank 0's output folders, OUT_DIR and logs/, can be made (a folder it may write in, or a missing one
// in such a folder), checked at the start without writing anything (logs_open makes them); dies naming the folder.
static void outputs_check(const TrainConfig *tc) {
    const char *dirs[2] = {tc->out_dir, "logs"}, *names[2] = {"OUT_DIR", "the log folder"};
    for (int k = 0; k < 2; k++) {
        struct stat st;
        char parent[1100];
        if (stat(dirs[k], &st) == 0) {
            if (!S_ISDIR(st.st_mode)) golf_die("%s '%s': not a folder", names[k], dirs[k]);
            if (access(dirs[k], W_OK | X_OK) != 0) golf_die("%s '%s': cannot write in it: %s", names[k], dirs[k], strerror(errno));
            continue;
        }
        snprintf(parent, sizeof(parent), "%s", dirs[k]);
        char *slash = strrchr(parent, '/');
        while (slash && slash > parent && slash[1] == 0) { *slash = 0; slash = strrchr(parent, '/'); }   // "runs/a/" is "runs/a"
        if (!slash) snprintf(parent, sizeof(parent), ".");
        else if (slash == parent) parent[1] = 0;
        else *slash = 0;
        if (access(parent, W_OK | X_OK) != 0) golf_die("%s '%s': cannot create it: %s", names[k], dirs[k], strerror(errno));
    }
}

// logs_open: rank 0's log files, logs/RUN_ID.txt and OUT_DIR/train.log (OUT_DIR created if missing; a resumed run
// appends), once the inputs are checked; they start with what log0 printed until now.
static void logs_open(const TrainConfig *tc) {
    g_log_opened = 1;
    if (!g_master) return;
    mkdir("logs", 0777);
    if (mkdir(tc->out_dir, 0777) != 0 && errno != EEXIST) golf_die("OUT_DIR '%s': cannot create it: %s", tc->out_dir, strerror(errno));
    char path[2048];
    const char *mode = tc->resume[0] ? "a" : "w";   // a resumed run continues its logs
    for (int k = 0; k < 2; k++) {
        if (k == 0) snprintf(path, sizeof(path), "logs/%s.txt", tc->run_id);
        else snprintf(path, sizeof(path), "%s/train.log", tc->out_dir);
        if (!(g_log[k] = fopen(path, mode))) golf_die("cannot create '%s': %s", path, strerror(errno));
        if (fwrite(g_log_early.p, 1, g_log_early.n, g_log[k]) != g_log_early.n || fflush(g_log[k]) != 0)
            golf_die("cannot write '%s': %s", path, strerror(errno));
        if (k == 0) printf("%s\n", path);
    }
    free(g_log_early.p);
    memset(&g_log_early, 0, sizeof(g_log_early));
}

#ifdef GOLF_CPU
// cpu_model_name: the processor's name from /proc/cpuinfo ("CPU" where there is none), for the CPU build's hardware line.
static const char *cpu_model_name(void) {
    static char name[256] = "CPU";
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        snprintf(name, sizeof(name), "%s", colon + 2);
        name[strcspn(name, "\n")] = 0;
        break;
    }
    if (f) fclose(f);
    return name;
}
#endif

// log_code: the log's "code:" line, size and CRC-32 of golf_infer.c (the artifact's code) and train_golf.cu beside the binary.
// Their CRCs are kept in g_code_crc (the training state records them).
static void log_code(const char *argv0) {
    char line[1024] = "code:", path[4096];
    for (int k = 0; k < 2; k++) {
        code_file(argv0, k, path, sizeof(path));
        struct stat st;
        size_t n, len = strlen(line);
        if (stat(path, &st) != 0) { snprintf(line + len, sizeof(line) - len, " %s missing (%.300s)", CODE_FILES[k], path); continue; }
        uint8_t *p = read_file(path, &n);
        g_code_crc[k] = crc32(p, n);
        snprintf(line + len, sizeof(line) - len, " %s bytes:%zu crc32:%08x", CODE_FILES[k], n, (unsigned)g_code_crc[k]);
        free(p);
    }
    log0("%s", line);
}

// shard_check: a shard's header (magic, version) and size against its token count (golf_infer.c's shard format;
// load_shard_file checks the same and the tokens when the shard is read); its token count; dies naming the file.
static size_t shard_check(const char *path) {
    FILE *f = fopen(path, "rb");
    uint8_t h[12];
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) golf_die("shard '%s': cannot read it: %s", path, strerror(errno));
    size_t got = fread(h, 1, sizeof(h), f);
    fclose(f);
    if (got != sizeof(h) || (size_t)st.st_size < SHARD_HEADER_INTS * 4 || rd32(h) != SHARD_MAGIC || rd32(h + 4) != SHARD_VERSION)
        golf_die("shard '%s': bad header (expected magic %d, version %d)", path, SHARD_MAGIC, SHARD_VERSION);
    size_t count = rd32(h + 8);
    if ((size_t)st.st_size != SHARD_HEADER_INTS * 4 + 2 * count)
        golf_die("shard '%s': %zu bytes, but its header's %zu tokens need %zu (truncated?)", path, (size_t)st.st_size, count, SHARD_HEADER_INTS * 4 + 2 * count);
    return count;
}

// shard_scan: the first token of a shard (checked by shard_check: count tokens) that is not below vocab, its position
// in *pos; -1 when there is none. The file is mapped, not copied, and its largest token found on OpenMP threads.
static int shard_scan(const char *path, size_t count, int vocab, size_t *pos) {
    size_t bytes = SHARD_HEADER_INTS * 4 + 2 * count;
    int fd = open(path, O_RDONLY);
    void *m = fd < 0 ? MAP_FAILED : mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) golf_die("shard '%s': cannot read it: %s", path, strerror(errno));
    close(fd);
    madvise(m, bytes, MADV_SEQUENTIAL);
    const uint16_t *tok = (const uint16_t *)((const uint8_t *)m + SHARD_HEADER_INTS * 4);   // little-endian, as the host
    int top = 0, bad = -1;
OMP(omp parallel for reduction(max : top) schedule(static))
    for (size_t i = 0; i < count; i++) top = tok[i] > top ? tok[i] : top;
    for (size_t i = 0; top >= vocab && i < count; i++)
        if (tok[i] >= vocab) { bad = tok[i]; *pos = i; break; }
    munmap(m, bytes);
    return bad;
}

// train_scan: every train shard's tokens checked against vocab before any work (stream_open read the first one's; the
// others' token counts are shard_tokens): shard f by rank f % world, the verdict agreed by the ranks (dd connected);
// dies on every rank naming the first shard with a token >= vocab, the token and its position.
static void train_scan(const TokenStream *s, const size_t *shard_tokens, int vocab, const Dist *dd) {
    size_t nfiles = s->files.gl_pathc;
    double first = 0, what[2] = {0, 0};   // nfiles - the first bad shard this rank found (0: none); its token and position
    for (size_t f = 1; f < nfiles && first == 0; f++) {
        size_t pos = 0;
        int t = (int)(f % (size_t)dd->world) == dd->rank ? shard_scan(s->files.gl_pathv[f], shard_tokens[f], vocab, &pos) : -1;
        if (t >= 0) { first = (double)(nfiles - f); what[0] = t; what[1] = (double)pos; }
    }
    double agreed = first;
    dist_reduce(dd, &agreed, 1, RED_MAX);
    if (agreed == 0) return;
    if (first != agreed) what[0] = what[1] = 0;   // the rank that read the first bad shard tells the others
    dist_reduce(dd, what, 2, RED_SUM);
    golf_die("shard '%s': token %d at position %zu is outside the model's vocabulary (%d)\n  hint: the train shards must come from the "
             "tokenizer of TOKENIZER_PATH", s->files.gl_pathv[nfiles - (size_t)agreed], (int)what[0], (size_t)what[1], vocab);
}

// SIGTERM / SIGINT during training: the first is noted (main's loop finishes the step, writes the training state and
// exits 128 + the signal: 143, 130); a second one exits at once.
static volatile sig_atomic_t g_signal;
static void on_signal(int sig) {
    if (g_signal) _exit(128 + sig);
    g_signal = sig;
}
static void signals_catch(int on) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on ? on_signal : SIG_DFL;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

// nan_hook: GOLF_INJECT_NAN=STEP[:NAME] (tests): at training step STEP (as the log numbers it, from 1) a NaN goes into
// the gradient of parameter NAME (default: the first) on every rank, or NAME=loss into the step's first token loss.
// Returns STEP (0: unset) and the tensor index in *tensor (-1: the loss); dies on a bad value.
static int nan_hook(const GolfModel *m, int *tensor) {
    const char *v = getenv("GOLF_INJECT_NAN");
    if (!v || !*v) return 0;
    char *end;
    long st = strtol(v, &end, 10);
    if (end == v || st < 1 || st > 2147483647L || (*end && *end != ':'))
        golf_die("environment GOLF_INJECT_NAN='%s': not STEP[:NAME] with STEP >= 1", v);
    *tensor = 0;
    if (*end == ':') {
        const char *name = end + 1;
        *tensor = strcmp(name, "loss") == 0 ? -1 : -2;
        for (int i = 0; i < m->n && *tensor == -2; i++) if (strcmp(m->spec[i].name, name) == 0) *tensor = i;
        if (*tensor == -2) golf_die("environment GOLF_INJECT_NAN='%s': '%s' is neither loss nor a parameter of this model", v, name);
    }
    return (int)st;
}

// hang_hook: GOLF_INJECT_HANG=RANK:STEP (tests): rank RANK stops in training step STEP (from 1) after issuing its
// forward and backward, before it marks them done, as if a kernel never ended. Returns STEP on that rank, else 0.
static int hang_hook(int rank) {
    const char *v = getenv("GOLF_INJECT_HANG");
    if (!v || !*v) return 0;
    char *end, *end2;
    long r = strtol(v, &end, 10), st = *end == ':' ? strtol(end + 1, &end2, 10) : 0;
    if (end == v || *end != ':' || r < 0 || st < 1 || st > 2147483647L || *end2)
        golf_die("environment GOLF_INJECT_HANG='%s': not RANK:STEP with STEP >= 1", v);
    return r == rank ? (int)st : 0;
}

// --- the training step's micro-steps: issued eagerly, or captured once as a CUDA graph and replayed ---
// micro_steps: the gradients zeroed, then per micro-step m < accum: the batch xs[m], ys[m] (pinned host memory,
// accum x N tokens each) into tr->tok, tr->tgt, forward + backward (gradients summed into tr->grads), the per-token
// losses into losses[m] (pinned, accum x N). All of it on the per-thread default stream (train_golf is built with
// --default-stream per-thread) with no host sync, so the same calls either run now or are recorded by a capture.
// What changes from step to step lives in memory the calls read: the tokens in xs / ys, the weights on the device.
static void micro_steps(Trainer *tr, int accum, float grad_scale, const int32_t *xs, const int32_t *ys, float *losses, int capturing) {
    size_t N = (size_t)tr->N;
    cudaCheck(cudaMemsetAsync(tr->grads, 0, tr->host.numel * 4, cudaStreamPerThread));
    for (int micro = 0; micro < accum; micro++) {
        EMU_MARK("micro");
        cudaCheck(cudaMemcpyAsync(tr->tok, xs + micro * N, N * sizeof(int), cudaMemcpyHostToDevice, cudaStreamPerThread));
        cudaCheck(cudaMemcpyAsync(tr->tgt, ys + micro * N, N * sizeof(int), cudaMemcpyHostToDevice, cudaStreamPerThread));
        forward(tr, grad_scale, 1);
        // eager: the last micro-step all-reduces its buckets during backward (section 9); a captured step issues them
        // after its replay (the capture holds one stream)
        grad_buckets_begin(tr, micro == accum - 1 && !capturing);
        backward(tr);
        cudaCheck(cudaMemcpyAsync(losses + micro * N, tr->loss, N * sizeof(float), cudaMemcpyDeviceToHost, cudaStreamPerThread));
    }
}

// StepGraph (CUDA_GRAPH=1): micro_steps captured once and replayed. key: what makes a step's launch sequence differ
// (the loop schedule on: other layers; QAT on: dparam points at the fake-quantized weights). A step whose key is not
// the step before's runs eagerly and drops the graph (so step 0 runs eagerly: cuBLASLt plans, heuristics and every
// lazy choice happen outside a capture); the next step with the same key captures again.
typedef struct { cudaGraph_t graph; cudaGraphExec_t exec; int key; } StepGraph;
static void step_graph_drop(StepGraph *g) {
    if (g->exec) cudaCheck(cudaGraphExecDestroy(g->exec));
    if (g->graph) cudaCheck(cudaGraphDestroy(g->graph));
    g->exec = NULL;
    g->graph = NULL;
}
static void step_graph_capture(StepGraph *g, Trainer *tr, int accum, float grad_scale, const int32_t *xs, const int32_t *ys, float *losses) {
    params_changed(tr);   // every step starts on new weights: the graph must hold the bf16 shadow's rebuild
    // ThreadLocal: NCCL's and MPI's helper threads may call CUDA during the capture (Global mode would invalidate it)
    cudaCheck(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal));
    micro_steps(tr, accum, grad_scale, xs, ys, losses, 1);
    cudaCheck(cudaStreamEndCapture(cudaStreamPerThread, &g->graph));
    cudaCheck(cudaGraphInstantiate(&g->exec, g->graph, 0));
}
// step_loss: the step's train_loss from the per-token losses (accum x N), summed as train_gpt.py's log reports it
static double step_loss(const float *losses, int accum, size_t N) {
    double train_loss = 0;
    for (int micro = 0; micro < accum; micro++) {
        double s = 0;
        for (size_t k = 0; k < N; k++) s += losses[micro * N + k];
        train_loss += s / N / accum;
    }
    return train_loss;
}

int main(int argc, char **argv) {
    g_golf_prog = "train_golf";
    Dist dd = dist_init(&argc, &argv);
    g_master = dd.rank == 0;
    g_rank = dd.rank;
    Trainer tr;
    memset(&tr, 0, sizeof(tr));
    tr.rank = dd.rank; tr.world = dd.world;
    config_parse(&tr.tc, argc, argv);
    const TrainConfig *tc = &tr.tc;
    const char *bad = config_validate(tc, dd.world);
    if (bad) golf_die("config: %s", bad);
    if (g_master && !tc->plan_memory) outputs_check(tc);   // made, and the logs opened, once the inputs are checked (logs_open)
    if (tc->plan_memory) {   // the device memory plan (bench_train.sh --memory): no log files, no GPU, no kernel
        if (dd.world > 1) golf_die("PLAN_MEMORY=1: run it as one process (the plan is per GPU and the same for every world size)");
        int accum = 8 / dd.world;
        model_config(tc, &tr.c);
        model_layout(&tr.host, &tr.c);
        g_mem.plan_only = 1;
        trainer_alloc(&tr, (int)((size_t)tc->train_batch_tokens / (dd.world * accum) / tc->train_seq_len));
        if (g_master) memory_plan_print(&tr);
        dist_finish(&dd);
        return 0;
    }
    config_print(tc, log0);
    char *cmd = (char *)galloc(65536);
    config_command(argc, argv, cmd, 65536);
    log0("command: %s", cmd);
    free(cmd);
    log_code(argv[0]);
    g_dist_timeout_s = tc->dist_timeout;
    g_gptq_reserve_s = tc->gptq_reserve_seconds;

    // the inputs, checked before any work: the tokenizer against VOCAB_SIZE, the val split (every token < VOCAB_SIZE),
    // every train shard's header and size now, and its tokens (train_scan) once the ranks are connected; RESUME's state
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
    lut.sidecar = load_sidecars(pattern, NULL, nval);   // a CaseOps val set: val_bpb counts its original bytes
    size_t nval_all = nval - 1;
    if (tc->val_max_tokens > 0 && (size_t)tc->val_max_tokens + 1 < nval) nval = (size_t)tc->val_max_tokens + 1;   // golf_infer --max-tokens's cut
    if (nval < (size_t)tc->train_seq_len + 1) golf_die("the val split (%zu tokens) is shorter than one sequence", nval);
    nval = (nval - 1) / tc->train_seq_len * tc->train_seq_len + 1;
    if (nval - 1 < nval_all) log0("val_loader:shards pattern=%s tokens:%zu (the first %zu of %zu: VAL_MAX_TOKENS=%d)", pattern, nval - 1, nval - 1, nval_all, tc->val_max_tokens);
    else log0("val_loader:shards pattern=%s tokens:%zu", pattern, nval - 1);
    if (lut.sidecar) log0("val_loader:bytes from the CaseOps byte sidecars %s/fineweb_val_bytes_*.bin", tc->data_path);
    snprintf(pattern, sizeof(pattern), "%s/fineweb_train_*.bin", tc->data_path);
    TokenStream stream;
    double scan_ms = wall_ms();   // the train shards' checks: this rank's time
    stream_open(&stream, pattern, tc->vocab_size);
    size_t nfiles = stream.files.gl_pathc, ntrain = stream.ntok, *shard_tokens = (size_t *)galloc(nfiles * sizeof(size_t));
    shard_tokens[0] = stream.ntok;
    for (size_t f = 1; f < nfiles; f++) ntrain += shard_tokens[f] = shard_check(stream.files.gl_pathv[f]);
    scan_ms = wall_ms() - scan_ms;
    model_config(tc, &tr.c);   // validated above
    model_layout(&tr.host, &tr.c);
    RunState rs = {0, 0, 0, -1, 0, 0, 0};
    uint8_t *state = tc->resume[0] ? state_check(tc->resume, tc, &dd, tr.host.numel, tc->ema_decay > 0, &stream, shard_tokens, &rs) : NULL;

    dist_init_gpu(&dd, tc->dist_timeout);
    watchdog_start(&dd, tc->dist_timeout);
    scan_ms -= wall_ms();
    train_scan(&stream, shard_tokens, tc->vocab_size, &dd);
    scan_ms += wall_ms();
    logs_open(tc);
    log0("train_loader:shards pattern=%s files:%zu tokens:%zu (every token below VOCAB_SIZE: checked in %.0fms)", pattern, nfiles, ntrain, scan_ms);
    free(shard_tokens);
    {
        cudaDeviceProp prop;
        char host[256] = "?";
        cudaCheck(cudaGetDeviceProperties(&prop, dd.local_rank));
        gethostname(host, sizeof(host) - 1);
#ifdef GOLF_CPU
        char name[512];   // the CPU build: this machine's processor and memory, not the emulated device's
        snprintf(name, sizeof(name), "CPU build on %s, %ld cores: CUDA emulated by dev/cuda_cpu.h, not a GPU's speed", cpu_model_name(),
                 sysconf(_SC_NPROCESSORS_ONLN));
        log0("hardware: %d x %s (%zu MiB; rank 0 on host %s; launch %s)", dd.world, name, (size_t)((double)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE)) >> 20,
             host, DIST_MODE_NAME[dd.mode]);
#else
        log0("hardware: %d x %s (%zu MiB; rank 0 on host %s; launch %s)", dd.world, prop.name, (size_t)(prop.totalGlobalMem >> 20), host,
             DIST_MODE_NAME[dd.mode]);
#endif
    }
    int accum = 8 / dd.world;
    size_t local = (size_t)tc->train_batch_tokens / (dd.world * accum);
    trainer_alloc(&tr, (int)(local / tc->train_seq_len));
    grad_buckets_init(&tr);
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
    log0("model_params:%zu", tr.host.nparams);
    log0("world_size:%d grad_accum_steps:%d", dd.world, accum);

    int32_t *chunk = (int32_t *)galloc((local + 1) * dd.world * 4);
    float grad_scale = 1.0f / (float)(local * accum * dd.world);   // mean over the global batch, summed over ranks
    char state_path[2048];
    snprintf(state_path, sizeof(state_path), "%s/train_state.bin", tc->out_dir);
    if (state) {
        state_apply(state, &tr, &rs, &stream);
        log0("resume: %s at step:%d/%d train_time:%.0fms", tc->resume, rs.step, tc->iterations, rs.train_ms);
    }
    int hang_step = hang_hook(dd.rank);
    int nan_tensor = 0, nan_step = nan_hook(&tr.host, &nan_tensor), skip_nonfinite = strcmp(tc->on_nonfinite, "skip") == 0;

    // training; SIGTERM / SIGINT end it after the step they arrive in
    signals_catch(1);
    watchdog_arm(1);
    double train_ms = rs.train_ms, t0 = wall_ms(), pre_loss = 0, pre_bpb = 0, state_ms = t0;
    int step = rs.step, stop_after = rs.stop_after, adam_t = rs.adam_t, qat_on = rs.qat_on;
    // the step's batches and per-token losses in pinned host memory (copied by micro_steps, read when a step is logged)
    int32_t *xs, *ys;
    float *losses;
    cudaCheck(cudaMallocHost(&xs, accum * local * sizeof(int32_t)));
    cudaCheck(cudaMallocHost(&ys, accum * local * sizeof(int32_t)));
    cudaCheck(cudaMallocHost(&losses, accum * local * sizeof(float)));
    StepGraph graph = {NULL, NULL, -1};
    for (;;) {
        watchdog_step(step);
        int last = step == tc->iterations || (stop_after >= 0 && step >= stop_after);
        if (last && tr.ema) {   // from here on the weights are the EMA: evaluated, saved and exported
            cudaCheck(cudaMemcpy(tr.params, tr.ema, tr.host.numel * 4, cudaMemcpyDeviceToDevice));
            params_changed(&tr);
            log0("ema: the final weights are the EMA (decay %g)", tc->ema_decay);
        }
        if (last || (tc->val_loss_every > 0 && step % tc->val_loss_every == 0)) {
            cudaCheck(cudaDeviceSynchronize());
            train_ms += wall_ms() - t0;
            double vl, vb;
            evaluate_val(&tr, &dd, val, nval, &lut, 0, &vl, &vb);
            pre_loss = vl; pre_bpb = vb;
            log0("step:%d/%d val_loss:%.4f val_bpb:%.4f train_time:%.0fms step_avg:%.2fms", step, tc->iterations, vl, vb, train_ms, train_ms / (step > 1 ? step : 1));
            t0 = wall_ms();
        }
        if (last) {
            if (stop_after >= 0 && step < tc->iterations) log0("stopping_early: wallclock_cap train_time:%.0fms step:%d/%d", train_ms, step, tc->iterations);
            break;
        }
        double elapsed = train_ms + wall_ms() - t0, scale = lr_mul(tc, step, elapsed);
        RunState before = {step, adam_t, qat_on, stop_after, elapsed, stream.file, stream.pos};   // the last good state
        tr.looped = tr.c.loop_enc > 0 && training_fraction(tc, step, elapsed) >= tc->loop_start_frac;   // depth recurrence from LOOP_START_FRAC
        if (qat_on != qat_active(tc, step, elapsed)) { qat_on = !qat_on; log0("qat:%s step:%d scheme:%s", qat_on ? "on" : "off", step, tc->quant); }
        if (qat_on) qat_weights(&tr, 1);
        EMU_MARK("step");
        for (int micro = 0; micro < accum; micro++) next_batch(&stream, chunk, xs + micro * local, ys + micro * local, local, dd.rank, dd.world);
        int key = tr.looped * 2 + qat_on;
        if (tc->cuda_graph && key == graph.key) {
            if (!graph.exec) {
                step_graph_capture(&graph, &tr, accum, grad_scale, xs, ys, losses);
                log0("cuda_graph: captured the %d micro-steps at step:%d", accum, step + 1);
            }
            cudaCheck(cudaGraphLaunch(graph.exec, cudaStreamPerThread));
            grad_buckets_begin(&tr, 1);   // the replayed backward issued no buckets: all of them now, after it
            grad_ready(&tr, -1);
        } else {
            step_graph_drop(&graph);
            micro_steps(&tr, accum, grad_scale, xs, ys, losses, 0);
        }
        graph.key = key;
        if (hang_step == step + 1) {   // GOLF_INJECT_HANG: this rank's work never ends (its watchdog still beats)
            fprintf(stderr, "train_golf: rank %d: GOLF_INJECT_HANG: hangs in step %d's work\n", dd.rank, step + 1);
            for (;;) pause();
        }
        watchdog_work(step + 1);
        EMU_MARK("optimizer");
        grad_buckets_wait(&tr);   // the gradients summed over the ranks (section 9's buckets)
        if (step == 0 && tc->dump_grads[0] && g_master) {
            float *g = (float *)galloc(tr.host.numel * sizeof(float));
            cudaCheck(cudaMemcpy(g, tr.grads, tr.host.numel * 4, cudaMemcpyDeviceToHost));   // waits for the step's losses too
            float l = (float)step_loss(losses, accum, local);
            container_write(tc->dump_grads, &tr.host, g, "grad.", 0, &l);
            free(g);
        }
        // a non-finite loss or gradient norm (any rank's loss; the norm is the same on every rank): stop before the
        // update with the last good state written, or skip the update (ON_NONFINITE)
        if (nan_step == step + 1 && nan_tensor >= 0) cudaCheck(cudaMemset(tr.grads + tr.host.spec[nan_tensor].offset, 0xff, 4));
        grad_sumsq(&tr);
        float sumsq;
        cudaCheck(cudaMemcpy(&sumsq, tr.norm, 4, cudaMemcpyDeviceToHost));   // waits for the step: its losses are in too
        if (nan_step == step + 1 && nan_tensor < 0) losses[0] = NAN;
        double train_loss = step_loss(losses, accum, local), bad[2] = {isfinite(train_loss) ? 0.0 : 1.0, isfinite(sumsq) ? 0.0 : 1.0};
        dist_reduce(&dd, bad, 2, RED_MAX);
        if (bad[0] || bad[1]) {
            char what[512] = "";
            if (bad[1]) {   // the first tensor in table order holding a NaN or an infinity
                float *g = (float *)galloc(tr.host.numel * 4);
                cudaCheck(cudaMemcpy(g, tr.grads, tr.host.numel * 4, cudaMemcpyDeviceToHost));
                size_t i = 0;
                while (i < tr.host.numel && isfinite(g[i])) i++;
                int t = 0;
                while (t + 1 < tr.host.n && tr.host.spec[t + 1].offset <= i) t++;
                snprintf(what, sizeof(what), "gradient norm^2 %g, first non-finite gradient in %s", sumsq, i < tr.host.numel ? tr.host.spec[t].name : "none");
                free(g);
            }
            if (bad[0]) snprintf(what + strlen(what), sizeof(what) - strlen(what), "%strain loss %g%s", bad[1] ? "; " : "", train_loss,
                                 isfinite(train_loss) ? " here, non-finite on another rank" : "");
            if (!skip_nonfinite) {
                watchdog_arm(0);   // every rank leaves now: a peer's closed connection is no failure
                state_write(state_path, &tr, &dd, &before, stream.files.gl_pathc);
                log0("nonfinite: step:%d/%d (%s): stopped before its update; the last good state (after step %d) is in %s", step + 1,
                     tc->iterations, what, step, state_path);
                dist_finish(&dd);
                golf_die("a non-finite train loss or gradient at step %d (%s)\n  hint: RESUME=%s continues from the step before; ON_NONFINITE=skip "
                         "skips such steps; a lower learning rate or GRAD_CLIP_NORM may avoid them", step + 1, what, state_path);
            }
            log0("nonfinite: step:%d/%d (%s): its update skipped (ON_NONFINITE=skip)", step + 1, tc->iterations, what);
        }
        if (qat_on) qat_weights(&tr, 0);
        if (!bad[0] && !bad[1]) {
            optimizer_step(&tr, scale, muon_momentum_at(tc, step), ++adam_t);
            if (tr.ema) LAUNCH1D(ema_update, tr.host.numel, tr.ema, tr.params, tr.host.numel, (float)tc->ema_decay);
        }
        step++;
        EMU_MARK("step_end");
        cudaCheck(cudaDeviceSynchronize());
        double approx = train_ms + wall_ms() - t0;
        if (tc->train_log_every > 0 && (step <= 10 || step % tc->train_log_every == 0 || stop_after >= 0)) {
            // eta: the training time left, at this step_avg, to ITERATIONS or to the wallclock cap, whichever comes first
            double eta = (tc->iterations - step) * approx / step;
            if (train_cap_seconds(tc) > 0) eta = fmin(eta, fmax(0.0, 1000.0 * train_cap_seconds(tc) - approx));
            log0("step:%d/%d train_loss:%.4f train_time:%.0fms step_avg:%.2fms eta:%.0fs", step, tc->iterations, train_loss, approx, approx / step, eta / 1000);
        }
        // agreed by every rank: the wallclock cap reached, a signal, the state due by time (each rank's clock)
        double flags[3] = {train_cap_seconds(tc) > 0 && approx >= 1000.0 * train_cap_seconds(tc) ? 1.0 : 0.0, (double)g_signal,
                           tc->checkpoint_every_seconds > 0 && wall_ms() - state_ms >= 1000.0 * tc->checkpoint_every_seconds ? 1.0 : 0.0};
        dist_reduce(&dd, flags, 3, RED_MAX);
        if (stop_after < 0 && flags[0]) stop_after = step;
        if (flags[1] || flags[2] || (tc->checkpoint_every > 0 && step % tc->checkpoint_every == 0)) {
            if (flags[1]) watchdog_arm(0);   // every rank leaves after this state
            double w0 = wall_ms();
            RunState now = {step, adam_t, qat_on, stop_after, approx, stream.file, stream.pos};
            state_write(state_path, &tr, &dd, &now, stream.files.gl_pathc);
            log0("state: step:%d/%d written to %s in %.0fms", step, tc->iterations, state_path, wall_ms() - w0);
            state_ms = wall_ms();
            t0 += state_ms - w0;   // writing the state is not training time
            watchdog_beat();
        }
        if (flags[1]) {
            int sig = (int)flags[1];
            log0("signal: %s during step:%d/%d: stopped after it; RESUME=%s continues the run", sig == SIGINT ? "SIGINT" : "SIGTERM", step,
                 tc->iterations, state_path);
            dist_finish(&dd);
            exit(128 + sig);
        }
    }
    signals_catch(0);   // the final evaluation and export: a signal ends the run at once
    watchdog_arm(0);    // the ranks part at different times from here on (socket deadlines still hold)
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    // train_golf frees nothing before this point: its high-water is what dmalloc handed out; the device's use adds the
    // CUDA context and cuBLAS's workspace
#ifdef GOLF_CPU
    (void)free_b; (void)total_b;   // the emulated device's sizes are not this machine's
    log0("peak memory: %zu MiB allocated by train_golf (high-water %zu bytes; plan: PLAN_MEMORY=1); the CPU build's emulated device "
         "allocations peaked at %zu bytes of host memory", g_mem.peak >> 20, g_mem.peak, golf_emu::heap().peak);
#else
    log0("peak memory: %zu MiB allocated by train_golf (high-water %zu bytes; plan: PLAN_MEMORY=1), device %zu MiB in use of %zu MiB",
         g_mem.peak >> 20, g_mem.peak, (total_b - free_b) >> 20, total_b >> 20);
#endif
    step_graph_drop(&graph);
    cudaCheck(cudaFreeHost(xs));
    cudaCheck(cudaFreeHost(ys));
    cudaCheck(cudaFreeHost(losses));

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
        char tmp[4096];   // written under a temporary name, then renamed: never a half-written blob
        snprintf(tmp, sizeof(tmp), "%s.tmp", blob_path);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(blob.p, 1, blob.n, f) != blob.n || fclose(f) != 0) { remove(tmp); golf_die("cannot write '%s': %s", tmp, strerror(errno)); }
        if (rename(tmp, blob_path) != 0) golf_die("cannot rename '%s' to '%s': %s", tmp, blob_path, strerror(errno));
        // the blob's own closing CRC-32 (of every byte before it); a CRC over the whole blob would be CRC-32's constant residue
        log0("Serialized model %s: %zu bytes crc32:%08x", tc->quant, blob.n, (unsigned)crc32(blob.p, blob.n - 4));
    }
    GolfModel back;
    char why[512];
    if ((err = blob_load(&back, blob.p, blob.n, why, sizeof(why)))) golf_die("the exported blob does not decode: %s", err);
    memcpy(tr.host.params, back.params, back.numel * 4);
    params_upload(&tr);
    double qt = wall_ms(), ql, qb;
    evaluate_val(&tr, &dd, val, nval, &lut, 1, &ql, &qb);   // with TTT when TTT_CHUNK_TOKENS > 0
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
