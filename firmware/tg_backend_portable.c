/*
 * tinygen portable backend: every tg_* entry point runs the C99 reference kernel.
 * Compiled out when TG_BACKEND_CMSIS_NN is defined, so both backend files can be
 * built together and exactly one provides the tg_* symbols.
 */
#include "tg_nn.h"

#if !defined(TG_BACKEND_CMSIS_NN)

int32_t tg_conv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    (void)scratch;
    return tg_ref_conv2d_s8(p, in, out);
}

int32_t tg_dwconv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    (void)scratch;
    return tg_ref_dwconv2d_s8(p, in, out);
}

int32_t tg_fully_connected_s8(const tg_fc_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    (void)scratch;
    return tg_ref_fully_connected_s8(p, in, out);
}

int32_t tg_avgpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    (void)scratch;
    return tg_ref_avgpool_s8(p, in, out);
}

int32_t tg_maxpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out)
{
    return tg_ref_maxpool_s8(p, in, out);
}

int32_t tg_add_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return tg_ref_add_s8(p, in1, in2, out);
}

int32_t tg_mul_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    return tg_ref_mul_s8(p, in1, in2, out);
}

int32_t tg_softmax_s8(const tg_softmax_params_t *p, const int8_t *in, int8_t *out)
{
    return tg_ref_softmax_s8(p, in, out);
}

int32_t tg_lut_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t size)
{
    return tg_ref_lut_s8(lut, in, out, size);
}

int32_t tg_mean_s8(const tg_mean_params_t *p, const int8_t *in, int8_t *out)
{
    return tg_ref_mean_s8(p, in, out);
}

int32_t tg_pad_s8(const tg_pad_params_t *p, const int8_t *in, int8_t *out)
{
    return tg_ref_pad_s8(p, in, out);
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

int32_t tg_conv2d_s8_scratch(const tg_conv_params_t *p)
{
    (void)p;
    return 0;
}

int32_t tg_dwconv2d_s8_scratch(const tg_conv_params_t *p)
{
    (void)p;
    return 0;
}

int32_t tg_fully_connected_s8_scratch(const tg_fc_params_t *p)
{
    (void)p;
    return 0;
}

int32_t tg_avgpool_s8_scratch(const tg_pool_params_t *p)
{
    (void)p;
    return 0;
}

#endif /* !TG_BACKEND_CMSIS_NN */
