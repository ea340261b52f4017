/* tinygen bench protocol: parser and native command handlers (see tg_bench.h, docs/bench.md);
 * the MLPerf Tiny commands are in tg_bench_mlperf.c.
 * No hardware access and no libc beyond <stdint.h>: compiles for the host (fuzz/). */
#include "tg_bench.h"
#include "tg_bench_internal.h"


/* ---- small string helpers (no libc) ---- */

uint32_t tg_bench_str_len(const char *s)
{
    uint32_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

int tg_bench_str_eq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

int tg_bench_hex_val(char c)
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
int tg_bench_parse_u32(const char *s, uint32_t *v)
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
        int d = tg_bench_hex_val(s[n]);
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

void tg_bench_raw(tg_bench_t *b, const char *s)
{
    b->cfg->write(b->cfg->ctx, s, tg_bench_str_len(s));
}

void tg_bench_put(tg_bench_t *b, const char *s)
{
    while (*s && b->olen < TG_BENCH_OUT_MAX - 16u) { /* room for " *crc\r\n" */
        b->out[b->olen++] = *s++;
    }
}

void tg_bench_put_u64(tg_bench_t *b, uint64_t v)
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
    tg_bench_put(b, s);
}

void tg_bench_put_u32(tg_bench_t *b, uint32_t v)
{
    tg_bench_put_u64(b, v);
}

