// SPDX-License-Identifier: Apache-2.0
#include "profiler.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "moesim/core/error.hpp"
#include "moesim/kernels/counting.hpp"
#include "moesim/kernels/gpu/blas.hpp"
#include "moesim/kernels/gpu/check.hpp"
#include "moesim/kernels/gpu/memory.hpp"
#include "moesim/kernels/gpu/ops.hpp"
#include "moesim/kernels/gpu/verify.hpp"
#include "moesim/kernels/profile_format.hpp"
#include "moesim/kernels/reference.hpp"
#include "moesim/kernels/sweep.hpp"

#ifndef MOESIM_KERNELS_GIT_HASH
#define MOESIM_KERNELS_GIT_HASH "unknown"
#endif

namespace moesim::kernels::profiler {

namespace fs = std::filesystem;
using profile::Entry;
using profile::Fields;
using sweep::Job;

namespace {

constexpr int kNoDeviceExit = 77;
constexpr std::int64_t kCeilingGemmDim = 8192;           // the dense-GEMM ceiling shape, 8192³
constexpr std::size_t kCopyBytes = std::size_t{1} << 30;  // 1 GiB copy for the bandwidth ceiling
constexpr double kMemoryShare = 0.6;  // never take more than this share of free device memory
constexpr int kMaxSets = 4096;

// Planning-only ceilings for --dry-run (no device): H100 measured on this project's device
// machine (shared notes/moe-kernels.md section 4: 798 TFLOP/s bf16 8192³, 3.0 TB/s copy) and the
// H100 SXM datasheet fp32 rate (67 TFLOP/s). Used for estimates only, never written as results.
constexpr sweep::Ceilings kPlanningCeilings{798e12, 67e12, 3.0e12, 5e-6};

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string fmt_time(double s) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(s < 1e-3 ? 1 : 3);
  if (s < 1e-3) {
    o << s * 1e6 << " us";
  } else {
    o << s * 1e3 << " ms";
  }
  return o.str();
}

std::string fmt_rate(double v, double unit, const char* name) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(v / unit < 10 ? 2 : 1) << v / unit << ' ' << name;
  return o.str();
}

// ---------------------------------------------------------------------------------------------
// Timing with CUDA events: consecutive events bracket back-to-back runs on one stream.
class EventTimer {
 public:
  explicit EventTimer(cudaStream_t stream) : stream_(stream) {}
  ~EventTimer() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  template <class Run>
  std::vector<double> time(int repeats, int first_iteration, Run&& run) {
    while (static_cast<int>(events_.size()) < repeats + 1) {
      cudaEvent_t e = nullptr;
      MOESIM_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    for (int i = 0; i < repeats; ++i) {
      MOESIM_CUDA_CHECK(cudaEventRecord(events_[i], stream_));
      run(first_iteration + i);
    }
    MOESIM_CUDA_CHECK(cudaEventRecord(events_[repeats], stream_));
    MOESIM_CUDA_CHECK(cudaEventSynchronize(events_[repeats]));
    MOESIM_CUDA_CHECK(cudaGetLastError());
    std::vector<double> samples(repeats);
    for (int i = 0; i < repeats; ++i) {
      float ms = 0.0f;
      MOESIM_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      samples[i] = static_cast<double>(ms) * 1e-3;
    }
    return samples;
  }

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
};

// Warm-ups, one timed probe to choose the repeat count, then the timed repeats.
template <class Run>
profile::Stats measure(gpu::Context& ctx, EventTimer& timer, const sweep::TimingPolicy& policy, Run&& run) {
  for (int i = 0; i < policy.warmups; ++i) run(i);
  ctx.synchronize();
  const double probe = timer.time(1, policy.warmups, run).front();
  const int repeats = policy.repeats_for(probe);
  return profile::summarize(timer.time(repeats, policy.warmups + 1, run));
}

// ---------------------------------------------------------------------------------------------
// Rotating buffer sets: enough copies of a job's buffers that one pass over all of them exceeds
// twice the L2 cache, so that repeated runs read from HBM, not from L2.
class BufferSets {
 public:
  BufferSets(const std::vector<std::size_t>& sizes, double l2_bytes, double free_bytes) {
    for (std::size_t s : sizes) {
      offsets_.push_back(stride_);
      stride_ += (std::max<std::size_t>(s, 1) + 255) / 256 * 256;
    }
    const double set = static_cast<double>(stride_);
    if (set > kMemoryShare * free_bytes) {
      throw Error("needs " + std::to_string(set / 1e9) + " GB, more than " + std::to_string(kMemoryShare) +
                  " of the free device memory");
    }
    sets_ = static_cast<int>(std::clamp(std::ceil(2.0 * l2_bytes / set), 1.0, static_cast<double>(kMaxSets)));
    sets_ = std::max(1, std::min(sets_, static_cast<int>(kMemoryShare * free_bytes / set)));
    memory_ = gpu::DeviceMemory(stride_ * static_cast<std::size_t>(sets_));
  }
  int sets() const { return sets_; }
  void* get(int set, std::size_t buffer) const {
    return static_cast<char*>(memory_.get()) + static_cast<std::size_t>(set % sets_) * stride_ + offsets_[buffer];
  }
  /** Fills every byte range with random non-zero values of `dtype` (4-byte units for fp32). */
  void fill(DType dtype, std::uint64_t seed, float scale, cudaStream_t stream) const {
    gpu::fill_random(memory_.get(), memory_.bytes() / dtype_bytes(dtype), dtype, seed, scale, stream);
  }

