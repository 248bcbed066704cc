// Fused float32 CPU kernels for inference (no autograd): attention over heads of a few channels (the
// DiT's and the fusion network's), and for the DiT's blocks tanh-GELU and LayerNorm + adaLN
// modulation. Each replaces several eager PyTorch kernels and their (B, heads, T, T) or (B, T, C)
// temporaries by one pass over data that stays in the cache. Built with AVX2 and FMA by
// rohydr/models/cpu_kernels.py, only on CPUs that have them; registered as torch.ops.rohydr_dit.*.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <cmath>
#include <limits>
#include <vector>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "dit_cpu.cpp needs -mavx2 -mfma"
#endif

namespace {

// exp(x) for 8 floats, relative error about 2e-7 (Cephes' expf polynomial, range reduction by ln 2).
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}

inline float sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float max8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

void check_float_cpu(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == dim, "rohydr_dit: ", name,
              " must be a ", dim, "-D float32 CPU tensor, got ", t.scalar_type(), " of shape ", t.sizes());
}

// One query row against this (row, head)'s keys: softmax(q k^T) v over BLOCKS x 8 keys, the scores
// kept in registers. kT and vT are channel-major (c, BLOCKS * 8); keys from `visible` on (the causal
// limit, or the padding of the last vector) get weight exactly 0.
template <int BLOCKS>
inline void attend_one(const float* q, int64_t c, const float* kT, const float* vT, int64_t visible, float* y) {
  constexpr int64_t Tp = BLOCKS * 8;
  const __m256 limit = _mm256_set1_ps(static_cast<float>(visible));
  const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 s[BLOCKS], seen[BLOCKS];
  for (int jb = 0; jb < BLOCKS; ++jb) {
    s[jb] = _mm256_setzero_ps();
    seen[jb] = _mm256_cmp_ps(_mm256_add_ps(lane, _mm256_set1_ps(8.0f * jb)), limit, _CMP_LT_OQ);
  }
  for (int64_t d = 0; d < c; ++d) {
    const __m256 qd = _mm256_set1_ps(q[d]);
    for (int jb = 0; jb < BLOCKS; ++jb) s[jb] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kT + d * Tp + jb * 8), s[jb]);
  }
  __m256 top = minus_inf;
  for (int jb = 0; jb < BLOCKS; ++jb) {
    s[jb] = _mm256_blendv_ps(minus_inf, s[jb], seen[jb]);
    top = _mm256_max_ps(top, s[jb]);
  }
  top = _mm256_set1_ps(max8(top));
  __m256 total = _mm256_setzero_ps();
  for (int jb = 0; jb < BLOCKS; ++jb) {
    s[jb] = _mm256_and_ps(exp8(_mm256_sub_ps(s[jb], top)), seen[jb]);
    total = _mm256_add_ps(total, s[jb]);
  }
  const float inv_total = 1.0f / sum8(total);
  for (int64_t d = 0; d < c; ++d) {
    __m256 acc = _mm256_mul_ps(s[0], _mm256_loadu_ps(vT + d * Tp));
    for (int jb = 1; jb < BLOCKS; ++jb) acc = _mm256_fmadd_ps(s[jb], _mm256_loadu_ps(vT + d * Tp + jb * 8), acc);
    y[d] = sum8(acc) * inv_total;
  }
}

using AttendFn = void (*)(const float*, int64_t, const float*, const float*, int64_t, float*);

template <int BLOCKS>
AttendFn attend_for(int64_t blocks) {
  if constexpr (BLOCKS > 16) {
    return nullptr;
  } else {
    return blocks == BLOCKS ? attend_one<BLOCKS> : attend_for<BLOCKS + 1>(blocks);
  }
}

void check_rows(const at::Tensor& t, const char* name) {
  check_float_cpu(t, name, 3);
  TORCH_CHECK(t.stride(2) == 1, "rohydr_dit: ", name, " must have contiguous channels");
}

