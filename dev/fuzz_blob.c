/*
 * dev/fuzz_blob.c — corruption tests of golf_infer.c's blob reader.
 *
 *   fuzz_blob BLOB [N] [SEED]
 *     N (default 10000) corruptions of a valid blob, each read with blob_load():
 *       - a random byte set to a random other value: must be rejected (the CRC-32 catches every such change);
 *       - a truncation to a random length: must be rejected;
 *       - a random byte changed and the CRC recomputed, so the parser itself meets the damage: may load or
 *         be rejected, but must stay inside the buffer (build with -fsanitize=address,undefined to check).
 *     Prints the counts and exits non-zero if a flip or truncation was accepted.
 *   Built with -DFUZZ_LIBFUZZER and clang -fsanitize=fuzzer,address it is a libFuzzer target instead
 *   (input = a blob whose CRC is fixed up first, so the fuzzer explores the parser, not the checksum).
 */
#define GOLF_INFER_NO_MAIN
#include "golf_infer.c"

// load_or_reject: 1 when blob_load accepts p[0..n), 0 when it reports a problem.
static int load_or_reject(const uint8_t *p, size_t n) {
    GolfModel m;
    char why[512];
    const char *err = blob_load(&m, p, n, why, sizeof(why));
    model_free(&m);
    return err == NULL;
}

static void fix_crc(uint8_t *p, size_t n) {
    if (n < 4) return;
    uint32_t c = crc32(p, n - 4);
    for (int k = 0; k < 4; k++) p[n - 4 + k] = (uint8_t)(c >> (8 * k));
}

#ifdef FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *p = malloc(size ? size : 1);
    memcpy(p, data, size);
    fix_crc(p, size);
    load_or_reject(p, size);
    free(p);
    return 0;
}
#else
static uint64_t next(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) { fprintf(stderr, "usage: fuzz_blob BLOB [N] [SEED]\n"); return 2; }
    size_t n;
    uint8_t *blob = read_file(argv[1], &n), *p = galloc(n);
    long iters = argc > 2 ? atol(argv[2]) : 10000;
    uint64_t s = argc > 3 ? (uint64_t)atoll(argv[3]) | 1 : 88172645463325252ull;
    if (!load_or_reject(blob, n)) { fprintf(stderr, "fuzz_blob: '%s' is not a valid blob to start from\n", argv[1]); return 1; }
    long flips_accepted = 0, cuts_accepted = 0, parser_loaded = 0, parser_rejected = 0;
    for (long i = 0; i < iters; i++) {
        memcpy(p, blob, n);
        size_t at = (size_t)(next(&s) % n);
        uint8_t delta = (uint8_t)(1 + next(&s) % 255);
        switch (i % 3) {
        case 0: p[at] ^= delta; flips_accepted += load_or_reject(p, n); break;
        case 1: cuts_accepted += load_or_reject(p, at); break;
        default:
            p[at] ^= delta;
            fix_crc(p, n);
            if (load_or_reject(p, n)) parser_loaded++; else parser_rejected++;
        }
    }
    printf("fuzz_blob: %ld corruptions of %zu bytes: flips accepted %ld, truncations accepted %ld; with the CRC fixed up: %ld rejected, %ld loaded\n",
           iters, n, flips_accepted, cuts_accepted, parser_rejected, parser_loaded);
    free(blob); free(p);
    return flips_accepted || cuts_accepted ? 1 : 0;
}
#endif
