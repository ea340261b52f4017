/*
 * tinygen DSP intrinsics for the generated kernels (templates/kernels/).
 *
 * One name per Arm DSP/SIMD32 instruction the generated C uses, with tg_ prefix:
 *   - on a target with the DSP extension (__ARM_FEATURE_DSP, e.g. Cortex-M33/M4/M7) they map
 *     to GCC's ACLE intrinsics from <arm_acle.h> (one instruction each);
 *   - everywhere else (the host, Cortex-M0/M33+nodsp) they are exact C definitions of the same
 *     instructions, so host tests run the very code that runs on the board.
 * Define TG_DSP_FORCE_C to get the C definitions on a DSP target too (tests).
 *
 * Semantics (Armv7E-M / Armv8-M DSP; halfword lanes: lo = bits 0..15, hi = bits 16..31):
 *   tg_sxtb16(x)          {sext(x.b0), sext(x.b2)}
 *   tg_sxtb16_ror8(x)     {sext(x.b1), sext(x.b3)}            (SXTB16 r, x, ROR #8)
 *   tg_sxtab16(a, x)      {a.lo + sext(x.b0), a.hi + sext(x.b2)}  (lane-wise, mod 2^16)
 *   tg_sxtab16_ror8(a, x) {a.lo + sext(x.b1), a.hi + sext(x.b3)}
 *   tg_smlad(a, b, c)     c + a.lo*b.lo + a.hi*b.hi            (mod 2^32; the Q flag is ignored)
 *   tg_smladx(a, b, c)    c + a.lo*b.hi + a.hi*b.lo
 *   tg_smuad(a, b)        a.lo*b.lo + a.hi*b.hi
 *   tg_smlaXY(a, b, c)    c + a.X*b.Y, X/Y in {b(ottom), t(op)} halfwords
 *   tg_pkhbt(a, b, s)     {a.lo, (b << s).hi}, s constant in 0..31
 *   tg_pkhtb(a, b, s)     {(b >> s).lo (arithmetic), a.hi}, s constant in 1..32
 *   tg_ssat(x, n)         clamp(x, -2^(n-1), 2^(n-1)-1), n constant in 1..32
 *   tg_usat(x, n)         clamp(x, 0, 2^n-1), n constant in 0..31
 *   tg_qadd(a, b)         saturating a + b
 *   tg_smmul(a, b)        (int32)((int64)a * b >> 32)           (arithmetic shift: floor)
 *   tg_smmulr(a, b)       (int32)(((int64)a * b + 2^31) >> 32)  (rounded)
 *   tg_smmla(a, b, c)     c + tg_smmul(a, b)  (mod 2^32; SMMLA)
 *   tg_smmlar(a, b, c)    c + tg_smmulr(a, b)  (mod 2^32; SMMLAR)
 *   tg_ror(x, n)          rotate right by n (0..31)
 *   tg_smax8(a, b)        byte-wise signed max of 4 int8 lanes (SSUB8 + SEL)
 *   tg_ld32(p)            4 bytes at p (any alignment) as uint32, little-endian
 *   tg_ld16(p)            2 bytes at p as uint32 (zero-extended), little-endian
 *   tg_st32(p, v)         store 4 bytes at p (any alignment)
 *   TG_LDRD(lo, hi, p, off)  lo, hi = the words at p + off, p + off + 4 (bytes; p + off 4-byte
 *                         aligned, off a constant multiple of 4 in 0..1020): one LDRD, never moved
 *                         across another TG_LDRD (volatile asm) on the DSP path
 *   TG_SCHED_BARRIER()    no instruction: memory accesses are not moved across it (keeps GCC's
 *                         scheduler from hoisting the loads of an unrolled loop into register spills)
 * Every helper is a static inline function (or a macro for the constant-operand ones);
 * no signed overflow or implementation-defined shift in the C path.
 */
#ifndef TG_DSP_H
#define TG_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && !defined(TG_DSP_FORCE_C)
#define TG_HAS_DSP 1
#include <arm_acle.h>
#else
#define TG_HAS_DSP 0
#endif

#if defined(__GNUC__)
#define TG_INLINE static inline __attribute__((always_inline))
#else
#define TG_INLINE static inline
#endif

/* ---------------------------------------------------------------- memory (both paths) */

#if defined(__GNUC__)
#define TG_SCHED_BARRIER() __asm__ __volatile__("" ::: "memory")
#else
#define TG_SCHED_BARRIER() ((void)0)
#endif

TG_INLINE uint32_t tg_ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* one LDR on Cortex-M3+ (unaligned access allowed) */
    return v;
}

TG_INLINE uint32_t tg_ld16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return (uint32_t)v;
}

