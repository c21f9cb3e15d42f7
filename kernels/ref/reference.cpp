// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "moesim/core/error.hpp"

namespace moesim::kernels::ref {

namespace {

void require_positive(const char* where, const char* name, std::int64_t value) {
  if (value < 1) {
    throw Error(std::string(where) + ": " + name + " must be >= 1, got " + std::to_string(value));
  }
}

/** tokens, experts and top_k are >= 1 and top_k <= experts. */
void require_routing(const char* where, std::int64_t tokens, std::int64_t experts, std::int64_t top_k) {
  require_positive(where, "tokens", tokens);
  require_positive(where, "experts", experts);
  require_positive(where, "top_k", top_k);
  if (top_k > experts) {
    throw Error(std::string(where) + ": top_k = " + std::to_string(top_k) + " exceeds experts = " +
                std::to_string(experts) + " (allowed: 1 <= top_k <= experts)");
  }
}

template <class V>
void require_size(const char* where, const char* name, const V& v, std::int64_t expected, const char* formula) {
  if (static_cast<std::int64_t>(v.size()) != expected) {
    throw Error(std::string(where) + ": " + name + " holds " + std::to_string(v.size()) + " elements, expected " +
                formula + " = " + std::to_string(expected));
  }
}

}  // namespace

std::vector<double> gemm(const std::vector<float>& a, const std::vector<float>& b, std::int64_t m, std::int64_t n,
                         std::int64_t k, bool trans_b) {
  return batched_gemm(a, b, 1, m, n, k, trans_b);
}

std::vector<double> batched_gemm(const std::vector<float>& a, const std::vector<float>& b, std::int64_t batch,
                                 std::int64_t m, std::int64_t n, std::int64_t k, bool trans_b) {
  constexpr const char* kWhere = "ref::batched_gemm";
  require_positive(kWhere, "batch", batch);
  require_positive(kWhere, "m", m);
  require_positive(kWhere, "n", n);
  require_positive(kWhere, "k", k);
  require_size(kWhere, "a", a, batch * m * k, "batch·m·k");
  require_size(kWhere, "b", b, batch * k * n, "batch·k·n");
  std::vector<double> c(static_cast<std::size_t>(batch * m * n), 0.0);
  std::vector<double> row(static_cast<std::size_t>(n));
  for (std::int64_t p = 0; p < batch; ++p) {
    const float* ap = a.data() + p * m * k;
    const float* bp = b.data() + p * k * n;
    double* cp = c.data() + p * m * n;
    for (std::int64_t i = 0; i < m; ++i) {
      std::fill(row.begin(), row.end(), 0.0);
      for (std::int64_t l = 0; l < k; ++l) {
        const double av = ap[i * k + l];
        if (trans_b) {
          for (std::int64_t j = 0; j < n; ++j) row[j] += av * bp[j * k + l];
        } else {
          const float* brow = bp + l * n;
          for (std::int64_t j = 0; j < n; ++j) row[j] += av * brow[j];
        }
      }
      std::copy(row.begin(), row.end(), cp + i * n);
    }
  }
  return c;
}

double fp8_scale(const std::vector<float>& values) {
  double amax = 0.0;
  for (float v : values) {
    if (!std::isfinite(v)) throw Error("ref::fp8_scale: a NaN or infinite element has no fp8 scale");
    amax = std::max(amax, static_cast<double>(std::fabs(v)));
  }
  return amax > 0.0 ? amax / static_cast<double>(kE4m3Max) : 1.0;
}

std::vector<float> quantize_e4m3(const std::vector<float>& values, double scale) {
  if (!std::isfinite(scale) || scale <= 0.0) {
    throw Error("ref::quantize_e4m3: scale must be finite and > 0, got " + std::to_string(scale));
  }
  std::vector<float> q(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) q[i] = round_to_e4m3(static_cast<float>(values[i] / scale));
  return q;
}

std::vector<double> gemm_fp8(const std::vector<float>& qa, const std::vector<float>& qb, double scale_a, double scale_b,
                             std::int64_t m, std::int64_t n, std::int64_t k, bool trans_b) {
  constexpr const char* kWhere = "ref::gemm_fp8";
  for (double sc : {scale_a, scale_b}) {
    if (!std::isfinite(sc) || sc <= 0.0) throw Error(std::string(kWhere) + ": scales must be finite and > 0");
  }
  for (const auto* v : {&qa, &qb}) {
    for (float x : *v) {
      if (!(round_to_e4m3(x) == x)) {
        throw Error(std::string(kWhere) + ": element " + std::to_string(x) +
                    " is not an E4M3 value (quantize_e4m3 the operands first)");
      }
    }
  }
  std::vector<double> c = batched_gemm(qa, qb, 1, m, n, k, trans_b);
  for (double& x : c) x *= scale_a * scale_b;
  return c;
}

std::int64_t capacity(std::int64_t tokens, std::int64_t experts, std::int64_t top_k, double capacity_factor) {
  constexpr const char* kWhere = "ref::capacity";
  require_routing(kWhere, tokens, experts, top_k);
  if (!std::isfinite(capacity_factor) || capacity_factor <= 0.0) {
    throw Error(std::string(kWhere) + ": capacity_factor must be finite and > 0 (zero capacity drops every "
                "token), got " + std::to_string(capacity_factor));
  }
  const double exact = capacity_factor * static_cast<double>(top_k) * static_cast<double>(tokens) /
                       static_cast<double>(experts);
  const double nearest = std::round(exact);
  const double value = std::abs(exact - nearest) <= 1e-9 * std::max(1.0, exact) ? nearest : std::ceil(exact);
  if (value > static_cast<double>(std::numeric_limits<std::int32_t>::max())) {
    throw Error(std::string(kWhere) + ": capacity " + std::to_string(value) + " exceeds 2^31-1");
  }
  return static_cast<std::int64_t>(value);
}

RouterOutput softmax_topk(const std::vector<double>& logits, std::int64_t tokens, std::int64_t experts,
                          std::int64_t top_k, bool renormalize) {
  constexpr const char* kWhere = "ref::softmax_topk";
  require_routing(kWhere, tokens, experts, top_k);
  require_size(kWhere, "logits", logits, tokens * experts, "tokens·experts");
  RouterOutput out;
  out.tokens = tokens;
  out.experts = experts;
  out.top_k = top_k;
  out.probs.resize(static_cast<std::size_t>(tokens * experts));
  out.expert.resize(static_cast<std::size_t>(tokens * top_k));
  out.weight.resize(static_cast<std::size_t>(tokens * top_k));
  std::vector<std::int32_t> order(static_cast<std::size_t>(experts));
  for (std::int64_t t = 0; t < tokens; ++t) {
    const double* l = logits.data() + t * experts;
    double* p = out.probs.data() + t * experts;
    const double mx = *std::max_element(l, l + experts);
    double sum = 0.0;
    for (std::int64_t e = 0; e < experts; ++e) {
      p[e] = std::exp(l[e] - mx);
      sum += p[e];
    }
    for (std::int64_t e = 0; e < experts; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [p](std::int32_t x, std::int32_t y) {
      return p[x] > p[y] || (p[x] == p[y] && x < y);
    });
    double chosen = 0.0;
    for (std::int64_t j = 0; j < top_k; ++j) chosen += p[order[j]];
    for (std::int64_t j = 0; j < top_k; ++j) {
      out.expert[t * top_k + j] = order[j];
      out.weight[t * top_k + j] = renormalize ? p[order[j]] / chosen : p[order[j]];
    }
  }
  return out;
}

double DispatchPlan::drop_rate() const {
  const std::int64_t total = tokens * top_k;
  return total > 0 ? static_cast<double>(dropped) / static_cast<double>(total) : 0.0;
}

std::int64_t DispatchPlan::kept() const {
  return std::accumulate(count.begin(), count.end(), std::int64_t{0});
}

DispatchPlan plan_dispatch(const std::vector<std::int32_t>& expert, std::int64_t tokens, std::int64_t experts,
                           std::int64_t top_k, std::int64_t capacity, DispatchLayout layout) {
  constexpr const char* kWhere = "ref::plan_dispatch";
  require_routing(kWhere, tokens, experts, top_k);
  if (capacity < 1) {
    throw Error(std::string(kWhere) + ": capacity must be >= 1 (zero capacity drops every token), got " +
                std::to_string(capacity));
  }
  require_size(kWhere, "expert", expert, tokens * top_k, "tokens·top_k");
  DispatchPlan plan;
  plan.tokens = tokens;
  plan.experts = experts;
  plan.top_k = top_k;
  plan.capacity = capacity;
  plan.layout = layout;
  plan.demand.assign(static_cast<std::size_t>(experts), 0);
  plan.count.assign(static_cast<std::size_t>(experts), 0);
  plan.offset.assign(static_cast<std::size_t>(experts), 0);
  plan.dest_row.assign(static_cast<std::size_t>(tokens * top_k), -1);

  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t j = 0; j < top_k; ++j) {
      const std::int32_t e = expert[t * top_k + j];
      if (e < 0 || e >= experts) {
        throw Error(std::string(kWhere) + ": token " + std::to_string(t) + " choice " + std::to_string(j) +
                    " names expert " + std::to_string(e) + " (allowed: 0.." + std::to_string(experts - 1) + ")");
      }
      for (std::int64_t i = 0; i < j; ++i) {
        if (expert[t * top_k + i] == e) {
          throw Error(std::string(kWhere) + ": token " + std::to_string(t) + " picks expert " + std::to_string(e) +
                      " twice (top-k choices must be distinct)");
        }
      }
    }
  }
  // Slots in choice-major order (all first choices, then all second choices, ...).
  std::vector<std::int64_t> slot(static_cast<std::size_t>(tokens * top_k), 0);
  for (std::int64_t j = 0; j < top_k; ++j) {
    for (std::int64_t t = 0; t < tokens; ++t) {
      const std::int32_t e = expert[t * top_k + j];
      slot[t * top_k + j] = plan.demand[e]++;
    }
  }
  std::int64_t next = 0;
  for (std::int64_t e = 0; e < experts; ++e) {
    plan.count[e] = static_cast<std::int32_t>(std::min<std::int64_t>(plan.demand[e], capacity));
    plan.dropped += plan.demand[e] - plan.count[e];
    plan.offset[e] = layout == DispatchLayout::contiguous ? next : e * capacity;
    next += plan.count[e];
  }
  plan.rows = layout == DispatchLayout::contiguous ? next : experts * capacity;
  if (plan.rows > std::numeric_limits<std::int32_t>::max()) {
    throw Error(std::string(kWhere) + ": the permuted buffer would have " + std::to_string(plan.rows) +
                " rows (more than 2^31-1)");
  }
  plan.row_token.assign(static_cast<std::size_t>(plan.rows), -1);
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t j = 0; j < top_k; ++j) {
      const std::int64_t a = t * top_k + j;
      if (slot[a] >= capacity) continue;
      const std::int64_t row = plan.offset[expert[a]] + slot[a];
      plan.dest_row[a] = static_cast<std::int32_t>(row);
      plan.row_token[row] = static_cast<std::int32_t>(t);
    }
  }
  return plan;
}

