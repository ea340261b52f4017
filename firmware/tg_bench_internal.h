/* tinygen bench protocol: helpers shared by tg_bench.c (parser, native commands) and
 * tg_bench_mlperf.c (MLPerf Tiny commands). Not an API. */
#ifndef TG_BENCH_INTERNAL_H
#define TG_BENCH_INTERNAL_H

#include <stdint.h>
#include "tg_bench.h"

#define TG_BENCH_MAX_TOKENS 8u

uint32_t tg_bench_str_len(const char *s);
int tg_bench_str_eq(const char *a, const char *b);
int tg_bench_hex_val(char c);
/* Decimal u32, digits only, no overflow. 0 on success. */
int tg_bench_parse_u32(const char *s, uint32_t *v);
/* Splits s in place on spaces/tabs; returns the number of tokens, or TG_BENCH_MAX_TOKENS + 1 if more. */
uint32_t tg_bench_tokenize(char *s, char **tok);
/* Sends s as it is. */
void tg_bench_raw(tg_bench_t *b, const char *s);
/* Appends to the reply line being built (b->out). */
void tg_bench_put(tg_bench_t *b, const char *s);
void tg_bench_put_u64(tg_bench_t *b, uint64_t v);
void tg_bench_put_u32(tg_bench_t *b, uint32_t v);
/* Sends prefix, v in decimal, suffix. */
void tg_bench_mlperf_u32(tg_bench_t *b, const char *prefix, uint32_t v, const char *suffix);
/* Microseconds since boot (0 without a time_us callback). */
uint32_t tg_bench_time_us(tg_bench_t *b);
/* One MLPerf command: the '%'-terminated line in b->line; ends with m-ready. */
void tg_bench_mlperf(tg_bench_t *b);
/* th_timestamp: a pulse on the timestamp pin (energy mode) or m-lap-us-<us>. */
void tg_bench_mlperf_timestamp(tg_bench_t *b, uint32_t us);

#endif /* TG_BENCH_INTERNAL_H */
