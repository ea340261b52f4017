/*
 * tinygen kernel backend: tg_* -> CMSIS-NN v7.0.0 s8 kernels.
 *
 * Built only with -DTG_BACKEND_CMSIS_NN and -I$CMSIS_NN_PATH/Include (plus the
 * CMSIS-NN sources); link tg_kernels_ref.c too: everything CMSIS-NN lacks, or cannot
 * do bit-exactly with the TFLite reference kernels, falls back to tg_ref_*.
 *
 *   op                      CMSIS-NN                              falls back to tg_ref_* when
 *   CONV_2D                 arm_convolve_wrapper_s8               geometry is not TFLite SAME/VALID,
 *                           (1x1 fast / 1x1 / 1xN / generic)      filter.c != in.c (grouped)
 *   DEPTHWISE_CONV_2D       arm_depthwise_conv_wrapper_s8         geometry is not TFLite SAME/VALID
 *                           (3x3 / opt / generic)
 *   FULLY_CONNECTED         arm_fully_connected_s8 (per tensor)   never (valid args)
 *                           arm_fully_connected_per_channel_s8
 *   AVERAGE_POOL_2D         arm_avgpool_s8                        geometry is not TFLite SAME/VALID
 *   MAX_POOL_2D             arm_max_pool_s8                       geometry is not TFLite SAME/VALID
 *   ADD / MUL               arm_elementwise_{add,mul}_s8          any broadcasting (shapes differ)
 *   SOFTMAX                 arm_softmax_s8                        never
 *   PAD / PADV2             arm_pad_s8                            never (valid args)
 *   LUT, MEAN, CONCAT,      -                                     always (CMSIS-NN has no bit-exact
 *   QUANTIZE, DEQUANTIZE                                          equivalent / nothing to gain)
 *
 * Scratch: tg_*_scratch() return CMSIS-NN's *_get_buffer_size() as compiled for this
 * target (ARM_MATH_DSP / ARM_MATH_MVEI); tinygen/cmsis_scratch.py mirrors them for the
 * build-time planner. The scratch region must be 4-byte aligned (kernels use it as
 * int16_t / int32_t arrays); a misaligned or NULL-but-needed scratch is TG_ERR_SCRATCH.
 *
 * FULLY_CONNECTED kernel sums: on Helium (MVE) CMSIS-NN v7 reads a per-output-row
 * "kernel sum" vector  ksum[o] = bias[o] + in_offset * sum_i w[o][i]  from ctx->buf
 * (arm_fully_connected_s8_get_buffer_size() = out_depth * 4 there, 0 elsewhere), which the
 * caller must fill with arm_vector_sum_s8(). tg_fc_params_t carries no precomputed sums,
 * so tg_fully_connected_s8 recomputes them into the scratch on every call when the size
 * is > 0: cost out_depth * in_depth int8 loads/adds (about one extra batch row of the
 * FC's own work, done with 16-lane VADDVA), plus out_depth multiplies. On DSP/no-DSP
 * targets the size is 0 and the kernels ignore ctx->buf: no extra cost.
 */
#if defined(TG_BACKEND_CMSIS_NN)

#include "tg_nn.h"

#include <string.h>

#include "arm_nnfunctions.h"

/* ------------------------------------------------------------------ validation */