std::vector<float> permute(const std::vector<float>& x, std::int64_t d, const DispatchPlan& plan) {
  constexpr const char* kWhere = "ref::permute";
  require_positive(kWhere, "d", d);
  require_size(kWhere, "x", x, plan.tokens * d, "tokens·d");
  std::vector<float> out(static_cast<std::size_t>(plan.rows * d), 0.0f);
  for (std::int64_t r = 0; r < plan.rows; ++r) {
    const std::int32_t t = plan.row_token[r];
    if (t < 0) continue;
    std::copy(x.begin() + t * d, x.begin() + (t + 1) * d, out.begin() + r * d);
  }
  return out;
}

std::vector<double> unpermute(const std::vector<float>& y, std::int64_t d, const DispatchPlan& plan,
                              const std::vector<double>& weight) {
  constexpr const char* kWhere = "ref::unpermute";
  require_positive(kWhere, "d", d);
  require_size(kWhere, "y", y, plan.rows * d, "rows·d");
  require_size(kWhere, "weight", weight, plan.tokens * plan.top_k, "tokens·top_k");
  std::vector<double> out(static_cast<std::size_t>(plan.tokens * d), 0.0);
  for (std::int64_t t = 0; t < plan.tokens; ++t) {
    for (std::int64_t j = 0; j < plan.top_k; ++j) {
      const std::int64_t a = t * plan.top_k + j;
      const std::int32_t row = plan.dest_row[a];
      if (row < 0) continue;
      for (std::int64_t c = 0; c < d; ++c) out[t * d + c] += weight[a] * y[row * d + c];
    }
  }
  return out;
}

