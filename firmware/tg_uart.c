/* tinygen runtime: polled serial port, register level, chosen by board_config.h:
 *   TG_UART_KIND_CMSDK           Arm CMSDK APB UART (MPS2 under QEMU)
 *   TG_UART_KIND_STM32_USART_F4  STM32F4 USART (SR/DR/BRR/CR1), RM0390 25.6
 *   TG_UART_KIND_STM32_USART_V2  STM32L4/U5/H7 USART (CR1/BRR/ISR/ICR/RDR/TDR), RM0456 66.8, RM0433 48.7
 *   TG_UART_KIND_STM32_LPUART    the same registers, BRR = 256 * f / baud, RM0432 51.7
 */
#include "tg_uart.h"
#include "tg_board.h"
#include "tg_cycles.h"

#if defined(TG_UART_KIND_CMSDK)
#define UART_DATA  TG_REG(TG_UART_BASE + 0x00u)
#define UART_STATE TG_REG(TG_UART_BASE + 0x04u)   /* bit0 TX full, bit1 RX ready */
#define UART_CTRL  TG_REG(TG_UART_BASE + 0x08u)   /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV TG_REG(TG_UART_BASE + 0x10u)
#define TX_READY() ((UART_STATE & 1u) == 0u)
#define RX_READY() ((UART_STATE & 2u) != 0u)
#define TX_DONE() TX_READY()
#define WRITE(c) (UART_DATA = (uint32_t)(uint8_t)(c))
#define READ() ((int32_t)(UART_DATA & 0xFFu))
#elif defined(TG_UART_KIND_STM32_USART_F4)
#define USART_SR  TG_REG(TG_UART_BASE + 0x00u)    /* bit7 TXE, bit6 TC, bit5 RXNE */
#define USART_DR  TG_REG(TG_UART_BASE + 0x04u)
#define USART_BRR TG_REG(TG_UART_BASE + 0x08u)
#define USART_CR1 TG_REG(TG_UART_BASE + 0x0Cu)    /* bit13 UE, bit3 TE, bit2 RE */
#define TX_READY() ((USART_SR & (1u << 7)) != 0u)
#define RX_READY() ((USART_SR & (1u << 5)) != 0u) /* reading DR also clears ORE */
#define TX_DONE() ((USART_SR & (1u << 6)) != 0u)
#define WRITE(c) (USART_DR = (uint32_t)(uint8_t)(c))
#define READ() ((int32_t)(USART_DR & 0xFFu))
#elif defined(TG_UART_KIND_STM32_USART_V2) || defined(TG_UART_KIND_STM32_LPUART)
#define USART_CR1 TG_REG(TG_UART_BASE + 0x00u)    /* bit0 UE, bit2 RE, bit3 TE */
#define USART_BRR TG_REG(TG_UART_BASE + 0x0Cu)
#define USART_ISR TG_REG(TG_UART_BASE + 0x1Cu)    /* bit7 TXE, bit6 TC, bit5 RXNE, bit3 ORE */
#define USART_ICR TG_REG(TG_UART_BASE + 0x20u)    /* bit3 ORECF */
#define USART_RDR TG_REG(TG_UART_BASE + 0x24u)
#define USART_TDR TG_REG(TG_UART_BASE + 0x28u)
#define TX_READY() ((USART_ISR & (1u << 7)) != 0u)
#define RX_READY() ((USART_ISR & (1u << 5)) != 0u)
#define TX_DONE() ((USART_ISR & (1u << 6)) != 0u)
#define WRITE(c) (USART_TDR = (uint32_t)(uint8_t)(c))
#define READ() ((int32_t)(USART_RDR & 0xFFu))
#else
#error "board_config.h selects no TG_UART_KIND_*"
#endif

#ifdef TG_UART_GPIO_BASE
/* STM32 GPIO (same layout on F4/L4/U5/H7): MODER 2 bits/pin (10 = alternate function),
 * OSPEEDR (10 = high), PUPDR (01 = pull-up), AFRL/AFRH 4 bits/pin. */
static void pin_af(uint32_t pin, uint32_t pull_up)
{
    const uint32_t g = TG_UART_GPIO_BASE;
    tg_reg_field(g + 0x08u, 3u << (2u * pin), 2u << (2u * pin));
    tg_reg_field(g + 0x0Cu, 3u << (2u * pin), pull_up << (2u * pin));
    tg_reg_field(g + 0x20u + 4u * (pin / 8u), 0xFu << (4u * (pin % 8u)), TG_UART_AF << (4u * (pin % 8u)));
    tg_reg_field(g + 0x00u, 3u << (2u * pin), 2u << (2u * pin));
}
#endif

