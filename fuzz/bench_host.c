/* tg_bench.c on the host: bytes on stdin -> replies on stdout (fake model, see bench_fake.h).
 * Usage: bench_host [input size] [output size] [MLPerf input mode 0|1|2 (int8, uint8, float32)]
 *                   [model id 1|0 (0: none)] [energy mode 0|1 (timestamps print "PULSE")].
 * Used by tests/test_bench_protocol.py and tests/test_mlperf_dut.py. */
#include <string.h>
#include "bench_fake.h"

static void out(void *ctx, const char *s, uint32_t n)
{
    (void)ctx;
    fwrite(s, 1, n, stdout);
}

static void pulse(void *ctx)
{
    (void)ctx;
    fputs("PULSE\r\n", stdout);
}

int main(int argc, char **argv)
{
    static tg_bench_t b;
    fake_t f = {0};
    f.in_size = argc > 1 ? (uint32_t)atoi(argv[1]) : 10u;
    f.out_size = argc > 2 ? (uint32_t)atoi(argv[2]) : 5u;
    f.mode = argc > 3 ? (uint8_t)atoi(argv[3]) : 0u;
    if (f.in_size == 0 || f.out_size == 0 || f.mode > 2u) {
        return 2;
    }
    f.in = (int8_t *)calloc(f.in_size, 1);
    f.db = (uint8_t *)calloc(f.in_size, f.mode == 2u ? 4u : 1u);
    f.out = (int8_t *)calloc(f.out_size, 1);
    tg_bench_config_t cfg;
    fake_config(&cfg, &f, out);
    if (argc > 4 && argv[4][0] == '0') {
        cfg.mlperf_model = 0;
    }
    if (argc > 5 && argv[5][0] == '1') {
        cfg.timestamp_pulse = pulse;
    }
    tg_bench_init(&b, &cfg);
    tg_bench_boot(&b);
    int c;
    while ((c = getchar()) != EOF) {
        tg_bench_feed(&b, (char)c);
        if (c == '\n' || c == '%') {
            fflush(stdout);
        }
    }
    free(f.db);
    free(f.in);
    free(f.out);
    return 0;
}
