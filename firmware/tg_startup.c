/* tinygen runtime: vector table, reset, clock set-up and fault reporting (no HAL).
 * Reset: FPU on, .data copied from flash, .bss zeroed, VTOR set, board clock raised
 * to full speed (real boards only), main(). Every fault or unexpected interrupt prints
 * "TG_FAULT ..." on the UART and ends (semihosting exit code 3 under QEMU). */
#include <stdint.h>
#include "tg_board.h"
#include "tg_cycles.h"
#include "tg_semihost.h"
#include "tg_uart.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void tg_reset_handler(void) __attribute__((noreturn));
void tg_fault_handler(void);
void tg_fault_report(const uint32_t *frame, uint32_t exc_return) __attribute__((noreturn, used));
void tg_clock_init(void);

#define TG_FAULT_EXIT_CODE 3

typedef void (*tg_vector_t)(void);

__attribute__((section(".isr_vector"), used))
const tg_vector_t tg_vectors[16 + TG_NUM_IRQS] = {
    [0] = (tg_vector_t)(uintptr_t)&_estack,
    [1] = tg_reset_handler,
    [2] = tg_fault_handler,          /* NMI */
    [3] = tg_fault_handler,          /* HardFault */
    [4] = tg_fault_handler,          /* MemManage */
    [5] = tg_fault_handler,          /* BusFault */
    [6] = tg_fault_handler,          /* UsageFault */
    [7] = tg_fault_handler,          /* SecureFault (Armv8-M), reserved otherwise */
    [11] = tg_fault_handler,         /* SVCall */
    [12] = tg_fault_handler,         /* DebugMonitor */
    [14] = tg_fault_handler,         /* PendSV */
    [15] = tg_systick_handler,
    [16 ... 16 + TG_NUM_IRQS - 1] = tg_fault_handler,
};

