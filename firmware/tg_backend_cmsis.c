/*
 * tinygen kernel backend: tg_* -> CMSIS-NN v7.0.0 s8 kernels.
 *
 * Built only with -DTG_BACKEND_CMSIS_NN and -I$CMSIS_NN_PATH/Include (plus the
 * CMSIS-NN sources); link tg_kernels_ref.c too: everything CMSIS-NN lacks, or cannot
 * do bit-exactly with the TFLite reference kernels, falls back to tg_ref_*.
 *
 *   op                      CMSIS-NN                              falls back to tg_ref_* when
 *   CONV_2D                 arm_convolve_wrapper_s8               geometry is not TFLite SAME/VALID,
 *                           (1x1 fast / 1x1 / 1xN / generic);     filter.c != in.c (grouped)
 *                           Helium 1xN -> arm_convolve_s8 (*)
 *   DEPTHWISE_CONV_2D       arm_depthwise_conv_wrapper_s8         geometry is not TFLite SAME/VALID
 *                           (3x3 / opt / generic / to-conv) (*)
 *   FULLY_CONNECTED         arm_nn_mat_mult_nt_t_s8_s32 + single- shift outside [-31, 30] (invalid)
 *                           rounding requantization here (**)
 *   AVERAGE_POOL_2D         arm_avgpool_s8                        geometry is not TFLite SAME/VALID
 *   MAX_POOL_2D             arm_max_pool_s8                       geometry is not TFLite SAME/VALID
 *   ADD / MUL               arm_elementwise_{add,mul}_s8          any broadcasting (shapes differ)
 *   SOFTMAX                 arm_softmax_s8                        never
 *   PAD / PADV2             arm_pad_s8                            never (valid args)
 *   LUT, MEAN, CONCAT,      -                                     always (CMSIS-NN has no bit-exact
 *   QUANTIZE, DEQUANTIZE                                          equivalent / nothing to gain)
 *
 * (*) CMSIS-NN v7.0.0's Helium arm_convolve_1_x_n_s8 is wrong for some TFLite paddings (VALID
 *     with a negative total pad: ARM_CMSIS_NN_FAILURE or a mis-padded last window; SAME with
 *     a right pad wider than one column), so on MVE builds those convs, and one-input-channel
 *     depthwise convs the wrapper would convert into them, use arm_convolve_s8 /
 *     arm_depthwise_conv_s8 directly.
 * (**) TFLite 2.21's reference FULLY_CONNECTED rounds once, arm_fully_connected_s8 twice (1 LSB
 *     apart on ~1/1000 outputs); see tg_fully_connected_s8 below. Because arm_fully_connected_s8
 *     is not used, CMSIS-NN v7's Helium kernel-sum buffer (ksum[o] = bias[o] + in_offset *
 *     sum_i w[o][i], filled by arm_vector_sum_s8, which the caller would have had to recompute
 *     every call since tg_fc_params_t has no field for precomputed sums) is not needed.
 *
 * Scratch: tg_*_scratch() return the *_get_buffer_size() of the CMSIS-NN function actually
 * called, as compiled for this target (ARM_MATH_DSP / ARM_MATH_MVEI); tinygen/cmsis_scratch.py
 * computes the same at build time. FULLY_CONNECTED needs min(out_depth, 32) * 4 bytes (int32 chunk).
 * The scratch region must be 4-byte aligned (kernels use it as int16_t / int32_t arrays); a
 * misaligned or NULL-but-needed scratch is TG_ERR_SCRATCH.
 */
#if defined(TG_BACKEND_CMSIS_NN)

#include "tg_nn.h"

#include <string.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

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

/* CMSIS-NN v7.0.0's Helium arm_convolve_1_x_n_s8 is not bit-exact for every TFLite padding:
 * VALID with a negative total pad returns ARM_CMSIS_NN_FAILURE or mis-pads the last window,
 * SAME with a right pad > 1 column reads past the row (found on QEMU mps3-an547, see
 * tests/test_cmsis_backend.py). On MVE builds such convs go to arm_convolve_s8 directly. */
static int mve_1xn_bypass(const cmsis_nn_conv_params *cp, const cmsis_nn_dims *in, const cmsis_nn_dims *f)
{
#if defined(ARM_MATH_MVEI)
    const int is_1x1 = cp->padding.w == 0 && cp->padding.h == 0 && f->w == 1 && f->h == 1 && cp->dilation.w == 1 &&
                       cp->dilation.h == 1;
    return !is_1x1 && in->h == 1 && cp->dilation.w == 1 && f->h == 1 && (cp->stride.w * in->c) % 4 == 0;
#else
    (void)cp;
    (void)in;
    (void)f;
    return 0;
#endif
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
    if (mve_1xn_bypass(&cp, &in, &filter)) {
        return arm_convolve_s8_get_buffer_size(&in, &filter);
    }
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
    if (mve_1xn_bypass(&cp, &ind, &fd)) {
        return status_to_tg(
            arm_convolve_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, NULL, &od, out));
    }
    return status_to_tg(arm_convolve_wrapper_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out));
}

/* On Helium the wrapper turns a depthwise conv with one input channel into a conv, which can
 * reach the same arm_convolve_1_x_n_s8 (see mve_1xn_bypass): use arm_depthwise_conv_s8 then. */
static int mve_dw_bypass(const tg_conv_params_t *p)
{
#if defined(ARM_MATH_MVEI)
    const cmsis_nn_conv_params cp = conv_cparams(p);
    const cmsis_nn_dims in = cdims(&p->in);
    const cmsis_nn_dims f = cdims4(p->filter.c, p->filter.h, p->filter.w, p->filter.n);
    return p->in.c == 1 && p->out.c > CONVERT_DW_CONV_WITH_ONE_INPUT_CH_AND_OUTPUT_CH_ABOVE_THRESHOLD &&
           mve_1xn_bypass(&cp, &in, &f);
#else
    (void)p;
    return 0;
#endif
}

