/* A fake model for running tg_bench.c on the host (fuzzing, protocol tests):
 * output[i] = input[i % in_size] ^ (i * 7), 3 layers of 100/200/300 cycles.
 * mode: the MLPerf input conversion (TG_BENCH_MLPERF_IN_*); FLOAT32 also scores with the MSE
 * (as ad01), input scale 0.5, zero point -3. db: in_size bytes per element of mode. */
#ifndef BENCH_FAKE_H
#define BENCH_FAKE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "tg_bench.h"

typedef struct {
    int8_t *in, *out;
    uint8_t *db;
    uint8_t mode;
    uint32_t in_size, out_size, runs;
    uint64_t written;
} fake_t;

static int32_t fake_infer(void *ctx, uint32_t *cycles)
{
    fake_t *f = (fake_t *)ctx;
    for (uint32_t i = 0; i < f->out_size; i++) {
        f->out[i] = (int8_t)(f->in[i % f->in_size] ^ (int8_t)(i * 7u));
    }
    f->runs++;
    *cycles = 600u + (f->runs % 3u);
    return 0;
}

static int32_t fake_layer(void *ctx, uint32_t layer, uint32_t *cycles)
{
    (void)ctx;
    if (layer >= 3u) {
        return -1;
    }
    *cycles = 100u * (layer + 1u);
    return 0;
}

static uint32_t fake_time(void *ctx)
{
    fake_t *f = (fake_t *)ctx;
    return f->runs * 10u;
}

static void fake_config(tg_bench_config_t *c, fake_t *f, void (*write)(void *, const char *, uint32_t))
{
    c->ctx = f;
    c->write = write;
    c->infer = fake_infer;
    c->layer_cycles = fake_layer;
    c->time_us = fake_time;
    c->model_hash = "00112233deadbeef";
    c->board = "host";
    c->counter = "fake";
    c->mlperf_model = f->mode == TG_BENCH_MLPERF_IN_FLOAT32 ? "ad01" : (f->mode ? "ic01" : "kws01");
    c->timestamp_pulse = 0;
    c->mlperf_input = f->mode;
    c->mlperf_result = f->mode == TG_BENCH_MLPERF_IN_FLOAT32 ? TG_BENCH_MLPERF_RES_MSE : TG_BENCH_MLPERF_RES_VECTOR;
    c->db = f->db;
    c->db_capacity = f->in_size * (f->mode == TG_BENCH_MLPERF_IN_FLOAT32 ? 4u : 1u);
    c->in_scale = 0.5f;
    c->in_zp = -3;
    c->clock_hz = 1000000u;
    c->in_size = f->in_size;
    c->out_size = f->out_size;
    c->num_layers = 3u;
    c->input = f->in;
    c->output = f->out;
    c->out_scale = 0.00390625f;
    c->out_zp = -128;
}
#endif
