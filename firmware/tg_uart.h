/* tinygen runtime: polled serial port (CMSDK UART or STM32 USART/LPUART), no HAL. */
#ifndef TG_UART_H
#define TG_UART_H

#include <stddef.h>
#include <stdint.h>

/* Clocks, pins (real boards) and the port itself; 8N1 at TG_UART_BAUD. Idempotent. */
void tg_uart_init(void);
void tg_uart_putc(char c);
void tg_uart_write(const char *s, size_t n);
/* Waits until every byte has left the shift register. */
void tg_uart_flush(void);
/* Reads one byte into *c (0..255); returns 0, or -1 after timeout_ms milliseconds
 * (timeout_ms = 0: poll once). Time is measured with tg_cycles_now(). */
int32_t tg_uart_getc_timeout(int32_t *c, uint32_t timeout_ms);

/* MLPerf Tiny energy mode (only when board_config.h defines TG_TIMESTAMP_GPIO_BASE):
 * the timestamp pin as an output idling high, and one timestamp (a low pulse). */
void tg_timestamp_init(void);
void tg_timestamp_pulse(void);

/* Formatting helpers (no printf). */
void tg_uart_print(const char *s);
void tg_uart_print_u32(uint32_t v);
void tg_uart_print_i32(int32_t v);
void tg_uart_print_hex32(uint32_t v); /* 8 lowercase hex digits, no prefix */

#endif /* TG_UART_H */
