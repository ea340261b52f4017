/* tinygen bench main: self-test of the generated model against its embedded reference.
 *
 * Serial output (one line each, "\r\n"-terminated, parsed by tinygen.qemu and the bench):
 *   TG_BOOT model=<hash> board=<name> clock=<hz>
 *   TG_COUNTER source=<dwt|systick> hz=<hz>
 *   TG_RESULT checksum=<crc32 hex> cycles=<n> match=<0|1>
 *   TG_LAYER <i> <name> <cycles>           (built with -DTG_PROFILE)
 *   TG_STACK used=<bytes> size=<bytes>
 *   TG_OK | TG_FAIL
 * Under QEMU the firmware then exits through semihosting with 0 (TG_OK) or 1. */
#include <stdint.h>
#include <string.h>
#include "board_config.h"
#include "model.h"
#include "tg_cycles.h"
#include "tg_semihost.h"
#include "tg_uart.h"

extern const int8_t tg_test_input[TG_INPUT_SIZE];
extern const int8_t tg_test_expected[TG_OUTPUT_SIZE];
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
    const uint8_t *p = (const uint8_t *)data;
    uint32_t crc = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
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

/* Runs the model once on the embedded test input; returns 0 when the output matches. */
int32_t tg_selftest(void)
{
    stack_paint();
    int32_t rc = tg_model_init();
    if (rc < 0) {
        return fail("init", rc);
    }
    tg_model_set_input(tg_test_input);
    profile_marks = 0;
    const uint32_t t0 = tg_cycles_now();
    rc = tg_model_run();
    const uint32_t t1 = tg_cycles_now();
    if (rc < 0) {
        return fail("run", rc);
    }
    static int8_t out[TG_OUTPUT_SIZE];
    tg_model_get_output(out);
    const int match = memcmp(out, tg_test_expected, TG_OUTPUT_SIZE) == 0;
    tg_uart_print("TG_RESULT checksum=");
    tg_uart_print_hex32(tg_crc32(out, TG_OUTPUT_SIZE));
    tg_uart_print(" cycles=");
    tg_uart_print_u32(t1 - t0);
    tg_uart_print(match ? " match=1\r\n" : " match=0\r\n");
    if (!match) {
        for (uint32_t i = 0; i < TG_OUTPUT_SIZE; i++) {
            if (out[i] != tg_test_expected[i]) {
                tg_uart_print("TG_MISMATCH index=");
                tg_uart_print_u32(i);
                tg_uart_print(" got=");
                tg_uart_print_i32(out[i]);
                tg_uart_print(" want=");
                tg_uart_print_i32(tg_test_expected[i]);
                tg_uart_print("\r\n");
                break;
            }
        }
    }
    if (profile_marks >= (uint32_t)TG_NUM_LAYERS + 1u) {
        for (int32_t i = 0; i < TG_NUM_LAYERS; i++) {
            tg_uart_print("TG_LAYER ");
            tg_uart_print_i32(i);
            tg_uart_print(" ");
            tg_uart_print(tg_layer_names[i]);
            tg_uart_print(" ");
            tg_uart_print_u32(profile_at[i + 1] - profile_at[i]);
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

int main(void)
{
    tg_uart_init();
    tg_cycles_init();
    tg_print_banner();
    tg_exit(tg_selftest());
}