 private:
  std::vector<std::size_t> offsets_;
  std::size_t stride_ = 0;
  int sets_ = 1;
  gpu::DeviceMemory memory_;
};

// ---------------------------------------------------------------------------------------------
struct Device {
  cudaDeviceProp prop{};
  double free_bytes = 0.0;
  double l2_bytes = 0.0;
};

struct Ceilings {
  double bf16_flops_per_s = 0.0;
  double fp32_flops_per_s = 0.0;
  double copy_bytes_per_s = 0.0;
  profile::Stats bf16_stats, fp32_stats, copy_stats;
};

double free_memory() {
  std::size_t free_b = 0, total_b = 0;
  MOESIM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return static_cast<double>(free_b);
}

class Runner {
 public:
  Runner(const Options& o, gpu::Context& ctx, const Device& dev) : o_(o), ctx_(ctx), dev_(dev), timer_(ctx.stream()) {}

  Ceilings measure_ceilings();
  void run_job(const Job& job, std::vector<Entry>& entries);
  const sweep::TimingPolicy& policy() const { return policy_; }

 private:
  Entry base_entry(const Job& job) const;
  void job_gemm(const Job& job, std::vector<Entry>& out);
  void job_dense_ffn(const Job& job, std::vector<Entry>& out);
  void job_batched(const Job& job, std::vector<Entry>& out);
  void job_router(const Job& job, std::vector<Entry>& out);
  void job_permute(const Job& job, std::vector<Entry>& out);
  void job_activation(const Job& job, std::vector<Entry>& out);
  void job_expert_ffn(const Job& job, std::vector<Entry>& out);
  void print(const Entry& e, const std::string& extra = {}) const;

  const Options& o_;
  gpu::Context& ctx_;
  const Device& dev_;
  EventTimer timer_;
  sweep::TimingPolicy policy_;
  std::uint64_t seed_ = 1;
  double copy_bytes_per_s_ = 0.0;
};

Ceilings Runner::measure_ceilings() {
  Ceilings c;
  {
    const std::size_t bytes = std::min(kCopyBytes, static_cast<std::size_t>(dev_.free_bytes / 4));
    gpu::DeviceMemory src(bytes), dst(bytes);
    gpu::fill_random(src.get(), bytes / 4, DType::fp32, ++seed_, 1.0f, ctx_.stream());
    sweep::TimingPolicy p = policy_;
    p.min_repeats = 20;
    c.copy_stats = measure(ctx_, timer_, p, [&](int) {
      MOESIM_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, ctx_.stream()));
    });
    c.copy_bytes_per_s = copy_cost(static_cast<std::int64_t>(bytes)).bytes / c.copy_stats.median_s;
  }
  for (DType dt : {DType::bf16, DType::fp32}) {
    const std::int64_t n = kCeilingGemmDim;
    const std::size_t mat = static_cast<std::size_t>(n * n) * dtype_bytes(dt);
    gpu::DeviceMemory a(mat), b(mat), out(mat);
    gpu::fill_random(a.get(), static_cast<std::size_t>(n * n), dt, ++seed_, 1.0f, ctx_.stream());
    gpu::fill_random(b.get(), static_cast<std::size_t>(n * n), dt, ++seed_, 1.0f, ctx_.stream());
    const auto st = measure(ctx_, timer_, policy_, [&](int) {
      gpu::gemm(ctx_.cublas(), dt, false, a.get(), b.get(), out.get(), static_cast<int>(n), static_cast<int>(n),
                static_cast<int>(n));
    });
    const double rate = gemm_cost(n, n, n, dt, dtype_bytes(dt)).flops / st.median_s;
    (dt == DType::bf16 ? c.bf16_stats : c.fp32_stats) = st;
    (dt == DType::bf16 ? c.bf16_flops_per_s : c.fp32_flops_per_s) = rate;
  }
  copy_bytes_per_s_ = c.copy_bytes_per_s;
  std::cout << "ceilings: dense GEMM 8192^3 bf16 " << fmt_rate(c.bf16_flops_per_s, 1e12, "TFLOP/s") << ", fp32 "
            << fmt_rate(c.fp32_flops_per_s, 1e12, "TFLOP/s") << "; device-to-device copy "
            << fmt_rate(c.copy_bytes_per_s, 1e9, "GB/s") << " (read + write)\n";
  return c;
}

Entry Runner::base_entry(const Job& job) const {
  Entry e;
  e.kernel_class = job.kernel_class;
  e.kernel = job.kernel;
  e.dtype = job.dtype;
  e.cost = job.cost;
  if (!job.model.empty()) e.fields.emplace_back("model", job.model);
  return e;
}

void Runner::print(const Entry& e, const std::string& extra) const {
  std::cout << "  " << std::left << std::setw(12) << to_string(e.kernel_class) << std::setw(16) << e.kernel
            << std::right << std::setw(12) << fmt_time(e.stats.median_s);
  if (e.cost.flops > 0) std::cout << "  " << std::setw(14) << fmt_rate(e.cost.flops / e.stats.median_s, 1e12, "TFLOP/s");
  std::cout << "  " << std::setw(12) << fmt_rate(e.cost.bytes / e.stats.median_s, 1e9, "GB/s");
  if (!extra.empty()) std::cout << "  " << extra;
  std::cout << '\n';
}

