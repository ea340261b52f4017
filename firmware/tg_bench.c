/* tinygen bench protocol: parser and command handlers (see tg_bench.h, docs/bench.md).
 * No hardware access and no libc beyond <stdint.h>: compiles for the host (fuzz/). */
#include "tg_bench.h"

#define MAX_TOKENS 8u

/* ---- small string helpers (no libc) ---- */

static uint32_t str_len(const char *s)
{
    uint32_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

static int str_eq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decimal u32, digits only, no overflow. 0 on success. */
static int parse_u32(const char *s, uint32_t *v)
{
    uint64_t acc = 0;
    uint32_t n = 0;
    if (!s || !*s) {
        return -1;
    }
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 10u) {
            return -1;
        }
        acc = acc * 10u + (uint64_t)(s[n] - '0');
    }
    if (acc > 0xFFFFFFFFull) {
        return -1;
    }
    *v = (uint32_t)acc;
    return 0;
}

/* Exactly 8 hex digits. 0 on success. */
static int parse_hex32(const char *s, uint32_t *v)
{
    uint32_t acc = 0;
    uint32_t n = 0;
    for (; s[n]; n++) {
        int d = hex_val(s[n]);
        if (d < 0 || n >= 8u) {
            return -1;
        }
        acc = (acc << 4) | (uint32_t)d;
    }
    if (n != 8u) {
        return -1;
    }
    *v = acc;
    return 0;
}

uint32_t tg_bench_crc32(uint32_t crc, const void *data, uint32_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* ---- output ---- */

static void raw(tg_bench_t *b, const char *s)
{
    b->cfg->write(b->cfg->ctx, s, str_len(s));
}

static void put(tg_bench_t *b, const char *s)
{
    while (*s && b->olen < TG_BENCH_OUT_MAX - 16u) { /* room for " *crc\r\n" */
        b->out[b->olen++] = *s++;
    }
}

static void put_u64(tg_bench_t *b, uint64_t v)
{
    char buf[21];
    uint32_t n = 0;
    do {
        buf[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v);
    char s[21];
    for (uint32_t i = 0; i < n; i++) {
        s[i] = buf[n - 1u - i];
    }
    s[n] = 0;
    put(b, s);
}

static void put_u32(tg_bench_t *b, uint32_t v)
{
    put_u64(b, v);
}

static void put_i32(tg_bench_t *b, int32_t v)
{
    if (v < 0) {
        put(b, "-");
        put_u64(b, (uint64_t)(0u - (uint32_t)v));
    } else {
        put_u64(b, (uint64_t)v);
    }
}

static void hex32_str(uint32_t v, char s[9])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        s[i] = digits[(v >> (28 - 4 * i)) & 0xFu];
    }
    s[8] = 0;
}

static void put_hex32(tg_bench_t *b, uint32_t v)
{
    char s[9];
    hex32_str(v, s);
    put(b, s);
}

/* Ends a native line: " *<crc of the line>\r\n", sent in one write. */
static void line_end(tg_bench_t *b)
{
    char s[9];
    hex32_str(tg_bench_crc32(0, b->out, b->olen), s);
    b->out[b->olen++] = ' ';
    b->out[b->olen++] = '*';
    for (int i = 0; i < 8; i++) {
        b->out[b->olen++] = s[i];
    }
    b->out[b->olen++] = '\r';
    b->out[b->olen++] = '\n';
    b->cfg->write(b->cfg->ctx, b->out, b->olen);
    b->olen = 0;
}

static void err(tg_bench_t *b, int code, const char *reason)
{
    b->olen = 0;
    put(b, "ERR ");
    put_i32(b, code);
    put(b, " ");
    put(b, reason);
    line_end(b);
}

static void banner(tg_bench_t *b)
{
    const tg_bench_config_t *c = b->cfg;
    b->olen = 0;
    put(b, "TG_BENCH v");
    put_u32(b, TG_BENCH_VERSION);
    put(b, " model=");
    put(b, c->model_hash);
    put(b, " board=");
    put(b, c->board);
    put(b, " clock=");
    put_u32(b, c->clock_hz);
    put(b, " counter=");
    put(b, c->counter);
    put(b, " in=");
    put_u32(b, c->in_size);
    put(b, " out=");
    put_u32(b, c->out_size);
    put(b, " layers=");
    put_u32(b, c->num_layers);
    put(b, " maxline=");
    put_u32(b, TG_BENCH_LINE_MAX);
    line_end(b);
}

