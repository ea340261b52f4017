/* tinygen bench main: self-test of the generated model against its embedded reference vectors.
 *
 * Serial output (one line each, "\r\n"-terminated, parsed by tinygen.qemu and the bench):
 *   TG_BOOT model=<hash> board=<name> clock=<hz>
 *   TG_COUNTER source=<dwt|systick> hz=<hz>
 *   TG_MISMATCH vector=<v> index=<i> got=<n> want=<n>   (first wrong byte of each failing vector)
 *   TG_RESULT checksum=<crc32 hex of all outputs> cycles=<n, vector 0> match=<0|1> vectors=<n> matched=<n>
 *   TG_LAYER <i> <name> <cycles>           (built with -DTG_PROFILE)
 *   TG_STACK used=<bytes> size=<bytes>
 *   TG_OK | TG_FAIL
 * Then the bench command loop (tg_bench.c, docs/bench.md) starts with its TG_BENCH banner.
 * Under QEMU the firmware instead exits through semihosting with 0 (TG_OK) or 1 (what
 * `tinygen run` expects), unless the semihosting command line holds "tg-bench" (QEMU
 * -append tg-bench, as `tinygen bench --sim` / `tinygen flash` start it).
 * -DTG_SELFTEST_EXIT=1 always exits after the self-test, =0 always enters the loop. */
#include <stdint.h>
#include <string.h>
#include "board_config.h"
#include "model.h"
#include "tg_cycles.h"
#include "tg_semihost.h"
#include "tg_uart.h"
#include "tg_bench.h"
#if defined(__has_include)
#if __has_include("tg_bench_model.h")
#include "tg_bench_model.h" /* generated (templates/tg_bench_model.h.j2): quantization, MLPerf Tiny set-up */
#endif
#endif
#ifndef TG_BENCH_OUT_SCALE
#define TG_BENCH_OUT_SCALE 1.0f
#define TG_BENCH_OUT_ZP 0
#define TG_BENCH_IN_SCALE 1.0f
#define TG_BENCH_IN_ZP 0
#endif
#ifndef TG_BENCH_MLPERF_INPUT
#define TG_BENCH_MLPERF_MODEL 0 /* no model id: profile% says how to set one */
#define TG_BENCH_MLPERF_INPUT TG_BENCH_MLPERF_IN_INT8
#define TG_BENCH_MLPERF_RESULT TG_BENCH_MLPERF_RES_VECTOR
#define TG_BENCH_DB_SIZE TG_INPUT_SIZE
#endif
#if defined(TG_MLPERF_ENERGY) && !defined(TG_TIMESTAMP_GPIO_BASE)
#error "MLPerf energy mode needs the board's timestamp pin ([mlperf] in boards/*.toml)"
#endif

extern const uint32_t tg_test_vectors;
extern const int8_t tg_test_input[][TG_INPUT_SIZE];
extern const int8_t tg_test_expected[][TG_OUTPUT_SIZE];
extern uint32_t _estack, _stack_size;

int32_t tg_selftest(void);
void tg_print_banner(void);
uint32_t tg_crc32(const void *data, uint32_t n);

#define STACK_PAINT 0xA5A5A5A5u

static uint32_t profile_at[TG_NUM_LAYERS + 1];
static uint32_t profile_marks;

void tg_profile_mark(int32_t layer)
{
    if (layer >= 0 && layer <= TG_NUM_LAYERS) {
        profile_at[layer] = tg_cycles_now();
        profile_marks++;
    }
}

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320, as zlib.crc32). */
uint32_t tg_crc32(const void *data, uint32_t n)
{
    return tg_bench_crc32(0u, data, n);
}

void tg_print_banner(void)
{
    tg_uart_print("TG_BOOT model=" TG_MODEL_HASH " board=" TG_BOARD_NAME " clock=");
    tg_uart_print_u32(TG_CLOCK_HZ);
    tg_uart_print("\r\nTG_COUNTER source=");
    tg_uart_print(tg_cycles_source());
    tg_uart_print(" hz=");
    tg_uart_print_u32(TG_CLOCK_HZ);
    tg_uart_print("\r\n");
}

/* Paints the unused part of the stack so that the high-water mark can be measured. */
static void stack_paint(void)
{
    volatile uint32_t here = 0;
    uint32_t *p = (uint32_t *)((uintptr_t)&_estack - (uintptr_t)&_stack_size);
    uint32_t *top = (uint32_t *)((uintptr_t)&here - 64u);
    while (p < top) {
        *p++ = STACK_PAINT;
    }
}