void Runner::job_gemm(const Job& job, std::vector<Entry>& out) {
  const bool logits = job.kernel == "router_gate";
  const std::size_t s = dtype_bytes(job.dtype);
  const std::size_t out_s = logits ? 4 : s;
  BufferSets sets({static_cast<std::size_t>(job.m * job.k) * s, static_cast<std::size_t>(job.k * job.n) * s,
                   static_cast<std::size_t>(job.m * job.n) * out_s},
                  dev_.l2_bytes, dev_.free_bytes);
  sets.fill(job.dtype, ++seed_, 1.0f, ctx_.stream());
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    gpu::gemm(ctx_.cublas(), job.dtype, logits, sets.get(i, 0), sets.get(i, 1), sets.get(i, 2), static_cast<int>(job.m),
              static_cast<int>(job.n), static_cast<int>(job.k));
  });
  e.fields.insert(e.fields.end(), {{"tokens", job.m}, {"d_model", job.d_model}, {"m", job.m}, {"n", job.n}, {"k", job.k}});
  if (logits) e.fields.insert(e.fields.end(), {{"experts", job.experts}, {"output_dtype", std::string("fp32")}});
  e.fields.emplace_back("buffer_sets", static_cast<std::int64_t>(sets.sets()));
  print(e, "m=" + std::to_string(job.m) + " n=" + std::to_string(job.n) + " k=" + std::to_string(job.k));
  out.push_back(std::move(e));
}

void Runner::job_dense_ffn(const Job& job, std::vector<Entry>& out) {
  const std::size_t s = dtype_bytes(job.dtype);
  const std::int64_t g = is_gated(job.act) ? 2 : 1;
  const auto t = static_cast<std::size_t>(job.tokens);
  const auto d = static_cast<std::size_t>(job.d_model);
  const auto f = static_cast<std::size_t>(job.d_ff);
  BufferSets sets({t * d * s, d * g * f * s, f * d * s, t * g * f * s, t * f * s, t * d * s}, dev_.l2_bytes,
                  dev_.free_bytes);
  sets.fill(job.dtype, ++seed_, 0.05f, ctx_.stream());
  gpu::ExpertFfn ffn(job.dtype, job.act, job.d_model, job.d_ff, {job.tokens});
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    ffn.run(ctx_, gpu::FfnStrategy::loop,
            {sets.get(i, 0), sets.get(i, 1), sets.get(i, 2), sets.get(i, 3), sets.get(i, 4), sets.get(i, 5)});
  });
  e.fields.insert(e.fields.end(), {{"tokens", job.tokens}, {"d_model", job.d_model}, {"d_ff", job.d_ff},
                                   {"activation", to_string(job.act)}, {"buffer_sets", std::int64_t{sets.sets()}}});
  print(e, "T=" + std::to_string(job.tokens) + " " + to_string(job.act));
  out.push_back(std::move(e));
}

void Runner::job_batched(const Job& job, std::vector<Entry>& out) {
  const std::size_t s = dtype_bytes(job.dtype);
  const auto bt = static_cast<std::size_t>(job.batch);
  BufferSets sets({bt * job.m * job.k * s, bt * job.k * job.n * s, bt * job.m * job.n * s}, dev_.l2_bytes,
                  dev_.free_bytes);
  sets.fill(job.dtype, ++seed_, 1.0f, ctx_.stream());
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    gpu::gemm_strided_batched(ctx_.cublas(), job.dtype, sets.get(i, 0), sets.get(i, 1), sets.get(i, 2),
                              static_cast<int>(job.m), static_cast<int>(job.n), static_cast<int>(job.k),
                              static_cast<int>(job.batch), job.trans_b);
  });
  e.fields.insert(e.fields.end(), {{"seq", job.seq}, {"batch", job.batch}, {"m", job.m}, {"n", job.n}, {"k", job.k},
                                   {"trans_b", job.trans_b}, {"buffer_sets", std::int64_t{sets.sets()}}});
  print(e, "batch=" + std::to_string(job.batch) + " s=" + std::to_string(job.seq));
  out.push_back(std::move(e));
}

// Router buffers of one set: fp32 logits, then int32/fp32 outputs and plan maps.
struct RouterLayout {
  std::vector<std::size_t> sizes;
  std::int64_t capacity = 0;
  std::int64_t row_capacity = 0;
  RouterLayout(std::int64_t t, std::int64_t e, std::int64_t k, double cf) {
    capacity = ref::capacity(t, e, k, cf);
    row_capacity = gpu::plan_row_capacity(t, e, k, capacity, DispatchLayout::contiguous);
    const auto i4 = sizeof(std::int32_t);
    sizes = {static_cast<std::size_t>(t * e) * 4, static_cast<std::size_t>(t * k) * i4, static_cast<std::size_t>(t * k) * 4,
             static_cast<std::size_t>(e) * i4,     static_cast<std::size_t>(e) * i4,     static_cast<std::size_t>(e) * i4,
             static_cast<std::size_t>(t * k) * i4, static_cast<std::size_t>(row_capacity) * i4, i4,
             static_cast<std::size_t>(gpu::plan_chunks(t, k) * e) * i4};
  }
  static gpu::PlanBuffers plan(const BufferSets& s, int set) {
    auto p = [&](std::size_t b) { return static_cast<std::int32_t*>(s.get(set, b)); };
    return {p(3), p(4), p(5), p(6), p(7), p(8), p(9)};
  }
};

