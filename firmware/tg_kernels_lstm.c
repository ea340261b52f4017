/* generated-code support: tinygen portable kernel (do not edit in generated projects)
 *
 * UNIDIRECTIONAL_SEQUENCE_LSTM, TFLite's integer "8x8_16" LSTM: int8 input, output and hidden
 * state, int16 gates and cell state. What the TFLite 2.21 reference computes (lstm_eval.cc
 * EvalInteger8x8_16 / LstmStepInteger8x8_16 and the portable tensor utils), for the LSTM Keras
 * builds: input gate present (no CIFG), no peephole, no projection, no layer norm.
 *
 * Per time step and batch row, gates f, g (cell), i, o:
 *   gate = sat16(mbqm(b_in + W_in . x, m_in, s_in))              (b_in: bias + (-x_zp) * row sums)
 *   gate = sat16(mbqm(b_rec + W_rec . h, m_rec, s_rec) + gate)    (b_rec: (-h_zp) * row sums)
 *   f, i, o = logistic(gate as Q3.12) in Q0.15; g = tanh(gate as Q3.12) in Q0.15
 *   c = sat16((int16)rdbp(f * c, 15) + (int16)rdbp(i * g, 30 + cell_scale)), clipped if cell_clip
 *   h = clamp8(mbqm(o * tanh(c as Q(15 + cell_scale)), hidden_mult, hidden_shift) + hidden_zp)
 * The output at each step is h. The state starts at (h = state_zp, c = 0) on every call:
 * stateful=False (the TFLite reference resets its variable tensors the same way).
 *
 * logistic and tanh are gemmlowp's 16-bit fixed-point functions (fixedpoint.h), written out for
 * a run-time number of integer bits; everything is exact integer arithmetic. */

#include "tg_nn.h"

/* The fixed-point helpers are inlined into callers with a constant number of integer bits, so
 * the compiler folds gemmlowp's compile-time branches as the C++ templates do. */
#if defined(__GNUC__)
#define FX_INLINE static inline __attribute__((always_inline))
#else
#define FX_INLINE static inline
#endif

/* ---- gemmlowp 16-bit fixed point ---------------------------------------------------------- */

/* RescaleConstantInitializer<int16>: an int32 Q0.31-style constant rounding-shifted by 16. */
#define TG_FX16(v) ((int16_t)((((int32_t)(v)) >> 16) + (((((int32_t)(v)) & 0xFFFF) > (0x7FFF + ((v) < 0 ? 1 : 0))) ? 1 : 0)))

FX_INLINE int16_t fx_wrap(int32_t v) /* int16 arithmetic of the C++ reference: wraps */
{
    return (int16_t)(uint16_t)(uint32_t)v;
}

FX_INLINE int16_t fx_sat(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

FX_INLINE int32_t fx_asr(int32_t x, int32_t e) /* arithmetic shift right without implementation-defined >> */
{
    return x >= 0 ? (x >> e) : -((-(x + 1)) >> e) - 1;
}

FX_INLINE int16_t fx_mul(int16_t a, int16_t b) /* SaturatingRoundingDoublingHighMul<int16> */
{
    int32_t ab, nudge;
    if (a == b && a == INT16_MIN) {
        return INT16_MAX;
    }
    ab = (int32_t)a * (int32_t)b;
    nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15));
}

FX_INLINE int32_t fx_rdbp(int32_t x, int32_t e) /* RoundingDivideByPOT, e in [0, 31] */
{
    int32_t mask, rem, thr;
    if (e <= 0) {
        return x;
    }
    mask = (int32_t)(((int64_t)1 << e) - 1);
    rem = x & mask;
    thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return fx_asr(x, e) + (rem > thr ? 1 : 0);
}

FX_INLINE int16_t fx_shl_sat(int16_t x, int32_t e) /* SaturatingRoundingMultiplyByPOT<e>, e > 0 */
{
    const int32_t thr = (1 << (15 - e)) - 1;
    if (x > thr) {
        return INT16_MAX;
    }
    if (x < -thr) {
        return INT16_MIN;
    }
    return fx_sat((int32_t)x * (1 << e));
}

FX_INLINE int16_t fx_rescale(int16_t x, int32_t src_bits, int32_t dst_bits)
{
    const int32_t e = src_bits - dst_bits;
    if (e > 0) {
        return fx_shl_sat(x, e);
    }
    return (int16_t)fx_rdbp(x, -e);
}