static void put_i32(tg_bench_t *b, int32_t v)
{
    if (v < 0) {
        tg_bench_put(b, "-");
        tg_bench_put_u64(b, (uint64_t)(0u - (uint32_t)v));
    } else {
        tg_bench_put_u64(b, (uint64_t)v);
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
    tg_bench_put(b, s);
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
    tg_bench_put(b, "ERR ");
    put_i32(b, code);
    tg_bench_put(b, " ");
    tg_bench_put(b, reason);
    line_end(b);
}

static void banner(tg_bench_t *b)
{
    const tg_bench_config_t *c = b->cfg;
    b->olen = 0;
    tg_bench_put(b, "TG_BENCH v");
    tg_bench_put_u32(b, TG_BENCH_VERSION);
    tg_bench_put(b, " model=");
    tg_bench_put(b, c->model_hash);
    tg_bench_put(b, " board=");
    tg_bench_put(b, c->board);
    tg_bench_put(b, " clock=");
    tg_bench_put_u32(b, c->clock_hz);
    tg_bench_put(b, " counter=");
    tg_bench_put(b, c->counter);
    tg_bench_put(b, " in=");
    tg_bench_put_u32(b, c->in_size);
    tg_bench_put(b, " out=");
    tg_bench_put_u32(b, c->out_size);
    tg_bench_put(b, " layers=");
    tg_bench_put_u32(b, c->num_layers);
    tg_bench_put(b, " maxline=");
    tg_bench_put_u32(b, TG_BENCH_LINE_MAX);
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

uint32_t tg_bench_time_us(tg_bench_t *b)
{
    return b->cfg->time_us ? b->cfg->time_us(b->cfg->ctx) : 0u;
}

void tg_bench_mlperf_u32(tg_bench_t *b, const char *prefix, uint32_t v, const char *suffix)
{
    b->olen = 0;
    tg_bench_put(b, prefix);
    tg_bench_put_u32(b, v);
    tg_bench_put(b, suffix);
    b->cfg->write(b->cfg->ctx, b->out, b->olen);
    b->olen = 0;
}

void tg_bench_boot(tg_bench_t *b)
{
    banner(b);
    tg_bench_raw(b, b->cfg->timestamp_pulse ? "m-timestamp-mode-energy\r\n" : "m-timestamp-mode-performance\r\n");
    tg_bench_mlperf_timestamp(b, tg_bench_time_us(b));
    tg_bench_raw(b, "m-init-done\r\nm-ready\r\n");
}

/* ---- native commands ---- */

static void dump(tg_bench_t *b, const char *what, const int8_t *data, uint32_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (uint32_t off = 0; off < n; off += TG_BENCH_HEX_PER_LINE) {
        uint32_t k = n - off < TG_BENCH_HEX_PER_LINE ? n - off : TG_BENCH_HEX_PER_LINE;
        b->olen = 0;
        tg_bench_put(b, "D ");
        tg_bench_put_u32(b, off);
        tg_bench_put(b, " ");
        for (uint32_t i = 0; i < k; i++) {
            uint8_t v = (uint8_t)data[off + i];
            b->out[b->olen++] = digits[v >> 4];
            b->out[b->olen++] = digits[v & 0xFu];
        }
        line_end(b);
    }
    b->olen = 0;
    tg_bench_put(b, "OK ");
    tg_bench_put(b, what);
    tg_bench_put(b, " ");
    tg_bench_put_u32(b, n);
    tg_bench_put(b, " crc=");
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
    if (ntok != 3u || tg_bench_parse_u32(tok[1], &off) != 0) {
        err(b, TG_BENCH_E_ARGS, "usage: load <offset> <hex bytes> *<crc32>");
        return;
    }
    const char *hex = tok[2];
    uint32_t digits = tg_bench_str_len(hex);
    if (digits == 0u || digits % 2u) {
        err(b, TG_BENCH_E_HEX, "odd number of hex digits");
        return;
    }
    for (uint32_t i = 0; i < digits; i++) {
        if (tg_bench_hex_val(hex[i]) < 0) {
            err(b, TG_BENCH_E_HEX, "bad hex digit");
            return;
        }
    }
    uint32_t n = digits / 2u;
    if (off > c->in_size || n > c->in_size - off) {
        b->olen = 0;
        tg_bench_put(b, "ERR 5 load past the input: offset ");
        tg_bench_put_u32(b, off);
        tg_bench_put(b, " + ");
        tg_bench_put_u32(b, n);
        tg_bench_put(b, " bytes > ");
        tg_bench_put_u32(b, c->in_size);
        line_end(b);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        c->input[off + i] = (int8_t)(uint8_t)((tg_bench_hex_val(hex[2u * i]) << 4) | tg_bench_hex_val(hex[2u * i + 1u]));
    }
    b->olen = 0;
    tg_bench_put(b, "OK load ");
    tg_bench_put_u32(b, off);
    tg_bench_put(b, " ");
    tg_bench_put_u32(b, n);
    line_end(b);
}

static void cmd_run(tg_bench_t *b, char **tok, uint32_t ntok)
{
    const tg_bench_config_t *c = b->cfg;
    uint32_t n, warm = 0, want;
    if (ntok < 2u || ntok > 4u || tg_bench_parse_u32(tok[1], &n) != 0 || (ntok > 2u && tg_bench_parse_u32(tok[2], &warm) != 0)) {
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
            tg_bench_put(b, "ERR 6 input crc mismatch: device has ");
            put_hex32(b, have);
            tg_bench_put(b, ", host expects ");
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
            tg_bench_put(b, "ERR 8 model run failed: rc=");
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
        tg_bench_put(b, i < warm ? "W " : "T ");
        tg_bench_put_u32(b, i < warm ? i : i - warm);
        tg_bench_put(b, " ");
        tg_bench_put_u32(b, cyc);
        line_end(b);
        if (i >= warm) {
            total += cyc;
            lo = cyc < lo ? cyc : lo;
            hi = cyc > hi ? cyc : hi;
        }
    }
    b->have_run = 1;
    b->olen = 0;
    tg_bench_put(b, "OK run ");
    tg_bench_put_u32(b, n);
    tg_bench_put(b, " ");
    tg_bench_put_u32(b, warm);
    tg_bench_put(b, " total=");
    tg_bench_put_u64(b, total);
    tg_bench_put(b, " min=");
    tg_bench_put_u32(b, lo);
    tg_bench_put(b, " max=");
    tg_bench_put_u32(b, hi);
    tg_bench_put(b, " out=");
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
        tg_bench_put(b, "L ");
        tg_bench_put_u32(b, i);
        tg_bench_put(b, " ");
        tg_bench_put_u32(b, cyc);
        line_end(b);
    }
    b->olen = 0;
    tg_bench_put(b, "OK layers ");
    tg_bench_put_u32(b, c->num_layers);
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
        tg_bench_put(b, lines[i]);
        line_end(b);
    }
    b->olen = 0;
    tg_bench_put(b, "OK help");
    line_end(b);
}