TG_INLINE void tg_st32(void *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

TG_INLINE uint32_t tg_ror(uint32_t x, uint32_t n)
{
    n &= 31u;
    return n == 0u ? x : (x >> n) | (x << (32u - n));
}

#if TG_HAS_DSP

#define TG_LDRD(lo, hi, p, off) \
    __asm__ __volatile__("ldrd %0, %1, [%2, #%c3]" : "=r"(lo), "=r"(hi) : "r"(p), "i"(off))

TG_INLINE uint32_t tg_sxtb16(uint32_t x) { return (uint32_t)__sxtb16((int8x4_t)x); }
/* GCC 12 does not fold a rotate into SXTB16's ROR operand: say it directly. */
TG_INLINE uint32_t tg_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
TG_INLINE uint32_t tg_sxtab16(uint32_t a, uint32_t x) { return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)x); }
TG_INLINE uint32_t tg_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
TG_INLINE int32_t tg_smlad(uint32_t a, uint32_t b, int32_t c) { return __smlad((int16x2_t)a, (int16x2_t)b, c); }
TG_INLINE int32_t tg_smladx(uint32_t a, uint32_t b, int32_t c) { return __smladx((int16x2_t)a, (int16x2_t)b, c); }
TG_INLINE int32_t tg_smuad(uint32_t a, uint32_t b) { return __smuad((int16x2_t)a, (int16x2_t)b); }
TG_INLINE int32_t tg_smlabb(uint32_t a, uint32_t b, int32_t c) { return __smlabb((int32_t)a, (int32_t)b, c); }
TG_INLINE int32_t tg_smlabt(uint32_t a, uint32_t b, int32_t c) { return __smlabt((int32_t)a, (int32_t)b, c); }
TG_INLINE int32_t tg_smlatb(uint32_t a, uint32_t b, int32_t c) { return __smlatb((int32_t)a, (int32_t)b, c); }
TG_INLINE int32_t tg_smlatt(uint32_t a, uint32_t b, int32_t c) { return __smlatt((int32_t)a, (int32_t)b, c); }
TG_INLINE int32_t tg_qadd(int32_t a, int32_t b) { return __qadd(a, b); }
TG_INLINE int32_t tg_smmul(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmul %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
TG_INLINE int32_t tg_smmla(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
TG_INLINE int32_t tg_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
TG_INLINE int32_t tg_smmlar(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
/* PKHBT/PKHTB (no ACLE intrinsic; GCC 12 does not combine the mask-and-shift form) */
#define tg_pkhbt(a, b, s) __extension__({ uint32_t tg__r; \
    __asm__("pkhbt %0, %1, %2, lsl %3" : "=r"(tg__r) : "r"((uint32_t)(a)), "r"((uint32_t)(b)), "I"(s)); tg__r; })
#define tg_pkhtb(a, b, s) __extension__({ uint32_t tg__r; \
    __asm__("pkhtb %0, %1, %2, asr %3" : "=r"(tg__r) : "r"((uint32_t)(a)), "r"((uint32_t)(b)), "I"(s)); tg__r; })
#define tg_ssat(x, n) ((int32_t)__ssat((x), (n)))
#define tg_usat(x, n) ((int32_t)__usat((x), (n)))
TG_INLINE uint32_t tg_smax8(uint32_t a, uint32_t b)
{
    uint32_t r, t;
    __asm__("ssub8 %1, %2, %3\n\tsel %0, %2, %3" : "=r"(r), "=&r"(t) : "r"(a), "r"(b) : "cc");
    return r;
}

#else /* exact C definitions */

#define TG_LDRD(lo, hi, p, off) \
    do { \
        (lo) = tg_ld32((const char *)(p) + (off)); \
        (hi) = tg_ld32((const char *)(p) + (off) + 4); \
    } while (0)

