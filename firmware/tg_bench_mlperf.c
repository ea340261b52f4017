/* tinygen bench protocol: the MLPerf Tiny runner's commands (see tg_bench.h, docs/bench.md).
 * No hardware access and no libc beyond <stdint.h>: compiles for the host (fuzz/). */
#include "tg_bench.h"
#include "tg_bench_internal.h"

/* ---- MLPerf Tiny runner protocol (EEMBC ULPMark-ML host runner, api/internally_implemented.cpp;
 * input and result conversions as the reference submissions' th_load_tensor / th_results) ---- */

typedef union {
    uint32_t u;
    float f;
} f32_bits_t;

/* The i-th little-endian float32 of the db buffer. */
static float db_float(const uint8_t *db, uint32_t i)
{
    f32_bits_t v;
    const uint8_t *p = db + 4u * i;
    v.u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    return v.f;
}

/* QuantizeFloatToInt8 of the reference DUTs (benchmark/util/quantization_helpers.h):
 * round(v / scale) + zero_point, round half away from zero, saturated to int8; NaN -> zero point.
 * No libm: q - trunc(q) is exact in float for |q| < 2^23. */
static int8_t quantize_f32(float v, float scale, int32_t zp)
{
    float q = v / scale;
    int32_t t;
    if (q != q) {
        t = 0;
    } else {
        q = q > 1.0e6f ? 1.0e6f : (q < -1.0e6f ? -1.0e6f : q);
        t = (int32_t)q;
        const float frac = q - (float)t;
        t += frac >= 0.5f ? 1 : (frac <= -0.5f ? -1 : 0);
    }
    t += zp;
    return (int8_t)(t < -128 ? -128 : (t > 127 ? 127 : t));
}

/* Appends |v| rounded to three decimals (the reference's "%0.3f"), without printf. */
static void put_milli(tg_bench_t *b, float v)
{
    int neg = v < 0.0f;
    float a = neg ? -v : v;
    if (!(a <= 4.0e9f)) { /* also NaN */
        a = 4.0e9f;
    }
    uint64_t milli = (uint64_t)(a * 1000.0f + 0.5f);
    if (neg && milli) {
        tg_bench_put(b, "-");
    }
    tg_bench_put_u64(b, milli / 1000u);
    tg_bench_put(b, ".");
    uint32_t frac = (uint32_t)(milli % 1000u);
    tg_bench_put(b, frac < 100u ? (frac < 10u ? "00" : "0") : "");
    tg_bench_put_u32(b, frac);
}

static float dequant(const tg_bench_config_t *c, uint32_t i)
{
    return (float)((int32_t)c->output[i] - c->out_zp) * c->out_scale;
}

static void mlperf_results(tg_bench_t *b)
{
    const tg_bench_config_t *c = b->cfg;
    tg_bench_raw(b, "m-results-[");
    if (c->mlperf_result == TG_BENCH_MLPERF_RES_MSE) {
        /* ad01 th_results: diffsum += diff * diff in order, then / count (float throughout). */
        const uint32_t n = c->out_size < c->in_size ? c->out_size : c->in_size; /* equal for ad01 */
        float sum = 0.0f;
        for (uint32_t i = 0; i < n; i++) {
            const float d = dequant(c, i) - db_float(c->db, i);
            sum += d * d;
        }
        sum /= (float)n;
        b->olen = 0;
        put_milli(b, sum);
        b->cfg->write(b->cfg->ctx, b->out, b->olen);
    } else {
        for (uint32_t i = 0; i < c->out_size; i++) {
            b->olen = 0;
            put_milli(b, dequant(c, i));
            if (i + 1u < c->out_size) {
                tg_bench_put(b, ",");
            }
            b->cfg->write(b->cfg->ctx, b->out, b->olen);
        }
    }
    b->olen = 0;
    tg_bench_raw(b, "]\r\n");
}

