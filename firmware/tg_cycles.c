/* tinygen runtime: cycle counter.
 * DWT CYCCNT (Armv7-M ARM C1.8, Armv8-M ARM B14) counts core cycles on real boards.
 * QEMU does not emulate it (reads 0), so tg_cycles_init checks that it advances and
 * otherwise uses SysTick with the processor clock: a 24-bit down-counter whose wraps
 * are counted by tg_systick_handler. Under QEMU SysTick runs at the machine's
 * nominal clock, which with -icount shift=0 is a fixed number of instructions per tick. */
#include "tg_cycles.h"
#include "tg_board.h"

#define SYST_MAX 0x00FFFFFFu

static volatile uint32_t systick_wraps;
static uint8_t initialized;
static uint8_t use_dwt;

void tg_systick_handler(void)
{
    systick_wraps++;
}

void tg_cycles_init(void)
{
    if (initialized) {
        return;
    }
    initialized = 1;
#if defined(TG_CYCLES_DWT)
    TG_DEMCR |= 1u << 24;            /* TRCENA */
#if defined(__ARM_ARCH_7EM__)
    TG_DWT_LAR = 0xC5ACCE55u;        /* Cortex-M7 locks the DWT until unlocked */
#endif
    TG_DWT_CYCCNT = 0u;
    TG_DWT_CTRL |= 1u;               /* CYCCNTENA */
    uint32_t a = TG_DWT_CYCCNT;
    for (volatile uint32_t i = 0; i < 64u; i++) {
    }
    if (TG_DWT_CYCCNT != a) {
        use_dwt = 1;
        return;
    }
#endif
    TG_SYST_CSR = 0u;
    TG_SYST_RVR = SYST_MAX;
    TG_SYST_CVR = 0u;                /* any write clears the counter */
    TG_SYST_CSR = 7u;                /* CLKSOURCE = processor clock, TICKINT, ENABLE */
    /* QEMU quirk: enabling after writing 0 fires one spurious wrap. Let the counter
     * run a little, then start the wrap count from zero. */
    while (TG_SYST_CVR == 0u || TG_SYST_CVR > SYST_MAX - 4u) {
    }
    tg_dsb();
    tg_isb();
    systick_wraps = 0u;
}

uint32_t tg_cycles_now(void)
{
    if (use_dwt) {
        return TG_DWT_CYCCNT;
    }
    uint32_t hi, v;
    do {
        hi = systick_wraps;
        v = TG_SYST_CVR;
    } while (hi != systick_wraps);
    return hi * (SYST_MAX + 1u) + (SYST_MAX - v);
}

const char *tg_cycles_source(void)
{
    return use_dwt ? "dwt" : "systick";
}