std::vector<double> activation(const std::vector<float>& h, std::int64_t rows, std::int64_t f, Activation act) {
  constexpr const char* kWhere = "ref::activation";
  require_positive(kWhere, "rows", rows);
  require_positive(kWhere, "f", f);
  const std::int64_t width = is_gated(act) ? 2 * f : f;
  require_size(kWhere, "h", h, rows * width, is_gated(act) ? "rows·2f" : "rows·f");
  std::vector<double> out(static_cast<std::size_t>(rows * f));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < f; ++c) {
      const double g = activate(act, h[r * width + c]);
      out[r * f + c] = is_gated(act) ? g * h[r * width + f + c] : g;
    }
  }
  return out;
}

Segments segments_of(const DispatchPlan& plan) {
  Segments s;
  s.offset = plan.offset;
  s.count.assign(plan.count.begin(), plan.count.end());
  s.rows = plan.rows;
  return s;
}

std::vector<double> expert_ffn(const std::vector<float>& x, const Segments& segments, const std::vector<float>& w13,
                               const std::vector<float>& w2, std::int64_t d, std::int64_t f, Activation act) {
  constexpr const char* kWhere = "ref::expert_ffn";
  require_positive(kWhere, "d", d);
  require_positive(kWhere, "f", f);
  const auto experts = static_cast<std::int64_t>(segments.offset.size());
  require_positive(kWhere, "experts", experts);
  if (segments.count.size() != segments.offset.size()) {
    throw Error(std::string(kWhere) + ": segments hold " + std::to_string(segments.offset.size()) + " offsets but " +
                std::to_string(segments.count.size()) + " counts");
  }
  const std::int64_t g = is_gated(act) ? 2 : 1;
  require_size(kWhere, "x", x, segments.rows * d, "rows·d");
  require_size(kWhere, "w13", w13, experts * d * g * f, is_gated(act) ? "experts·d·2f" : "experts·d·f");
  require_size(kWhere, "w2", w2, experts * f * d, "experts·f·d");
  std::vector<double> y(static_cast<std::size_t>(segments.rows * d), 0.0);
  std::vector<double> h(static_cast<std::size_t>(g * f));
  std::vector<double> a(static_cast<std::size_t>(f));
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t begin = segments.offset[e];
    const std::int64_t n = segments.count[e];
    if (n < 0 || begin < 0 || begin + n > segments.rows) {
      throw Error(std::string(kWhere) + ": segment of expert " + std::to_string(e) + " [" + std::to_string(begin) +
                  ", " + std::to_string(begin + n) + ") lies outside the " + std::to_string(segments.rows) + " rows");
    }
    const float* w1e = w13.data() + e * d * g * f;
    const float* w2e = w2.data() + e * f * d;
    for (std::int64_t r = begin; r < begin + n; ++r) {
      std::fill(h.begin(), h.end(), 0.0);
      for (std::int64_t l = 0; l < d; ++l) {
        const double xv = x[r * d + l];
        const float* wrow = w1e + l * g * f;
        for (std::int64_t c = 0; c < g * f; ++c) h[c] += xv * wrow[c];
      }
      for (std::int64_t c = 0; c < f; ++c) {
        const double act_v = activate(act, h[c]);
        a[c] = g == 2 ? act_v * h[f + c] : act_v;
      }
      for (std::int64_t c = 0; c < f; ++c) {
        const double av = a[c];
        const float* wrow = w2e + c * d;
        for (std::int64_t o = 0; o < d; ++o) y[r * d + o] += av * wrow[o];
      }
    }
  }
  return y;
}

