/* tinygen runtime: semihosting exit. */
#include "tg_semihost.h"
#include "tg_board.h"
#include "tg_uart.h"

void tg_semihost_exit(int32_t code)
{
    /* The parameter block of SYS_EXIT_EXTENDED: {reason, exit code}. SYS_EXIT (0x18)
     * would always make QEMU exit 0. */
    volatile uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    register uint32_t r0 __asm("r0") = 0x20u;
    register volatile uint32_t *r1 __asm("r1") = block;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}

#if TG_EMULATED
/* QEMU closes a pty serial port as soon as it exits, and the host loses bytes it has not
 * read yet. Idle (WFI) about 150 ms first: while the guest idles, QEMU's virtual clock
 * follows the host clock (also with -icount, whose default is sleep=on).
 * Not from a fault handler: SysTick cannot preempt it, so WFI would never wake. */
static void idle_before_exit(void)
{
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    if (ipsr & 0x1FFu) {
        return;
    }
    TG_SYST_CSR = 0u;
    TG_SYST_RVR = TG_CLOCK_HZ / 20u - 1u;    /* 50 ms, within SysTick's 24 bits up to 335 MHz */
    TG_SYST_CVR = 0u;
    TG_SYST_CSR = 7u;
    for (uint32_t wraps = 0; wraps < 3u;) {
        __asm volatile("wfi");
        if (TG_SYST_CSR & (1u << 16)) {       /* COUNTFLAG, cleared by reading */
            wraps++;
        }
    }
}
#endif

void tg_exit(int32_t code)
{
    tg_uart_flush();
#if TG_EMULATED
    idle_before_exit();
    tg_semihost_exit(code);
#else
    (void)code;
#endif
    for (;;) {
        __asm volatile("wfi");
    }
}
