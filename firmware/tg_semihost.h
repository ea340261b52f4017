/* tinygen runtime: semihosting exit (QEMU) and the firmware's end. */
#ifndef TG_SEMIHOST_H
#define TG_SEMIHOST_H

#include <stdint.h>

/* SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit: QEMU exits with `code`.
 * Only valid with a debugger or QEMU attached (a real board without one faults). */
void tg_semihost_exit(int32_t code);

/* End of the firmware: flushes the UART; under QEMU exits with `code`,
 * on real boards waits for interrupts forever (the host reads the UART). */
void tg_exit(int32_t code) __attribute__((noreturn));

#endif /* TG_SEMIHOST_H */
