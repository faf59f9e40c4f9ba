/*
 * dev/golf_export.c — the blob encoder: quantize a float32 checkpoint (row-wise or GPTQ), entropy-code the codes,
 * write a .golf blob, and check it by decoding it again with golf_infer.c's decoder; and the artifact size of a
 * model shape predicted from measured bits per code.
 *
 * Contract
 *   golf_export CKPT OUT.golf [--quant S] [--quant-embed S] [--quant-attn S] [--quant-mlp S] [--quant-head S]
 *                             [--quant-control S] [--group G] [--clip search|none|sdclip] [--sdclip-k K]
 *                             [--gptq 'TRAIN_GLOB' [--gptq-tokens N] [--gptq-seq-len T] [--gptq-damp D] [--gptq-block B]]
 *                             [--dump DIR] [--dump-hessians DIR] [--budget BYTES] [--quiet]
 *     S is one of fp32 fp16 int8 int6 int5 int4 ternary. --quant sets the embedding, attention, MLP and head
 *     matrices (default int8); the per-class flags override it; control tensors default to fp32.
 *     --group: columns per scale for ternary (default 128; 0 = one scale per row).
 *     --clip search|none|sdclip: per-row clip search for the integer schemes (default search), the row maximum,
 *     or SDClip (--sdclip-k K, default 12.5).
 *     --gptq GLOB: GPTQ for every matrix whose input golf_infer.c's forward pass shows (attention and MLP;
 *     tok_emb and lm_head keep the row-wise quantizer), calibrated on the first --gptq-tokens (default 65536)
 *     tokens of the TRAINING shards matching GLOB (a glob matching fineweb_val_* files is refused), in windows of
 *     --gptq-seq-len (default the model's train_seq_len).
 *     --dump DIR: also write DIR/<tensor>.codes (int8) and DIR/<tensor>.scales (uint16 fp16) per quantized
 *     tensor; --dump-hessians DIR: DIR/<tensor>.hessian (float64 [cols, cols], H below) per calibrated tensor.
 *     --budget BYTES: after writing, say whether golf_infer.c (next to this binary, as the artifact line counts
 *     it) + the blob fit in BYTES; exit status 1 when they do not.
 *   golf_export --predict --num-layers L --model-dim D --mlp-mult M --vocab-size V [--num-heads H]
 *               [--num-kv-heads K] [--tie-embeddings 0|1] [--quant S ...] [--group G] --measure BLOB [--measure BLOB2 ...]
 *               [--budget BYTES]
 *     the predicted blob bytes of that shape: per tensor, values x (bits per code measured on the BLOBs for its class
 *     and scheme; when that class was not measured at the scheme, all classes measured at it pooled) / 8 + 2 bytes per
 *     fp16 scale; fp32/fp16 exactly; plus header, table and CRC. The last line is
 *     `predict: shape LxDxMxV params P scheme S model_bytes B code_bytes C total_bytes T budget X fits yes|no` (S: the
 *     MLP's scheme; X: --budget, default 16000000);
 *     with --budget the exit status is 1 when it does not fit.
 *   Refused before any work (exit 1, or 2 for usage errors, nothing written): an output that is an input (the
 *   checkpoint or a --gptq shard, compared by device and inode), a folder or in a missing folder; a tensor holding a
 *   NaN or an infinity (named); numbers out of range, not finite or not integers where counts are meant. The blob and
 *   every --dump file are written to NAME.tmp and renamed; --dump folders are created first.
 *   The blob format is specified at the top of golf_infer.c, which this file includes. train_golf.cu includes
 *   this file (with GOLF_EXPORT_NO_MAIN) to export at the end of training.
 *   Quantization (per row; scales stored in fp16):
 *     intB: qmax = 2^(B-1) - 1, scale = fp16(fp32(r * max|w_row|) / qmax), q = clamp(rint(w / scale), -qmax, qmax)
 *           (division in double, ties to even; scale 0 gives q = 0); r = 1, or with the clip search (GPTQ-lite)
 *           the r of CLIP_RATIOS with the smallest sum of (w - q * scale)^2 over the row (first on ties);
 *           SDClip: scale = fp16(fp32(k * std(row)) / qmax), std with divisor n (sums in double, left to right).
 *     ternary: per group of G columns, scale = fp16(fp32(mean|w|)) (sum in double, left to right),
 *           q = clamp(rint(w / scale), -1, 1).
 *   GPTQ (same scales, other codes): H = X^T X / N over the N calibration rows X [N, cols] of the tensor's input
 *     (sums over 1024 rows at a time in float32, added up in double). The scales are the row-wise rule's on the original
 *     row. Columns are visited by diag(H) descending (ties: lower index first); a dead column (H_jj = 0) gets
 *     H_jj = 1, then every H_jj gains D * mean(H_jj over the live columns) (--gptq-damp, default 0.01).
 *     U = the upper Cholesky factor of (damped H, in visiting order)^-1. In double, for each row and for each
 *     column k in visiting order: q = clamp(rint(w_k / s), -qmax, qmax) (s = the scale of k's group, 0 gives 0),
 *     e = (w_k - q s) / U_kk, then w_j -= e U_kj for every later column j, applied in blocks of B columns
 *     (--gptq-block, default 128): within the block at once, to the columns after it when the block is done, in
 *     the same order per element as column by column. A dead column thus gets plain rounding and passes on no
 *     error. When the damped H is not positive definite the tensor keeps its row-wise codes (with a warning).
 *
 * Contents: 1. fp16 rounding  2. range encoder  3. row-wise quantizers  4. GPTQ  5. calibration (Hessians)
 *           6. blob writer  7. size prediction  8. main
 */
#define GOLF_INFER_NO_MAIN
#include "golf_infer.c"
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------------------------------
// 1. fp16 rounding

// f32_to_f16: float -> IEEE half, round to nearest even (as numpy's float16 cast).
static uint16_t f32_to_f16(float f) {
    uint32_t x = f32_bits(f), sign = (x >> 16) & 0x8000u, e = (x >> 23) & 0xFF, m = x & 0x7FFFFFu;
    if (e == 0xFF) return (uint16_t)(sign | 0x7C00u | (m ? 0x200u : 0));
    int E = (int)e - 127 + 15;
    if (E >= 31) return (uint16_t)(sign | 0x7C00u);
    if (E <= 0) {                       // half subnormal (or zero)
        if (E < -10) return (uint16_t)sign;
        m |= 0x800000u;
        int shift = 14 - E;
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)E << 10) | (m >> 13), rem = m & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;   // a carry into the exponent is correct rounding
    return (uint16_t)(sign | h);
}