void Runner::job_router(const Job& job, std::vector<Entry>& out) {
  RouterLayout layout(job.tokens, job.experts, job.top_k, job.capacity_factor);
  BufferSets sets(layout.sizes, dev_.l2_bytes, dev_.free_bytes);
  sets.fill(DType::fp32, ++seed_, 3.0f, ctx_.stream());  // logits spread ±3: a non-flat softmax
  const int t = static_cast<int>(job.tokens), e_n = static_cast<int>(job.experts), k = static_cast<int>(job.top_k);
  auto run = [&](int i) {
    gpu::softmax_topk(static_cast<const float*>(sets.get(i, 0)), t, e_n, k, false,
                      static_cast<std::int32_t*>(sets.get(i, 1)), static_cast<float*>(sets.get(i, 2)), nullptr,
                      ctx_.stream());
    gpu::plan_dispatch(static_cast<const std::int32_t*>(sets.get(i, 1)), t, e_n, k, static_cast<int>(layout.capacity),
                       DispatchLayout::contiguous, RouterLayout::plan(sets, i), ctx_.stream());
  };
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, run);
  const auto dropped = gpu::download_raw<std::int32_t>(sets.get(0, 8), 1).front();
  const auto counts = gpu::download_raw<std::int32_t>(sets.get(0, 4), static_cast<std::size_t>(job.experts));
  std::int64_t kept = 0;
  for (auto c : counts) kept += c;
  e.cost = router_cost(job.tokens, job.experts, job.top_k, kept);
  e.fields.insert(e.fields.end(),
                  {{"tokens", job.tokens}, {"experts", job.experts}, {"top_k", job.top_k},
                   {"capacity_factor", job.capacity_factor}, {"capacity", layout.capacity},
                   {"drop_rate", static_cast<double>(dropped) / static_cast<double>(job.tokens * job.top_k)},
                   {"includes", std::string("softmax+topk+capacity plan (gate GEMM: kernel router_gate)")},
                   {"buffer_sets", std::int64_t{sets.sets()}}});
  print(e, "T=" + std::to_string(job.tokens) + " E=" + std::to_string(job.experts) + " k=" + std::to_string(job.top_k));
  out.push_back(std::move(e));
}

void Runner::job_permute(const Job& job, std::vector<Entry>& out) {
  // A real routing (random logits → softmax/top-k → plan) that is not timed, shared by all sets.
  RouterLayout layout(job.tokens, job.experts, job.top_k, job.capacity_factor);
  BufferSets routing(layout.sizes, 0.0, dev_.free_bytes);
  routing.fill(DType::fp32, ++seed_, 3.0f, ctx_.stream());
  const int t = static_cast<int>(job.tokens), e_n = static_cast<int>(job.experts), k = static_cast<int>(job.top_k);
  gpu::softmax_topk(static_cast<const float*>(routing.get(0, 0)), t, e_n, k, false,
                    static_cast<std::int32_t*>(routing.get(0, 1)), static_cast<float*>(routing.get(0, 2)), nullptr,
                    ctx_.stream());
  gpu::plan_dispatch(static_cast<const std::int32_t*>(routing.get(0, 1)), t, e_n, k, static_cast<int>(layout.capacity),
                     DispatchLayout::contiguous, RouterLayout::plan(routing, 0), ctx_.stream());
  ctx_.synchronize();
  const auto counts = gpu::download_raw<std::int32_t>(routing.get(0, 4), static_cast<std::size_t>(job.experts));
  std::int64_t kept = 0;
  for (auto c : counts) kept += c;
  const std::size_t s = dtype_bytes(job.dtype);
  const auto d = static_cast<std::size_t>(job.d_model);
  const bool un = job.kernel_class == KernelClass::unpermute;
  // permute: x [T×d] → rows [kept×d]; unpermute: y [kept×d] → out [T×d]
  BufferSets sets({static_cast<std::size_t>(un ? kept : job.tokens) * d * s,
                   static_cast<std::size_t>(un ? job.tokens : kept) * d * s},
                  dev_.l2_bytes, dev_.free_bytes);
  sets.fill(job.dtype, ++seed_, 1.0f, ctx_.stream());
  const auto* row_token = static_cast<const std::int32_t*>(routing.get(0, 7));
  const auto* dest_row = static_cast<const std::int32_t*>(routing.get(0, 6));
  const auto* weight = static_cast<const float*>(routing.get(0, 2));
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    if (un) {
      gpu::unpermute(sets.get(i, 0), static_cast<int>(d), job.dtype, dest_row, weight, t, k, sets.get(i, 1),
                     ctx_.stream());
    } else {
      gpu::permute(sets.get(i, 0), static_cast<int>(d), job.dtype, row_token, static_cast<int>(kept), sets.get(i, 1),
                   ctx_.stream());
    }
  });
  e.cost = un ? unpermute_cost(job.tokens, job.top_k, kept, job.d_model, job.dtype)
              : permute_cost(kept, kept, job.d_model, job.dtype);
  const double ratio = e.cost.bytes / e.stats.median_s / copy_bytes_per_s_;
  e.fields.insert(e.fields.end(), {{"tokens", job.tokens}, {"d_model", job.d_model}, {"top_k", job.top_k},
                                   {"experts", job.experts}, {"capacity_factor", job.capacity_factor},
                                   {"rows", kept}, {"ratio_to_copy", ratio}, {"buffer_sets", std::int64_t{sets.sets()}}});
  std::ostringstream x;
  x << "T=" << job.tokens << " k=" << job.top_k << " d=" << job.d_model << " copy-ratio=" << std::setprecision(2) << ratio;
  print(e, x.str());
  out.push_back(std::move(e));
}