/* Splits s in place on spaces/tabs; returns the number of tokens, or TG_BENCH_MAX_TOKENS + 1 if more. */
uint32_t tg_bench_tokenize(char *s, char **tok)
{
    uint32_t n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t') {
            *s++ = 0;
        }
        if (!*s) {
            break;
        }
        if (n == TG_BENCH_MAX_TOKENS) {
            return TG_BENCH_MAX_TOKENS + 1u;
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
    char *tok[TG_BENCH_MAX_TOKENS];
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
            tg_bench_put(b, "ERR 6 line crc mismatch: computed ");
            put_hex32(b, have);
            tg_bench_put(b, ", line says ");
            put_hex32(b, want);
            line_end(b);
            return;
        }
        b->line[len - 10u] = 0;
        has_crc = 1;
    }
    uint32_t ntok = tg_bench_tokenize(s, tok);
    if (ntok == 0u) {
        if (has_crc) {
            err(b, TG_BENCH_E_COMMAND, "empty command");
        }
        return;
    }
    if (ntok > TG_BENCH_MAX_TOKENS) {
        err(b, TG_BENCH_E_ARGS, "too many arguments");
        return;
    }
    if (tg_bench_str_eq(tok[0], "hello")) {
        if (ntok > 2u || (ntok == 2u && tg_bench_str_len(tok[1]) > 16u)) {
            err(b, TG_BENCH_E_ARGS, "usage: hello [token of up to 16 characters]");
            return;
        }
        banner(b);
        b->olen = 0;
        tg_bench_put(b, "OK hello");
        if (ntok == 2u) {
            tg_bench_put(b, " ");
            tg_bench_put(b, tok[1]);
        }
        line_end(b);
    } else if (tg_bench_str_eq(tok[0], "load")) {
        cmd_load(b, tok, ntok, has_crc);
    } else if (tg_bench_str_eq(tok[0], "run")) {
        cmd_run(b, tok, ntok);
    } else if (tg_bench_str_eq(tok[0], "layers") && ntok == 1u) {
        cmd_layers(b);
    } else if (tg_bench_str_eq(tok[0], "out") && ntok == 1u) {
        if (!b->have_run) {
            err(b, TG_BENCH_E_NODATA, "no run yet: send run first");
        } else {
            dump(b, "out", b->cfg->output, b->cfg->out_size);
        }
    } else if (tg_bench_str_eq(tok[0], "in") && ntok == 1u) {
        dump(b, "in", b->cfg->input, b->cfg->in_size);
    } else if (tg_bench_str_eq(tok[0], "help") && ntok == 1u) {
        cmd_help(b);
    } else {
        err(b, TG_BENCH_E_COMMAND, "unknown command (try help)");
    }
}

/* ---- byte input ---- */

void tg_bench_feed(tg_bench_t *b, char c)
{
    if (c == '\n' || c == '\r' || c == '%') {
        if (b->overflow) {
            if (c == '%') {
                tg_bench_raw(b, "e-[Command too long]\r\nm-ready\r\n");
            } else {
                b->olen = 0;
                tg_bench_put(b, "ERR 1 line too long: at most ");
                tg_bench_put_u32(b, TG_BENCH_LINE_MAX);
                tg_bench_put(b, " bytes");
                line_end(b);
            }
        } else {
            b->line[b->len] = 0;
            if (c == '%') {
                tg_bench_mlperf(b);
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