std::vector<double> expert_ffn_fp8(const std::vector<float>& qx, double x_scale, const Segments& segments,
                                   const std::vector<float>& qw13, const std::vector<double>& w13_scale,
                                   const std::vector<float>& qw2, const std::vector<double>& w2_scale, double a_scale,
                                   std::int64_t d, std::int64_t f, Activation act) {
  constexpr const char* kWhere = "ref::expert_ffn_fp8";
  require_positive(kWhere, "d", d);
  require_positive(kWhere, "f", f);
  const auto experts = static_cast<std::int64_t>(segments.offset.size());
  require_positive(kWhere, "experts", experts);
  const std::int64_t g = is_gated(act) ? 2 : 1;
  require_size(kWhere, "qx", qx, segments.rows * d, "rows·d");
  require_size(kWhere, "qw13", qw13, experts * d * g * f, is_gated(act) ? "experts·d·2f" : "experts·d·f");
  require_size(kWhere, "qw2", qw2, experts * f * d, "experts·f·d");
  require_size(kWhere, "w13_scale", w13_scale, experts, "experts");
  require_size(kWhere, "w2_scale", w2_scale, experts, "experts");
  for (double sc : {x_scale, a_scale}) {
    if (!std::isfinite(sc) || sc <= 0.0) throw Error(std::string(kWhere) + ": scales must be finite and > 0");
  }
  for (const auto* v : {&qx, &qw13, &qw2}) {
    for (float x : *v) {
      if (!(round_to_e4m3(x) == x)) throw Error(std::string(kWhere) + ": operands must hold E4M3 values (quantize first)");
    }
  }
  std::vector<double> y(static_cast<std::size_t>(segments.rows * d), 0.0);
  std::vector<double> h(static_cast<std::size_t>(g * f));
  std::vector<double> qa(static_cast<std::size_t>(f));
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t begin = segments.offset[e];
    const std::int64_t n = segments.count[e];
    if (n < 0 || begin < 0 || begin + n > segments.rows) {
      throw Error(std::string(kWhere) + ": segment of expert " + std::to_string(e) + " lies outside the rows");
    }
    if (!std::isfinite(w13_scale[e]) || w13_scale[e] <= 0.0 || !std::isfinite(w2_scale[e]) || w2_scale[e] <= 0.0) {
      throw Error(std::string(kWhere) + ": scales must be finite and > 0");
    }
    const float* w1e = qw13.data() + e * d * g * f;
    const float* w2e = qw2.data() + e * f * d;
    for (std::int64_t r = begin; r < begin + n; ++r) {
      std::fill(h.begin(), h.end(), 0.0);
      for (std::int64_t l = 0; l < d; ++l) {
        const double xv = qx[r * d + l];
        const float* wrow = w1e + l * g * f;
        for (std::int64_t c = 0; c < g * f; ++c) h[c] += xv * wrow[c];
      }
      for (double& v : h) v = round_to_bf16(static_cast<float>(x_scale * w13_scale[e] * v));
      for (std::int64_t c = 0; c < f; ++c) {
        const double av = g == 2 ? activate(act, h[c]) * h[f + c] : activate(act, h[c]);
        qa[c] = round_to_e4m3(static_cast<float>(av) / static_cast<float>(a_scale));
      }
      for (std::int64_t c = 0; c < f; ++c) {
        const double av = qa[c];
        const float* wrow = w2e + c * d;
        for (std::int64_t o = 0; o < d; ++o) y[r * d + o] += av * wrow[o];
      }
      for (std::int64_t o = 0; o < d; ++o) y[r * d + o] *= a_scale * w2_scale[e];
    }
  }
  return y;
}