void Runner::job_activation(const Job& job, std::vector<Entry>& out) {
  const std::size_t s = dtype_bytes(job.dtype);
  const std::size_t g = is_gated(job.act) ? 2 : 1;
  const auto rows = static_cast<std::size_t>(job.tokens);
  const auto f = static_cast<std::size_t>(job.d_ff);
  BufferSets sets({rows * g * f * s, rows * f * s}, dev_.l2_bytes, dev_.free_bytes);
  sets.fill(job.dtype, ++seed_, 3.0f, ctx_.stream());
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    gpu::activation(sets.get(i, 0), job.tokens, static_cast<int>(job.d_ff), job.act, job.dtype, sets.get(i, 1),
                    ctx_.stream());
  });
  const double ratio = e.cost.bytes / e.stats.median_s / copy_bytes_per_s_;
  e.fields.insert(e.fields.end(), {{"tokens", job.tokens}, {"d_ff", job.d_ff}, {"activation", to_string(job.act)},
                                   {"ratio_to_copy", ratio}, {"buffer_sets", std::int64_t{sets.sets()}}});
  print(e, to_string(job.act) + " rows=" + std::to_string(job.tokens));
  out.push_back(std::move(e));
}

void Runner::job_expert_ffn(const Job& job, std::vector<Entry>& out) {
  gpu::ExpertFfn ffn(job.dtype, job.act, job.d_model, job.d_ff, job.counts);
  gpu::ExpertFfn dense(job.dtype, job.act, job.d_model, job.d_ff, {ffn.rows()});
  const std::size_t s = dtype_bytes(job.dtype);
  const std::size_t g = is_gated(job.act) ? 2 : 1;
  const auto d = static_cast<std::size_t>(job.d_model);
  const auto f = static_cast<std::size_t>(job.d_ff);
  const auto e_n = static_cast<std::size_t>(job.experts);
  const auto rows = static_cast<std::size_t>(ffn.padded_rows());  // ≥ ffn.rows(): room for every strategy
  BufferSets sets({e_n * d * g * f * s, e_n * f * d * s, rows * d * s, rows * g * f * s, rows * f * s, rows * d * s,
                   d * g * f * s, f * d * s},
                  dev_.l2_bytes, dev_.free_bytes);
  sets.fill(job.dtype, ++seed_, 0.05f, ctx_.stream());
  auto buffers = [&](int i, bool dense_weights) {
    return gpu::FfnBuffers{sets.get(i, 2), sets.get(i, dense_weights ? 6 : 0), sets.get(i, dense_weights ? 7 : 1),
                           sets.get(i, 3),  sets.get(i, 4),                     sets.get(i, 5)};
  };
  for (int i = 0; i < sets.sets(); ++i) ffn.prepare(buffers(i, false));  // no uploads inside timed runs
  const auto [cmin, cmax] = std::minmax_element(job.counts.begin(), job.counts.end());
  Fields shape{{"tokens", ffn.rows()},
               {"d_model", job.d_model},
               {"d_ff", job.d_ff},
               {"experts", job.experts},
               {"tokens_per_expert", job.tokens_per_expert},
               {"distribution", job.distribution},
               {"count_min", *cmin},
               {"count_max", *cmax},
               {"activation", to_string(job.act)}};

  Entry dense_entry = base_entry(job);
  dense_entry.kernel_class = KernelClass::gemm;
  dense_entry.kernel = "dense_ffn";
  dense_entry.cost = dense_ffn_cost(ffn.rows(), job.d_model, job.d_ff, job.act, job.dtype);
  dense_entry.stats = measure(ctx_, timer_, policy_, [&](int i) { dense.run(ctx_, gpu::FfnStrategy::loop, buffers(i, true)); });
  dense_entry.fields.insert(dense_entry.fields.end(),
                            {{"tokens", ffn.rows()}, {"d_model", job.d_model}, {"d_ff", job.d_ff},
                             {"activation", to_string(job.act)},
                             {"role", std::string("equal-FLOPs dense reference for expert_ffn")}});

  std::vector<Entry> strategies;
  for (gpu::FfnStrategy st : {gpu::FfnStrategy::loop, gpu::FfnStrategy::grouped, gpu::FfnStrategy::padded_strided}) {
    Entry e = base_entry(job);
    e.fields.insert(e.fields.end(), shape.begin(), shape.end());
    e.fields.emplace_back("strategy", to_string(st));
    if (st == gpu::FfnStrategy::padded_strided) e.fields.emplace_back("padded_rows", ffn.padded_rows());
    try {
      e.stats = measure(ctx_, timer_, policy_, [&](int i) { ffn.run(ctx_, st, buffers(i, false)); });
    } catch (const gpu::CublasError& err) {
      if (err.status() != CUBLAS_STATUS_NOT_SUPPORTED) throw;
      std::cout << "  (" << to_string(st) << " not supported by this cuBLAS for " << to_string(job.dtype) << ")\n";
      continue;
    }
    strategies.push_back(std::move(e));
  }
  const auto fastest = std::min_element(strategies.begin(), strategies.end(), [](const Entry& a, const Entry& b) {
    return a.stats.median_s < b.stats.median_s;
  });
  std::ostringstream line;
  for (auto it = strategies.begin(); it != strategies.end(); ++it) {
    const double ratio = dense_entry.stats.median_s / it->stats.median_s;
    it->fields.emplace_back("fastest", it == fastest);
    it->fields.emplace_back("dense_equal_time_s", dense_entry.stats.median_s);
    it->fields.emplace_back("ratio_to_dense", ratio);
    it->fields.emplace_back("buffer_sets", std::int64_t{sets.sets()});
    line << std::get<std::string>(std::find_if(it->fields.begin(), it->fields.end(), [](const auto& kv) {
              return kv.first == "strategy";
            })->second)
         << ' ' << fmt_time(it->stats.median_s) << " (x" << std::setprecision(2) << ratio << " dense)"
         << (it == fastest ? "* " : "  ");
  }
  std::cout << "  grouped_gemm expert_ffn " << job.model << " " << to_string(job.dtype) << " E=" << job.experts
            << " m=" << job.tokens_per_expert << " " << job.distribution << ": " << line.str() << "dense "
            << fmt_time(dense_entry.stats.median_s) << " "
            << fmt_rate(dense_entry.cost.flops / dense_entry.stats.median_s, 1e12, "TFLOP/s") << '\n';
  for (auto& e : strategies) out.push_back(std::move(e));
  out.push_back(std::move(dense_entry));
}