void tg_bench_init(tg_bench_t *b, const tg_bench_config_t *cfg)
{
    b->cfg = cfg;
    b->len = 0;
    b->overflow = 0;
    b->have_run = 0;
    b->db_size = 0;
    b->db_pos = 0;
    b->olen = 0;
}

static uint32_t time_us(tg_bench_t *b)
{
    return b->cfg->time_us ? b->cfg->time_us(b->cfg->ctx) : 0u;
}

static void mlperf_u32(tg_bench_t *b, const char *prefix, uint32_t v, const char *suffix)
{
    b->olen = 0;
    put(b, prefix);
    put_u32(b, v);
    put(b, suffix);
    b->cfg->write(b->cfg->ctx, b->out, b->olen);
    b->olen = 0;
}

static void mlperf_timestamp(tg_bench_t *b, uint32_t us);

void tg_bench_boot(tg_bench_t *b)
{
    banner(b);
    raw(b, b->cfg->timestamp_pulse ? "m-timestamp-mode-energy\r\n" : "m-timestamp-mode-performance\r\n");
    mlperf_timestamp(b, time_us(b));
    raw(b, "m-init-done\r\nm-ready\r\n");
}

/* ---- native commands ---- */

static void dump(tg_bench_t *b, const char *what, const int8_t *data, uint32_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (uint32_t off = 0; off < n; off += TG_BENCH_HEX_PER_LINE) {
        uint32_t k = n - off < TG_BENCH_HEX_PER_LINE ? n - off : TG_BENCH_HEX_PER_LINE;
        b->olen = 0;
        put(b, "D ");
        put_u32(b, off);
        put(b, " ");
        for (uint32_t i = 0; i < k; i++) {
            uint8_t v = (uint8_t)data[off + i];
            b->out[b->olen++] = digits[v >> 4];
            b->out[b->olen++] = digits[v & 0xFu];
        }
        line_end(b);
    }
    b->olen = 0;
    put(b, "OK ");
    put(b, what);
    put(b, " ");
    put_u32(b, n);
    put(b, " crc=");
    put_hex32(b, tg_bench_crc32(0, data, n));
    line_end(b);
}

static void cmd_load(tg_bench_t *b, char **tok, uint32_t ntok, int has_crc)
{
    const tg_bench_config_t *c = b->cfg;
    uint32_t off;
    if (!has_crc) {
        err(b, TG_BENCH_E_ARGS, "load needs the line CRC: load <offset> <hex> *<crc32 of the text before ' *'>");
        return;
    }
    if (ntok != 3u || parse_u32(tok[1], &off) != 0) {
        err(b, TG_BENCH_E_ARGS, "usage: load <offset> <hex bytes> *<crc32>");
        return;
    }
    const char *hex = tok[2];
    uint32_t digits = str_len(hex);
    if (digits == 0u || digits % 2u) {
        err(b, TG_BENCH_E_HEX, "odd number of hex digits");
        return;
    }
    for (uint32_t i = 0; i < digits; i++) {
        if (hex_val(hex[i]) < 0) {
            err(b, TG_BENCH_E_HEX, "bad hex digit");
            return;
        }
    }
    uint32_t n = digits / 2u;
    if (off > c->in_size || n > c->in_size - off) {
        b->olen = 0;
        put(b, "ERR 5 load past the input: offset ");
        put_u32(b, off);
        put(b, " + ");
        put_u32(b, n);
        put(b, " bytes > ");
        put_u32(b, c->in_size);
        line_end(b);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        c->input[off + i] = (int8_t)(uint8_t)((hex_val(hex[2u * i]) << 4) | hex_val(hex[2u * i + 1u]));
    }
    b->olen = 0;
    put(b, "OK load ");
    put_u32(b, off);
    put(b, " ");
    put_u32(b, n);
    line_end(b);
}