/* exp(x) for x in [-1/4, 0), Q0.15 in and out */
FX_INLINE int16_t fx_exp_quarter(int16_t a)
{
    const int16_t constant_term = TG_FX16(1895147668);
    const int16_t one_third = TG_FX16(715827883);
    const int16_t x = fx_wrap(a + (1 << 12));
    const int16_t x2 = fx_mul(x, x);
    const int16_t x3 = fx_mul(x2, x);
    const int16_t x4 = fx_mul(x2, x2);
    const int16_t x4_4 = (int16_t)fx_rdbp(x4, 2);
    const int16_t poly = (int16_t)fx_rdbp(fx_wrap(fx_mul(fx_wrap(x4_4 + x3), one_third) + x2), 1);
    return fx_sat((int32_t)constant_term + fx_mul(constant_term, fx_wrap(x + poly)));
}

/* exp(a) for a <= 0, a with `ib` integer bits; result Q0.15 */
FX_INLINE int16_t fx_exp_neg(int16_t a, int32_t ib)
{
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t fb = 15 - ib;
    const int16_t quarter = (int16_t)(1 << (fb - 2));
    const int16_t amq = fx_wrap((a & (quarter - 1)) - quarter);
    int16_t result = fx_exp_quarter(fx_rescale(amq, ib, 0));
    const int16_t rem = fx_wrap(amq - a);
    int32_t k;
    for (k = 0; k < 7; k++) {
        const int32_t exponent = k - 2;
        if (ib > exponent && (rem & (1 << (fb + exponent))) != 0) {
            result = fx_mul(result, TG_FX16(mults[k]));
        }
    }
    if (ib > 5) {
        const int16_t clamp = TG_FX16(-(1 << (36 - ib)));
        if (a < clamp) {
            result = 0;
        }
    }
    return a == 0 ? INT16_MAX : result;
}

