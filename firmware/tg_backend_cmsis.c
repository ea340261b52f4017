/*
 * tinygen CMSIS-NN kernel set: one thin adapter per CMSIS-NN v7.0.0 function.
 *
 * tg_cmsis_<f>(params, in, out, scratch) converts tinygen's params struct (tg_nn.h) into
 * CMSIS-NN's structs and calls arm_<f> once. There is no argument check and no fallback
 * here: the compiler (tinygen/kernels.py) chose this kernel for the layer because CMSIS-NN's
 * conditions for it hold (the same choice arm_convolve_wrapper_s8 / arm_depthwise_conv_wrapper_s8
 * make, minus Helium's arm_convolve_1_x_n_s8, not bit-exact for some TFLite paddings in v7.0.0),
 * and planned its scratch with CMSIS-NN's *_get_buffer_size formulas (tinygen/cmsis_scratch.py);
 * tg_cmsis_<f>_scratch returns CMSIS-NN's own size so tg_model_init can check the plan.
 * A CMSIS-NN status other than success becomes TG_ERR_ARG.
 *
 * FULLY_CONNECTED: TFLite 2.21's reference rounds once, arm_fully_connected_s8 twice (1 LSB apart
 * on ~1/1000 outputs), so tg_cmsis_fully_connected_s8 runs CMSIS-NN's int8 x int8 -> int32 matrix
 * kernel arm_nn_mat_mult_nt_t_s8_s32 (input offset applied inside) into an int32 row in the
 * scratch, TG_FC_CHUNK outputs at a time, then adds the bias and requantizes with single rounding.
 * Its output may start at the scratch's first byte (the compiler uses that for one-row FCs
 * whose row fits one chunk): out[k] is written after acc[k / 4] is read.
 *
 * Built only with -DTG_BACKEND_CMSIS_NN and -I$CMSIS_NN_PATH/Include (plus the CMSIS-NN sources).
 */
#if defined(TG_BACKEND_CMSIS_NN)

#include "tg_nn.h"

#include <string.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

/* Outputs per call of the matrix kernel (tinygen.kernels.FC_CHUNK): the scratch row holds this many. */
#define TG_FC_CHUNK 32

static cmsis_nn_dims cdims(const tg_dims_t *d)
{
    cmsis_nn_dims r;
    r.n = d->n;
    r.h = d->h;
    r.w = d->w;
    r.c = d->c;
    return r;
}

static cmsis_nn_dims cdims4(int32_t n, int32_t h, int32_t w, int32_t c)
{
    cmsis_nn_dims r;
    r.n = n;
    r.h = h;
    r.w = w;
    r.c = c;
    return r;
}

/* cmsis_nn_conv_params and cmsis_nn_dw_conv_params share these fields (the latter adds ch_mult) */
#define TG_CMSIS_WINDOW_FIELDS(c, p)          \
    do {                                      \
        (c).input_offset = (p)->in_offset;    \
        (c).output_offset = (p)->out_offset;  \
        (c).stride.w = (p)->stride_w;         \
        (c).stride.h = (p)->stride_h;         \
        (c).padding.w = (p)->pad_w;           \
        (c).padding.h = (p)->pad_h;           \
        (c).dilation.w = (p)->dil_w;          \
        (c).dilation.h = (p)->dil_h;          \
        (c).activation.min = (p)->act_min;    \
        (c).activation.max = (p)->act_max;    \
    } while (0)

static cmsis_nn_conv_params conv_cparams(const tg_conv_params_t *p)
{
    cmsis_nn_conv_params c;
    TG_CMSIS_WINDOW_FIELDS(c, p);
    return c;
}

static cmsis_nn_dw_conv_params dw_cparams(const tg_conv_params_t *p)
{
    cmsis_nn_dw_conv_params c;
    TG_CMSIS_WINDOW_FIELDS(c, p);
    c.ch_mult = p->ch_mult;
    return c;
}

static int32_t st(arm_cmsis_nn_status s)
{
    return s == ARM_CMSIS_NN_SUCCESS ? TG_OK : TG_ERR_ARG;
}

static cmsis_nn_context cctx(int8_t *scratch, int32_t size)
{
    cmsis_nn_context c;
    c.buf = scratch;
    c.size = size;
    return c;
}

static cmsis_nn_per_channel_quant_params cquant(const tg_conv_params_t *p)
{
    cmsis_nn_per_channel_quant_params q;
    q.multiplier = (int32_t *)p->mult; /* CMSIS-NN only reads them */
    q.shift = (int32_t *)p->shift;
    return q;
}

/* ------------------------------------------------------------------ conv */