static int dims_ok(const tg_dims_t *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static int act_ok(int32_t act_min, int32_t act_max)
{
    return act_min >= -128 && act_max <= 127 && act_min <= act_max;
}

/* Output extent along one axis matches TFLite VALID or SAME padding with the given
 * leading pad (TFLite SAME: pad = floor(total / 2)). Only then do the CMSIS-NN
 * sub-kernels that skip bounds checks (1x1, 1xN, 3x3 depthwise) stay in bounds. */
static int axis_ok(int32_t in, int32_t out, int32_t k, int32_t stride, int32_t dil, int32_t pad)
{
    if (in <= 0 || out <= 0 || k <= 0 || stride <= 0 || dil <= 0 || pad < 0) {
        return 0;
    }
    /* keep the arithmetic far from int32 overflow */
    if (in > (1 << 20) || k > (1 << 12) || stride > (1 << 12) || dil > (1 << 12)) {
        return 0;
    }
    const int32_t eff_k = (k - 1) * dil + 1;
    if (pad == 0 && in >= eff_k && out == (in - eff_k) / stride + 1) {
        return 1; /* VALID */
    }
    if (out == (in + stride - 1) / stride) {
        int32_t total = (out - 1) * stride + eff_k - in;
        if (total < 0) {
            total = 0;
        }
        return pad == total / 2; /* SAME */
    }
    return 0;
}

static int scratch_ok(const int8_t *scratch, int32_t need)
{
    if (need <= 0) {
        return 1;
    }
    return scratch != NULL && ((uintptr_t)scratch & 3u) == 0u;
}

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

/* The status of every CMSIS-NN call is mapped to TG_* codes. */
static int32_t status_to_tg(arm_cmsis_nn_status s)
{
    return s == ARM_CMSIS_NN_SUCCESS ? TG_OK : TG_ERR_ARG;
}

/* ------------------------------------------------------------------ conv */

static int conv_common_ok(const tg_conv_params_t *p, const int8_t *in, const int8_t *out)
{
    if (p == NULL || in == NULL || out == NULL || p->weights == NULL || p->mult == NULL || p->shift == NULL) {
        return 0;
    }
    if (!dims_ok(&p->in) || !dims_ok(&p->filter) || !dims_ok(&p->out) || p->in.n != p->out.n) {
        return 0;
    }
    if (!act_ok(p->act_min, p->act_max)) {
        return 0;
    }
    /* CMSIS-NN documented ranges (int8 zero points) */
    if (p->in_offset < -127 || p->in_offset > 128 || p->out_offset < -128 || p->out_offset > 127) {
        return 0;
    }
    return 1;
}

static cmsis_nn_conv_params conv_cparams(const tg_conv_params_t *p)
{
    cmsis_nn_conv_params c;
    c.input_offset = p->in_offset;
    c.output_offset = p->out_offset;
    c.stride.w = p->stride_w;
    c.stride.h = p->stride_h;
    c.padding.w = p->pad_w;
    c.padding.h = p->pad_h;
    c.dilation.w = p->dil_w;
    c.dilation.h = p->dil_h;
    c.activation.min = p->act_min;
    c.activation.max = p->act_max;
    return c;
}

static cmsis_nn_dw_conv_params dw_cparams(const tg_conv_params_t *p)
{
    cmsis_nn_dw_conv_params c;
    c.input_offset = p->in_offset;
    c.output_offset = p->out_offset;
    c.ch_mult = p->ch_mult;
    c.stride.w = p->stride_w;
    c.stride.h = p->stride_h;
    c.padding.w = p->pad_w;
    c.padding.h = p->pad_h;
    c.dilation.w = p->dil_w;
    c.dilation.h = p->dil_h;
    c.activation.min = p->act_min;
    c.activation.max = p->act_max;
    return c;
}

int32_t tg_conv2d_s8_scratch(const tg_conv_params_t *p)
{
    if (p == NULL) {
        return 0;
    }
    const cmsis_nn_conv_params cp = conv_cparams(p);
    const cmsis_nn_dims in = cdims(&p->in);
    const cmsis_nn_dims filter = cdims(&p->filter);
    const cmsis_nn_dims out = cdims(&p->out);
    return arm_convolve_wrapper_s8_get_buffer_size(&cp, &in, &filter, &out);
}

int32_t tg_conv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    if (!conv_common_ok(p, in, out)) {
        return tg_ref_conv2d_s8(p, in, out); /* the reference kernel reports the error */
    }
    if (p->filter.c != p->in.c || p->filter.n != p->out.c ||
        !axis_ok(p->in.h, p->out.h, p->filter.h, p->stride_h, p->dil_h, p->pad_h) ||
        !axis_ok(p->in.w, p->out.w, p->filter.w, p->stride_w, p->dil_w, p->pad_w)) {
        return tg_ref_conv2d_s8(p, in, out);
    }
    const int32_t need = tg_conv2d_s8_scratch(p);
    if (!scratch_ok(scratch, need)) {
        return TG_ERR_SCRATCH;
    }
    cmsis_nn_context ctx;
    ctx.buf = scratch;
    ctx.size = need;
    const cmsis_nn_conv_params cp = conv_cparams(p);
    cmsis_nn_per_channel_quant_params q;
    q.multiplier = (int32_t *)p->mult; /* CMSIS-NN only reads them */
    q.shift = (int32_t *)p->shift;
    const cmsis_nn_dims ind = cdims(&p->in);
    const cmsis_nn_dims fd = cdims(&p->filter);
    const cmsis_nn_dims bd = cdims4(1, 1, 1, p->out.c);
    const cmsis_nn_dims od = cdims(&p->out);
    return status_to_tg(arm_convolve_wrapper_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out));
}