static void cmd_run(tg_bench_t *b, char **tok, uint32_t ntok)
{
    const tg_bench_config_t *c = b->cfg;
    uint32_t n, warm = 0, want;
    if (ntok < 2u || ntok > 4u || parse_u32(tok[1], &n) != 0 || (ntok > 2u && parse_u32(tok[2], &warm) != 0)) {
        err(b, TG_BENCH_E_ARGS, "usage: run <n> [warmup] [input crc32]");
        return;
    }
    if (n < 1u || n > TG_BENCH_MAX_RUNS || warm > TG_BENCH_MAX_WARMUP) {
        err(b, TG_BENCH_E_RANGE, "run: n must be 1..100000, warmup 0..10000");
        return;
    }
    if (ntok == 4u) {
        if (parse_hex32(tok[3], &want) != 0) {
            err(b, TG_BENCH_E_ARGS, "run: the input crc32 must be 8 hex digits");
            return;
        }
        uint32_t have = tg_bench_crc32(0, c->input, c->in_size);
        if (have != want) {
            b->olen = 0;
            put(b, "ERR 6 input crc mismatch: device has ");
            put_hex32(b, have);
            put(b, ", host expects ");
            put_hex32(b, want);
            line_end(b);
            return;
        }
    }
    uint64_t total = 0;
    uint32_t lo = 0xFFFFFFFFu, hi = 0, first_crc = 0;
    for (uint32_t i = 0; i < warm + n; i++) {
        uint32_t cyc = 0;
        int32_t rc = c->infer(c->ctx, &cyc);
        if (rc < 0) {
            b->have_run = 0;
            b->olen = 0;
            put(b, "ERR 8 model run failed: rc=");
            put_i32(b, rc);
            line_end(b);
            return;
        }
        uint32_t crc = tg_bench_crc32(0, c->output, c->out_size);
        if (i == 0u) {
            first_crc = crc;
        } else if (crc != first_crc) {
            b->have_run = 1;
            err(b, TG_BENCH_E_MODEL, "output differs between runs of the same input");
            return;
        }
        b->olen = 0;
        put(b, i < warm ? "W " : "T ");
        put_u32(b, i < warm ? i : i - warm);
        put(b, " ");
        put_u32(b, cyc);
        line_end(b);
        if (i >= warm) {
            total += cyc;
            lo = cyc < lo ? cyc : lo;
            hi = cyc > hi ? cyc : hi;
        }
    }
    b->have_run = 1;
    b->olen = 0;
    put(b, "OK run ");
    put_u32(b, n);
    put(b, " ");
    put_u32(b, warm);
    put(b, " total=");
    put_u64(b, total);
    put(b, " min=");
    put_u32(b, lo);
    put(b, " max=");
    put_u32(b, hi);
    put(b, " out=");
    put_hex32(b, first_crc);
    line_end(b);
}

static void cmd_layers(tg_bench_t *b)
{
    const tg_bench_config_t *c = b->cfg;
    uint32_t cyc;
    if (!b->have_run) {
        err(b, TG_BENCH_E_NODATA, "no run yet: send run first");
        return;
    }
    if (!c->layer_cycles || c->num_layers == 0u || c->layer_cycles(c->ctx, 0, &cyc) != 0) {
        err(b, TG_BENCH_E_NODATA, "no per-layer timing: build with PROFILE=1 (-DTG_PROFILE)");
        return;
    }
    for (uint32_t i = 0; i < c->num_layers; i++) {
        if (c->layer_cycles(c->ctx, i, &cyc) != 0) {
            err(b, TG_BENCH_E_NODATA, "per-layer timing incomplete");
            return;
        }
        b->olen = 0;
        put(b, "L ");
        put_u32(b, i);
        put(b, " ");
        put_u32(b, cyc);
        line_end(b);
    }
    b->olen = 0;
    put(b, "OK layers ");
    put_u32(b, c->num_layers);
    line_end(b);
}

static void cmd_help(tg_bench_t *b)
{
    static const char *const lines[] = {
        "H hello [token]              banner and OK hello",
        "H load <offset> <hex> *<crc> write input bytes (line CRC-32 required)",
        "H run <n> [warmup] [in-crc]  n timed inferences after warmup ones",
        "H layers                     per-layer cycles of the last inference",
        "H out | in                   output / input tensor as hex with CRC-32",
        "H MLPerf Tiny: name% profile% db load N% db HEX% infer N W% results%",
    };
    for (uint32_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        b->olen = 0;
        put(b, lines[i]);
        line_end(b);
    }
    b->olen = 0;
    put(b, "OK help");
    line_end(b);
}

