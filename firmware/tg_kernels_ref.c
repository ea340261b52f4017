/*
 * tinygen portable C99 reference kernels (tg_ref_*), bit-exact with the TFLite
 * reference interpreter (BUILTIN_REF op resolver) for int8 models.
 *
 * Written from the published algorithms (TFLite quantization spec, gemmlowp
 * fixed-point arithmetic); no TFLite or CMSIS-NN source is included.
 *
 * Integer arithmetic only, except QUANTIZE/DEQUANTIZE and MEAN's float mode,
 * which reproduce TFLite's float32 formulas. No malloc, no libc beyond
 * <string.h>/<stdint.h>. Every kernel validates its arguments first and
 * returns TG_ERR_ARG without touching the output when they are inconsistent.
 */
#include "tg_nn.h"

#include <string.h>

#define TG_I8_MIN (-128)
#define TG_I8_MAX 127

/* ---------------------------------------------------------------------------------------- */
/* Fixed-point helpers (gemmlowp / TFLite semantics, signed overflow avoided via int64/uint32) */
/* ---------------------------------------------------------------------------------------- */

/* x * 2^n with int32 wrap-around (TFLite's x * (1 << n) on two's complement hardware). */
static int32_t tg_shl_wrap(int32_t x, int32_t n)
{
    return (int32_t)(uint32_t)((uint32_t)x << n);
}

static int32_t tg_add_wrap(int32_t a, int32_t b)
{
    return (int32_t)(uint32_t)((uint32_t)a + (uint32_t)b);
}

/* gemmlowp SaturatingRoundingDoublingHighMul. */
static int32_t tg_srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge, num, q;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    num = ab + nudge;
    /* C99 division truncates toward zero, as the C++ reference does */
    q = num / ((int64_t)1 << 31);
    return (int32_t)q;
}

/* gemmlowp RoundingDivideByPOT (round half away from zero), exponent in [0, 31]. */
static int32_t tg_rdbpot(int32_t x, int32_t exponent)
{
    int64_t mask, rem, threshold, r;
    if (exponent <= 0) {
        return x;
    }
    mask = ((int64_t)1 << exponent) - 1;
    rem = (int64_t)x & mask;
    threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    /* arithmetic shift of a negative value without relying on implementation-defined >> */
    if (x >= 0) {
        r = (int64_t)x >> exponent;
    } else {
        r = -((-(int64_t)x - 1) >> exponent) - 1;
    }
    return (int32_t)(r + (rem > threshold ? 1 : 0));
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding); shift > 0 is a left shift. */
static int32_t tg_mbqm(int32_t x, int32_t mult, int32_t shift)
{
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    return tg_rdbpot(tg_srdhm(tg_shl_wrap(x, left), mult), right);
}

/* Single-rounding requantization: (x * mult + 2^(30 - shift)) >> (31 - shift), ties toward
 * +infinity. This is what TFLite 2.21's FULLY_CONNECTED int8 produces under BUILTIN_REF (its
 * GEMM back end applies the multiplier this way), unlike CONV/DEPTHWISE which double-round. */