void tg_uart_init(void)
{
#if TG_UART_RCC_ENABLE_COUNT > 0
    static const uint32_t rcc[TG_UART_RCC_ENABLE_COUNT][2] = TG_UART_RCC_ENABLE;
    for (uint32_t i = 0; i < TG_UART_RCC_ENABLE_COUNT; i++) {
        TG_REG(rcc[i][0]) |= rcc[i][1];
        (void)TG_REG(rcc[i][0]); /* read back: the clock is on before the first access */
    }
#endif
#ifdef TG_UART_GPIO_BASE
    pin_af(TG_UART_TX_PIN, 0u);
    pin_af(TG_UART_RX_PIN, 1u);
#endif
#if defined(TG_UART_KIND_CMSDK)
    uint32_t div = TG_UART_CLOCK_HZ / TG_UART_BAUD;
    UART_BAUDDIV = div < 16u ? 16u : div;
    UART_CTRL = 3u;
#elif defined(TG_UART_KIND_STM32_USART_F4)
    USART_CR1 = 0u;
    USART_BRR = (TG_UART_CLOCK_HZ + TG_UART_BAUD / 2u) / TG_UART_BAUD; /* 16x oversampling */
    USART_CR1 = (1u << 13) | (1u << 3) | (1u << 2);
#else
    USART_CR1 = 0u;
#if defined(TG_UART_KIND_STM32_LPUART)
    /* BRR is 20 bits (RM0432 51.7.5): at low rates (9600, the energy mode) divide the kernel
     * clock by 4 first with LPUART_PRESC (0x2C, PRESCALER = 0b0010, 51.7.12; set while UE = 0). */
#if (256ull * TG_UART_CLOCK_HZ / TG_UART_BAUD) > 0xFFFFFull
    TG_REG(TG_UART_BASE + 0x2Cu) = 2u;
    USART_BRR = (uint32_t)((256ull * (TG_UART_CLOCK_HZ / 4u) + TG_UART_BAUD / 2u) / TG_UART_BAUD);
#else
    USART_BRR = (uint32_t)((256ull * TG_UART_CLOCK_HZ + TG_UART_BAUD / 2u) / TG_UART_BAUD);
#endif
#else
    USART_BRR = (TG_UART_CLOCK_HZ + TG_UART_BAUD / 2u) / TG_UART_BAUD;
#endif
    USART_CR1 = (1u << 3) | (1u << 2) | 1u;
#endif
}

void tg_uart_putc(char c)
{
    while (!TX_READY()) {
    }
    WRITE(c);
}

void tg_uart_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tg_uart_putc(s[i]);
    }
}

void tg_uart_flush(void)
{
    while (!TX_DONE()) {
    }
}

int32_t tg_uart_getc_timeout(int32_t *c, uint32_t timeout_ms)
{
    const uint64_t limit = (uint64_t)timeout_ms * (TG_CLOCK_HZ / 1000u);
    uint64_t waited = 0;
    uint32_t last;
    tg_cycles_init();
    last = tg_cycles_now();
    for (;;) {
#if defined(TG_UART_KIND_STM32_USART_V2) || defined(TG_UART_KIND_STM32_LPUART)
        if (USART_ISR & (1u << 3)) {
            USART_ICR = 1u << 3; /* an overrun would otherwise stop reception */
        }
#endif
        if (RX_READY()) {
            *c = READ();
            return 0;
        }
        uint32_t now = tg_cycles_now();
        waited += (uint32_t)(now - last);
        last = now;
        if (waited >= limit) {
            return -1;
        }
    }
}

void tg_uart_print(const char *s)
{
    while (*s) {
        tg_uart_putc(*s++);
    }
}

void tg_uart_print_u32(uint32_t v)
{
    char buf[10];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) {
        tg_uart_putc(buf[--n]);
    }
}

void tg_uart_print_i32(int32_t v)
{
    if (v < 0) {
        tg_uart_putc('-');
        tg_uart_print_u32(0u - (uint32_t)v);
    } else {
        tg_uart_print_u32((uint32_t)v);
    }
}

void tg_uart_print_hex32(uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 28; i >= 0; i -= 4) {
        tg_uart_putc(digits[(v >> i) & 0xFu]);
    }
}

#ifdef TG_TIMESTAMP_GPIO_BASE
/* MLPerf Tiny energy mode: the timestamp pin (Arduino D7, [mlperf] of the board file), push-pull
 * output idling high. GPIO registers as above; BSRR (0x18): bit n sets, bit n + 16 resets. */
void tg_timestamp_init(void)
{
    TG_REG(TG_TIMESTAMP_RCC_REG) |= TG_TIMESTAMP_RCC_BITS;
    (void)TG_REG(TG_TIMESTAMP_RCC_REG);
    const uint32_t g = TG_TIMESTAMP_GPIO_BASE, pin = TG_TIMESTAMP_PIN;
    TG_REG(g + 0x18u) = 1u << pin;                           /* high before it drives */
    tg_reg_field(g + 0x04u, 1u << pin, 0u);                  /* OTYPER push-pull */
    tg_reg_field(g + 0x00u, 3u << (2u * pin), 1u << (2u * pin)); /* MODER = 01 output */
}

/* As the reference DUTs' th_timestamp: pull low, hold (at least 1 us: 100000 loop passes,
 * as they do), release high. The falling edge is the timestamp. */
void tg_timestamp_pulse(void)
{
    const uint32_t g = TG_TIMESTAMP_GPIO_BASE, pin = TG_TIMESTAMP_PIN;
    TG_REG(g + 0x18u) = 1u << (pin + 16u);
    for (volatile uint32_t i = 0; i < 100000u; i++) {
    }
    TG_REG(g + 0x18u) = 1u << pin;
}
#endif