#define TG_CONV_ADAPTER(fname, call)                                                                      \
    int32_t tg_cmsis_##fname(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)  \
    {                                                                                                    \
        const cmsis_nn_context ctx = cctx(scratch, tg_cmsis_##fname##_size(p));                           \
        const cmsis_nn_conv_params cp = conv_cparams(p);                                                 \
        const cmsis_nn_per_channel_quant_params q = cquant(p);                                           \
        const cmsis_nn_dims ind = cdims(&p->in), fd = cdims(&p->filter), od = cdims(&p->out);             \
        const cmsis_nn_dims bd = cdims4(1, 1, 1, p->out.c);                                              \
        return st(call);                                                                                 \
    }

static int32_t tg_cmsis_convolve_1x1_s8_fast_size(const tg_conv_params_t *p)
{
    const cmsis_nn_dims ind = cdims(&p->in);
    return arm_convolve_1x1_s8_fast_get_buffer_size(&ind);
}

static int32_t tg_cmsis_convolve_1x1_s8_size(const tg_conv_params_t *p)
{
    (void)p;
    return 0;
}

static int32_t tg_cmsis_convolve_1_x_n_s8_size(const tg_conv_params_t *p)
{
    const cmsis_nn_conv_params cp = conv_cparams(p);
    const cmsis_nn_dims ind = cdims(&p->in), fd = cdims(&p->filter), od = cdims(&p->out);
    return arm_convolve_1_x_n_s8_get_buffer_size(&cp, &ind, &fd, &od);
}

static int32_t tg_cmsis_convolve_s8_size(const tg_conv_params_t *p)
{
    const cmsis_nn_dims ind = cdims(&p->in), fd = cdims(&p->filter);
    return arm_convolve_s8_get_buffer_size(&ind, &fd);
}

TG_CONV_ADAPTER(convolve_1x1_s8_fast, arm_convolve_1x1_s8_fast(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out))
TG_CONV_ADAPTER(convolve_1x1_s8, arm_convolve_1x1_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out))
TG_CONV_ADAPTER(convolve_1_x_n_s8, arm_convolve_1_x_n_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out))
TG_CONV_ADAPTER(convolve_s8, arm_convolve_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, NULL, &od, out))

int32_t tg_cmsis_convolve_1x1_s8_fast_scratch(const tg_conv_params_t *p) { return tg_cmsis_convolve_1x1_s8_fast_size(p); }
int32_t tg_cmsis_convolve_1_x_n_s8_scratch(const tg_conv_params_t *p) { return tg_cmsis_convolve_1_x_n_s8_size(p); }
int32_t tg_cmsis_convolve_s8_scratch(const tg_conv_params_t *p) { return tg_cmsis_convolve_s8_size(p); }

/* ------------------------------------------------------------------ depthwise */

#define TG_DW_ADAPTER(fname, size_expr)                                                                   \
    int32_t tg_cmsis_##fname(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)  \
    {                                                                                                    \
        const cmsis_nn_dims ind = cdims(&p->in), fd = cdims(&p->filter), od = cdims(&p->out);             \
        const cmsis_nn_dims bd = cdims4(1, 1, 1, p->out.c);                                              \
        const cmsis_nn_context ctx = cctx(scratch, (size_expr));                                         \
        const cmsis_nn_dw_conv_params cp = dw_cparams(p);                                                \
        const cmsis_nn_per_channel_quant_params q = cquant(p);                                           \
        return st(arm_##fname(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out));        \
    }

TG_DW_ADAPTER(depthwise_conv_3x3_s8, 0)
TG_DW_ADAPTER(depthwise_conv_s8_opt, arm_depthwise_conv_s8_opt_get_buffer_size(&ind, &fd))
TG_DW_ADAPTER(depthwise_conv_s8, 0)

int32_t tg_cmsis_depthwise_conv_s8_opt_scratch(const tg_conv_params_t *p)
{
    const cmsis_nn_dims ind = cdims(&p->in), fd = cdims(&p->filter);
    return arm_depthwise_conv_s8_opt_get_buffer_size(&ind, &fd);
}

/* ------------------------------------------------------------------ fully connected */

static int32_t requant_single(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t total = 31 - shift; /* 1 .. 62 for shift in [-31, 30] */
    const int64_t v = (int64_t)x * (int64_t)mult + ((int64_t)1 << (total - 1));
    int64_t r;
    if (v >= 0) {
        r = v >> total;
    } else {
        r = -((-(v + 1)) >> total) - 1; /* floor without right-shifting a negative value */
    }
    if (r > INT32_MAX) {
        return INT32_MAX;
    }
    if (r < INT32_MIN) {
        return INT32_MIN;
    }
    return (int32_t)r;
}

int32_t tg_cmsis_fully_connected_s8_scratch(const tg_fc_params_t *p)
{
    return (p->out_depth < TG_FC_CHUNK ? p->out_depth : TG_FC_CHUNK) * (int32_t)sizeof(int32_t);
}

/* bias + single-rounding requantization + clamp of one chunk of int32 accumulators */
static void requant_chunk(const int32_t *acc, int8_t *dst, int32_t n, const int32_t *bias, const int32_t *mult,
                          const int32_t *shift, int32_t step, int32_t out_offset, int32_t act_min, int32_t act_max)
{
    for (int32_t k = 0; k < n; ++k) {
        /* wrap-around add, as the reference (int32 overflow is impossible for int8 FC < 2^16 deep) */
        int32_t v = bias != NULL ? (int32_t)((uint32_t)acc[k] + (uint32_t)bias[k]) : acc[k];
        v = requant_single(v, mult[k * step], shift[k * step]);
        v = v > INT32_MAX - 128 ? INT32_MAX - 128 : v; /* keep + out_offset in range */
        v += out_offset;
        v = v < act_min ? act_min : v;
        v = v > act_max ? act_max : v;
        dst[k] = (int8_t)v;
    }
}

int32_t tg_cmsis_fully_connected_s8(const tg_fc_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    int32_t *acc = (int32_t *)(void *)scratch;
    const int32_t step = p->per_channel ? 1 : 0;
    for (int32_t b = 0; b < p->batches; ++b) {
        for (int32_t o0 = 0; o0 < p->out_depth; o0 += TG_FC_CHUNK) {
            const int32_t n = p->out_depth - o0 < TG_FC_CHUNK ? p->out_depth - o0 : TG_FC_CHUNK;
            memset(acc, 0, (size_t)n * sizeof(int32_t)); /* the kernel accumulates into dst */
            const arm_cmsis_nn_status s = arm_nn_mat_mult_nt_t_s8_s32(in + b * p->in_depth,
                                                                      p->weights + o0 * p->in_depth, acc, 1,
                                                                      p->in_depth, n, p->in_offset, 1);
            if (s != ARM_CMSIS_NN_SUCCESS) {
                return TG_ERR_ARG;
            }
            requant_chunk(acc, out + b * p->out_depth + o0, n, p->bias != NULL ? p->bias + o0 : NULL,
                          p->mult + o0 * step, p->shift + o0 * step, step, p->out_offset, p->act_min, p->act_max);
        }
    }
    return TG_OK;
}

/* ------------------------------------------------------------------ pooling */

static cmsis_nn_pool_params pool_cparams(const tg_pool_params_t *p)
{
    cmsis_nn_pool_params c;
    c.stride.w = p->stride_w;
    c.stride.h = p->stride_h;
    c.padding.w = p->pad_w;
    c.padding.h = p->pad_h;
    c.activation.min = p->act_min;
    c.activation.max = p->act_max;
    return c;
}

int32_t tg_cmsis_avgpool_s8_scratch(const tg_pool_params_t *p)
{
    return arm_avgpool_s8_get_buffer_size(p->out.w, p->in.c);
}

int32_t tg_cmsis_avgpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    const cmsis_nn_context ctx = cctx(scratch, tg_cmsis_avgpool_s8_scratch(p));
    const cmsis_nn_pool_params pp = pool_cparams(p);
    const cmsis_nn_dims ind = cdims(&p->in), fd = cdims4(1, p->filter_h, p->filter_w, 1), od = cdims(&p->out);
    return st(arm_avgpool_s8(&ctx, &pp, &ind, in, &fd, &od, out));
}