int32_t tg_dwconv2d_s8_scratch(const tg_conv_params_t *p)
{
    if (p == NULL) {
        return 0;
    }
    const cmsis_nn_dw_conv_params cp = dw_cparams(p);
    const cmsis_nn_dims in = cdims(&p->in);
    const cmsis_nn_dims filter = cdims(&p->filter);
    const cmsis_nn_dims out = cdims(&p->out);
    return arm_depthwise_conv_wrapper_s8_get_buffer_size(&cp, &in, &filter, &out);
}

int32_t tg_dwconv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    if (!conv_common_ok(p, in, out) || p->ch_mult <= 0) {
        return tg_ref_dwconv2d_s8(p, in, out);
    }
    if (p->filter.n != 1 || p->out.c != p->in.c * p->ch_mult || p->filter.c != p->out.c ||
        !axis_ok(p->in.h, p->out.h, p->filter.h, p->stride_h, p->dil_h, p->pad_h) ||
        !axis_ok(p->in.w, p->out.w, p->filter.w, p->stride_w, p->dil_w, p->pad_w)) {
        return tg_ref_dwconv2d_s8(p, in, out);
    }
    const int32_t need = tg_dwconv2d_s8_scratch(p);
    if (!scratch_ok(scratch, need)) {
        return TG_ERR_SCRATCH;
    }
    cmsis_nn_context ctx;
    ctx.buf = scratch;
    ctx.size = need;
    const cmsis_nn_dw_conv_params cp = dw_cparams(p);
    cmsis_nn_per_channel_quant_params q;
    q.multiplier = (int32_t *)p->mult;
    q.shift = (int32_t *)p->shift;
    const cmsis_nn_dims ind = cdims(&p->in);
    const cmsis_nn_dims fd = cdims(&p->filter);
    const cmsis_nn_dims bd = cdims4(1, 1, 1, p->out.c);
    const cmsis_nn_dims od = cdims(&p->out);
    return status_to_tg(
        arm_depthwise_conv_wrapper_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out));
}

/* ------------------------------------------------------------------ fully connected */

static cmsis_nn_dims fc_filter_dims(const tg_fc_params_t *p)
{
    /* CMSIS-NN FC filter dims: n = accumulation depth, c = output depth */
    return cdims4(p->in_depth, 1, 1, p->out_depth);
}

int32_t tg_fully_connected_s8_scratch(const tg_fc_params_t *p)
{
    if (p == NULL) {
        return 0;
    }
    const cmsis_nn_dims fd = fc_filter_dims(p);
    return arm_fully_connected_s8_get_buffer_size(&fd);
}