/* th_load_tensor: db -> the int8 input. 0, or -1 after an e-[...] reply. */
static int mlperf_load_tensor(tg_bench_t *b)
{
    const tg_bench_config_t *c = b->cfg;
    const uint32_t per = c->mlperf_input == TG_BENCH_MLPERF_IN_FLOAT32 ? 4u : 1u;
    if (b->db_pos != c->db_capacity) {
        b->olen = 0;
        tg_bench_put(b, "e-[Input db has ");
        tg_bench_put_u32(b, b->db_pos / per);
        tg_bench_put(b, " elements, expected ");
        tg_bench_put_u32(b, c->in_size);
        tg_bench_put(b, "]\r\n");
        c->write(c->ctx, b->out, b->olen);
        b->olen = 0;
        return -1;
    }
    for (uint32_t i = 0; i < c->in_size; i++) {
        if (c->mlperf_input == TG_BENCH_MLPERF_IN_FLOAT32) {
            c->input[i] = quantize_f32(db_float(c->db, i), c->in_scale, c->in_zp);
        } else if (c->mlperf_input == TG_BENCH_MLPERF_IN_UINT8) {
            c->input[i] = (int8_t)((int32_t)c->db[i] - 128);
        } else {
            c->input[i] = (int8_t)c->db[i];
        }
    }
    return 0;
}

/* th_timestamp: a pulse on the timestamp pin (energy mode) or m-lap-us-<us>. */
void tg_bench_mlperf_timestamp(tg_bench_t *b, uint32_t us)
{
    if (b->cfg->timestamp_pulse) {
        b->cfg->timestamp_pulse(b->cfg->ctx);
    } else {
        tg_bench_mlperf_u32(b, "m-lap-us-", us, "\r\n");
    }
}

static void mlperf_db(tg_bench_t *b, char **tok, uint32_t ntok)
{
    const tg_bench_config_t *c = b->cfg;
    uint32_t n;
    if (ntok < 2u) {
        tg_bench_raw(b, "e-[Command 'db' requires a subcommand]\r\n");
    } else if (tg_bench_str_eq(tok[1], "load")) {
        if (ntok < 3u) {
            tg_bench_raw(b, "e-[Command 'db load' requires the # of bytes]\r\n");
        } else if (tg_bench_parse_u32(tok[2], &n) != 0 || n == 0u) {
            tg_bench_raw(b, "e-[Command 'db load' must be >0 bytes]\r\n");
        } else if (n > c->db_capacity) {
            tg_bench_mlperf_u32(b, "e-[Supplied buffer size exceeds the input size of ", c->db_capacity, " bytes]\r\n");
        } else {
            b->db_size = n;
            b->db_pos = 0;
            tg_bench_mlperf_u32(b, "m-[Expecting ", n, " bytes]\r\n");
        }
    } else if (tg_bench_str_eq(tok[1], "print")) {
        static const char digits[] = "0123456789abcdef";
        for (uint32_t i = 0; i < b->db_pos; i++) {
            char s[4];
            uint8_t v = c->db[i];
            if (i % 8u == 0u) {
                tg_bench_raw(b, "m-buffer-");
            }
            s[0] = digits[v >> 4];
            s[1] = digits[v & 0xFu];
            s[2] = (i + 1u) % 8u == 0u || i + 1u == b->db_pos ? 0 : '-';
            s[3] = 0;
            tg_bench_raw(b, s);
            if (s[2] == 0) {
                tg_bench_raw(b, "\r\n");
            }
        }
    } else {
        const char *hex = tok[1];
        uint32_t digits = tg_bench_str_len(hex);
        if (b->db_size == 0u) {
            tg_bench_raw(b, "e-[Send 'db load N' first]\r\n");
            return;
        }
        if (digits % 2u) {
            tg_bench_raw(b, "e-[Insufficent number of hex digits]\r\n");
            return;
        }
        for (uint32_t i = 0; i < digits; i += 2u) {
            int h = tg_bench_hex_val(hex[i]), l = tg_bench_hex_val(hex[i + 1u]);
            if (h < 0 || l < 0) {
                char s[] = "e-[Invalid hex digit '..']\r\n";
                s[22] = hex[i];
                s[23] = hex[i + 1u];
                tg_bench_raw(b, s);
                return;
            }
            if (b->db_pos < b->db_size) {
                c->db[b->db_pos++] = (uint8_t)((h << 4) | l);
                if (b->db_pos == b->db_size) {
                    tg_bench_raw(b, "m-load-done\r\n");
                    return; /* the rest is disregarded, as MLPerf's reference does */
                }
            }
        }
    }
}

/* ee_infer: load the tensor, W warm-ups, then N timed inferences between two timestamps.
 * The second m-lap-us is the first plus the counter ticks of the N runs themselves
 * (tg_model_run only: the per-run input copy, which the planned arena needs because a run
 * may overwrite its input, is left out). */