int32_t tg_cmsis_max_pool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out)
{
    const cmsis_nn_context ctx = cctx(NULL, 0); /* arm_max_pool_s8 needs no scratch */
    const cmsis_nn_pool_params pp = pool_cparams(p);
    const cmsis_nn_dims ind = cdims(&p->in), fd = cdims4(1, p->filter_h, p->filter_w, 1), od = cdims(&p->out);
    return st(arm_max_pool_s8(&ctx, &pp, &ind, in, &fd, &od, out));
}

/* ------------------------------------------------------------------ elementwise (equal shapes) */

int32_t tg_cmsis_elementwise_add_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return st(arm_elementwise_add_s8(in1, in2, p->in1_offset, p->in1_mult, p->in1_shift, p->in2_offset, p->in2_mult,
                                     p->in2_shift, p->left_shift, out, p->out_offset, p->out_mult, p->out_shift,
                                     p->act_min, p->act_max, p->out.n * p->out.h * p->out.w * p->out.c));
}

int32_t tg_cmsis_elementwise_mul_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return st(arm_elementwise_mul_s8(in1, in2, p->in1_offset, p->in2_offset, out, p->out_offset, p->out_mult,
                                     p->out_shift, p->act_min, p->act_max, p->out.n * p->out.h * p->out.w * p->out.c));
}

/* ------------------------------------------------------------------ softmax, pad */

int32_t tg_cmsis_softmax_s8(const tg_softmax_params_t *p, const int8_t *in, int8_t *out)
{
    arm_softmax_s8(in, p->rows, p->row_size, p->mult, p->shift, p->diff_min, out);
    return TG_OK;
}

int32_t tg_cmsis_pad_s8(const tg_pad_params_t *p, const int8_t *in, int8_t *out)
{
    const cmsis_nn_dims ind = cdims(&p->in), pre = cdims(&p->before);
    const cmsis_nn_dims post = cdims4(p->out.n - p->in.n - p->before.n, p->out.h - p->in.h - p->before.h,
                                      p->out.w - p->in.w - p->before.w, p->out.c - p->in.c - p->before.c);
    return st(arm_pad_s8(in, out, p->pad_value, &ind, &pre, &post));
}

#else /* !TG_BACKEND_CMSIS_NN */

/* ISO C forbids an empty translation unit. */
typedef int tg_backend_cmsis_unused_t;

#endif /* TG_BACKEND_CMSIS_NN */