int32_t tg_fully_connected_s8(const tg_fc_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    if (p == NULL || in == NULL || out == NULL || p->weights == NULL || p->mult == NULL || p->shift == NULL ||
        p->batches <= 0 || p->in_depth <= 0 || p->out_depth <= 0 || !act_ok(p->act_min, p->act_max) ||
        p->in_offset < -127 || p->in_offset > 128 || p->out_offset < -128 || p->out_offset > 127) {
        return tg_ref_fully_connected_s8(p, in, out); /* the reference kernel reports the error */
    }
    const int32_t need = tg_fully_connected_s8_scratch(p);
    if (!scratch_ok(scratch, need)) {
        return TG_ERR_SCRATCH;
    }
    if (need > 0) {
        /* Helium: kernel sums (bias folded in) must be in ctx->buf, see the file header. */
        if (need < p->out_depth * (int32_t)sizeof(int32_t)) {
            return TG_ERR_SCRATCH;
        }
        const arm_cmsis_nn_status s = arm_vector_sum_s8(
            (int32_t *)(void *)scratch, p->in_depth, p->out_depth, p->weights, p->in_offset, 0, p->bias);
        if (s != ARM_CMSIS_NN_SUCCESS) {
            return TG_ERR_ARG;
        }
    }
    cmsis_nn_context ctx;
    ctx.buf = scratch;
    ctx.size = need;
    cmsis_nn_fc_params fp;
    fp.input_offset = p->in_offset;
    fp.filter_offset = 0; /* TFLite int8 weights are symmetric */
    fp.output_offset = p->out_offset;
    fp.activation.min = p->act_min;
    fp.activation.max = p->act_max;
    const cmsis_nn_dims ind = cdims4(p->batches, 1, 1, p->in_depth);
    const cmsis_nn_dims fd = fc_filter_dims(p);
    const cmsis_nn_dims bd = cdims4(1, 1, 1, p->out_depth);
    const cmsis_nn_dims od = cdims4(p->batches, 1, 1, p->out_depth);
    arm_cmsis_nn_status s;
    if (p->per_channel) {
        cmsis_nn_per_channel_quant_params q;
        q.multiplier = (int32_t *)p->mult;
        q.shift = (int32_t *)p->shift;
        s = arm_fully_connected_per_channel_s8(&ctx, &fp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out);
    } else {
        cmsis_nn_per_tensor_quant_params q;
        q.multiplier = p->mult[0];
        q.shift = p->shift[0];
        s = arm_fully_connected_s8(&ctx, &fp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out);
    }
    return status_to_tg(s);
}

/* ------------------------------------------------------------------ pooling */

static int pool_ok(const tg_pool_params_t *p, const int8_t *in, const int8_t *out)
{
    if (p == NULL || in == NULL || out == NULL || !dims_ok(&p->in) || !dims_ok(&p->out)) {
        return 0;
    }
    if (p->in.n != p->out.n || p->in.c != p->out.c || !act_ok(p->act_min, p->act_max)) {
        return 0;
    }
    return axis_ok(p->in.h, p->out.h, p->filter_h, p->stride_h, 1, p->pad_h) &&
           axis_ok(p->in.w, p->out.w, p->filter_w, p->stride_w, 1, p->pad_w);
}

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

int32_t tg_avgpool_s8_scratch(const tg_pool_params_t *p)
{
    if (p == NULL) {
        return 0;
    }
    return arm_avgpool_s8_get_buffer_size(p->out.w, p->in.c);
}

int32_t tg_avgpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    if (!pool_ok(p, in, out)) {
        return tg_ref_avgpool_s8(p, in, out);
    }
    const int32_t need = tg_avgpool_s8_scratch(p);
    if (!scratch_ok(scratch, need)) {
        return TG_ERR_SCRATCH;
    }
    cmsis_nn_context ctx;
    ctx.buf = scratch;
    ctx.size = need;
    const cmsis_nn_pool_params pp = pool_cparams(p);
    const cmsis_nn_dims ind = cdims(&p->in);
    const cmsis_nn_dims fd = cdims4(1, p->filter_h, p->filter_w, 1);
    const cmsis_nn_dims od = cdims(&p->out);
    return status_to_tg(arm_avgpool_s8(&ctx, &pp, &ind, in, &fd, &od, out));
}

int32_t tg_maxpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out)
{
    if (!pool_ok(p, in, out)) {
        return tg_ref_maxpool_s8(p, in, out);
    }
    cmsis_nn_context ctx;
    ctx.buf = NULL; /* arm_max_pool_s8 needs no scratch */
    ctx.size = 0;
    const cmsis_nn_pool_params pp = pool_cparams(p);
    const cmsis_nn_dims ind = cdims(&p->in);
    const cmsis_nn_dims fd = cdims4(1, p->filter_h, p->filter_w, 1);
    const cmsis_nn_dims od = cdims(&p->out);
    return status_to_tg(arm_max_pool_s8(&ctx, &pp, &ind, in, &fd, &od, out));
}

/* ------------------------------------------------------------------ elementwise */

static int same_dims(const tg_dims_t *a, const tg_dims_t *b)
{
    return a->n == b->n && a->h == b->h && a->w == b->w && a->c == b->c;
}

