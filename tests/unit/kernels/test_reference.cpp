// SPDX-License-Identifier: Apache-2.0
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numeric>

#include "moesim/core/error.hpp"
#include "moesim/kernels/reference.hpp"

using namespace moesim::kernels;

TEST_CASE("kernels::ref::gemm: hand-computed products and shape errors") {
  // [1 2; 3 4]·[5 6; 7 8] = [19 22; 43 50]
  const std::vector<float> a{1, 2, 3, 4};
  const std::vector<float> b{5, 6, 7, 8};
  CHECK(ref::gemm(a, b, 2, 2, 2) == std::vector<double>{19, 22, 43, 50});
  // A·Bᵀ = [1·5+2·6, 1·7+2·8; 3·5+4·6, 3·7+4·8] = [17 23; 39 53]
  CHECK(ref::gemm(a, b, 2, 2, 2, true) == std::vector<double>{17, 23, 39, 53});
  // batched = each slice on its own
  const auto ab = ref::batched_gemm({1, 2, 3, 4, 1, 0, 0, 1}, {5, 6, 7, 8, 5, 6, 7, 8}, 2, 2, 2, 2);
  CHECK(ab == std::vector<double>{19, 22, 43, 50, 5, 6, 7, 8});
  SECTION("shape mismatch") {
    CHECK_THROWS_WITH(ref::gemm(a, b, 2, 3, 2), Catch::Contains("expected batch·k·n = 6"));
    CHECK_THROWS_AS(ref::gemm(a, b, 0, 2, 2), moesim::Error);
  }
}

TEST_CASE("kernels::ref::capacity: ceil(cf·k·T/E) with exact integers kept") {
  CHECK(ref::capacity(4, 4, 2, 1.25) == 3);     // 2.5 → 3
  CHECK(ref::capacity(8, 4, 2, 1.0) == 4);
  CHECK(ref::capacity(10, 1, 1, 1.1) == 11);    // 11.000000000000002 in doubles: still 11
  CHECK(ref::capacity(1, 2048, 1, 1.0) == 1);   // tiny share rounds up to one slot
  SECTION("top_k larger than experts") { CHECK_THROWS_WITH(ref::capacity(4, 2, 3, 1.0), Catch::Contains("exceeds")); }
  SECTION("zero capacity") {
    CHECK_THROWS_WITH(ref::capacity(4, 2, 1, 0.0), Catch::Contains("zero capacity"));
    CHECK_THROWS_AS(ref::capacity(4, 2, 1, std::nan("")), moesim::Error);
    CHECK_THROWS_AS(ref::capacity(0, 2, 1, 1.0), moesim::Error);
  }
}

TEST_CASE("kernels::ref::softmax_topk: a 2-token, 4-expert router by hand") {
  // token 0 logits [1 3 2 0] → ranking 1, 2, 0, 3; token 1 [0 0 5 0] → 2, then a tie at 0 → lowest index 0.
  const std::vector<double> logits{1, 3, 2, 0, 0, 0, 5, 0};
  const auto r = ref::softmax_topk(logits, 2, 4, 2, false);
  CHECK(r.expert == std::vector<std::int32_t>{1, 2, 2, 0});
  const double z0 = std::exp(1) + std::exp(3) + std::exp(2) + std::exp(0);
  CHECK(r.weight[0] == Approx(std::exp(3) / z0));
  CHECK(r.weight[1] == Approx(std::exp(2) / z0));
  const double z1 = 3 + std::exp(5);
  CHECK(r.weight[2] == Approx(std::exp(5) / z1));
  CHECK(r.weight[3] == Approx(1 / z1));
  for (int t = 0; t < 2; ++t) {
    CHECK(std::accumulate(r.probs.begin() + 4 * t, r.probs.begin() + 4 * t + 4, 0.0) == Approx(1.0).epsilon(1e-15));
  }
  SECTION("renormalized weights sum to 1 over the chosen experts") {
    const auto rn = ref::softmax_topk(logits, 2, 4, 2, true);
    CHECK(rn.weight[0] + rn.weight[1] == Approx(1.0));
    CHECK(rn.weight[0] / rn.weight[1] == Approx(std::exp(1.0)));
  }
  SECTION("top_k larger than experts") { CHECK_THROWS_AS(ref::softmax_topk(logits, 2, 4, 5, false), moesim::Error); }
  SECTION("shape mismatch") { CHECK_THROWS_AS(ref::softmax_topk(logits, 3, 4, 1, false), moesim::Error); }
}

TEST_CASE("kernels::ref::softmax_topk: rows sum to 1 on random logits") {
  const auto l = random_values(64 * 33, 7, 5.0f, DType::fp32);
  const auto r = ref::softmax_topk(std::vector<double>(l.begin(), l.end()), 64, 33, 8, false);
  for (int t = 0; t < 64; ++t) {
    CHECK(std::accumulate(r.probs.begin() + 33 * t, r.probs.begin() + 33 * (t + 1), 0.0) == Approx(1.0).epsilon(1e-12));
    for (int j = 1; j < 8; ++j) CHECK(r.weight[8 * t + j] <= r.weight[8 * t + j - 1]);
  }
  CHECK(ref::topk_mismatches(r, r.expert, 0.0) == 0);
}

