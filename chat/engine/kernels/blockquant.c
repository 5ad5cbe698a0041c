/* Matrix-vector products over weights stored as GGUF blocks of 32, for decoding (a few rows).

   Q4_1: w = q * d + m, q in 0..15, 16 bytes a block (low nibble: element j, high: j + 16).
   Q8_0: w = q * d,     q in -127..127, 32 bytes a block.
   d and m are fp32 arrays [N][K / 32]. Each weight is rebuilt with one rounding, as gguf's own
   fp32 dequantization does (q * d is exact in fp32), so the products are those of the fp32
   weights up to the order of the sums. Q4_1 rebuilds a block's 16 possible values with one
   fused multiply-add and picks each weight from them by its nibble (a permute), which is
   fewer instructions than converting every nibble to a float. Two blocks a step keep four
   independent accumulators in flight. Rows of W are shared between OpenMP threads; the
   library is linked to the libgomp that torch already loaded, so both use one thread pool.

   Around the product, what a decode step does next to it runs in the same call (each a few
   torch calls of ~2 us otherwise, ~60 times a step): the RMS norm of the input, a LoRA's
   low-rank change (y += B (A x)), and adding the result to the residual stream. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* x . w over one block of Q4_1: the block's 16 values, then each nibble's value */
#define Q4_BLOCK(acc_lo, acc_hi, g)                                                         \
    do {                                                                                    \
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + (g) * 16))); \
        __m512 values = _mm512_fmadd_ps(iota, _mm512_set1_ps(d[g]), _mm512_set1_ps(m[g]));  \
        acc_lo = _mm512_fmadd_ps(_mm512_permutexvar_ps(b, values),                          \
                                 _mm512_loadu_ps(x + (g) * 32), acc_lo);                    \
        acc_hi = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), values),    \
                                 _mm512_loadu_ps(x + (g) * 32 + 16), acc_hi);               \
    } while (0)

static inline float dot_q4_1(const uint8_t *q, const float *d, const float *m,
                             const float *x, int groups) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int g = 0;
    for (; g + 1 < groups; g += 2) {
        Q4_BLOCK(a0, a1, g);
        Q4_BLOCK(a2, a3, g + 1);
    }
    if (g < groups)
        Q4_BLOCK(a0, a1, g);
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* x . w over one block of Q8_0 */
#define Q8_BLOCK(acc_lo, acc_hi, g)                                                         \
    do {                                                                                    \
        __m512 scale = _mm512_set1_ps(d[g]);                                                \
        __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(                                \
            _mm_loadu_si128((const __m128i *)(q + (g) * 32))));                             \
        __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(                                \
            _mm_loadu_si128((const __m128i *)(q + (g) * 32 + 16))));                        \
        acc_lo = _mm512_fmadd_ps(_mm512_mul_ps(lo, scale), _mm512_loadu_ps(x + (g) * 32),    \
                                 acc_lo);                                                   \
        acc_hi = _mm512_fmadd_ps(_mm512_mul_ps(hi, scale),                                  \
                                 _mm512_loadu_ps(x + (g) * 32 + 16), acc_hi);               \
    } while (0)

static inline float dot_q8_0(const int8_t *q, const float *d, const float *x, int groups) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int g = 0;
    for (; g + 1 < groups; g += 2) {
        Q8_BLOCK(a0, a1, g);
        Q8_BLOCK(a2, a3, g + 1);
    }
    if (g < groups)
        Q8_BLOCK(a0, a1, g);
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* The row's input: x itself, or its RMS norm times `norm` (as torch: x * rsqrt(mean(x^2) + eps)
   * norm, in fp32). K is a multiple of 32. */
static void prepare(const float *x, int K, const float *norm, float eps, float *out) {
    if (!norm) {
        memcpy(out, x, sizeof(float) * K);
        return;
    }
    __m512 squares = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) {
        __m512 v = _mm512_loadu_ps(x + k);
        squares = _mm512_fmadd_ps(v, v, squares);
    }
    __m512 scale = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(squares) / K + eps));
    for (int k = 0; k < K; k += 16)
        _mm512_storeu_ps(out + k, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + k), scale),
                                                _mm512_loadu_ps(norm + k)));
}