static void mlperf_infer(tg_bench_t *b, char **tok, uint32_t ntok)
{
    const tg_bench_config_t *c = b->cfg;
    uint32_t n = 1, w = 10, cyc;
    if (ntok > 1u && (tg_bench_parse_u32(tok[1], &n) != 0 || n == 0u || n > TG_BENCH_MAX_RUNS)) {
        tg_bench_raw(b, "e-[Inference iterations must be >0]\r\n");
        return;
    }
    if (ntok > 2u && (tg_bench_parse_u32(tok[2], &w) != 0 || w > TG_BENCH_MAX_WARMUP)) {
        tg_bench_raw(b, "e-[Inference warmup must be >=0]\r\n");
        return;
    }
    if (mlperf_load_tensor(b) != 0) {
        return;
    }
    tg_bench_mlperf_u32(b, "m-warmup-start-", w, "\r\n");
    for (uint32_t i = 0; i < w; i++) {
        if (c->infer(c->ctx, &cyc) < 0) {
            tg_bench_raw(b, "e-[Inference failed]\r\n");
            return;
        }
    }
    tg_bench_raw(b, "m-warmup-done\r\n");
    tg_bench_mlperf_u32(b, "m-infer-start-", n, "\r\n");
    const uint32_t t0 = tg_bench_time_us(b);
    tg_bench_mlperf_timestamp(b, t0);
    uint64_t ticks = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (c->infer(c->ctx, &cyc) < 0) {
            tg_bench_raw(b, "e-[Inference failed]\r\n");
            return;
        }
        ticks += cyc;
        (void)tg_bench_time_us(b); /* keeps a 64-bit time base current across long loops */
    }
    const uint32_t khz = c->clock_hz / 1000u ? c->clock_hz / 1000u : 1u;
    tg_bench_mlperf_timestamp(b, t0 + (uint32_t)(ticks * 1000u / khz));
    tg_bench_raw(b, "m-infer-done\r\n");
    b->have_run = 1;
    mlperf_results(b);
}

void tg_bench_mlperf(tg_bench_t *b)
{
    char *tok[TG_BENCH_MAX_TOKENS];
    uint32_t ntok = tg_bench_tokenize(b->line, tok);
    if (ntok == 0u) {
        tg_bench_raw(b, "e-[Unknown command: ]\r\n");
    } else if (ntok > TG_BENCH_MAX_TOKENS) {
        tg_bench_raw(b, "e-[Too many arguments]\r\n");
    } else if (tg_bench_str_eq(tok[0], "name")) {
        tg_bench_raw(b, "m-name-dut-[tinygen]\r\n");
    } else if (tg_bench_str_eq(tok[0], "timestamp")) {
        tg_bench_mlperf_timestamp(b, tg_bench_time_us(b));
    } else if (tg_bench_str_eq(tok[0], "profile")) {
        tg_bench_raw(b, "m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\n");
        if (b->cfg->mlperf_model) {
            tg_bench_raw(b, "m-model-[");
            tg_bench_raw(b, b->cfg->mlperf_model);
            tg_bench_raw(b, "]\r\n");
        } else {
            tg_bench_raw(b, "e-[No MLPerf Tiny model id in this build: rebuild with tinygen build --mlperf "
                   "kws01|ic01|vww01|ad01]\r\n");
        }
    } else if (tg_bench_str_eq(tok[0], "help")) {
        tg_bench_raw(b, "ULPMark for tinyML Firmware V0.0.1 (tinygen)\r\n\r\n"
               "help         : Print this information\r\n"
               "name         : Print the name of the device\r\n"
               "timestamp    : Generate a timestamp\r\n"
               "db SUBCMD    : Manipulate a generic byte buffer\r\n"
               "  load N     : Allocate N bytes and set load counter\r\n"
               "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes\r\n"
               "  print      : Print the buffer as hex\r\n"
               "infer N [W=10]: Load input, execute N inferences after W warmup loops\r\n"
               "results      : Return the result fp32 vector\r\n");
    } else if (tg_bench_str_eq(tok[0], "db")) {
        mlperf_db(b, tok, ntok);
    } else if (tg_bench_str_eq(tok[0], "infer")) {
        mlperf_infer(b, tok, ntok);
    } else if (tg_bench_str_eq(tok[0], "results")) {
        if (b->have_run) {
            mlperf_results(b);
        } else {
            tg_bench_raw(b, "e-[No inference yet]\r\n");
        }
    } else {
        /* tok[0] is at most TG_BENCH_LINE_MAX bytes and NUL-terminated inside line[] */
        tg_bench_raw(b, "e-[Unknown command: ");
        tg_bench_raw(b, tok[0]);
        tg_bench_raw(b, "]\r\n");
    }
    tg_bench_raw(b, "m-ready\r\n");
}