/* Newton-Raphson 1/(1 + a) (one_minus = 0) or (1 - a)/(1 + a) (one_minus = 1), a in Q0.15 */
FX_INLINE int16_t fx_recip(int16_t a, int32_t one_minus)
{
    const int32_t s = (int32_t)a + INT16_MAX;
    const int16_t half_den = (int16_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int16_t x = fx_wrap(TG_FX16(1515870810) + fx_mul(half_den, TG_FX16(-1010580540)));
    int32_t i;
    for (i = 0; i < 3; i++) {
        const int16_t hx = fx_mul(half_den, x);
        const int16_t omh = fx_wrap((1 << 13) - hx);
        x = fx_wrap(x + fx_rescale(fx_mul(x, omh), 4, 2));
    }
    return one_minus ? fx_rescale(fx_wrap(x - (1 << 13)), 2, 0) : fx_rescale(x, 1, 0);
}

/* gemmlowp::logistic, input with `ib` integer bits, output Q0.15 */
FX_INLINE int16_t fx_logistic(int16_t a, int32_t ib)
{
    const int16_t abs_a = a > 0 ? a : fx_wrap(-a);
    const int16_t pos = fx_recip(fx_exp_neg(fx_wrap(-abs_a), ib), 0);
    if (a == 0) {
        return TG_FX16(1 << 30);
    }
    return a > 0 ? pos : fx_wrap(INT16_MAX - pos);
}

/* gemmlowp::tanh, input with `ib` integer bits, output Q0.15 */
FX_INLINE int16_t fx_tanh(int16_t a, int32_t ib)
{
    const int16_t n = a < 0 ? a : fx_wrap(-a);
    const int16_t t = fx_recip(fx_exp_neg(n, ib + 1), 1);
    if (a == 0) {
        return 0;
    }
    return a < 0 ? fx_wrap(-t) : t;
}

int16_t tg_fx16_logistic(int16_t a, int32_t integer_bits)
{
    return fx_logistic(a, integer_bits);
}

int16_t tg_fx16_tanh(int16_t a, int32_t integer_bits)
{
    return fx_tanh(a, integer_bits);
}

/* ---- the LSTM ---------------------------------------------------------------------------- */

/* TFLite MultiplyByQuantizedMultiplier (double rounding); shift > 0 is a left shift. */
static int32_t lstm_mbqm(int32_t x, int32_t mult, int32_t shift)
{
    int64_t ab, nudge;
    int32_t hi;
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t xs = (int32_t)((uint32_t)x << left);
    if (xs == INT32_MIN && mult == INT32_MIN) {
        hi = INT32_MAX;
    } else {
        ab = (int64_t)xs * (int64_t)mult;
        nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
        hi = (int32_t)((ab + nudge) / ((int64_t)1 << 31));
    }
    return fx_rdbp(hi, shift > 0 ? 0 : -shift);
}

/* gate[r] = sat16(mbqm(bias[r] + w[r] . v, mult, shift) + gate[r]) (MatrixBatchVectorMultiplyAccumulate) */
static void lstm_matvec(const int8_t *v, int32_t n, const int8_t *w, const int32_t *bias, int32_t rows, int32_t mult,
                        int32_t shift, int16_t *gate)
{
    int32_t r, j;
    for (r = 0; r < rows; r++) {
        const int8_t *wr = w + (size_t)r * (size_t)n;
        int32_t acc = bias[r];
        for (j = 0; j < n; j++) {
            acc += (int32_t)v[j] * (int32_t)wr[j];
        }
        gate[r] = fx_sat(lstm_mbqm(acc, mult, shift) + gate[r]);
    }
}

int32_t tg_ref_lstm_s8_scratch(const tg_lstm_params_t *p)
{
    return 11 * p->n_cell; /* cell int16[C], 4 gates int16[C], hidden int8[C] */
}

/* gate k: 0 input, 1 forget, 2 cell, 3 output (the order of the weight and bias arrays) */
static void lstm_gate(const tg_lstm_params_t *p, int32_t k, const int8_t *x, const int8_t *h, int16_t *gate)
{
    const int32_t c = p->n_cell;
    int32_t r;
    for (r = 0; r < c; r++) {
        gate[r] = 0;
    }
    lstm_matvec(x, p->n_input, p->w_in + (size_t)k * (size_t)c * (size_t)p->n_input, p->b_in + k * c, c,
                p->mult[k], p->shift[k], gate);
    lstm_matvec(h, c, p->w_rec + (size_t)k * (size_t)c * (size_t)c, p->b_rec + k * c, c, p->mult[4 + k],
                p->shift[4 + k], gate);
    if (k == 2 && p->cell_act == 0) {
        for (r = 0; r < c; r++) {
            gate[r] = fx_tanh(gate[r], 3); /* Q3.12 in */
        }
    } else {
        for (r = 0; r < c; r++) {
            gate[r] = fx_logistic(gate[r], 3);
        }
    }
}

/* out = tanh(cell) with the cell state's 15 + cell_scale integer bits: inlined for 1 (scale 2^-14,
 * what the converter usually picks), the generic function for 0, 2 .. 6 */
static void lstm_cell_tanh(const int16_t *cell, int32_t n, int32_t ib, int16_t *out)
{
    int32_t r;
    if (ib == 1) {
        for (r = 0; r < n; r++) {
            out[r] = fx_tanh(cell[r], 1);
        }
    } else if (ib >= 0 && ib <= 6) {
        for (r = 0; r < n; r++) {
            out[r] = tg_fx16_tanh(cell[r], ib);
        }
    }
    /* else: TFLite's ApplyTanh does nothing outside 0..6 (a cell scale below 2^-15): its output
     * buffer, the input gate's, keeps the input gate */
}

int32_t tg_ref_lstm_s8(const tg_lstm_params_t *p, const int8_t *in, int8_t *out, int8_t *scratch)
{
    const int32_t c = p->n_cell;
    int16_t *cell = (int16_t *)(void *)scratch;
    int16_t *gi = cell + c;
    int16_t *gf = gi + c;
    int16_t *gg = gf + c;
    int16_t *go = gg + c;
    int8_t *h = (int8_t *)(go + c);
    int32_t b, t, r;
    for (b = 0; b < p->n_batch; b++) {
        for (r = 0; r < c; r++) {
            cell[r] = 0;
            h[r] = (int8_t)p->state_zp;
        }
        for (t = 0; t < p->n_time; t++) {
            const int32_t row = p->time_major ? t * p->n_batch + b : b * p->n_time + t;
            const int8_t *x = in + (size_t)row * (size_t)p->n_input;
            lstm_gate(p, 1, x, h, gf);
            lstm_gate(p, 2, x, h, gg);
            lstm_gate(p, 0, x, h, gi);
            for (r = 0; r < c; r++) { /* UpdateLstmCellInteger */
                const int16_t kept = (int16_t)fx_rdbp((int32_t)gf[r] * (int32_t)cell[r], 15);
                const int16_t added = (int16_t)fx_rdbp((int32_t)gi[r] * (int32_t)gg[r], 30 + p->cell_scale);
                int16_t v = fx_sat((int32_t)kept + (int32_t)added);
                if (p->cell_clip > 0) {
                    v = (int16_t)(v > p->cell_clip ? p->cell_clip : (v < -p->cell_clip ? -p->cell_clip : v));
                }
                cell[r] = v;
            }
            lstm_gate(p, 3, x, h, go);
            lstm_cell_tanh(cell, c, 15 + p->cell_scale, gi); /* over the input gate, as TFLite's scratch0 */
            for (r = 0; r < c; r++) { /* CalculateLstmOutputInteger8x8_16, no projection */
                int32_t v = lstm_mbqm((int32_t)go[r] * (int32_t)gi[r], p->hidden_mult, p->hidden_shift) + p->hidden_zp;
                v = v > 127 ? 127 : (v < -128 ? -128 : v);
                h[r] = (int8_t)v;
            }
            for (r = 0; r < c; r++) {
                out[(size_t)row * (size_t)c + (size_t)r] = h[r];
            }
        }
    }
    return 0;
}