/* t[j] = a[j] . x for the `rank` rows of a LoRA's A [rank][K] */
static void project(const float *a, int rank, int K, const float *x, float *t) {
    for (int j = 0; j < rank; j++) {
        __m512 acc = _mm512_setzero_ps();
        int k = 0;
        for (; k + 16 <= K; k += 16)
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + (long)j * K + k), _mm512_loadu_ps(x + k),
                                  acc);
        float sum = _mm512_reduce_add_ps(acc);
        for (; k < K; k++)
            sum += a[(long)j * K + k] * x[k];
        t[j] = sum;
    }
}

/* Hardware prefetchers alone left a step's weights streaming at ~14 GB/s from DRAM; asking for
   the row AHEAD rows on brought ~24 GB/s (121 decode matrices of SmolLM2: 7.0-7.7 -> 4.6-4.7 ms;
   2 rows ahead 5.2, 4 rows 4.7-5.3, 8-32 rows 4.6-4.7). */
#define AHEAD 8

static inline void prefetch_row(int kind, const void *q, const float *d, const float *m,
                                long n, int K) {
    const int groups = K / 32, bytes = kind == 4 ? groups * 16 : K;
    const char *row = (const char *)q + n * bytes;
    for (int offset = 0; offset < bytes; offset += 64)
        _mm_prefetch(row + offset, _MM_HINT_T0);
    _mm_prefetch((const char *)(d + n * groups), _MM_HINT_T0);
    if (m)
        _mm_prefetch((const char *)(m + n * groups), _MM_HINT_T0);
}

/* y[r][n] (+)= w[n] . x'[r] (+ sum_j bt[j][n] t[r][j]) for r < rows, x' the prepared rows of x
   [rows][K]; y is [rows][N]. `kind` 4: Q4_1 (q, d, m); 8: Q8_0 (q, d). `bt` is a LoRA's B
   transposed, [rank][N], scaled; `a` its A. `accumulate`: add to y instead of overwriting. */
void block_matvec(int kind, const float *x, int rows, int K, const void *q, const float *d,
                  const float *m, float *y, int N, int threads, const float *norm, float eps,
                  const float *a, const float *bt, int rank, int accumulate) {
    const int groups = K / 32;
#pragma omp parallel num_threads(threads)
    {
        /* every thread prepares the inputs itself: cheaper than a barrier for K floats */
        float *in = malloc(sizeof(float) * ((long)rows * K + (long)rows * rank + 16));
        float *t = in + (long)rows * K;
        for (int r = 0; r < rows; r++) {
            prepare(x + (long)r * K, K, norm, eps, in + (long)r * K);
            if (rank)
                project(a, rank, K, in + (long)r * K, t + (long)r * rank);
        }
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            if (n + AHEAD < N)
                prefetch_row(kind, q, d, m, n + AHEAD, K);
            for (int r = 0; r < rows; r++) {
                const float *xr = in + (long)r * K;
                float v = kind == 4
                    ? dot_q4_1((const uint8_t *)q + (long)n * groups * 16, d + (long)n * groups,
                               m + (long)n * groups, xr, groups)
                    : dot_q8_0((const int8_t *)q + (long)n * K, d + (long)n * groups, xr,
                               groups);
                y[(long)r * N + n] = accumulate ? y[(long)r * N + n] + v : v;
            }
        }
        if (rank) { /* after the barrier of the loop above: y's rows are all written */
#pragma omp for schedule(static)
            for (int n = 0; n < N; n += 16) {
                __mmask16 live = N - n >= 16 ? 0xFFFF : (__mmask16)((1u << (N - n)) - 1);
                for (int r = 0; r < rows; r++) {
                    __m512 acc = _mm512_maskz_loadu_ps(live, y + (long)r * N + n);
                    for (int j = 0; j < rank; j++)
                        acc = _mm512_fmadd_ps(_mm512_set1_ps(t[(long)r * rank + j]),
                                              _mm512_maskz_loadu_ps(live, bt + (long)j * N + n),
                                              acc);
                    _mm512_mask_storeu_ps(y + (long)r * N + n, live, acc);
                }
            }
        }
        free(in);
    }
}