// softmax(q k^T / sqrt(C / heads)) v per head, heads concatenated: q (B, T, C), k and v (B, S, C), each
// row-strided at will (views of a packed projection) -> (B, T, C). `causal`: query i sees the keys
// j <= i + |S - T| only (fusion.future_mask). S <= 128.
at::Tensor attention(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, int64_t heads,
                     bool causal) {
  check_rows(q_in, "q");
  check_rows(k_in, "k");
  check_rows(v_in, "v");
  const int64_t B = q_in.size(0), T = q_in.size(1), C = q_in.size(2), S = k_in.size(1);
  TORCH_CHECK(k_in.size(0) == B && v_in.size(0) == B && k_in.size(2) == C && v_in.size(2) == C &&
                  v_in.size(1) == S,
              "rohydr_dit: q ", q_in.sizes(), ", k ", k_in.sizes(), " and v ", v_in.sizes(),
              " must be (B, T, C), (B, S, C), (B, S, C)");
  TORCH_CHECK(heads > 0 && C % heads == 0, "rohydr_dit: ", C, " channels do not split into ", heads, " heads");
  const int64_t c = C / heads, blocks = (S + 7) / 8, Sp = blocks * 8;  // keys padded to whole vectors
  const AttendFn attend = attend_for<1>(blocks);
  TORCH_CHECK(attend != nullptr || S == 0, "rohydr_dit: attention supports up to 128 keys, got ", S);
  at::Tensor out = at::empty({B, T, C}, q_in.options());
  if (B == 0 || T == 0) return out;
  TORCH_CHECK(S > 0, "rohydr_dit: attention over no keys");
  const float scale = 1.0f / std::sqrt(static_cast<float>(c));
  const float *qs = q_in.data_ptr<float>(), *ks = k_in.data_ptr<float>(), *vs = v_in.data_ptr<float>();
  const int64_t qb = q_in.stride(0), qt = q_in.stride(1), kb = k_in.stride(0), kt = k_in.stride(1);
  const int64_t vb = v_in.stride(0), vt = v_in.stride(1);
  const int64_t offset = S > T ? S - T : T - S;
  float* dst = out.data_ptr<float>();

  at::parallel_for(0, B * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kT(c * Sp, 0.0f), vT(c * Sp, 0.0f), q(c);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / heads, h = bh % heads;
      for (int64_t j = 0; j < S; ++j)
        for (int64_t d = 0; d < c; ++d) {
          kT[d * Sp + j] = ks[b * kb + j * kt + h * c + d];
          vT[d * Sp + j] = vs[b * vb + j * vt + h * c + d];
        }
      for (int64_t i = 0; i < T; ++i) {
        for (int64_t d = 0; d < c; ++d) q[d] = qs[b * qb + i * qt + h * c + d] * scale;
        const int64_t visible = causal ? std::min(S, i + offset + 1) : S;
        attend(q.data(), c, kT.data(), vT.data(), visible, dst + (b * T + i) * C + h * c);
      }
    }
  });
  return out;
}

// In place: x * sigmoid(2u) with u = sqrt(2 / pi) (x + 0.044715 x^3), which equals
// 0.5 x (1 + tanh(u)) without its cancellation for negative x.
at::Tensor gelu_tanh_(at::Tensor x) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "rohydr_dit: gelu_tanh_ needs a contiguous float32 CPU tensor");
  float* data = x.data_ptr<float>();
  const float k0 = -2.0f * 0.7978845608028654f, k1 = 0.044715f;
  at::parallel_for(0, x.numel(), 4096, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      const __m256 v = _mm256_loadu_ps(data + i);
      const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(k1), v), _mm256_mul_ps(v, v), v);
      const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(k0), inner));
      _mm256_storeu_ps(data + i, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
    }
    for (; i < end; ++i) {
      const float v = data[i];
      data[i] = v / (1.0f + std::exp(std::min(88.3f, k0 * (v + k1 * v * v * v))));
    }
  });
  return x;
}

