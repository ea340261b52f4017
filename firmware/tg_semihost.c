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

void tg_exit(int32_t code)
{
    tg_uart_flush();
#if TG_EMULATED
    tg_semihost_exit(code);
#else
    (void)code;
#endif
    for (;;) {
        __asm volatile("wfi");
    }
}