static uint32_t stack_used(void)
{
    const uint32_t *bottom = (const uint32_t *)((uintptr_t)&_estack - (uintptr_t)&_stack_size);
    const uint32_t *p = bottom;
    while (p < (const uint32_t *)&_estack && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

static int32_t fail(const char *what, int32_t rc)
{
    tg_uart_print("TG_ERROR ");
    tg_uart_print(what);
    tg_uart_print("=");
    tg_uart_print_i32(rc);
    tg_uart_print("\r\nTG_FAIL\r\n");
    return 1;
}

static void print_mismatch(uint32_t v, const int8_t *out, const int8_t *want)
{
    for (uint32_t i = 0; i < TG_OUTPUT_SIZE; i++) {
        if (out[i] != want[i]) {
            tg_uart_print("TG_MISMATCH vector=");
            tg_uart_print_u32(v);
            tg_uart_print(" index=");
            tg_uart_print_u32(i);
            tg_uart_print(" got=");
            tg_uart_print_i32(out[i]);
            tg_uart_print(" want=");
            tg_uart_print_i32(want[i]);
            tg_uart_print("\r\n");
            return;
        }
    }
}

/* Runs the model on every embedded test vector; returns 0 when all outputs match.
 * The checksum is the CRC-32 of all outputs in vector order; cycles and TG_LAYER lines are
 * those of vector 0. */
int32_t tg_selftest(void)
{
    static uint32_t first_profile[TG_NUM_LAYERS + 1];
    static int8_t out[TG_OUTPUT_SIZE];
    uint32_t crc = 0u, matched = 0u, cycles = 0u, profiled = 0u;
    stack_paint();
    int32_t rc = tg_model_init();
    if (rc < 0) {
        return fail("init", rc);
    }
    for (uint32_t v = 0; v < tg_test_vectors; v++) {
        tg_model_set_input(tg_test_input[v]);
        profile_marks = 0;
        const uint32_t t0 = tg_cycles_now();
        rc = tg_model_run();
        const uint32_t t1 = tg_cycles_now();
        if (rc < 0) {
            return fail("run", rc);
        }
        tg_model_get_output(out);
        crc = tg_bench_crc32(crc, out, TG_OUTPUT_SIZE);
        if (memcmp(out, tg_test_expected[v], TG_OUTPUT_SIZE) == 0) {
            matched++;
        } else {
            print_mismatch(v, out, tg_test_expected[v]);
        }
        if (v == 0u) {
            cycles = t1 - t0;
            profiled = profile_marks >= (uint32_t)TG_NUM_LAYERS + 1u;
            memcpy(first_profile, profile_at, sizeof first_profile);
        }
    }
    const int match = matched == tg_test_vectors && tg_test_vectors > 0u;
    tg_uart_print("TG_RESULT checksum=");
    tg_uart_print_hex32(crc);
    tg_uart_print(" cycles=");
    tg_uart_print_u32(cycles);
    tg_uart_print(match ? " match=1" : " match=0");
    tg_uart_print(" vectors=");
    tg_uart_print_u32(tg_test_vectors);
    tg_uart_print(" matched=");
    tg_uart_print_u32(matched);
    tg_uart_print("\r\n");
    if (profiled) {
        for (int32_t i = 0; i < TG_NUM_LAYERS; i++) {
            tg_uart_print("TG_LAYER ");
            tg_uart_print_i32(i);
            tg_uart_print(" ");
            tg_uart_print(tg_layer_names[i]);
            tg_uart_print(" ");
            tg_uart_print_u32(first_profile[i + 1] - first_profile[i]);
            tg_uart_print("\r\n");
        }
    }
    tg_uart_print("TG_STACK used=");
    tg_uart_print_u32(stack_used());
    tg_uart_print(" size=");
    tg_uart_print_u32((uint32_t)(uintptr_t)&_stack_size);
    tg_uart_print(match ? "\r\nTG_OK\r\n" : "\r\nTG_FAIL\r\n");
    return match ? 0 : 1;
}

/* ---- bench command loop (tg_bench.c) ---- */

static int8_t bench_input[TG_INPUT_SIZE];
static int8_t bench_output[TG_OUTPUT_SIZE];
static uint8_t bench_db[TG_BENCH_DB_SIZE]; /* MLPerf db buffer: raw bytes as the runner sends them */
static uint8_t bench_profiled;

static void bench_write(void *ctx, const char *s, uint32_t n)
{
    (void)ctx;
    tg_uart_write(s, n);
}

static int32_t bench_infer(void *ctx, uint32_t *cycles)
{
    (void)ctx;
    tg_model_set_input(bench_input);
    profile_marks = 0;
    const uint32_t t0 = tg_cycles_now();
    const int32_t rc = tg_model_run();
    const uint32_t t1 = tg_cycles_now();
    *cycles = t1 - t0;
    bench_profiled = profile_marks >= (uint32_t)TG_NUM_LAYERS + 1u;
    tg_model_get_output(bench_output);
    return rc;
}

static int32_t bench_layer(void *ctx, uint32_t layer, uint32_t *cycles)
{
    (void)ctx;
    if (!bench_profiled || layer >= (uint32_t)TG_NUM_LAYERS) {
        return -1;
    }
    *cycles = profile_at[layer + 1u] - profile_at[layer];
    return 0;
}

/* Microseconds since boot from the 32-bit counter, extended to 64 bits (call at least once
 * per counter wrap: 25 s at 168 MHz). */
static uint32_t bench_time_us(void *ctx)
{
    static uint64_t ticks;
    static uint32_t last;
    (void)ctx;
    const uint32_t now = tg_cycles_now();
    ticks += (uint32_t)(now - last);
    last = now;
    return (uint32_t)(ticks / (TG_CLOCK_HZ / 1000000u ? TG_CLOCK_HZ / 1000000u : 1u));
}

#if defined(TG_MLPERF_ENERGY)
static void bench_timestamp_pulse(void *ctx)
{
    (void)ctx;
    tg_timestamp_pulse();
}
#endif

#if TG_EMULATED
/* SYS_GET_CMDLINE (0x15): QEMU passes the -kernel file name and -append text. */
static int semihost_cmdline_has(const char *word)
{
    static char buf[1024];
    volatile uint32_t block[2] = {(uint32_t)(uintptr_t)buf, sizeof buf - 1u};
    register uint32_t r0 __asm("r0") = 0x15u;
    register volatile uint32_t *r1 __asm("r1") = block;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    if (r0 != 0u) {
        return 0;
    }
    buf[sizeof buf - 1u] = 0;
    for (const char *p = buf; *p; p++) {
        const char *a = p, *w = word;
        while (*w && *a == *w) {
            a++;
            w++;
        }
        if (!*w) {
            return 1;
        }
    }
    return 0;
}
#endif

static int selftest_exits(void)
{
#if defined(TG_SELFTEST_EXIT)
    return TG_SELFTEST_EXIT;
#elif TG_EMULATED
    return !semihost_cmdline_has("tg-bench");
#else
    return 0;
#endif
}

static void bench_loop(void) __attribute__((noreturn));
static void bench_loop(void)
{
    static tg_bench_t bench;
    static const tg_bench_config_t cfg = {
        .ctx = 0,
        .write = bench_write,
        .infer = bench_infer,
        .layer_cycles = bench_layer,
        .time_us = bench_time_us,
        .model_hash = TG_MODEL_HASH,
        .board = TG_BOARD_NAME,
        .counter = "",
        .mlperf_model = TG_BENCH_MLPERF_MODEL,
#if defined(TG_MLPERF_ENERGY)
        .timestamp_pulse = bench_timestamp_pulse,
#else
        .timestamp_pulse = 0,
#endif
        .mlperf_input = TG_BENCH_MLPERF_INPUT,
        .mlperf_result = TG_BENCH_MLPERF_RESULT,
        .db = bench_db,
        .db_capacity = TG_BENCH_DB_SIZE,
        .in_scale = TG_BENCH_IN_SCALE,
        .in_zp = TG_BENCH_IN_ZP,
        .clock_hz = TG_CLOCK_HZ,
        .in_size = TG_INPUT_SIZE,
        .out_size = TG_OUTPUT_SIZE,
        .num_layers = TG_NUM_LAYERS,
        .input = bench_input,
        .output = bench_output,
        .out_scale = TG_BENCH_OUT_SCALE,
        .out_zp = TG_BENCH_OUT_ZP,
    };
    static tg_bench_config_t live;
    live = cfg;
    live.counter = tg_cycles_source();
    (void)tg_model_init();
#if defined(TG_MLPERF_ENERGY)
    tg_timestamp_init();
#endif
    memcpy(bench_input, tg_test_input[0], TG_INPUT_SIZE);
    tg_bench_init(&bench, &live);
    (void)bench_time_us(0);
    tg_bench_boot(&bench);
    for (;;) {
        int32_t c;
        if (tg_uart_getc_timeout(&c, 1000u) == 0) {
            tg_bench_feed(&bench, (char)c);
        }
    }
}

int main(void)
{
    tg_uart_init();
    tg_cycles_init();
    tg_print_banner();
    const int32_t rc = tg_selftest();
    if (selftest_exits()) {
        tg_exit(rc);
    }
    bench_loop();
}