static int32_t tg_mbqm_single(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t total = 31 - shift; /* 1 .. 62 */
    const int64_t v = (int64_t)x * (int64_t)mult + ((int64_t)1 << (total - 1));
    int64_t r;
    /* floor division by 2^total without relying on >> of negative values */
    if (v >= 0) {
        r = v >> total;
    } else {
        r = -((-(v + 1)) >> total) - 1;
    }
    if (r > INT32_MAX) {
        return INT32_MAX;
    }
    if (r < INT32_MIN) {
        return INT32_MIN;
    }
    return (int32_t)r;
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<e> for e > 0. */
static int32_t tg_sat_shl(int32_t x, int32_t e)
{
    int32_t threshold = (int32_t)(((int64_t)1 << (31 - e)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return tg_shl_wrap(x, e);
}

static int32_t tg_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* The CONV_2D / DEPTHWISE_CONV_2D epilogue of output channel oc: + bias (wrapping, as TFLite's
 * int32 sum), per-channel requantization, + output offset, activation clamp. */
static int8_t tg_conv_out(const tg_conv_params_t *p, int32_t oc, int32_t acc)
{
    if (p->bias != NULL) {
        acc = tg_add_wrap(acc, p->bias[oc]);
    }
    acc = tg_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
    return (int8_t)tg_clamp(acc, p->act_min, p->act_max);
}

static int tg_valid_shift(int32_t s)
{
    return s >= -31 && s <= 30;
}

static int tg_valid_act(int32_t lo, int32_t hi)
{
    return lo >= TG_I8_MIN && hi <= TG_I8_MAX && lo <= hi;
}

static int tg_valid_offset(int32_t off)
{
    return off >= -255 && off <= 255;
}

/* Elements of a 4-D shape, or -1 if a dim is non-positive or the count exceeds INT32_MAX. */
static int64_t tg_dims_count(const tg_dims_t *d)
{
    int64_t n;
    if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c <= 0) {
        return -1;
    }
    n = (int64_t)d->n * d->h;
    n *= d->w;
    if (n > INT32_MAX) {
        return -1;
    }
    n *= d->c;
    if (n > INT32_MAX) {
        return -1;
    }
    return n;
}

/* An output extent must be reachable with TFLite SAME/VALID padding:
 * (out - 1) * stride + eff_k <= in + pad_before + pad_after, pad_after <= pad_before + 1. */
static int tg_valid_window(int32_t in, int32_t out, int32_t k, int32_t stride, int32_t dil, int32_t pad)
{
    int64_t eff_k;
    if (in <= 0 || out <= 0 || k <= 0 || stride <= 0 || dil <= 0 || pad < 0) {
        return 0;
    }
    eff_k = (int64_t)(k - 1) * dil + 1;
    if (pad >= eff_k) {
        return 0;
    }
    return (int64_t)(out - 1) * stride + eff_k <= (int64_t)in + 2 * (int64_t)pad + 1;
}

static int32_t tg_off4(const tg_dims_t *d, int32_t n, int32_t h, int32_t w, int32_t c)
{
    return ((n * d->h + h) * d->w + w) * d->c + c;
}

/* ---------------------------------------------------------------------------------------- */
/* CONV_2D / DEPTHWISE_CONV_2D                                                              */
/* ---------------------------------------------------------------------------------------- */

static int tg_conv_common_ok(const tg_conv_params_t *p, const int8_t *in, const int8_t *out)
{
    if (p == NULL || in == NULL || out == NULL || p->weights == NULL || p->mult == NULL || p->shift == NULL) {
        return 0;
    }
    if (tg_dims_count(&p->in) < 0 || tg_dims_count(&p->out) < 0 || tg_dims_count(&p->filter) < 0) {
        return 0;
    }
    if (p->out.n != p->in.n) {
        return 0;
    }
    if (!tg_valid_window(p->in.h, p->out.h, p->filter.h, p->stride_h, p->dil_h, p->pad_h) ||
        !tg_valid_window(p->in.w, p->out.w, p->filter.w, p->stride_w, p->dil_w, p->pad_w)) {
        return 0;
    }
    if (!tg_valid_offset(p->in_offset) || !tg_valid_offset(p->out_offset) || !tg_valid_act(p->act_min, p->act_max)) {
        return 0;
    }
    return 1;
}

static int tg_shifts_ok(const int32_t *shift, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        if (!tg_valid_shift(shift[i])) {
            return 0;
        }
    }
    return 1;
}

int32_t tg_ref_conv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, oy, ox, oc, ky, kx, ic;
    if (!tg_conv_common_ok(p, in, out)) {
        return TG_ERR_ARG;
    }
    if (p->filter.n != p->out.c || p->filter.c != p->in.c) {
        return TG_ERR_ARG;
    }
    if (!tg_shifts_ok(p->shift, p->out.c)) {
        return TG_ERR_ARG;
    }
    for (b = 0; b < p->out.n; ++b) {
        for (oy = 0; oy < p->out.h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out.w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (oc = 0; oc < p->out.c; ++oc) {
                    int32_t acc = 0;
                    for (ky = 0; ky < p->filter.h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in.h) {
                            continue;
                        }
                        for (kx = 0; kx < p->filter.w; ++kx) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            const int8_t *ip;
                            const int8_t *wp;
                            if (ix < 0 || ix >= p->in.w) {
                                continue;
                            }
                            ip = in + tg_off4(&p->in, b, iy, ix, 0);
                            wp = p->weights + tg_off4(&p->filter, oc, ky, kx, 0);
                            for (ic = 0; ic < p->in.c; ++ic) {
                                acc = tg_add_wrap(acc, ((int32_t)ip[ic] + p->in_offset) * (int32_t)wp[ic]);
                            }
                        }
                    }
                    out[tg_off4(&p->out, b, oy, ox, oc)] = tg_conv_out(p, oc, acc);
                }
            }
        }
    }
    return TG_OK;
}

int32_t tg_ref_dwconv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, oy, ox, ic, m, ky, kx;
    if (!tg_conv_common_ok(p, in, out)) {
        return TG_ERR_ARG;
    }
    if (p->ch_mult <= 0 || p->filter.n != 1 || p->filter.c != p->out.c ||
        (int64_t)p->in.c * p->ch_mult != (int64_t)p->out.c) {
        return TG_ERR_ARG;
    }
    if (!tg_shifts_ok(p->shift, p->out.c)) {
        return TG_ERR_ARG;
    }
    for (b = 0; b < p->out.n; ++b) {
        for (oy = 0; oy < p->out.h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out.w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (ic = 0; ic < p->in.c; ++ic) {
                    for (m = 0; m < p->ch_mult; ++m) {
                        const int32_t oc = ic * p->ch_mult + m;
                        int32_t acc = 0;
                        for (ky = 0; ky < p->filter.h; ++ky) {
                            const int32_t iy = iy0 + ky * p->dil_h;
                            if (iy < 0 || iy >= p->in.h) {
                                continue;
                            }
                            for (kx = 0; kx < p->filter.w; ++kx) {
                                const int32_t ix = ix0 + kx * p->dil_w;
                                int32_t iv, wv;
                                if (ix < 0 || ix >= p->in.w) {
                                    continue;
                                }
                                iv = (int32_t)in[tg_off4(&p->in, b, iy, ix, ic)] + p->in_offset;
                                wv = (int32_t)p->weights[tg_off4(&p->filter, 0, ky, kx, oc)];
                                acc = tg_add_wrap(acc, iv * wv);
                            }
                        }
                        out[tg_off4(&p->out, b, oy, ox, oc)] = tg_conv_out(p, oc, acc);
                    }
                }
            }
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* FULLY_CONNECTED                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* TRANSPOSE_CONV as TFLite's reference computes it (scatter of (in + in_offset) * w into an int32
 * buffer, + bias, per-channel requantization, clamp), written as a gather: output (oy, ox) sums
 * the input pixels iy = (oy + pad_h - ky) / stride_h that divide exactly, so no scratch. */
