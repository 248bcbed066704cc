// Fused float32 CPU kernels for inference (no autograd): attention over heads of a few channels (the
// DiT's and the fusion network's), and for the DiT's blocks tanh-GELU and LayerNorm + adaLN
// modulation. Each replaces several eager PyTorch kernels and their (B, heads, T, T) or (B, T, C)
// temporaries by one call whose data stays in the cache. Built with AVX2 and FMA by
// rohydr/kernels/cpu.py, only on CPUs that have them; registered as torch.ops.rohydr_dit.*.
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

// 2^y for 8 floats, y clamped to [-126, 127]: a degree-5 polynomial of the fraction (minimax on
// [-1/2, 1/2], relative error 2.3e-7), times 2^round(y) added into the exponent bits.
inline __m256 exp2_8(__m256 y) {
  y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-126.0f)), _mm256_set1_ps(127.0f));
  const __m256 n = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(y, n);
  __m256 p = _mm256_set1_ps(1.3276470126584172e-3f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.675541892647743e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550713464617729e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.24022120237350464f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.6931469440460205f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i exponent = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), exponent));
}

constexpr float kLog2e = 1.4426950408889634f;

inline float sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void check_float_cpu(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == dim, "rohydr_dit: ", name,
              " must be a ", dim, "-D float32 CPU tensor, got ", t.scalar_type(), " of shape ", t.sizes());
}

// Attention works on one (row, head) at a time, with 8 queries in the lanes of a vector and the keys
// taken one by one (broadcast): scores and their maximum in a first pass, then the exponentials and
// the weighted sum of the values in a second, with no horizontal reduction. Scores are in log2 units
// (log2 e folded into the query scale), so that the exponential is 2^y.
struct AttentionShape {
  int64_t T, S, C, c, Tp;  // queries, keys, channels, channels per head, T rounded up to 8
  int64_t offset;          // causal: query i sees the keys j <= i + offset
  bool causal;
};

struct HeadScratch {  // one thread's buffers, reused from head to head
  std::vector<float> k, v;        // the head's keys and values, (S, c)
  std::vector<__m256> qT, yT, p;  // its queries and outputs channel-major, (c, Tp); a block's scores (S, 8 lanes)
  explicit HeadScratch(const AttentionShape& s)
      : k(s.S * s.c), v(s.S * s.c), qT(s.c * s.Tp / 8, _mm256_setzero_ps()), yT(s.c * s.Tp / 8), p(s.S) {}
};

// Lanes l >= j - first_masked + 1 of key j are visible (causal), the others get weight exactly 0.
inline __m256 visible_lanes(int64_t j, int64_t first_masked) {
  return _mm256_cmp_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_ps(static_cast<float>(j - first_masked + 1)),
                       _CMP_GE_OQ);
}

// CH output channels of the block: sum_j p_j v_j / total, for the channel-wise path of wide heads.
template <int CH>
inline void weighted_sum(const __m256* p, const float* v, int64_t c, int64_t keys, __m256 inv_total, float* y,
                         int64_t Tp) {
  __m256 acc[CH];
  for (int d = 0; d < CH; ++d) acc[d] = _mm256_setzero_ps();
  for (int64_t j = 0; j < keys; ++j)
    for (int d = 0; d < CH; ++d) acc[d] = _mm256_fmadd_ps(p[j], _mm256_broadcast_ss(v + j * c + d), acc[d]);
  for (int d = 0; d < CH; ++d) _mm256_storeu_ps(y + d * Tp, _mm256_mul_ps(acc[d], inv_total));
}

// Queries i0..i0+7 of one head against its first `keys` keys; keys from `first_masked` on are seen
// by the later lanes only. C: channels per head, known at compile time (1..8, the queries and the
// accumulators stay in registers), or 0 for any width (weights stored, then summed 4 channels at a time).
template <int C>
void attend_block(const float* __restrict qT, const float* __restrict k, const float* __restrict v, int64_t c_any,
                  int64_t Tp, int64_t i0, int64_t keys, int64_t first_masked, __m256* __restrict p,
                  float* __restrict yT) {
  constexpr bool in_registers = C > 0;
  const int64_t c = in_registers ? C : c_any;
  const __m256 minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 q[in_registers ? C : 1];
  if constexpr (in_registers)
    for (int d = 0; d < C; ++d) q[d] = _mm256_loadu_ps(qT + d * Tp + i0);
  auto query = [&](int64_t d) { return in_registers ? q[d] : _mm256_loadu_ps(qT + d * Tp + i0); };
  __m256 top = minus_inf;
  for (int64_t j = 0; j < keys; ++j) {
    __m256 s = _mm256_mul_ps(query(0), _mm256_broadcast_ss(k + j * c));
    for (int64_t d = 1; d < c; ++d) s = _mm256_fmadd_ps(query(d), _mm256_broadcast_ss(k + j * c + d), s);
    if (j >= first_masked) s = _mm256_blendv_ps(minus_inf, s, visible_lanes(j, first_masked));
    p[j] = s;
    top = _mm256_max_ps(top, s);
  }
  __m256 total = _mm256_setzero_ps();
  __m256 acc[in_registers ? C : 1];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (int64_t j = 0; j < keys; ++j) {
    __m256 e = exp2_8(_mm256_sub_ps(p[j], top));
    if (j >= first_masked) e = _mm256_and_ps(e, visible_lanes(j, first_masked));
    total = _mm256_add_ps(total, e);
    if constexpr (in_registers) {
      for (int d = 0; d < C; ++d) acc[d] = _mm256_fmadd_ps(e, _mm256_broadcast_ss(v + j * C + d), acc[d]);
    } else {
      p[j] = e;
    }
  }
  const __m256 inv_total = _mm256_div_ps(_mm256_set1_ps(1.0f), total);
  if constexpr (in_registers) {
    for (int d = 0; d < C; ++d) _mm256_storeu_ps(yT + d * Tp + i0, _mm256_mul_ps(acc[d], inv_total));
  } else {
    int64_t d = 0;
    for (; d + 4 <= c; d += 4) weighted_sum<4>(p, v + d, c, keys, inv_total, yT + d * Tp + i0, Tp);
    for (; d < c; ++d) weighted_sum<1>(p, v + d, c, keys, inv_total, yT + d * Tp + i0, Tp);
  }
}