std::vector<double> dense_ffn(const std::vector<float>& x, std::int64_t tokens, const std::vector<float>& w13,
                              const std::vector<float>& w2, std::int64_t d, std::int64_t f, Activation act) {
  require_positive("ref::dense_ffn", "tokens", tokens);
  Segments one;
  one.offset = {0};
  one.count = {tokens};
  one.rows = tokens;
  return expert_ffn(x, one, w13, w2, d, f, act);
}

namespace {
template <class G>
double frobenius_error(const std::vector<G>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) {
    throw Error("ref::relative_frobenius_error: got " + std::to_string(got.size()) + " elements, reference has " +
                std::to_string(ref.size()));
  }
  double diff = 0.0;
  double norm = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i];
    if (!std::isfinite(g)) return std::numeric_limits<double>::infinity();
    diff += (g - ref[i]) * (g - ref[i]);
    norm += ref[i] * ref[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}
}  // namespace

double relative_frobenius_error(const std::vector<float>& got, const std::vector<double>& ref) {
  return frobenius_error(got, ref);
}

double relative_frobenius_error(const std::vector<double>& got, const std::vector<double>& ref) {
  return frobenius_error(got, ref);
}

std::int64_t topk_mismatches(const RouterOutput& ref, const std::vector<std::int32_t>& got, double tol) {
  require_size("ref::topk_mismatches", "got", got, ref.tokens * ref.top_k, "tokens·top_k");
  std::int64_t bad = 0;
  for (std::int64_t t = 0; t < ref.tokens; ++t) {
    const double kth = ref.probs[t * ref.experts + ref.expert[t * ref.top_k + ref.top_k - 1]];
    bool ok = true;
    for (std::int64_t j = 0; j < ref.top_k && ok; ++j) {
      const std::int32_t e = got[t * ref.top_k + j];
      if (e < 0 || e >= ref.experts) {
        ok = false;
        break;
      }
      for (std::int64_t i = 0; i < j; ++i) ok = ok && got[t * ref.top_k + i] != e;
      ok = ok && ref.probs[t * ref.experts + e] >= kth - tol;
    }
    if (!ok) ++bad;
  }
  return bad;
}

}  // namespace moesim::kernels::ref