void Runner::run_job(const Job& job, std::vector<Entry>& entries) {
  switch (job.kernel_class) {
    case KernelClass::gemm:
      if (job.kernel == "dense_ffn") {
        job_dense_ffn(job, entries);
      } else {
        job_gemm(job, entries);
      }
      break;
    case KernelClass::batched_gemm: job_batched(job, entries); break;
    case KernelClass::grouped_gemm: job_expert_ffn(job, entries); break;
    case KernelClass::router: job_router(job, entries); break;
    case KernelClass::permute:
    case KernelClass::unpermute: job_permute(job, entries); break;
    case KernelClass::elementwise: job_activation(job, entries); break;
  }
}

int dry_run(const Options& o, const std::vector<Job>& jobs) {
  sweep::TimingPolicy policy;
  std::map<std::string, std::pair<int, double>> per_kernel;
  double total = 0.0;
  int skipped = 0;
  for (const Job& j : jobs) {
    const double t = sweep::estimate_job_s(j, kPlanningCeilings, policy);
    if (t == 0.0) ++skipped;
    auto& slot = per_kernel[j.kernel + " " + to_string(j.dtype)];
    slot.first += 1;
    slot.second += t;
    total += t;
  }
  std::cout << "moesim-profile --dry-run: " << jobs.size() << " shapes planned (" << (o.quick ? "quick" : "full")
            << " grid)\n";
  for (const auto& [k, v] : per_kernel) {
    std::cout << "  " << std::left << std::setw(24) << k << std::right << std::setw(5) << v.first << " shapes  ~"
              << std::fixed << std::setprecision(1) << v.second << " s\n";
  }
  std::cout << "estimated GPU time (roofline lower bound at planning ceilings 798 TFLOP/s bf16, 67 TFLOP/s fp32, "
               "3.0 TB/s): "
            << std::fixed << std::setprecision(1) << total << " s; " << skipped
            << " shapes would be skipped as slower than " << std::setprecision(2) << policy.max_run_s
            << " s per run\n";
  return 0;
}

}  // namespace

std::string usage() {
  return "usage: moesim-profile [options]\n"
         "  Checks every kernel against its CPU reference, measures the device ceilings, times the\n"
         "  MoE kernels over the shape grid and writes profiles/measured/<device>.json.\n"
         "options:\n"
         "  --quick           small smoke grid instead of the full sweep\n"
         "  --out PATH        output JSON (default profiles/measured/<device>.json)\n"
         "  --dtype D         bf16, fp32 or all (default all)\n"
         "  --only KERNEL     one kernel (expert_ffn, router, permute, unpermute, activation, dense_ffn,\n"
         "                    qkv_proj, out_proj, router_gate, attn_scores, attn_values) or class\n"
         "  --budget-s S      start no new shape after S seconds of sweeping (default 270)\n"
         "  --check-only      run the correctness checks and stop\n"
         "  --no-check        skip the correctness checks (not recommended)\n"
         "  --dry-run         plan the sweep and estimate its time; needs no GPU\n"
         "  --git-hash H      record H as the source revision\n";
}