TEST_CASE("kernels::ref::plan_dispatch: capacity drops counted by hand") {
  // T=4, E=2, k=1, choices [0 0 0 1], cf=1 → capacity ceil(4/2)=2: token 2's choice is dropped.
  const std::vector<std::int32_t> choice{0, 0, 0, 1};
  const std::int64_t cap = ref::capacity(4, 2, 1, 1.0);
  REQUIRE(cap == 2);
  SECTION("contiguous layout") {
    const auto p = ref::plan_dispatch(choice, 4, 2, 1, cap, DispatchLayout::contiguous);
    CHECK(p.demand == std::vector<std::int32_t>{3, 1});
    CHECK(p.count == std::vector<std::int32_t>{2, 1});
    CHECK(p.offset == std::vector<std::int64_t>{0, 2});
    CHECK(p.rows == 3);
    CHECK(p.dest_row == std::vector<std::int32_t>{0, 1, -1, 2});
    CHECK(p.row_token == std::vector<std::int32_t>{0, 1, 3});
    CHECK(p.dropped == 1);
    CHECK(p.drop_rate() == 0.25);
    CHECK(p.kept() == 3);
  }
  SECTION("padded layout") {
    const auto p = ref::plan_dispatch(choice, 4, 2, 1, cap, DispatchLayout::padded);
    CHECK(p.offset == std::vector<std::int64_t>{0, 2});
    CHECK(p.rows == 4);
    CHECK(p.dest_row == std::vector<std::int32_t>{0, 1, -1, 2});
    CHECK(p.row_token == std::vector<std::int32_t>{0, 1, 3, -1});
  }
}

TEST_CASE("kernels::ref::plan_dispatch: first choices have priority over second choices") {
  // token 0 → [0, 1], token 1 → [1, 0]; capacity 1. Choice-major: both first choices fit, both
  // second choices are dropped (token-major order would instead keep all of token 0's).
  const auto p = ref::plan_dispatch({0, 1, 1, 0}, 2, 2, 2, 1, DispatchLayout::contiguous);
  CHECK(p.dest_row == std::vector<std::int32_t>{0, -1, 1, -1});
  CHECK(p.dropped == 2);
  CHECK(p.demand == std::vector<std::int32_t>{2, 2});
}

TEST_CASE("kernels::ref::plan_dispatch: unhappy paths") {
  SECTION("top_k larger than experts") {
    CHECK_THROWS_AS(ref::plan_dispatch({0, 1, 0}, 1, 2, 3, 4, DispatchLayout::contiguous), moesim::Error);
  }
  SECTION("zero capacity") {
    CHECK_THROWS_WITH(ref::plan_dispatch({0, 1}, 2, 2, 1, 0, DispatchLayout::contiguous), Catch::Contains("capacity"));
  }
  SECTION("expert out of range") {
    CHECK_THROWS_WITH(ref::plan_dispatch({0, 2}, 2, 2, 1, 2, DispatchLayout::contiguous), Catch::Contains("allowed: 0..1"));
  }
  SECTION("same expert twice") {
    CHECK_THROWS_WITH(ref::plan_dispatch({1, 1}, 1, 2, 2, 2, DispatchLayout::contiguous), Catch::Contains("twice"));
  }
  SECTION("shape mismatch") {
    CHECK_THROWS_AS(ref::plan_dispatch({0, 1, 0}, 2, 2, 1, 2, DispatchLayout::contiguous), moesim::Error);
  }
}

TEST_CASE("kernels::ref::permute: permute then unpermute with weight 1 and k=1 is the identity") {
  const std::int64_t t = 50, e = 8, d = 16;
  const auto l = random_values(t * e, 3, 3.0f, DType::fp32);
  const auto r = ref::softmax_topk(std::vector<double>(l.begin(), l.end()), t, e, 1, false);
  for (DispatchLayout layout : {DispatchLayout::contiguous, DispatchLayout::padded}) {
    const auto plan = ref::plan_dispatch(r.expert, t, e, 1, t, layout);  // capacity T: nothing drops
    REQUIRE(plan.dropped == 0);
    const auto x = random_values(t * d, 5, 1.0f, DType::bf16);
    const auto y = ref::permute(x, d, plan);
    const auto back = ref::unpermute(y, d, plan, std::vector<double>(t, 1.0));
    CHECK(ref::relative_frobenius_error(back, std::vector<double>(x.begin(), x.end())) == 0.0);
    // rows are grouped by expert: every row of expert e's segment holds a token that chose e
    for (std::int64_t ex = 0; ex < e; ++ex) {
      for (std::int64_t row = plan.offset[ex]; row < plan.offset[ex] + plan.count[ex]; ++row) {
        CHECK(r.expert[plan.row_token[row]] == ex);
      }
    }
  }
}