int32_t tg_ref_transpose_conv_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, oy, ox, oc, ky, kx, ic;
    if (p == NULL || in == NULL || out == NULL || p->weights == NULL || p->mult == NULL || p->shift == NULL ||
        in == out) {
        return TG_ERR_ARG;
    }
    if (tg_dims_count(&p->in) < 0 || tg_dims_count(&p->out) < 0 || tg_dims_count(&p->filter) < 0 ||
        p->in.n != p->out.n || p->filter.n != p->out.c || p->filter.c != p->in.c || p->stride_h <= 0 ||
        p->stride_w <= 0 || p->pad_h < 0 || p->pad_w < 0 || !tg_valid_offset(p->in_offset) ||
        !tg_valid_offset(p->out_offset) || !tg_valid_act(p->act_min, p->act_max) || !tg_shifts_ok(p->shift, p->out.c)) {
        return TG_ERR_ARG;
    }
    for (b = 0; b < p->out.n; ++b) {
        for (oy = 0; oy < p->out.h; ++oy) {
            for (ox = 0; ox < p->out.w; ++ox) {
                for (oc = 0; oc < p->out.c; ++oc) {
                    int32_t acc = 0;
                    for (ky = 0; ky < p->filter.h; ++ky) {
                        const int32_t ty = oy + p->pad_h - ky;
                        const int32_t iy = ty / p->stride_h;
                        if (ty < 0 || ty % p->stride_h != 0 || iy >= p->in.h) {
                            continue;
                        }
                        for (kx = 0; kx < p->filter.w; ++kx) {
                            const int32_t tx = ox + p->pad_w - kx;
                            const int32_t ix = tx / p->stride_w;
                            const int8_t *ip, *wp;
                            if (tx < 0 || tx % p->stride_w != 0 || ix >= p->in.w) {
                                continue;
                            }
                            ip = in + tg_off4(&p->in, b, iy, ix, 0);
                            wp = p->weights + tg_off4(&p->filter, oc, ky, kx, 0);
                            for (ic = 0; ic < p->in.c; ++ic) {
                                acc += ((int32_t)ip[ic] + p->in_offset) * (int32_t)wp[ic];
                            }
                        }
                    }
                    if (p->bias != NULL) {
                        acc += p->bias[oc];
                    }
                    acc = tg_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
                    out[tg_off4(&p->out, b, oy, ox, oc)] = (int8_t)tg_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
    return TG_OK;
}

int32_t tg_ref_fully_connected_s8(const tg_fc_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, o, i;
    if (p == NULL || in == NULL || out == NULL || p->weights == NULL || p->mult == NULL || p->shift == NULL) {
        return TG_ERR_ARG;
    }
    if (p->batches <= 0 || p->in_depth <= 0 || p->out_depth <= 0 ||
        (int64_t)p->batches * p->in_depth > INT32_MAX || (int64_t)p->batches * p->out_depth > INT32_MAX ||
        (int64_t)p->out_depth * p->in_depth > INT32_MAX) {
        return TG_ERR_ARG;
    }
    if (!tg_valid_offset(p->in_offset) || !tg_valid_offset(p->out_offset) || !tg_valid_act(p->act_min, p->act_max)) {
        return TG_ERR_ARG;
    }
    if (p->per_channel != 0 && p->per_channel != 1) {
        return TG_ERR_ARG;
    }
    if (!tg_shifts_ok(p->shift, p->per_channel ? p->out_depth : 1)) {
        return TG_ERR_ARG;
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *ip = in + b * p->in_depth;
        for (o = 0; o < p->out_depth; ++o) {
            const int8_t *wp = p->weights + o * p->in_depth;
            const int32_t q = p->per_channel ? o : 0;
            int32_t acc = 0;
            for (i = 0; i < p->in_depth; ++i) {
                acc = tg_add_wrap(acc, ((int32_t)ip[i] + p->in_offset) * (int32_t)wp[i]);
            }
            if (p->bias != NULL) {
                acc = tg_add_wrap(acc, p->bias[o]);
            }
            acc = tg_mbqm_single(acc, p->mult[q], p->shift[q]) + p->out_offset;
            out[b * p->out_depth + o] = (int8_t)tg_clamp(acc, p->act_min, p->act_max);
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* BATCH_MATMUL                                                                             */
/* ---------------------------------------------------------------------------------------- */

int32_t tg_ref_batch_matmul_s8(const tg_bmm_params_t *p, const int8_t *lhs, const int8_t *rhs, int8_t *out)
{
    int32_t b0, b1, b2, i, j, k;
    int64_t total;
    if (p == NULL || lhs == NULL || rhs == NULL || out == NULL || p->rows <= 0 || p->cols <= 0 || p->depth <= 0 ||
        p->batch0 <= 0 || p->batch1 <= 0 || p->batch2 <= 0 || (p->adj_x & ~1) != 0 || (p->adj_y & ~1) != 0) {
        return TG_ERR_ARG;
    }
    total = (int64_t)p->batch0 * p->batch1 * p->batch2 * p->rows * p->cols;
    if (total > INT32_MAX || (int64_t)p->rows * p->depth > INT32_MAX || (int64_t)p->cols * p->depth > INT32_MAX ||
        p->lhs_step0 < 0 || p->lhs_step1 < 0 || p->lhs_step2 < 0 || p->rhs_step0 < 0 || p->rhs_step1 < 0 ||
        p->rhs_step2 < 0) {
        return TG_ERR_ARG;
    }
    if (!tg_valid_offset(p->lhs_offset) || !tg_valid_offset(p->rhs_offset) || !tg_valid_offset(p->out_offset) ||
        !tg_valid_shift(p->shift)) {
        return TG_ERR_ARG;
    }
    for (b0 = 0; b0 < p->batch0; ++b0) {
        for (b1 = 0; b1 < p->batch1; ++b1) {
            for (b2 = 0; b2 < p->batch2; ++b2) {
                const int8_t *lp = lhs + (int64_t)b0 * p->lhs_step0 + (int64_t)b1 * p->lhs_step1 +
                                   (int64_t)b2 * p->lhs_step2;
                const int8_t *rp = rhs + (int64_t)b0 * p->rhs_step0 + (int64_t)b1 * p->rhs_step1 +
                                   (int64_t)b2 * p->rhs_step2;
                int8_t *op = out + (((int64_t)b0 * p->batch1 + b1) * p->batch2 + b2) * p->rows * p->cols;
                for (i = 0; i < p->rows; ++i) {
                    for (j = 0; j < p->cols; ++j) {
                        int32_t acc = 0;
                        for (k = 0; k < p->depth; ++k) {
                            const int32_t a = lp[p->adj_x ? k * p->rows + i : i * p->depth + k];
                            const int32_t c = rp[p->adj_y ? j * p->depth + k : k * p->cols + j];
                            acc = tg_add_wrap(acc, (a + p->lhs_offset) * (c + p->rhs_offset));
                        }
                        acc = tg_mbqm(acc, p->mult, p->shift) + p->out_offset;
                        op[i * p->cols + j] = (int8_t)tg_clamp(acc, TG_I8_MIN, TG_I8_MAX);
                    }
                }
            }
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* AVERAGE_POOL_2D / MAX_POOL_2D                                                            */
/* ---------------------------------------------------------------------------------------- */

static int tg_pool_ok(const tg_pool_params_t *p, const int8_t *in, const int8_t *out)
{
    if (p == NULL || in == NULL || out == NULL) {
        return 0;
    }
    if (tg_dims_count(&p->in) < 0 || tg_dims_count(&p->out) < 0) {
        return 0;
    }
    if (p->out.n != p->in.n || p->out.c != p->in.c) {
        return 0;
    }
    if (!tg_valid_window(p->in.h, p->out.h, p->filter_h, p->stride_h, 1, p->pad_h) ||
        !tg_valid_window(p->in.w, p->out.w, p->filter_w, p->stride_w, 1, p->pad_w)) {
        return 0;
    }
    return tg_valid_act(p->act_min, p->act_max);
}

/* Visits the valid (unpadded) window of each output; mode 0 = average, 1 = max. */
static int32_t tg_pool(const tg_pool_params_t *p, const int8_t *in, int8_t *out, int is_max)
{
    int32_t b, oy, ox, c, y, x;
    if (!tg_pool_ok(p, in, out)) {
        return TG_ERR_ARG;
    }
    for (b = 0; b < p->out.n; ++b) {
        for (oy = 0; oy < p->out.h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t y_start = iy0 < 0 ? 0 : iy0;
            const int32_t y_end = iy0 + p->filter_h > p->in.h ? p->in.h : iy0 + p->filter_h;
            for (ox = 0; ox < p->out.w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t x_start = ix0 < 0 ? 0 : ix0;
                const int32_t x_end = ix0 + p->filter_w > p->in.w ? p->in.w : ix0 + p->filter_w;
                const int32_t count = (y_end - y_start) * (x_end - x_start);
                if (y_end <= y_start || x_end <= x_start) {
                    return TG_ERR_ARG; /* window entirely in padding (TFLite rejects it too) */
                }
                for (c = 0; c < p->out.c; ++c) {
                    int32_t acc = is_max ? TG_I8_MIN : 0;
                    for (y = y_start; y < y_end; ++y) {
                        for (x = x_start; x < x_end; ++x) {
                            const int32_t v = in[tg_off4(&p->in, b, y, x, c)];
                            if (is_max) {
                                acc = v > acc ? v : acc;
                            } else {
                                acc += v;
                            }
                        }
                    }
                    if (!is_max) {
                        /* rounded to nearest, halves away from zero (C division truncates) */
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    out[tg_off4(&p->out, b, oy, ox, c)] = (int8_t)tg_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
    return TG_OK;
}

int32_t tg_ref_avgpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out)
{
    return tg_pool(p, in, out, 0);
}

int32_t tg_ref_maxpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out)
{
    return tg_pool(p, in, out, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* ADD / MUL with 4-D broadcasting                                                          */
/* ---------------------------------------------------------------------------------------- */

static int tg_bcast_dim_ok(int32_t in, int32_t out)
{
    return in == out || in == 1;
}

static int tg_binary_ok(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, const int8_t *out)
{
    if (p == NULL || in1 == NULL || in2 == NULL || out == NULL) {
        return 0;
    }
    if (tg_dims_count(&p->in1) < 0 || tg_dims_count(&p->in2) < 0 || tg_dims_count(&p->out) < 0) {
        return 0;
    }
    if (!tg_bcast_dim_ok(p->in1.n, p->out.n) || !tg_bcast_dim_ok(p->in1.h, p->out.h) ||
        !tg_bcast_dim_ok(p->in1.w, p->out.w) || !tg_bcast_dim_ok(p->in1.c, p->out.c) ||
        !tg_bcast_dim_ok(p->in2.n, p->out.n) || !tg_bcast_dim_ok(p->in2.h, p->out.h) ||
        !tg_bcast_dim_ok(p->in2.w, p->out.w) || !tg_bcast_dim_ok(p->in2.c, p->out.c)) {
        return 0;
    }
    if (!tg_valid_offset(p->in1_offset) || !tg_valid_offset(p->in2_offset) || !tg_valid_offset(p->out_offset)) {
        return 0;
    }
    if (!tg_valid_shift(p->out_shift) || !tg_valid_act(p->act_min, p->act_max)) {
        return 0;
    }
    return 1;
}

static int32_t tg_bidx(const tg_dims_t *d, int32_t n, int32_t h, int32_t w, int32_t c)
{
    return tg_off4(d, d->n == 1 ? 0 : n, d->h == 1 ? 0 : h, d->w == 1 ? 0 : w, d->c == 1 ? 0 : c);
}

enum { TG_BIN_ADD, TG_BIN_MUL, TG_BIN_MAX, TG_BIN_MIN, TG_BIN_SQDIFF, TG_BIN_PRELU };

/* One output element of the binary op `mode` from the offset inputs a = in1 + in1_offset,
 * b = in2 + in2_offset (before out_offset and the clamp). */
static int32_t tg_binary_one(const tg_binary_params_t *p, int32_t a, int32_t b, int mode)
{
    switch (mode) {
    case TG_BIN_MUL:
        return tg_mbqm(a * b, p->out_mult, p->out_shift);
    case TG_BIN_MAX:
        return a > b ? a : b;
    case TG_BIN_MIN:
        return a < b ? a : b;
    case TG_BIN_SQDIFF: {
        /* TFLite int8 SQUARED_DIFFERENCE: |scaled| <= 255 * 2^7 / 2, so the square fits int32 */
        const int32_t d = tg_mbqm(tg_shl_wrap(a, p->left_shift), p->in1_mult, p->in1_shift) -
                          tg_mbqm(tg_shl_wrap(b, p->left_shift), p->in2_mult, p->in2_shift);
        return tg_mbqm(d * d, p->out_mult, p->out_shift);
    }
    case TG_BIN_PRELU: /* in2 is alpha: x >= 0 -> x * m1, else x * alpha * m2 */
        return a >= 0 ? tg_mbqm(a, p->in1_mult, p->in1_shift) : tg_mbqm(a * b, p->out_mult, p->out_shift);
    default: {
        const int32_t sa = tg_mbqm(tg_shl_wrap(a, p->left_shift), p->in1_mult, p->in1_shift);
        const int32_t sb = tg_mbqm(tg_shl_wrap(b, p->left_shift), p->in2_mult, p->in2_shift);
        return tg_mbqm(tg_add_wrap(sa, sb), p->out_mult, p->out_shift);
    }
    }
}

static int32_t tg_binary(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out, int mode)
{
    int32_t n, h, w, c;
    if (!tg_binary_ok(p, in1, in2, out)) {
        return TG_ERR_ARG;
    }
    if (mode == TG_BIN_ADD || mode == TG_BIN_SQDIFF) {
        /* TFLite int8 ADD (left_shift 20) / SQUARED_DIFFERENCE (7): input shifts are right shifts (<= 0) */
        if (p->left_shift < 0 || p->left_shift > 22 || p->in1_shift > 0 || p->in2_shift > 0 ||
            !tg_valid_shift(p->in1_shift) || !tg_valid_shift(p->in2_shift)) {
            return TG_ERR_ARG;
        }
    }
    for (n = 0; n < p->out.n; ++n) {
        for (h = 0; h < p->out.h; ++h) {
            for (w = 0; w < p->out.w; ++w) {
                for (c = 0; c < p->out.c; ++c) {
                    const int32_t a = (int32_t)in1[tg_bidx(&p->in1, n, h, w, c)] + p->in1_offset;
                    const int32_t b = (int32_t)in2[tg_bidx(&p->in2, n, h, w, c)] + p->in2_offset;
                    const int32_t r = tg_binary_one(p, a, b, mode) + p->out_offset;
                    out[tg_off4(&p->out, n, h, w, c)] = (int8_t)tg_clamp(r, p->act_min, p->act_max);
                }
            }
        }
    }
    return TG_OK;
}

int32_t tg_ref_add_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return tg_binary(p, in1, in2, out, TG_BIN_ADD);
}

int32_t tg_ref_mul_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return tg_binary(p, in1, in2, out, TG_BIN_MUL);
}

/* MAXIMUM / MINIMUM: raw int8 values (offsets 0), as TFLite's maximum_minimum.cc. */
int32_t tg_ref_maximum_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return tg_binary(p, in1, in2, out, TG_BIN_MAX);
}

int32_t tg_ref_minimum_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return tg_binary(p, in1, in2, out, TG_BIN_MIN);
}

int32_t tg_ref_squared_difference_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return tg_binary(p, in1, in2, out, TG_BIN_SQDIFF);
}

int32_t tg_ref_prelu_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    if (p == NULL || !tg_valid_shift(p->in1_shift)) {
        return TG_ERR_ARG;
    }
    return tg_binary(p, in1, in2, out, TG_BIN_PRELU);
}

/* ---------------------------------------------------------------------------------------- */
/* SOFTMAX (gemmlowp fixed-point exp, as TFLite's reference int8 softmax)                    */
/* ---------------------------------------------------------------------------------------- */

/* exp(x) for x in [-1/4, 0), x and result in Q0.31: Taylor series around -1/8. */
static int32_t tg_exp_quarter(int32_t a)
{
    const int32_t c_exp_m1_8 = 1895147668;  /* exp(-1/8) in Q0.31 */
    const int32_t c_one_third = 715827883;  /* 1/3 in Q0.31 */
    const int32_t x = a + (1 << 28);        /* a + 1/8 */
    const int32_t x2 = tg_srdhm(x, x);
    const int32_t x3 = tg_srdhm(x2, x);
    const int32_t x4 = tg_srdhm(x2, x2);
    const int32_t x4_over_4 = tg_rdbpot(x4, 2);
    const int32_t poly = tg_rdbpot(tg_add_wrap(tg_srdhm(tg_add_wrap(x4_over_4, x3), c_one_third), x2), 1);
    return tg_add_wrap(c_exp_m1_8, tg_srdhm(c_exp_m1_8, tg_add_wrap(x, poly)));
}

/* exp(a) for a <= 0; a in Q5.26, result in Q0.31. */
static int32_t tg_exp_on_negative(int32_t a)
{
    /* exp(-2^k) in Q0.31 for k = -2 .. 4 (bits 24 .. 30 of the Q5.26 remainder) */
    static const int32_t k_mult[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t quarter = 1 << 24;
    const int32_t a_mod_quarter_minus_quarter = (a & (quarter - 1)) - quarter;
    int32_t result = tg_exp_quarter(tg_sat_shl(a_mod_quarter_minus_quarter, 5));
    const int32_t remainder = a_mod_quarter_minus_quarter - a;
    int32_t k;
    for (k = 0; k < 7; ++k) {
        if (remainder & (1 << (24 + k))) {
            result = tg_srdhm(result, k_mult[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 in and out: Newton-Raphson, 3 iterations. */
static int32_t tg_one_over_one_plus_x(int32_t a)
{
    const int32_t c_48_17 = 1515870810;      /* 48/17 in Q2.29 */
    const int32_t c_neg_32_17 = -1010580540; /* -32/17 in Q2.29 */
    const int32_t one_q2 = 1 << 29;
    int64_t sum = (int64_t)a + INT32_MAX;
    int32_t half_den, x, i;
    half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2); /* RoundingHalfSum(a, 1) */
    x = tg_add_wrap(c_48_17, tg_srdhm(half_den, c_neg_32_17));
    for (i = 0; i < 3; ++i) {
        const int32_t hdx = tg_srdhm(half_den, x);
        const int32_t one_minus = (int32_t)((int64_t)one_q2 - hdx);
        x = tg_add_wrap(x, tg_sat_shl(tg_srdhm(x, one_minus), 2));
    }
    return tg_sat_shl(x, 1);
}

static int32_t tg_clz32(uint32_t v)
{
    int32_t n = 0;
    if (v == 0) {
        return 32;
    }
    while ((v & 0x80000000u) == 0) {
        v <<= 1;
        ++n;
    }
    return n;
}

int32_t tg_ref_softmax_s8(const tg_softmax_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t r, i;
    if (p == NULL || in == NULL || out == NULL || p->rows <= 0 || p->row_size <= 0 ||
        (int64_t)p->rows * p->row_size > INT32_MAX || p->shift < 0 || p->shift > 30 || p->diff_min > 0 ||
        p->mult < 0) {
        return TG_ERR_ARG;
    }
    for (r = 0; r < p->rows; ++r) {
        const int8_t *ip = in + r * p->row_size;
        int8_t *op = out + r * p->row_size;
        int32_t max_v = TG_I8_MIN;
        int32_t sum = 0;
        int32_t headroom, bits_over_unit, recip, exponent;
        for (i = 0; i < p->row_size; ++i) {
            max_v = ip[i] > max_v ? ip[i] : max_v;
        }
        for (i = 0; i < p->row_size; ++i) {
            const int32_t diff = (int32_t)ip[i] - max_v;
            if (diff >= p->diff_min) {
                const int32_t scaled = tg_srdhm(tg_shl_wrap(diff, p->shift), p->mult);
                sum = tg_add_wrap(sum, tg_rdbpot(tg_exp_on_negative(scaled), 12)); /* Q0.31 -> Q12.19 */
            }
        }
        /* reciprocal of the Q12.19 sum: 1/sum = 2^-bits_over_unit / (1 + x) */
        headroom = tg_clz32((uint32_t)sum);
        bits_over_unit = 12 - headroom;
        recip = tg_one_over_one_plus_x(
            (int32_t)(uint32_t)(((uint32_t)sum << (headroom & 31)) - 0x80000000u));
        exponent = bits_over_unit + 31 - 8;
        for (i = 0; i < p->row_size; ++i) {
            const int32_t diff = (int32_t)ip[i] - max_v;
            int32_t v = TG_I8_MIN;
            if (diff >= p->diff_min) {
                const int32_t scaled = tg_srdhm(tg_shl_wrap(diff, p->shift), p->mult);
                const int32_t prod = tg_srdhm(recip, tg_exp_on_negative(scaled));
                int32_t unsat;
                if (exponent <= 31) {
                    unsat = tg_rdbpot(prod, exponent < 0 ? 0 : exponent);
                } else {
                    unsat = 0; /* rows of > ~500 near-equal maxima: every share rounds to zero */
                }
                v = tg_clamp(unsat + TG_I8_MIN, TG_I8_MIN, TG_I8_MAX);
            }
            op[i] = (int8_t)v;
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* LUT                                                                                      */
/* ---------------------------------------------------------------------------------------- */

int32_t tg_ref_lut_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t size)
{
    int32_t i;
    if (lut == NULL || in == NULL || out == NULL || size <= 0) {
        return TG_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        out[i] = lut[(uint8_t)((int32_t)in[i] + 128)];
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* MEAN over H, W                                                                           */
/* ---------------------------------------------------------------------------------------- */

/* std::round for float: halves away from zero, exact for every float. */
static float tg_roundf(float x)
{
    int32_t t;
    float d;
    if (!(x > -8388608.0f && x < 8388608.0f)) {
        return x; /* already integral (|x| >= 2^23), or NaN */
    }
    t = (int32_t)x; /* truncation toward zero */
    d = x - (float)t; /* exact */
    if (d >= 0.5f) {
        t += 1;
    } else if (d <= -0.5f) {
        t -= 1;
    }
    return (float)t;
}

int32_t tg_ref_mean_s8(const tg_mean_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, c, y, x;
    if (p == NULL || in == NULL || out == NULL || tg_dims_count(&p->in) < 0) {
        return TG_ERR_ARG;
    }
    if (p->num_elements != p->in.h * p->in.w || p->num_elements > (1 << 23)) {
        return TG_ERR_ARG;
    }
    if (p->in_zp < TG_I8_MIN || p->in_zp > TG_I8_MAX || p->out_zp < TG_I8_MIN || p->out_zp > TG_I8_MAX ||
        !tg_valid_shift(p->shift)) {
        return TG_ERR_ARG;
    }
    for (b = 0; b < p->in.n; ++b) {
        for (c = 0; c < p->in.c; ++c) {
            int32_t acc = 0;
            for (y = 0; y < p->in.h; ++y) {
                for (x = 0; x < p->in.w; ++x) {
                    acc += (int32_t)in[tg_off4(&p->in, b, y, x, c)] - p->in_zp;
                }
            }
            acc = tg_mbqm(acc, p->mult, p->shift) + p->out_zp;
            out[b * p->in.c + c] = (int8_t)tg_clamp(acc, TG_I8_MIN, TG_I8_MAX);
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* MEAN / REDUCE_MAX / REDUCE_MIN over any dims (folded to 4)                               */
/* ---------------------------------------------------------------------------------------- */

int32_t tg_ref_reduce_s8(const tg_reduce_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t o[4], r[4], d[4], k, total;
    int64_t count;
    if (p == NULL || in == NULL || out == NULL || tg_dims_count(&p->in) < 0 || p->mode < 0 || p->mode > 3) {
        return TG_ERR_ARG;
    }
    if (p->in_zp < TG_I8_MIN || p->in_zp > TG_I8_MAX || p->out_zp < TG_I8_MIN || p->out_zp > TG_I8_MAX ||
        !tg_valid_shift(p->shift)) {
        return TG_ERR_ARG;
    }
    d[0] = p->in.n;
    d[1] = p->in.h;
    d[2] = p->in.w;
    d[3] = p->in.c;
    r[0] = p->reduce.n;
    r[1] = p->reduce.h;
    r[2] = p->reduce.w;
    r[3] = p->reduce.c;
    count = 1;
    for (k = 0; k < 4; ++k) {
        if (r[k] != 0 && r[k] != 1) {
            return TG_ERR_ARG;
        }
        if (r[k]) {
            count *= d[k];
        }
    }
    if (count > (1 << 22)) {
        return TG_ERR_ARG; /* the int32 sum of 2^22 values in [0, 255], less in_zp each, cannot overflow */
    }
    total = 0;
    for (o[0] = 0; o[0] < (r[0] ? 1 : d[0]); ++o[0]) {
        for (o[1] = 0; o[1] < (r[1] ? 1 : d[1]); ++o[1]) {
            for (o[2] = 0; o[2] < (r[2] ? 1 : d[2]); ++o[2]) {
                for (o[3] = 0; o[3] < (r[3] ? 1 : d[3]); ++o[3]) {
                    int32_t a, b, c, e;
                    int32_t acc = p->mode == 1 ? TG_I8_MIN : (p->mode == 2 ? TG_I8_MAX : 0);
                    for (a = 0; a < (r[0] ? d[0] : 1); ++a) {
                        for (b = 0; b < (r[1] ? d[1] : 1); ++b) {
                            for (c = 0; c < (r[2] ? d[2] : 1); ++c) {
                                for (e = 0; e < (r[3] ? d[3] : 1); ++e) {
                                    const int32_t v = in[tg_off4(&p->in, o[0] + a, o[1] + b, o[2] + c, o[3] + e)];
                                    if (p->mode == 1) {
                                        acc = v > acc ? v : acc;
                                    } else if (p->mode == 2) {
                                        acc = v < acc ? v : acc;
                                    } else if (p->mode == 3) {
                                        acc += (int32_t)(uint8_t)v - p->in_zp;
                                    } else {
                                        acc += v - p->in_zp;
                                    }
                                }
                            }
                        }
                    }
                    if (p->mode == 0) {
                        acc = tg_clamp(tg_mbqm(acc, p->mult, p->shift) + p->out_zp, TG_I8_MIN, TG_I8_MAX);
                    } else if (p->mode == 3) { /* TFLite 2.21's reference int8 SUM: a uint8 result, stored as its byte */
                        acc = tg_clamp(tg_mbqm(acc, p->mult, p->shift) + p->out_zp, 0, 255);
                        acc = acc > TG_I8_MAX ? acc - 256 : acc;
                    }
                    out[total++] = (int8_t)acc;
                }
            }
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* PAD / CONCATENATION                                                                      */
/* ---------------------------------------------------------------------------------------- */

int32_t tg_ref_pad_s8(const tg_pad_params_t *p, const int8_t *in, int8_t *out)
{
    int64_t total;
    int32_t n, h, w;
    if (p == NULL || in == NULL || out == NULL || tg_dims_count(&p->in) < 0) {
        return TG_ERR_ARG;
    }
    total = tg_dims_count(&p->out);
    if (total < 0 || p->before.n < 0 || p->before.h < 0 || p->before.w < 0 || p->before.c < 0) {
        return TG_ERR_ARG;
    }
    if ((int64_t)p->in.n + p->before.n > p->out.n || (int64_t)p->in.h + p->before.h > p->out.h ||
        (int64_t)p->in.w + p->before.w > p->out.w || (int64_t)p->in.c + p->before.c > p->out.c) {
        return TG_ERR_ARG;
    }
    if (in == out) {
        return TG_ERR_ARG; /* not in place */
    }
    memset(out, (int)p->pad_value, (size_t)total);
    for (n = 0; n < p->in.n; ++n) {
        for (h = 0; h < p->in.h; ++h) {
            for (w = 0; w < p->in.w; ++w) {
                memcpy(out + tg_off4(&p->out, n + p->before.n, h + p->before.h, w + p->before.w, p->before.c),
                       in + tg_off4(&p->in, n, h, w, 0), (size_t)p->in.c);
            }
        }
    }
    return TG_OK;
}

int32_t tg_ref_concat_s8(int32_t n_inputs, const int8_t *const *ins, const int32_t *sizes, int32_t outer, int8_t *out)
{
    int64_t row = 0;
    int32_t k, r;
    if (n_inputs <= 0 || ins == NULL || sizes == NULL || outer <= 0 || out == NULL) {
        return TG_ERR_ARG;
    }
    for (k = 0; k < n_inputs; ++k) {
        if (ins[k] == NULL || sizes[k] < 0) {
            return TG_ERR_ARG;
        }
        row += sizes[k];
    }
    if (row <= 0 || row * outer > INT32_MAX) {
        return TG_ERR_ARG;
    }
    for (r = 0; r < outer; ++r) {
        int8_t *op = out + (int64_t)r * row;
        for (k = 0; k < n_inputs; ++k) {
            memcpy(op, ins[k] + (int64_t)r * sizes[k], (size_t)sizes[k]);
            op += sizes[k];
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* QUANTIZE f32 -> s8 / DEQUANTIZE s8 -> f32 (graph edges; float by nature)                  */
/* ---------------------------------------------------------------------------------------- */

static int tg_valid_qparams(float scale, int32_t zero_point)
{
    return scale > 0.0f && scale < 3.0e38f && zero_point >= TG_I8_MIN && zero_point <= TG_I8_MAX;
}

/* TFLite AffineQuantize: clamp(round(x / scale) + zero_point) with std::round semantics. */
int32_t tg_ref_quantize_f32_s8(const float *in, int8_t *out, int32_t size, float scale, int32_t zero_point)
{
    int32_t i;
    if (in == NULL || out == NULL || size <= 0 || !tg_valid_qparams(scale, zero_point)) {
        return TG_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        const float q = tg_roundf(in[i] / scale);
        int32_t v;
        if (q != q) {
            v = TG_I8_MIN; /* NaN: TFLite's float->int conversion yields INT32_MIN on x86 */
        } else if (q > 1000.0f) {
            v = TG_I8_MAX; /* saturate instead of TFLite's undefined out-of-range conversion */
        } else if (q < -1000.0f) {
            v = TG_I8_MIN;
        } else {
            v = tg_clamp((int32_t)q + zero_point, TG_I8_MIN, TG_I8_MAX);
        }
        out[i] = (int8_t)v;
    }
    return TG_OK;
}

/* TFLite Dequantize: scale * (q - zero_point); the product of a float and an int9 is exact in
 * double, so one float32 multiply rounds exactly like TFLite's double multiply + cast. */
int32_t tg_ref_dequantize_s8_f32(const int8_t *in, float *out, int32_t size, float scale, int32_t zero_point)
{
    int32_t i;
    if (in == NULL || out == NULL || size <= 0 || !tg_valid_qparams(scale, zero_point)) {
        return TG_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        out[i] = scale * (float)((int32_t)in[i] - zero_point);
    }
    return TG_OK;
}