Options parse_options(int argc, char** argv, bool* help) {
  Options o;
  *help = false;
  std::ostringstream cmd;
  for (int i = 0; i < argc; ++i) cmd << (i ? " " : "") << argv[i];
  o.command_line = cmd.str();
  auto value = [&](int& i, const std::string& name) -> std::string {
    if (i + 1 >= argc) throw Error("option " + name + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      *help = true;
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--out") {
      o.out = value(i, a);
    } else if (a == "--dtype") {
      const std::string v = value(i, a);
      o.dtypes = v == "all" ? std::vector<DType>{DType::bf16, DType::fp32} : std::vector<DType>{parse_dtype(v)};
    } else if (a == "--only") {
      o.only = value(i, a);
    } else if (a == "--budget-s") {
      const std::string v = value(i, a);
      try {
        o.budget_s = std::stod(v);
      } catch (const std::exception&) {
        throw Error("--budget-s: '" + v + "' is not a number of seconds");
      }
      if (!(o.budget_s > 0.0)) throw Error("--budget-s must be > 0");
    } else if (a == "--check-only") {
      o.check_only = true;
    } else if (a == "--no-check") {
      o.check = false;
    } else if (a == "--dry-run") {
      o.dry_run = true;
    } else if (a == "--git-hash") {
      o.git_hash = value(i, a);
    } else {
      throw Error("unknown option '" + a + "' (see --help)");
    }
  }
  if (o.git_hash.empty()) o.git_hash = MOESIM_KERNELS_GIT_HASH;
  return o;
}