/* ------------------------------------------------------------------------------ prompts

   A prompt's rows make the product compute-bound, where fp32 FMAs (16 products an
   instruction) are the limit. AVX512-VNNI's vpdpwssd does 32 int16 products an instruction
   into int32 at the same rate, so: each weight's q (exact, as above) is an int16, and each
   block of 32 of a row of x is rounded to int16 against the block's largest |x| (15 bits
   plus a sign: rounding errors of at most 1/65534 of that value). Per block and row, the
   integer sum q . xq is then scaled by d and the block's scale, and m times the block's exact
   fp32 sum of x is added, in fp32 (1.3-1.4x fp32 GEMMs on a 310-token prompt, README).

   Weights are packed for this: wp int16 [N/16][K/2][16][2] (16 rows' pairs of neighbouring
   k, one 512-bit vector), dp and mp fp32 [N/16][K/32][16]; N is padded to a multiple of 32
   with zero rows. Q8_0 weights pack the same way with m = 0. A tile is 32 rows of W by TOKENS rows of x: 12 int32 and 12 fp32
   accumulators, which fit in the 32 vector registers (6 rows measured faster than 4 or 8). */
#define TOKENS 6
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* xq [r][k], sx [r][g], xs [r][g] for the rows r0 <= r < r1 of x [rows][K], or of their RMS
   norms times `norm` where given, written to `prepared` (for a LoRA) or else to `scratch` */
static VNNI void quantize_rows(const float *x, int K, int r0, int r1, const float *norm,
                               float eps, float *prepared, float *scratch, int16_t *xq,
                               float *sx, float *xs) {
    const int groups = K / 32;
    for (int r = r0; r < r1; r++) {
        const float *row = x + (long)r * K;
        if (norm) {
            float *out = prepared ? prepared + (long)r * K : scratch;
            prepare(row, K, norm, eps, out);
            row = out;
        }
        for (int g = 0; g < groups; g++) {
            const float *v = row + g * 32;
            __m512 lo = _mm512_loadu_ps(v), hi = _mm512_loadu_ps(v + 16);
            float top = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            __m512 inv = _mm512_set1_ps(top > 0.0f ? 32767.0f / top : 0.0f);
            int16_t *out = xq + (long)r * K + g * 32;
            _mm256_storeu_si256((__m256i *)out,
                                _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(lo, inv))));
            _mm256_storeu_si256((__m256i *)(out + 16),
                                _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(hi, inv))));
            sx[(long)r * groups + g] = top / 32767.0f;
            xs[(long)r * groups + g] = _mm512_reduce_add_ps(_mm512_add_ps(lo, hi));
        }
    }
}

