/* tg_bench.c on the host: bytes on stdin -> replies on stdout (fake model, see bench_fake.h).
 * Usage: bench_host [input size] [output size]. Used by tests/test_bench_protocol.py. */
#include <string.h>
#include "bench_fake.h"

static void out(void *ctx, const char *s, uint32_t n)
{
    (void)ctx;
    fwrite(s, 1, n, stdout);
}

int main(int argc, char **argv)
{
    static tg_bench_t b;
    fake_t f = {0};
    f.in_size = argc > 1 ? (uint32_t)atoi(argv[1]) : 10u;
    f.out_size = argc > 2 ? (uint32_t)atoi(argv[2]) : 5u;
    if (f.in_size == 0 || f.out_size == 0) {
        return 2;
    }
    f.in = (int8_t *)calloc(f.in_size, 1);
    f.out = (int8_t *)calloc(f.out_size, 1);
    tg_bench_config_t cfg;
    fake_config(&cfg, &f, out);
    tg_bench_init(&b, &cfg);
    tg_bench_boot(&b);
    int c;
    while ((c = getchar()) != EOF) {
        tg_bench_feed(&b, (char)c);
        if (c == '\n' || c == '%') {
            fflush(stdout);
        }
    }
    free(f.in);
    free(f.out);
    return 0;
}
