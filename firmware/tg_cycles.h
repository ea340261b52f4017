/* tinygen runtime: cycle counter (DWT CYCCNT, or SysTick where DWT does not count). */
#ifndef TG_CYCLES_H
#define TG_CYCLES_H

#include <stdint.h>

/* Starts the counter; idempotent. On DWT boards, checks that CYCCNT advances
 * (QEMU reads it as 0) and falls back to SysTick otherwise. */
void tg_cycles_init(void);
/* Core clock cycles since tg_cycles_init, modulo 2^32 (use differences). */
uint32_t tg_cycles_now(void);
/* "dwt" or "systick": the counter in use. */
const char *tg_cycles_source(void);
/* The SysTick exception handler (24-bit wrap count), referenced by the vector table. */
void tg_systick_handler(void);

#endif /* TG_CYCLES_H */
