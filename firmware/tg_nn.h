/*
 * tinygen kernel API: the params structs and every kernel the generated model.c may call.
 * Which kernel runs a layer is decided at compile time (tinygen/kernels.py); model.c calls
 * it directly.
 *
 *   tg_kernels_ref.c     portable C99 reference kernels (tg_ref_*), bit-exact with
 *                        the TFLite reference interpreter; any target, host included.
 *   tg_kernels_move.c    portable data-movement kernels (remap, split): no arithmetic.
 *   tg_kernels_lstm.c    portable integer LSTM (tg_ref_lstm_s8).
 *   tg_backend_cmsis.c   tg_cmsis_*: one thin adapter per CMSIS-NN v7.0.0 function (params
 *                        struct -> CMSIS-NN structs, one call, no checks, no fallback).
 *                        Built when CMSIS_NN_PATH is set (-DTG_BACKEND_CMSIS_NN).
 *
 * Conventions (as CMSIS-NN): tensors are NHWC int8; *_offset fields hold
 * "-zero_point" for inputs and "+zero_point" for outputs; mult/shift are TFLite
 * quantized multipliers (Q31, shift > 0 means left shift); act_min/act_max are
 * the fused activation's int8 clamp bounds. Every kernel returns 0 on success
 * and a negative TG_ERR_* on invalid arguments (never writes out of bounds).
 */
#ifndef TG_NN_H
#define TG_NN_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_OK 0
#define TG_ERR_ARG (-1)
#define TG_ERR_SCRATCH (-2)

typedef struct {
    int32_t n, h, w, c;
} tg_dims_t;

/* CONV_2D and DEPTHWISE_CONV_2D.
 * conv:      filter = {out_c, kh, kw, in_c}, weights OHWI
 * depthwise: filter = {1, kh, kw, out_c},  weights 1HWO, out_c = in_c * ch_mult
 * transpose conv (TRANSPOSE_CONV): filter = {out_c, kh, kw, in_c}, weights OHWI; input pixel (y, x)
 *            reaches output (y * stride - pad + ky, x * stride - pad + kx); dil = 1 */
typedef struct {
    tg_dims_t in, filter, out;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;       /* top / left padding (TFLite SAME: floor of total/2) */
    int32_t dil_h, dil_w;
    int32_t ch_mult;            /* depthwise only */
    int32_t in_offset, out_offset;
    int32_t act_min, act_max;
    const int32_t *mult;        /* [out_c] */
    const int32_t *shift;       /* [out_c] */
    const int8_t *weights;
    const int32_t *bias;        /* [out_c] or NULL */
} tg_conv_params_t;


/* FULLY_CONNECTED: out[b][o] = requant(sum_i (in[b][i] + in_offset) * w[o][i] + bias[o]).
 * per_channel = 0: mult[0]/shift[0] apply to every output. weights are [out_depth][in_depth]. */
typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t in_offset, out_offset;
    int32_t act_min, act_max;
    int32_t per_channel;
    const int32_t *mult, *shift;
    const int8_t *weights;
    const int32_t *bias;        /* [out_depth] or NULL */
} tg_fc_params_t;


/* BATCH_MATMUL (TFLite's int8 reference): out[b][i][j] = clamp(requant(sum_k (lhs[b][i][k] + lhs_offset) *
 * (rhs[b][k][j] + rhs_offset), mult, shift) + out_offset), over up to three broadcast batch dims;
 * adj_x / adj_y: lhs is stored [depth][rows] / rhs [cols][depth]. step = elements per batch index
 * (0 on a broadcast dim). Either operand may be a constant array in flash. */
typedef struct {
    int32_t batch0, batch1, batch2;
    int32_t lhs_step0, lhs_step1, lhs_step2;
    int32_t rhs_step0, rhs_step1, rhs_step2;
    int32_t rows, cols, depth;
    int32_t adj_x, adj_y;
    int32_t lhs_offset, rhs_offset, out_offset;
    int32_t mult, shift;
} tg_bmm_params_t;


/* AVERAGE_POOL_2D / MAX_POOL_2D (input and output share scale and zero point). */
typedef struct {
    tg_dims_t in, out;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} tg_pool_params_t;


/* ADD and MUL with TFLite broadcasting over 4-D shapes (in1, in2 broadcast to out).
 * ADD: x_i = ((in_i + in_i_offset) << left_shift) * in_i_mult >> in_i_shift (TFLite int8 ADD),
 *      out = requant(x_1 + x_2, out_mult, out_shift) + out_offset.
 * MUL: out = requant((in1 + in1_offset) * (in2 + in2_offset), out_mult, out_shift) + out_offset.
 * MAXIMUM / MINIMUM: max/min of the raw int8 values (all offsets 0, TFLite rescales nothing).
 * SQUARED_DIFFERENCE: x_i as ADD with left_shift 7, out = requant((x_1 - x_2)^2, out_mult, out_shift).
 * PRELU (in2 = alpha): x = in1 + in1_offset; x >= 0: requant(x, in1_mult, in1_shift),
 *      else requant(x * (alpha + in2_offset), out_mult, out_shift); then + out_offset. */