/* y rows t0.. t0 + TOKENS (those below `rows`), columns 32 p .. 32 p + 32 (those below N) */
static VNNI void prompt_tile(const int16_t *xq, const float *sx, const float *xs, int rows,
                             int K, const int16_t *wp, const float *dp, const float *mp,
                             float *y, int N, int p, int t0, int accumulate) {
    const int groups = K / 32;
    const int16_t *w0 = wp + (long)(2 * p) * K * 16, *w1 = w0 + (long)K * 16;
    const float *d0 = dp + (long)(2 * p) * groups * 16, *d1 = d0 + groups * 16;
    const float *m0 = mp + (long)(2 * p) * groups * 16, *m1 = m0 + groups * 16;
    __m512 f0[TOKENS], f1[TOKENS];
    for (int i = 0; i < TOKENS; i++)
        f0[i] = f1[i] = _mm512_setzero_ps();
    for (int g = 0; g < groups; g++) {
        __m512i a0[TOKENS], a1[TOKENS];
        for (int i = 0; i < TOKENS; i++)
            a0[i] = a1[i] = _mm512_setzero_si512();
        const int16_t *v0 = w0 + (long)g * 512, *v1 = w1 + (long)g * 512;
        const int16_t *xg = xq + (long)t0 * K + g * 32;
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) {
            __m512i b0 = _mm512_loadu_si512(v0 + k * 32), b1 = _mm512_loadu_si512(v1 + k * 32);
            for (int i = 0; i < TOKENS; i++) {
                int32_t both; /* x[k], x[k + 1]: one 32-bit lane (memcpy: no aliasing) */
                memcpy(&both, xg + (long)i * K + 2 * k, sizeof both);
                __m512i pair = _mm512_set1_epi32(both);
                a0[i] = _mm512_dpwssd_epi32(a0[i], b0, pair);
                a1[i] = _mm512_dpwssd_epi32(a1[i], b1, pair);
            }
        }
        __m512 dd0 = _mm512_loadu_ps(d0 + g * 16), dd1 = _mm512_loadu_ps(d1 + g * 16);
        __m512 mm0 = _mm512_loadu_ps(m0 + g * 16), mm1 = _mm512_loadu_ps(m1 + g * 16);
        for (int i = 0; i < TOKENS; i++) {
            __m512 scale = _mm512_set1_ps(sx[(long)(t0 + i) * groups + g]);
            __m512 sum = _mm512_set1_ps(xs[(long)(t0 + i) * groups + g]);
            f0[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0[i]), _mm512_mul_ps(dd0, scale), f0[i]);
            f1[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1[i]), _mm512_mul_ps(dd1, scale), f1[i]);
            f0[i] = _mm512_fmadd_ps(mm0, sum, f0[i]);
            f1[i] = _mm512_fmadd_ps(mm1, sum, f1[i]);
        }
    }
    const int left = N - 32 * p;
    const __mmask16 live0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
    const __mmask16 live1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
    for (int i = 0; i < TOKENS && t0 + i < rows; i++) {
        float *out = y + (long)(t0 + i) * N + 32 * p;
        if (accumulate) {
            f0[i] = _mm512_add_ps(f0[i], _mm512_maskz_loadu_ps(live0, out));
            f1[i] = _mm512_add_ps(f1[i], _mm512_maskz_loadu_ps(live1, out + 16));
        }
        _mm512_mask_storeu_ps(out, live0, f0[i]);
        _mm512_mask_storeu_ps(out + 16, live1, f1[i]);
    }
}

/* y [rows][N] (+)= x' [rows][K] W^T, W packed as above, x' x or its RMS norm times `norm`
   (also written to `prepared` where given); 1 if out of memory. Threads round their share of
   the rows, then (after a barrier) take 32-row panels of W, each read once from memory. */
VNNI int block_prompt(const float *x, int rows, int K, const float *norm, float eps,
                      float *prepared, const int16_t *wp, const float *dp, const float *mp,
                      float *y, int N, int threads, int accumulate) {
    const int groups = K / 32, padded = (rows + TOKENS - 1) / TOKENS * TOKENS;
    int16_t *xq = aligned_alloc(64, ((sizeof(int16_t) * padded * K) + 63) / 64 * 64);
    float *sx = calloc((size_t)padded * groups * 2 + (size_t)threads * K, sizeof(float));
    if (!xq || !sx) {
        free(xq), free(sx);
        return 1; /* out of memory: y is untouched */
    }
    float *xs = sx + padded * groups, *scratch = xs + padded * groups;
    memset(xq + (long)rows * K, 0, sizeof(int16_t) * (padded - rows) * K);
#pragma omp parallel num_threads(threads)
    {
        float *mine = scratch + (long)omp_get_thread_num() * K;
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r += TOKENS)
            quantize_rows(x, K, r, r + TOKENS < rows ? r + TOKENS : rows, norm, eps, prepared,
                          mine, xq, sx, xs);
#pragma omp for schedule(static)
        for (int p = 0; p < (N + 31) / 32; p++)
            for (int t0 = 0; t0 < rows; t0 += TOKENS)
                prompt_tile(xq, sx, xs, rows, K, wp, dp, mp, y, N, p, t0, accumulate);
    }
    free(xq), free(sx);
    return 0;
}