/* CMSIS-NN's element-wise kernels handle only equal shapes (no broadcasting). */
static int binary_direct_ok(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, const int8_t *out)
{
    if (p == NULL || in1 == NULL || in2 == NULL || out == NULL) {
        return 0;
    }
    if (!dims_ok(&p->out) || !same_dims(&p->in1, &p->out) || !same_dims(&p->in2, &p->out)) {
        return 0;
    }
    if (!act_ok(p->act_min, p->act_max)) {
        return 0;
    }
    const int64_t n = (int64_t)p->out.n * p->out.h * p->out.w * p->out.c;
    return n <= INT32_MAX;
}

int32_t tg_add_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    if (!binary_direct_ok(p, in1, in2, out)) {
        return tg_ref_add_s8(p, in1, in2, out);
    }
    const int32_t size = p->out.n * p->out.h * p->out.w * p->out.c;
    return status_to_tg(arm_elementwise_add_s8(in1, in2, p->in1_offset, p->in1_mult, p->in1_shift, p->in2_offset,
                                               p->in2_mult, p->in2_shift, p->left_shift, out, p->out_offset,
                                               p->out_mult, p->out_shift, p->act_min, p->act_max, size));
}

int32_t tg_mul_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    if (!binary_direct_ok(p, in1, in2, out)) {
        return tg_ref_mul_s8(p, in1, in2, out);
    }
    const int32_t size = p->out.n * p->out.h * p->out.w * p->out.c;
    return status_to_tg(arm_elementwise_mul_s8(in1, in2, p->in1_offset, p->in2_offset, out, p->out_offset,
                                               p->out_mult, p->out_shift, p->act_min, p->act_max, size));
}

/* ------------------------------------------------------------------ softmax */

int32_t tg_softmax_s8(const tg_softmax_params_t *p, const int8_t *in, int8_t *out)
{
    if (p == NULL || in == NULL || out == NULL || p->rows <= 0 || p->row_size <= 0) {
        return tg_ref_softmax_s8(p, in, out);
    }
    arm_softmax_s8(in, p->rows, p->row_size, p->mult, p->shift, p->diff_min, out);
    return TG_OK;
}

/* ------------------------------------------------------------------ pad */

int32_t tg_pad_s8(const tg_pad_params_t *p, const int8_t *in, int8_t *out)
{
    if (p == NULL || in == NULL || out == NULL || !dims_ok(&p->in) || !dims_ok(&p->out)) {
        return tg_ref_pad_s8(p, in, out);
    }
    const cmsis_nn_dims ind = cdims(&p->in);
    const cmsis_nn_dims pre = cdims(&p->before);
    const cmsis_nn_dims post = cdims4(p->out.n - p->in.n - p->before.n, p->out.h - p->in.h - p->before.h,
                                      p->out.w - p->in.w - p->before.w, p->out.c - p->in.c - p->before.c);
    if (pre.n < 0 || pre.h < 0 || pre.w < 0 || pre.c < 0 || post.n < 0 || post.h < 0 || post.w < 0 || post.c < 0) {
        return tg_ref_pad_s8(p, in, out);
    }
    return status_to_tg(arm_pad_s8(in, out, p->pad_value, &ind, &pre, &post));
}

/* ------------------------------------------------------------------ reference-only ops */

int32_t tg_lut_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t size)
{
    return tg_ref_lut_s8(lut, in, out, size);
}

int32_t tg_mean_s8(const tg_mean_params_t *p, const int8_t *in, int8_t *out)
{
    return tg_ref_mean_s8(p, in, out);
}

int32_t tg_concat_s8(int32_t n_inputs, const int8_t *const *ins, const int32_t *sizes, int32_t outer, int8_t *out)
{
    return tg_ref_concat_s8(n_inputs, ins, sizes, outer, out);
}

int32_t tg_quantize_f32_s8(const float *in, int8_t *out, int32_t size, float scale, int32_t zero_point)
{
    return tg_ref_quantize_f32_s8(in, out, size, scale, zero_point);
}

int32_t tg_dequantize_s8_f32(const int8_t *in, float *out, int32_t size, float scale, int32_t zero_point)
{
    return tg_ref_dequantize_s8_f32(in, out, size, scale, zero_point);
}

#else /* !TG_BACKEND_CMSIS_NN */

/* ISO C forbids an empty translation unit. */
typedef int tg_backend_cmsis_unused_t;

#endif /* TG_BACKEND_CMSIS_NN */