// ----------------------------------------------------------------------------------------------------
// 2. range encoder (mirror of golf_infer.c's decoder)

typedef struct { uint8_t *p; size_t n, cap; } Bytes;

static void bytes_put(Bytes *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 1024;
        b->p = (uint8_t *)realloc(b->p, b->cap);
        if (!b->p) golf_die("out of memory writing the blob");
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void bytes_u8(Bytes *b, uint8_t v) { bytes_put(b, &v, 1); }
static void bytes_u16(Bytes *b, uint16_t v) { uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; bytes_put(b, t, 2); }
static void bytes_u32(Bytes *b, uint32_t v) { uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)}; bytes_put(b, t, 4); }

typedef struct { uint64_t low; uint32_t range; uint8_t cache; uint64_t pending; Bytes *out; } RangeEncoder;

static void rc_enc_init(RangeEncoder *e, Bytes *out) { e->low = 0; e->range = 0xFFFFFFFFu; e->cache = 0; e->pending = 1; e->out = out; }

static void rc_shift_low(RangeEncoder *e) {
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(e->low >> 32), b = e->cache;
        do { bytes_u8(e->out, (uint8_t)(b + carry)); b = 0xFF; } while (--e->pending != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static int rc_enc_bit(void *coder, BitModel *m, int bit) {
    RangeEncoder *e = (RangeEncoder *)coder;
    uint32_t bound = (e->range >> 16) * m->p;
    if (!bit) e->range = bound;
    else { e->low += bound; e->range -= bound; }
    bm_update(m, bit);
    while (e->range < RC_TOP) { e->range <<= 8; rc_shift_low(e); }
    return bit;
}

static void rc_enc_flush(RangeEncoder *e) { for (int i = 0; i < 5; i++) rc_shift_low(e); }

// ----------------------------------------------------------------------------------------------------
// 3. row-wise quantizers: codes [rows*cols] and fp16 scales [rows*scales_per_row] of one tensor

// CLIP_RATIOS: fractions of a row's largest |w| tried as its clip by the search (GPTQ-lite); 1 = no clipping.
static const float CLIP_RATIOS[] = {1.0f, 0.995f, 0.99f, 0.985f, 0.98f, 0.975f, 0.97f, 0.96f, 0.95f, 0.94f, 0.93f, 0.92f, 0.9f, 0.88f, 0.86f, 0.84f, 0.82f, 0.8f};
enum { CLIP_NONE, CLIP_SEARCH, CLIP_SDCLIP };

// quantize_span: codes of w[c0..c1) under the fp16 scale nearest to sf; returns the squared error (sum in
// double, left to right) and the scale's bits.
static double quantize_span(const float *w, int c0, int c1, int qmax, float sf, int8_t *codes, uint16_t *scale_bits) {
    uint16_t sh = f32_to_f16(sf);
    double scale = f16_to_f32(sh), err = 0;
    for (int c = c0; c < c1; c++) {
        double q = scale > 0 ? rint((double)w[c] / scale) : 0;
        q = q < -qmax ? -qmax : q > qmax ? qmax : q;
        codes[c] = (int8_t)q;
        double d = (double)w[c] - q * scale;
        err += d * d;
    }
    *scale_bits = sh;
    return err;
}

// quantize: codes [rows*cols] and fp16 scales [rows*scales_per_row] of one tensor (rules in the header comment;
// with CLIP_SEARCH an integer scheme tries every CLIP_RATIOS clip per row and keeps the smallest squared error,
// the first on ties).
static void quantize(int scheme, int group, int clip, float sd_k, int rows, int cols, const float *w, int8_t *codes, uint16_t *scales) {
    int spr = scales_per_row(scheme, group, cols), gcols = spr == 1 ? cols : group, offset, qmax;
    scheme_levels(scheme, &offset, &qmax);
    int8_t *trial = galloc((size_t)cols);
    for (int r = 0; r < rows; r++) {
        const float *row = w + (size_t)r * cols;
        int8_t *out = codes + (size_t)r * cols;
        for (int s = 0; s < spr; s++) {
            int c0 = s * gcols, c1 = c0 + gcols < cols ? c0 + gcols : cols;
            uint16_t *sc = &scales[(size_t)r * spr + s];
            if (scheme == SCHEME_TERNARY) {
                double sum = 0;
                for (int c = c0; c < c1; c++) sum += fabs((double)row[c]);
                quantize_span(row, c0, c1, qmax, (float)(sum / (c1 - c0)), out, sc);
                continue;
            }
            if (clip == CLIP_SDCLIP) {   // scale = k * std(row) / qmax (mean and variance summed left to right)
                double mean = 0, var = 0;
                for (int c = c0; c < c1; c++) mean += row[c];
                mean /= (c1 - c0);
                for (int c = c0; c < c1; c++) var += ((double)row[c] - mean) * ((double)row[c] - mean);
                quantize_span(row, c0, c1, qmax, (float)(sd_k * sqrt(var / (c1 - c0))) / (float)qmax, out, sc);
                continue;
            }
            float amax = 0;
            for (int c = c0; c < c1; c++) if (fabsf(row[c]) > amax) amax = fabsf(row[c]);
            double best = quantize_span(row, c0, c1, qmax, amax / (float)qmax, out, sc);
            int n = clip == CLIP_SEARCH ? (int)(sizeof(CLIP_RATIOS) / sizeof(CLIP_RATIOS[0])) : 1;
            for (int k = 1; k < n; k++) {
                uint16_t sh;
                double err = quantize_span(row, c0, c1, qmax, amax * CLIP_RATIOS[k] / (float)qmax, trial, &sh);
                if (err < best) { best = err; *sc = sh; memcpy(out + c0, trial + c0, (size_t)(c1 - c0)); }
            }
        }
    }
    free(trial);
}

// ----------------------------------------------------------------------------------------------------
// 4. GPTQ: Hessian-aware rounding with error feedback (rules in the header comment)

typedef struct Hessians Hessians;   // section 5
typedef struct { int scheme[NUM_CLASSES]; int group, clip; float sd_k; const char *dump_dir; int quiet; double gptq_damp; int gptq_block;
                 const Hessians *hess; } ExportOptions;   // hess: GPTQ's H per tensor, or NULL (row-wise)

// export_defaults: golf_export's defaults (int8 matrices, fp32 control tensors, group 128, clip search, GPTQ off).
static GOLF_UNUSED ExportOptions export_defaults(void) {
    ExportOptions o;
    memset(&o, 0, sizeof(o));
    for (int k = 0; k < NUM_CLASSES; k++) o.scheme[k] = k == CLS_CONTROL ? SCHEME_FP32 : SCHEME_INT8;
    o.group = 128; o.clip = CLIP_SEARCH; o.sd_k = 12.5f; o.gptq_damp = 0.01; o.gptq_block = 128;
    return o;
}

// ddot: sum of a[i] * b[i] in double, left to right.
static double ddot(const double *a, const double *b, int n) { double s = 0; for (int i = 0; i < n; i++) s += a[i] * b[i]; return s; }

// cholesky: A [n, n] -> its lower factor L (A = L L^T) in place, upper triangle zeroed; 0, or -1 when A is not
// positive definite.
static int cholesky(double *A, int n) {
    for (int j = 0; j < n; j++) {
        double *aj = A + (size_t)j * n, d = aj[j] - ddot(aj, aj, j);
        if (!(d > 0) || !isfinite(d)) return -1;
        aj[j] = sqrt(d);
OMP(omp parallel for schedule(static) if(n - j > 256))
        for (int i = j + 1; i < n; i++) { double *ai = A + (size_t)i * n; ai[j] = (ai[j] - ddot(ai, aj, j)) / aj[j]; }
        for (int i = j + 1; i < n; i++) aj[i] = 0;
    }
    return 0;
}

// spd_inverse: A^-1 of a symmetric positive definite A [n, n] (overwritten by its Cholesky factor) into out;
// 0, or -1 when A is not positive definite. Column j of A^-1 solves L y = e_j, then L^T x = y.
static int spd_inverse(double *A, int n, double *out) {
    if (cholesky(A, n) != 0) return -1;
    double *LT = galloc((size_t)n * n * sizeof(double));   // LT[i, k] = L[k, i]: the back substitution reads rows
    for (int i = 0; i < n; i++) for (int k = 0; k < n; k++) LT[(size_t)i * n + k] = A[(size_t)k * n + i];
OMP(omp parallel for schedule(dynamic, 4))
    for (int j = 0; j < n; j++) {
        double *x = galloc((size_t)n * sizeof(double));
        for (int i = 0; i < j; i++) x[i] = 0;
        for (int i = j; i < n; i++) { const double *li = A + (size_t)i * n; x[i] = ((i == j) - ddot(li + j, x + j, i - j)) / li[i]; }
        for (int i = n - 1; i >= 0; i--) { const double *ui = LT + (size_t)i * n; x[i] = (x[i] - ddot(ui + i + 1, x + i + 1, n - 1 - i)) / ui[i]; }
        for (int i = 0; i < n; i++) out[(size_t)i * n + j] = x[i];
        free(x);
    }
    free(LT);
    return 0;
}

static const double *g_order_key;   // qsort has no context argument: diag(H) for by_diag_desc
static int by_diag_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    double di = g_order_key[i], dj = g_order_key[j];
    return di > dj ? -1 : di < dj ? 1 : (i > j) - (i < j);
}

// gptq_factor: the visiting order perm [n] (diag(H) descending, lower index first on ties) and U [n, n], the upper
// Cholesky factor of the inverse of H permuted and damped (dead columns H_jj = 1, every H_jj += damp * mean of the
// live H_jj); 0, or -1 when that matrix is not positive definite.
static int gptq_factor(const double *H, int n, double damp, int *perm, double *U) {
    double *diag = galloc((size_t)n * sizeof(double)), live = 0;
    int nlive = 0;
    for (int j = 0; j < n; j++) { diag[j] = H[(size_t)j * n + j]; if (diag[j] > 0) { live += diag[j]; nlive++; } }
    for (int j = 0; j < n; j++) perm[j] = j;
    g_order_key = diag;
    qsort(perm, (size_t)n, sizeof(int), by_diag_desc);
    double lambda = nlive ? damp * (live / nlive) : 0;
    double *A = galloc((size_t)n * n * sizeof(double)), *Ainv = galloc((size_t)n * n * sizeof(double));
    for (int a = 0; a < n; a++) {
        for (int b = 0; b < n; b++) A[(size_t)a * n + b] = H[(size_t)perm[a] * n + perm[b]];
        if (diag[perm[a]] == 0) A[(size_t)a * n + a] = 1;
        A[(size_t)a * n + a] += lambda;
    }
    int rc = spd_inverse(A, n, Ainv);
    if (rc == 0) rc = cholesky(Ainv, n);
    if (rc == 0)
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) U[(size_t)i * n + j] = Ainv[(size_t)j * n + i];
    free(diag); free(A); free(Ainv);
    return rc;
}

