/*
 * dev/golf_export.c — the blob encoder: quantize a float32 checkpoint, entropy-code the codes, write a .golf
 * blob, and check it by decoding it again with golf_infer.c's decoder.
 *
 * Contract
 *   golf_export CKPT OUT.golf [--quant S] [--quant-embed S] [--quant-attn S] [--quant-mlp S] [--quant-head S]
 *                             [--quant-control S] [--group G] [--dump DIR]
 *     S is one of fp32 fp16 int8 int6 int5 int4 ternary. --quant sets the embedding, attention, MLP and head
 *     matrices (default int8); the per-class flags override it; control tensors default to fp32.
 *     --group: columns per scale for ternary (default 128; 0 = one scale per row).
 *     --clip search|none|sdclip: per-row clip search for the integer schemes (default search), the row maximum,
 *     or SDClip (--sdclip-k K, default 12.5).
 *     --dump DIR: also write DIR/<tensor>.codes (int8) and DIR/<tensor>.scales (uint16 fp16) per quantized
 *     tensor, for tests.
 *   The blob format is specified at the top of golf_infer.c, which this file includes. train_golf.cu includes
 *   this file (with GOLF_EXPORT_NO_MAIN) to export at the end of training.
 *   Quantization (per row; scales stored in fp16):
 *     intB: qmax = 2^(B-1) - 1, scale = fp16(fp32(r * max|w_row|) / qmax), q = clamp(rint(w / scale), -qmax, qmax)
 *           (division in double, ties to even; scale 0 gives q = 0); r = 1, or with the clip search (GPTQ-lite)
 *           the r of CLIP_RATIOS with the smallest sum of (w - q * scale)^2 over the row (first on ties);
 *           SDClip: scale = fp16(fp32(k * std(row)) / qmax), std with divisor n (sums in double, left to right).
 *     ternary: per group of G columns, scale = fp16(fp32(mean|w|)) (sum in double, left to right),
 *           q = clamp(rint(w / scale), -1, 1).
 *
 * Contents: 1. fp16 rounding  2. range encoder  3. quantizers  4. blob writer  5. main
 */
#define GOLF_INFER_NO_MAIN
#include "golf_infer.c"

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
// 3. quantizers: codes [rows*cols] and fp16 scales [rows*scales_per_row] of one tensor

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
// 4. blob writer