// One (row, head): gather its keys and values, its queries transposed and scaled, attend block by
// block, scatter the outputs to the row's slice of `out` (T, C).
template <int C>
void attend_head(const AttentionShape& s, const float* q, int64_t qt, const float* k, int64_t kt, const float* v,
                 int64_t vt, float scale, HeadScratch& w, float* out) {
  const int64_t c = C > 0 ? C : s.c;
  float *qT = reinterpret_cast<float*>(w.qT.data()), *yT = reinterpret_cast<float*>(w.yT.data());
  for (int64_t j = 0; j < s.S; ++j)
    for (int64_t d = 0; d < c; ++d) {
      w.k[j * c + d] = k[j * kt + d];
      w.v[j * c + d] = v[j * vt + d];
    }
  for (int64_t i = 0; i < s.T; ++i)
    for (int64_t d = 0; d < c; ++d) qT[d * s.Tp + i] = q[i * qt + d] * scale;
  for (int64_t i0 = 0; i0 < s.T; i0 += 8) {
    const int64_t keys = s.causal ? std::min(s.S, i0 + s.offset + 8) : s.S;
    const int64_t first_masked = s.causal ? i0 + s.offset + 1 : s.S;
    attend_block<C>(qT, w.k.data(), w.v.data(), c, s.Tp, i0, keys, first_masked, w.p.data(), yT);
  }
  for (int64_t i = 0; i < s.T; ++i)
    for (int64_t d = 0; d < c; ++d) out[i * s.C + d] = yT[d * s.Tp + i];
}

using HeadFn = void (*)(const AttentionShape&, const float*, int64_t, const float*, int64_t, const float*, int64_t,
                        float, HeadScratch&, float*);

template <int C>
HeadFn head_for(int64_t c) {
  if constexpr (C > 8) {
    return attend_head<0>;
  } else {
    return c == C ? attend_head<C> : head_for<C + 1>(c);
  }
}

void check_rows(const at::Tensor& t, const char* name) {
  check_float_cpu(t, name, 3);
  TORCH_CHECK(t.stride(2) == 1, "rohydr_dit: ", name, " must have contiguous channels");
}

// softmax(q k^T / sqrt(C / heads)) v per head, heads concatenated: q (B, T, C), k and v (B, S, C), each
// row-strided at will (views of a packed projection) -> (B, T, C). `causal`: query i sees the keys
// j <= i + |S - T| only (fusion.future_mask).
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
  at::Tensor out = at::empty({B, T, C}, q_in.options());
  if (B == 0 || T == 0 || C == 0) return out;
  TORCH_CHECK(S > 0, "rohydr_dit: attention over no keys");
  const AttentionShape shape{T, S, C, C / heads, (T + 7) / 8 * 8, S > T ? S - T : T - S, causal};
  const float scale = kLog2e / std::sqrt(static_cast<float>(shape.c));
  const HeadFn attend_one_head = head_for<1>(shape.c);
  const float *qs = q_in.data_ptr<float>(), *ks = k_in.data_ptr<float>(), *vs = v_in.data_ptr<float>();
  const int64_t qt = q_in.stride(1), kt = k_in.stride(1), vt = v_in.stride(1);
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, B * heads, 1, [&](int64_t begin, int64_t end) {
    HeadScratch scratch(shape);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / heads, h = bh % heads, channel = h * shape.c;
      attend_one_head(shape, qs + b * q_in.stride(0) + channel, qt, ks + b * k_in.stride(0) + channel, kt,
                      vs + b * v_in.stride(0) + channel, vt, scale, scratch, dst + b * T * C + channel);
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
  const float k0 = -2.0f * 0.7978845608028654f * kLog2e, k1 = 0.044715f;  // 2^(k0 inner) = e^(-2u)
  at::parallel_for(0, x.numel(), 4096, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      const __m256 v = _mm256_loadu_ps(data + i);
      const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(k1), v), _mm256_mul_ps(v, v), v);
      const __m256 e = exp2_8(_mm256_mul_ps(_mm256_set1_ps(k0), inner));
      _mm256_storeu_ps(data + i, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
    }
    for (; i < end; ++i) {
      const float v = data[i];
      data[i] = v / (1.0f + std::exp2(std::min(127.0f, k0 * (v + k1 * v * v * v))));
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