// gptq_quantize: codes [rows*cols] and fp16 scales of w [rows, cols] under H [cols, cols] with GPTQ's error
// feedback; the scales (and, when the damped H is not positive definite, the codes: returns -1) are quantize()'s.
static int gptq_quantize(const ExportOptions *o, int scheme, int rows, int cols, const float *w, const double *H, int8_t *codes, uint16_t *scales) {
    int spr = scales_per_row(scheme, o->group, cols), gcols = spr == 1 ? cols : o->group, offset, qmax, B = o->gptq_block > 0 ? o->gptq_block : cols;
    scheme_levels(scheme, &offset, &qmax);
    quantize(scheme, o->group, o->clip, o->sd_k, rows, cols, w, codes, scales);
    int *perm = galloc((size_t)cols * sizeof(int));
    double *U = galloc((size_t)cols * cols * sizeof(double));
    if (gptq_factor(H, cols, o->gptq_damp, perm, U) != 0) { free(perm); free(U); return -1; }
    double *W = galloc((size_t)rows * cols * sizeof(double)), *E = galloc((size_t)rows * B * sizeof(double));   // W: rows in visiting order
    for (int r = 0; r < rows; r++) for (int k = 0; k < cols; k++) W[(size_t)r * cols + k] = w[(size_t)r * cols + perm[k]];
    for (int b0 = 0; b0 < cols; b0 += B) {
        int b1 = b0 + B < cols ? b0 + B : cols;
OMP(omp parallel for schedule(static))
        for (int r = 0; r < rows; r++) {
            double *wr = W + (size_t)r * cols, *er = E + (size_t)r * B;
            for (int k = b0; k < b1; k++) {   // the block, column by column
                double s = f16_to_f32(scales[(size_t)r * spr + perm[k] / gcols]);
                double q = s > 0 ? rint(wr[k] / s) : 0;
                q = q < -qmax ? -qmax : q > qmax ? qmax : q;
                codes[(size_t)r * cols + perm[k]] = (int8_t)q;
                double e = (wr[k] - q * s) / U[(size_t)k * cols + k];
                er[k - b0] = e;
                for (int j = k + 1; j < b1; j++) wr[j] -= e * U[(size_t)k * cols + j];
            }
            for (int k = b0; k < b1; k++)     // the block's errors into the columns after it
                for (int j = b1; j < cols; j++) wr[j] -= er[k - b0] * U[(size_t)k * cols + j];
        }
    }
    free(perm); free(U); free(W); free(E);
    return 0;
}