void tg_reset_handler(void)
{
    /* FPU first: compiled code may use FP registers (Armv7-M ARM B3.2.20, CPACR CP10/CP11). */
#if defined(__ARM_FP)
    TG_SCB_CPACR |= 0xFu << 20;
    tg_dsb();
    tg_isb();
#endif
    for (volatile uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (volatile uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
    TG_SCB_VTOR = (uint32_t)(uintptr_t)tg_vectors;
    TG_SCB_CCR |= 1u << 4;           /* DIV_0_TRP: integer division by zero faults */
    tg_dsb();
    tg_isb();
    tg_clock_init();
    (void)main();
    tg_exit(1);
}

/* Picks the stacked frame (MSP or PSP, EXC_RETURN bit 2) and reports it. */
__attribute__((naked)) void tg_fault_handler(void)
{
    __asm volatile(
        "tst lr, #4      \n"
        "ite eq          \n"
        "mrseq r0, msp   \n"
        "mrsne r0, psp   \n"
        "mov r1, lr      \n"
        "b tg_fault_report \n");
}

void tg_fault_report(const uint32_t *frame, uint32_t exc_return)
{
    const uint32_t exc = TG_SCB_ICSR & 0x1FFu; /* VECTACTIVE */
    tg_uart_init();
    tg_uart_print("\r\nTG_FAULT exc=");
    tg_uart_print_u32(exc);
    tg_uart_print(" pc=");
    tg_uart_print_hex32(frame[6]);
    tg_uart_print(" lr=");
    tg_uart_print_hex32(frame[5]);
    tg_uart_print(" cfsr=");
    tg_uart_print_hex32(TG_SCB_CFSR);
    tg_uart_print(" hfsr=");
    tg_uart_print_hex32(TG_SCB_HFSR);
    tg_uart_print(" exc_return=");
    tg_uart_print_hex32(exc_return);
    tg_uart_print("\r\nTG_FAIL\r\n");
    tg_exit(TG_FAULT_EXIT_CODE);
}

/* ------------------------------------------------------------------------------------
 * Clock set-up to the board's full speed, register level. These paths cannot be tested
 * under emulation: each step cites the reference manual section it follows. Emulated
 * boards (TG_CLOCK_INIT_NONE) run at QEMU's fixed clock and skip all of it. */

#if defined(TG_CLOCK_INIT_STM32U5)
/* STM32U575, RM0456: MSIS 4 MHz (reset) -> PLL1 (M=1, N=80, R=2) = 160 MHz,
 * voltage range 1 with EPOD boost, 4 flash wait states. */
#define RCC 0x46020C00u
#define PWR 0x46020800u
#define FLASH_ACR 0x40022000u          /* FLASH_BASE_NS = AHB1 0x40020000 + 0x2000 */
#define FLASH_ACR_LATENCY 0xFu         /* [3:0] wait states */
#define FLASH_ACR_PRFTEN (1u << 8)     /* prefetch */
#define ICACHE_CR 0x40030400u          /* ICACHE_BASE_NS = AHB1 0x40020000 + 0x10400 */
#define ICACHE_SR (ICACHE_CR + 0x04u)
#define ICACHE_CR_EN (1u << 0)         /* CR.WAYSEL (bit 2) resets to 1: 2-way, kept */
#define ICACHE_SR_BUSYF (1u << 0)      /* the invalidation launched at reset is still running */
TG_CHECK(FLASH_ACR_PRFTEN == 0x100u && ICACHE_CR_EN == 1u && ICACHE_SR == 0x40030404u);
/* Code runs from flash through the 8 KB instruction cache (ICACHE), which is off after reset:
 * without it every fetch waits the 4 flash wait states. Wait for the reset-time invalidation
 * to finish (SR.BUSYF = 0), then enable. */
static void u5_icache_on(void)
{
    tg_reg_wait(ICACHE_SR, ICACHE_SR_BUSYF, 0u);
    TG_REG(ICACHE_CR) |= ICACHE_CR_EN;
    tg_dsb();
    tg_isb();
}
void tg_clock_init(void)
{
    TG_REG(RCC + 0x094u) |= 1u << 2;                        /* AHB3ENR.PWREN (11.8.32) */
    (void)TG_REG(RCC + 0x094u);
    /* PLL1 source MSIS, input 4 MHz (range 4-8 MHz), M = 1, EPOD prescaler 1 (11.8.10);
     * must precede BOOSTEN (10.5.4 "EPOD boost"). */
    TG_REG(RCC + 0x028u) = (1u << 0) | (0u << 2) | (0u << 8) | (0u << 12) | (1u << 18); /* PLL1REN */
    TG_REG(RCC + 0x034u) = (79u << 0) | (1u << 9) | (1u << 16) | (1u << 24);  /* N=80 P=Q=R=2 (11.8.13) */
    /* Range 1 + boost (PWR_VOSR, 10.10.4), wait VOSRDY and BOOSTRDY. */
    tg_reg_field(PWR + 0x00Cu, (3u << 16) | (1u << 18), (3u << 16) | (1u << 18));
    tg_reg_wait(PWR + 0x00Cu, (1u << 15) | (1u << 14), (1u << 15) | (1u << 14));
    /* LATENCY = 4 WS (7.3.3, table 54) before the clock rises; prefetch on */
    tg_reg_field(FLASH_ACR, FLASH_ACR_LATENCY | FLASH_ACR_PRFTEN, 4u | FLASH_ACR_PRFTEN);
    tg_reg_wait(FLASH_ACR, FLASH_ACR_LATENCY, 4u);
    TG_REG(RCC + 0x000u) |= 1u << 24;                       /* CR.PLL1ON */
    tg_reg_wait(RCC + 0x000u, 1u << 25, 1u << 25);          /* PLL1RDY */
    /* > 80 MHz: switch with AHB / 2 for at least 1 us, then / 1 (11.4.10). */
    tg_reg_field(RCC + 0x020u, 0xFu, 8u);                   /* CFGR2.HPRE = /2 */
    tg_reg_field(RCC + 0x01Cu, 3u, 3u);                     /* CFGR1.SW = PLL1 */
    tg_reg_wait(RCC + 0x01Cu, 3u << 2, 3u << 2);
    for (volatile uint32_t i = 0; i < 200u; i++) {
    }
    tg_reg_field(RCC + 0x020u, 0xFu, 0u);                   /* HPRE = /1 */
    u5_icache_on();
}
#elif defined(TG_CLOCK_INIT_STM32L4P)
/* STM32L4R5, RM0432: MSI 4 MHz (reset) -> PLL (M=1, N=60, R=2) = 120 MHz in
 * range 1 boost mode, 5 flash wait states; VDDIO2 on for port G (LPUART1 pins). */
#define RCC 0x40021000u
#define PWR 0x40007000u
#define FLASH_ACR 0x40022000u          /* FLASH_R_BASE = AHB1 0x40020000 + 0x2000 */
#define L4_ACR_PRFTEN (1u << 8)
#define L4_ACR_ICEN (1u << 9)
#define L4_ACR_DCEN (1u << 10)
TG_CHECK((L4_ACR_PRFTEN | L4_ACR_ICEN | L4_ACR_DCEN) == 0x700u);
void tg_clock_init(void)
{
    TG_REG(RCC + 0x058u) |= 1u << 28;                       /* APB1ENR1.PWREN (6.4.19) */
    (void)TG_REG(RCC + 0x058u);
    TG_REG(PWR + 0x004u) |= 1u << 9;                        /* CR2.IOSV: VDDIO2 valid (5.4.2) */
    tg_reg_field(PWR + 0x080u, 1u << 8, 0u);                /* CR5.R1MODE = 0: boost (5.4.21) */
    tg_reg_wait(PWR + 0x014u, 1u << 10, 0u);                /* SR2.VOSF */
    /* ART: LATENCY = 5 WS (120 MHz, range 1), PRFTEN (8), ICEN (9), DCEN (10) (RM0432 FLASH_ACR) */
    tg_reg_field(FLASH_ACR, 0xFu | L4_ACR_PRFTEN | L4_ACR_ICEN | L4_ACR_DCEN,
                 5u | L4_ACR_PRFTEN | L4_ACR_ICEN | L4_ACR_DCEN);
    tg_reg_wait(FLASH_ACR, 0xFu, 5u);
    /* PLLSRC = MSI, PLLM = 1, PLLN = 60, PLLR = 2, PLLREN (6.4.4) */
    TG_REG(RCC + 0x00Cu) = (1u << 0) | (0u << 4) | (60u << 8) | (0u << 25) | (1u << 24);
    TG_REG(RCC + 0x000u) |= 1u << 24;                       /* CR.PLLON */
    tg_reg_wait(RCC + 0x000u, 1u << 25, 1u << 25);          /* PLLRDY */
    /* > 80 MHz in boost mode: AHB / 2 for at least 1 us around the switch (6.2.7). */
    tg_reg_field(RCC + 0x008u, 0xFu << 4, 8u << 4);         /* CFGR.HPRE = /2 */
    tg_reg_field(RCC + 0x008u, 3u, 3u);                     /* CFGR.SW = PLL */
    tg_reg_wait(RCC + 0x008u, 3u << 2, 3u << 2);
    for (volatile uint32_t i = 0; i < 200u; i++) {
    }
    tg_reg_field(RCC + 0x008u, 0xFu << 4, 0u);              /* HPRE = /1 */
}
#elif defined(TG_CLOCK_INIT_STM32F4)
/* STM32F446, RM0390: HSI 16 MHz -> PLL (M=8, N=180, P=2) = 180 MHz with voltage
 * scale 1 and over-drive, 5 flash wait states, APB1 = 45 MHz, APB2 = 90 MHz. */
#define RCC 0x40023800u
#define PWR 0x40007000u
#define FLASH_ACR 0x40023C00u          /* FLASH_R_BASE = AHB1 0x40020000 + 0x3C00 */
#define F4_ACR_PRFTEN (1u << 8)
#define F4_ACR_ICEN (1u << 9)
#define F4_ACR_DCEN (1u << 10)
#define F4_ACR_ICRST (1u << 11)
#define F4_ACR_DCRST (1u << 12)
TG_CHECK((F4_ACR_PRFTEN | F4_ACR_ICEN | F4_ACR_DCEN) == 0x700u && (F4_ACR_ICRST | F4_ACR_DCRST) == 0x1800u);
void tg_clock_init(void)
{
    TG_REG(RCC + 0x040u) |= 1u << 28;                       /* APB1ENR.PWREN (6.3.13) */
    (void)TG_REG(RCC + 0x040u);
    tg_reg_field(PWR + 0x000u, 3u << 14, 3u << 14);         /* CR.VOS = scale 1, PLL off (5.4.1) */
    /* PLLM = 8, PLLN = 180, PLLP = 2, source HSI, PLLQ = 8, PLLR = 2 (6.3.2) */
    TG_REG(RCC + 0x004u) = 8u | (180u << 6) | (0u << 16) | (0u << 22) | (8u << 24) | (2u << 28);
    TG_REG(RCC + 0x000u) |= 1u << 24;                       /* CR.PLLON */
    tg_reg_wait(RCC + 0x000u, 1u << 25, 1u << 25);
    TG_REG(PWR + 0x000u) |= 1u << 16;                       /* over-drive: ODEN, ODRDY (5.1.4) */
    tg_reg_wait(PWR + 0x004u, 1u << 16, 1u << 16);
    TG_REG(PWR + 0x000u) |= 1u << 17;                       /* ODSWEN, ODSWRDY */
    tg_reg_wait(PWR + 0x004u, 1u << 17, 1u << 17);
    /* ART accelerator: flush both caches while they are off (ICRST 11, DCRST 12), then
     * 5 WS (180 MHz at 2.7-3.6 V), PRFTEN (8), ICEN (9), DCEN (10) (3.8.1 FLASH_ACR). */
    TG_REG(FLASH_ACR) = F4_ACR_ICRST | F4_ACR_DCRST;
    TG_REG(FLASH_ACR) = 5u | F4_ACR_PRFTEN | F4_ACR_ICEN | F4_ACR_DCEN;
    tg_reg_wait(FLASH_ACR, 0xFu, 5u);
    /* HPRE /1, PPRE1 /4, PPRE2 /2, SW = PLL (6.3.3) */
    tg_reg_field(RCC + 0x008u, (0xFu << 4) | (7u << 10) | (7u << 13), (5u << 10) | (4u << 13));
    tg_reg_field(RCC + 0x008u, 3u, 2u);
    tg_reg_wait(RCC + 0x008u, 3u << 2, 2u << 2);
}
#elif defined(TG_CLOCK_INIT_STM32H7)
/* STM32H743 (revision V), RM0433: LDO supply, VOS0, HSI 64 MHz -> PLL1 (M=4, N=60,
 * P=2) = 480 MHz, AHB 240 MHz, APBx 120 MHz, 4 flash wait states; I- and D-cache on. */
#define RCC 0x58024400u
#define PWR 0x58024800u
#define SYSCFG_PWRCR 0x5800042Cu
#define FLASH_ACR 0x52002000u          /* FLASH_R_BASE = D1 AHB1 0x52000000 + 0x2000 */
/* No ART on the H7: the core's own L1 caches (16 KB I, 16 KB D) do the job; CCR.IC (17), CCR.DC (16). */
TG_CHECK(TG_SCB_CCR_IC == (1u << 17) && TG_SCB_CCR_DC == (1u << 16));
static void h7_caches_on(void)
{
    /* Armv7-M ARM B2.2.7: invalidate, then enable. */
    tg_dsb();
    TG_SCB_ICIALLU = 0u;
    tg_dsb();
    tg_isb();
    TG_SCB_CCR |= TG_SCB_CCR_IC;
    TG_SCB_CSSELR = 0u;                                     /* level 1 data cache */
    tg_dsb();
    const uint32_t ccsidr = TG_SCB_CCSIDR;
    const uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u, ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    for (uint32_t s = 0; s < sets; s++) {
        for (uint32_t w = 0; w < ways; w++) {
            TG_SCB_DCISW = (s << 5) | (w << 30);            /* 32-byte lines, 4 ways (M7) */
        }
    }
    tg_dsb();
    TG_SCB_CCR |= TG_SCB_CCR_DC;
    tg_dsb();
    tg_isb();
}
void tg_clock_init(void)
{
    /* Supply: LDO, no bypass, no SMPS (PWR_CR3, 6.8.4; write once after reset). */
    tg_reg_field(PWR + 0x00Cu, 7u, 1u << 1);
    tg_reg_wait(PWR + 0x004u, 1u << 13, 1u << 13);          /* CSR1.ACTVOSRDY */
    tg_reg_field(PWR + 0x018u, 3u << 14, 3u << 14);         /* D3CR.VOS = VOS1 (6.8.9) */
    tg_reg_wait(PWR + 0x018u, 1u << 13, 1u << 13);
    TG_REG(RCC + 0x0F4u) |= 1u << 1;                        /* APB4ENR.SYSCFGEN (8.7.45) */
    (void)TG_REG(RCC + 0x0F4u);
    TG_REG(SYSCFG_PWRCR) |= 1u;                             /* ODEN: VOS0 (6.6.2, 12.3.6) */
    tg_reg_wait(PWR + 0x018u, 1u << 13, 1u << 13);
    TG_REG(FLASH_ACR) = 4u | (2u << 4);                     /* 4 WS, WRHIGHFREQ = 2 (4.9.1, table 17) */
    tg_reg_wait(FLASH_ACR, 0xFu, 4u);
    TG_REG(RCC + 0x028u) = (0u << 0) | (4u << 4);           /* PLLCKSELR: HSI, DIVM1 = 4 (8.7.11) */
    /* PLL1: input 16 MHz (range 8-16), wide VCO, P/Q/R outputs on (8.7.12) */
    TG_REG(RCC + 0x02Cu) = (TG_REG(RCC + 0x02Cu) & ~0xFu) | (3u << 2) | (7u << 16);
    TG_REG(RCC + 0x030u) = (59u << 0) | (1u << 9) | (3u << 16) | (1u << 24); /* N=60 P=2 Q=4 R=2 */
    TG_REG(RCC + 0x000u) |= 1u << 24;                       /* CR.PLL1ON */
    tg_reg_wait(RCC + 0x000u, 1u << 25, 1u << 25);
    /* D1CPRE /1, HPRE /2, D1PPRE /2; D2PPRE1/2 /2; D3PPRE /2 (8.7.8-8.7.10) */
    TG_REG(RCC + 0x018u) = 8u | (4u << 4);
    TG_REG(RCC + 0x01Cu) = (4u << 4) | (4u << 8);
    TG_REG(RCC + 0x020u) = 4u << 4;
    tg_reg_field(RCC + 0x010u, 7u, 3u);                     /* CFGR.SW = PLL1 (8.7.7) */
    tg_reg_wait(RCC + 0x010u, 7u << 3, 3u << 3);
    h7_caches_on();
}
#else
/* Emulated boards: QEMU's clock is fixed; nothing to do. */
void tg_clock_init(void)
{
}
#endif
