/*
 * golf_infer.c — the code half of a golf artifact: decode a model blob, run it on CPU, score val_bpb.
 *
 * Contract
 *   Plain C99 + libc + libm (OpenMP when compiled with -fopenmp). This file's bytes count in the
 *   16,000,000-byte budget together with the model blob, so it holds only what scoring needs. It is the
 *   single source of truth for the blob format, the float32 checkpoint format, the parameter table and
 *   the CPU forward pass: other golf code includes it with GOLF_INFER_NO_MAIN defined.
 *
 *   ./golf_infer MODEL --val 'DIR/fineweb_val_*.bin' (--tokenizer M.model | --byte260) [--seq-len T]
 *                [--stride S] [--max-tokens N] [--threads K] [--val-bytes 'DIR/fineweb_val_bytes_*.bin']
 *       prints val_loss, val_bpb, the tokens and bytes scored, and the artifact line
 *       `artifact: golf_infer.c N + model M = T bytes (limit 16000000) OK|OVER`; a long evaluation also prints a
 *       progress line on stderr every 10 s. --threads: 1..4096 (default OMP_NUM_THREADS, else every core), at most
 *       the cores this process may use; waiting threads sleep unless OMP_WAIT_POLICY is set.
 *   ./golf_infer MODEL (--tokenizer M.model | --byte260) (--generate "TEXT" | --generate-ids "ID ...") [-n 200]
 *                [--temp 0.8] [--top-k 40] [--seed S]
 *       prints the prompt and a sampled continuation, always valid UTF-8 (a byte that does not complete a character
 *       prints as U+FFFD); the prompt's and the continuation's ids go to stderr
 *   ./golf_infer MODEL --logits-ids "ID ..."  prints the logits of every position (for tests)
 *   MODEL is a blob (.golf) or a float32 checkpoint; the magic tells which. val_bpb's bytes come from the tokenizer's
 *   pieces, or from CaseOps byte sidecars (fineweb_val_bytes_N.bin, a shard's layout holding per val token the bytes of
 *   original text it stands for) when --val-bytes names them or every val shard has one beside it.
 *   Build: cc -O3 -std=c99 -march=native -ffp-contract=fast -fopenmp golf_infer.c -lm (-march, -ffp-contract and
 *   -fopenmp are optional: without them the same code builds for any target, slower).
 *
 * Formats (all little-endian)
 *   Config words, shared by both headers (config_header):
 *       [3] vocab_size [4] num_layers [5] model_dim [6] num_heads [7] num_kv_heads [8] mlp_hidden
 *       [9] tie_embeddings [10] rope_base (float32 bits) [11] logit_softcap (float32 bits) [12] train_seq_len
 *       architecture options (0 = off, the baseline): [14] mlp_leaky_slope (float32 bits) [15] bigram_vocab_size
 *       [16] bigram_dim [17] smear_gate [18] xsa_last_n [19] rope_dims [20] ln_scale [21] parallel_from
 *       [22] skip_gates [23] attn_out_gate [24] loop encoder length [25] loop decoder length
 *       [26..57] the loop schedule's physical layer indices, encoder first
 *       [58] parallel_form (0 04-29's lanes, 1 03-31's, 2 03-31's counting schedule positions) [59] attn_out_gate's
 *       scale (float32 bits; 0 = 1, as files before version 4 hold it) [60] doc_attention (0 in files before version 4)
 *       [61] ValueEmbedding width ve_dim (0 = off) [62..63] its schedule positions, bit p of the 64-bit mask (word 62
 *       bits 0..31, word 63 positions 32..63; ve_layer_scales holds one scale per set bit in increasing order) (0 in
 *       files before version 5).
 *   Checkpoint (float32, written by train_golf and test/reference.py, read here):
 *     256 x int32 header: [0] 20261125 magic  [1] version 5 (4 is read as version 5 with words 61..63 zero, 3 also with
 *       words 58..60 zero; 1 and 2 too
 *       when SMEAR_GATE, SKIP_GATES and PARALLEL_FROM are off: version 3 changed their forms to the records')  [2] number of
 *       tensor records, the config words, [13] steps trained, rest 0.
 *     Then records: int32 name_len, name (train_gpt.py state_dict key), int32 dtype (0 float32, 1 int32),
 *     int32 ndim, int32 dims[ndim], prod(dims) elements row-major. Records may come in any order; the
 *     model's tensors are found by name and must have the parameter table's shapes. Others are ignored.
 *   Blob (.golf, written by dev/golf_export.c, read here):
 *     64 x uint32 header: [0] 20261124 magic [1] 5 version (2 to 4 read as for checkpoints) [2] total blob bytes (with the CRC), the config
 *       words, [13] number of tensors.
 *     Tensor table, one 8-byte entry per tensor of the parameter table, in its order:
 *       uint8 scheme, uint8 code model, uint16 group (ternary: columns per scale, 0 = whole row), uint32 payload bytes.
 *     Payloads in the same order. A tensor is rows x cols (rows = first dim, 1 for vectors):
 *       FP32 / FP16: the values.
 *       INT8 / INT6 / INT5 / INT4 (b bits): fp16 scale per row, then the codes q in [-(2^(b-1)-1), 2^(b-1)-1]
 *         range-coded; value = q * scale.
 *       TERNARY: fp16 scale per group of `group` columns of each row, then codes in {-1, 0, 1} range-coded.
 *     Codes are range-coded in row-major order as binary decisions, each with an adaptive probability
 *     (16 bits, start 1/2, moved 1/2^k of the way to each outcome, k = 1 rising to 7 with the count), fresh per
 *     tensor, under one of two code models (section 5): the symbol q + 2^(b-1) (ternary q + 1) as b bits
 *     through a binary tree, or zero / sign / exponent / mantissa decisions conditioned on the magnitudes of
 *     the column above and the row to the left. LZMA-style carry-less coder: 32-bit range, bound =
 *     (range >> 16) * p, renormalized bytewise below 2^24, 5-byte flush.
 *     Last 4 bytes: CRC-32 (IEEE) of every byte before them.
 *
 * Contents
 *   1. checks and utilities   2. config and parameter table   3. tokenizer pieces and val_bpb tables
 *   4. checkpoint reader      5. range decoder                6. blob reader
 *   7. CPU forward pass       8. shards and evaluation        9. generation      10. main
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef _OPENMP
#define OMP(directive) _Pragma(#directive)
#else
#define OMP(directive)
#endif
#if defined(__GNUC__)
#define GOLF_UNUSED __attribute__((unused))
#else
#define GOLF_UNUSED
#endif

// ----------------------------------------------------------------------------------------------------
// 1. checks and utilities

static const char *g_golf_prog = "golf_infer";   // the program named in messages (train_golf and golf_export set it)

static GOLF_UNUSED void golf_die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: error: ", g_golf_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static GOLF_UNUSED void *golf_alloc(size_t n, const char *file, int line) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) golf_die("out of memory allocating %zu bytes (%s:%d)", n, file, line);
    return p;
}
#ifdef __cplusplus   // train_golf.cu includes this file as C++: let galloc's result convert to any pointer
struct GolfAlloc { void *p; template <typename T> operator T *() const { return (T *)p; } };
#define galloc(n) (GolfAlloc{golf_alloc((n), __FILE__, __LINE__)})
#else
#define galloc(n) golf_alloc((n), __FILE__, __LINE__)
#endif

// read_file: the whole file into memory; dies naming the file on failure (a folder is not a file).
static GOLF_UNUSED uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) golf_die("cannot open '%s': %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0) golf_die("cannot read '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) golf_die("cannot read '%s': %s", path, S_ISDIR(st.st_mode) ? "it is a folder, not a file" : "not a regular file");
    if (fseek(f, 0, SEEK_END) != 0) golf_die("cannot seek in '%s': %s", path, strerror(errno));
    long len = ftell(f);
    if (len < 0) golf_die("cannot size '%s': %s", path, strerror(errno));
    rewind(f);
    uint8_t *p = galloc((size_t)len + 1);
    if (fread(p, 1, (size_t)len, f) != (size_t)len) golf_die("cannot read '%s': %s", path, strerror(errno));
    fclose(f);
    *n = (size_t)len;
    return p;
}

// same_file: do paths a and b name one existing file (same device and inode, whatever the spelling)?
static GOLF_UNUSED int same_file(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

// number_arg: flag's value v if it is a number in [lo, hi] (an integer when integer); else says so and exits 2.
static GOLF_UNUSED double number_arg(const char *flag, const char *v, double lo, double hi, int integer) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi) || (integer && x != floor(x))) {
        fprintf(stderr, "%s: %s '%s': not %s in [%.15g, %.15g]\n", g_golf_prog, flag, v, integer ? "an integer" : "a number", lo, hi);
        exit(2);
    }
    return x;
}

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static GOLF_UNUSED uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static GOLF_UNUSED uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static GOLF_UNUSED double seconds(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec; }

// f16_to_f32: IEEE half -> float (exact).
static GOLF_UNUSED float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) return bits_f32(sign | 0x7F800000u | (m << 13));
    if (e == 0) { float v = ldexpf((float)m, -24); return sign ? -v : v; }
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

// crc32: CRC-32 (IEEE 802.3, reflected, as zlib) of n bytes.
static GOLF_UNUSED uint32_t crc32(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// ----------------------------------------------------------------------------------------------------
// 2. config and parameter table: ONE table of every tensor, its shape, class and export scheme

enum { MAX_LAYERS = 1024, MAX_SCHEDULE = 32, SMEAR_DIMS = 12, GATE_DIMS = 12 };   // loop schedule entries; inputs of the sigmoid gates
enum { BOS_ID = 1 };   // the official shards' and tokenizers' BOS: it starts every document
typedef struct {
    int vocab_size, num_layers, model_dim, num_heads, num_kv_heads, mlp_hidden, tie_embeddings, train_seq_len;
    float rope_base, logit_softcap;
    // the record-stack options (README "Presets and the records they reproduce"); all 0 = the baseline
    float mlp_leaky_slope;           // MLP activation (x > 0 ? x : slope x)^2
    int bigram_vocab, bigram_dim;    // BigramHash table V_b x d_b (V_b 0 = off)
    int smear_gate;                  // SmearGate on the raw embeddings, before their norm
    int xsa_last_n;                  // XSA on layers >= L - n
    int rope_dims;                   // RoPE on the first R dims of a head (0 = all)
    int ln_scale;                    // block norms times 1/sqrt(layer + 1)
    int parallel_from;               // layers >= P run two residual lanes (0 = off)
    int parallel_form;               // PARALLEL_* below: whose lanes, and what P counts
    int skip_gates;                  // gated U-Net skips: lerp(w skip, x, sigmoid(g))
    int attn_out_gate;               // per-head sigmoid gate on the attention output
    float attn_gate_scale;           // the gate is sigmoid(scale * w . x[:12]) (1: 04-29's; 04-27's run 0.5)
    int doc_attention;               // attention within documents: a BOS (id 1) starts one, cut every train_seq_len
    int loop_enc, loop_dec;          // depth-recurrence schedule lengths (0, 0 = none)
    int loop[MAX_SCHEDULE];          // encoder then decoder physical layer indices
    int ve_dim;                      // ValueEmbedding table width (0 = off)
    uint32_t ve_mask[2];             // ValueEmbedding: the schedule positions (bit p of the 64) whose v gets it
} Config;

// The parallel residual forms (PARALLEL_FORM): 04-29's (lane 0 carried raw, attention and MLP side by side, skips into
// lane 0, a sequential layer merges the lanes) and 03-31's (attention on the mix of lane 0, then the MLP on the mix of
// lane 1, each branch written into both lanes; skips into both lanes); PARALLEL_FROM counts physical layers, or with
// 0331-virtual the positions of the schedule (the record's PARALLEL_START_LAYER_IS_PHYSICAL=0).
enum { PARALLEL_0429, PARALLEL_0331, PARALLEL_0331_VIRTUAL, NUM_PARALLEL_FORMS };
static GOLF_UNUSED const char *const PARALLEL_FORM_NAME[NUM_PARALLEL_FORMS] = {"0429", "0331", "0331-virtual"};

enum { CLS_EMBED, CLS_ATTN, CLS_MLP, CLS_HEAD, CLS_CONTROL, NUM_CLASSES };
static GOLF_UNUSED const char *const CLASS_NAME[NUM_CLASSES] = {"embed", "attn", "mlp", "head", "control"};

// export schemes of the blob
enum { SCHEME_FP32, SCHEME_FP16, SCHEME_INT8, SCHEME_INT6, SCHEME_INT5, SCHEME_INT4, SCHEME_TERNARY, NUM_SCHEMES };
static GOLF_UNUSED const char *const SCHEME_NAME[NUM_SCHEMES] = {"fp32", "fp16", "int8", "int6", "int5", "int4", "ternary"};
static GOLF_UNUSED const int SCHEME_BITS[NUM_SCHEMES] = {32, 16, 8, 6, 5, 4, 2};

typedef struct {
    char name[64];   // the train_gpt.py state_dict key
    int ndim, dims[2];
    int rows, cols;  // rows = dims[0] (1 for vectors), cols = the rest
    int cls;         // CLS_*
    size_t offset;   // into the flat parameter buffer
} ParamSpec;

// Per-layer views into the flat parameter buffer.
typedef struct {
    float *c_q;        // [d, d]
    float *c_k, *c_v;  // [kv_dim, d]
    float *proj;       // [d, d]
    float *fc;         // [hidden, d]
    float *mlp_proj;   // [d, hidden]
    float *q_gain;     // [H]
    float *attn_scale, *mlp_scale;  // [d]
    float *resid_mix;  // [2, d]
    float *attn_gate;  // [H, GATE_DIMS] (attn_out_gate)
    float *lane_rho;   // [2] (parallel layers, 04-29's form): each lane's residual scale
    float *lane_mix;   // [2, 2] (parallel layers, 04-29's form): [lane][branch]
    float *par_resid;  // [2] (parallel layers, 03-31's form): both lanes' scale at [attention, MLP]
    float *par_post;   // [2, 2] (parallel layers, 03-31's form): [branch][lane]
} LayerParams;

typedef struct {
    Config c;
    int n;                 // tensors
    ParamSpec *spec;       // [n]
    size_t numel;          // floats in params: the tensors, each starting 16-byte aligned (zero padding between)
    size_t nparams;        // the tensors' elements (numel less the padding)
    float *params;         // the flat buffer
    float *tok_emb;        // [V, d]
    float *bigram_embed;   // [V_b, d_b]
    float *bigram_proj;    // [d, d_b]
    float *bigram_scale;   // [1]
    float *smear_w;        // [SMEAR_DIMS]
    float *smear_lam;      // [1]
    float *ve_embed;       // [V, d_ve] ValueEmbedding table
    float *ve_proj;        // [kv_dim, d_ve] (NULL when d_ve = kv_dim: no projection)
    float *ve_scale;       // [1]
    float *ve_layer_scales;   // [positions listed]: one per position, in increasing order
    float *skip_weights;   // [num_skip_rows, d]
    float *skip_gates;     // [num_skip_rows, d] (skip_gates)
    float *lm_head;        // [V, d] (tok_emb when tied)
    LayerParams *layer;    // [L]
} GolfModel;

// schedule: the physical layer of every virtual position, encoder first; *enc, *dec get the two lengths.
// looped = 0 gives the plain 0..L-1 split at L/2, looped = 1 the loop schedule (when the config has one).
static int schedule(const Config *c, int looped, int *enc, int *dec, int *idx) {
    if (looped && c->loop_enc) {
        *enc = c->loop_enc; *dec = c->loop_dec;
        memcpy(idx, c->loop, sizeof(int) * (size_t)(*enc + *dec));
    } else {
        *enc = c->num_layers / 2; *dec = c->num_layers - *enc;
        for (int l = 0; l < c->num_layers; l++) idx[l] = l;
    }
    return *enc + *dec;
}

// num_skips: U-Net skips of a schedule; skip_rows: rows of skip_weights (the larger of both schedules).
static int num_skips(int enc, int dec) { return enc < dec ? enc : dec; }
static int skip_rows(const Config *c) {
    int e0, d0, e1, d1, idx[MAX_LAYERS];
    schedule(c, 0, &e0, &d0, idx); schedule(c, 1, &e1, &d1, idx);
    return num_skips(e0, d0) > num_skips(e1, d1) ? num_skips(e0, d0) : num_skips(e1, d1);
}
// parallel_at: whether position pos of a schedule (physical layers idx) runs two lanes; has_lanes: whether physical
// layer l runs two lanes at a position of either schedule (it then has the lanes' parameters)
static int parallel_at(const Config *c, const int *idx, int pos) {
    return c->parallel_from > 0 && (c->parallel_form == PARALLEL_0331_VIRTUAL ? pos : idx[pos]) >= c->parallel_from;
}
static int has_lanes(const Config *c, int l) {
    if (c->parallel_from <= 0) return 0;
    if (l >= c->parallel_from) return 1;   // the plain schedule runs layer l at position l
    if (c->parallel_form == PARALLEL_0331_VIRTUAL)
        for (int pos = c->parallel_from; pos < c->loop_enc + c->loop_dec; pos++) if (c->loop[pos] == l) return 1;
    return 0;
}
static float ln_scale_of(const Config *c, int l) { return c->ln_scale ? (float)(1.0 / sqrt(l + 1.0)) : 1.0f; }   // LN_SCALE's factor
// ve_slot: the index into ve_layer_scales of schedule position pos (ValueEmbedding's positions in increasing
// order), or -1 when pos gets none; ve_count: how many positions get it
static int ve_slot(const Config *c, int pos) {
    if (!c->ve_dim || pos < 0 || pos >= 64 || !(c->ve_mask[pos / 32] >> (pos % 32) & 1)) return -1;
    int j = 0;
    for (int p = 0; p < pos; p++) j += c->ve_mask[p / 32] >> (p % 32) & 1;
    return j;
}
static int ve_count(const Config *c) {
    int n = 0;
    for (int p = 0; p < 64; p++) n += c->ve_mask[p / 32] >> (p % 32) & 1;
    return c->ve_dim ? n : 0;
}

// config_check: NULL when the shape is usable, else what is wrong.
static GOLF_UNUSED const char *config_check(const Config *c) {
    if (c->vocab_size < 2 || c->vocab_size > (1 << 20)) return "vocab_size out of range";
    if (c->num_layers < 1 || c->num_layers > MAX_LAYERS) return "num_layers out of range";
    if (c->model_dim < 2 || c->model_dim > (1 << 16)) return "model_dim out of range";
    if (c->num_heads < 1 || c->model_dim % c->num_heads) return "num_heads must divide model_dim";
    if (c->num_kv_heads < 1 || c->num_heads % c->num_kv_heads) return "num_kv_heads must divide num_heads";
    if ((c->model_dim / c->num_heads) % 2) return "head_dim must be even (RoPE)";
    if (c->mlp_hidden < 1 || c->mlp_hidden > (1 << 20)) return "mlp_hidden out of range";
    if (c->tie_embeddings != 0 && c->tie_embeddings != 1) return "tie_embeddings must be 0 or 1";
    if (!(c->rope_base > 0) || !(c->logit_softcap > 0)) return "rope_base and logit_softcap must be positive";
    if (c->train_seq_len < 1) return "train_seq_len must be positive";
    if (!(c->mlp_leaky_slope >= 0 && c->mlp_leaky_slope <= 1)) return "mlp_leaky_slope must be in [0, 1]";
    if (c->bigram_vocab == 1 || c->bigram_vocab < 0 || c->bigram_vocab > (1 << 24)) return "bigram_vocab_size must be 0 (off) or 2..2^24";
    if (c->bigram_vocab && (c->bigram_dim < 1 || c->bigram_dim > (1 << 16))) return "bigram_dim out of range";
    if ((c->smear_gate && c->model_dim < SMEAR_DIMS) || (c->attn_out_gate && c->model_dim < GATE_DIMS)) return "smear_gate and attn_out_gate need model_dim >= 12";
    if (c->xsa_last_n < 0 || c->parallel_from < 0) return "xsa_last_n and parallel_from must be >= 0";
    int hd = c->model_dim / c->num_heads;
    if (c->rope_dims < 0 || c->rope_dims % 2 || c->rope_dims > hd) return "rope_dims must be even and at most head_dim (0 = all)";
    if ((c->smear_gate | c->ln_scale | c->skip_gates | c->attn_out_gate | c->doc_attention) & ~1)
        return "smear_gate, ln_scale, skip_gates, attn_out_gate, doc_attention must be 0 or 1";
    if (c->parallel_form < 0 || c->parallel_form >= NUM_PARALLEL_FORMS) return "parallel_form must be 0 (0429), 1 (0331) or 2 (0331-virtual)";
    if (c->attn_out_gate && !(c->attn_gate_scale > 0 && c->attn_gate_scale < INFINITY)) return "attn_out_gate's scale must be positive and finite";
    if (!c->loop_enc != !c->loop_dec || c->loop_enc < 0 || c->loop_dec < 0 || c->loop_enc + c->loop_dec > MAX_SCHEDULE)
        return "the loop schedule needs both an encoder and a decoder list, at most 32 entries in all";
    if (c->ve_dim < 0 || c->ve_dim > (1 << 16) || !c->ve_dim != !(c->ve_mask[0] | c->ve_mask[1]))
        return "ve_dim must be 0 (off) or 1..65536, and set exactly when the ValueEmbedding position list is not empty";
    for (int pos = c->num_layers > c->loop_enc + c->loop_dec ? c->num_layers : c->loop_enc + c->loop_dec; pos < 64; pos++)
        if (ve_slot(c, pos) >= 0) return "a ValueEmbedding position is past the end of every layer schedule";
    if (c->loop_enc) {
        char seen[MAX_LAYERS] = {0};
        for (int i = 0; i < c->loop_enc + c->loop_dec; i++) {
            if (c->loop[i] < 0 || c->loop[i] >= c->num_layers) return "a loop schedule index is not a layer";
            seen[c->loop[i]] = 1;
        }
        for (int l = 0; l < c->num_layers; l++) if (!seen[l]) return "a layer is missing from the loop schedule";
        // 03-31's lanes never merge: a sequential layer after parallel ones (which that record's code runs on its
        // stale single stream, dropping the result) is refused
        for (int pos = 1; c->parallel_form == PARALLEL_0331 && pos < c->loop_enc + c->loop_dec; pos++)
            if (parallel_at(c, c->loop, pos - 1) && !parallel_at(c, c->loop, pos))
                return "parallel_form 0331: a layer below parallel_from follows a parallel one in the loop schedule (03-31's lanes never "
                       "merge); count positions instead (0331-virtual) or move parallel_from";
    }
    return NULL;
}

static void spec_add(GolfModel *m, const char *name, int ndim, int d0, int d1, int cls) {
    ParamSpec *s = &m->spec[m->n++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->ndim = ndim; s->dims[0] = d0; s->dims[1] = ndim == 2 ? d1 : 0;
    s->rows = ndim == 2 ? d0 : 1;
    s->cols = ndim == 2 ? d1 : d0;
    s->cls = cls;
    s->offset = (m->numel + 3) & ~(size_t)3;   // 16 bytes: cuBLASLt's tensor-core kernels need aligned operands
    m->numel = s->offset + (size_t)s->rows * (size_t)s->cols;
    m->nparams += (size_t)s->rows * (size_t)s->cols;
}

// model_layout: build the parameter table of config c and allocate the flat buffer.
static GOLF_UNUSED void model_layout(GolfModel *m, const Config *c) {
    int d = c->model_dim, hd = d / c->num_heads, kv = c->num_kv_heads * hd, L = c->num_layers;
    char nm[64];
    memset(m, 0, sizeof(*m));
    m->c = *c;
    m->spec = galloc((size_t)(13 * L + 14) * sizeof(ParamSpec));
    spec_add(m, "tok_emb.weight", 2, c->vocab_size, d, CLS_EMBED);
    if (c->bigram_vocab) {
        spec_add(m, "bigram.embed.weight", 2, c->bigram_vocab, c->bigram_dim, CLS_EMBED);
        spec_add(m, "bigram.proj.weight", 2, d, c->bigram_dim, CLS_MLP);
        spec_add(m, "bigram.scale", 1, 1, 0, CLS_CONTROL);
    }
    if (c->smear_gate) {
        spec_add(m, "smear.gate_w", 1, SMEAR_DIMS, 0, CLS_CONTROL);
        spec_add(m, "smear.lam", 1, 1, 0, CLS_CONTROL);
    }
    if (c->ve_dim) {   // ValueEmbedding (03-31): the table with the token embedding, the rest control tensors (its Adam groups)
        spec_add(m, "ve_shared.embed.weight", 2, c->vocab_size, c->ve_dim, CLS_EMBED);
        if (c->ve_dim != kv) spec_add(m, "ve_shared.proj.weight", 2, kv, c->ve_dim, CLS_CONTROL);
        spec_add(m, "ve_shared.scale", 1, 1, 0, CLS_CONTROL);
        spec_add(m, "ve_layer_scales", 1, ve_count(c), 0, CLS_CONTROL);
    }
    for (int l = 0; l < L; l++) {
#define LAYER(suffix, nd, a, b, cls) snprintf(nm, sizeof(nm), "blocks.%d.%s", l, suffix), spec_add(m, nm, nd, a, b, cls)
        LAYER("attn.c_q.weight", 2, d, d, CLS_ATTN);
        LAYER("attn.c_k.weight", 2, kv, d, CLS_ATTN);
        LAYER("attn.c_v.weight", 2, kv, d, CLS_ATTN);
        LAYER("attn.proj.weight", 2, d, d, CLS_ATTN);
        LAYER("mlp.fc.weight", 2, c->mlp_hidden, d, CLS_MLP);
        LAYER("mlp.proj.weight", 2, d, c->mlp_hidden, CLS_MLP);
        LAYER("attn.q_gain", 1, c->num_heads, 0, CLS_CONTROL);
        LAYER("attn_scale", 1, d, 0, CLS_CONTROL);
        LAYER("mlp_scale", 1, d, 0, CLS_CONTROL);
        LAYER("resid_mix", 2, 2, d, CLS_CONTROL);
        if (c->attn_out_gate) LAYER("attn.gate_w", 2, c->num_heads, GATE_DIMS, CLS_CONTROL);
        if (has_lanes(c, l) && c->parallel_form == PARALLEL_0429) { LAYER("lane_rho", 1, 2, 0, CLS_CONTROL); LAYER("lane_mix", 2, 2, 2, CLS_CONTROL); }
        if (has_lanes(c, l) && c->parallel_form != PARALLEL_0429) { LAYER("parallel_resid", 1, 2, 0, CLS_CONTROL); LAYER("parallel_post", 2, 2, 2, CLS_CONTROL); }
#undef LAYER
    }
    spec_add(m, "skip_weights", 2, skip_rows(c), d, CLS_CONTROL);
    if (c->skip_gates) spec_add(m, "skip_gates", 2, skip_rows(c), d, CLS_CONTROL);
    if (!c->tie_embeddings) spec_add(m, "lm_head.weight", 2, c->vocab_size, d, CLS_HEAD);
    m->params = galloc(m->numel * sizeof(float));
    m->layer = galloc((size_t)L * sizeof(LayerParams));
    int i = 0;
#define VIEW(ptr, present) ((ptr) = (present) ? m->params + m->spec[i++].offset : NULL)
    VIEW(m->tok_emb, 1);
    VIEW(m->bigram_embed, c->bigram_vocab); VIEW(m->bigram_proj, c->bigram_vocab); VIEW(m->bigram_scale, c->bigram_vocab);
    VIEW(m->smear_w, c->smear_gate); VIEW(m->smear_lam, c->smear_gate);
    VIEW(m->ve_embed, c->ve_dim); VIEW(m->ve_proj, c->ve_dim && c->ve_dim != kv); VIEW(m->ve_scale, c->ve_dim); VIEW(m->ve_layer_scales, c->ve_dim);
    for (int l = 0; l < L; l++) {
        LayerParams *p = &m->layer[l];
        float **views[10] = {&p->c_q, &p->c_k, &p->c_v, &p->proj, &p->fc, &p->mlp_proj, &p->q_gain, &p->attn_scale, &p->mlp_scale, &p->resid_mix};
        for (int k = 0; k < 10; k++) VIEW(*views[k], 1);
        VIEW(p->attn_gate, c->attn_out_gate);
        int lanes0429 = has_lanes(c, l) && c->parallel_form == PARALLEL_0429, lanes0331 = has_lanes(c, l) && !lanes0429;
        VIEW(p->lane_rho, lanes0429); VIEW(p->lane_mix, lanes0429);
        VIEW(p->par_resid, lanes0331); VIEW(p->par_post, lanes0331);
    }
    VIEW(m->skip_weights, 1);
    VIEW(m->skip_gates, c->skip_gates);
#undef VIEW
    m->lm_head = c->tie_embeddings ? m->tok_emb : m->params + m->spec[i++].offset;
}

static GOLF_UNUSED void model_free(GolfModel *m) { free(m->spec); free(m->params); free(m->layer); memset(m, 0, sizeof(*m)); }

// config_header: the config words [3..12] and [14..63] shared by both file headers, read (write = 0) or
// written (write = 1). Word 13 and the rest belong to each format.
static GOLF_UNUSED void config_header(Config *c, uint32_t *h, int write) {
    int *ints[] = {&c->vocab_size, &c->num_layers, &c->model_dim, &c->num_heads, &c->num_kv_heads, &c->mlp_hidden, &c->tie_embeddings};
    float *floats[] = {&c->rope_base, &c->logit_softcap, &c->mlp_leaky_slope};
    int fw[] = {10, 11, 14};
    int *opts[] = {&c->bigram_vocab, &c->bigram_dim, &c->smear_gate, &c->xsa_last_n, &c->rope_dims, &c->ln_scale,
                   &c->parallel_from, &c->skip_gates, &c->attn_out_gate, &c->loop_enc, &c->loop_dec};
#define WORD(word, var) (write ? (void)((word) = (uint32_t)(var)) : (void)((var) = (int)(word)))
    for (int i = 0; i < 7; i++) WORD(h[3 + i], *ints[i]);
    WORD(h[12], c->train_seq_len);
    for (int i = 0; i < 11; i++) WORD(h[15 + i], *opts[i]);
    for (int i = 0; i < MAX_SCHEDULE; i++) WORD(h[26 + i], c->loop[i]);
    WORD(h[58], c->parallel_form);
    WORD(h[60], c->doc_attention);
    WORD(h[61], c->ve_dim);
#undef WORD
    if (write) { h[62] = c->ve_mask[0]; h[63] = c->ve_mask[1]; }
    else { c->ve_mask[0] = h[62]; c->ve_mask[1] = h[63]; }
    for (int i = 0; i < 3; i++) {
        if (write) h[fw[i]] = f32_bits(*floats[i]);
        else *floats[i] = bits_f32(h[fw[i]]);
    }
    if (write) h[59] = c->attn_gate_scale == 1.0f ? 0 : f32_bits(c->attn_gate_scale);   // 0: the scale 1 of older files
    else c->attn_gate_scale = h[59] ? bits_f32(h[59]) : 1.0f;
    if (!write && ((unsigned)c->loop_enc > MAX_SCHEDULE || (unsigned)c->loop_dec > MAX_SCHEDULE)) c->loop_enc = c->loop_dec = -1;  // config_check refuses
}

// ----------------------------------------------------------------------------------------------------
// 3. tokenizer pieces (from a SentencePiece .model protobuf) and the val_bpb byte tables

enum { PIECE_NORMAL = 1, PIECE_UNKNOWN = 2, PIECE_CONTROL = 3, PIECE_USER_DEFINED = 4, PIECE_UNUSED = 5, PIECE_BYTE = 6 };

typedef struct { const uint8_t *p, *end; } Pb;
typedef struct { uint32_t field, wtype; uint64_t v; const uint8_t *data; size_t len; } PbField;

static int pb_varint(Pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return 0;
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7F) << shift;
        if (c < 0x80) { *v = x; return 1; }
    }
    return 0;
}

// pb_next: the next field of a protobuf message; 1 = got one, 0 = end, -1 = malformed.
static GOLF_UNUSED int pb_next(Pb *r, PbField *f) {
    uint64_t key;
    if (r->p >= r->end) return 0;
    if (!pb_varint(r, &key)) return -1;
    f->field = (uint32_t)(key >> 3); f->wtype = (uint32_t)(key & 7);
    f->data = NULL; f->len = 0; f->v = 0;
    switch (f->wtype) {
    case 0: return pb_varint(r, &f->v) ? 1 : -1;
    case 1: if (r->end - r->p < 8) return -1; f->data = r->p; f->len = 8; r->p += 8; return 1;
    case 5: if (r->end - r->p < 4) return -1; f->data = r->p; f->len = 4; r->p += 4; return 1;
    case 2:
        if (!pb_varint(r, &f->v) || f->v > (uint64_t)(r->end - r->p)) return -1;
        f->data = r->p; f->len = (size_t)f->v; r->p += f->len; return 1;
    default: return -1;
    }
}

// Pieces: the vocabulary of a tokenizer, enough for the byte tables and for decoding.
typedef struct {
    int n;
    char **piece; int *plen; float *score; uint8_t *type;  // [n]
    int add_dummy_prefix, remove_extra_ws;                 // normalizer spec fields used by prompt_encode
} Pieces;

// pieces_parse: pieces (field 1 of ModelProto: piece 1, score 2, type 3) of a .model file's bytes;
// returns NULL or the problem.
static GOLF_UNUSED const char *pieces_parse(Pieces *v, const uint8_t *data, size_t n) {
    Pb r = {data, data + n};
    PbField f;
    int rc, count = 0;
    memset(v, 0, sizeof(*v));
    v->add_dummy_prefix = v->remove_extra_ws = 1;   // protobuf defaults
    while ((rc = pb_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wtype == 2) count++;
        if (f.field == 3 && f.wtype == 2) {          // NormalizerSpec: 3 add_dummy_prefix, 4 remove_extra_whitespaces
            Pb q = {f.data, f.data + f.len};
            PbField g;
            while (pb_next(&q, &g) > 0)
                if (g.wtype == 0 && (g.field == 3 || g.field == 4)) *(g.field == 3 ? &v->add_dummy_prefix : &v->remove_extra_ws) = g.v != 0;
        }
    }
    if (rc < 0) return "truncated or not a protobuf file";
    if (count == 0) return "no pieces found";
    v->piece = galloc((size_t)count * sizeof(char *));
    v->plen = galloc((size_t)count * sizeof(int));
    v->score = galloc((size_t)count * sizeof(float));
    v->type = galloc((size_t)count);
    r.p = data;
    while (pb_next(&r, &f) > 0) {
        if (f.field != 1 || f.wtype != 2) continue;
        int id = v->n++;
        Pb q = {f.data, f.data + f.len};
        PbField g;
        v->type[id] = PIECE_NORMAL;
        while ((rc = pb_next(&q, &g)) > 0) {
            if (g.field == 1 && g.wtype == 2) {
                free(v->piece[id]);
                v->piece[id] = galloc(g.len + 1);
                memcpy(v->piece[id], g.data, g.len);
                v->plen[id] = (int)g.len;
            } else if (g.field == 2 && g.wtype == 5) v->score[id] = bits_f32(rd32(g.data));
            else if (g.field == 3 && g.wtype == 0) {
                if (g.v < 1 || g.v > 6) return "a piece has an unknown type";
                v->type[id] = (uint8_t)g.v;
            }
        }
        if (rc < 0) return "a piece is malformed protobuf";
        if (!v->piece[id] || !v->plen[id]) return "a piece is empty";
    }
    return NULL;
}

static GOLF_UNUSED void pieces_free(Pieces *v) {
    for (int i = 0; i < v->n; i++) free(v->piece[i]);
    free(v->piece); free(v->plen); free(v->score); free(v->type);
    memset(v, 0, sizeof(*v));
}

// byte260: the official pure-byte tokenizer (0 pad, 1 BOS, 2 EOS, 3 unk, 4..259 the bytes) as Pieces.
static GOLF_UNUSED void pieces_byte260(Pieces *v) {
    static const char *const special[4] = {"<pad>", "<s>", "</s>", "<unk>"};
    static const uint8_t stype[4] = {PIECE_CONTROL, PIECE_CONTROL, PIECE_CONTROL, PIECE_UNKNOWN};
    memset(v, 0, sizeof(*v));
    v->n = 260;
    v->piece = galloc(260 * sizeof(char *)); v->plen = galloc(260 * sizeof(int));
    v->score = galloc(260 * sizeof(float)); v->type = galloc(260);
    for (int i = 0; i < 260; i++) {
        v->piece[i] = galloc(8);
        if (i < 4) { strcpy(v->piece[i], special[i]); v->type[i] = stype[i]; }
        else { snprintf(v->piece[i], 8, "<0x%02X>", i - 4); v->type[i] = PIECE_BYTE; }
        v->plen[i] = (int)strlen(v->piece[i]);
    }
}

// byte_piece_value: NN of a "<0xNN>" piece, or -1.
static GOLF_UNUSED int byte_piece_value(const char *s, int n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || !s[3] || !s[4]) return -1;
    const char *a = strchr(hex, s[3]), *b = strchr(hex, s[4]);
    return a && b ? (int)((a - hex) * 16 + (b - hex)) : -1;
}

static const char SPACE_SYMBOL[] = "\xe2\x96\x81";  // U+2581, sentencepiece's visible space

// The val_bpb tables: per token, the UTF-8 bytes it stands for. A leading U+2581 is counted apart: it is a
// real space only when the previous token is not a boundary (control, unknown or unused) token. A CaseOps val set
// (tokenize shards --caseops) brings its own count per val position instead: its byte sidecar (section 8).
typedef struct { int n; int16_t *base_bytes; uint8_t *has_leading_space, *is_boundary; uint16_t *sidecar; } ByteLut;

// byte_lut_build: tables of size max(vocab, min_size); ids past the vocabulary count as boundary tokens.
static GOLF_UNUSED void byte_lut_build(ByteLut *t, const Pieces *v, int min_size) {
    t->n = v->n > min_size ? v->n : min_size;
    t->base_bytes = galloc((size_t)t->n * sizeof(int16_t));
    t->has_leading_space = galloc((size_t)t->n);
    t->is_boundary = galloc((size_t)t->n);
    t->sidecar = NULL;
    memset(t->is_boundary, 1, (size_t)t->n);
    for (int id = 0; id < v->n; id++) {
        int type = v->type[id];
        if (type == PIECE_CONTROL || type == PIECE_UNKNOWN || type == PIECE_UNUSED) continue;
        t->is_boundary[id] = 0;
        if (type == PIECE_BYTE) { t->base_bytes[id] = 1; continue; }
        int len = v->plen[id];
        if (len >= 3 && memcmp(v->piece[id], SPACE_SYMBOL, 3) == 0) { t->has_leading_space[id] = 1; len -= 3; }
        t->base_bytes[id] = (int16_t)len;
    }
}

static GOLF_UNUSED void byte_lut_free(ByteLut *t) { free(t->base_bytes); free(t->has_leading_space); free(t->is_boundary); free(t->sidecar); memset(t, 0, sizeof(*t)); }

// target_bytes: the bytes val_bpb counts for target val[i] (i >= 1): its sidecar entry, else its piece's bytes plus
// its leading space unless val[i - 1] is a boundary token.
static GOLF_UNUSED double target_bytes(const ByteLut *t, const int32_t *val, size_t i) {
    if (t->sidecar) return t->sidecar[i];
    return t->base_bytes[val[i]] + (t->has_leading_space[val[i]] && !t->is_boundary[val[i - 1]]);
}

// ----------------------------------------------------------------------------------------------------
// 4. checkpoint reader (float32)

enum { CKPT_MAGIC = 20261125, CKPT_VERSION = 5, CKPT_HEADER_INTS = 256, BLOB_MAGIC = 20261124, BLOB_VERSION = 5, BLOB_HEADER_INTS = 64 };

// version_problem: NULL when a file of `version` with config c means what this code computes, else why not. Version 5
// added words 61..63 (ValueEmbedding), zero in older files (off); set in an older file they are refused. Version 4
// added words 58 (PARALLEL_FORM), 59 (ATTN_OUT_GATE_SCALE) and 60 (DOC_ATTENTION), zero in older files: 04-29's lanes,
// the scale 1 and attention over whole sequences, what version 3 computes; word 60 set in an older file (whose writers
// never set it) is refused. Version 3 has the records' definitions of SMEAR_GATE (on the raw embedding), SKIP_GATES
// (lerp) and PARALLEL_FROM (lane 0 carried raw, skips into lane 0); version 2 (and 1) files mean the same only when
// none is on.
static const char *version_problem(uint32_t version, const Config *c, uint32_t current) {
    if (version < 4 && c->doc_attention) return "header word 60 (doc_attention) is set in a file older than version 4, which has no such word";
    if (version < 5 && (c->ve_dim || c->ve_mask[0] || c->ve_mask[1]))
        return "header words 61..63 (ValueEmbedding) are set in a file older than version 5, which has no such words";
    if (version >= 3 && version <= current) return NULL;
    if (c->smear_gate || c->skip_gates || c->parallel_from)
        return "written before version 3, when SMEAR_GATE, SKIP_GATES and PARALLEL_FROM computed other forms than the "
               "records': it uses one of them, so its weights mean another model (train it again)";
    return NULL;
}

// checkpoint_load: fill m (laid out by its header) from a checkpoint file's bytes; NULL or the problem.
static GOLF_UNUSED const char *checkpoint_load(GolfModel *m, const uint8_t *p, size_t n, char *why, size_t why_n) {
    uint32_t h[CKPT_HEADER_INTS];
    memset(m, 0, sizeof(*m));
    if (n < CKPT_HEADER_INTS * 4) return "shorter than the checkpoint header";
    for (int i = 0; i < CKPT_HEADER_INTS; i++) h[i] = rd32(p + 4 * i);
    if (h[0] != CKPT_MAGIC) return "bad magic (not a golf checkpoint)";
    if (h[1] < 1 || h[1] > CKPT_VERSION) return "unsupported checkpoint version (this reads 1 to 5)";
    Config c;
    config_header(&c, h, 0);   // version 1 has zeros in the new words: the baseline
    const char *bad = config_check(&c);
    if (!bad) bad = version_problem(h[1], &c, CKPT_VERSION);
    if (bad) return bad;
    model_layout(m, &c);
    const char *err = NULL;
    uint8_t *found = galloc((size_t)m->n);
    size_t off = CKPT_HEADER_INTS * 4;
    for (uint32_t r = 0; r < h[2] && !err; r++) {
        if (n - off < 4) { err = "truncated tensor record"; break; }
        uint32_t nl = rd32(p + off); off += 4;
        if (nl > 4096 || n - off < nl + 8) { err = "truncated tensor name"; break; }
        const char *name = (const char *)p + off; off += nl;
        uint32_t dtype = rd32(p + off), ndim = rd32(p + off + 4); off += 8;
        if (ndim > 8 || n - off < 4 * ndim) { err = "truncated tensor shape"; break; }
        uint64_t numel = 1;
        uint32_t dims[8];
        for (uint32_t k = 0; k < ndim && !err; k++) { dims[k] = rd32(p + off + 4 * k); numel *= dims[k]; if (numel > ((uint64_t)1 << 40)) err = "tensor too large"; }
        off += 4 * ndim;
        if (!err && dtype > 1) err = "unknown tensor dtype";
        if (!err && (uint64_t)(n - off) < 4 * numel) err = "truncated tensor data";
        for (int i = 0; i < m->n && !err; i++) {
            ParamSpec *s = &m->spec[i];
            if (strlen(s->name) != nl || memcmp(s->name, name, nl) != 0) continue;
            int shape_ok = dtype == 0 && ndim == (uint32_t)s->ndim && dims[0] == (uint32_t)s->dims[0] && (ndim == 1 || dims[1] == (uint32_t)s->dims[1]);
            if (!shape_ok) { snprintf(why, why_n, "tensor '%s' has the wrong shape or dtype for the header's config", s->name); err = why; break; }
            for (uint64_t k = 0; k < numel; k++) m->params[s->offset + k] = bits_f32(rd32(p + off + 4 * k));
            found[i] = 1;
        }
        off += 4 * numel;
    }
    for (int i = 0; i < m->n && !err; i++)
        if (!found[i]) { snprintf(why, why_n, "tensor '%s' is missing", m->spec[i].name); err = why; }
    free(found);
    return err;
}

// ----------------------------------------------------------------------------------------------------
// 5. entropy coding of the integer codes: adaptive bit models, the two code models, the range decoder

// BitModel: P(bit = 0) in 1/65536, moved towards each outcome by 1/2^shift, shift growing with the count
// (1 for the first bit, up to 7): fast to learn, precise once it has seen enough.
typedef struct { uint16_t p; uint8_t n; } BitModel;
enum { BM_MAX_SHIFT = 7, RC_TOP = 1 << 24 };

static void bm_update(BitModel *m, int bit) {
    int shift = 1;
    while (shift < BM_MAX_SHIFT && (2u << shift) <= (unsigned)m->n + 2) shift++;
    int p = m->p;
    p = bit ? p - (p >> shift) : p + ((65536 - p) >> shift);
    m->p = (uint16_t)(p < 32 ? 32 : p > 65504 ? 65504 : p);
    if (m->n < 255) m->n++;
}

static void bm_init(BitModel *m, size_t n) { for (size_t i = 0; i < n; i++) { m[i].p = 32768; m[i].n = 0; } }

// CodeBitFn: the one primitive both directions share: the encoder codes `bit` and returns it, the decoder
// ignores `bit` and returns the bit it decodes. The code models below are written once on top of it.
typedef int (*CodeBitFn)(void *coder, BitModel *m, int bit);

// Code models (the table entry's second byte):
//   CODER_TREE: the symbol q + offset as `bits` binary decisions, most significant first, one BitModel per
//     tree node.
//   CODER_CONTEXT: q = 0?, then sign, then e = floor(log2|q|) in unary, then the e bits below the leading one;
//     the zero, sign and exponent decisions are conditioned on two magnitude buckets: a running average of
//     |q| in the same column over the rows above, and one along the row to the left.
enum { CODER_TREE, CODER_CONTEXT, NUM_CODERS };
enum { CTX_BUCKETS = 10, CTX_N = CTX_BUCKETS * CTX_BUCKETS, MAX_EXP = 8 };

typedef struct {
    int coder, bits, offset, qmax, emax, cols, col;
    BitModel tree[256];
    BitModel zero[CTX_N], sign[CTX_N], expo[CTX_N][MAX_EXP], mant[MAX_EXP][MAX_EXP];
    uint16_t *colmag;   // [cols] running |q| * 16 of each column
    uint16_t rowmag;    // running |q| * 16 along the current row
} CodeState;

static void code_state_init(CodeState *s, int coder, int bits, int offset, int qmax, int cols) {
    memset(s, 0, sizeof(*s));
    s->coder = coder; s->bits = bits; s->offset = offset; s->qmax = qmax; s->cols = cols;
    while ((2 << s->emax) <= qmax) s->emax++;
    bm_init(s->tree, 256); bm_init(s->zero, CTX_N); bm_init(s->sign, CTX_N);
    bm_init(&s->expo[0][0], (size_t)CTX_N * MAX_EXP); bm_init(&s->mant[0][0], (size_t)MAX_EXP * MAX_EXP);
    if (coder == CODER_CONTEXT) s->colmag = galloc((size_t)(cols > 0 ? cols : 1) * sizeof(uint16_t));
}

static void code_state_free(CodeState *s) { free(s->colmag); s->colmag = NULL; }

static int mag_bucket(unsigned v) { int b = 0; while (b < CTX_BUCKETS - 1 && (2u << b) <= v + 1) b++; return b; }

// code_symbol: code one q (encoder) or decode one (decoder; q ignored); returns the q coded.
static int code_symbol(CodeState *s, CodeBitFn bit, void *coder, int q) {
    if (s->coder == CODER_TREE) {
        int sym = q + s->offset, m = 1;
        for (int i = s->bits - 1; i >= 0; i--) m = (m << 1) | bit(coder, &s->tree[m], (sym >> i) & 1);
        return m - (1 << s->bits) - s->offset;
    }
    int ctx = mag_bucket(s->colmag[s->col]) * CTX_BUCKETS + mag_bucket(s->rowmag), mag = 0;
    if (!bit(coder, &s->zero[ctx], q == 0)) {
        int neg = bit(coder, &s->sign[ctx], q < 0), m = q < 0 ? -q : q, e = 0, k = 0;
        while ((2 << e) <= m) e++;
        while (k < s->emax && bit(coder, &s->expo[ctx][k], e > k)) k++;
        mag = 1;
        for (int i = k - 1; i >= 0; i--) mag = 2 * mag + bit(coder, &s->mant[k][i], (m >> i) & 1);
        q = neg ? -mag : mag;
    } else q = 0;
    s->colmag[s->col] = (uint16_t)(s->colmag[s->col] + (((mag << 4) - s->colmag[s->col]) >> 2));
    s->rowmag = (uint16_t)(s->rowmag + (((mag << 4) - s->rowmag) >> 3));
    if (++s->col == s->cols) { s->col = 0; s->rowmag = 0; }
    return q;
}

// Range decoder (LZMA-style, carry-less; the encoder is in dev/golf_export.c).
typedef struct { const uint8_t *p, *end; uint32_t range, code; int overrun; } RangeDecoder;

static void rc_dec_init(RangeDecoder *d, const uint8_t *p, size_t n) {
    d->p = p; d->end = p + n; d->range = 0xFFFFFFFFu; d->code = 0; d->overrun = 0;
    for (int i = 0; i < 5; i++) d->code = (d->code << 8) | (d->p < d->end ? *d->p++ : (d->overrun = 1, 0));
}

static int rc_dec_bit(void *coder, BitModel *m, int unused) {
    RangeDecoder *d = (RangeDecoder *)coder;
    uint32_t bound = (d->range >> 16) * m->p;
    int bit;
    (void)unused;
    if (d->code < bound) { d->range = bound; bit = 0; }
    else { d->code -= bound; d->range -= bound; bit = 1; }
    bm_update(m, bit);
    while (d->range < RC_TOP) {
        d->range <<= 8;
        d->code = (d->code << 8) | (d->p < d->end ? *d->p++ : (d->overrun = 1, 0));
    }
    return bit;
}

// ----------------------------------------------------------------------------------------------------
// 6. blob reader

// scheme_levels: the symbol offset (2^(b-1), ternary 1) and the largest |code| of a quantized scheme.
static GOLF_UNUSED void scheme_levels(int scheme, int *offset, int *qmax) {
    int b = SCHEME_BITS[scheme];
    *offset = scheme == SCHEME_TERNARY ? 1 : 1 << (b - 1);
    *qmax = scheme == SCHEME_TERNARY ? 1 : (1 << (b - 1)) - 1;
}

// scales_per_row: how many fp16 scales a row of `cols` has under a scheme with this group.
static GOLF_UNUSED int scales_per_row(int scheme, int group, int cols) {
    if (scheme != SCHEME_TERNARY || group <= 0 || group >= cols) return 1;
    return (cols + group - 1) / group;
}

// blob_decode_tensor: dequantize one payload into out (rows x cols); codes (optional) receives the integer
// codes and scales (optional) the fp16 scales, for tests. NULL or the problem.
static GOLF_UNUSED const char *blob_decode_tensor(const uint8_t *p, size_t n, int scheme, int coder, int group, int rows, int cols,
                                                  float *out, int8_t *codes, uint16_t *scales) {
    size_t count = (size_t)rows * (size_t)cols;
    if (scheme == SCHEME_FP32 || scheme == SCHEME_FP16) {
        size_t w = scheme == SCHEME_FP32 ? 4 : 2;
        if (n != count * w) return "payload size does not match the tensor shape";
        for (size_t i = 0; i < count; i++) out[i] = w == 4 ? bits_f32(rd32(p + 4 * i)) : f16_to_f32(rd16(p + 2 * i));
        return NULL;
    }
    if (scheme >= NUM_SCHEMES) return "unknown quantization scheme";
    int spr = scales_per_row(scheme, group, cols), gcols = spr == 1 ? cols : group, offset, qmax;
    size_t nscales = (size_t)rows * (size_t)spr;
    if (n < 2 * nscales) return "payload shorter than its scales";
    scheme_levels(scheme, &offset, &qmax);
    if (coder < 0 || coder >= NUM_CODERS) return "unknown code model";
    CodeState cs;
    code_state_init(&cs, coder, SCHEME_BITS[scheme], offset, qmax, cols);
    RangeDecoder d;
    rc_dec_init(&d, p + 2 * nscales, n - 2 * nscales);
    const char *err = NULL;
    for (int r = 0; r < rows; r++) {
        for (int s = 0; s < spr; s++) {
            uint16_t sh = rd16(p + 2 * ((size_t)r * spr + s));
            if (scales) scales[(size_t)r * spr + s] = sh;
            float scale = f16_to_f32(sh);
            if (!isfinite(scale)) { err = "a scale is not finite"; goto done; }
            int c1 = (s + 1) * gcols < cols ? (s + 1) * gcols : cols;
            for (int c = s * gcols; c < c1; c++) {
                int q = code_symbol(&cs, rc_dec_bit, &d, 0);
                if (q < -qmax || q > qmax) { err = "a code is out of range (corrupted payload)"; goto done; }
                if (codes) codes[(size_t)r * cols + c] = (int8_t)q;
                out[(size_t)r * cols + c] = (float)q * scale;
            }
        }
        if (d.overrun) { err = "the coded payload is truncated"; goto done; }
    }
    if (d.p != d.end) err = "the coded payload has trailing bytes";
done:
    code_state_free(&cs);
    return err;
}

// blob_load: verify and decode a whole blob into m.
// NULL or the problem; never reads outside p[0..n).
static GOLF_UNUSED const char *blob_load(GolfModel *m, const uint8_t *p, size_t n, char *why, size_t why_n) {
    uint32_t h[BLOB_HEADER_INTS];
    memset(m, 0, sizeof(*m));
    if (n < BLOB_HEADER_INTS * 4 + 4) return "shorter than the blob header";
    for (int i = 0; i < BLOB_HEADER_INTS; i++) h[i] = rd32(p + 4 * i);
    if (h[0] != BLOB_MAGIC) return "bad magic (not a golf blob)";
    if (h[1] < 2 || h[1] > BLOB_VERSION) return "unsupported blob version (this reads 2 to 5; export the checkpoint again)";
    if (h[2] != n) { snprintf(why, why_n, "blob is %zu bytes but its header says %u (truncated or padded)", n, h[2]); return why; }
    if (crc32(p, n - 4) != rd32(p + n - 4)) return "checksum mismatch: the blob is corrupted";
    Config c;
    config_header(&c, h, 0);
    const char *bad = config_check(&c);
    if (!bad) bad = version_problem(h[1], &c, BLOB_VERSION);
    if (bad) return bad;
    model_layout(m, &c);
    if (h[13] != (uint32_t)m->n) { snprintf(why, why_n, "blob holds %u tensors but its config needs %d", h[13], m->n); return why; }
    size_t off = BLOB_HEADER_INTS * 4, table = off;
    if ((n - 4 - off) / 8 < (size_t)m->n) return "truncated tensor table";
    off += 8 * (size_t)m->n;
    for (int i = 0; i < m->n; i++) {
        const uint8_t *e = p + table + 8 * (size_t)i;
        int scheme = e[0], coder = e[1], group = rd16(e + 2);
        uint32_t bytes = rd32(e + 4);
        if (scheme >= NUM_SCHEMES || coder >= NUM_CODERS) { snprintf(why, why_n, "tensor '%s' has an unknown scheme or code model", m->spec[i].name); return why; }
        if (bytes > n - 4 - off) { snprintf(why, why_n, "tensor '%s' payload runs past the end of the blob", m->spec[i].name); return why; }
        const ParamSpec *s = &m->spec[i];
        const char *err = blob_decode_tensor(p + off, bytes, scheme, coder, group, s->rows, s->cols, m->params + s->offset, NULL, NULL);
        if (err) { snprintf(why, why_n, "tensor '%s' (%s): %s", s->name, SCHEME_NAME[scheme], err); return why; }
        off += bytes;
    }
    if (off != n - 4) return "bytes left between the last payload and the checksum";
    return NULL;
}

// model_load_file: a blob or a checkpoint, told apart by the magic; dies naming the file on any problem.
static GOLF_UNUSED void model_load_file(GolfModel *m, const char *path, size_t *file_bytes) {
    size_t n;
    uint8_t *p = read_file(path, &n);
    char why[512];
    const char *err = n >= 4 && rd32(p) == CKPT_MAGIC ? checkpoint_load(m, p, n, why, sizeof(why)) : blob_load(m, p, n, why, sizeof(why));
    if (err) golf_die("model '%s': %s\n  hint: pass a .golf blob (dev/golf_export) or a golf float32 checkpoint", path, err);
    free(p);
    if (file_bytes) *file_bytes = n;
}

// artifact_line: the challenge's size check for the counted code plus a model of model_bytes, into out. The counted
// code is code_path, or the file GOLF_CODE_FILE names when set: a submission's train_gpt.py sets it to itself, the one
// file that carries all of golf's sources (dev/submit.sh). The line names the counted file.
static GOLF_UNUSED const char *artifact_line(const char *code_path, size_t model_bytes, char *out, size_t n) {
    struct stat st;
    const char *counted = getenv("GOLF_CODE_FILE") && *getenv("GOLF_CODE_FILE") ? getenv("GOLF_CODE_FILE") : code_path;
    const char *name = strrchr(counted, '/') ? strrchr(counted, '/') + 1 : counted;
    if (stat(counted, &st) != 0) { snprintf(out, n, "artifact: cannot find %.300s to count it; model %zu bytes", counted, model_bytes); return out; }
    long long total = (long long)st.st_size + (long long)model_bytes;
    snprintf(out, n, "artifact: %.200s %lld + model %zu = %lld bytes (limit 16000000) %s", name, (long long)st.st_size, model_bytes, total,
             total <= 16000000 ? "OK" : "OVER");
    return out;
}

// code_path: golf_infer.c next to the binary (the artifact's code), else in the current folder.
static GOLF_UNUSED const char *code_path(const char *argv0) {
    static char path[4096];
    const char *slash = strrchr(argv0, '/');
    if (!slash) return "golf_infer.c";
    snprintf(path, sizeof(path), "%.*s/golf_infer.c", (int)(slash - argv0), argv0);
    return path;
}

// ----------------------------------------------------------------------------------------------------
// 7. CPU forward pass in float32 (the math of test/reference.py and train_gpt.py)
//   Every product is one cache-blocked GEMM (packed panels, a register-blocked micro kernel that -O3 -march=native
//   vectorizes; plain C, so any compiler builds it); OpenMP splits rows and tiles over threads.

static const float RMS_EPS = 1.1920929e-07f;  // torch's rms_norm default for float32: finfo(float32).eps

static int imin(int a, int b) { return a < b ? a : b; }

// dot: sum of a[i]*b[i] in eight lanes (vectorizes without reassociation flags).
static float dot(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

// GEMM blocking: the micro kernel keeps an MR x NR tile of C in registers (8 x 8: 8 AVX2 vectors); B blocks of
// KC x NC and A blocks of MC x KC are packed into panels (B panel KC x NR in L1, A block in L2).
enum { GEMM_MR = 8, GEMM_NR = 8, GEMM_MC = 128, GEMM_KC = 256, GEMM_NC = 256,
       GEMM_WORK = (GEMM_MC + GEMM_MR) * GEMM_KC + GEMM_KC * (GEMM_NC + GEMM_NR) };   // floats of a gemm's scratch

// gemm_pack: rows [0, rows) x k [0, kc) of X(r, k) = X[r*sr + k*sk] as panels of w rows, each [kc][w], zero past rows.
static void gemm_pack(float *dst, const float *X, int sr, int sk, int rows, int kc, int w) {
    for (int r0 = 0; r0 < rows; r0 += w, dst += (size_t)kc * w)
        for (int r = 0; r < w; r++) {
            const float *x = X + (size_t)(r0 + r) * sr;
            for (int k = 0; k < kc; k++) dst[k * w + r] = r0 + r < rows ? x[(size_t)k * sk] : 0.0f;
        }
}

// GemmVec: GNU C's generic vectors (gcc, clang: the target's SIMD, whatever the ISA), plain floats elsewhere.
#if defined(__GNUC__) && !defined(__CUDACC__)
#ifdef __AVX__
#define GEMM_LANES 8
#else
#define GEMM_LANES 4
#endif
typedef float GemmVec __attribute__((vector_size(GEMM_LANES * 4)));
#else
#define GEMM_LANES 1
typedef float GemmVec;
#endif

// gemm_kernel: C[m, n] (+= when acc) the product of an A panel [kc][MR] and a B panel [kc][NR] (m <= MR, n <= NR).
static void gemm_kernel(int kc, const float *a, const float *b, float *C, int ldc, int m, int n, int acc) {
    enum { NV = GEMM_NR / GEMM_LANES };
    GemmVec s[GEMM_MR][NV];
    float out[GEMM_MR][GEMM_NR];
    memset(s, 0, sizeof(s));
    for (int k = 0; k < kc; k++, a += GEMM_MR, b += GEMM_NR)
        for (int j = 0; j < NV; j++) {
            GemmVec bj;
            memcpy(&bj, b + j * GEMM_LANES, sizeof(bj));
            for (int i = 0; i < GEMM_MR; i++) s[i][j] += a[i] * bj;
        }
    memcpy(out, s, sizeof(out));
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = acc ? C[(size_t)i * ldc + j] + out[i][j] : out[i][j];
}

// sgemm: C[M, N] (row stride ldc) = (acc ? C : 0) + A B, A(i, k) = A[i*ai + k*ak], B(k, j) = B[k*bk + j*bj]; one thread,
// work holds GEMM_WORK floats.
static void sgemm(float *C, int ldc, const float *A, int ai, int ak, const float *B, int bk, int bj, int M, int N, int K, int acc, float *work) {
    float *pa = work, *pb = work + (GEMM_MC + GEMM_MR) * GEMM_KC;
    for (int j0 = 0; j0 < N; j0 += GEMM_NC)
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
            int nc = imin(GEMM_NC, N - j0), kc = imin(GEMM_KC, K - k0);
            gemm_pack(pb, B + (size_t)k0 * bk + (size_t)j0 * bj, bj, bk, nc, kc, GEMM_NR);
            for (int i0 = 0; i0 < M; i0 += GEMM_MC) {
                int mc = imin(GEMM_MC, M - i0);
                gemm_pack(pa, A + (size_t)i0 * ai + (size_t)k0 * ak, ai, ak, mc, kc, GEMM_MR);
                for (int j = 0; j < nc; j += GEMM_NR)
                    for (int i = 0; i < mc; i += GEMM_MR)
                        gemm_kernel(kc, pa + (size_t)i * kc, pb + (size_t)j * kc, C + (size_t)(i0 + i) * ldc + j0 + j, ldc,
                                    imin(GEMM_MR, mc - i), imin(GEMM_NR, nc - j), acc || k0 > 0);
            }
        }
}

// matmul: out[T, N] = in[T, K] @ W[N, K]^T: tiles of MC x NC over the threads; a few rows (generation) as dot products.
static void matmul(float *out, const float *in, const float *W, int T, int K, int N) {
    if (T < GEMM_MR) {
OMP(omp parallel for collapse(2) schedule(static))
        for (int t = 0; t < T; t++)
            for (int j = 0; j < N; j++) out[(size_t)t * N + j] = dot(in + (size_t)t * K, W + (size_t)j * K, K);
        return;
    }
    int mt = (T + GEMM_MC - 1) / GEMM_MC, nt = (N + GEMM_NC - 1) / GEMM_NC;
OMP(omp parallel)
    {
        float *work = galloc(GEMM_WORK * sizeof(float));
OMP(omp for collapse(2) schedule(dynamic))
        for (int i = 0; i < mt; i++)
            for (int j = 0; j < nt; j++) {
                int i0 = i * GEMM_MC, j0 = j * GEMM_NC;
                sgemm(out + (size_t)i0 * N + j0, N, in + (size_t)i0 * K, K, 1, W + (size_t)j0 * K, 1, K,
                     imin(GEMM_MC, T - i0), imin(GEMM_NC, N - j0), K, 0, work);
            }
        free(work);
    }
}

// rmsnorm: out = x / sqrt(mean(x^2) + eps), n values.
static void rmsnorm(float *out, const float *x, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / n) + RMS_EPS);
    for (int i = 0; i < n; i++) out[i] = x[i] * r;
}

// rope_table: cos then sin of the angles of positions pos0.. for RoPE on R dims: [T][R], inv_freq_i = base^(-2i/R).
static void rope_table(float *tab, int T, int pos0, int R, float base) {
    int half = R / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float ang = (float)(pos0 + t) * (1.0f / powf(base, (float)(2 * i) / (float)R));
            tab[(size_t)t * R + i] = cosf(ang);
            tab[(size_t)t * R + half + i] = sinf(ang);
        }
}

// rope: rotate the first R dims of a head vector as halves (x1, x2) of R/2 by its position's row cs of rope_table:
// (x1 cos + x2 sin, -x1 sin + x2 cos); dims R.. pass unchanged.
static void rope(float *x, int R, const float *cs) {
    int half = R / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half], c = cs[i], s = cs[half + i];
        x[i] = a * c + b * s;
        x[i + half] = -a * s + b * c;
    }
}

static float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

// Activations of T rows: T / seq sequences of seq tokens at positions pos0.. (pos0 > 0 only for one sequence
// whose earlier keys are in the KV cache). With doc_attention, ds holds each row's first key (doc_starts). `observe`, when set, sees the input of every linear layer (GPTQ's
// calibration statistics): W identifies the weight, X is [T, K].
typedef struct Acts Acts;
typedef void (*ObserveFn)(void *ctx, const float *W, const float *X, int T, int K);
struct Acts {
    int T, seq, pos0;
    float *x, *x1, *x0, *h;  // [T, d]: the stream (lane 0), lane 1, the normalized embeddings, scratch
    int lanes;              // 1 or 2 live residual lanes
    float *q;               // [T, d]
    float *k, *v;           // [T, kv_dim]
    float *ve;              // [T, kv_dim] ValueEmbedding's base of the tokens, scale * proj(embed[tok]) (ve_dim > 0)
    float *y;               // [T, d]
    float *u;               // [T, hidden]
    float *br0, *br1;       // [T, d] attention and MLP branch outputs
    float *skips;           // [num_skip_rows, T, d], or with 03-31's lanes [num_skip_rows, 2, T, d] (both lanes)
    float *rope;            // [T, R] rope_table of the positions of a sequence; [train_seq_len, R] of 0.. with doc_attention
    int *ds, doc0;          // [T] doc_attention: the position of each row's first key in its sequence; the KV cache's document start
    int cap, vpos;          // KV cache: positions it holds (0 = none); the virtual layer running
    float *kc, *vc;         // [virtual layers, cap, kv_dim] keys and values of every position so far
    ObserveFn observe;      // NULL unless calibrating
    void *observe_ctx;
};

static GOLF_UNUSED void acts_alloc(Acts *a, const Config *c, int T) {
    int d = c->model_dim, kv = c->num_kv_heads * (d / c->num_heads);
    memset(a, 0, sizeof(*a));
    a->T = a->seq = T;
    size_t td = (size_t)T * d * 4;
    a->x = galloc(td); a->x1 = galloc(td); a->x0 = galloc(td); a->h = galloc(td); a->q = galloc(td); a->y = galloc(td);
    a->br0 = galloc(td); a->br1 = galloc(td); a->rope = galloc((size_t)(c->doc_attention && c->train_seq_len > T ? c->train_seq_len : T) * d * 4);
    a->ds = galloc((size_t)T * sizeof(int));
    a->k = galloc((size_t)T * kv * 4); a->v = galloc((size_t)T * kv * 4); a->ve = galloc(c->ve_dim ? (size_t)T * kv * 4 : 1);
    a->u = galloc((size_t)T * c->mlp_hidden * 4);
    a->skips = galloc((size_t)(skip_rows(c) + 1) * (c->parallel_form == PARALLEL_0429 ? 1 : 2) * td);
}

// acts_cache: give a a KV cache of cap positions (generation: each forward then adds its tokens at pos0..).
static GOLF_UNUSED void acts_cache(Acts *a, const Config *c, int cap) {
    int enc, dec, idx[MAX_LAYERS];
    size_t n = (size_t)schedule(c, 1, &enc, &dec, idx) * cap * c->num_kv_heads * (c->model_dim / c->num_heads) * 4;
    a->cap = cap; a->kc = galloc(n); a->vc = galloc(n);
}

static GOLF_UNUSED void acts_free(Acts *a) {
    float *bufs[] = {a->x, a->x1, a->x0, a->h, a->q, a->y, a->br0, a->br1, a->k, a->v, a->ve, a->u, a->skips, a->rope, a->kc, a->vc};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    free(a->ds);
    memset(a, 0, sizeof(*a));
}

// linear: out[T, N] = in[T, K] @ W[N, K]^T, shown to the observer first.
static void linear(Acts *a, float *out, const float *in, const float *W, int K, int N) {
    if (a->observe) a->observe(a->observe_ctx, W, in, a->T, K);
    matmul(out, in, W, a->T, K, N);
}

enum { ATT_QB = 64, ATT_KB = 64 };   // queries and keys per attention block

// attention: causal GQA attention of q (a->T rows) over the keys and values K, V ([keys of a sequence, kv_dim] per
// sequence, ks rows apart) into a->y: per sequence, head and block of ATT_QB queries, blocks of ATT_KB keys with an
// online softmax; a query head reads its kv head's columns in place. ds (doc_attention; else NULL): row t's keys
// start at position ds[t], and a block's keys at its first row's. With XSA, each head's output loses its
// component along the token's own normalized value vector.
static void attention(Acts *a, const Config *c, int xsa, const float *K, const float *V, int ks, const int *ds) {
    int H = c->num_heads, hd = c->model_dim / H, d = c->model_dim, kvd = c->num_kv_heads * hd, group = H / c->num_kv_heads;
    int nseq = a->T / a->seq, nqb = (a->seq + ATT_QB - 1) / ATT_QB;
    float scale = 1.0f / sqrtf((float)hd);
OMP(omp parallel)
    {
        float *work = galloc((GEMM_WORK + ATT_QB * (ATT_KB + hd + 1)) * sizeof(float)), *S = work + GEMM_WORK, *O = S + ATT_QB * ATT_KB, *mx = O + ATT_QB * hd;
        double l[ATT_QB];
OMP(omp for collapse(3) schedule(dynamic))
        for (int b = 0; b < nseq; b++)
            for (int h = 0; h < H; h++)
                for (int qb = 0; qb < nqb; qb++) {
                    int t0 = qb * ATT_QB, nq = imin(ATT_QB, a->seq - t0), p0 = a->pos0 + t0, kh = h / group;
                    const float *q = a->q + ((size_t)b * a->seq + t0) * d + h * hd;
                    const float *Kb = K + (size_t)b * ks * kvd + kh * hd, *Vb = V + (size_t)b * ks * kvd + kh * hd;
                    for (int i = 0; i < nq; i++) { mx[i] = -INFINITY; l[i] = 0; }
                    memset(O, 0, (size_t)nq * hd * sizeof(float));
                    const int *dq = ds ? ds + (size_t)b * a->seq + t0 : NULL;   // the block's rows' first keys
                    for (int s0 = dq ? dq[0] : 0; s0 < p0 + nq; s0 += ATT_KB) {   // keys [s0, s0 + nk) of positions up to p0 + nq - 1
                        int nk = imin(ATT_KB, p0 + nq - s0);
                        sgemm(S, ATT_KB, q, d, 1, Kb + (size_t)s0 * kvd, 1, kvd, nq, nk, hd, 0, work);
                        for (int i = 0; i < nq; i++) {   // online softmax: rescale the row's sums to its new maximum
                            float *si = S + i * ATT_KB, m = mx[i];
                            int n = imin(nk, p0 + i + 1 - s0), lo = dq && dq[i] > s0 ? dq[i] - s0 : 0;   // keys j in [lo, n) of this row
                            if (lo >= n) { memset(si, 0, (size_t)nk * sizeof(float)); continue; }   // none in this block
                            for (int j = lo; j < n; j++) { si[j] *= scale; if (si[j] > m) m = si[j]; }
                            float corr = expf(mx[i] - m);
                            double sum = 0;
                            for (int j = 0; j < nk; j++) { si[j] = j >= lo && j < n ? expf(si[j] - m) : 0.0f; sum += si[j]; }
                            l[i] = l[i] * corr + sum;
                            mx[i] = m;
                            if (corr != 1.0f) for (int e = 0; e < hd; e++) O[i * hd + e] *= corr;
                        }
                        sgemm(O, hd, S, ATT_KB, 1, Vb + (size_t)s0 * kvd, kvd, 1, nq, hd, nk, 1, work);
                    }
                    for (int i = 0; i < nq; i++) {
                        float *y = a->y + ((size_t)b * a->seq + t0 + i) * d + h * hd, r = (float)(1.0 / l[i]);
                        for (int e = 0; e < hd; e++) y[e] = O[i * hd + e] * r;
                        if (xsa) {
                            const float *v = Vb + (size_t)(p0 + i) * kvd;
                            float vv = dot(v, v, hd), proj = vv > 0 ? dot(y, v, hd) / vv : 0;   // (y . vhat) vhat = (y . v / |v|^2) v
                            for (int e = 0; e < hd; e++) y[e] -= proj * v[e];
                        }
                    }
                }
        free(work);
    }
}

// norm_scaled: out = rms_norm(in) * s per row (s = LN scale of the layer).
static void norm_scaled(float *out, const float *in, int T, int d, float s) {
OMP(omp parallel for schedule(static))
    for (int t = 0; t < T; t++) {
        rmsnorm(out + (size_t)t * d, in + (size_t)t * d, d);
        if (s != 1.0f) for (int i = 0; i < d; i++) out[(size_t)t * d + i] *= s;
    }
}

// scale_rows: x[t, i] *= s[i] over T rows of d.
static void scale_rows(float *x, const float *s, int T, int d) {
OMP(omp parallel for schedule(static))
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) x[(size_t)t * d + i] *= s[i];
}

// attn_branch: out = attn_scale * proj(attention(rms_norm(in) * s)) for layer l; with a KV cache the new keys and
// values join the cache of the virtual layer a->vpos first.
static void attn_branch(const GolfModel *m, int l, Acts *a, const float *in, float *out, float s) {
    const Config *c = &m->c;
    const LayerParams *p = &m->layer[l];
    int T = a->T, d = c->model_dim, H = c->num_heads, hd = d / H, kvd = c->num_kv_heads * hd, R = c->rope_dims ? c->rope_dims : hd;
    norm_scaled(a->h, in, T, d, s);
    linear(a, a->q, a->h, p->c_q, d, d);
    linear(a, a->k, a->h, p->c_k, d, kvd);
    linear(a, a->v, a->h, p->c_v, d, kvd);
    int vs = ve_slot(c, a->vpos);
    if (vs >= 0)   // ValueEmbedding at this position: v += ve base * its scale
        for (size_t i = 0; i < (size_t)T * kvd; i++) a->v[i] += a->ve[i] * m->ve_layer_scales[vs];
OMP(omp parallel for schedule(static))
    for (int t = 0; t < T; t++) {   // RoPE position: in the sequence, or with doc_attention in the document segment
        const float *cs = a->rope + (size_t)(c->doc_attention ? a->pos0 + t % a->seq - a->ds[t] : t % a->seq) * R;
        for (int h = 0; h < H; h++) {
            float *q = a->q + (size_t)t * d + h * hd;
            rmsnorm(q, q, hd);
            rope(q, R, cs);
            for (int i = 0; i < hd; i++) q[i] *= p->q_gain[h];
        }
        for (int h = 0; h < c->num_kv_heads; h++) {
            float *k = a->k + (size_t)t * kvd + h * hd;
            rmsnorm(k, k, hd);
            rope(k, R, cs);
        }
    }
    const float *K = a->k, *V = a->v;
    if (a->cap) {   // this virtual layer's cache rows [0, cap), the new ones at pos0..
        if (a->pos0 + T > a->cap) golf_die("the KV cache holds %d positions, %d asked", a->cap, a->pos0 + T);
        K = a->kc + (size_t)a->vpos * a->cap * kvd; V = a->vc + (size_t)a->vpos * a->cap * kvd;
        memcpy((float *)K + (size_t)a->pos0 * kvd, a->k, (size_t)T * kvd * 4); memcpy((float *)V + (size_t)a->pos0 * kvd, a->v, (size_t)T * kvd * 4);
    }
    attention(a, c, c->xsa_last_n && l >= c->num_layers - c->xsa_last_n, K, V, a->cap ? a->cap : a->seq, c->doc_attention ? a->ds : NULL);
    if (p->attn_gate)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                float g = sigmoidf(c->attn_gate_scale * dot(p->attn_gate + h * GATE_DIMS, a->h + (size_t)t * d, GATE_DIMS));
                for (int i = 0; i < hd; i++) a->y[(size_t)t * d + h * hd + i] *= g;
            }
    linear(a, out, a->y, p->proj, d, d);
    scale_rows(out, p->attn_scale, T, d);
}

// mlp_branch: out = mlp_scale * mlp_proj(act(fc(rms_norm(in) * s))), act(x) = (x > 0 ? x : slope x)^2.
static void mlp_branch(const GolfModel *m, int l, Acts *a, const float *in, float *out, float s) {
    const Config *c = &m->c;
    const LayerParams *p = &m->layer[l];
    int T = a->T, d = c->model_dim, F = c->mlp_hidden;
    norm_scaled(a->h, in, T, d, s);
    linear(a, a->u, a->h, p->fc, d, F);
OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < (size_t)T * F; i++) { float r = a->u[i] > 0 ? a->u[i] : c->mlp_leaky_slope * a->u[i]; a->u[i] = r * r; }
    linear(a, out, a->u, p->mlp_proj, F, d);
    scale_rows(out, p->mlp_scale, T, d);
}

// merge_lanes: make the stream single again: x = (lane0 + lane1) / 2.
static void merge_lanes(Acts *a, int d) {
    if (a->lanes == 2)
        for (size_t i = 0; i < (size_t)a->T * d; i++) a->x[i] = 0.5f * (a->x[i] + a->x1[i]);
    a->lanes = 1;
}

// set_lanes: the lanes a position runs on (par: it is parallel): a sequential one merges two lanes, a parallel one
// splits one stream into two equal lanes.
static void set_lanes(const Config *c, int par, Acts *a) {
    if (!par) merge_lanes(a, c->model_dim);
    else if (a->lanes == 1) { memcpy(a->x1, a->x, (size_t)a->T * c->model_dim * 4); a->lanes = 2; }
}

// resid_mix_into: out = resid_mix[0] * x + resid_mix[1] * x0 per column.
static void resid_mix_into(float *out, const float *x, const float *x0, const float *mix, int T, int d) {
OMP(omp parallel for schedule(static))
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) { size_t k = (size_t)t * d + i; out[k] = mix[i] * x[k] + mix[d + i] * x0[k]; }
}

// lanes_update: x = r x + p0 b, x1 = r x1 + p1 b (03-31's form: a branch's output b into both lanes).
static void lanes_update(Acts *a, const float *b, float r, float p0, float p1, size_t n) {
OMP(omp parallel for schedule(static))
    for (size_t i = 0; i < n; i++) { a->x[i] = r * a->x[i] + p0 * b[i]; a->x1[i] = r * a->x1[i] + p1 * b[i]; }
}

// block: physical layer l on the stream (one lane), or on two lanes when its position is parallel (par).
static void block(const GolfModel *m, int l, int par, Acts *a) {
    const Config *c = &m->c;
    const LayerParams *p = &m->layer[l];
    int T = a->T, d = c->model_dim;
    size_t n = (size_t)T * d;
    float s = ln_scale_of(c, l);
    set_lanes(c, par, a);
    if (a->lanes == 2 && c->parallel_form != PARALLEL_0429) {   // 03-31: attention on the mix of lane 0, then the MLP on
        const float *r = p->par_resid, *po = p->par_post;          // the mix of lane 1; each output into both lanes
        resid_mix_into(a->br0, a->x, a->x0, p->resid_mix, T, d);
        attn_branch(m, l, a, a->br0, a->br0, s);
        lanes_update(a, a->br0, r[0], po[0], po[1], n);
        resid_mix_into(a->br1, a->x1, a->x0, p->resid_mix, T, d);
        mlp_branch(m, l, a, a->br1, a->br1, s);
        lanes_update(a, a->br1, r[1], po[2], po[3], n);
        return;
    }
    resid_mix_into(a->lanes == 1 ? a->x : a->br0, a->x, a->x0, p->resid_mix, T, d);   // in place on one stream; lane 0 itself goes on raw
    if (a->lanes == 1) {
        attn_branch(m, l, a, a->x, a->br0, s);
OMP(omp parallel for schedule(static))
        for (size_t i = 0; i < n; i++) a->x[i] += a->br0[i];
        mlp_branch(m, l, a, a->x, a->br0, s);
OMP(omp parallel for schedule(static))
        for (size_t i = 0; i < n; i++) a->x[i] += a->br0[i];
    } else {   // attention reads the mix of lane 0, the MLP lane 1; both lanes take both branches
        attn_branch(m, l, a, a->br0, a->br0, s);
        mlp_branch(m, l, a, a->x1, a->br1, s);
        for (size_t i = 0; i < n; i++) {
            a->x[i] = p->lane_rho[0] * a->x[i] + p->lane_mix[0] * a->br0[i] + p->lane_mix[1] * a->br1[i];
            a->x1[i] = p->lane_rho[1] * a->x1[i] + p->lane_mix[2] * a->br0[i] + p->lane_mix[3] * a->br1[i];
        }
    }
}

// embed_token: out = the raw token (+ BigramHash) embedding of tok[0] (tok[-1] its predecessor unless first).
static void embed_token(const GolfModel *m, const int32_t *tok, int first, float *out) {
    const Config *c = &m->c;
    int d = c->model_dim, db = c->bigram_dim;
    memcpy(out, m->tok_emb + (size_t)tok[0] * d, (size_t)d * 4);
    if (c->bigram_vocab) {   // idx_0 = V_b - 1, idx_t = (36313 t_i xor 27191 t_{i-1}) mod (V_b - 1)
        int64_t idx = first ? c->bigram_vocab - 1 : ((36313 * (int64_t)tok[0]) ^ (27191 * (int64_t)tok[-1])) % (c->bigram_vocab - 1);
        const float *row = m->bigram_embed + (size_t)idx * db;
        for (int j = 0; j < d; j++) out[j] += m->bigram_scale[0] * dot(m->bigram_proj + (size_t)j * db, row, db);
    }
}

// embed: x0 = rms_norm(SmearGate(e)) of the raw token (+ BigramHash) embeddings e of tokens[0..T) (with pos0 > 0,
// tokens[-1] and tokens[-2] are the tokens before the first).
static void embed(const GolfModel *m, const int32_t *tokens, Acts *a) {
    const Config *c = &m->c;
    int T = a->T, d = c->model_dim;
OMP(omp parallel for schedule(static))
    for (int t = 0; t < T; t++) embed_token(m, tokens + t, a->pos0 + t % a->seq == 0, a->x + (size_t)t * d);
    if (c->smear_gate)   // e_t += lam * sigmoid(w . e_t[:12]) * e_{t-1}, except at position 0 and BOS; from the end so e_{t-1} is unsmeared
        for (int t = T - 1; t >= 0; t--) {
            if (tokens[t] == 1 || a->pos0 + t % a->seq == 0) continue;
            float *x = a->x + (size_t)t * d, g = m->smear_lam[0] * sigmoidf(dot(m->smear_w, x, SMEAR_DIMS)), *prev = x - d;
            if (t % a->seq == 0) embed_token(m, tokens + t - 1, a->pos0 == 1, prev = a->y);   // the cached predecessor, again
            for (int i = 0; i < d; i++) x[i] += g * prev[i];
        }
    norm_scaled(a->x, a->x, T, d, 1.0f);
    memcpy(a->x0, a->x, (size_t)T * d * 4);
}

// doc_starts (doc_attention): a->ds[t], the position in its sequence of row t's first key: the latest of the sequence
// start and the sequence's BOS tokens at or before it, plus the whole train_seq_len chunks of that document before
// it (the 2026-04-10 record's cu_seqlens with max_doc_len = the sequence length); the KV cache's generation carries
// the document start across calls (a->doc0).
static void doc_starts(const Config *c, const int32_t *tokens, Acts *a) {
    int L = c->train_seq_len;
    for (int b = 0; b < a->T / a->seq; b++) {
        int d0 = a->pos0 ? a->doc0 : 0;
        for (int t = 0; t < a->seq; t++) {
            int p = a->pos0 + t;
            if (tokens[(size_t)b * a->seq + t] == BOS_ID) d0 = p;
            a->ds[(size_t)b * a->seq + t] = d0 + (p - d0) / L * L;
        }
        a->doc0 = d0;
    }
}

// forward_seqs: the final normalized hidden states of nseq sequences of seq tokens (tokens[0..nseq*seq), one after
// another) into a->h ([T, d]), along the loop schedule when the model has one (U-Net skips: the last ns encoder
// outputs come back in reverse order).
static GOLF_UNUSED void forward_seqs(const GolfModel *m, const int32_t *tokens, int nseq, int seq, Acts *a) {
    const Config *c = &m->c;
    int d = c->model_dim, enc, dec, idx[MAX_LAYERS], T = nseq * seq;
    schedule(c, 1, &enc, &dec, idx);
    int ns = num_skips(enc, dec);
    size_t n = (size_t)T * d;
    a->T = T; a->seq = seq; a->lanes = 1;
    if (c->doc_attention) doc_starts(c, tokens, a);   // positions in the document: 0 .. train_seq_len - 1
    rope_table(a->rope, c->doc_attention ? c->train_seq_len : seq, c->doc_attention ? 0 : a->pos0, c->rope_dims ? c->rope_dims : d / c->num_heads, c->rope_base);
    embed(m, tokens, a);
    if (c->ve_dim) {   // ValueEmbedding's base, once for every position: scale * proj(ve_embed[tok]) (no proj: the row itself)
        int dv = c->ve_dim, kvd = c->num_kv_heads * (d / c->num_heads);
OMP(omp parallel for schedule(static))
        for (int t = 0; t < T; t++) {
            const float *row = m->ve_embed + (size_t)tokens[t] * dv;
            for (int j = 0; j < kvd; j++) a->ve[(size_t)t * kvd + j] = m->ve_scale[0] * (m->ve_proj ? dot(m->ve_proj + (size_t)j * dv, row, dv) : row[j]);
        }
    }
    int two = c->parallel_form != PARALLEL_0429;   // 03-31: a skip holds both lanes (one stream twice), each goes into its lane
    for (int e = 0; e < enc; e++) {
        a->vpos = e;
        block(m, idx[e], parallel_at(c, idx, e), a);
        if (e >= enc - ns) {
            float *sk = a->skips + (size_t)(e - (enc - ns)) * (two + 1) * n;
            for (size_t k = 0; k < n; k++) sk[k] = a->lanes == 2 && !two ? 0.5f * (a->x[k] + a->x1[k]) : a->x[k];
            if (two) memcpy(sk + n, a->lanes == 2 ? a->x1 : a->x, n * 4);
        }
    }
    for (int i = 0; i < dec; i++) {
        int par = parallel_at(c, idx, enc + i);
        set_lanes(c, par, a);
        // the skip: x + w skip, or lerp(w skip, x, sigmoid(gate)) = g x + (1 - g) w skip; into lane 0 (a->x) only,
        // or (03-31) into each lane its own
        for (int lane = 0; i < ns && lane < (two ? a->lanes : 1); lane++) {
            const float *sk = a->skips + ((size_t)(ns - 1 - i) * (two + 1) + lane) * n, *w = m->skip_weights + (size_t)i * d;
            const float *g = m->skip_gates ? m->skip_gates + (size_t)i * d : NULL;
            float *x = lane ? a->x1 : a->x;
            for (size_t k = 0; k < n; k++) {
                float ws = w[k % d] * sk[k];
                if (g) { float s = sigmoidf(g[k % d]); x[k] = s * x[k] + (1.0f - s) * ws; }
                else x[k] += ws;
            }
        }
        a->vpos = enc + i;
        block(m, idx[enc + i], par, a);
    }
    merge_lanes(a, d);
    norm_scaled(a->h, a->x, T, d, 1.0f);
}

// forward: forward_seqs of one sequence tokens[0..T) (at positions a->pos0.., after the KV cache's).
static GOLF_UNUSED void forward(const GolfModel *m, const int32_t *tokens, int T, Acts *a) { forward_seqs(m, tokens, 1, T, a); }

// logits_rows: softcapped logits [n, V] of the hidden states h [n, d].
static GOLF_UNUSED void logits_rows(const GolfModel *m, const float *h, int n, float *logits) {
    const Config *c = &m->c;
    matmul(logits, h, m->lm_head, n, c->model_dim, c->vocab_size);
OMP(omp parallel for schedule(static))
    for (int r = 0; r < n; r++)
        for (int v = 0; v < c->vocab_size; v++) { float *z = logits + (size_t)r * c->vocab_size + v; *z = c->logit_softcap * tanhf(*z / c->logit_softcap); }
}

// logits_at: softcapped logits [V] of the hidden state h [d].
static GOLF_UNUSED void logits_at(const GolfModel *m, const float *h, float *logits) { logits_rows(m, h, 1, logits); }

// nll_of: -log softmax(logits)[target] of one row of V logits, in double.
static double nll_of(const float *logits, int V, int target) {
    float mx = logits[0];
    for (int v = 1; v < V; v++) if (logits[v] > mx) mx = logits[v];
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)logits[v] - mx);
    return log(sum) + mx - logits[target];
}

// nll_at: -log softmax(logits)[target] of the hidden state h, in double.
static GOLF_UNUSED double nll_at(const GolfModel *m, const float *h, int target, float *logits) {
    logits_at(m, h, logits);
    return nll_of(logits, m->c.vocab_size, target);
}

// ----------------------------------------------------------------------------------------------------
// 8. shards and evaluation

enum { SHARD_MAGIC = 20240520, SHARD_VERSION = 1, SHARD_HEADER_INTS = 256 };

// load_shard_file: the tokens of one shard, checked (magic, version, exact size, ids < vocab); dies naming it.
static GOLF_UNUSED int32_t *load_shard_file(const char *path, size_t *count_out, int vocab) {
    size_t n;
    uint8_t *p = read_file(path, &n);
    if (n < SHARD_HEADER_INTS * 4 || rd32(p) != SHARD_MAGIC || rd32(p + 4) != SHARD_VERSION)
        golf_die("shard '%s': bad header (expected magic %d, version %d)", path, SHARD_MAGIC, SHARD_VERSION);
    size_t count = rd32(p + 8);
    if (n != SHARD_HEADER_INTS * 4 + 2 * count)
        golf_die("shard '%s': %zu bytes, but its header's %zu tokens need %zu", path, n, count, SHARD_HEADER_INTS * 4 + 2 * count);
    int32_t *tok = galloc((count ? count : 1) * sizeof(int32_t));
    for (size_t i = 0; i < count; i++) {
        int t = rd16(p + SHARD_HEADER_INTS * 4 + 2 * i);
        if (t >= vocab) golf_die("shard '%s': token %d at position %zu is outside the model's vocabulary (%d)", path, t, i, vocab);
        tok[i] = t;
    }
    free(p);
    *count_out = count;
    return tok;
}

// is_sidecar: is path a CaseOps byte sidecar (its name holds "_bytes_", the record's rule)? The val pattern
// fineweb_val_*.bin matches them too; they are not tokens.
static GOLF_UNUSED int is_sidecar(const char *path) {
    const char *base = strrchr(path, '/');
    return strstr(base ? base + 1 : path, "_bytes_") != NULL;
}

// shard_glob: the files matching pattern, sorted; dies when none match.
static GOLF_UNUSED glob_t shard_glob(const char *pattern) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) golf_die("no files match '%s'\n  hint: check DATA_PATH / --val", pattern);
    return g;
}

// load_shards: all tokens of the files matching pattern (byte sidecars left out), in sorted order.
static GOLF_UNUSED int32_t *load_shards(const char *pattern, size_t *ntok, int vocab) {
    glob_t g = shard_glob(pattern);
    size_t total = 0;
    int32_t *tok = NULL;
    for (size_t f = 0; f < g.gl_pathc; f++) {
        size_t count;
        if (is_sidecar(g.gl_pathv[f])) continue;
        int32_t *part = load_shard_file(g.gl_pathv[f], &count, vocab);
        tok = (int32_t *)realloc(tok, (total + count + 1) * sizeof(int32_t));
        if (!tok) golf_die("out of memory for tokens");
        memcpy(tok + total, part, count * sizeof(int32_t));
        total += count;
        free(part);
    }
    globfree(&g);
    if (!tok) golf_die("'%s' matches only CaseOps byte sidecars (*_bytes_*), no token shard", pattern);
    *ntok = total;
    return tok;
}

// load_sidecars: the CaseOps byte sidecars of the val shards matching val_pattern, as one array parallel to their
// ntok tokens: the files matching bytes_pattern (sorted, one per shard, in order) or, when bytes_pattern is NULL,
// fineweb_val_bytes_N.bin beside each fineweb_val_N.bin (NULL when no shard has one). A sidecar has a shard's header
// and layout (uint16 counts) and exactly as many entries as its shard has tokens; dies naming the file otherwise.
static GOLF_UNUSED uint16_t *load_sidecars(const char *val_pattern, const char *bytes_pattern, size_t ntok) {
    glob_t g = shard_glob(val_pattern), b;
    if (bytes_pattern && (glob(bytes_pattern, 0, NULL, &b) != 0 || b.gl_pathc == 0))
        golf_die("no byte sidecar matches '%s'\n  hint: tokenize shards --caseops writes DIR/fineweb_val_bytes_*.bin", bytes_pattern);
    uint16_t *out = NULL;
    size_t total = 0, k = 0, have = 0, lacking = 0;
    char side[4096], example[4096] = "";
    for (size_t f = 0; f < g.gl_pathc; f++) {
        const char *path = g.gl_pathv[f], *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
        if (is_sidecar(path)) continue;
        if (bytes_pattern) {
            if (k == b.gl_pathc) golf_die("'%s' matches fewer byte sidecars (%zu) than '%s' matches val shards", bytes_pattern, b.gl_pathc, val_pattern);
            snprintf(side, sizeof(side), "%s", b.gl_pathv[k++]);
        } else {
            struct stat st;
            snprintf(side, sizeof(side), "%.*sfineweb_val_bytes_%s", (int)(base - path), path, base + 12);
            if (strncmp(base, "fineweb_val_", 12) != 0 || stat(side, &st) != 0) { if (!lacking++) snprintf(example, sizeof(example), "%s", path); continue; }
        }
        have++;
        uint8_t h[12], *p;
        size_t n, count;
        FILE *fp = fopen(path, "rb");   // the val shard, already checked whole: its count
        if (!fp || fread(h, 1, 12, fp) != 12) golf_die("cannot read the header of val shard '%s'", path);
        fclose(fp);
        count = rd32(h + 8);
        p = read_file(side, &n);
        if (n < SHARD_HEADER_INTS * 4 || rd32(p) != SHARD_MAGIC || rd32(p + 4) != SHARD_VERSION)
            golf_die("byte sidecar '%s': bad header (expected magic %d, version %d)", side, SHARD_MAGIC, SHARD_VERSION);
        if (n != SHARD_HEADER_INTS * 4 + 2 * (size_t)rd32(p + 8))
            golf_die("byte sidecar '%s': %zu bytes, but its header's %u counts need %zu", side, n, rd32(p + 8), SHARD_HEADER_INTS * 4 + 2 * (size_t)rd32(p + 8));
        if (rd32(p + 8) != count) golf_die("byte sidecar '%s' holds %u counts, but its val shard '%s' has %zu tokens", side, rd32(p + 8), path, count);
        if (total + count > ntok) golf_die("byte sidecar '%s' runs past the %zu val tokens", side, ntok);
        if (!out) out = galloc((ntok ? ntok : 1) * sizeof(uint16_t));
        for (size_t i = 0; i < count; i++) out[total + i] = rd16(p + SHARD_HEADER_INTS * 4 + 2 * i);
        total += count;
        free(p);
    }
    if (bytes_pattern && k != b.gl_pathc) golf_die("'%s' matches more byte sidecars (%zu) than '%s' matches val shards (%zu)", bytes_pattern, b.gl_pathc, val_pattern, k);
    if (have && lacking) golf_die("val shard '%s' has no byte sidecar beside it (fineweb_val_bytes_*.bin) while others have: a CaseOps val set needs one per shard", example);
    if (bytes_pattern) globfree(&b);
    globfree(&g);
    return out;
}

typedef struct { double loss_sum, tokens, bytes; } EvalSums;

enum { EVAL_ROWS = 2048, NLL_ROWS = 256 };   // rows of a forward over a batch of windows; rows per LM-head block

// score_rows: add the NLL of the n hidden states h [n, d] against targets y [n] to s (logits [n, V], nll [n] scratch).
static void score_rows(const GolfModel *m, const float *h, const int32_t *y, int n, float *logits, double *nll, EvalSums *s) {
    int V = m->c.vocab_size;
    logits_rows(m, h, n, logits);
OMP(omp parallel for schedule(static))
    for (int r = 0; r < n; r++) nll[r] = nll_of(logits + (size_t)r * V, V, y[r]);
    for (int r = 0; r < n; r++) s->loss_sum += nll[r];
}

// score_batch: add the NLL and bytes of nb windows (window k = tokens[start[k] .. start[k] + W], scoring its
// positions [from[k], W); position t predicts token t + 1) to s, in one forward of nb sequences.
static void score_batch(const GolfModel *m, const ByteLut *lut, const int32_t *tokens, const size_t *start, const int *from, int nb, int W,
                        Acts *a, int32_t *rows, EvalSums *s) {
    int d = m->c.model_dim, n = 0;
    for (int k = 0; k < nb; k++) memcpy(rows + (size_t)k * W, tokens + start[k], (size_t)W * 4);
    forward_seqs(m, rows, nb, W, a);
    float *hs = galloc((size_t)NLL_ROWS * d * 4), *logits = galloc((size_t)NLL_ROWS * m->c.vocab_size * 4);
    double *nll = galloc(NLL_ROWS * sizeof(double));
    int32_t y[NLL_ROWS];
    for (int k = 0; k < nb; k++)
        for (int t = from[k]; t < W; t++) {
            y[n] = tokens[start[k] + t + 1];
            memcpy(hs + (size_t)n * d, a->h + ((size_t)k * W + t) * d, (size_t)d * 4);
            s->tokens += 1;
            s->bytes += target_bytes(lut, tokens, start[k] + t + 1);
            if (++n == NLL_ROWS || (k == nb - 1 && t == W - 1)) { score_rows(m, hs, y, n, logits, nll, s); n = 0; }
        }
    free(hs); free(logits); free(nll);
}

// eval_windows: the scoring windows over tokens[0..targets] (target t is tokens[t+1]); window k holds tokens
// [start[k], start[k] + W] with W = min(T, targets) and scores its positions [from[k], W). Returns the count and
// fills start/from when they are not NULL.
//   stride 0: non-overlapping windows of T (train_gpt.py's rule; the caller cuts to a multiple of T, + 1).
//   stride S: windows start at 0, S, 2S, ... while they fit; the first scores all W targets, each later one its
//   last S; a final window ending at the last token scores whatever is left. Every target is scored once
//   (test/reference.py's eval_windows is the same rule).
static GOLF_UNUSED size_t eval_windows(size_t targets, int T, int stride, size_t *start, int *from) {
    size_t k = 0;
    if (!stride) {
        for (; k < targets / (size_t)T; k++) if (start) { start[k] = k * (size_t)T; from[k] = 0; }
        return k;
    }
    size_t W = (size_t)T < targets ? (size_t)T : targets, s = 0, scored = 0;   // targets [0, scored) are done
    for (;;) {
        if (start) { start[k] = s; from[k] = (int)(scored - s); }
        k++;
        scored = s + W;
        if (scored == targets) return k;
        s = s + (size_t)stride + W <= targets ? s + (size_t)stride : targets - W;
    }
}

// evaluate: val_loss and val_bpb over tokens[0..n), windows as eval_windows says.
static GOLF_UNUSED EvalSums evaluate(const GolfModel *m, const ByteLut *lut, const int32_t *tokens, size_t n, int T, int stride) {
    EvalSums s = {0, 0, 0};
    if (n < 2) golf_die("need at least 2 tokens to evaluate");
    size_t targets = n - 1, nw = eval_windows(targets, T, stride, NULL, NULL);
    if (!nw) golf_die("the val tokens (%zu) are fewer than one sequence of %d", n, T);
    size_t *start = galloc(nw * sizeof(size_t));
    int *from = galloc(nw * sizeof(int)), W = stride && targets < (size_t)T ? (int)targets : T;
    eval_windows(targets, T, stride, start, from);
    int B = EVAL_ROWS / W > 1 ? EVAL_ROWS / W : 1;
    if ((size_t)B > nw) B = (int)nw;
    Acts a;
    acts_alloc(&a, &m->c, B * W);
    int32_t *rows = galloc((size_t)B * W * 4);
    double t0 = seconds(), shown = t0;
    for (size_t w = 0; w < nw; w += (size_t)B) {
        int nb = nw - w < (size_t)B ? (int)(nw - w) : B;
        score_batch(m, lut, tokens, start + w, from + w, nb, W, &a, rows, &s);
        double now = seconds(), rate = s.tokens / (now - t0);
        if (now - shown >= 10 && w + (size_t)nb < nw) {   // a progress line every 10 s of a long evaluation
            fprintf(stderr, "%s: eval %.0f/%zu tokens, %.0f tokens/s, %.0f s left\n", g_golf_prog, s.tokens, targets, rate, (targets - s.tokens) / rate);
            shown = now;
        }
    }
    free(start); free(from); free(rows);
    acts_free(&a);
    return s;
}

// ----------------------------------------------------------------------------------------------------
// 9. generation: sample a continuation and print it as text

// piece_text: append the text of token id to out (U+2581 -> ' '; byte pieces -> their byte); returns length.
static GOLF_UNUSED size_t piece_text(const Pieces *v, int id, char *out) {
    if (v->type[id] == PIECE_BYTE) { out[0] = (char)byte_piece_value(v->piece[id], v->plen[id]); return 1; }
    if (v->type[id] == PIECE_CONTROL || v->type[id] == PIECE_UNUSED) return 0;
    if (v->type[id] == PIECE_UNKNOWN) { memcpy(out, " \xe2\x81\x87 ", 5); return 5; }
    size_t n = 0;
    for (int k = 0; k < v->plen[id];) {
        if (k + 3 <= v->plen[id] && memcmp(v->piece[id] + k, SPACE_SYMBOL, 3) == 0) { out[n++] = ' '; k += 3; }
        else out[n++] = v->piece[id][k++];
    }
    return n;
}

// utf8_emit: write the complete UTF-8 characters at the start of buf[0..*n) to f and keep the rest in buf. A byte
// that cannot start or continue a well-formed character (RFC 3629: no overlongs, surrogates or code points above
// U+10FFFF) becomes U+FFFD, as sentencepiece's decoder does, so the text printed is always valid UTF-8; at the end
// (last) an unfinished character becomes U+FFFD too.
static GOLF_UNUSED void utf8_emit(FILE *f, unsigned char *buf, int *n, int last) {
    int i = 0;
    while (i < *n) {
        unsigned c = buf[i];
        int len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;   // 2nd byte's range
        int k = 1;
        while (len && k < len && i + k < *n && buf[i + k] >= (k == 1 ? lo : 0x80) && buf[i + k] <= (k == 1 ? hi : 0xbf)) k++;
        if (len && k == len) { fwrite(buf + i, 1, (size_t)len, f); i += len; }
        else if (len && i + k == *n && !last) break;   // a well-formed start that awaits its next bytes
        else { fputs("\xef\xbf\xbd", f); i += len ? k : 1; }   // U+FFFD for the ill-formed start (or stray byte)
    }
    memmove(buf, buf + i, (size_t)(*n - i));
    *n -= i;
}

// piece_id: the id of a normal or user-defined piece equal to s[0..n), or -1 (a linear scan: prompts are short).
static int piece_id(const Pieces *v, const char *s, int n) {
    for (int i = 0; i < v->n; i++)
        if (v->plen[i] == n && v->piece[i][0] == s[0] && (v->type[i] == PIECE_NORMAL || v->type[i] == PIECE_USER_DEFINED) && memcmp(v->piece[i], s, (size_t)n) == 0) return i;
    return -1;
}

// prompt_encode: ids of a short text: whitespace rules and ' ' -> U+2581 as the model's normalizer says, then
// BPE (merge the best-scoring neighbour pair, leftmost on ties, until none is a piece), byte fallback or unk.
// The NFKC rewriting of `nmt_nfkc` is not applied (ASCII text needs none): `tokenize encode` is exact for all text.
static GOLF_UNUSED int prompt_encode(const Pieces *v, const char *text, int32_t *ids, int cap) {
    size_t n = strlen(text), k = 0;
    char *s = galloc(4 * n + 4);
    int *len = galloc((4 * n + 4) * sizeof(int)), ns = 0, nid = 0, prev_space = v->remove_extra_ws;
    if (v->add_dummy_prefix) { memcpy(s, SPACE_SYMBOL, 3); k = 3; }
    for (size_t i = 0; i < n; i++) {
        int space = text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r';
        if (space && prev_space) continue;
        if (space) { memcpy(s + k, SPACE_SYMBOL, 3); k += 3; } else s[k++] = text[i];
        prev_space = space && v->remove_extra_ws;
    }
    while (v->remove_extra_ws && k >= 3 && memcmp(s + k - 3, SPACE_SYMBOL, 3) == 0) k -= 3;
    for (size_t i = 0; i < k; ns++) {   // one symbol per UTF-8 character
        int l = (uint8_t)s[i] < 0xC0 ? 1 : (uint8_t)s[i] < 0xE0 ? 2 : (uint8_t)s[i] < 0xF0 ? 3 : 4;
        len[ns] = i + (size_t)l <= k ? l : (int)(k - i);
        i += (size_t)len[ns];
    }
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (int i = 0, off = 0; i + 1 < ns; off += len[i++]) {
            int id = piece_id(v, s + off, len[i] + len[i + 1]);
            if (id >= 0 && (best < 0 || v->score[id] > best_score)) { best = i; best_score = v->score[id]; }
        }
        if (best < 0) break;
        len[best] += len[best + 1];
        memmove(len + best + 1, len + best + 2, (size_t)(ns - best - 2) * sizeof(int));
        ns--;
    }
    int unk = -1, bytes = 0;
    for (int j = 0; j < v->n; j++) { if (v->type[j] == PIECE_UNKNOWN) unk = j; if (v->type[j] == PIECE_BYTE) bytes = 1; }
    for (int i = 0, off = 0; i < ns; off += len[i++]) {
        int id = piece_id(v, s + off, len[i]);
        if (id < 0 && !bytes && nid && ids[nid - 1] == unk) continue;   // a run of unknown characters is one <unk>
        if (id >= 0 || !bytes) { if (nid < cap) ids[nid++] = id >= 0 ? id : unk; continue; }
        for (int b = 0; b < len[i]; b++)
            for (int j = 0; j < v->n; j++)
                if (v->type[j] == PIECE_BYTE && byte_piece_value(v->piece[j], v->plen[j]) == (uint8_t)s[off + b]) { if (nid < cap) ids[nid++] = j; break; }
    }
    free(s); free(len);
    return nid;
}

static GOLF_UNUSED uint64_t rng_next(uint64_t *s) {   // splitmix64
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// sample: an id from logits with temperature and top-k (temp 0: the argmax).
static GOLF_UNUSED int sample(float *logits, int V, float temp, int top_k, uint64_t *rng) {
    int best = 0;
    for (int v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    if (temp <= 0) return best;
    float kth = -INFINITY;
    if (top_k > 0 && top_k < V) {   // the k-th largest logit by repeated selection of the maximum below
        float prev = INFINITY;
        int taken = 0;
        while (taken < top_k) {
            float mx = -INFINITY;
            int cnt = 0;
            for (int v = 0; v < V; v++) if (logits[v] < prev && logits[v] > mx) mx = logits[v];
            for (int v = 0; v < V; v++) if (logits[v] == mx) cnt++;
            taken += cnt; kth = mx; prev = mx;
            if (mx == -INFINITY) break;
        }
    }
    double sum = 0;
    for (int v = 0; v < V; v++) sum += logits[v] >= kth ? exp((logits[v] - logits[best]) / temp) : 0;
    double r = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * sum;
    for (int v = 0; v < V; v++) {
        if (logits[v] < kth) continue;
        r -= exp((logits[v] - logits[best]) / temp);
        if (r <= 0) return v;
    }
    return best;
}

// ----------------------------------------------------------------------------------------------------
// 10. main

#ifndef GOLF_INFER_NO_MAIN
static int parse_ids(const char *s, int32_t **out, int vocab) {
    int n = 0, cap = 16;
    int32_t *ids = galloc((size_t)cap * 4);
    char *end;
    for (;;) {
        while (*s == ' ' || *s == ',' || *s == '\n') s++;
        if (!*s) break;
        long v = strtol(s, &end, 10);
        if (end == s) golf_die("not a token id list: '%.30s'", s);
        if (v < 0 || v >= vocab) golf_die("token id %ld is outside the model's vocabulary (%d)", v, vocab);
        if (n == cap) { cap *= 2; ids = (int32_t *)realloc(ids, (size_t)cap * 4); if (!ids) golf_die("out of memory"); }
        ids[n++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    return n;
}

// usage: the flags, on stdout with exit 0 when asked for (--help), else on stderr with exit 2.
static void usage(int status) {
    fprintf(status ? stderr : stdout,
            "usage: golf_infer MODEL --val 'DIR/fineweb_val_*.bin' (--tokenizer M.model | --byte260) [--seq-len T] [--stride S]\n"
            "                  [--max-tokens N] [--threads K]\n"
            "       golf_infer MODEL (--tokenizer M.model | --byte260) (--generate \"TEXT\" | --generate-ids \"ID ...\") [-n 200] [--temp 0.8]\n"
            "                  [--top-k 40] [--seed 1337]\n"
            "       golf_infer MODEL --logits-ids \"ID ...\"\n"
            "MODEL: a .golf blob or a golf float32 checkpoint (the magic tells which).\n"
            "\n"
            "scoring (prints val_loss, val_bpb, the tokens and bytes scored, and the artifact's byte count):\n"
            "  --val GLOB         val shards (quote the *), e.g. 'data/datasets/fineweb10B_sp1024/fineweb_val_*.bin'\n"
            "  --tokenizer M      the SentencePiece .model of the shards: val_bpb counts each token's UTF-8 bytes from it\n"
            "  --byte260          instead of --tokenizer: the byte-level vocabulary (4 specials + 256 bytes)\n"
            "  --seq-len T        evaluation sequence length (default: the model's TRAIN_SEQ_LEN)\n"
            "  --stride S         sliding windows of T tokens every S, the first scoring all, each later one its last S (0: disjoint)\n"
            "  --max-tokens N     score only the first N val tokens (default: all; train_golf's VAL_MAX_TOKENS=N scores the same)\n"
            "  --val-bytes GLOB   CaseOps byte sidecars, one per val shard (default: fineweb_val_bytes_N.bin beside each\n"
            "                     fineweb_val_N.bin when present): val_bpb counts each token's original bytes from them\n"
            "  --threads K        OpenMP threads (default OMP_NUM_THREADS, else every core)\n"
            "generation (prints the prompt and a continuation; ids on stderr):\n"
            "  --generate TEXT    a text prompt (encoded after a BOS)    --generate-ids IDS   a prompt of token ids\n"
            "  -n N               tokens to sample (default 200)         --temp X             temperature (default 0.8; 0: argmax)\n"
            "  --top-k K          sample among the K likeliest (default 40; 0: all)    --seed S   sampling seed (default 1337)\n"
            "  --logits-ids IDS   print every position's logits (for tests)\n"
            "example: golf_infer final_model.golf --val 'data/datasets/fineweb10B_sp1024/fineweb_val_*.bin' \\\n"
            "           --tokenizer data/tokenizers/fineweb_1024_bpe.model --max-tokens 1000000\n");
    exit(status);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *val = NULL, *val_bytes = NULL, *tok_path = NULL, *gen = NULL, *gen_text = NULL, *logit_ids = NULL;
    int byte260 = 0, seq_len = 0, stride = 0, threads = 0, top_k = 40, ngen = 200;
    long long max_tokens = 0;
    float temp = 0.8f;
    uint64_t seed = 1337;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
#define ARG(flag) (strcmp(a, flag) == 0 && (more || (fprintf(stderr, "golf_infer: %s needs a value\n", flag), usage(2), 0)))
#define NUM(lo, hi, integer) number_arg(a, argv[++i], lo, hi, integer)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) usage(0);
        else if (ARG("--val")) val = argv[++i];
        else if (ARG("--val-bytes")) val_bytes = argv[++i];
        else if (ARG("--tokenizer")) tok_path = argv[++i];
        else if (strcmp(a, "--byte260") == 0) byte260 = 1;
        else if (ARG("--seq-len")) seq_len = (int)NUM(1, 1 << 20, 1);
        else if (ARG("--stride")) stride = (int)NUM(1, 1 << 20, 1);
        else if (ARG("--max-tokens")) max_tokens = (long long)NUM(1, 1e15, 1);
        else if (ARG("--threads")) threads = (int)NUM(1, 4096, 1);
        else if (ARG("--generate-ids")) gen = argv[++i];
        else if (ARG("--generate")) gen_text = argv[++i];
        else if (ARG("--logits-ids")) logit_ids = argv[++i];
        else if (ARG("-n")) ngen = (int)NUM(1, 1 << 20, 1);
        else if (ARG("--temp")) temp = (float)NUM(0, 1e6, 0);
        else if (ARG("--top-k")) top_k = (int)NUM(0, 1 << 30, 1);
        else if (ARG("--seed")) seed = (uint64_t)NUM(0, 9007199254740992.0, 1);
        else if (a[0] == '-') { fprintf(stderr, "golf_infer: unknown flag '%s'\n", a); usage(2); }
        else if (!model_path) model_path = a;
        else { fprintf(stderr, "golf_infer: unexpected argument '%s'\n", a); usage(2); }
#undef NUM
#undef ARG
    }
    if (!model_path || (!val && !gen && !gen_text && !logit_ids)) usage(2);
    if (val_bytes && !val) { fprintf(stderr, "golf_infer: --val-bytes goes with --val\n"); usage(2); }
    if (!!val + !!gen + !!gen_text + !!logit_ids > 1) { fprintf(stderr, "golf_infer: --val, --generate, --generate-ids and --logits-ids are different runs: pass one\n"); usage(2); }
#ifdef _OPENMP
    // Waiting threads sleep unless OMP_WAIT_POLICY says otherwise: spinning ones slow every other process on the cores
    // 10x. libgomp reads the variable once, at start-up, so the program runs itself again with it set (if it can).
    if (!getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0) execv("/proc/self/exe", argv);
    int cores = omp_get_num_procs();
    if (threads > cores) fprintf(stderr, "golf_infer: --threads %d is more than the %d cores this process may use: using %d\n", threads, cores, cores);
    omp_set_num_threads(imin(threads ? threads : omp_get_max_threads(), cores));
#else
    (void)threads;
#endif
    GolfModel m;
    size_t model_bytes;
    model_load_file(&m, model_path, &model_bytes);
    const Config *c = &m.c;

    if (logit_ids) {   // one sequence's logits, full precision
        int32_t *ids;
        int T = parse_ids(logit_ids, &ids, c->vocab_size);
        if (!T) golf_die("--logits-ids needs at least one id");
        Acts a;
        acts_alloc(&a, c, T);
        float *logits = galloc((size_t)T * c->vocab_size * 4);
        forward(&m, ids, T, &a);
        logits_rows(&m, a.h, T, logits);
        for (size_t i = 0; i < (size_t)T * c->vocab_size; i++) printf("%.9g%c", logits[i], (i + 1) % c->vocab_size ? ' ' : '\n');
        free(ids); free(logits); acts_free(&a); model_free(&m);
        return 0;
    }
    if (!tok_path == !byte260) golf_die("pass exactly one of --tokenizer M.model or --byte260");
    Pieces pieces;
    if (byte260) pieces_byte260(&pieces);
    else {
        size_t n;
        uint8_t *p = read_file(tok_path, &n);
        const char *err = pieces_parse(&pieces, p, n);
        if (err) golf_die("tokenizer '%s': %s", tok_path, err);
        free(p);
    }
    if (pieces.n != c->vocab_size)
        golf_die("vocab mismatch: the model has %d tokens but tokenizer '%s' has %d", c->vocab_size, byte260 ? "byte260" : tok_path, pieces.n);

    if (gen || gen_text) {
        int32_t *prompt;
        int np;
        if (gen) np = parse_ids(gen, &prompt, c->vocab_size);
        else {   // BOS, then the text's ids
            size_t n = strlen(gen_text);
            prompt = galloc((4 * n + 8) * sizeof(int32_t));
            prompt[0] = 1;
            for (int i = 0; i < pieces.n; i++) if (pieces.type[i] == PIECE_CONTROL && strcmp(pieces.piece[i], "<s>") == 0) prompt[0] = i;
            if (byte260) { for (size_t i = 0; i < n; i++) prompt[1 + i] = 4 + (uint8_t)gen_text[i]; np = (int)n + 1; }
            else np = 1 + prompt_encode(&pieces, gen_text, prompt + 1, (int)(4 * n + 6));
            fprintf(stderr, "prompt ids:");
            for (int i = 0; i < np; i++) fprintf(stderr, " %d", prompt[i]);
            fputc('\n', stderr);
            fputs(gen_text, stdout);
        }
        if (!np) golf_die("--generate-ids needs at least one prompt id (e.g. the BOS id 1)");
        int T = np + ngen;
        int32_t *ids = galloc((size_t)T * 4);
        memcpy(ids, prompt, (size_t)np * 4);
        Acts a;
        acts_alloc(&a, c, np);
        acts_cache(&a, c, T);
        float *logits = galloc((size_t)c->vocab_size * 4);
        int maxlen = 5, pending = 0;
        for (int i = 0; i < pieces.n; i++) maxlen = pieces.plen[i] > maxlen ? pieces.plen[i] : maxlen;
        unsigned char *text = galloc((size_t)maxlen + 4);   // bytes not yet printed: an unfinished character + one piece
        for (int t = np; t < T; t++) {   // the prompt in one forward, then one token a step on the KV cache
            a.pos0 = t == np ? 0 : t - 1;
            forward(&m, ids + a.pos0, t - a.pos0, &a);
            logits_at(&m, a.h + (size_t)(t - a.pos0 - 1) * c->model_dim, logits);
            ids[t] = sample(logits, c->vocab_size, temp, top_k, &seed);
            pending += (int)piece_text(&pieces, ids[t], (char *)text + pending);
            utf8_emit(stdout, text, &pending, t == T - 1);
            fflush(stdout);
        }
        putchar('\n');
        fprintf(stderr, "continuation ids:");
        for (int t = np; t < T; t++) fprintf(stderr, " %d", ids[t]);
        fputc('\n', stderr);
        free(text); free(prompt); free(ids); free(logits); acts_free(&a); pieces_free(&pieces); model_free(&m);
        return 0;
    }

    ByteLut lut;
    byte_lut_build(&lut, &pieces, c->vocab_size);
    size_t ntok;
    int32_t *tokens = load_shards(val, &ntok, c->vocab_size);
    lut.sidecar = load_sidecars(val, val_bytes, ntok);
    if (lut.sidecar) fprintf(stderr, "golf_infer: val_bpb counts the original bytes of CaseOps byte sidecars (%s)\n", val_bytes ? val_bytes : "fineweb_val_bytes_*.bin beside the val shards");
    if (max_tokens > 0 && (size_t)max_tokens + 1 < ntok) ntok = (size_t)max_tokens + 1;
    int T = seq_len > 0 ? seq_len : c->train_seq_len;
    if (stride < 0 || stride > T) golf_die("--stride must be in 1..%d (the sequence length)", T);
    if (ntok < (size_t)T + 1) golf_die("only %zu val tokens: fewer than one sequence of %d", ntok, T);
    ntok = (ntok - 1) / (size_t)T * (size_t)T + 1;   // train_gpt.py's cut, for every stride
    EvalSums s = evaluate(&m, &lut, tokens, ntok, T, stride);
    double loss = s.loss_sum / s.tokens, bpb = loss / log(2.0) * s.tokens / s.bytes;
    printf("val_loss:%.8f val_bpb:%.8f tokens:%.0f bytes:%.0f seq_len:%d stride:%d\n", loss, bpb, s.tokens, s.bytes, T, stride);
    char line[512];
    puts(artifact_line(code_path(argv[0]), model_bytes, line, sizeof(line)));
    free(tokens);
    byte_lut_free(&lut);
    pieces_free(&pieces);
    model_free(&m);
    return 0;
}
#endif