// ----------------------------------------------------------------------------------------------------
// 5. calibration: H = X^T X / N of every linear layer's input, from golf_infer.c's forward pass on training tokens

struct Hessians { int n; double **h; double *rows; };   // per tensor of the parameter table: H [cols, cols] or NULL; rows seen

enum { CALIB_ROWS = 1024 };   // input rows gathered per tensor before they go into its H
typedef struct { const GolfModel *m; Hessians *hs; float **xt; int *fill; } Calibration;   // xt[i] [cols, CALIB_ROWS]: tensor i's pending rows, transposed

// hessian_flush: add tensor i's pending rows x to its H: H += x^T x (upper triangle; sums of up to CALIB_ROWS products
// in float32, added in double).
static void hessian_flush(Calibration *cal, int i) {
    int K = cal->m->spec[i].cols, n = cal->fill[i];
    double *h = cal->hs->h[i];
    const float *xt = cal->xt[i];
OMP(omp parallel for schedule(dynamic, 4) if(K >= 64))
    for (int a = 0; a < K; a++)
        for (int b = a; b < K; b++) h[(size_t)a * K + b] += dot(xt + (size_t)a * CALIB_ROWS, xt + (size_t)b * CALIB_ROWS, n);
    cal->hs->rows[i] += n;
    cal->fill[i] = 0;
}

// hessian_observe: golf_infer.c's observer: queue the rows of X [T, K], the input of weight W, for W's H.
static void hessian_observe(void *ctx, const float *W, const float *X, int T, int K) {
    Calibration *cal = (Calibration *)ctx;
    const GolfModel *m = cal->m;
    int i = 0;
    while (i < m->n && m->params + m->spec[i].offset != W) i++;
    if (i == m->n || m->spec[i].cols != K) return;   // not a table tensor seen as a linear layer's weight
    if (!cal->hs->h[i]) {
        cal->hs->h[i] = galloc((size_t)K * K * sizeof(double));
        cal->xt[i] = galloc((size_t)K * CALIB_ROWS * sizeof(float));
    }
    for (int t = 0; t < T; t++) {
        if (cal->fill[i] == CALIB_ROWS) hessian_flush(cal, i);
        int r = cal->fill[i]++;
        for (int k = 0; k < K; k++) cal->xt[i][(size_t)k * CALIB_ROWS + r] = X[(size_t)t * K + k];
    }
}

// calibration_tokens: the first `want` tokens of the shards matching pattern (sorted; fewer if they hold fewer);
// dies when a matched file is a validation shard: GPTQ calibrates on training data only.
static int32_t *calibration_tokens(const char *pattern, size_t want, int vocab, size_t *got) {
    glob_t g = shard_glob(pattern);
    for (size_t f = 0; f < g.gl_pathc; f++) {
        const char *base = strrchr(g.gl_pathv[f], '/');
        base = base ? base + 1 : g.gl_pathv[f];
        if (strncmp(base, "fineweb_val_", 12) == 0)
            golf_die("--gptq '%s' matches the validation shard '%s': GPTQ calibrates on training data only\n"
                     "  hint: pass the training shards, e.g. 'DATA_PATH/fineweb_train_*.bin'", pattern, g.gl_pathv[f]);
    }
    int32_t *tok = galloc((want + 1) * sizeof(int32_t));
    size_t n = 0;
    for (size_t f = 0; f < g.gl_pathc && n < want; f++) {
        size_t count;
        int32_t *part = load_shard_file(g.gl_pathv[f], &count, vocab);
        size_t k = count < want - n ? count : want - n;
        memcpy(tok + n, part, k * sizeof(int32_t));
        n += k;
        free(part);
    }
    globfree(&g);
    *got = n;
    return tok;
}

// hessians_collect: H of every tensor golf_infer.c's forward shows as a linear layer's weight, over the first
// `tokens` tokens of the training shards matching pattern, in windows of T tokens (whole windows only).
static GOLF_UNUSED void hessians_collect(Hessians *hs, const GolfModel *m, const char *pattern, size_t tokens, int T) {
    size_t n;
    int32_t *tok = calibration_tokens(pattern, tokens, m->c.vocab_size, &n);
    size_t windows = n / (size_t)T;
    if (!windows) golf_die("--gptq '%s': %zu tokens, fewer than one window of %d (--gptq-seq-len)", pattern, n, T);
    hs->n = m->n;
    hs->h = galloc((size_t)m->n * sizeof(double *));
    hs->rows = galloc((size_t)m->n * sizeof(double));
    Calibration cal = {m, hs, galloc((size_t)m->n * sizeof(float *)), galloc((size_t)m->n * sizeof(int))};
    Acts a;
    acts_alloc(&a, &m->c, T);
    a.observe = hessian_observe;
    a.observe_ctx = &cal;
    for (size_t w = 0; w < windows; w++) forward(m, tok + w * T, T, &a);
    for (int i = 0; i < m->n; i++) {   // the last rows; mirror the upper triangle and divide by the rows seen
        double *h = hs->h[i];
        int K = m->spec[i].cols;
        if (!h) continue;
        hessian_flush(&cal, i);
        free(cal.xt[i]);
        for (int a2 = 0; a2 < K; a2++)
            for (int b = a2; b < K; b++) h[(size_t)b * K + a2] = h[(size_t)a2 * K + b] = h[(size_t)a2 * K + b] / hs->rows[i];
    }
    acts_free(&a);
    free(cal.xt); free(cal.fill);
    free(tok);
}

static GOLF_UNUSED void hessians_free(Hessians *hs) {
    for (int i = 0; i < hs->n; i++) free(hs->h[i]);
    free(hs->h); free(hs->rows);
    memset(hs, 0, sizeof(*hs));
}

