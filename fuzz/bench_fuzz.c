/* libFuzzer harness for the device-side bench protocol parser (firmware/tg_bench.c).
 * The first byte picks the input size (1..256), the rest is fed byte by byte.
 * Checks: no out-of-bounds access (ASan, exact-size heap buffers), no UB (UBSan), every
 * reply write is bounded, and the parser's line length never exceeds TG_BENCH_LINE_MAX. */
#include <stddef.h>
#include <string.h>
#include "bench_fake.h"

static void sink(void *ctx, const char *s, uint32_t n)
{
    fake_t *f = (fake_t *)ctx;
    /* Help texts are longer; the MLPerf "e-[Unknown command: ...]" echo writes the token raw, and
     * a token is at most one command line. */
    if (n > TG_BENCH_LINE_MAX + 1u && s[0] != 'U' && s[0] != 'm') {
        abort();
    }
    volatile char x = 0;
    for (uint32_t i = 0; i < n; i++) {
        x ^= s[i]; /* ASan checks every byte written is readable */
    }
    (void)x;
    f->written += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fake_t f = {0};
    f.in_size = 1u + data[0];
    f.mode = (uint8_t)(data[0] % 3u);
    f.out_size = f.mode == 2u ? f.in_size : 1u + (data[0] * 7u) % 97u; /* MSE: out = in, as ad01 */
    f.in = (int8_t *)malloc(f.in_size);
    f.db = (uint8_t *)malloc(f.in_size * (f.mode == 2u ? 4u : 1u));
    memset(f.db, 0, f.in_size * (f.mode == 2u ? 4u : 1u));
    f.out = (int8_t *)malloc(f.out_size);
    memset(f.in, 0, f.in_size);
    memset(f.out, 0, f.out_size);
    tg_bench_config_t cfg;
    fake_config(&cfg, &f, sink);
    tg_bench_t *b = (tg_bench_t *)malloc(sizeof *b);
    tg_bench_init(b, &cfg);
    tg_bench_boot(b);
    for (size_t i = 1; i < size; i++) {
        tg_bench_feed(b, (char)data[i]);
        if (b->len > TG_BENCH_LINE_MAX || b->olen >= TG_BENCH_OUT_MAX) {
            abort();
        }
    }
    tg_bench_feed(b, '\n');
    free(b);
    free(f.db);
    free(f.in);
    free(f.out);
    return 0;
}