typedef struct {
    tg_dims_t in1, in2, out;
    int32_t in1_offset, in1_mult, in1_shift;
    int32_t in2_offset, in2_mult, in2_shift;
    int32_t left_shift;
    int32_t out_offset, out_mult, out_shift;
    int32_t act_min, act_max;
} tg_binary_params_t;


/* SOFTMAX over the last dimension (TFLite reference int8 softmax, beta folded into mult/shift). */
typedef struct {
    int32_t rows, row_size;
    int32_t mult, shift, diff_min;
} tg_softmax_params_t;


/* Element-wise int8 -> int8 through a 256-entry table indexed by (uint8_t)(x + 128):
 * LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, standalone RELU/RELU6, int8 QUANTIZE (requantize). Tables are computed
 * on the host with TFLite's exact arithmetic. Safe in place (in == out). */

/* MEAN over H and W of an NHWC tensor (keep_dims or not; same memory layout).
 * As TFLite's int8 reference MEAN (reduce.cc, every int8 case goes through QuantizedMeanOrSum):
 * out = clamp(MultiplyByQuantizedMultiplier(sum(in - in_zp), mult, shift) + out_zp), where
 * mult/shift are in_scale/out_scale with 1/num_elements folded in by integer division
 * (tinygen.quant.mean_params computes them). */
typedef struct {
    tg_dims_t in;               /* out is {n, 1, 1, c} */
    int32_t in_zp, out_zp;
    int32_t mult, shift;        /* in_scale / (out_scale * num_elements), folded as TFLite does */
    int32_t num_elements;       /* h * w */
} tg_mean_params_t;


/* MEAN / REDUCE_MAX / REDUCE_MIN / SUM over any dims of a tensor folded to 4: reduce.x = 1 marks a
 * reduced dim (the output has 1 there). mode 0 (MEAN): out = clamp(requant(sum(in - in_zp), mult,
 * shift) + out_zp) as TFLite's QuantizedMeanOrSum (1/n folded into mult/shift); 1 / 2: max / min
 * of the raw values; 3 (SUM, as TFLite 2.21's reference kernel computes int8 SUM): the bytes are
 * read as uint8, out = byte of clamp(requant(sum((uint8)in - in_zp), mult, shift) + out_zp, 0, 255). */
typedef struct {
    tg_dims_t in;
    tg_dims_t reduce;           /* 1 = reduced, 0 = kept, per dim */
    int32_t mode;
    int32_t in_zp, out_zp;
    int32_t mult, shift;
} tg_reduce_params_t;


/* PAD / PADV2 on up to 4 dims: out = in surrounded by pad_value. */
typedef struct {
    tg_dims_t in, out;
    tg_dims_t before;           /* leading padding per dim */
    int8_t pad_value;
} tg_pad_params_t;


/* CONCATENATION (inputs share the output's quantization): the output is `outer` rows;
 * row r is the concatenation of each input's row r, input k contributing sizes[k] bytes. */

/* Data movement (tg_kernels_move.c). REMAP: out[n][h][w][c] = in[off_n[n] + off_h[h] + off_w[w] +
 * off_c[c]]; `offsets` holds the four tables one after the other (out.n + out.h + out.w + out.c
 * int32 byte offsets into the input, computed by the compiler); c_contiguous: off_c[c] = off_c[0] + c,
 * so rows are copied with memcpy. Runs STRIDED_SLICE, SLICE, TRANSPOSE, GATHER with constant
 * indices and RESIZE_NEAREST_NEIGHBOR. Not in place. */
typedef struct {
    tg_dims_t out;
    int32_t in_size;            /* bytes of the input: every read is checked against it */
    int32_t c_contiguous;
    const int32_t *offsets;
} tg_remap_params_t;

/* RESIZE_BILINEAR int8 (TFLite's integer interpolation): rows[3 * y] = {y0, y1, wy} and
 * cols[3 * x] = {x0, x1, wx} (source indices and the upper neighbour's weight in 1/1024, from the
 * compiler); out = round_half_away((in[y0,x0] (1024-wy)(1024-wx) + in[y1,x0] wy (1024-wx) +
 * in[y0,x1] (1024-wy) wx + in[y1,x1] wy wx) / 2^20), wrapped to int8 as TFLite's cast. */
typedef struct {
    tg_dims_t in, out;
    const int32_t *rows;        /* [3 * out.h] */
    const int32_t *cols;        /* [3 * out.w] */
} tg_resize_params_t;

/* SPLIT / SPLIT_V / UNPACK (the inverse of CONCATENATION): the input is `outer` rows; row r is
 * output 0's row r (sizes[0] bytes), then output 1's row r, ... */

/* QUANTIZE float32 -> int8 and DEQUANTIZE int8 -> float32 at the graph edges. */

