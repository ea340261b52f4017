/* tinygen bench protocol: the device side of `tinygen bench` and of MLPerf Tiny's runner.
 *
 * Pure C99, no hardware access: the platform (tg_main.c on the device, fuzz/ on the host)
 * passes a tg_bench_config_t with callbacks, then feeds every received byte to
 * tg_bench_feed(). See docs/bench.md for the full protocol.
 *
 * Native protocol v1 (lines end with '\n' or '\r'):
 *   hello [token]                 -> TG_BENCH v1 model=.. board=.. clock=.. counter=.. in=.. out=.. layers=.. maxline=..
 *                                    OK hello [token]
 *   load <offset> <hex> *<crc>    -> OK load <offset> <bytes>       (the line CRC is required)
 *   run <n> [warmup] [in-crc]     -> W <i> <cycles> (warm-ups), T <i> <cycles> (timed),
 *                                    OK run <n> <warmup> total=.. min=.. max=.. out=<crc>
 *   layers                        -> L <i> <cycles> ..., OK layers <n>
 *   out | in                      -> D <offset> <hex, 64 bytes a line> ..., OK out|in <bytes> crc=<crc>
 *   help                          -> H <text> ..., OK help
 * Any command may end with " *XXXXXXXX", the CRC-32 of the text before " *"; the device
 * rejects the line on mismatch. Every line of a native reply ends with " *XXXXXXXX" too.
 * Errors: "ERR <code> <reason>" (TG_BENCH_E_* below); nothing is ever written out of bounds.
 *
 * MLPerf Tiny (EEMBC runner) commands end with '%': name% profile% timestamp% help%
 * db load N% db HEX% db print% infer N [W]% results%; replies start with "m-" ("e-" on
 * error) and every command ends with "m-ready". As the reference DUTs' th_load_tensor /
 * th_results (mlcommons/tiny benchmark/reference_submissions): the db bytes are converted
 * into the int8 input once per infer, before the warm-ups (mlperf_input below), and the
 * result is the dequantized output or, for ad01, one score (mlperf_result).
 */
#ifndef TG_BENCH_H
#define TG_BENCH_H

#include <stdint.h>

#define TG_BENCH_VERSION 1
#define TG_BENCH_LINE_MAX 600u     /* bytes of one command, terminator excluded */
#define TG_BENCH_OUT_MAX 256u      /* bytes of one reply line */
#define TG_BENCH_HEX_PER_LINE 64u  /* tensor bytes per D line */
#define TG_BENCH_MAX_RUNS 100000u
#define TG_BENCH_MAX_WARMUP 10000u

#define TG_BENCH_E_LINE 1      /* line too long */
#define TG_BENCH_E_COMMAND 2   /* unknown command */
#define TG_BENCH_E_ARGS 3      /* missing, extra or malformed argument */
#define TG_BENCH_E_HEX 4       /* bad hex data */
#define TG_BENCH_E_RANGE 5     /* offset, length or count out of range */
#define TG_BENCH_E_CRC 6       /* line or input CRC mismatch */
#define TG_BENCH_E_NODATA 7    /* nothing to report yet (no run, no profile) */
#define TG_BENCH_E_MODEL 8     /* the model failed (init/run error) */

/* MLPerf db bytes -> int8 model input */
#define TG_BENCH_MLPERF_IN_INT8 0    /* as they are (kws01) */
#define TG_BENCH_MLPERF_IN_UINT8 1   /* uint8 pixels, byte - 128 (ic01, vww01) */
#define TG_BENCH_MLPERF_IN_FLOAT32 2 /* little-endian float32, round(x / in_scale) + in_zp, saturated (ad01) */
/* MLPerf results */
#define TG_BENCH_MLPERF_RES_VECTOR 0 /* every output value dequantized (kws01, ic01, vww01) */
#define TG_BENCH_MLPERF_RES_MSE 1    /* one score: mean squared error of the dequantized output
                                      * against the float input (ad01) */

typedef struct {
    void *ctx;
    /* Sends n bytes to the host. */
    void (*write)(void *ctx, const char *s, uint32_t n);
    /* Runs the model once on `input` and leaves the result in `output`; *cycles = counter
     * ticks of the inference alone (tg_model_run: the input and output copies excluded).
     * Returns 0 or a negative error. */
    int32_t (*infer)(void *ctx, uint32_t *cycles);
    /* Counter ticks of layer i in the last inference: 0, or -1 when not available. May be NULL. */
    int32_t (*layer_cycles)(void *ctx, uint32_t layer, uint32_t *cycles);
    /* Microseconds since boot (MLPerf m-lap-us). May be NULL (reads 0). */
    uint32_t (*time_us)(void *ctx);
    const char *model_hash;
    const char *board;
    const char *counter;           /* "dwt" / "systick" */
    const char *mlperf_model;      /* "kws01", "ad01", ... for MLPerf's profile%; NULL: not set */
    /* Energy mode (EEMBC EnergyRunner): timestamps are a pulse on a GPIO pin instead of
     * m-lap-us lines. NULL: performance mode. */
    void (*timestamp_pulse)(void *ctx);
    uint8_t mlperf_input;          /* TG_BENCH_MLPERF_IN_* */
    uint8_t mlperf_result;         /* TG_BENCH_MLPERF_RES_* */
    uint8_t *db;                   /* db_capacity bytes: the MLPerf db buffer */
    uint32_t db_capacity;          /* in_size x bytes per element of mlperf_input */
    float in_scale;                /* MLPerf float32 input: quantization of the model input */
    int32_t in_zp;
    uint32_t clock_hz;
    uint32_t in_size;
    uint32_t out_size;
    uint32_t num_layers;
    int8_t *input;                 /* in_size bytes: the staging input written by load, or
                                    * converted from db when an MLPerf infer starts */
    const int8_t *output;          /* out_size bytes: the output of the last inference */
    float out_scale;               /* MLPerf results: (q - out_zp) * out_scale */
    int32_t out_zp;
} tg_bench_config_t;

typedef struct {
    const tg_bench_config_t *cfg;
    char line[TG_BENCH_LINE_MAX + 1];
    uint32_t len;
    uint8_t overflow;
    uint8_t have_run;
    uint32_t db_size;              /* MLPerf db load N */
    uint32_t db_pos;
    char out[TG_BENCH_OUT_MAX];
    uint32_t olen;
} tg_bench_t;

void tg_bench_init(tg_bench_t *b, const tg_bench_config_t *cfg);
/* Boot announcement: the TG_BENCH banner, then MLPerf's m-init-done / m-ready. */
void tg_bench_boot(tg_bench_t *b);
/* One received byte. */
void tg_bench_feed(tg_bench_t *b, char c);
/* CRC-32 (IEEE 802.3, as zlib.crc32); start with crc = 0. */
uint32_t tg_bench_crc32(uint32_t crc, const void *data, uint32_t n);

#endif /* TG_BENCH_H */