// wall_seconds: a monotonic clock, for progress lines.
static GOLF_UNUSED double wall_seconds(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }

// write_whole: n bytes to path through path.tmp and a rename, so a failure leaves no partial file; dies naming it.
static void write_whole(const char *path, const void *p, size_t n) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) golf_die("cannot create '%s': %s", tmp, strerror(errno));
    if (fwrite(p, 1, n, f) != n || fclose(f) != 0) { remove(tmp); golf_die("cannot write '%s': %s", tmp, strerror(errno)); }
    if (rename(tmp, path) != 0) { remove(tmp); golf_die("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno)); }
}

// write_array: n bytes to DIR/NAME.EXT; dies naming the file.
static void write_array(const char *dir, const char *name, const char *ext, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
    write_whole(path, p, n);
}

// ----------------------------------------------------------------------------------------------------
// 6. blob writer

// encode_payload: the payload of one tensor under a scheme (see golf_infer.c): fp32/fp16 values, or the scales
// and codes (quantized by the caller) under the code model that codes them smallest (*coder_out).
static void encode_payload(Bytes *out, int scheme, int spr, int rows, int cols, const float *w, const int8_t *codes, const uint16_t *scales, int *coder_out) {
    size_t count = (size_t)rows * cols;
    *coder_out = CODER_TREE;
    if (scheme == SCHEME_FP32) { for (size_t i = 0; i < count; i++) bytes_u32(out, f32_bits(w[i])); return; }
    if (scheme == SCHEME_FP16) { for (size_t i = 0; i < count; i++) bytes_u16(out, f32_to_f16(w[i])); return; }
    int offset, qmax, bits = SCHEME_BITS[scheme];
    scheme_levels(scheme, &offset, &qmax);
    for (size_t i = 0; i < (size_t)rows * spr; i++) bytes_u16(out, scales[i]);
    Bytes best = {NULL, 0, 0};
    for (int coder = 0; coder < NUM_CODERS; coder++) {
        Bytes trial = {NULL, 0, 0};
        CodeState cs;
        code_state_init(&cs, coder, bits, offset, qmax, cols);
        RangeEncoder e;
        rc_enc_init(&e, &trial);
        for (size_t i = 0; i < count; i++) code_symbol(&cs, rc_enc_bit, &e, codes[i]);
        rc_enc_flush(&e);
        code_state_free(&cs);
        if (!best.p || trial.n < best.n) { free(best.p); best = trial; *coder_out = coder; }
        else free(trial.p);
    }
    bytes_put(out, best.p, best.n);
    free(best.p);
}

// quantize_tensor: codes and scales of tensor i of m under the options: GPTQ when it has an H, else row-wise;
// returns 1 when GPTQ made the codes.
static int quantize_tensor(const GolfModel *m, int i, const ExportOptions *o, int scheme, int8_t *codes, uint16_t *scales) {
    const ParamSpec *s = &m->spec[i];
    const float *w = m->params + s->offset;
    const double *H = o->hess && i < o->hess->n ? o->hess->h[i] : NULL;
    if (H) {
        if (gptq_quantize(o, scheme, s->rows, s->cols, w, H, codes, scales) == 0) return 1;
        fprintf(stderr, "%s: warning: tensor '%s': H is not positive definite after damping (raise --gptq-damp); row-wise codes kept\n", g_golf_prog, s->name);
        return 0;
    }
    quantize(scheme, o->group, o->clip, o->sd_k, s->rows, s->cols, w, codes, scales);
    return 0;
}

// blob_encode: the blob of model m under the options, checked by decoding it again (golf_infer.c's decoder
// must give back the same codes and scales, bit for bit). Returns the blob bytes (caller frees out->p).
static void blob_encode(const GolfModel *m, const ExportOptions *o, Bytes *out) {
    const Config *c = &m->c;
    Bytes payloads = {NULL, 0, 0};
    size_t *sizes = galloc((size_t)m->n * sizeof(size_t));
    int *coders = galloc((size_t)m->n * sizeof(int));
    memset(out, 0, sizeof(*out));
    uint32_t h[BLOB_HEADER_INTS] = {BLOB_MAGIC, format_version(c)};
    Config cc = *c;
    config_header(&cc, h, 1);
    h[13] = (uint32_t)m->n;
    for (int i = 0; i < m->n; i++) {
        const ParamSpec *s = &m->spec[i];
        int scheme = o->scheme[s->cls], spr = scales_per_row(scheme, o->group, s->cols), gptq = 0;
        size_t count = (size_t)s->rows * s->cols, before = payloads.n;
        int8_t *codes = galloc(count), *back_codes = galloc(count);
        uint16_t *scales = galloc((size_t)s->rows * spr * 2), *back_scales = galloc((size_t)s->rows * spr * 2);
        float *back = galloc(count * sizeof(float));
        if (scheme >= SCHEME_INT8) gptq = quantize_tensor(m, i, o, scheme, codes, scales);
        encode_payload(&payloads, scheme, spr, s->rows, s->cols, m->params + s->offset, codes, scales, &coders[i]);
        sizes[i] = payloads.n - before;
        if (sizes[i] > 0xFFFFFFFFu) golf_die("tensor '%s' payload exceeds 4 GB", s->name);
        const char *err = blob_decode_tensor(payloads.p + before, sizes[i], scheme, coders[i], o->group, s->rows, s->cols, back, back_codes, back_scales);
        if (err) golf_die("internal: tensor '%s' does not decode: %s", s->name, err);
        if (scheme >= SCHEME_INT8 && (memcmp(codes, back_codes, count) || memcmp(scales, back_scales, (size_t)s->rows * spr * 2)))
            golf_die("internal: tensor '%s' decodes to different codes or scales", s->name);
        if (o->dump_dir && scheme >= SCHEME_INT8) {
            write_array(o->dump_dir, s->name, "codes", codes, count);
            write_array(o->dump_dir, s->name, "scales", scales, (size_t)s->rows * spr * 2);
        }
        if (!o->quiet)
            printf("  %-28s %-7s %-8s %9zu values -> %9zu bytes (%.3f bits/value%s%s)\n", s->name, CLASS_NAME[s->cls], SCHEME_NAME[scheme], count,
                   sizes[i], 8.0 * sizes[i] / (double)(count ? count : 1), scheme >= SCHEME_INT8 ? (coders[i] == CODER_CONTEXT ? ", context model" : ", tree model") : "",
                   gptq ? ", GPTQ" : "");
        free(codes); free(back_codes); free(scales); free(back_scales); free(back);
    }
    size_t total = BLOB_HEADER_INTS * 4 + 8 * (size_t)m->n + payloads.n + 4;
    if (total > 0xFFFFFFFFu) golf_die("blob exceeds 4 GB");
    h[2] = (uint32_t)total;
    for (int i = 0; i < BLOB_HEADER_INTS; i++) bytes_u32(out, h[i]);
    for (int i = 0; i < m->n; i++) {
        bytes_u8(out, (uint8_t)o->scheme[m->spec[i].cls]);
        bytes_u8(out, (uint8_t)coders[i]);
        bytes_u16(out, (uint16_t)(o->scheme[m->spec[i].cls] == SCHEME_TERNARY ? o->group : 0));
        bytes_u32(out, (uint32_t)sizes[i]);
    }
    bytes_put(out, payloads.p, payloads.n);
    bytes_u32(out, crc32(out->p, out->n));
    free(payloads.p);
    free(sizes);
    free(coders);
    // the whole blob through the reader once more: header, table, checksum and every payload
    GolfModel back;
    char why[512];
    const char *err = blob_load(&back, out->p, out->n, why, sizeof(why));
    if (err) golf_die("internal: the written blob does not load: %s", err);
    model_free(&back);
}

// ----------------------------------------------------------------------------------------------------
// 7. size prediction: bytes per code measured on exported blobs, per class and scheme

typedef struct { double code_bytes[NUM_CLASSES][NUM_SCHEMES], codes[NUM_CLASSES][NUM_SCHEMES]; } SizeModel;

// size_model_measure: add a blob's code bytes (each payload minus its fp16 scales) and code counts per class and scheme.
static void size_model_measure(SizeModel *sm, const char *path) {
    size_t n;
    uint8_t *p = read_file(path, &n);
    GolfModel m;
    char why[512];
    const char *err = n >= 4 && rd32(p) == BLOB_MAGIC ? blob_load(&m, p, n, why, sizeof(why)) : "not a .golf blob (bad magic)";
    if (err) golf_die("--measure '%s': %s\n  hint: measure on a blob written by golf_export (or train_golf)", path, err);
    for (int i = 0; i < m.n; i++) {   // blob_load checked the table: entry i is 8 bytes after the header
        const uint8_t *e = p + BLOB_HEADER_INTS * 4 + 8 * (size_t)i;
        const ParamSpec *s = &m.spec[i];
        int scheme = e[0];
        if (scheme < SCHEME_INT8) continue;
        sm->code_bytes[s->cls][scheme] += (double)rd32(e + 4) - 2.0 * s->rows * scales_per_row(scheme, rd16(e + 2), s->cols);
        sm->codes[s->cls][scheme] += (double)s->rows * s->cols;
    }
    model_free(&m);
    free(p);
}

// tensor_bytes_predicted: payload bytes of a rows x cols tensor of class cls under a scheme: exact for fp32/fp16,
// else codes x the measured bytes per code (the class's at that scheme, else all classes' at it pooled) + 2 per
// fp16 scale; -1 when no blob measured the scheme.
static double tensor_bytes_predicted(const SizeModel *sm, int cls, int scheme, int group, int rows, int cols) {
    double count = (double)rows * cols, b = sm->code_bytes[cls][scheme], c = sm->codes[cls][scheme];
    if (scheme == SCHEME_FP32 || scheme == SCHEME_FP16) return count * (scheme == SCHEME_FP32 ? 4 : 2);
    if (c == 0) for (int k = 0; k < NUM_CLASSES; k++) { b += sm->code_bytes[k][scheme]; c += sm->codes[k][scheme]; }
    if (c == 0) return -1;
    return count * b / c + 2.0 * rows * scales_per_row(scheme, group, cols);
}

// predict_blob_bytes: the predicted blob bytes of shape c under the options' schemes (header, table, payloads, CRC),
// with a line per class unless quiet; *params gets the parameter count. Dies naming an unmeasured scheme.
static size_t predict_blob_bytes(const SizeModel *sm, const Config *c, const ExportOptions *o, size_t *params) {
    GolfModel m;
    model_layout(&m, c);
    double total = BLOB_HEADER_INTS * 4 + 8.0 * m.n + 4, bytes[NUM_CLASSES] = {0}, values[NUM_CLASSES] = {0};
    for (int i = 0; i < m.n; i++) {
        const ParamSpec *s = &m.spec[i];
        int scheme = o->scheme[s->cls];
        double b = tensor_bytes_predicted(sm, s->cls, scheme, o->group, s->rows, s->cols);
        if (b < 0) golf_die("no measured blob holds %s codes (needed for %s tensors)\n  hint: add --measure with a blob exported at %s",
                            SCHEME_NAME[scheme], CLASS_NAME[s->cls], SCHEME_NAME[scheme]);
        bytes[s->cls] += b;
        values[s->cls] += (double)s->rows * s->cols;
        total += b;
    }
    for (int k = 0; k < NUM_CLASSES && !o->quiet; k++)
        if (values[k] > 0)
            printf("  %-8s %-8s %11.0f values -> %11.0f bytes (%.3f bits/value with scales)\n", CLASS_NAME[k], SCHEME_NAME[o->scheme[k]], values[k], bytes[k],
                   8 * bytes[k] / values[k]);
    *params = m.nparams;
    model_free(&m);
    return (size_t)llround(total);
}

// code_bytes: the size of golf_infer.c as the artifact line counts it (next to this binary); dies when it is missing.
static size_t code_bytes(const char *argv0) {
    struct stat st;
    const char *path = code_path(argv0);
    if (stat(path, &st) != 0) golf_die("cannot find '%s' to count the artifact's code: %s\n  hint: run the golf_export built in the repository", path, strerror(errno));
    return (size_t)st.st_size;
}

// budget_report: prints whether code + model bytes fit in budget; returns 1 when they do.
static int budget_report(size_t code, size_t model, double budget) {
    double total = (double)code + (double)model;
    int fits = total <= budget;
    printf("budget: golf_infer.c %zu + model %zu = %.0f bytes of %.0f: %s (%.0f bytes %s)\n", code, model, total, budget, fits ? "fits" : "does not fit",
           fits ? budget - total : total - budget, fits ? "to spare" : "over");
    return fits;
}

// ----------------------------------------------------------------------------------------------------
// 8. main

// clip_from_name: CLIP_* by name (search, none, sdclip), or -1.
static GOLF_UNUSED int clip_from_name(const char *s) {
    return strcmp(s, "search") == 0 ? CLIP_SEARCH : strcmp(s, "none") == 0 ? CLIP_NONE : strcmp(s, "sdclip") == 0 ? CLIP_SDCLIP : -1;
}

// scheme_index: SCHEME_* by name (fp32 ... ternary), or -1; scheme_from_name: the same, exiting 2 on an unknown one.
static GOLF_UNUSED int scheme_index(const char *s) {
    for (int i = 0; i < NUM_SCHEMES; i++) if (strcmp(s, SCHEME_NAME[i]) == 0) return i;
    return -1;
}
static GOLF_UNUSED int scheme_from_name(const char *s) {
    int i = scheme_index(s);
    if (i >= 0) return i;
    fprintf(stderr, "golf_export: unknown scheme '%s' (fp32 fp16 int8 int6 int5 int4 ternary)\n", s);
    exit(2);
}

#ifndef GOLF_EXPORT_NO_MAIN
// usage: the flags, on stdout with exit 0 when asked for (--help), else on stderr with exit 2.
static void usage(int status) {
    fprintf(status ? stderr : stdout,
            "usage: golf_export CKPT OUT.golf [--quant S] [--quant-embed|attn|mlp|head|control S] [--group G] [--clip search|none|sdclip]\n"
            "                   [--sdclip-k K] [--gptq 'TRAIN_GLOB' [--gptq-tokens N] [--gptq-seq-len T] [--gptq-damp D] [--gptq-block B]]\n"
            "                   [--dump DIR] [--dump-hessians DIR] [--budget BYTES] [--quiet]\n"
            "       golf_export --predict --num-layers L --model-dim D --mlp-mult M --vocab-size V [--num-heads H] [--num-kv-heads K]\n"
            "                   [--tie-embeddings 0|1] [--quant S ...] [--group G] --measure BLOB [--measure BLOB ...] [--budget BYTES]\n"
            "       S: fp32 fp16 int8 int6 int5 int4 ternary\n");
    exit(status);
}

// output_check: dies, before any work, when the blob path out is a folder, its folder is missing or not writable,
// or it names one of the n inputs (the same file by device and inode, however spelled), which it would replace.
static void output_check(const char *out, const char *const *inputs, size_t n) {
    struct stat st;
    char dir[4096];
    const char *slash = strrchr(out, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - out) + (slash == out) : 1, slash ? out : ".");
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) golf_die("output '%s' is a folder: name the blob file to write", out);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) golf_die("output '%s': folder '%s' does not exist", out, dir);
    if (access(dir, W_OK | X_OK) != 0) golf_die("output '%s': folder '%s' is not writable: %s", out, dir, strerror(errno));
    for (size_t k = 0; k < n; k++)
        if (same_file(out, inputs[k])) golf_die("output '%s' is the input '%s': it would be replaced; name another output file", out, inputs[k]);
}