int run(const Options& o) {
  sweep::SweepOptions so;
  so.quick = o.quick;
  so.dtypes = o.dtypes;
  so.only = o.only;
  const std::vector<Job> jobs = sweep::plan(so);  // validates --only before any device work
  if (o.dry_run) return dry_run(o, jobs);

  std::string why;
  if (gpu::device_count(&why) == 0) {
    std::cout << "SKIPPED: no CUDA device (" << why << ")\n";
    return kNoDeviceExit;
  }
  MOESIM_CUDA_CHECK(cudaSetDevice(0));
  Device dev;
  MOESIM_CUDA_CHECK(cudaGetDeviceProperties(&dev.prop, 0));
  dev.l2_bytes = dev.prop.l2CacheSize;
  gpu::Context ctx;
  dev.free_bytes = free_memory();
  const std::string slug = profile::device_slug(dev.prop.name);
  std::cout << "device: " << dev.prop.name << " (" << slug << "), " << dev.prop.multiProcessorCount << " SMs, "
            << dev.prop.totalGlobalMem / (1 << 20) << " MiB, L2 " << dev.l2_bytes / (1 << 20) << " MiB\n";

  if (o.check || o.check_only) {
    int failed = 0, total = 0;
    for (const auto& group : gpu::check_groups()) {
      for (const auto& r : gpu::run_checks(ctx, group)) {
        ++total;
        failed += !r.passed;
        if (!r.passed || o.check_only) {
          std::cout << (r.passed ? "  ok   " : "  FAIL ") << r.name << "  error=" << r.error << " tol=" << r.tolerance
                    << '\n';
        }
      }
    }
    std::cout << "checks: " << total - failed << " passed, " << failed << " failed\n";
    if (failed > 0) {
      std::cout << "refusing to time kernels that fail their reference check\n";
      return 1;
    }
    if (o.check_only) return 0;
  }

  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  Runner runner(o, ctx, dev);
  const Ceilings c = runner.measure_ceilings();
  const sweep::Ceilings est{c.bf16_flops_per_s, c.fp32_flops_per_s, c.copy_bytes_per_s, 5e-6};
  double planned = 0.0;
  for (const Job& j : jobs) planned += sweep::estimate_job_s(j, est, runner.policy());
  std::cout << jobs.size() << " shapes planned; roofline estimate " << std::fixed << std::setprecision(0) << planned
            << " s at the measured ceilings; budget " << o.budget_s << " s\n"
            << std::defaultfloat;

  profile::Profile prof;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const Job& job = jobs[i];
    if (elapsed() > o.budget_s) {
      prof.skipped.push_back({job.describe(), "time budget of " + std::to_string(o.budget_s) + " s spent"});
      continue;
    }
    if (sweep::estimate_run_s(job, est) > runner.policy().max_run_s) {
      prof.skipped.push_back({job.describe(), "estimated single run above " +
                                                  std::to_string(runner.policy().max_run_s) + " s"});
      continue;
    }
    dev.free_bytes = free_memory();
    try {
      runner.run_job(job, prof.entries);
    } catch (const gpu::CudaError& e) {
      if (e.code() != cudaErrorMemoryAllocation) throw;  // anything else may have broken the context
      cudaGetLastError();
      prof.skipped.push_back({job.describe(), std::string("out of device memory: ") + e.what()});
    } catch (const gpu::CublasError& e) {
      if (e.status() != CUBLAS_STATUS_NOT_SUPPORTED && e.status() != CUBLAS_STATUS_ALLOC_FAILED) throw;
      prof.skipped.push_back({job.describe(), e.what()});
    } catch (const Error& e) {  // e.g. a buffer set larger than the free memory
      prof.skipped.push_back({job.describe(), e.what()});
    }
  }
  const double sweep_s = elapsed();

  int driver = 0, runtime = 0, cublas = 0;
  MOESIM_CUDA_CHECK(cudaDriverGetVersion(&driver));
  MOESIM_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  MOESIM_CUBLAS_CHECK(cublasGetVersion(ctx.cublas(), &cublas));
  int sm_clock_khz = 0, mem_clock_khz = 0;
  cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, 0);
  cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, 0);
  cudaGetLastError();
  std::string dtypes;
  for (DType d : o.dtypes) dtypes += (dtypes.empty() ? "" : ",") + to_string(d);
  const sweep::TimingPolicy& p = runner.policy();
  prof.provenance = Fields{
      {"measured", true},
      {"synthetic", false},
      {"tool", std::string("moesim-profile")},
      {"gpu_name", std::string(dev.prop.name)},
      {"device", slug},
      {"compute_capability", std::to_string(dev.prop.major) + "." + std::to_string(dev.prop.minor)},
      {"sm_count", std::int64_t{dev.prop.multiProcessorCount}},
      {"memory_bytes", static_cast<std::int64_t>(dev.prop.totalGlobalMem)},
      {"l2_bytes", std::int64_t{dev.prop.l2CacheSize}},
      {"memory_bus_width_bits", std::int64_t{dev.prop.memoryBusWidth}},
      {"sm_clock_max_hz", static_cast<std::int64_t>(sm_clock_khz) * 1000},
      {"memory_clock_max_hz", static_cast<std::int64_t>(mem_clock_khz) * 1000},
      {"clocks_note", std::string("peak clocks reported by the CUDA runtime; clocks were left as found "
                                  "(see the run log for nvidia-smi readings)")},
      {"driver_version", std::int64_t{driver}},
      {"cuda_runtime_version", std::int64_t{runtime}},
      {"cublas_version", std::int64_t{cublas}},
      {"date_utc", now_utc()},
      {"hostname", host_name()},
      {"command_line", o.command_line},
      {"git_hash", o.git_hash},
      {"grid", std::string(o.quick ? "quick" : "full")},
      {"dtypes", dtypes},
      {"only", o.only},
      {"budget_s", o.budget_s},
      {"sweep_elapsed_s", sweep_s},
      {"timing", "CUDA events around back-to-back runs on one stream; " + std::to_string(p.warmups) +
                     " warm-ups, then between " + std::to_string(p.min_repeats) + " and " +
                     std::to_string(p.max_repeats) + " timed runs (about " + std::to_string(p.target_s) +
                     " s of GPU time); median and p10/p90 reported"},
      {"data", std::string("uniform random non-zero inputs (|x| in [0.25,1]*scale); rotating buffer sets so that one "
                           "pass over all sets exceeds 2x L2")},
      {"accumulation", std::string("fp32 (CUBLAS_COMPUTE_32F; fp32 GEMMs are true fp32, not TF32)")},
  };
  prof.ceilings = Fields{{"matmul_bf16_flops_per_s", c.bf16_flops_per_s},
                         {"matmul_bf16_time_s", c.bf16_stats.median_s},
                         {"matmul_fp32_flops_per_s", c.fp32_flops_per_s},
                         {"matmul_fp32_time_s", c.fp32_stats.median_s},
                         {"matmul_shape", std::string("8192x8192x8192 row-major, cublasGemmEx")},
                         {"copy_bytes_per_s", c.copy_bytes_per_s},
                         {"copy_time_s", c.copy_stats.median_s},
                         {"copy_convention", std::string("cudaMemcpyAsync device-to-device of up to 1 GiB; bytes "
                                                         "read + bytes written")}};

  const fs::path out = o.out.empty() ? fs::path("profiles") / "measured" / (slug + ".json") : fs::path(o.out);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  {
    std::ofstream f(out);
    if (!f) throw Error("cannot write " + out.string());
    f << profile::to_json(prof);
    if (!f) throw Error("failed writing " + out.string());
  }

  // Summary last: the device tool shows the tail of the output.
  std::map<std::string, std::pair<int, double>> best;
  for (const Entry& e : prof.entries) {
    auto& b = best[to_string(e.kernel_class) + " " + to_string(e.dtype)];
    b.first += 1;
    const double rate = e.cost.flops > 0 ? e.cost.flops / e.stats.median_s : e.cost.bytes / e.stats.median_s;
    b.second = std::max(b.second, rate);
  }
  std::cout << "\nsummary (" << prof.entries.size() << " entries, " << prof.skipped.size() << " skipped, sweep "
            << std::fixed << std::setprecision(0) << sweep_s << " s)\n" << std::defaultfloat;
  std::cout << "  ceilings: bf16 " << fmt_rate(c.bf16_flops_per_s, 1e12, "TFLOP/s") << ", fp32 "
            << fmt_rate(c.fp32_flops_per_s, 1e12, "TFLOP/s") << ", copy " << fmt_rate(c.copy_bytes_per_s, 1e9, "GB/s")
            << '\n';
  for (const auto& [k, v] : best) {
    const bool flops = k.rfind("gemm", 0) == 0 || k.rfind("batched", 0) == 0 || k.rfind("grouped", 0) == 0;
    std::cout << "  " << std::left << std::setw(20) << k << std::right << std::setw(5) << v.first << " entries, best "
              << (flops ? fmt_rate(v.second, 1e12, "TFLOP/s") : fmt_rate(v.second, 1e9, "GB/s")) << '\n';
  }
  std::cout << "wrote " << out.string() << '\n';
  return 0;
}

}  // namespace moesim::kernels::profiler
