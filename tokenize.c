/*
 * tokenize.c — SentencePiece-BPE compatible tokenizer and FineWeb shard writer for golf.
 *
 * Contract
 *   Reads a SentencePiece `.model` file (a protobuf ModelProto) without any protobuf library and encodes
 *   text to exactly the ids sentencepiece's own encoder produces (checked by test/test_tokenize.py
 *   against python3-sentencepiece on every shared document). The pipeline is sentencepiece's:
 *     text -> normalizer (precompiled charsmap = Darts double-array trie, NFKC for `nmt_nfkc`,
 *             whitespace handling, ' ' -> U+2581) -> BPE merges (highest piece score first, leftmost on
 *             ties) -> ids, with byte fallback (<0xNN>) or <unk> for characters outside the vocabulary.
 *   Writes the challenge's shard format: 256 little-endian int32 header (magic 20240520, version 1,
 *   token count, rest 0) followed by that many little-endian uint16 tokens, a BOS before every document.
 *   Also prints the three per-token tables val_bpb needs (bytes, leading-space flag, boundary flag).
 *   CaseOps (--caseops, the 2026-05-01 record's lossless_caps_caseops_v1): each document goes through the record's
 *   reversible case transform before encoding, and beside each val shard fineweb_val_bytes_NNNNNN.bin (the same
 *   header and layout, cut at the same tokens) holds, per val token, the UTF-8 bytes of the original text it stands
 *   for (BOS 0): val_bpb then counts the original text's bytes, not the transformed text's (section 8).
 *
 *   Usage: tokenize {encode|decode|shards|lut|info|caseops} ...   (`tokenize help` prints every flag)
 *   Errors: a message naming the file and the problem on stderr, exit 1 (usage errors exit 2); a shard
 *   is written under a temporary name and renamed only once complete.
 *   Library use: `#define TOKENIZE_NO_MAIN` then `#include "tokenize.c"` for the model parser, the
 *   encoder and the byte tables.
 *
 * Contents
 *   1. checks and utilities     2. UTF-8                 3. protobuf reader     4. the model
 *   5. normalizer               6. BPE encoder           7. decoder             8. CaseOps
 *   9. document reader          10. shard writer         11. command line
 *   (the piece table, the protobuf reader and the val_bpb byte tables come from golf_infer.c)
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
// golf_infer.c is the single source of the protobuf reader, the piece table (Pieces), byte pieces and the
// val_bpb byte tables; its CPU model code is not used here.
#define GOLF_INFER_NO_MAIN
#include "golf_infer.c"

// ----------------------------------------------------------------------------------------------------
// 1. checks and utilities

// Shards of the run in progress live under temporary names until the whole run has succeeded; die() and
// SIGINT/SIGTERM remove them, so an interrupted or failed run leaves no file under a final name.
enum { MAX_TMP_FILES = 1 << 16 };
static char *g_tmp[MAX_TMP_FILES];   // [g_ntmp] temporary paths, each with its final name after the NUL
static volatile int g_ntmp;

static void tmp_cleanup(void) {
    for (int i = 0; i < g_ntmp; i++) unlink(g_tmp[i]);
    g_ntmp = 0;
}

static void on_signal(int sig) {
    for (int i = 0; i < g_ntmp; i++) unlink(g_tmp[i]);
    _exit(128 + sig);
}

// die: print "tokenize: error: <message>" and exit 1, removing any temporary shard first.
static void die(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("tokenize: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    tmp_cleanup();
    exit(1);
}

static void warn(const char *fmt, ...) {
    va_list ap;
    fputs("tokenize: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void *xrealloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory allocating %zu bytes (%s:%d)\n  hint: the input document may be too large", n, file, line);
    return q;
}
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xmalloc(n) xrealloc_at(NULL, (n), __FILE__, __LINE__)

static FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (!f) die("cannot open '%s' (mode %s): %s (%s:%d)\n  hint: check the path and its permissions", path, mode, strerror(errno), file, line);
    return f;
}
#define fopenCheck(path, mode) fopen_check((path), (mode), __FILE__, __LINE__)

#define fwriteCheck(ptr, size, count, f, path) do { \
    if (fwrite((ptr), (size), (count), (f)) != (size_t)(count)) \
        die("cannot write '%s': %s (%s:%d)\n  hint: is the disk full?", (path), strerror(errno), __FILE__, __LINE__); \
} while (0)

// A growable byte buffer.
typedef struct { char *p; size_t n, cap; } Buf;
static void buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}
static void buf_put(Buf *b, const void *s, size_t n) { buf_reserve(b, n); memcpy(b->p + b->n, s, n); b->n += n; }
static void buf_putc(Buf *b, char c) { buf_reserve(b, 1); b->p[b->n++] = c; }

// A growable int32 vector (token ids).
typedef struct { int32_t *p; size_t n, cap; } Ids;
static void ids_push(Ids *v, int32_t x) {
    if (v->n == v->cap) { v->cap = v->cap ? 2 * v->cap : 1024; v->p = xrealloc(v->p, v->cap * sizeof(int32_t)); }
    v->p[v->n++] = x;
}

// A growable vector of offsets into a text.
typedef struct { size_t *p; size_t n, cap; } Offs;
static void offs_push(Offs *v, size_t x) {
    if (v->n == v->cap) { v->cap = v->cap ? 2 * v->cap : 1024; v->p = xrealloc(v->p, v->cap * sizeof(size_t)); }
    v->p[v->n++] = x;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// hash_bytes: 64-bit FNV-1a of n bytes (pieces and words are short, so this is cheap).
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 1099511628211ULL; }
    return h;
}

// ----------------------------------------------------------------------------------------------------
// 2. UTF-8 (sentencepiece's rules: no overlongs, no surrogates, nothing above U+10FFFF)

// utf8_one_char_len: length of the character starting with byte c, judged by its first byte only.
static int utf8_one_char_len(uint8_t c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

// utf8_valid_len: length of the valid character at s[0..n), or 0 when the bytes there are malformed.
static int utf8_valid_len(const uint8_t *s, size_t n) {
    uint32_t c;
    if (s[0] < 0x80) return 1;
    if (n >= 2 && (s[0] & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) {
        c = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        return c >= 0x80 ? 2 : 0;
    }
    if (n >= 3 && (s[0] & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80) {
        c = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return (c >= 0x800 && (c < 0xD800 || c >= 0xE000)) ? 3 : 0;
    }
    if (n >= 4 && (s[0] & 0xF8) == 0xF0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80) {
        c = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return (c >= 0x10000 && c <= 0x10FFFF) ? 4 : 0;
    }
    return 0;
}

// utf8_first_invalid: offset of the first malformed byte in s[0..n), or -1 when all of it is valid.
static long utf8_first_invalid(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        int l = utf8_valid_len(u + i, n - i);
        if (!l) return (long)i;
        i += (size_t)l;
    }
    return -1;
}

static void utf8_put(Buf *b, uint32_t c) {
    char t[4];
    int n;
    if (c < 0x80) { t[0] = (char)c; n = 1; }
    else if (c < 0x800) { t[0] = (char)(0xC0 | (c >> 6)); t[1] = (char)(0x80 | (c & 0x3F)); n = 2; }
    else if (c < 0x10000) { t[0] = (char)(0xE0 | (c >> 12)); t[1] = (char)(0x80 | ((c >> 6) & 0x3F)); t[2] = (char)(0x80 | (c & 0x3F)); n = 3; }
    else { t[0] = (char)(0xF0 | (c >> 18)); t[1] = (char)(0x80 | ((c >> 12) & 0x3F)); t[2] = (char)(0x80 | ((c >> 6) & 0x3F)); t[3] = (char)(0x80 | (c & 0x3F)); n = 4; }
    buf_put(b, t, (size_t)n);
}

static const char REPLACEMENT_CHAR[] = "\xef\xbf\xbd";   // U+FFFD

// ----------------------------------------------------------------------------------------------------
// 3. protobuf strings (the reader itself, pb_next, is golf_infer.c's)

static char *pb_strdup(const PbField *f) {
    char *s = xmalloc(f->len + 1);
    memcpy(s, f->data, f->len);
    s[f->len] = 0;
    return s;
}

// ----------------------------------------------------------------------------------------------------
// 4. the model: pieces, trainer spec and normalizer spec of a SentencePiece ModelProto

enum { MODEL_UNIGRAM = 1, MODEL_BPE = 2, MODEL_WORD = 3, MODEL_CHAR = 4 };
static const char *const PIECE_TYPE_NAME[] = {"?", "normal", "unknown", "control", "user-defined", "unused", "byte"};

// IdTable: open-addressing hash from piece bytes to piece id; slots hold an id or -1, keys are the pieces.
typedef struct { int32_t *slot; uint32_t mask; } IdTable;

typedef struct {
    const char *path;
    Pieces v;              // the vocabulary (golf_infer.c): v.n pieces, v.piece/plen/score/type[v.n]
    // trainer spec fields that matter for encoding, decoding and the shard format
    int model_type, byte_fallback, split_digits, treat_ws_suffix, split_by_whitespace;
    char *unk_surface, *bos_piece, *eos_piece, *unk_piece, *pad_piece;
    // normalizer spec
    char *norm_name;
    int add_dummy_prefix, remove_extra_ws, escape_ws, has_denormalizer;
    const uint32_t *trie;  // [trie_n] Darts double-array units of the precompiled charsmap
    size_t trie_n;
    const char *norm_str;  // [norm_len] NUL-terminated replacement strings the trie points into
    size_t norm_len;
    char *charsmap;        // owns the bytes trie and norm_str point into
    size_t charsmap_len;
    // derived lookups
    int unk_id, bos_id, eos_id, pad_id;
    int byte_id[256];      // id of piece <0xNN>, unk_id when absent
    IdTable pieces;        // normal, user-defined and unused pieces: the ones BPE may produce
    IdTable reserved;      // control, unknown and byte pieces
    IdTable user;          // user-defined pieces: matched whole, never normalized or split
    int max_piece_len, max_user_len, n_unused;
    int word_split;        // 1 when no piece holds U+2581 except at its start (end in suffix mode):
                           // merges never cross a word boundary, so words encode independently
} Model;

static void idtab_init(IdTable *t, int n) {
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n + 16) cap *= 2;
    t->slot = xmalloc(cap * sizeof(int32_t));
    for (uint32_t i = 0; i < cap; i++) t->slot[i] = -1;
    t->mask = cap - 1;
}

static int idtab_find(const IdTable *t, const Model *m, const char *s, size_t n) {
    if (!t->slot) return -1;
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slot[i];
        if (id < 0) return -1;
        if ((size_t)m->v.plen[id] == n && memcmp(m->v.piece[id], s, n) == 0) return id;
    }
}

// idtab_insert: add piece `id`; returns 0 when an equal piece is already present.
static int idtab_insert(IdTable *t, const Model *m, int id) {
    for (uint32_t i = (uint32_t)hash_bytes(m->v.piece[id], (size_t)m->v.plen[id]) & t->mask;; i = (i + 1) & t->mask) {
        int32_t o = t->slot[i];
        if (o < 0) { t->slot[i] = id; return 1; }
        if (m->v.plen[o] == m->v.plen[id] && memcmp(m->v.piece[o], m->v.piece[id], (size_t)m->v.plen[id]) == 0) return 0;
    }
}

// piece_to_id: sentencepiece's PieceToId: reserved pieces first, then the vocabulary, else <unk>.
static int piece_to_id(const Model *m, const char *s, size_t n) {
    int id = idtab_find(&m->reserved, m, s, n);
    if (id < 0) id = idtab_find(&m->pieces, m, s, n);
    return id < 0 ? m->unk_id : id;
}

// model_bad: die with a message that names the model file and the problem.
#define model_bad(m, ...) do { \
    char why_[512]; \
    snprintf(why_, sizeof(why_), __VA_ARGS__); \
    die("model '%s' is not a usable SentencePiece BPE model: %s\n  hint: pass a sentencepiece BPE .model file, e.g. the official fineweb_1024_bpe.model", (m)->path, why_); \
} while (0)

static void parse_trainer_spec(Model *m, const uint8_t *p, size_t len) {
    Pb r = {p, p + len};
    PbField f;
    int rc;
    while ((rc = pb_next(&r, &f)) > 0) {
        if (f.wtype == 0) {
            switch (f.field) {
            case 3: m->model_type = (int)f.v; break;
            case 22: m->split_by_whitespace = (int)f.v; break;
            case 24: m->treat_ws_suffix = (int)f.v; break;
            case 25: m->split_digits = (int)f.v; break;
            case 35: m->byte_fallback = (int)f.v; break;
            default: break;
            }
        } else if (f.wtype == 2) {
            char **dst = f.field == 44 ? &m->unk_surface : f.field == 45 ? &m->unk_piece : f.field == 46 ? &m->bos_piece
                       : f.field == 47 ? &m->eos_piece : f.field == 48 ? &m->pad_piece : NULL;
            if (dst) { free(*dst); *dst = pb_strdup(&f); }
        }
    }
    if (rc < 0) model_bad(m, "trainer spec is malformed protobuf");
}

static void parse_normalizer_spec(Model *m, const uint8_t *p, size_t len) {
    Pb r = {p, p + len};
    PbField f;
    int rc;
    while ((rc = pb_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wtype == 2) { free(m->norm_name); m->norm_name = pb_strdup(&f); }
        else if (f.field == 2 && f.wtype == 2) {
            free(m->charsmap);
            m->charsmap = xmalloc(f.len + 1);
            memcpy(m->charsmap, f.data, f.len);
            m->charsmap_len = f.len;
        }
        else if (f.field == 3 && f.wtype == 0) m->add_dummy_prefix = (int)f.v;
        else if (f.field == 4 && f.wtype == 0) m->remove_extra_ws = (int)f.v;
        else if (f.field == 5 && f.wtype == 0) m->escape_ws = (int)f.v;
    }
    if (rc < 0) model_bad(m, "normalizer spec is malformed protobuf");
}

// setup_charsmap: split the precompiled charsmap into its trie and string blobs:
// [uint32 little-endian trie size][trie: uint32 units][replacement strings, each NUL-terminated].
static void setup_charsmap(Model *m) {
    if (!m->charsmap_len) return;
    const uint8_t *b = (const uint8_t *)m->charsmap;
    if (m->charsmap_len <= 4) model_bad(m, "precompiled charsmap is truncated (%zu bytes)", m->charsmap_len);
    size_t trie_bytes = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
    if (trie_bytes % 4 || trie_bytes == 0 || trie_bytes >= m->charsmap_len - 4)
        model_bad(m, "precompiled charsmap has a bad trie size %zu (blob is %zu bytes)", trie_bytes, m->charsmap_len);
    // The units are little-endian uint32; copy them to an aligned array in host order.
    uint32_t *units = xmalloc(trie_bytes);
    for (size_t i = 0; i < trie_bytes / 4; i++) {
        const uint8_t *u = b + 4 + 4 * i;
        units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    m->trie = units;
    m->trie_n = trie_bytes / 4;
    m->norm_str = m->charsmap + 4 + trie_bytes;
    m->norm_len = m->charsmap_len - 4 - trie_bytes;
    if (m->norm_str[m->norm_len - 1] != 0) model_bad(m, "precompiled charsmap strings are not NUL-terminated");
}

static void sp_model_free(Model *m) {
    pieces_free(&m->v);
    free(m->unk_surface); free(m->bos_piece); free(m->eos_piece); free(m->unk_piece); free(m->pad_piece);
    free(m->norm_name); free(m->charsmap); free((void *)m->trie);
    free(m->pieces.slot); free(m->reserved.slot); free(m->user.slot);
    memset(m, 0, sizeof(*m));
}

static char *str_dup(const char *s) { size_t n = strlen(s) + 1; char *d = xmalloc(n); memcpy(d, s, n); return d; }

// model_load: parse and validate a .model file; dies with a message naming the file on any problem.
static void model_load(Model *m, const char *path) {
    memset(m, 0, sizeof(*m));
    m->path = path;
    // protobuf defaults of the fields we read
    m->model_type = MODEL_UNIGRAM;
    m->split_by_whitespace = 1;
    m->add_dummy_prefix = 1; m->remove_extra_ws = 1; m->escape_ws = 1;
    m->unk_surface = str_dup(" \xe2\x81\x87 ");
    m->unk_piece = str_dup("<unk>"); m->bos_piece = str_dup("<s>"); m->eos_piece = str_dup("</s>"); m->pad_piece = str_dup("<pad>");

    Buf data = {0};
    data.p = (char *)read_file(path, &data.n);
    if (data.n == 0) model_bad(m, "the file is empty");

    const char *bad = pieces_parse(&m->v, (const uint8_t *)data.p, data.n);
    if (bad) model_bad(m, "%s", bad);
    Pb r = {(const uint8_t *)data.p, (const uint8_t *)data.p + data.n};
    PbField f;
    int rc, have_trainer = 0;
    while ((rc = pb_next(&r, &f)) > 0) {
        if (f.wtype != 2) continue;
        if (f.field == 2) { parse_trainer_spec(m, f.data, f.len); have_trainer = 1; }
        else if (f.field == 3) parse_normalizer_spec(m, f.data, f.len);
        else if (f.field == 5) {
            // a denormalizer with rules changes decoding; record whether it has any
            Pb d = {f.data, f.data + f.len};
            PbField g;
            while (pb_next(&d, &g) > 0) if (g.field == 2 && g.wtype == 2 && g.len > 0) m->has_denormalizer = 1;
        }
    }
    free(data.p);
    if (rc < 0) model_bad(m, "truncated or not a protobuf file");
    if (!have_trainer) model_bad(m, "no trainer spec (model type unknown)");
    if (m->model_type != MODEL_BPE) {
        static const char *names[] = {"?", "unigram", "bpe", "word", "char"};
        model_bad(m, "model_type is %s, only bpe is supported", m->model_type >= 1 && m->model_type <= 4 ? names[m->model_type] : "unknown");
    }
    setup_charsmap(m);

    // lookups, in sentencepiece's InitializePieces order and with its checks
    idtab_init(&m->pieces, m->v.n);
    idtab_init(&m->reserved, m->v.n);
    m->unk_id = -1;
    for (int b = 0; b < 256; b++) m->byte_id[b] = -1;
    int n_user = 0;
    for (int i = 0; i < m->v.n; i++) {
        int t = m->v.type[i];
        int normal = t == PIECE_NORMAL || t == PIECE_USER_DEFINED || t == PIECE_UNUSED;
        if (!idtab_insert(normal ? &m->pieces : &m->reserved, m, i)) model_bad(m, "piece %d '%s' is defined twice", i, m->v.piece[i]);
        if (t == PIECE_USER_DEFINED) n_user++;
        if (t == PIECE_UNUSED) m->n_unused++;
        if (t == PIECE_UNKNOWN) {
            if (m->unk_id >= 0) model_bad(m, "two unknown pieces (%d and %d)", m->unk_id, i);
            m->unk_id = i;
        }
        if (t == PIECE_BYTE) {
            if (!m->byte_fallback) model_bad(m, "byte piece '%s' present although byte_fallback is off", m->v.piece[i]);
            int v = byte_piece_value(m->v.piece[i], m->v.plen[i]);
            if (v < 0) model_bad(m, "byte piece %d '%s' is not of the form <0xNN>", i, m->v.piece[i]);
            m->byte_id[v] = i;
        }
        if (normal && m->v.plen[i] > m->max_piece_len) m->max_piece_len = m->v.plen[i];
    }
    if (m->unk_id < 0) model_bad(m, "no unknown piece (<unk>) defined");
    for (int b = 0; b < 256; b++) if (m->byte_id[b] < 0) m->byte_id[b] = m->unk_id;
    if (n_user) {
        idtab_init(&m->user, n_user);
        for (int i = 0; i < m->v.n; i++)
            if (m->v.type[i] == PIECE_USER_DEFINED) {
                idtab_insert(&m->user, m, i);
                if (m->v.plen[i] > m->max_user_len) m->max_user_len = m->v.plen[i];
            }
    }
    int id_bos = idtab_find(&m->reserved, m, m->bos_piece, strlen(m->bos_piece));
    int id_eos = idtab_find(&m->reserved, m, m->eos_piece, strlen(m->eos_piece));
    int id_pad = idtab_find(&m->reserved, m, m->pad_piece, strlen(m->pad_piece));
    m->bos_id = id_bos >= 0 && m->v.type[id_bos] == PIECE_CONTROL ? id_bos : -1;
    m->eos_id = id_eos >= 0 && m->v.type[id_eos] == PIECE_CONTROL ? id_eos : -1;
    m->pad_id = id_pad >= 0 && m->v.type[id_pad] == PIECE_CONTROL ? id_pad : -1;

    // Word splitting is exact when no mergeable piece holds U+2581 anywhere but at its word edge, and no
    // unused piece exists (their re-segmentation table is shared across a whole sentence in sentencepiece).
    m->word_split = m->escape_ws && m->n_unused == 0;
    for (int i = 0; i < m->v.n && m->word_split; i++) {
        int t = m->v.type[i];
        if (t != PIECE_NORMAL && t != PIECE_USER_DEFINED) continue;
        const char *s = m->v.piece[i];
        int n = m->v.plen[i];
        for (int k = 0; k + 3 <= n; k++)
            if (memcmp(s + k, SPACE_SYMBOL, 3) == 0 && (m->treat_ws_suffix ? k + 3 != n : k != 0)) { m->word_split = 0; break; }
    }
}

// ----------------------------------------------------------------------------------------------------
// 5. normalizer: charsmap rewriting, whitespace rules, ' ' -> U+2581 (sentencepiece's Normalizer)

// user_prefix_match: length of the longest user-defined piece at s[0..n), 0 when none matches.
static int user_prefix_match(const Model *m, const char *s, size_t n) {
    if (!m->max_user_len) return 0;
    for (int l = (int)(n < (size_t)m->max_user_len ? n : (size_t)m->max_user_len); l > 0; l--)
        if (idtab_find(&m->user, m, s, (size_t)l) >= 0) return l;
    return 0;
}

// trie_longest: the charsmap rule with the longest key that prefixes s[0..n) — sentencepiece keeps the
// first 32 matches of the common-prefix search. Returns the key length (0: none) and sets *repl.
static size_t trie_longest(const Model *m, const uint8_t *s, size_t n, const char **repl) {
    const uint32_t *a = m->trie;
    size_t best = 0, nresults = 0;
    uint32_t best_value = 0;
    size_t pos = 0;
    if (!a) return 0;
#define UNIT_OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
#define UNIT_LABEL(u) ((u) & ((1u << 31) | 0xFFu))
#define UNIT_HAS_LEAF(u) (((u) >> 8) & 1u)
#define UNIT_VALUE(u) ((u) & ((1u << 31) - 1))
    pos ^= UNIT_OFFSET(a[0]);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= m->trie_n) break;
        uint32_t u = a[pos];
        if (UNIT_LABEL(u) != s[i]) break;
        pos ^= UNIT_OFFSET(u);
        if (pos >= m->trie_n) break;
        if (UNIT_HAS_LEAF(u)) {
            if (nresults < 32) { best = i + 1; best_value = UNIT_VALUE(a[pos]); }
            nresults++;
        }
    }
    if (best && best_value >= m->norm_len) model_bad(m, "charsmap rule points outside its string table");
    *repl = m->norm_str + best_value;
    return best;
}

// normalize_prefix: the rewrite of the first character(s) of s[0..n): sets *out/*outlen, returns bytes consumed.
static size_t normalize_prefix(const Model *m, const char *s, size_t n, const char **out, size_t *outlen) {
    size_t l = (size_t)user_prefix_match(m, s, n);
    if (l) { *out = s; *outlen = l; return l; }
    const char *repl;
    l = trie_longest(m, (const uint8_t *)s, n, &repl);
    if (l) { *out = repl; *outlen = strlen(repl); return l; }
    int v = utf8_valid_len((const uint8_t *)s, n);
    if (!v) { *out = REPLACEMENT_CHAR; *outlen = 3; return 1; }
    *out = s; *outlen = (size_t)v;
    return (size_t)v;
}

// norm_put: append s[0..n) to the normalized text out; with n2o, each byte's origin: the input offset orig.
static void norm_put(Buf *out, Offs *n2o, const char *s, size_t n, size_t orig) {
    buf_put(out, s, n);
    if (n2o) for (size_t i = 0; i < n; i++) offs_push(n2o, orig);
}

// normalize: sentencepiece's Normalizer::Normalize of s[0..n) into out (cleared first). With n2o, also its
// norm_to_orig: n2o[i] is the offset in s of the input that made output byte i, and n2o[out->n] the end of the input
// the output stands for (leading and trailing whitespace it dropped lie outside [n2o[0], n2o[out->n])).
static void normalize(const Model *m, const char *s, size_t n, Buf *out, Offs *n2o) {
    const char *space = m->escape_ws ? SPACE_SYMBOL : " ";
    const size_t space_len = m->escape_ws ? 3 : 1;
    const char *rep;
    size_t rlen, used, consumed = 0;   // consumed: input bytes read so far
    out->n = 0;
    if (n2o) n2o->n = 0;
    if (m->remove_extra_ws)       // drop leading whitespace
        while (n && (used = normalize_prefix(m, s, n, &rep, &rlen)) && rlen == 1 && rep[0] == ' ') { s += used; n -= used; consumed += used; }
    if (!n) return;
    buf_reserve(out, 3 * n + 8);
    if (!m->treat_ws_suffix && m->add_dummy_prefix) norm_put(out, n2o, space, space_len, consumed);
    int prev_space = m->remove_extra_ws;
    while (n) {
        used = normalize_prefix(m, s, n, &rep, &rlen);
        if (prev_space) while (rlen && rep[0] == ' ') { rep++; rlen--; }
        if (rlen) {
            for (size_t i = 0; i < rlen; i++) {
                if (rep[i] == ' ' && m->escape_ws) norm_put(out, n2o, SPACE_SYMBOL, 3, consumed);
                else { buf_putc(out, rep[i]); if (n2o) offs_push(n2o, consumed); }
            }
            prev_space = rep[rlen - 1] == ' ';
        }
        s += used; n -= used; consumed += used;
        if (!m->remove_extra_ws) prev_space = 0;
    }
    if (m->remove_extra_ws)       // drop trailing whitespace: the output then ends where the dropped part began
        while (out->n >= space_len && memcmp(out->p + out->n - space_len, space, space_len) == 0) {
            out->n -= space_len;
            if (n2o) { consumed = n2o->p[out->n]; n2o->n = out->n; }
        }
    if (m->treat_ws_suffix && m->add_dummy_prefix) norm_put(out, n2o, space, space_len, consumed);
    if (n2o) offs_push(n2o, consumed);
}

// ----------------------------------------------------------------------------------------------------
// 6. BPE encoder: sentencepiece's bpe_model.cc merge loop, with a cache of already-encoded words

typedef struct { int prev, next, freeze, len; const char *p; } Sym;   // a symbol: text p[0..len)
typedef struct { float score; int left, right, size; } Pair;         // a candidate merge of two neighbours
typedef struct { const char *w, *l, *r; int wn, ln, rn; } RevMerge;  // unused piece -> the pair it came from

// WordCache: word bytes -> ids (and their normalized lengths), open addressing; cleared whole when it fills.
typedef struct {
    uint64_t *hash; uint32_t *koff, *klen, *voff, *vlen;   // [cap] per slot; klen 0 = empty
    Buf keys; Ids vals, lens;                              // lens parallel to vals
    uint32_t mask, count;
} WordCache;
enum { CACHE_SLOTS = 1 << 20, CACHE_MAX_WORD = 64 };

typedef struct {
    const Model *m;
    Buf norm;              // normalized text
    Sym *sym; size_t sym_cap;
    Pair *heap; size_t heap_n, heap_cap;
    RevMerge *rev; size_t rev_n, rev_cap;
    WordCache cache;
    Ids word_ids;
    // with spans set, what the last encode() produced besides the ids (sentencepiece's piece surfaces follow):
    int spans;
    Ids lens;              // [ids appended] bytes of the normalized text each id stands for (0 for all but the
                           // last byte piece of a character), in order, summing to norm.n
    Offs n2o;              // [norm.n + 1] normalize()'s norm_to_orig
} Encoder;

static void encoder_init(Encoder *e, const Model *m) {
    memset(e, 0, sizeof(*e));
    e->m = m;
    if (m->word_split) {
        WordCache *c = &e->cache;
        c->mask = CACHE_SLOTS - 1;
        c->hash = xmalloc(CACHE_SLOTS * sizeof(uint64_t));
        c->koff = xmalloc(CACHE_SLOTS * sizeof(uint32_t));
        c->klen = calloc(CACHE_SLOTS, sizeof(uint32_t));
        c->voff = xmalloc(CACHE_SLOTS * sizeof(uint32_t));
        c->vlen = xmalloc(CACHE_SLOTS * sizeof(uint32_t));
        if (!c->klen) die("out of memory for the word cache");
    }
}

static void encoder_free(Encoder *e) {
    WordCache *c = &e->cache;
    free(e->norm.p); free(e->sym); free(e->heap); free(e->rev); free(e->word_ids.p);
    free(e->lens.p); free(e->n2o.p);
    free(c->hash); free(c->koff); free(c->klen); free(c->voff); free(c->vlen); free(c->keys.p); free(c->vals.p); free(c->lens.p);
    memset(e, 0, sizeof(*e));
}

// pair_before: heap order — higher score first, then the leftmost pair.
static int pair_before(const Pair *a, const Pair *b) { return a->score > b->score || (a->score == b->score && a->left < b->left); }

static void heap_push(Encoder *e, Pair p) {
    if (e->heap_n == e->heap_cap) { e->heap_cap = e->heap_cap ? 2 * e->heap_cap : 256; e->heap = xrealloc(e->heap, e->heap_cap * sizeof(Pair)); }
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &e->heap[up])) break;
        e->heap[i] = e->heap[up];
        i = up;
    }
    e->heap[i] = p;
}

static Pair heap_pop(Encoder *e) {
    Pair top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

// maybe_add_pair: queue the merge of neighbours left+right when their concatenation is a piece.
static void maybe_add_pair(Encoder *e, int left, int right) {
    const Model *m = e->m;
    if (left < 0 || right < 0 || e->sym[left].freeze || e->sym[right].freeze) return;
    int size = e->sym[left].len + e->sym[right].len;
    if (size > m->max_piece_len) return;
    int id = idtab_find(&m->pieces, m, e->sym[left].p, (size_t)size);
    if (id < 0) return;
    Pair p = {m->v.score[id], left, right, size};
    heap_push(e, p);
    if (m->v.type[id] == PIECE_UNUSED) {   // remember how to split it again (the latest pair wins)
        RevMerge rm = {e->sym[left].p, e->sym[left].p, e->sym[right].p, size, e->sym[left].len, e->sym[right].len};
        for (size_t k = 0; k < e->rev_n; k++)
            if (e->rev[k].wn == size && memcmp(e->rev[k].w, rm.w, (size_t)size) == 0) { e->rev[k] = rm; return; }
        if (e->rev_n == e->rev_cap) { e->rev_cap = e->rev_cap ? 2 * e->rev_cap : 16; e->rev = xrealloc(e->rev, e->rev_cap * sizeof(RevMerge)); }
        e->rev[e->rev_n++] = rm;
    }
}

// emit_piece: append the ids of final symbol w[0..n) (with spans, their lengths to e->lens): unused pieces are split back,
// unknown ones become byte pieces (byte fallback: the character's length goes with its last byte) or <unk>.
static void emit_piece(Encoder *e, const char *w, int n, Ids *out) {
    const Model *m = e->m;
    int id = piece_to_id(m, w, (size_t)n);
    if (m->v.type[id] == PIECE_UNUSED) {
        for (size_t k = 0; k < e->rev_n; k++)
            if (e->rev[k].wn == n && memcmp(e->rev[k].w, w, (size_t)n) == 0) {
                RevMerge rm = e->rev[k];
                emit_piece(e, rm.l, rm.ln, out);
                emit_piece(e, rm.r, rm.rn, out);
                return;
            }
    }
    if (m->v.type[id] == PIECE_UNKNOWN && m->byte_fallback) {
        for (int i = 0; i < n; i++) {
            ids_push(out, m->byte_id[(uint8_t)w[i]]);
            if (e->spans) ids_push(&e->lens, i == n - 1 ? n : 0);
        }
        return;
    }
    ids_push(out, id);
    if (e->spans) ids_push(&e->lens, n);
}

// bpe: encode normalized text s[0..n) by merging neighbour symbols, best-scoring piece first.
static void bpe(Encoder *e, const char *s, size_t n, Ids *out) {
    const Model *m = e->m;
    if (!n) return;
    if (n + 1 > e->sym_cap) { e->sym_cap = n + 1; e->sym = xrealloc(e->sym, e->sym_cap * sizeof(Sym)); }
    // split into characters (user-defined pieces stay whole and frozen)
    int ns = 0;
    for (size_t i = 0; i < n;) {
        int l = user_prefix_match(m, s + i, n - i), freeze = l > 0;
        if (!l) { l = utf8_one_char_len((uint8_t)s[i]); if ((size_t)l > n - i) l = (int)(n - i); }
        Sym y = {ns - 1, -1, freeze, l, s + i};
        e->sym[ns++] = y;
        i += (size_t)l;
    }
    for (int i = 0; i + 1 < ns; i++) e->sym[i].next = i + 1;
    e->heap_n = 0;
    e->rev_n = 0;
    for (int i = 1; i < ns; i++) maybe_add_pair(e, i - 1, i);
    while (e->heap_n) {
        Pair t = heap_pop(e);
        Sym *L = &e->sym[t.left], *R = &e->sym[t.right];
        if (!L->len || !R->len || L->len + R->len != t.size) continue;   // stale: a neighbour changed
        L->len += R->len;
        L->next = R->next;
        if (R->next >= 0) e->sym[R->next].prev = t.left;
        R->len = 0;
        maybe_add_pair(e, L->prev, t.left);
        maybe_add_pair(e, t.left, L->next);
    }
    for (int i = 0; i >= 0; i = e->sym[i].next) emit_piece(e, e->sym[i].p, e->sym[i].len, out);
}

// cache_word: ids of one word, from the cache or computed by bpe() and remembered.
static void cache_word(Encoder *e, const char *w, size_t n, Ids *out) {
    WordCache *c = &e->cache;
    if (n > CACHE_MAX_WORD) { bpe(e, w, n, out); return; }
    uint64_t h = hash_bytes(w, n);
    uint32_t i = (uint32_t)h & c->mask;
    for (; c->klen[i]; i = (i + 1) & c->mask) {
        if (c->hash[i] == h && c->klen[i] == n && memcmp(c->keys.p + c->koff[i], w, n) == 0) {
            for (uint32_t k = 0; k < c->vlen[i]; k++) ids_push(out, c->vals.p[c->voff[i] + k]);
            if (e->spans) for (uint32_t k = 0; k < c->vlen[i]; k++) ids_push(&e->lens, c->lens.p[c->voff[i] + k]);
            return;
        }
    }
    size_t start = out->n, lstart = e->lens.n;
    bpe(e, w, n, out);
    if (c->count >= CACHE_SLOTS / 2 || c->keys.n + n > 0xFFFFFFFFu / 2) {   // full: start afresh
        memset(c->klen, 0, CACHE_SLOTS * sizeof(uint32_t));
        c->count = 0; c->keys.n = 0; c->vals.n = 0; c->lens.n = 0;
        for (i = (uint32_t)h & c->mask; c->klen[i]; i = (i + 1) & c->mask) {}
    }
    c->hash[i] = h;
    c->koff[i] = (uint32_t)c->keys.n;
    c->klen[i] = (uint32_t)n;
    c->voff[i] = (uint32_t)c->vals.n;
    c->vlen[i] = (uint32_t)(out->n - start);
    buf_put(&c->keys, w, n);
    for (size_t k = start; k < out->n; k++) ids_push(&c->vals, out->p[k]);
    if (e->spans) for (size_t k = lstart; k < e->lens.n; k++) ids_push(&c->lens, e->lens.p[k]);
    c->count++;
}

// encode: append the ids of text s[0..n) to out, exactly as sentencepiece's Encode; with e->spans, e->lens and
// e->n2o say which bytes of s each id covers.
static void encode(Encoder *e, const char *s, size_t n, Ids *out) {
    const Model *m = e->m;
    size_t first = out->n;
    e->lens.n = 0;
    normalize(m, s, n, &e->norm, e->spans ? &e->n2o : NULL);
    const char *t = e->norm.p;
    size_t tn = e->norm.n;
    if (!m->word_split) bpe(e, t, tn, out);
    else {   // words: each starts at a U+2581 (or, in suffix mode, ends after one)
        size_t start = 0;
        for (size_t i = 0; i + 3 <= tn; i++) {
            if (memcmp(t + i, SPACE_SYMBOL, 3) != 0) continue;
            size_t cut = m->treat_ws_suffix ? i + 3 : i;
            if (cut > start) { cache_word(e, t + start, cut - start, out); start = cut; }
            i += 2;
        }
        if (tn > start) cache_word(e, t + start, tn - start, out);
    }
    if (!m->byte_fallback) {   // without byte fallback, a run of unknown pieces becomes one <unk> (covering them all)
        int32_t *len = e->lens.p;   // len[i - first]: the length of out->p[i]
        size_t k = first;
        for (size_t i = first; i < out->n; i++) {
            if (out->p[i] == m->unk_id && k > first && out->p[k - 1] == m->unk_id) { if (e->spans) len[k - 1 - first] += len[i - first]; }
            else { out->p[k] = out->p[i]; if (e->spans) len[k - first] = len[i - first]; k++; }
        }
        out->n = k;
        if (e->spans) e->lens.n = k - first;
    }
}

// ----------------------------------------------------------------------------------------------------
// 7. decoder: ids -> text, as sentencepiece's Decode (byte pieces joined into UTF-8, U+2581 -> ' ')

static void decode(const Model *m, const int32_t *ids, size_t n, Buf *out) {
    int bos_ws_seen = 0;   // a leading U+2581 was already dropped (only when extra whitespace is kept)
    out->n = 0;
    for (size_t i = 0; i < n;) {
        int id = ids[i];
        if (m->v.type[id] == PIECE_BYTE) {          // a run of byte pieces: valid UTF-8 kept, bad bytes -> U+FFFD
            uint8_t bytes[4];
            size_t nb = 0;
            for (;;) {                            // decode the run in windows of up to 4 bytes (one character)
                while (nb < 4 && i < n && m->v.type[ids[i]] == PIECE_BYTE) bytes[nb++] = (uint8_t)byte_piece_value(m->v.piece[ids[i]], m->v.plen[ids[i]]), i++;
                if (!nb) break;
                int l = utf8_valid_len(bytes, nb);
                if (l) buf_put(out, bytes, (size_t)l);
                else { buf_put(out, REPLACEMENT_CHAR, 3); l = 1; }
                memmove(bytes, bytes + l, nb - (size_t)l);
                nb -= (size_t)l;
            }
            continue;
        }
        i++;
        if (m->v.type[id] == PIECE_CONTROL) continue;
        if (m->v.type[id] == PIECE_UNKNOWN) { buf_put(out, m->unk_surface, strlen(m->unk_surface)); continue; }
        const char *p = m->v.piece[id];
        size_t pl = (size_t)m->v.plen[id];
        // at the start of the text, the dummy-prefix space is not part of the text: sentencepiece drops the
        // U+2581 of leading pieces until text appears, or of the first one only when extra whitespace is kept
        if (out->n == 0 && !bos_ws_seen && (m->add_dummy_prefix || m->remove_extra_ws) && pl >= 3 && memcmp(p, SPACE_SYMBOL, 3) == 0) {
            p += 3; pl -= 3;
            bos_ws_seen = !m->remove_extra_ws;
        }
        for (size_t k = 0; k < pl;) {
            if (k + 3 <= pl && memcmp(p + k, SPACE_SYMBOL, 3) == 0) { buf_putc(out, ' '); k += 3; }
            else buf_putc(out, p[k++]);
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// 8. CaseOps: the reversible case transform of the 2026-05-01 record (lossless_caps_caseops_v1), and the original
//    bytes each token of transformed text stands for
//
// Over each maximal run of ASCII letters (a word): a lowercase word stays; a word of 2+ letters, all capitals,
// becomes ALLCAPS + the word lowercased; a capital followed only by lowercase letters (or alone) becomes TITLE + the
// word lowercased; any other word gets TITLE when it starts with a capital and CAPNEXT before each later capital, its
// letters lowercased. The operators are the private-use characters U+E001..U+E004; one already in the text is
// escaped as ESC + itself. Nothing else changes, so decoding gives back the text byte for byte.
//
// The byte sidecar: a token of transformed text stands for the original bytes that decoding its surface emits (its
// surface is the span of the transformed text it covers, as sentencepiece reports it): operators 0, an escaped
// operator its 3 bytes, every other character its own UTF-8 bytes.

enum { CASE_NONE, CASE_TITLE, CASE_ALLCAPS, CASE_CAPNEXT, CASE_ESC };   // U+E000 + the value
static const char *const CASE_OP[] = {"", "\xee\x80\x81", "\xee\x80\x82", "\xee\x80\x83", "\xee\x80\x84"};

// case_op: the operator s[0..n) starts with, or CASE_NONE.
static int case_op(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    return n >= 3 && u[0] == 0xEE && u[1] == 0x80 && u[2] >= 0x81 && u[2] <= 0x84 ? u[2] - 0x80 : CASE_NONE;
}
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_letter(char c) { return (c >= 'a' && c <= 'z') || is_upper(c); }

// caseops_encode: the transform of s[0..n) (valid UTF-8), appended to out.
static void caseops_encode(const char *s, size_t n, Buf *out) {
    for (size_t i = 0; i < n;) {
        int op = case_op(s + i, n - i);
        if (op) { buf_put(out, CASE_OP[CASE_ESC], 3); buf_put(out, s + i, 3); i += 3; continue; }
        if (!is_letter(s[i])) { buf_putc(out, s[i++]); continue; }
        size_t j = i, capitals = 0;
        for (; j < n && is_letter(s[j]); j++) capitals += is_upper(s[j]);
        int allcaps = j - i >= 2 && capitals == j - i;
        if (allcaps) buf_put(out, CASE_OP[CASE_ALLCAPS], 3);
        else if (is_upper(s[i])) buf_put(out, CASE_OP[CASE_TITLE], 3);
        for (size_t k = i; k < j; k++) {
            if (!allcaps && k > i && is_upper(s[k])) buf_put(out, CASE_OP[CASE_CAPNEXT], 3);
            buf_putc(out, is_upper(s[k]) ? (char)(s[k] + 32) : s[k]);
        }
        i = j;
    }
}

// CaseState: where the decoder stands between characters (the record's decoder's five variables).
typedef struct {
    int escape;     // an ESC was read: the next character is literal
    int mode;       // CASE_TITLE or CASE_ALLCAPS read, waiting for a word to start (else CASE_NONE)
    int capnext;    // a CAPNEXT read, waiting for its letter
    int in_word;    // the last character was an ASCII letter
    int allcaps;    // the current word is in capitals
} CaseState;

// caseops_decode_part: the inverse transform of s[0..n) (valid UTF-8 that continues what st has seen), appended to
// out. NULL, or what is malformed (the record's decoder refuses the same) with *at its offset in s.
static const char *caseops_decode_part(CaseState *st, const char *s, size_t n, Buf *out, size_t *at) {
    for (size_t i = 0; i < n;) {
        const char *c = s + i;
        *at = i;
        size_t len = utf8_one_char_len((uint8_t)*c);
        if (len > n - i) len = n - i;
        i += len;
        int letter = len == 1 && is_letter(*c), op = case_op(c, len);
        if (st->escape) {   // a literal character
            if (st->mode && !letter) return "an escaped character where a word's capitalization is pending";
            buf_put(out, c, len);
            st->escape = 0;
            st->in_word = letter;
            if (!letter) st->allcaps = 0;
        } else if (op == CASE_ESC) st->escape = 1;
        else if (op == CASE_TITLE || op == CASE_ALLCAPS) {
            if (st->mode || st->in_word || st->capnext) return op == CASE_TITLE ? "a TITLE marker inside a word or after another marker" : "an ALLCAPS marker inside a word or after another marker";
            st->mode = op;
        } else if (op == CASE_CAPNEXT) {
            if (st->capnext) return "two CAPNEXT markers in a row";
            st->capnext = 1;
        } else if (letter) {
            int upper;
            if (!st->in_word) {   // a word starts
                upper = st->mode || st->capnext;
                if (st->mode == CASE_ALLCAPS) st->allcaps = 1;
                st->mode = CASE_NONE;
                st->in_word = 1;
            } else {
                if (st->mode) return "a word's capitalization marker inside the word";
                upper = st->allcaps || st->capnext;
            }
            st->capnext = 0;
            buf_putc(out, upper && !is_upper(*c) ? (char)(*c - 32) : *c);
        } else {
            if (st->mode || st->capnext) return "a capitalization marker not followed by an ASCII letter";
            buf_put(out, c, len);
            st->in_word = 0;
            st->allcaps = 0;
        }
    }
    return NULL;
}

// caseops_decode_end: NULL when the text may end in state st, else why not.
static const char *caseops_decode_end(const CaseState *st) {
    if (st->escape) return "the text ends in an ESC marker";
    if (st->mode || st->capnext) return "the text ends in a capitalization marker";
    return NULL;
}

// caseops_token_bytes: per id of the last encode() of the transformed text t, the original UTF-8 bytes it stands
// for, appended to counts: the bytes decoding its surface t[n2o[b], n2o[e]) emits, [b, e) being the normalized bytes
// it covers (the encoder ran with spans). NULL or the problem (scratch: working space).
static const char *caseops_token_bytes(const Encoder *e, const char *t, Ids *counts, Buf *scratch) {
    CaseState st = {0, 0, 0, 0, 0};
    size_t b = 0;
    for (size_t k = 0; k < e->lens.n; k++) {
        size_t end = b + (size_t)e->lens.p[k], from = e->n2o.p[b], to = e->n2o.p[end];
        size_t at;
        scratch->n = 0;
        const char *bad = caseops_decode_part(&st, t + from, to - from, scratch, &at);
        if (bad) return bad;
        ids_push(counts, (int32_t)(scratch->n < INT32_MAX ? scratch->n : INT32_MAX));
        b = end;
    }
    if (b != e->norm.n) die("internal error: the tokens cover %zu of %zu normalized bytes (%s:%d)", b, e->norm.n, __FILE__, __LINE__);
    return caseops_decode_end(&st);
}

// ----------------------------------------------------------------------------------------------------
// 9. document reader: lines, jsonl ({"text": ...} per line) or paragraphs (blank-line separated)

enum { FMT_AUTO, FMT_LINES, FMT_JSONL, FMT_PARAGRAPHS };

typedef struct {
    const char *path;      // for messages ("-" = stdin)
    FILE *f;
    int format;
    long line;             // lines read so far
    long doc_line;         // first line of the current document
    char *lbuf; size_t lcap;
    Buf doc;               // the current document's text
    Buf key;               // scratch for JSON keys
} DocReader;

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

// input_open: an input file, or standard input for "-" (said when it is a terminal, which would otherwise look
// like a hang); dies when the file cannot be opened or is a folder.
static FILE *input_open(const char *path) {
    if (strcmp(path, "-") == 0) {
        if (isatty(0)) fprintf(stderr, "tokenize: reading standard input (end it with Ctrl-D, or pass a FILE)\n");
        return stdin;
    }
    FILE *f = fopenCheck(path, "rb");
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) die("cannot read '%s': it is a folder, not a file\n  hint: pass the files in it", path);
    return f;
}

static void reader_open(DocReader *r, const char *path, int format) {
    memset(r, 0, sizeof(*r));
    r->path = path;
    r->f = input_open(path);
    if (format == FMT_AUTO) format = ends_with(path, ".jsonl") || ends_with(path, ".json") ? FMT_JSONL : FMT_LINES;
    r->format = format;
}

static void reader_close(DocReader *r) {
    if (r->f && r->f != stdin) fclose(r->f);
    free(r->lbuf); free(r->doc.p); free(r->key.p);
    memset(r, 0, sizeof(*r));
}

// read_line: next line without its '\n'; returns its length or -1 at end of file.
static long read_line(DocReader *r) {
    errno = 0;
    ssize_t n = getline(&r->lbuf, &r->lcap, r->f);
    if (n < 0) {
        if (ferror(r->f)) die("cannot read '%s' after line %ld: %s", r->path, r->line, strerror(errno ? errno : EIO));
        return -1;
    }
    r->line++;
    if (n && r->lbuf[n - 1] == '\n') r->lbuf[--n] = 0;
    return (long)n;
}

// JSON: find the top-level "text" string of one object (strict RFC 8259 syntax, the last "text" wins).
typedef struct { const char *p, *end; DocReader *r; int depth, found_text; Buf key; } Json;

#define json_bad(j, ...) do { \
    fprintf(stderr, "tokenize: error: %s:%ld: invalid JSON at column %ld: ", (j)->r->path, (j)->r->line, (long)((j)->p - (j)->r->lbuf) + 1); \
    fprintf(stderr, __VA_ARGS__); \
    die("'%s' line %ld is not a JSON object\n  hint: jsonl input needs one {\"text\": \"...\"} object per line (or pass --format lines)", (j)->r->path, (j)->r->line); \
} while (0)

static void json_ws(Json *j) { while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n')) j->p++; }

static int json_hex4(Json *j) {
    int v = 0;
    if (j->end - j->p < 4) json_bad(j, "truncated \\u escape\n");
    for (int k = 0; k < 4; k++) {
        char c = *j->p++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) json_bad(j, "bad hex digit in \\u escape\n");
        v = v * 16 + d;
    }
    return v;
}

// json_string: parse a string at j->p (on its opening quote); its UTF-8 goes to out when out != NULL.
// A lone surrogate escape becomes the bytes ED xx xx, which the UTF-8 check later reports or replaces.
static void json_string(Json *j, Buf *out) {
    j->p++;
    for (;;) {
        if (j->p >= j->end) json_bad(j, "unterminated string\n");
        char c = *j->p++;
        if (c == '"') return;
        if ((uint8_t)c < 0x20) json_bad(j, "raw control character 0x%02x inside a string\n", (uint8_t)c);
        if (c != '\\') { if (out) buf_putc(out, c); continue; }
        if (j->p >= j->end) json_bad(j, "unterminated escape\n");
        c = *j->p++;
        uint32_t u;
        switch (c) {
        case '"': case '\\': case '/': u = (uint32_t)c; break;
        case 'b': u = '\b'; break;
        case 'f': u = '\f'; break;
        case 'n': u = '\n'; break;
        case 'r': u = '\r'; break;
        case 't': u = '\t'; break;
        case 'u':
            u = (uint32_t)json_hex4(j);
            if (u >= 0xD800 && u < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
                const char *save = j->p;
                j->p += 2;
                uint32_t lo = (uint32_t)json_hex4(j);
                if (lo >= 0xDC00 && lo < 0xE000) u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                else j->p = save;
            }
            if (out && u >= 0xD800 && u < 0xE000) {   // lone surrogate: not encodable as UTF-8
                buf_putc(out, (char)(0xE0 | (u >> 12))); buf_putc(out, (char)(0x80 | ((u >> 6) & 0x3F))); buf_putc(out, (char)(0x80 | (u & 0x3F)));
                continue;
            }
            break;
        default: json_bad(j, "unknown escape \\%c\n", c);
        }
        if (out) utf8_put(out, u);
    }
}

static void json_value(Json *j, Buf *text_out);

static void json_literal(Json *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) json_bad(j, "unexpected character '%c'\n", *j->p);
    j->p += n;
}

static void json_number(Json *j) {
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) json_bad(j, "bad number\n");
    while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' || *j->p == 'E' || *j->p == '+' || *j->p == '-')) j->p++;
}

// json_value: skip one value; for the top-level object, the value of key "text" is decoded into text_out.
static void json_value(Json *j, Buf *text_out) {
    json_ws(j);
    if (j->p >= j->end) json_bad(j, "unexpected end of line\n");
    if (++j->depth > 512) json_bad(j, "nesting deeper than 512\n");
    char c = *j->p;
    if (c == '{') {
        j->p++;
        json_ws(j);
        if (j->p < j->end && *j->p == '}') { j->p++; j->depth--; return; }
        for (;;) {
            json_ws(j);
            if (j->p >= j->end || *j->p != '"') json_bad(j, "expected a string key\n");
            j->key.n = 0;
            json_string(j, &j->key);
            int is_text = text_out && j->depth == 1 && j->key.n == 4 && memcmp(j->key.p, "text", 4) == 0;
            json_ws(j);
            if (j->p >= j->end || *j->p != ':') json_bad(j, "expected ':'\n");
            j->p++;
            json_ws(j);
            if (is_text) {
                if (j->p >= j->end || *j->p != '"')
                    die("%s:%ld: the \"text\" field is not a string\n  hint: each jsonl line needs {\"text\": \"...\"}", j->r->path, j->r->line);
                text_out->n = 0;
                json_string(j, text_out);
                j->found_text = 1;
            } else json_value(j, NULL);
            json_ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == '}') { j->p++; break; }
            json_bad(j, "expected ',' or '}'\n");
        }
    } else if (c == '[') {
        j->p++;
        json_ws(j);
        if (j->p < j->end && *j->p == ']') { j->p++; j->depth--; return; }
        for (;;) {
            json_value(j, NULL);
            json_ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == ']') { j->p++; break; }
            json_bad(j, "expected ',' or ']'\n");
        }
    } else if (c == '"') json_string(j, NULL);
    else if (c == 't') json_literal(j, "true");
    else if (c == 'f') json_literal(j, "false");
    else if (c == 'n') json_literal(j, "null");
    else json_number(j);
    j->depth--;
}

static int is_blank(const char *s, long n) {
    for (long i = 0; i < n; i++) if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

// reader_next: the next document into r->doc (r->doc.p[r->doc.n] == 0); 0 at end of input.
static int reader_next(DocReader *r) {
    long n;
    r->doc.n = 0;
    buf_reserve(&r->doc, 1);
    if (r->format == FMT_LINES) {
        if ((n = read_line(r)) < 0) return 0;
        r->doc_line = r->line;
        buf_put(&r->doc, r->lbuf, (size_t)n);
    } else if (r->format == FMT_JSONL) {
        do { if ((n = read_line(r)) < 0) return 0; } while (is_blank(r->lbuf, n));
        Json j = {r->lbuf, r->lbuf + n, r, 0, 0, {r->key.p, 0, r->key.cap}};
        json_ws(&j);
        if (j.p >= j.end || *j.p != '{') json_bad(&j, "expected '{'\n");
        json_value(&j, &r->doc);
        json_ws(&j);
        r->key = j.key;   // keep the key buffer for the next line
        if (j.p != j.end) json_bad(&j, "trailing characters after the object\n");
        if (!j.found_text) die("%s:%ld: no \"text\" field in this JSON object\n  hint: each jsonl line needs {\"text\": \"...\"}", r->path, r->line);
        r->doc_line = r->line;
    } else {
        do { if ((n = read_line(r)) < 0) return 0; } while (is_blank(r->lbuf, n));
        r->doc_line = r->line;
        for (;;) {
            buf_put(&r->doc, r->lbuf, (size_t)n);
            if ((n = read_line(r)) < 0 || is_blank(r->lbuf, n)) break;
            buf_putc(&r->doc, '\n');
        }
    }
    buf_reserve(&r->doc, 1);
    r->doc.p[r->doc.n] = 0;
    return 1;
}

// check_utf8: with replace=0, die naming the file and line of the first malformed byte of the document.
static void check_utf8(const DocReader *r, int replace) {
    if (replace) return;
    long bad = utf8_first_invalid(r->doc.p, r->doc.n);
    if (bad >= 0)
        die("%s:%ld: invalid UTF-8 (byte 0x%02x at offset %ld of the document)\n  hint: convert the file to UTF-8, or pass --invalid-utf8 replace to encode each bad byte as U+FFFD like sentencepiece",
            r->path, r->doc_line, (uint8_t)r->doc.p[bad], bad);
}

// ----------------------------------------------------------------------------------------------------
// 10. shard writer: fineweb_{val,train}_NNNNNN.bin = 256 x int32 header (magic, version, count) + uint16 tokens;
//     under --caseops also fineweb_val_bytes_NNNNNN.bin, the same layout holding each val token's original bytes

typedef struct {
    const char *dir, *split;   // output folder, "val", "train" or "val_bytes"
    uint64_t cap;              // tokens per file
    int index;                 // number of files finished
    FILE *f;                   // the open temporary file, or NULL
    const char *tmp;           // its temporary path (g_tmp entry)
    uint64_t ntok;             // tokens in the open file
    uint8_t buf[1 << 16];      // pending little-endian tokens
    size_t nbuf;
    uint64_t total;            // tokens over all files of this split
} ShardWriter;

static void shard_flush(ShardWriter *w) {
    if (w->nbuf) fwriteCheck(w->buf, 1, w->nbuf, w->f, w->tmp);
    w->nbuf = 0;
}

static void put_le32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }

// shard_close: write the header's token count and flush the file to disk (it keeps its temporary name).
static void shard_close(ShardWriter *w) {
    if (!w->f) return;
    shard_flush(w);
    uint8_t count[4];
    put_le32(count, (uint32_t)w->ntok);
    if (fseek(w->f, 8, SEEK_SET) != 0) die("cannot seek in '%s': %s", w->tmp, strerror(errno));
    fwriteCheck(count, 1, 4, w->f, w->tmp);
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) die("cannot write '%s': %s\n  hint: is the disk full?", w->tmp, strerror(errno));
    if (fclose(w->f) != 0) die("cannot close '%s': %s", w->tmp, strerror(errno));
    w->f = NULL;
    w->index++;
    w->ntok = 0;
}

static void shard_open(ShardWriter *w) {
    char final[4096], tmp[4096];
    snprintf(final, sizeof(final), "%s/fineweb_%s_%06d.bin", w->dir, w->split, w->index);
    snprintf(tmp, sizeof(tmp), "%s/.fineweb_%s_%06d.bin.tmp", w->dir, w->split, w->index);
    if (g_ntmp == MAX_TMP_FILES) die("more than %d shard files: raise --shard-tokens", MAX_TMP_FILES);
    size_t a = strlen(tmp) + 1, b = strlen(final) + 1;
    char *both = xmalloc(a + b);
    memcpy(both, tmp, a);
    memcpy(both + a, final, b);
    w->f = fopen(tmp, "wb");   // registered only once it exists, so cleanup never removes a file it did not make
    if (!w->f) die("cannot create '%s': %s\n  hint: check that the output folder is writable", tmp, strerror(errno));
    g_tmp[g_ntmp] = both;
    g_ntmp++;
    w->tmp = both;
    uint8_t header[SHARD_HEADER_INTS * 4] = {0};
    put_le32(header, SHARD_MAGIC);
    put_le32(header + 4, SHARD_VERSION);
    fwriteCheck(header, 1, sizeof(header), w->f, w->tmp);
    w->ntok = 0;
}

// shard_put: append tokens (or byte counts), starting a new file whenever the current one holds `cap` of them.
static void shard_put(ShardWriter *w, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!w->f) shard_open(w);
        if (w->nbuf + 2 > sizeof(w->buf)) shard_flush(w);
        w->buf[w->nbuf++] = (uint8_t)ids[i];
        w->buf[w->nbuf++] = (uint8_t)(ids[i] >> 8);
        w->ntok++;
        w->total++;
        if (w->ntok == w->cap) shard_close(w);
    }
}

// shards_commit: the run succeeded — give every temporary file its final name.
static void shards_commit(int quiet) {
    for (int i = 0; i < g_ntmp; i++) {
        const char *final = g_tmp[i] + strlen(g_tmp[i]) + 1;
        if (rename(g_tmp[i], final) != 0) die("cannot rename '%s' to '%s': %s", g_tmp[i], final, strerror(errno));
        if (!quiet) fprintf(stderr, "tokenize: wrote %s\n", final);
    }
    for (int i = 0; i < g_ntmp; i++) free(g_tmp[i]);
    g_ntmp = 0;
}

enum { SHARD_NONE, SHARD_VAL, SHARD_TRAIN, SHARD_VAL_BYTES };

// shard_kind: what a file named name is: fineweb_val_NNNNNN.bin, fineweb_train_NNNNNN.bin,
// fineweb_val_bytes_NNNNNN.bin (with *index = NNNNNN), or none of them.
static int shard_kind(const char *name, int *index) {
    static const struct { const char *prefix; int kind; } K[] = {
        {"fineweb_val_bytes_", SHARD_VAL_BYTES}, {"fineweb_val_", SHARD_VAL}, {"fineweb_train_", SHARD_TRAIN}};
    for (int k = 0; k < 3; k++) {
        size_t p = strlen(K[k].prefix);
        if (strncmp(name, K[k].prefix, p) != 0) continue;
        const char *rest = name + p;
        if (strlen(rest) != 10 || strcmp(rest + 6, ".bin") != 0) return SHARD_NONE;
        for (int i = 0; i < 6; i++) if (rest[i] < '0' || rest[i] > '9') return SHARD_NONE;
        if (index) *index = atoi(rest);
        return K[k].kind;
    }
    return SHARD_NONE;
}
static int is_shard_name(const char *name) { return shard_kind(name, NULL) != SHARD_NONE; }

// warn_stale_shards: after a --force run, name shards (and byte sidecars) in dir that this run did not write.
static void warn_stale_shards(const char *dir, int nval, int ntrain, int nbytes) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    int stale = 0, index = 0;
    char example[256] = "";
    while ((de = readdir(d)) != NULL) {
        int kind = shard_kind(de->d_name, &index);
        int written = kind == SHARD_VAL ? nval : kind == SHARD_TRAIN ? ntrain : nbytes;
        if (kind != SHARD_NONE && index >= written && !stale++) snprintf(example, sizeof(example), "%s", de->d_name);
    }
    closedir(d);
    if (stale) warn("'%s' still holds %d older shard(s) this run did not write (e.g. %s): remove them before training", dir, stale, example);
}

// prepare_out_dir: create dir (and parents), check it is writable and holds no shards unless force.
static void prepare_out_dir(const char *dir, int force) {
    char path[4096];
    if (strlen(dir) + 64 > sizeof(path)) die("output folder name too long: '%s'", dir);
    strcpy(path, dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char save = *p;
        *p = 0;
        struct stat st;
        if (stat(path, &st) != 0) {
            if (mkdir(path, 0777) != 0 && errno != EEXIST) die("cannot create output folder '%s': %s\n  hint: pass --out with a writable location", path, strerror(errno));
        } else if (!S_ISDIR(st.st_mode)) die("cannot use output folder '%s': '%s' exists and is not a folder", dir, path);
        *p = save;
        if (!save) break;
    }
    DIR *d = opendir(dir);
    if (!d) die("cannot open output folder '%s': %s", dir, strerror(errno));
    struct dirent *de;
    const char *found = NULL;
    char name[256];
    while ((de = readdir(d)) != NULL)
        if (is_shard_name(de->d_name)) { snprintf(name, sizeof(name), "%s", de->d_name); found = name; break; }
    closedir(d);
    if (found && !force) die("output folder '%s' already holds shards (%s); refusing to overwrite them\n  hint: choose an empty folder or pass --force", dir, found);
    snprintf(path, sizeof(path), "%s/.tokenize_probe_%ld", dir, (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) die("output folder '%s' is not writable: %s", dir, strerror(errno));
    fclose(f);
    unlink(path);
}

// ----------------------------------------------------------------------------------------------------
// 11. command line: one table of flags per subcommand drives parsing and help

typedef struct {
    const char *model, *out, *format, *invalid_utf8, *empty, *val_docs, *shard_tokens, *vocab_size;
    int byte260, force, quiet, jsonl, caseops, decode;
    const char *files[4096];
    int nfiles;
} Args;

typedef struct { const char *cmd, *name; const char **str; int *flag; const char *help; } Flag;

static Args g_args;
static const Flag FLAGS[] = {
    {"encode shards decode lut info", "--model", &g_args.model, NULL, "SentencePiece .model file (e.g. fineweb_1024_bpe.model)"},
    {"encode shards caseops", "--format", &g_args.format, NULL, "auto|lines|jsonl|paragraphs: lines = one document per line; jsonl = {\"text\": ...} per line; paragraphs = blank-line separated; auto = jsonl for *.jsonl/*.json, else lines"},
    {"encode shards", "--invalid-utf8", &g_args.invalid_utf8, NULL, "error|replace: malformed UTF-8 is an error (default) or each bad byte becomes U+FFFD like sentencepiece"},
    {"encode", "--caseops", NULL, &g_args.caseops, "encode each document's CaseOps transform (see 'tokenize caseops')"},
    {"shards", "--caseops", NULL, &g_args.caseops, "encode each document's CaseOps transform, and write beside each val shard fineweb_val_bytes_NNNNNN.bin: per val token, the UTF-8 bytes of the original text it stands for (BOS 0), which val_bpb counts"},
    {"caseops", "--decode", NULL, &g_args.decode, "the inverse: CaseOps text back to the original (malformed text is an error)"},
    {"shards lut", "--byte260", NULL, &g_args.byte260, "the official pure-byte tokenizer instead of --model: id = byte + 4, BOS 1, vocab 260"},
    {"shards", "--out", &g_args.out, NULL, "output folder for fineweb_{val,train}_NNNNNN.bin (created if missing)"},
    {"shards", "--val-docs", &g_args.val_docs, NULL, "the first N documents go to the val split (default 0)"},
    {"shards", "--shard-tokens", &g_args.shard_tokens, NULL, "tokens per shard file (default 100000000)"},
    {"shards", "--empty", &g_args.empty, NULL, "error|skip|keep: a document with no tokens is an error (default), dropped, or kept as a lone BOS"},
    {"shards", "--force", NULL, &g_args.force, "write even if the output folder already holds shards"},
    {"shards", "--quiet", NULL, &g_args.quiet, "no progress lines"},
    {"decode", "--jsonl", NULL, &g_args.jsonl, "print each document as a {\"text\": ...} JSON line (the text may hold newlines)"},
    {"lut", "--vocab-size", &g_args.vocab_size, NULL, "pad the tables to at least N ids (extra ids: 0 bytes, boundary)"},
};
static const int NFLAGS = (int)(sizeof(FLAGS) / sizeof(FLAGS[0]));

static const struct { const char *name, *args, *help; } COMMANDS[] = {
    {"encode", "--model M [FILE|-]", "print the ids of each document, one line of space-separated ids per document"},
    {"decode", "--model M [FILE|-]", "each input line of ids -> one line of text"},
    {"shards", "(--model M | --byte260) --out DIR FILE...", "write fineweb_{val,train}_NNNNNN.bin shards (BOS before every document)"},
    {"lut", "(--model M | --byte260)", "per token id: base_bytes has_leading_space is_boundary (the val_bpb tables)"},
    {"info", "--model M", "summary of a .model file"},
    {"caseops", "[--decode] [FILE|-]", "each document's CaseOps transform (the 2026-05-01 record's lossless_caps_caseops_v1: ASCII capitals as the operators U+E001 TITLE, U+E002 ALLCAPS, U+E003 CAPNEXT, U+E004 ESC escaping a literal operator) as a {\"text\": ...} line"},
};

static int word_in(const char *word, const char *list) {
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
    return 0;
}

static void usage(FILE *f, const char *cmd) {
    fprintf(f, "usage: tokenize COMMAND [flags] — SentencePiece-BPE compatible tokenizer and shard writer\n\n");
    for (size_t c = 0; c < sizeof(COMMANDS) / sizeof(COMMANDS[0]); c++) {
        if (cmd && strcmp(cmd, COMMANDS[c].name) != 0) continue;
        fprintf(f, "  tokenize %s %s\n      %s\n", COMMANDS[c].name, COMMANDS[c].args, COMMANDS[c].help);
        for (int i = 0; i < NFLAGS; i++)
            if (word_in(COMMANDS[c].name, FLAGS[i].cmd)) fprintf(f, "        %-16s %s\n", FLAGS[i].name, FLAGS[i].help);
    }
}

static void usage_error(const char *cmd, const char *fmt, const char *what) {
    fprintf(stderr, "tokenize: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n  run 'tokenize %s%s--help' for the flags\n", cmd ? cmd : "", cmd ? " " : "");
    exit(2);
}

static void parse_args(const char *cmd, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(stdout, cmd); exit(0); }
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            int k;
            for (k = 0; k < NFLAGS; k++)
                if (strlen(FLAGS[k].name) == len && strncmp(FLAGS[k].name, a, len) == 0 && word_in(cmd, FLAGS[k].cmd)) break;
            if (k == NFLAGS) usage_error(cmd, "unknown flag '%s'", a);
            if (FLAGS[k].flag) { if (eq) usage_error(cmd, "flag '%s' takes no value", FLAGS[k].name); *FLAGS[k].flag = 1; continue; }
            if (eq) *FLAGS[k].str = eq + 1;
            else if (i + 1 < argc) *FLAGS[k].str = argv[++i];
            else usage_error(cmd, "flag '%s' needs a value", FLAGS[k].name);
        } else {
            if (g_args.nfiles == (int)(sizeof(g_args.files) / sizeof(g_args.files[0]))) usage_error(cmd, "too many input files (%s)", a);
            g_args.files[g_args.nfiles++] = a;
        }
    }
}

// parse_count: an integer flag's value in [min, max] (dflt when the flag is absent); a usage error otherwise.
static long long parse_count(const char *cmd, const char *flag, const char *s, long long dflt, long long min, long long max) {
    if (!s) return dflt;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s needs an integer in %lld..%lld, got '%%s'", flag, min, max);
        usage_error(cmd, msg, s);
    }
    return v;
}

static int parse_choice(const char *cmd, const char *flag, const char *s, const char *const *choices, int dflt) {
    if (!s) return dflt;
    for (int i = 0; choices[i]; i++) if (strcmp(s, choices[i]) == 0) return i;
    char msg[256];
    snprintf(msg, sizeof(msg), "bad value '%%s' for %s", flag);
    usage_error(cmd, msg, s);
    return dflt;
}

static const char *const FORMAT_NAMES[] = {"auto", "lines", "jsonl", "paragraphs", NULL};
static const char *const UTF8_NAMES[] = {"error", "replace", NULL};
static const char *const EMPTY_NAMES[] = {"error", "skip", "keep", NULL};
enum { EMPTY_ERROR, EMPTY_SKIP, EMPTY_KEEP };

// check_caseops_flags: --caseops counts each token's original bytes, so it needs a model and valid UTF-8.
static void check_caseops_flags(const char *cmd, int replace) {
    if (!g_args.caseops) return;
    if (g_args.byte260) usage_error(cmd, "%s", "--caseops needs --model (a SentencePiece model), not --byte260");
    if (replace) usage_error(cmd, "%s", "--caseops takes no --invalid-utf8 replace: its byte counts are of the original text, which must be valid UTF-8");
}

static void need_model(const char *cmd, Model *m) {
    if (!g_args.model) usage_error(cmd, "%s needs --model", cmd);
    model_load(m, g_args.model);
}

// Output of integers without printf: the encode and lut loops print millions of them.
static void put_int(Buf *b, long v) {
    char t[24];
    int n = 0;
    unsigned long u = v < 0 ? (unsigned long)(-v) : (unsigned long)v;
    do { t[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) t[n++] = '-';
    buf_reserve(b, (size_t)n);
    while (n) b->p[b->n++] = t[--n];
}

static void flush_out(Buf *b) {
    fwriteCheck(b->p, 1, b->n, stdout, "standard output");
    b->n = 0;
}

static int cmd_encode(void) {
    Model m;
    need_model("encode", &m);
    int format = parse_choice("encode", "--format", g_args.format, FORMAT_NAMES, FMT_AUTO);
    int replace = parse_choice("encode", "--invalid-utf8", g_args.invalid_utf8, UTF8_NAMES, 0);
    check_caseops_flags("encode", replace);
    if (g_args.nfiles > 1) usage_error("encode", "encode takes one input file, got '%s' too", g_args.files[1]);
    Encoder e;
    encoder_init(&e, &m);
    DocReader r;
    reader_open(&r, g_args.nfiles ? g_args.files[0] : "-", format);
    Ids ids = {0};
    Buf out = {0}, t = {0};
    while (reader_next(&r)) {
        check_utf8(&r, replace);
        ids.n = 0;
        if (g_args.caseops) { t.n = 0; caseops_encode(r.doc.p, r.doc.n, &t); encode(&e, t.p, t.n, &ids); }
        else encode(&e, r.doc.p, r.doc.n, &ids);
        for (size_t i = 0; i < ids.n; i++) { if (i) buf_putc(&out, ' '); put_int(&out, ids.p[i]); }
        buf_putc(&out, '\n');
        if (out.n > (1 << 20)) flush_out(&out);
    }
    flush_out(&out);
    if (fflush(stdout) != 0) die("cannot write standard output: %s", strerror(errno));
    reader_close(&r);
    free(ids.p); free(out.p); free(t.p);
    encoder_free(&e);
    sp_model_free(&m);
    return 0;
}

// json_put_string: s[0..n) as a JSON string (non-ASCII kept as UTF-8).
static void json_put_string(Buf *b, const char *s, size_t n) {
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '"' || c == '\\') { buf_putc(b, '\\'); buf_putc(b, (char)c); }
        else if (c == '\n') buf_put(b, "\\n", 2);
        else if (c == '\r') buf_put(b, "\\r", 2);
        else if (c == '\t') buf_put(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7F) { char t[8]; snprintf(t, sizeof(t), "\\u%04x", c); buf_put(b, t, 6); }
        else buf_putc(b, (char)c);
    }
    buf_putc(b, '"');
}

static int cmd_decode(void) {
    Model m;
    need_model("decode", &m);
    if (g_args.nfiles > 1) usage_error("decode", "decode takes one input file, got '%s' too", g_args.files[1]);
    if (m.has_denormalizer) die("model '%s' has denormalization rules, which decode does not support", m.path);
    DocReader r;
    reader_open(&r, g_args.nfiles ? g_args.files[0] : "-", FMT_LINES);
    Ids ids = {0};
    Buf text = {0}, out = {0};
    while (reader_next(&r)) {
        ids.n = 0;
        char *p = r.doc.p;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || (*end && *end != ' ' && *end != '\t' && *end != '\r'))
                die("%s:%ld: not a token id: '%.20s'\n  hint: decode reads lines of space-separated integer ids", r.path, r.line, p);
            if (v < 0 || v >= m.v.n) die("%s:%ld: token id %ld is outside the vocabulary of '%s' (0..%d)", r.path, r.line, v, m.path, m.v.n - 1);
            ids_push(&ids, (int32_t)v);
            p = end;
        }
        decode(&m, ids.p, ids.n, &text);
        if (g_args.jsonl) { buf_put(&out, "{\"text\": ", 9); json_put_string(&out, text.p, text.n); buf_putc(&out, '}'); }
        else buf_put(&out, text.p, text.n);
        buf_putc(&out, '\n');
        if (out.n > (1 << 20)) flush_out(&out);
    }
    flush_out(&out);
    if (fflush(stdout) != 0) die("cannot write standard output: %s", strerror(errno));
    reader_close(&r);
    free(ids.p); free(text.p); free(out.p);
    sp_model_free(&m);
    return 0;
}

static int cmd_caseops(void) {
    int format = parse_choice("caseops", "--format", g_args.format, FORMAT_NAMES, FMT_AUTO);
    if (g_args.nfiles > 1) usage_error("caseops", "caseops takes one input file, got '%s' too", g_args.files[1]);
    DocReader r;
    reader_open(&r, g_args.nfiles ? g_args.files[0] : "-", format);
    Buf text = {0}, out = {0};
    while (reader_next(&r)) {
        check_utf8(&r, 0);
        text.n = 0;
        if (g_args.decode) {
            CaseState st = {0, 0, 0, 0, 0};
            size_t at = r.doc.n;
            const char *bad = caseops_decode_part(&st, r.doc.p, r.doc.n, &text, &at);
            if (!bad) { bad = caseops_decode_end(&st); at = r.doc.n; }
            if (bad) die("%s:%ld: not CaseOps text: %s (at byte %zu of the document)\n  hint: --decode reads what 'tokenize caseops' writes", r.path, r.doc_line, bad, at);
        } else caseops_encode(r.doc.p, r.doc.n, &text);
        buf_put(&out, "{\"text\": ", 9);
        json_put_string(&out, text.p, text.n);
        buf_put(&out, "}\n", 2);
        if (out.n > (1 << 20)) flush_out(&out);
    }
    flush_out(&out);
    if (fflush(stdout) != 0) die("cannot write standard output: %s", strerror(errno));
    reader_close(&r);
    free(text.p); free(out.p);
    return 0;
}

// byte260_encode: the official pure-byte tokenizer: each UTF-8 byte + 4; a malformed byte (left in only
// under --invalid-utf8 replace) becomes the bytes of U+FFFD.
static void byte260_encode(const char *s, size_t n, Ids *out) {
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        int l = utf8_valid_len(u + i, n - i);
        if (!l) { for (int k = 0; k < 3; k++) ids_push(out, 4 + (uint8_t)REPLACEMENT_CHAR[k]); i++; continue; }
        for (int k = 0; k < l; k++) ids_push(out, 4 + u[i + k]);
        i += (size_t)l;
    }
}

static int cmd_shards(void) {
    Model m;
    int have_model = g_args.model != NULL;
    if (have_model == g_args.byte260) usage_error("shards", "%s", "shards needs exactly one of --model M or --byte260");
    if (!g_args.out) usage_error("shards", "%s", "shards needs --out DIR");
    if (!g_args.nfiles) usage_error("shards", "%s", "shards needs at least one input FILE (or - for stdin)");
    int format = parse_choice("shards", "--format", g_args.format, FORMAT_NAMES, FMT_AUTO);
    int replace = parse_choice("shards", "--invalid-utf8", g_args.invalid_utf8, UTF8_NAMES, 0);
    int empty = parse_choice("shards", "--empty", g_args.empty, EMPTY_NAMES, EMPTY_ERROR);
    check_caseops_flags("shards", replace);
    long long val_docs = parse_count("shards", "--val-docs", g_args.val_docs, 0, 0, LLONG_MAX);
    long long shard_tokens = parse_count("shards", "--shard-tokens", g_args.shard_tokens, 100000000, 1, 0x7FFFFFFFLL);   // the int32 header count
    int bos = 1;
    Encoder e;
    if (have_model) {
        model_load(&m, g_args.model);
        if (m.v.n > 65536) die("model '%s' has %d pieces: shard tokens are uint16, so the vocabulary must be at most 65536", m.path, m.v.n);
        if (m.bos_id < 0) die("model '%s' has no BOS piece ('%s' as a control piece); shards put a BOS before every document", m.path, m.bos_piece);
        bos = m.bos_id;
        encoder_init(&e, &m);
        e.spans = g_args.caseops;   // the val tokens' surfaces
    }
    for (int i = 0; i < g_args.nfiles; i++) {   // fail early on unreadable inputs, and on an input the run would replace
        const char *path = g_args.files[i], *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
        if (strcmp(path, "-") == 0) continue;
        fclose(input_open(path));
        char final[4096];
        snprintf(final, sizeof(final), "%s/%s", g_args.out, base);
        if (is_shard_name(base) && same_file(path, final)) die("input '%s' is a shard of the output folder '%s': the run would replace it", path, g_args.out);
    }
    prepare_out_dir(g_args.out, g_args.force);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    static ShardWriter val, train, val_bytes;   // val_bytes: the --caseops sidecar, cut where val is
    val.dir = train.dir = val_bytes.dir = g_args.out;
    val.split = "val"; train.split = "train"; val_bytes.split = "val_bytes";
    val.cap = train.cap = val_bytes.cap = (uint64_t)shard_tokens;
    Ids ids = {0}, counts = {0};
    Buf text = {0}, scratch = {0};
    long long docs = 0, skipped = 0;
    double bytes = 0, val_text_bytes = 0, t0 = now_s(), last = t0;   // val_text_bytes: the sidecar's sum
    for (int fi = 0; fi < g_args.nfiles; fi++) {
        DocReader r;
        reader_open(&r, g_args.files[fi], format);
        while (reader_next(&r)) {
            check_utf8(&r, replace);
            ids.n = 0;
            ids_push(&ids, bos);
            if (g_args.caseops) { text.n = 0; caseops_encode(r.doc.p, r.doc.n, &text); encode(&e, text.p, text.n, &ids); }
            else if (have_model) encode(&e, r.doc.p, r.doc.n, &ids);
            else byte260_encode(r.doc.p, r.doc.n, &ids);
            if (ids.n == 1) {
                if (empty == EMPTY_ERROR)
                    die("%s:%ld: empty document (no tokens)\n  hint: pass --empty skip to drop such documents or --empty keep to write a lone BOS", r.path, r.doc_line);
                if (empty == EMPTY_SKIP) { skipped++; continue; }
            }
            if (g_args.caseops && docs < val_docs) {   // the sidecar: BOS 0, then each token's original bytes
                counts.n = 0;
                ids_push(&counts, 0);
                const char *bad = caseops_token_bytes(&e, text.p, &counts, &scratch);
                if (bad) die("%s:%ld: internal error: the document's CaseOps tokens do not decode (%s)", r.path, r.doc_line, bad);
                for (size_t k = 0; k < counts.n; k++) {
                    if (counts.p[k] > 65535)
                        die("%s:%ld: token %zu of the document stands for %d bytes of text, more than a uint16 sidecar entry holds", r.path, r.doc_line, k, counts.p[k]);
                    val_text_bytes += counts.p[k];
                }
                shard_put(&val_bytes, counts.p, counts.n);
            }
            shard_put(docs < val_docs ? &val : &train, ids.p, ids.n);
            docs++;
            bytes += (double)r.doc.n;
            if ((docs & 255) == 0 && !g_args.quiet) {
                double t = now_s();
                if (t - last > 5.0) {
                    fprintf(stderr, "tokenize: %lld docs, %.1fM tokens, %.1f MB text, %.1f MB/s\n", docs,
                            (double)(val.total + train.total) / 1e6, bytes / 1e6, bytes / 1e6 / (t - t0));
                    last = t;
                }
            }
        }
        reader_close(&r);
    }
    shard_close(&val);
    shard_close(&train);
    shard_close(&val_bytes);
    shards_commit(g_args.quiet);
    warn_stale_shards(g_args.out, val.index, train.index, val_bytes.index);
    if (docs < val_docs) warn("only %lld documents, fewer than --val-docs %lld: all of them went to val, none to train", docs, val_docs);
    if (skipped) warn("skipped %lld empty documents", skipped);
    if (!g_args.quiet)
        fprintf(stderr, "tokenize: %lld documents (%lld val, %lld train), %llu val + %llu train tokens in %d + %d files, %.1f s\n",
                docs, docs < val_docs ? docs : val_docs, docs < val_docs ? 0 : docs - val_docs, (unsigned long long)val.total,
                (unsigned long long)train.total, val.index, train.index, now_s() - t0);
    if (g_args.caseops && !g_args.quiet)
        fprintf(stderr, "tokenize: CaseOps byte sidecar: %d files, %.0f bytes of original text over the %llu val tokens\n", val_bytes.index,
                val_text_bytes, (unsigned long long)val.total);
    free(ids.p); free(counts.p); free(text.p); free(scratch.p);
    if (have_model) { encoder_free(&e); sp_model_free(&m); }
    return 0;
}

static int cmd_lut(void) {
    Model m;
    int have_model = g_args.model != NULL;
    if (have_model == g_args.byte260) usage_error("lut", "%s", "lut needs exactly one of --model M or --byte260");
    if (g_args.nfiles) usage_error("lut", "unexpected argument '%s'", g_args.files[0]);
    int min_size = (int)parse_count("lut", "--vocab-size", g_args.vocab_size, 0, 0, 1 << 24);
    Pieces b260;
    if (have_model) model_load(&m, g_args.model);
    else pieces_byte260(&b260);
    ByteLut t;
    byte_lut_build(&t, have_model ? &m.v : &b260, min_size);
    Buf out = {0};
    char head[512];
    snprintf(head, sizeof(head), "# val_bpb byte tables of %s: %d ids\n# id base_bytes has_leading_space is_boundary\n", have_model ? m.path : "byte260", t.n);
    buf_put(&out, head, strlen(head));
    for (int id = 0; id < t.n; id++) {
        put_int(&out, id); buf_putc(&out, ' ');
        put_int(&out, t.base_bytes[id]); buf_putc(&out, ' ');
        put_int(&out, t.has_leading_space[id]); buf_putc(&out, ' ');
        put_int(&out, t.is_boundary[id]); buf_putc(&out, '\n');
    }
    flush_out(&out);
    free(out.p);
    byte_lut_free(&t);
    if (have_model) sp_model_free(&m);
    else pieces_free(&b260);
    return 0;
}

static int cmd_info(void) {
    Model m;
    need_model("info", &m);
    if (g_args.nfiles) usage_error("info", "unexpected argument '%s'", g_args.files[0]);
    int count[7] = {0};
    for (int i = 0; i < m.v.n; i++) count[m.v.type[i]]++;
    printf("model        %s\n", m.path);
    printf("vocab_size   %d (", m.v.n);
    for (int t = 1; t <= 6; t++) printf("%s%d %s", t > 1 ? ", " : "", count[t], PIECE_TYPE_NAME[t]);
    printf(")\n");
    printf("model_type   bpe\n");
    printf("special ids  unk %d, bos %d, eos %d, pad %d\n", m.unk_id, m.bos_id, m.eos_id, m.pad_id);
    printf("trainer      byte_fallback %d, split_digits %d, split_by_whitespace %d, treat_whitespace_as_suffix %d\n",
           m.byte_fallback, m.split_digits, m.split_by_whitespace, m.treat_ws_suffix);
    printf("normalizer   %s: add_dummy_prefix %d, remove_extra_whitespaces %d, escape_whitespaces %d, charsmap %zu bytes (%zu trie units)\n",
           m.norm_name ? m.norm_name : "(unnamed)", m.add_dummy_prefix, m.remove_extra_ws, m.escape_ws, m.charsmap_len, m.trie_n);
    printf("encoder      longest piece %d bytes, %s\n", m.max_piece_len,
           m.word_split ? "words encoded independently (cached)" : "whole-text merges (no word cache)");
    printf("shards       %s\n", m.v.n <= 65536 ? "ok (ids fit uint16)" : "vocabulary too large for uint16 shards");
    sp_model_free(&m);
    return 0;
}

#ifndef TOKENIZE_NO_MAIN
int main(int argc, char **argv) {
    g_golf_prog = "tokenize";
    if (argc < 2) { usage(stderr, NULL); return 2; }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) { usage(stdout, NULL); return 0; }
    size_t c;
    for (c = 0; c < sizeof(COMMANDS) / sizeof(COMMANDS[0]); c++) if (strcmp(cmd, COMMANDS[c].name) == 0) break;
    if (c == sizeof(COMMANDS) / sizeof(COMMANDS[0])) usage_error(NULL, "unknown command '%s'", cmd);
    parse_args(cmd, argc - 2, argv + 2);
    if (strcmp(cmd, "encode") == 0) return cmd_encode();
    if (strcmp(cmd, "decode") == 0) return cmd_decode();
    if (strcmp(cmd, "shards") == 0) return cmd_shards();
    if (strcmp(cmd, "lut") == 0) return cmd_lut();
    if (strcmp(cmd, "caseops") == 0) return cmd_caseops();
    return cmd_info();
}
#endif