// LayerNorm over the last dimension (no affine) of x (B, T, C), then * (1 + scale) + shift with
// shift and scale (B, C), rows possibly strided: the DiT's modulate(norm(x), shift, scale).
at::Tensor layernorm_modulate(const at::Tensor& x_in, const at::Tensor& shift_in, const at::Tensor& scale_in,
                              double eps) {
  check_float_cpu(x_in, "x", 3);
  check_float_cpu(shift_in, "shift", 2);
  check_float_cpu(scale_in, "scale", 2);
  const int64_t B = x_in.size(0), T = x_in.size(1), C = x_in.size(2);
  TORCH_CHECK(shift_in.size(0) == B && shift_in.size(1) == C && scale_in.sizes() == shift_in.sizes(),
              "rohydr_dit: shift and scale must be (B, C) = (", B, ", ", C, "), got ", shift_in.sizes(), " and ",
              scale_in.sizes());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor shift = shift_in.stride(1) == 1 ? shift_in : shift_in.contiguous();
  const at::Tensor scale = scale_in.stride(1) == 1 ? scale_in : scale_in.contiguous();
  const int64_t shift_stride = shift.stride(0), scale_stride = scale.stride(0);
  at::Tensor out = at::empty_like(x);
  const float* xs = x.data_ptr<float>();
  const float* sh = shift.data_ptr<float>();
  const float* sc = scale.data_ptr<float>();
  float* ys = out.data_ptr<float>();
  const int64_t vectors = C / 8;
  at::parallel_for(0, B * T, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = xs + r * C;
      const float* shift_row = sh + (r / T) * shift_stride;
      const float* scale_row = sc + (r / T) * scale_stride;
      float* y = ys + r * C;
      __m256 acc = _mm256_setzero_ps();
      for (int64_t v = 0; v < vectors; ++v) acc = _mm256_add_ps(acc, _mm256_loadu_ps(in + 8 * v));
      float sum = sum8(acc);
      for (int64_t k = 8 * vectors; k < C; ++k) sum += in[k];
      const float mean = sum / C;
      const __m256 mean8 = _mm256_set1_ps(mean);
      acc = _mm256_setzero_ps();
      for (int64_t v = 0; v < vectors; ++v) {
        const __m256 centred = _mm256_sub_ps(_mm256_loadu_ps(in + 8 * v), mean8);
        acc = _mm256_fmadd_ps(centred, centred, acc);
      }
      float squares = sum8(acc);
      for (int64_t k = 8 * vectors; k < C; ++k) squares += (in[k] - mean) * (in[k] - mean);
      const float rstd = 1.0f / std::sqrt(squares / C + static_cast<float>(eps));
      const __m256 rstd8 = _mm256_set1_ps(rstd), one = _mm256_set1_ps(1.0f);
      for (int64_t v = 0; v < vectors; ++v) {
        const __m256 normed = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(in + 8 * v), mean8), rstd8);
        const __m256 gain = _mm256_add_ps(one, _mm256_loadu_ps(scale_row + 8 * v));
        _mm256_storeu_ps(y + 8 * v, _mm256_fmadd_ps(normed, gain, _mm256_loadu_ps(shift_row + 8 * v)));
      }
      for (int64_t k = 8 * vectors; k < C; ++k) y[k] = (in[k] - mean) * rstd * (1.0f + scale_row[k]) + shift_row[k];
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(rohydr_dit, m) {
  m.def("attention(Tensor q, Tensor k, Tensor v, int heads, bool causal) -> Tensor");
  m.def("gelu_tanh_(Tensor(a!) x) -> Tensor(a!)");
  m.def("layernorm_modulate(Tensor x, Tensor shift, Tensor scale, float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(rohydr_dit, CPU, m) {
  m.impl("attention", attention);
  m.impl("gelu_tanh_", gelu_tanh_);
  m.impl("layernorm_modulate", layernorm_modulate);
}