// dir_prepare: the folder a flag names, created when missing (its parent must exist) and checked writable; dies naming the flag.
static void dir_prepare(const char *flag, const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0 && mkdir(dir, 0777) != 0) golf_die("%s '%s': cannot create the folder: %s", flag, dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) golf_die("%s '%s': exists and is not a folder", flag, dir);
    if (access(dir, W_OK | X_OK) != 0) golf_die("%s '%s': the folder is not writable: %s", flag, dir, strerror(errno));
}

// finite_check: dies naming the first tensor of m (from path) holding a NaN or an infinity: it would export as a valid blob.
static void finite_check(const GolfModel *m, const char *path) {
    for (int i = 0; i < m->n; i++) {
        const ParamSpec *s = &m->spec[i];
        for (size_t k = 0; k < (size_t)s->rows * s->cols; k++)
            if (!isfinite(m->params[s->offset + k]))
                golf_die("model '%s': tensor '%s' holds a non-finite value (%g at index %zu); refusing to export it", path, s->name, m->params[s->offset + k], k);
    }
}

int main(int argc, char **argv) {
    g_golf_prog = "golf_export";
    const char *in = NULL, *outp = NULL, *gptq = NULL, *hess_dir = NULL, *measure[64];
    ExportOptions o = export_defaults();
    int per_class[NUM_CLASSES] = {-1, -1, -1, -1, -1}, all = -1, predict = 0, nmeasure = 0, gptq_seq_len = 0;
    double gptq_tokens = 65536, budget = -1;
    Config shape;   // --predict: baseline heads, tied, rope, softcap (no architecture options)
    memset(&shape, 0, sizeof(shape));
    shape.num_heads = 8; shape.num_kv_heads = 4; shape.tie_embeddings = 1; shape.train_seq_len = 1024;
    shape.rope_base = 10000.0f; shape.logit_softcap = 30.0f;
    int mlp_mult = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = a[0] == '-' && i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(flag) (strcmp(a, flag) == 0 && (v || (fprintf(stderr, "golf_export: %s needs a value\n", flag), usage(2), 0)))
#define NUM(lo, hi, integer) number_arg(a, v, lo, hi, integer)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) usage(0);
        if (strcmp(a, "--quiet") == 0) { o.quiet = 1; continue; }
        if (strcmp(a, "--predict") == 0) { predict = 1; continue; }
        if (ARG("--quant")) all = scheme_from_name(v);
        else if (ARG("--quant-embed")) per_class[CLS_EMBED] = scheme_from_name(v);
        else if (ARG("--quant-attn")) per_class[CLS_ATTN] = scheme_from_name(v);
        else if (ARG("--quant-mlp")) per_class[CLS_MLP] = scheme_from_name(v);
        else if (ARG("--quant-head")) per_class[CLS_HEAD] = scheme_from_name(v);
        else if (ARG("--quant-control")) per_class[CLS_CONTROL] = scheme_from_name(v);
        else if (ARG("--group")) o.group = (int)NUM(0, 65535, 1);
        else if (ARG("--clip")) {
            o.clip = clip_from_name(v);
            if (o.clip < 0) { fprintf(stderr, "golf_export: --clip is search, none or sdclip, not '%s'\n", v); exit(2); }
        }
        else if (ARG("--sdclip-k")) o.sd_k = (float)NUM(1e-3, 1e6, 0);   // k = 0 would make every scale 0: an all-zero model
        else if (ARG("--gptq")) gptq = v;
        else if (ARG("--gptq-tokens")) gptq_tokens = NUM(1, 1e12, 1);
        else if (ARG("--gptq-seq-len")) gptq_seq_len = (int)NUM(1, 1 << 20, 1);
        else if (ARG("--gptq-damp")) o.gptq_damp = NUM(0, 1e6, 0);
        else if (ARG("--gptq-block")) o.gptq_block = (int)NUM(1, 1 << 20, 1);
        else if (ARG("--dump")) o.dump_dir = v;
        else if (ARG("--dump-hessians")) hess_dir = v;
        else if (ARG("--budget")) budget = NUM(1, 1e15, 1);
        else if (ARG("--measure")) { if (nmeasure == 64) { fprintf(stderr, "golf_export: at most 64 --measure blobs\n"); exit(2); } measure[nmeasure++] = v; }
        else if (ARG("--num-layers")) shape.num_layers = (int)NUM(1, 1024, 1);
        else if (ARG("--model-dim")) shape.model_dim = (int)NUM(2, 1 << 16, 1);
        else if (ARG("--mlp-mult")) mlp_mult = (int)NUM(1, 1024, 1);
        else if (ARG("--vocab-size")) shape.vocab_size = (int)NUM(2, 1 << 20, 1);
        else if (ARG("--num-heads")) shape.num_heads = (int)NUM(1, 1 << 16, 1);
        else if (ARG("--num-kv-heads")) shape.num_kv_heads = (int)NUM(1, 1 << 16, 1);
        else if (ARG("--tie-embeddings")) shape.tie_embeddings = (int)NUM(0, 1, 1);
        else if (a[0] == '-') { fprintf(stderr, "golf_export: unknown flag '%s'\n", a); usage(2); }
        else if (!in) in = a;
        else if (!outp) outp = a;
        else { fprintf(stderr, "golf_export: unexpected argument '%s'\n", a); usage(2); }
        if (v) i++;
#undef NUM
#undef ARG
    }
    for (int k = 0; k < NUM_CLASSES; k++) {
        if (all >= 0 && k != CLS_CONTROL) o.scheme[k] = all;
        if (per_class[k] >= 0) o.scheme[k] = per_class[k];
    }

    if (predict) {   // the size of a shape from measured bytes per code; no weights
        if (in || gptq || o.dump_dir || hess_dir) { fprintf(stderr, "golf_export: --predict takes no model, --gptq or --dump\n"); usage(2); }
        if (!shape.num_layers || !shape.model_dim || !mlp_mult || !shape.vocab_size || !nmeasure) {
            fprintf(stderr, "golf_export: --predict needs --num-layers, --model-dim, --mlp-mult, --vocab-size and at least one --measure BLOB\n");
            usage(2);
        }
        shape.mlp_hidden = mlp_mult * shape.model_dim;
        const char *bad = config_check(&shape);
        if (bad) { fprintf(stderr, "golf_export: --predict shape: %s\n", bad); exit(2); }
        SizeModel sm;
        memset(&sm, 0, sizeof(sm));
        for (int k = 0; k < nmeasure; k++) size_model_measure(&sm, measure[k]);
        size_t params, model = predict_blob_bytes(&sm, &shape, &o, &params), code = code_bytes(argv[0]);
        double limit = budget >= 0 ? budget : 16000000;
        int fits = budget_report(code, model, limit);
        printf("predict: shape %dx%dx%dx%d params %zu scheme %s model_bytes %zu code_bytes %zu total_bytes %zu budget %.0f fits %s\n", shape.num_layers,
               shape.model_dim, mlp_mult, shape.vocab_size, params, SCHEME_NAME[o.scheme[CLS_MLP]], model, code, code + model, limit, fits ? "yes" : "no");
        return budget >= 0 && !fits ? 1 : 0;
    }

    if (!in || !outp) usage(2);
    if (nmeasure || shape.num_layers || shape.model_dim || mlp_mult || shape.vocab_size) { fprintf(stderr, "golf_export: shape and --measure flags go with --predict\n"); usage(2); }
    glob_t shards = {0};
    if (gptq) shards = shard_glob(gptq);
    size_t ninputs = gptq ? shards.gl_pathc + 1 : 1;
    const char **inputs = galloc(ninputs * sizeof(char *));
    inputs[0] = in;
    for (size_t k = 1; k < ninputs; k++) inputs[k] = shards.gl_pathv[k - 1];
    output_check(outp, inputs, ninputs);
    free(inputs);
    if (gptq) globfree(&shards);
    if (!gptq && hess_dir) { fprintf(stderr, "golf_export: --dump-hessians needs --gptq\n"); usage(2); }
    if (o.dump_dir) dir_prepare("--dump", o.dump_dir);
    if (hess_dir) dir_prepare("--dump-hessians", hess_dir);
    if (budget >= 0) code_bytes(argv[0]);   // a missing golf_infer.c is found now, not after the export
    GolfModel m;
    model_load_file(&m, in, NULL);
    finite_check(&m, in);
    Hessians hs;
    memset(&hs, 0, sizeof(hs));
    if (gptq) {
        int T = gptq_seq_len ? gptq_seq_len : m.c.train_seq_len;
        double t0 = wall_seconds();
        hessians_collect(&hs, &m, gptq, (size_t)gptq_tokens, T);
        o.hess = &hs;
        int nh = 0;
        double rows = 0;
        for (int i = 0; i < hs.n; i++) if (hs.h[i]) { nh++; rows = hs.rows[i]; }
        if (!o.quiet) printf("gptq: H of %d tensors from %.0f tokens of '%s' (windows of %d) in %.1fs\n", nh, rows, gptq, T, wall_seconds() - t0);
        if (hess_dir)
            for (int i = 0; i < hs.n; i++)
                if (hs.h[i]) write_array(hess_dir, m.spec[i].name, "hessian", hs.h[i], (size_t)m.spec[i].cols * m.spec[i].cols * sizeof(double));
    }
    Bytes blob;
    if (!o.quiet) printf("golf_export: %s -> %s\n", in, outp);
    blob_encode(&m, &o, &blob);
    write_whole(outp, blob.p, blob.n);
    printf("model: %zu bytes (%zu parameters, %.3f bits/parameter)\n", blob.n, m.nparams, 8.0 * blob.n / (double)m.nparams);
    char line[512];
    puts(artifact_line(code_path(argv[0]), blob.n, line, sizeof(line)));
    int fits = budget < 0 || budget_report(code_bytes(argv[0]), blob.n, budget);
    free(blob.p);
    hessians_free(&hs);
    model_free(&m);
    return fits ? 0 : 1;
}
#endif