/* Splits s in place on spaces/tabs; returns the number of tokens, or MAX_TOKENS + 1 if more. */
static uint32_t tokenize(char *s, char **tok)
{
    uint32_t n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t') {
            *s++ = 0;
        }
        if (!*s) {
            break;
        }
        if (n == MAX_TOKENS) {
            return MAX_TOKENS + 1u;
        }
        tok[n++] = s;
        while (*s && *s != ' ' && *s != '\t') {
            s++;
        }
    }
    return n;
}

static void native(tg_bench_t *b)
{
    char *tok[MAX_TOKENS];
    char *s = b->line;
    uint32_t len = b->len;
    int has_crc = 0;
    /* Optional line CRC: " *XXXXXXXX" at the end. */
    if (len >= 10u && b->line[len - 10u] == ' ' && b->line[len - 9u] == '*') {
        uint32_t want;
        if (parse_hex32(&b->line[len - 8u], &want) != 0) {
            err(b, TG_BENCH_E_ARGS, "malformed line CRC: end the line with ' *' and 8 hex digits");
            return;
        }
        uint32_t have = tg_bench_crc32(0, b->line, len - 10u);
        if (have != want) {
            b->olen = 0;
            put(b, "ERR 6 line crc mismatch: computed ");
            put_hex32(b, have);
            put(b, ", line says ");
            put_hex32(b, want);
            line_end(b);
            return;
        }
        b->line[len - 10u] = 0;
        has_crc = 1;
    }
    uint32_t ntok = tokenize(s, tok);
    if (ntok == 0u) {
        if (has_crc) {
            err(b, TG_BENCH_E_COMMAND, "empty command");
        }
        return;
    }
    if (ntok > MAX_TOKENS) {
        err(b, TG_BENCH_E_ARGS, "too many arguments");
        return;
    }
    if (str_eq(tok[0], "hello")) {
        if (ntok > 2u || (ntok == 2u && str_len(tok[1]) > 16u)) {
            err(b, TG_BENCH_E_ARGS, "usage: hello [token of up to 16 characters]");
            return;
        }
        banner(b);
        b->olen = 0;
        put(b, "OK hello");
        if (ntok == 2u) {
            put(b, " ");
            put(b, tok[1]);
        }
        line_end(b);
    } else if (str_eq(tok[0], "load")) {
        cmd_load(b, tok, ntok, has_crc);
    } else if (str_eq(tok[0], "run")) {
        cmd_run(b, tok, ntok);
    } else if (str_eq(tok[0], "layers") && ntok == 1u) {
        cmd_layers(b);
    } else if (str_eq(tok[0], "out") && ntok == 1u) {
        if (!b->have_run) {
            err(b, TG_BENCH_E_NODATA, "no run yet: send run first");
        } else {
            dump(b, "out", b->cfg->output, b->cfg->out_size);
        }
    } else if (str_eq(tok[0], "in") && ntok == 1u) {
        dump(b, "in", b->cfg->input, b->cfg->in_size);
    } else if (str_eq(tok[0], "help") && ntok == 1u) {
        cmd_help(b);
    } else {
        err(b, TG_BENCH_E_COMMAND, "unknown command (try help)");
    }
}

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
        put(b, "-");
    }
    put_u64(b, milli / 1000u);
    put(b, ".");
    uint32_t frac = (uint32_t)(milli % 1000u);
    put(b, frac < 100u ? (frac < 10u ? "00" : "0") : "");
    put_u32(b, frac);
}

static float dequant(const tg_bench_config_t *c, uint32_t i)
{
    return (float)((int32_t)c->output[i] - c->out_zp) * c->out_scale;
}

static void mlperf_results(tg_bench_t *b)
{
    const tg_bench_config_t *c = b->cfg;
    raw(b, "m-results-[");
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
                put(b, ",");
            }
            b->cfg->write(b->cfg->ctx, b->out, b->olen);
        }
    }
    b->olen = 0;
    raw(b, "]\r\n");
}

