/* tinygen runtime: register access and Cortex-M core registers (no CMSIS headers). */
#ifndef TG_BOARD_H
#define TG_BOARD_H

#include <stdint.h>
#include "board_config.h"

#define TG_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* System control block and friends (Armv7-M / Armv8-M ARM, B3.2 / D1.2). */
#define TG_SCB_ICSR   TG_REG(0xE000ED04u)
#define TG_SCB_VTOR   TG_REG(0xE000ED08u)
#define TG_SCB_CCR    TG_REG(0xE000ED14u)
#define TG_SCB_CFSR   TG_REG(0xE000ED28u)
#define TG_SCB_HFSR   TG_REG(0xE000ED2Cu)
#define TG_SCB_CPACR  TG_REG(0xE000ED88u)
#define TG_SCB_CCSIDR TG_REG(0xE000ED80u)
#define TG_SCB_CSSELR TG_REG(0xE000ED84u)
#define TG_SCB_ICIALLU TG_REG(0xE000EF50u)
#define TG_SCB_DCISW  TG_REG(0xE000EF60u)

#define TG_SCB_CCR_IC (1u << 17)  /* Armv7-M CCR: instruction cache enable (Cortex-M7) */
#define TG_SCB_CCR_DC (1u << 16)  /* data cache enable */

#define TG_SYST_CSR   TG_REG(0xE000E010u)
#define TG_SYST_RVR   TG_REG(0xE000E014u)
#define TG_SYST_CVR   TG_REG(0xE000E018u)

#define TG_DEMCR      TG_REG(0xE000EDFCu)
#define TG_DWT_CTRL   TG_REG(0xE0001000u)
#define TG_DWT_CYCCNT TG_REG(0xE0001004u)
#define TG_DWT_LAR    TG_REG(0xE0001FB0u)

/* Compile-time check of a register constant against the value written down from the manual. */
#define TG_CHECK_CAT2(a, b) a##b
#define TG_CHECK_CAT(a, b) TG_CHECK_CAT2(a, b)
#define TG_CHECK(cond) typedef char TG_CHECK_CAT(tg_check_, __LINE__)[(cond) ? 1 : -1]

static inline void tg_dsb(void) { __asm volatile("dsb 0xF" ::: "memory"); }
static inline void tg_isb(void) { __asm volatile("isb 0xF" ::: "memory"); }

/* Clears, then sets, a register field. */
static inline void tg_reg_field(uint32_t addr, uint32_t mask, uint32_t value)
{
    TG_REG(addr) = (TG_REG(addr) & ~mask) | (value & mask);
}

/* Busy-waits until (reg & mask) == value. */
static inline void tg_reg_wait(uint32_t addr, uint32_t mask, uint32_t value)
{
    while ((TG_REG(addr) & mask) != value) {
    }
}

#endif /* TG_BOARD_H */