/* UNIDIRECTIONAL_SEQUENCE_LSTM (tg_kernels_lstm.c): TFLite's integer 8x8_16 LSTM without CIFG,
 * peephole, projection or layer norm. Gates k = 0 input, 1 forget, 2 cell, 3 output; mult/shift[k]
 * requantize W_in . x, [4 + k] W_rec . h into the gate's Q3.12; cell_scale = log2 of the cell
 * state's scale; the state restarts at (h = state_zp, c = 0) on every call. Scratch: 11 * n_cell. */
typedef struct {
    int32_t n_batch, n_time, n_input, n_cell;
    int32_t time_major;         /* input/output [T][B][*] (else [B][T][*]) */
    int32_t cell_scale;         /* -15 .. -9 */
    int32_t cell_act;           /* the cell gate's activation: 0 tanh, 1 logistic */
    int32_t cell_clip;          /* quantized cell clip, 0: none */
    int32_t hidden_mult, hidden_shift, hidden_zp, state_zp;
    const int32_t *mult;        /* [8] */
    const int32_t *shift;       /* [8] */
    const int8_t *w_in;         /* [4][n_cell][n_input] */
    const int8_t *w_rec;        /* [4][n_cell][n_cell] */
    const int32_t *b_in;        /* [4][n_cell]: bias - in_zp * row sums of W_in */
    const int32_t *b_rec;       /* [4][n_cell]: -state_zp * row sums of W_rec */
} tg_lstm_params_t;
int32_t tg_ref_lstm_s8(const tg_lstm_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_ref_lstm_s8_scratch(const tg_lstm_params_t *p);
int16_t tg_fx16_logistic(int16_t a, int32_t integer_bits);
int16_t tg_fx16_tanh(int16_t a, int32_t integer_bits);

/* Portable reference kernels (tg_kernels_ref.c; they validate their arguments: TG_ERR_ARG). */
int32_t tg_ref_conv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_dwconv2d_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_transpose_conv_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_fully_connected_s8(const tg_fc_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_batch_matmul_s8(const tg_bmm_params_t *p, const int8_t *lhs, const int8_t *rhs, int8_t *out);
int32_t tg_ref_avgpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_maxpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_add_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_ref_mul_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_ref_maximum_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_ref_minimum_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_ref_squared_difference_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_ref_prelu_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_ref_softmax_s8(const tg_softmax_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_lut_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t size);
int32_t tg_ref_mean_s8(const tg_mean_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_pad_s8(const tg_pad_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_reduce_s8(const tg_reduce_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_concat_s8(int32_t n_inputs, const int8_t *const *ins, const int32_t *sizes, int32_t outer, int8_t *out);
int32_t tg_ref_remap_s8(const tg_remap_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_resize_bilinear_s8(const tg_resize_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_ref_split_s8(int32_t n_outputs, const int8_t *in, const int32_t *sizes, int32_t outer, int8_t *const *outs);
int32_t tg_ref_quantize_f32_s8(const float *in, int8_t *out, int32_t size, float scale, int32_t zero_point);
int32_t tg_ref_dequantize_s8_f32(const int8_t *in, float *out, int32_t size, float scale, int32_t zero_point);

/* CMSIS-NN adapters (tg_backend_cmsis.c): tg_cmsis_<f> runs CMSIS-NN's arm_<f> on tinygen's params;
 * the compiler chose it because its conditions hold (tinygen/kernels.py). Scratch: a 4-byte
 * aligned region of the planned size; tg_cmsis_<f>_scratch returns CMSIS-NN's own
 * *_get_buffer_size for the layer (tg_model_init checks the plan against it). */
int32_t tg_cmsis_convolve_1x1_s8_fast(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_convolve_1x1_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_convolve_1_x_n_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_convolve_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_depthwise_conv_3x3_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_depthwise_conv_s8_opt(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_depthwise_conv_s8(const tg_conv_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_fully_connected_s8(const tg_fc_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_avgpool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch);
int32_t tg_cmsis_max_pool_s8(const tg_pool_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_cmsis_elementwise_add_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_cmsis_elementwise_mul_s8(const tg_binary_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);
int32_t tg_cmsis_softmax_s8(const tg_softmax_params_t *p, const int8_t *in, int8_t *out);
int32_t tg_cmsis_pad_s8(const tg_pad_params_t *p, const int8_t *in, int8_t *out);

int32_t tg_cmsis_convolve_1x1_s8_fast_scratch(const tg_conv_params_t *p);
int32_t tg_cmsis_convolve_1_x_n_s8_scratch(const tg_conv_params_t *p);
int32_t tg_cmsis_convolve_s8_scratch(const tg_conv_params_t *p);
int32_t tg_cmsis_depthwise_conv_s8_opt_scratch(const tg_conv_params_t *p);
int32_t tg_cmsis_fully_connected_s8_scratch(const tg_fc_params_t *p);
int32_t tg_cmsis_avgpool_s8_scratch(const tg_pool_params_t *p);

#ifdef __cplusplus
}
#endif
#endif /* TG_NN_H */
