/*
 * tinygen portable data-movement kernels (tg_ref_*): ops that only move int8 bytes,
 * bit-exact with TFLite's reference because they copy values without arithmetic.
 *
 *   tg_ref_remap_s8   out[n,h,w,c] = in[off_n[n] + off_h[h] + off_w[w] + off_c[c]]: STRIDED_SLICE,
 *                     SLICE, TRANSPOSE, GATHER (constant indices), RESIZE_NEAREST_NEIGHBOR. The
 *                     compiler computes the four offset tables (tinygen/ops_shape.py).
 *   tg_ref_split_s8   the inverse of CONCATENATION: SPLIT, SPLIT_V, UNPACK.
 *   tg_ref_resize_bilinear_s8  TFLite's integer bilinear interpolation (indices and weights from
 *                     the compiler; int64 products, no requantization).
 *
 * Every kernel validates its arguments first (TG_ERR_ARG, output untouched).
 */
#include "tg_nn.h"

#include <string.h>

/* min and max of a table of n int32 offsets; 0 when n <= 0 or the table is missing */
static int tg_table_range(const int32_t *t, int32_t n, int64_t *lo, int64_t *hi)
{
    int32_t i;
    if (t == NULL || n <= 0) {
        return 0;
    }
    *lo = t[0];
    *hi = t[0];
    for (i = 1; i < n; ++i) {
        if (t[i] < *lo) {
            *lo = t[i];
        }
        if (t[i] > *hi) {
            *hi = t[i];
        }
    }
    return 1;
}

int32_t tg_ref_remap_s8(const tg_remap_params_t *p, const int8_t *in, int8_t *out)
{
    const int32_t *t[4];
    const int32_t d[4] = {p != NULL ? p->out.n : 0, p != NULL ? p->out.h : 0, p != NULL ? p->out.w : 0,
                          p != NULL ? p->out.c : 0};
    int64_t lo_sum = 0, hi_sum = 0;
    int32_t k, n, h, w, c;
    int8_t *o = out;
    if (p == NULL || in == NULL || out == NULL || p->offsets == NULL || p->in_size <= 0 || in == out) {
        return TG_ERR_ARG;
    }
    t[0] = p->offsets;
    for (k = 0; k < 4; ++k) {
        int64_t lo, hi;
        if (k > 0) {
            t[k] = t[k - 1] + d[k - 1];
        }
        if (!tg_table_range(t[k], d[k], &lo, &hi)) {
            return TG_ERR_ARG;
        }
        lo_sum += lo;
        hi_sum += hi;
    }
    if (lo_sum < 0 || hi_sum >= p->in_size) {
        return TG_ERR_ARG; /* every read stays inside the input */
    }
    for (n = 0; n < d[0]; ++n) {
        for (h = 0; h < d[1]; ++h) {
            for (w = 0; w < d[2]; ++w) {
                const int8_t *row = in + t[0][n] + t[1][h] + t[2][w];
                if (p->c_contiguous) {
                    memcpy(o, row + t[3][0], (size_t)d[3]);
                    o += d[3];
                } else {
                    for (c = 0; c < d[3]; ++c) {
                        *o++ = row[t[3][c]];
                    }
                }
            }
        }
    }
    return TG_OK;
}

/* one index/weight table of RESIZE_BILINEAR: 0 <= lo, hi < size, |weight| < 2048 */
static int tg_bilinear_table_ok(const int32_t *t, int32_t n, int32_t size)
{
    int32_t i;
    if (t == NULL || n <= 0) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (t[3 * i] < 0 || t[3 * i] >= size || t[3 * i + 1] < 0 || t[3 * i + 1] >= size ||
            t[3 * i + 2] <= -2048 || t[3 * i + 2] >= 2048) {
            return 0;
        }
    }
    return 1;
}

int32_t tg_ref_resize_bilinear_s8(const tg_resize_params_t *p, const int8_t *in, int8_t *out)
{
    int32_t b, y, x, c;
    if (p == NULL || in == NULL || out == NULL || in == out || p->in.n != p->out.n || p->in.c != p->out.c ||
        p->in.n <= 0 || p->in.c <= 0 || !tg_bilinear_table_ok(p->rows, p->out.h, p->in.h) ||
        !tg_bilinear_table_ok(p->cols, p->out.w, p->in.w)) {
        return TG_ERR_ARG;
    }
    for (b = 0; b < p->out.n; ++b) {
        for (y = 0; y < p->out.h; ++y) {
            const int32_t *r = p->rows + 3 * y;
            const int64_t wy = r[2];
            for (x = 0; x < p->out.w; ++x) {
                const int32_t *q = p->cols + 3 * x;
                const int64_t wx = q[2];
                const int8_t *i00 = in + (((int64_t)b * p->in.h + r[0]) * p->in.w + q[0]) * p->in.c;
                const int8_t *i10 = in + (((int64_t)b * p->in.h + r[1]) * p->in.w + q[0]) * p->in.c;
                const int8_t *i01 = in + (((int64_t)b * p->in.h + r[0]) * p->in.w + q[1]) * p->in.c;
                const int8_t *i11 = in + (((int64_t)b * p->in.h + r[1]) * p->in.w + q[1]) * p->in.c;
                int8_t *o = out + (((int64_t)b * p->out.h + y) * p->out.w + x) * p->out.c;
                for (c = 0; c < p->in.c; ++c) {
                    const int64_t v = (int64_t)i00[c] * (1024 - wy) * (1024 - wx) + (int64_t)i10[c] * wy * (1024 - wx) +
                                      (int64_t)i01[c] * (1024 - wy) * wx + (int64_t)i11[c] * wy * wx;
                    const int64_t r20 = (v + (v > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20); /* truncates, as C++ */
                    const int32_t u = (int32_t)((uint32_t)r20 & 0xffu);
                    o[c] = (int8_t)(u > 127 ? u - 256 : u);
                }
            }
        }
    }
    return TG_OK;
}

int32_t tg_ref_split_s8(int32_t n_outputs, const int8_t *in, const int32_t *sizes, int32_t outer, int8_t *const *outs)
{
    int64_t row = 0;
    int32_t k, r;
    if (n_outputs <= 0 || in == NULL || sizes == NULL || outer <= 0 || outs == NULL) {
        return TG_ERR_ARG;
    }
    for (k = 0; k < n_outputs; ++k) {
        if (outs[k] == NULL || sizes[k] < 0) {
            return TG_ERR_ARG;
        }
        row += sizes[k];
    }
    if (row <= 0 || row * outer > INT32_MAX) {
        return TG_ERR_ARG;
    }
    for (r = 0; r < outer; ++r) {
        const int8_t *ip = in + (int64_t)r * row;
        for (k = 0; k < n_outputs; ++k) {
            memcpy(outs[k] + (int64_t)r * sizes[k], ip, (size_t)sizes[k]);
            ip += sizes[k];
        }
    }
    return TG_OK;
}
