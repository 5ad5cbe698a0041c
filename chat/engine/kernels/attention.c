/* One decode step's attention for one layer of a llama model, in one call.

   A decode step is one row, so torch spends more time in the ~15 calls per layer around
   attention (views, rope, cat, the cache writes, two bmm and a softmax, each a few us) than in
   the arithmetic. This does the same in one call: rotate the row's queries and key (rope,
   half-split as transformers' llama), write its key and value into the cache, and attend each
   query head over the cached positions (grouped: query head h reads kv head h / group). fp32
   throughout; the exponentials of the softmax use a vectorized exp (below). */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* e^x for x <= 0 (a softmax's x - max), 16 lanes: e^x = 2^n e^r, n = round(x / ln 2),
   r = x - n ln 2 in two parts (Cody-Waite), e^r by its Taylor polynomial to r^7 (|r| <= 0.35:
   error < 1e-7 relative); 2^n applied by vscalefps, which also flushes very negative x to 0. */
static inline __m512 exp_ps(__m512 x) {
    /* below -104 e^x is 0 in fp32; operands in this order so that a NaN passes through */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* out = x * cos + rotate_half(x) * sin over one head of hd (a multiple of 64) values */
static void rope(const float *x, const float *cos, const float *sin, int hd, float *out) {
    const int half = hd / 2;
    for (int j = 0; j < half; j += 16) {
        __m512 lo = _mm512_loadu_ps(x + j), hi = _mm512_loadu_ps(x + half + j);
        _mm512_storeu_ps(out + j, _mm512_sub_ps(_mm512_mul_ps(lo, _mm512_loadu_ps(cos + j)),
                                                _mm512_mul_ps(hi, _mm512_loadu_ps(sin + j))));
        _mm512_storeu_ps(out + half + j,
                         _mm512_add_ps(_mm512_mul_ps(hi, _mm512_loadu_ps(cos + half + j)),
                                       _mm512_mul_ps(lo, _mm512_loadu_ps(sin + half + j))));
    }
}

static inline float dot(const float *a, const float *b, int hd) {
    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b));
    for (int j = 16; j < hd; j += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), acc);
    return _mm512_reduce_add_ps(acc);
}

/* One query head over positions 0..n-1 of its kv head: out = softmax(q K^T / sqrt(hd)) V */
static void attend_head(const float *q, const float *keys, const float *values, int n, int hd,
                        float *scores, float *out) {
    const float scale = 1.0f / sqrtf((float)hd);
    float top = -INFINITY;
    for (int t = 0; t < n; t++) {
        scores[t] = dot(q, keys + (long)t * hd, hd) * scale;
        top = scores[t] > top ? scores[t] : top;
    }
    __m512 sums = _mm512_setzero_ps();
    int t = 0;
    for (; t + 16 <= n; t += 16) {
        __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(scores + t), _mm512_set1_ps(top)));
        _mm512_storeu_ps(scores + t, e);
        sums = _mm512_add_ps(sums, e);
    }
    if (t < n) {
        __mmask16 live = (__mmask16)((1u << (n - t)) - 1);
        __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, scores + t),
                                        _mm512_set1_ps(top)));
        _mm512_mask_storeu_ps(scores + t, live, e);
        sums = _mm512_add_ps(sums, _mm512_maskz_mov_ps(live, e));
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sums));
    for (int j = 0; j < hd; j += 64) { /* 64 values at a time: one pass over V for hd = 64 */
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int s = 0; s < n; s++) {
            const float *v = values + (long)s * hd + j;
            const __m512 p = _mm512_set1_ps(scores[s]);
            a0 = _mm512_fmadd_ps(p, _mm512_loadu_ps(v), a0);
            a1 = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 16), a1);
            a2 = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 32), a2);
            a3 = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 48), a3);
        }
        _mm512_storeu_ps(out + j, _mm512_mul_ps(a0, inv));
        _mm512_storeu_ps(out + j + 16, _mm512_mul_ps(a1, inv));
        _mm512_storeu_ps(out + j + 32, _mm512_mul_ps(a2, inv));
        _mm512_storeu_ps(out + j + 48, _mm512_mul_ps(a3, inv));
    }
}

/* qkv: the row's [heads * hd | kv_heads * hd | kv_heads * hd]; cos, sin: [hd] at position
   `pos`; keys, values: the layer's cache [kv_heads][capacity][hd], written at `pos`;
   out: [heads * hd]. 1 if out of memory (the cache row is written, out is not). */
int decode_attention(const float *qkv, const float *cos, const float *sin, float *keys,
                     float *values, int capacity, int pos, int heads, int kv_heads, int hd,
                     float *out, int threads) {
    const int group = heads / kv_heads, n = pos + 1;
    const float *k_new = qkv + (long)heads * hd, *v_new = k_new + (long)kv_heads * hd;
    for (int h = 0; h < kv_heads; h++) {
        rope(k_new + (long)h * hd, cos, sin, hd, keys + ((long)h * capacity + pos) * hd);
        memcpy(values + ((long)h * capacity + pos) * hd, v_new + (long)h * hd,
               sizeof(float) * hd);
    }
    float *scratch = malloc(sizeof(float) * ((long)heads * n + (long)heads * hd));
    if (!scratch)
        return 1;
    float *queries = scratch + (long)heads * n;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int h = 0; h < heads; h++) {
        const long kv = (long)(h / group) * capacity * hd;
        rope(qkv + (long)h * hd, cos, sin, hd, queries + (long)h * hd);
        attend_head(queries + (long)h * hd, keys + kv, values + kv, n, hd,
                    scratch + (long)h * n, out + (long)h * hd);
    }
    free(scratch);
    return 0;
}