int32_t tg_dwconv2d_s8_scratch(const tg_conv_params_t *p)
{
    if (p == NULL) {
        return 0;
    }
    if (mve_dw_bypass(p)) {
        return 0; /* arm_depthwise_conv_s8 needs no buffer */
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
    if (mve_dw_bypass(p)) {
        return status_to_tg(arm_depthwise_conv_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out));
    }
    return status_to_tg(
        arm_depthwise_conv_wrapper_s8(&ctx, &cp, &q, &ind, in, &fd, p->weights, &bd, p->bias, &od, out));
}

/* ------------------------------------------------------------------ fully connected */

/* TFLite 2.21's reference FULLY_CONNECTED requantizes with *single* rounding
 * (MultiplyByQuantizedMultiplier built with TFLITE_SINGLE_ROUNDING semantics, see
 * tg_ref_fully_connected_s8), while CMSIS-NN's arm_fully_connected_s8 /
 * _per_channel_s8 use double rounding unless the whole library is built with
 * CMSIS_NN_USE_SINGLE_ROUNDING (which would break CONV_2D etc., double rounding in
 * TFLite). They differ by 1 LSB on ~1 in 1000 outputs. So FULLY_CONNECTED runs the
 * CMSIS-NN int8 x int8 -> int32 matrix kernel arm_nn_mat_mult_nt_t_s8_s32 (DSP / Helium
 * optimised, input offset applied inside; its rhs_rows is the accumulation depth and
 * rhs_cols the output depth) into an int32 row in the scratch, then adds
 * the bias and requantizes with single rounding here, TG_FC_CHUNK outputs at a time:
 * scratch = min(out_depth, TG_FC_CHUNK) * 4 bytes on every architecture, and no kernel-sum vector (arm_vector_sum_s8) is needed. */
/* Outputs computed per call of the matrix kernel: the int32 scratch row holds this many. */
#define TG_FC_CHUNK 32

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

int32_t tg_fully_connected_s8_scratch(const tg_fc_params_t *p)
{
    if (p == NULL || p->out_depth <= 0 || p->out_depth > INT32_MAX / (int32_t)sizeof(int32_t)) {
        return 0;
    }
    return (p->out_depth < TG_FC_CHUNK ? p->out_depth : TG_FC_CHUNK) * (int32_t)sizeof(int32_t);
}

int32_t tg_fully_connected_s8(const tg_fc_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    if (p == NULL || in == NULL || out == NULL || p->weights == NULL || p->mult == NULL || p->shift == NULL ||
        p->batches <= 0 || p->in_depth <= 0 || p->out_depth <= 0 || !act_ok(p->act_min, p->act_max) ||
        p->in_offset < -127 || p->in_offset > 128 || p->out_offset < -128 || p->out_offset > 127 ||
        (p->per_channel != 0 && p->per_channel != 1) ||
        (int64_t)p->batches * p->in_depth > INT32_MAX || (int64_t)p->batches * p->out_depth > INT32_MAX ||
        (int64_t)p->out_depth * p->in_depth > INT32_MAX) {
        return tg_ref_fully_connected_s8(p, in, out); /* the reference kernel reports the error */
    }
    const int32_t n_q = p->per_channel ? p->out_depth : 1;
    for (int32_t o = 0; o < n_q; ++o) {
        if (p->shift[o] < -31 || p->shift[o] > 30 || p->mult[o] < 0) {
            return tg_ref_fully_connected_s8(p, in, out);
        }
    }
    const int32_t need = tg_fully_connected_s8_scratch(p);
    if (!scratch_ok(scratch, need)) {
        return TG_ERR_SCRATCH;
    }
    int32_t *acc = (int32_t *)(void *)scratch;
    for (int32_t b = 0; b < p->batches; ++b) {
      for (int32_t o0 = 0; o0 < p->out_depth; o0 += TG_FC_CHUNK) {
        const int32_t n = p->out_depth - o0 < TG_FC_CHUNK ? p->out_depth - o0 : TG_FC_CHUNK;
        memset(acc, 0, (size_t)n * sizeof(int32_t)); /* the kernel accumulates into dst */
        const arm_cmsis_nn_status s = arm_nn_mat_mult_nt_t_s8_s32(in + b * p->in_depth, p->weights + o0 * p->in_depth,
                                                                  acc, 1, p->in_depth, n, p->in_offset, 1);
        if (s != ARM_CMSIS_NN_SUCCESS) {
            return TG_ERR_ARG;
        }
        int8_t *o_row = out + b * p->out_depth + o0;
        for (int32_t k = 0; k < n; ++k) {
            const int32_t o = o0 + k;
            const int32_t q = p->per_channel ? o : 0;
            /* wrap-around add, as the reference (int32 overflow is impossible for int8 FC < 2^16 deep) */
            int32_t v = p->bias != NULL ? (int32_t)((uint32_t)acc[k] + (uint32_t)p->bias[o]) : acc[k];
            v = requant_single(v, p->mult[q], p->shift[q]);
            v = v > INT32_MAX - 128 ? INT32_MAX - 128 : v; /* keep + out_offset in range */
            v += p->out_offset;
            v = v < p->act_min ? p->act_min : v;
            v = v > p->act_max ? p->act_max : v;
            o_row[k] = (int8_t)v;
        }
      }
    }
    return TG_OK;
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