TG_INLINE uint32_t tg__sext8(uint32_t b) { return ((b & 0xFFu) ^ 0x80u) - 0x80u; } /* mod 2^32 */
TG_INLINE int32_t tg__lo(uint32_t x) { return (int32_t)(x & 0xFFFFu) - (int32_t)((x & 0x8000u) << 1); }
TG_INLINE int32_t tg__hi(uint32_t x) { return tg__lo(x >> 16); }
TG_INLINE int32_t tg__wadd(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

/* SWAR: bytes 0 and 2 into halfwords; a set bit 7 times 0x1FE fills bits 8..15 of its lane */
TG_INLINE uint32_t tg_sxtb16(uint32_t x)
{
    const uint32_t t = x & 0x00FF00FFu;
    return t | ((t & 0x00800080u) * 0x1FEu);
}

TG_INLINE uint32_t tg_sxtb16_ror8(uint32_t x) { return tg_sxtb16(tg_ror(x, 8)); }

TG_INLINE uint32_t tg_sxtab16(uint32_t a, uint32_t x)
{
    const uint32_t e = tg_sxtb16(x);
    return ((a + e) & 0xFFFFu) | (((a >> 16) + (e >> 16)) << 16);
}

TG_INLINE uint32_t tg_sxtab16_ror8(uint32_t a, uint32_t x) { return tg_sxtab16(a, tg_ror(x, 8)); }

/* products of two int16 fit int32; their sum wraps like the instruction */
TG_INLINE int32_t tg_smuad(uint32_t a, uint32_t b)
{
    return tg__wadd(tg__lo(a) * tg__lo(b), tg__hi(a) * tg__hi(b));
}

TG_INLINE int32_t tg_smlad(uint32_t a, uint32_t b, int32_t c) { return tg__wadd(c, tg_smuad(a, b)); }

TG_INLINE int32_t tg_smladx(uint32_t a, uint32_t b, int32_t c)
{
    return tg__wadd(c, tg__wadd(tg__lo(a) * tg__hi(b), tg__hi(a) * tg__lo(b)));
}

TG_INLINE int32_t tg_smlabb(uint32_t a, uint32_t b, int32_t c) { return tg__wadd(c, tg__lo(a) * tg__lo(b)); }
TG_INLINE int32_t tg_smlabt(uint32_t a, uint32_t b, int32_t c) { return tg__wadd(c, tg__lo(a) * tg__hi(b)); }
TG_INLINE int32_t tg_smlatb(uint32_t a, uint32_t b, int32_t c) { return tg__wadd(c, tg__hi(a) * tg__lo(b)); }
TG_INLINE int32_t tg_smlatt(uint32_t a, uint32_t b, int32_t c) { return tg__wadd(c, tg__hi(a) * tg__hi(b)); }

TG_INLINE int32_t tg_qadd(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a + (int64_t)b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
}

/* floor(v / 2^32) for int64 v without implementation-defined >> of negative values */
TG_INLINE int32_t tg__hi32(int64_t v)
{
    const uint64_t u = (uint64_t)v;
    const uint32_t hi = (uint32_t)(u >> 32);
    return (hi & 0x80000000u) ? -(int32_t)(~hi) - 1 : (int32_t)hi;
}

TG_INLINE int32_t tg_smmul(int32_t a, int32_t b) { return tg__hi32((int64_t)a * (int64_t)b); }
TG_INLINE int32_t tg_smmla(int32_t a, int32_t b, int32_t c) { return tg__wadd(c, tg_smmul(a, b)); }

/* the sum cannot overflow int64: |a * b| <= 2^62 */
TG_INLINE int32_t tg_smmulr(int32_t a, int32_t b) { return tg__hi32((int64_t)a * (int64_t)b + ((int64_t)1 << 31)); }
TG_INLINE int32_t tg_smmlar(int32_t a, int32_t b, int32_t c) { return tg__wadd(c, tg_smmulr(a, b)); }

TG_INLINE uint32_t tg_pkhbt(uint32_t a, uint32_t b, uint32_t s)
{
    return (a & 0x0000FFFFu) | ((b << (s & 31u)) & 0xFFFF0000u);
}

/* arithmetic right shift by 1..32 without implementation-defined >> of negative values */
TG_INLINE uint32_t tg_pkhtb(uint32_t a, uint32_t b, uint32_t s)
{
    const uint32_t sign = (b & 0x80000000u) ? 0xFFFFFFFFu : 0u;
    const uint32_t sh = s >= 32u ? sign : ((b >> s) | (s == 0u ? 0u : (sign << (32u - s))));
    return (a & 0xFFFF0000u) | (sh & 0x0000FFFFu);
}

TG_INLINE int32_t tg_ssat(int32_t x, int32_t n)
{
    const int64_t hi = ((int64_t)1 << (n - 1)) - 1;
    const int64_t lo = -((int64_t)1 << (n - 1));
    return x > hi ? (int32_t)hi : (x < lo ? (int32_t)lo : x);
}

TG_INLINE int32_t tg_usat(int32_t x, int32_t n)
{
    const int64_t hi = ((int64_t)1 << n) - 1;
    return x < 0 ? 0 : (x > hi ? (int32_t)hi : x);
}

TG_INLINE uint32_t tg_smax8(uint32_t a, uint32_t b)
{
    uint32_t r = 0u, k;
    for (k = 0u; k < 32u; k += 8u) {
        const int32_t x = (int32_t)tg__sext8(a >> k), y = (int32_t)tg__sext8(b >> k);
        r |= ((uint32_t)(x > y ? x : y) & 0xFFu) << k;
    }
    return r;
}

#endif /* TG_HAS_DSP */

#endif /* TG_DSP_H */