TEST_CASE("kernels::ref::permute: padding rows are zero and dropped choices add nothing") {
  const auto plan = ref::plan_dispatch({0, 0, 0, 1}, 4, 2, 1, 2, DispatchLayout::padded);
  const std::vector<float> x{1, 1, 2, 2, 3, 3, 4, 4};
  const auto y = ref::permute(x, 2, plan);
  CHECK(y == std::vector<float>{1, 1, 2, 2, 4, 4, 0, 0});
  const auto back = ref::unpermute(y, 2, plan, {0.5, 0.5, 0.5, 2.0});
  CHECK(back == std::vector<double>{0.5, 0.5, 1, 1, 0, 0, 8, 8});  // token 2 was dropped
  SECTION("shape mismatch") {
    CHECK_THROWS_AS(ref::permute({1, 2, 3}, 2, plan), moesim::Error);
    CHECK_THROWS_AS(ref::unpermute(y, 2, plan, {1.0}), moesim::Error);
  }
}

TEST_CASE("kernels::ref::expert_ffn: hand-computed two-expert FFN") {
  // d = f = 1: y = w2·act(w1·x). Expert 0 (rows 0-1): w1 = 2, w2 = 3; expert 1 (row 2): w1 = -1, w2 = 5.
  ref::Segments seg{{0, 2}, {2, 1}, 3};
  const std::vector<float> x{1, -1, -4};
  const auto y = ref::expert_ffn(x, seg, {2, -1}, {3, 5}, 1, 1, Activation::relu);
  CHECK(y == std::vector<double>{6, 0, 20});
  SECTION("gated: act(x·w1)·(x·w3)") {
    // swiglu, d = f = 1, W13 row = [w1 w3] = [1 2], w2 = 1: y = silu(x)·2x
    ref::Segments one{{0}, {1}, 1};
    const auto g = ref::expert_ffn({3}, one, {1, 2}, {1}, 1, 1, Activation::swiglu);
    CHECK(g[0] == Approx(3.0 / (1.0 + std::exp(-3.0)) * 6.0));
  }
  SECTION("rows outside every segment stay zero") {
    ref::Segments gap{{0, 3}, {1, 1}, 4};
    const auto z = ref::expert_ffn({1, 7, 7, 1}, gap, {1, 1}, {1, 1}, 1, 1, Activation::relu);
    CHECK(z == std::vector<double>{1, 0, 0, 1});
  }
  SECTION("shape errors") {
    CHECK_THROWS_AS(ref::expert_ffn(x, seg, {2}, {3, 5}, 1, 1, Activation::relu), moesim::Error);
    ref::Segments bad{{0, 2}, {2, 5}, 3};
    CHECK_THROWS_WITH(ref::expert_ffn(x, bad, {2, -1}, {3, 5}, 1, 1, Activation::relu), Catch::Contains("outside"));
  }
}

TEST_CASE("kernels::ref::expert_ffn: equals GEMM, activation, GEMM composed") {
  const std::int64_t rows = 6, d = 8, f = 4;
  const auto x = random_values(rows * d, 1, 1.0f, DType::fp32);
  const auto w13 = random_values(d * 2 * f, 2, 0.3f, DType::fp32);
  const auto w2 = random_values(f * d, 3, 0.3f, DType::fp32);
  const auto h = ref::gemm(x, w13, rows, 2 * f, d);
  const auto a = ref::activation(std::vector<float>(h.begin(), h.end()), rows, f, Activation::geglu);
  const auto want = ref::gemm(std::vector<float>(a.begin(), a.end()), w2, rows, d, f);
  const auto got = ref::dense_ffn(x, rows, w13, w2, d, f, Activation::geglu);
  // the composition rounds h and a to float in between: agreement to float precision
  CHECK(ref::relative_frobenius_error(got, want) < 1e-6);
}

TEST_CASE("kernels::ref::relative_frobenius_error: NaN never passes") {
  CHECK(ref::relative_frobenius_error(std::vector<float>{1, 2}, {1, 2}) == 0.0);
  CHECK(ref::relative_frobenius_error(std::vector<float>{3, 4}, {0, 0}) == 5.0);  // absolute against zeros
  CHECK(std::isinf(ref::relative_frobenius_error(std::vector<float>{std::nanf(""), 2}, {1, 2})));
  SECTION("size mismatch") { CHECK_THROWS_AS(ref::relative_frobenius_error(std::vector<float>{1}, {1, 2}), moesim::Error); }
}

TEST_CASE("kernels::ref::topk_mismatches: catches repeats, range errors and wrong choices") {
  const auto r = ref::softmax_topk({1, 3, 2, 0}, 1, 4, 2, false);
  CHECK(ref::topk_mismatches(r, {1, 2}, 0.0) == 0);
  CHECK(ref::topk_mismatches(r, {2, 1}, 0.0) == 0);  // same set, other order: still a valid top-k
  CHECK(ref::topk_mismatches(r, {1, 1}, 0.0) == 1);
  CHECK(ref::topk_mismatches(r, {1, 4}, 0.0) == 1);
  CHECK(ref::topk_mismatches(r, {1, 0}, 0.0) == 1);
  CHECK(ref::topk_mismatches(r, {1, 0}, 1.0) == 0);  // within a (huge) tolerance of the 2nd largest
}