/* th_load_tensor: db -> the int8 input. 0, or -1 after an e-[...] reply. */
static int mlperf_load_tensor(tg_bench_t *b)
{
    const tg_bench_config_t *c = b->cfg;
    const uint32_t per = c->mlperf_input == TG_BENCH_MLPERF_IN_FLOAT32 ? 4u : 1u;
    if (b->db_pos != c->db_capacity) {
        b->olen = 0;
        put(b, "e-[Input db has ");
        put_u32(b, b->db_pos / per);
        put(b, " elements, expected ");
        put_u32(b, c->in_size);
        put(b, "]\r\n");
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
static void mlperf_timestamp(tg_bench_t *b, uint32_t us)
{
    if (b->cfg->timestamp_pulse) {
        b->cfg->timestamp_pulse(b->cfg->ctx);
    } else {
        mlperf_u32(b, "m-lap-us-", us, "\r\n");
    }
}

static void mlperf_db(tg_bench_t *b, char **tok, uint32_t ntok)
{
    const tg_bench_config_t *c = b->cfg;
    uint32_t n;
    if (ntok < 2u) {
        raw(b, "e-[Command 'db' requires a subcommand]\r\n");
    } else if (str_eq(tok[1], "load")) {
        if (ntok < 3u) {
            raw(b, "e-[Command 'db load' requires the # of bytes]\r\n");
        } else if (parse_u32(tok[2], &n) != 0 || n == 0u) {
            raw(b, "e-[Command 'db load' must be >0 bytes]\r\n");
        } else if (n > c->db_capacity) {
            mlperf_u32(b, "e-[Supplied buffer size exceeds the input size of ", c->db_capacity, " bytes]\r\n");
        } else {
            b->db_size = n;
            b->db_pos = 0;
            mlperf_u32(b, "m-[Expecting ", n, " bytes]\r\n");
        }
    } else if (str_eq(tok[1], "print")) {
        static const char digits[] = "0123456789abcdef";
        for (uint32_t i = 0; i < b->db_pos; i++) {
            char s[4];
            uint8_t v = c->db[i];
            if (i % 8u == 0u) {
                raw(b, "m-buffer-");
            }
            s[0] = digits[v >> 4];
            s[1] = digits[v & 0xFu];
            s[2] = (i + 1u) % 8u == 0u || i + 1u == b->db_pos ? 0 : '-';
            s[3] = 0;
            raw(b, s);
            if (s[2] == 0) {
                raw(b, "\r\n");
            }
        }
    } else {
        const char *hex = tok[1];
        uint32_t digits = str_len(hex);
        if (b->db_size == 0u) {
            raw(b, "e-[Send 'db load N' first]\r\n");
            return;
        }
        if (digits % 2u) {
            raw(b, "e-[Insufficent number of hex digits]\r\n");
            return;
        }
        for (uint32_t i = 0; i < digits; i += 2u) {
            int h = hex_val(hex[i]), l = hex_val(hex[i + 1u]);
            if (h < 0 || l < 0) {
                char s[] = "e-[Invalid hex digit '..']\r\n";
                s[22] = hex[i];
                s[23] = hex[i + 1u];
                raw(b, s);
                return;
            }
            if (b->db_pos < b->db_size) {
                c->db[b->db_pos++] = (uint8_t)((h << 4) | l);
                if (b->db_pos == b->db_size) {
                    raw(b, "m-load-done\r\n");
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
    if (ntok > 1u && (parse_u32(tok[1], &n) != 0 || n == 0u || n > TG_BENCH_MAX_RUNS)) {
        raw(b, "e-[Inference iterations must be >0]\r\n");
        return;
    }
    if (ntok > 2u && (parse_u32(tok[2], &w) != 0 || w > TG_BENCH_MAX_WARMUP)) {
        raw(b, "e-[Inference warmup must be >=0]\r\n");
        return;
    }
    if (mlperf_load_tensor(b) != 0) {
        return;
    }
    mlperf_u32(b, "m-warmup-start-", w, "\r\n");
    for (uint32_t i = 0; i < w; i++) {
        if (c->infer(c->ctx, &cyc) < 0) {
            raw(b, "e-[Inference failed]\r\n");
            return;
        }
    }
    raw(b, "m-warmup-done\r\n");
    mlperf_u32(b, "m-infer-start-", n, "\r\n");
    const uint32_t t0 = time_us(b);
    mlperf_timestamp(b, t0);
    uint64_t ticks = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (c->infer(c->ctx, &cyc) < 0) {
            raw(b, "e-[Inference failed]\r\n");
            return;
        }
        ticks += cyc;
        (void)time_us(b); /* keeps a 64-bit time base current across long loops */
    }
    const uint32_t khz = c->clock_hz / 1000u ? c->clock_hz / 1000u : 1u;
    mlperf_timestamp(b, t0 + (uint32_t)(ticks * 1000u / khz));
    raw(b, "m-infer-done\r\n");
    b->have_run = 1;
    mlperf_results(b);
}

static void mlperf(tg_bench_t *b)
{
    char *tok[MAX_TOKENS];
    uint32_t ntok = tokenize(b->line, tok);
    if (ntok == 0u) {
        raw(b, "e-[Unknown command: ]\r\n");
    } else if (ntok > MAX_TOKENS) {
        raw(b, "e-[Too many arguments]\r\n");
    } else if (str_eq(tok[0], "name")) {
        raw(b, "m-name-dut-[tinygen]\r\n");
    } else if (str_eq(tok[0], "timestamp")) {
        mlperf_timestamp(b, time_us(b));
    } else if (str_eq(tok[0], "profile")) {
        raw(b, "m-profile-[ULPMark for tinyML Firmware V0.0.1]\r\n");
        if (b->cfg->mlperf_model) {
            raw(b, "m-model-[");
            raw(b, b->cfg->mlperf_model);
            raw(b, "]\r\n");
        } else {
            raw(b, "e-[No MLPerf Tiny model id in this build: rebuild with tinygen build --mlperf "
                   "kws01|ic01|vww01|ad01]\r\n");
        }
    } else if (str_eq(tok[0], "help")) {
        raw(b, "ULPMark for tinyML Firmware V0.0.1 (tinygen)\r\n\r\n"
               "help         : Print this information\r\n"
               "name         : Print the name of the device\r\n"
               "timestamp    : Generate a timestamp\r\n"
               "db SUBCMD    : Manipulate a generic byte buffer\r\n"
               "  load N     : Allocate N bytes and set load counter\r\n"
               "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes\r\n"
               "  print      : Print the buffer as hex\r\n"
               "infer N [W=10]: Load input, execute N inferences after W warmup loops\r\n"
               "results      : Return the result fp32 vector\r\n");
    } else if (str_eq(tok[0], "db")) {
        mlperf_db(b, tok, ntok);
    } else if (str_eq(tok[0], "infer")) {
        mlperf_infer(b, tok, ntok);
    } else if (str_eq(tok[0], "results")) {
        if (b->have_run) {
            mlperf_results(b);
        } else {
            raw(b, "e-[No inference yet]\r\n");
        }
    } else {
        /* tok[0] is at most TG_BENCH_LINE_MAX bytes and NUL-terminated inside line[] */
        raw(b, "e-[Unknown command: ");
        raw(b, tok[0]);
        raw(b, "]\r\n");
    }
    raw(b, "m-ready\r\n");
}

/* ---- byte input ---- */

void tg_bench_feed(tg_bench_t *b, char c)
{
    if (c == '\n' || c == '\r' || c == '%') {
        if (b->overflow) {
            if (c == '%') {
                raw(b, "e-[Command too long]\r\nm-ready\r\n");
            } else {
                b->olen = 0;
                put(b, "ERR 1 line too long: at most ");
                put_u32(b, TG_BENCH_LINE_MAX);
                put(b, " bytes");
                line_end(b);
            }
        } else {
            b->line[b->len] = 0;
            if (c == '%') {
                mlperf(b);
            } else if (b->len > 0u) {
                native(b);
            }
        }
        b->len = 0;
        b->overflow = 0;
        return;
    }
    if (c == 0) {
        c = '?'; /* a NUL byte must not cut the line short silently */
    }
    if (b->len < TG_BENCH_LINE_MAX) {
        b->line[b->len++] = c;
    } else {
        b->overflow = 1;
    }
}