// encode_payload: the payload of one tensor under a scheme (see golf_infer.c); codes/scales are filled for
// quantized schemes and *coder_out says which code model won.
static void encode_payload(Bytes *out, int scheme, int group, int clip, float sd_k, int rows, int cols, const float *w, int8_t *codes, uint16_t *scales,
                           int *coder_out) {
    size_t count = (size_t)rows * cols;
    *coder_out = CODER_TREE;
    if (scheme == SCHEME_FP32) { for (size_t i = 0; i < count; i++) bytes_u32(out, f32_bits(w[i])); return; }
    if (scheme == SCHEME_FP16) { for (size_t i = 0; i < count; i++) bytes_u16(out, f32_to_f16(w[i])); return; }
    int spr = scales_per_row(scheme, group, cols), offset, qmax, bits = SCHEME_BITS[scheme];
    scheme_levels(scheme, &offset, &qmax);
    quantize(scheme, group, clip, sd_k, rows, cols, w, codes, scales);
    for (size_t i = 0; i < (size_t)rows * spr; i++) bytes_u16(out, scales[i]);
    // code the codes under every code model and keep the smallest
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

typedef struct { int scheme[NUM_CLASSES]; int group, clip; float sd_k; const char *dump_dir; int quiet; } ExportOptions;

// blob_encode: the blob of model m under the options, checked by decoding it again (golf_infer.c's decoder
// must give back the same codes and scales, bit for bit). Returns the blob bytes (caller frees out->p).
static void blob_encode(const GolfModel *m, const ExportOptions *o, Bytes *out) {
    const Config *c = &m->c;
    Bytes payloads = {NULL, 0, 0};
    size_t *sizes = galloc((size_t)m->n * sizeof(size_t));
    int *coders = galloc((size_t)m->n * sizeof(int));
    memset(out, 0, sizeof(*out));
    uint32_t h[BLOB_HEADER_INTS] = {BLOB_MAGIC, BLOB_VERSION};
    Config cc = *c;
    config_header(&cc, h, 1);
    h[13] = (uint32_t)m->n;
    for (int i = 0; i < m->n; i++) {
        const ParamSpec *s = &m->spec[i];
        int scheme = o->scheme[s->cls], spr = scales_per_row(scheme, o->group, s->cols);
        size_t count = (size_t)s->rows * s->cols, before = payloads.n;
        int8_t *codes = galloc(count), *back_codes = galloc(count);
        uint16_t *scales = galloc((size_t)s->rows * spr * 2), *back_scales = galloc((size_t)s->rows * spr * 2);
        float *back = galloc(count * sizeof(float));
        encode_payload(&payloads, scheme, o->group, o->clip, o->sd_k, s->rows, s->cols, m->params + s->offset, codes, scales, &coders[i]);
        sizes[i] = payloads.n - before;
        if (sizes[i] > 0xFFFFFFFFu) golf_die("tensor '%s' payload exceeds 4 GB", s->name);
        const char *err = blob_decode_tensor(payloads.p + before, sizes[i], scheme, coders[i], o->group, s->rows, s->cols, back, back_codes, back_scales);
        if (err) golf_die("internal: tensor '%s' does not decode: %s", s->name, err);
        if (scheme >= SCHEME_INT8 && (memcmp(codes, back_codes, count) || memcmp(scales, back_scales, (size_t)s->rows * spr * 2)))
            golf_die("internal: tensor '%s' decodes to different codes or scales", s->name);
        if (o->dump_dir && scheme >= SCHEME_INT8) {
            char path[4096];
            const char *ext[2] = {"codes", "scales"};
            for (int k = 0; k < 2; k++) {
                snprintf(path, sizeof(path), "%s/%s.%s", o->dump_dir, s->name, ext[k]);
                FILE *f = fopen(path, "wb");
                if (!f) golf_die("cannot write '%s': %s", path, strerror(errno));
                size_t nb = k ? (size_t)s->rows * spr * 2 : count;
                if (fwrite(k ? (void *)scales : (void *)codes, 1, nb, f) != nb || fclose(f) != 0) golf_die("cannot write '%s': %s", path, strerror(errno));
            }
        }
        if (!o->quiet)
            printf("  %-28s %-7s %-8s %9zu values -> %9zu bytes (%.3f bits/value%s)\n", s->name, CLASS_NAME[s->cls], SCHEME_NAME[scheme], count,
                   sizes[i], 8.0 * sizes[i] / (double)(count ? count : 1), scheme >= SCHEME_INT8 ? (coders[i] == CODER_CONTEXT ? ", context model" : ", tree model") : "");
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
// 5. main

// clip_from_name: CLIP_* by name (search, none, sdclip), or -1.
static GOLF_UNUSED int clip_from_name(const char *s) {
    return strcmp(s, "search") == 0 ? CLIP_SEARCH : strcmp(s, "none") == 0 ? CLIP_NONE : strcmp(s, "sdclip") == 0 ? CLIP_SDCLIP : -1;
}

// scheme_from_name: a scheme by name (fp32 ... ternary); exits 2 on an unknown one.
static GOLF_UNUSED int scheme_from_name(const char *s) {
    for (int i = 0; i < NUM_SCHEMES; i++) if (strcmp(s, SCHEME_NAME[i]) == 0) return i;
    fprintf(stderr, "golf_export: unknown scheme '%s' (fp32 fp16 int8 int6 int5 int4 ternary)\n", s);
    exit(2);
}

#ifndef GOLF_EXPORT_NO_MAIN
int main(int argc, char **argv) {
    g_golf_prog = "golf_export";
    const char *in = NULL, *outp = NULL;
    ExportOptions o = {{SCHEME_INT8, SCHEME_INT8, SCHEME_INT8, SCHEME_INT8, SCHEME_FP32}, 128, CLIP_SEARCH, 12.5f, NULL, 0};
    int per_class[NUM_CLASSES] = {-1, -1, -1, -1, -1}, all = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (a[0] == '-' && !more && strcmp(a, "--quiet") != 0) { fprintf(stderr, "golf_export: %s needs a value\n", a); return 2; }
        if (strcmp(a, "--quant") == 0) all = scheme_from_name(argv[++i]);
        else if (strcmp(a, "--quant-embed") == 0) per_class[CLS_EMBED] = scheme_from_name(argv[++i]);
        else if (strcmp(a, "--quant-attn") == 0) per_class[CLS_ATTN] = scheme_from_name(argv[++i]);
        else if (strcmp(a, "--quant-mlp") == 0) per_class[CLS_MLP] = scheme_from_name(argv[++i]);
        else if (strcmp(a, "--quant-head") == 0) per_class[CLS_HEAD] = scheme_from_name(argv[++i]);
        else if (strcmp(a, "--quant-control") == 0) per_class[CLS_CONTROL] = scheme_from_name(argv[++i]);
        else if (strcmp(a, "--group") == 0) o.group = atoi(argv[++i]);
        else if (strcmp(a, "--clip") == 0) {
            const char *v = argv[++i];
            o.clip = clip_from_name(v);
            if (o.clip < 0) { fprintf(stderr, "golf_export: --clip is search, none or sdclip, not '%s'\n", v); return 2; }
        }
        else if (strcmp(a, "--sdclip-k") == 0) o.sd_k = (float)atof(argv[++i]);
        else if (strcmp(a, "--dump") == 0) o.dump_dir = argv[++i];
        else if (strcmp(a, "--quiet") == 0) o.quiet = 1;
        else if (a[0] == '-') { fprintf(stderr, "golf_export: unknown flag '%s'\n", a); return 2; }
        else if (!in) in = a;
        else if (!outp) outp = a;
        else { fprintf(stderr, "golf_export: unexpected argument '%s'\n", a); return 2; }
    }
    if (!in || !outp) {
        fprintf(stderr, "usage: golf_export CKPT OUT.golf [--quant S] [--quant-embed|attn|mlp|head|control S] [--group G] [--clip search|none|sdclip]\n"
                        "                   [--sdclip-k K] [--dump DIR] [--quiet]\n"
                        "       S: fp32 fp16 int8 int6 int5 int4 ternary\n");
        return 2;
    }
    if (o.group < 0 || o.group > 65535) { fprintf(stderr, "golf_export: --group must be in 0..65535\n"); return 2; }
    for (int k = 0; k < NUM_CLASSES; k++) {
        if (all >= 0 && k != CLS_CONTROL) o.scheme[k] = all;
        if (per_class[k] >= 0) o.scheme[k] = per_class[k];
    }
    GolfModel m;
    model_load_file(&m, in, NULL);
    Bytes blob;
    if (!o.quiet) printf("golf_export: %s -> %s\n", in, outp);
    blob_encode(&m, &o, &blob);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", outp);
    FILE *f = fopen(tmp, "wb");
    if (!f) golf_die("cannot create '%s': %s", tmp, strerror(errno));
    if (fwrite(blob.p, 1, blob.n, f) != blob.n || fclose(f) != 0) { remove(tmp); golf_die("cannot write '%s': %s", tmp, strerror(errno)); }
    if (rename(tmp, outp) != 0) { remove(tmp); golf_die("cannot rename '%s' to '%s': %s", tmp, outp, strerror(errno)); }
    printf("model: %zu bytes (%zu parameters, %.3f bits/parameter)\n", blob.n, m.numel, 8.0 * blob.n / (double)m.numel);
    char line[512];
    puts(artifact_line(code_path(argv[0]), blob.n, line, sizeof(line)));
    free(blob.p);
    model_free(&m);
    return 0;
}
#endif
