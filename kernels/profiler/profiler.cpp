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
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#include "moesim/core/error.hpp"
#include "moesim/kernels/attention.hpp"
#include "moesim/kernels/counting.hpp"
#include "moesim/kernels/gpu/attention.hpp"
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
// machine (shared notes/moe-kernels.md section 4: 798 TFLOP/s bf16 8192³, 3.0 TB/s copy), the
// H100 SXM datasheet fp32 rate (67 TFLOP/s), and fp8 at twice the measured bf16 rate (the
// datasheet's fp8 tensor rate is twice its bf16 rate: 1,979 vs 989 TFLOP/s). Used for estimates
// only, never written as results.
constexpr sweep::Ceilings kPlanningCeilings{798e12, 67e12, 3.0e12, 5e-6, 2 * 798e12};

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
  /** Fills buffer `buffer` of every set with random values of `dtype` (buffers of mixed types). */
  void fill_buffer(std::size_t buffer, std::size_t bytes, DType dtype, std::uint64_t seed, float scale,
                   cudaStream_t stream) const {
    for (int i = 0; i < sets_; ++i) {
      gpu::fill_random(get(i, buffer), bytes / dtype_bytes(dtype), dtype, seed + static_cast<std::uint64_t>(i), scale,
                       stream);
    }
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
  double fp8_flops_per_s = 0.0;  ///< 0 when the device has no cuBLASLt fp8 GEMM
  double copy_bytes_per_s = 0.0;
  profile::Stats bf16_stats, fp32_stats, fp8_stats, copy_stats;
};

double free_memory() {
  std::size_t free_b = 0, total_b = 0;
  MOESIM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return static_cast<double>(free_b);
}

class Runner {
 public:
  Runner(const Options& o, gpu::Context& ctx, const Device& dev, std::vector<std::string> failed_checks)
      : o_(o), ctx_(ctx), dev_(dev), timer_(ctx.stream()), failed_checks_(std::move(failed_checks)) {}

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
  void job_gemm_fp8(const Job& job, std::vector<Entry>& out);
  void job_expert_ffn_fp8(const Job& job, std::vector<Entry>& out);
  void job_decode(const Job& job, std::vector<Entry>& out);
  void job_prefill(const Job& job, std::vector<Entry>& out);
  void print(const Entry& e, const std::string& extra = {}) const;

  const Options& o_;
  gpu::Context& ctx_;
  const Device& dev_;
  EventTimer timer_;
  sweep::TimingPolicy policy_;
  std::uint64_t seed_ = 1;
  double copy_bytes_per_s_ = 0.0;
  std::vector<std::string> failed_checks_;  ///< names of the reference checks that failed
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
  {
    // fp8 8192³ through cuBLASLt (E4M3 in, bf16 out, scales 1), where the device has it.
    const std::int64_t n = kCeilingGemmDim;
    try {
      gpu::Fp8Gemm gemm(ctx_, static_cast<int>(n), static_cast<int>(n), static_cast<int>(n));
      gpu::DeviceMemory a(static_cast<std::size_t>(n * n)), b(static_cast<std::size_t>(n * n)), out(static_cast<std::size_t>(n * n) * 2);
      gpu::DeviceMemory one = gpu::upload_raw(std::vector<float>{1.0f});
      gpu::fill_random(a.get(), static_cast<std::size_t>(n * n), DType::fp8, ++seed_, 1.0f, ctx_.stream());
      gpu::fill_random(b.get(), static_cast<std::size_t>(n * n), DType::fp8, ++seed_, 1.0f, ctx_.stream());
      c.fp8_stats = measure(ctx_, timer_, policy_, [&](int) {
        gemm.run(ctx_, a.get(), b.get(), one.as<float>(), one.as<float>(), out.get());
      });
      c.fp8_flops_per_s = gemm_cost(n, n, n, DType::fp8, 2).flops / c.fp8_stats.median_s;
    } catch (const gpu::CublasError& e) {
      if (e.status() != CUBLAS_STATUS_NOT_SUPPORTED) throw;
      std::cout << "(no fp8 GEMM ceiling: " << e.what() << ")\n";
    }
  }
  copy_bytes_per_s_ = c.copy_bytes_per_s;
  std::cout << "ceilings: dense GEMM 8192^3 bf16 " << fmt_rate(c.bf16_flops_per_s, 1e12, "TFLOP/s") << ", fp32 "
            << fmt_rate(c.fp32_flops_per_s, 1e12, "TFLOP/s") << ", fp8 "
            << (c.fp8_flops_per_s > 0 ? fmt_rate(c.fp8_flops_per_s, 1e12, "TFLOP/s") : std::string("n/a"))
            << "; device-to-device copy " << fmt_rate(c.copy_bytes_per_s, 1e9, "GB/s") << " (read + write)\n";
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

/** The shape fields of an expert-FFN entry (bf16 strategies and fp8 alike): `rows` real rows in all. */
template <class Rows>
Fields expert_ffn_shape(const Job& job, Rows rows) {
  const auto [cmin, cmax] = std::minmax_element(job.counts.begin(), job.counts.end());
  return Fields{{"tokens", rows},
                {"d_model", job.d_model},
                {"d_ff", job.d_ff},
                {"experts", job.experts},
                {"tokens_per_expert", job.tokens_per_expert},
                {"distribution", job.distribution},
                {"count_min", *cmin},
                {"count_max", *cmax},
                {"activation", to_string(job.act)}};
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
  const Fields shape = expert_ffn_shape(job, ffn.rows());

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
  std::vector<gpu::FfnStrategy> to_time{gpu::FfnStrategy::loop, gpu::FfnStrategy::grouped, gpu::FfnStrategy::padded_strided};
  if (ffn.capacity() <= sweep::kFusedSmallMaxRows) to_time.push_back(gpu::FfnStrategy::fused_small);
  for (gpu::FfnStrategy st : to_time) {
    const std::string prefix = "expert_ffn " + to_string(st) + " ";
    if (std::any_of(failed_checks_.begin(), failed_checks_.end(), [&](const std::string& name) { return name.rfind(prefix, 0) == 0; })) {
      std::cout << "  (" << to_string(st) << " not timed: its reference check failed)\n";
      continue;
    }
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

// fp8 dense GEMM through cuBLASLt: A [m×k] E4M3 (activations), B [n×k] E4M3 (weight, nn.Linear
// layout), C bf16, per-tensor scales of 1.
void Runner::job_gemm_fp8(const Job& job, std::vector<Entry>& out) {
  gpu::Fp8Gemm gemm(ctx_, static_cast<int>(job.m), static_cast<int>(job.n), static_cast<int>(job.k));
  const auto a_bytes = static_cast<std::size_t>(job.m * job.k), b_bytes = static_cast<std::size_t>(job.n * job.k);
  const auto c_bytes = static_cast<std::size_t>(job.m * job.n) * 2;
  BufferSets sets({a_bytes, b_bytes, c_bytes}, dev_.l2_bytes, dev_.free_bytes);
  sets.fill_buffer(0, a_bytes, DType::fp8, ++seed_, 1.0f, ctx_.stream());
  sets.fill_buffer(1, b_bytes, DType::fp8, ++seed_, 1.0f, ctx_.stream());
  gpu::DeviceMemory one = gpu::upload_raw(std::vector<float>{1.0f});
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    gemm.run(ctx_, sets.get(i, 0), sets.get(i, 1), one.as<float>(), one.as<float>(), sets.get(i, 2));
  });
  e.fields.insert(e.fields.end(), {{"tokens", job.m}, {"d_model", job.d_model}, {"m", job.m}, {"n", job.n}, {"k", job.k},
                                   {"output_dtype", std::string("bf16")},
                                   {"includes", std::string("cuBLASLt E4M3 x E4M3 -> bf16, per-tensor scales, B stored [n x k]")},
                                   {"buffer_sets", std::int64_t{sets.sets()}}});
  print(e, "m=" + std::to_string(job.m) + " n=" + std::to_string(job.n) + " k=" + std::to_string(job.k));
  out.push_back(std::move(e));
}

// fp8 expert FFN (cuBLASLt loop) and its equal-FLOPs dense fp8 FFN.
void Runner::job_expert_ffn_fp8(const Job& job, std::vector<Entry>& out) {
  gpu::Fp8ExpertFfn ffn(ctx_, job.act, job.d_model, job.d_ff, job.counts);
  gpu::Fp8ExpertFfn dense(ctx_, job.act, job.d_model, job.d_ff, {ffn.rows()});
  const std::size_t g = is_gated(job.act) ? 2 : 1;
  const auto d = static_cast<std::size_t>(job.d_model), f = static_cast<std::size_t>(job.d_ff);
  const auto e_n = static_cast<std::size_t>(job.experts), rows = static_cast<std::size_t>(ffn.rows());
  // x, w13, w2 (E4M3); h (bf16); a (E4M3); y (bf16); dense w13, w2 (E4M3)
  const std::vector<std::size_t> sizes{rows * d, e_n * g * f * d, e_n * d * f, rows * g * f * 2, rows * f, rows * d * 2,
                                       g * f * d, d * f};
  BufferSets sets(sizes, dev_.l2_bytes, dev_.free_bytes);
  for (std::size_t i : {0, 1, 2, 4, 6, 7}) sets.fill_buffer(i, sizes[i], DType::fp8, ++seed_, 1.0f, ctx_.stream());
  // Scales of 1 (x, a, and one per expert): the values only need to stay finite for timing.
  gpu::DeviceMemory ones = gpu::upload_raw(std::vector<float>(e_n + 1, 1.0f));
  auto buffers = [&](int i, bool dense_weights) {
    gpu::Fp8FfnBuffers b;
    b.x = sets.get(i, 0);
    b.w13 = sets.get(i, dense_weights ? 6 : 1);
    b.w2 = sets.get(i, dense_weights ? 7 : 2);
    b.x_scale = b.a_scale = ones.as<float>();
    b.w13_scale = b.w2_scale = ones.as<float>();
    b.a_scale_value = 1.0f;
    b.h = sets.get(i, 3);
    b.a = sets.get(i, 4);
    b.y = sets.get(i, 5);
    return b;
  };
  Entry dense_entry = base_entry(job);
  dense_entry.kernel_class = KernelClass::gemm;
  dense_entry.kernel = "dense_ffn";
  dense_entry.cost = dense_ffn_cost(ffn.rows(), job.d_model, job.d_ff, job.act, DType::fp8);
  dense_entry.stats = measure(ctx_, timer_, policy_, [&](int i) { dense.run(ctx_, buffers(i, true)); });
  dense_entry.fields.insert(dense_entry.fields.end(),
                            {{"tokens", ffn.rows()}, {"d_model", job.d_model}, {"d_ff", job.d_ff},
                             {"activation", to_string(job.act)}, {"output_dtype", std::string("bf16")},
                             {"role", std::string("equal-FLOPs dense reference for expert_ffn")}});
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) { ffn.run(ctx_, buffers(i, false)); });
  const double ratio = dense_entry.stats.median_s / e.stats.median_s;
  const Fields shape = expert_ffn_shape(job, ffn.rows());
  e.fields.insert(e.fields.end(), shape.begin(), shape.end());
  e.fields.insert(e.fields.end(), {{"strategy", std::string("loop")},
                                   {"output_dtype", std::string("bf16")},
                                   {"includes", std::string("cuBLASLt fp8 GEMM per expert, activation + E4M3 quantization, "
                                                            "cuBLASLt fp8 GEMM per expert")},
                                   {"fastest", true},
                                   {"dense_equal_time_s", dense_entry.stats.median_s},
                                   {"ratio_to_dense", ratio},
                                   {"buffer_sets", std::int64_t{sets.sets()}}});
  std::ostringstream x;
  x << "E=" << job.experts << " m=" << job.tokens_per_expert << " (x" << std::setprecision(2) << ratio << " dense)";
  print(e, x.str());
  out.push_back(std::move(e));
  out.push_back(std::move(dense_entry));
}

// Decode attention over a paged KV cache: every sequence of the batch has kv_len cached tokens;
// pages are handed out in a shuffled order (as a serving allocator's free list after churn). The
// block table and lengths are shared by all buffer sets (each set has its own pages).
void Runner::job_decode(const Job& job, std::vector<Entry>& out) {
  const auto b = static_cast<int>(job.batch);
  const std::int64_t pages_per_seq = (job.kv_len + job.block_size - 1) / job.block_size;
  const std::int64_t pages = job.batch * pages_per_seq;
  const int splits = static_cast<int>(decode_splits(job.batch, job.kv_heads, job.kv_len, ctx_.sm_count()));
  const std::size_t s = dtype_bytes(job.dtype);
  const auto qo_bytes = static_cast<std::size_t>(job.batch * job.q_heads * job.d_head) * 2;
  const auto kv_bytes = static_cast<std::size_t>(pages * job.kv_heads * job.block_size * job.d_head) * s;
  const std::size_t ws_bytes = gpu::decode_workspace_bytes(b, static_cast<int>(job.q_heads), static_cast<int>(job.d_head), splits);
  BufferSets sets({qo_bytes, qo_bytes, kv_bytes, kv_bytes, ws_bytes}, dev_.l2_bytes, dev_.free_bytes);
  sets.fill_buffer(0, qo_bytes, DType::bf16, ++seed_, 1.0f, ctx_.stream());
  sets.fill_buffer(2, kv_bytes, job.dtype, ++seed_, 1.0f, ctx_.stream());
  sets.fill_buffer(3, kv_bytes, job.dtype, ++seed_, 1.0f, ctx_.stream());
  std::vector<std::int32_t> table(static_cast<std::size_t>(pages));
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937_64(++seed_));
  gpu::DeviceMemory dtable = gpu::upload_raw(table);
  gpu::DeviceMemory dlens = gpu::upload_raw(std::vector<std::int32_t>(static_cast<std::size_t>(b), static_cast<std::int32_t>(job.kv_len)));
  gpu::DecodeArgs a;
  a.block_table = dtable.as<std::int32_t>();
  a.kv_lens = dlens.as<std::int32_t>();
  a.batch = b;
  a.q_heads = static_cast<int>(job.q_heads);
  a.kv_heads = static_cast<int>(job.kv_heads);
  a.d_head = static_cast<int>(job.d_head);
  a.block_size = static_cast<int>(job.block_size);
  a.max_blocks = static_cast<int>(pages_per_seq);
  a.kv_dtype = job.dtype;
  a.splits = splits;
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    gpu::DecodeArgs r = a;
    r.q = sets.get(i, 0);
    r.out = sets.get(i, 1);
    r.k_cache = sets.get(i, 2);
    r.v_cache = sets.get(i, 3);
    r.workspace = ws_bytes > 0 ? sets.get(i, 4) : nullptr;
    gpu::decode_attention(r, ctx_.stream());
  });
  const double ratio = e.cost.bytes / e.stats.median_s / copy_bytes_per_s_;
  e.fields.insert(e.fields.end(), {{"batch", job.batch},
                                   {"tokens", job.batch},
                                   {"kv_len", job.kv_len},
                                   {"q_heads", job.q_heads},
                                   {"kv_heads", job.kv_heads},
                                   {"d_head", job.d_head},
                                   {"block_size", job.block_size},
                                   {"splits", std::int64_t{splits}},
                                   {"query_dtype", std::string("bf16")},
                                   {"ratio_to_copy", ratio},
                                   {"buffer_sets", std::int64_t{sets.sets()}}});
  std::ostringstream x;
  x << "B=" << job.batch << " L=" << job.kv_len << " kv=" << to_string(job.dtype) << " splits=" << splits
    << " copy-ratio=" << std::setprecision(2) << ratio;
  print(e, x.str());
  out.push_back(std::move(e));
}

// Prefill attention over a packed causal varlen batch (q_len = kv_len per sequence).
void Runner::job_prefill(const Job& job, std::vector<Entry>& out) {
  VarlenBatch vb;
  for (std::int64_t l : job.seq_lens) {
    vb.q_lens.push_back(static_cast<std::int32_t>(l));
    vb.kv_lens.push_back(static_cast<std::int32_t>(l));
  }
  vb.q_heads = job.q_heads;
  vb.kv_heads = job.kv_heads;
  vb.d_head = job.d_head;
  vb.causal = job.causal;
  validate(vb);
  const auto t = static_cast<std::size_t>(vb.total_q());
  const auto q_bytes = t * static_cast<std::size_t>(job.q_heads * job.d_head) * 2;
  const auto kv_bytes = t * static_cast<std::size_t>(job.kv_heads * job.d_head) * 2;
  BufferSets sets({q_bytes, kv_bytes, kv_bytes, q_bytes}, dev_.l2_bytes, dev_.free_bytes);
  sets.fill(DType::bf16, ++seed_, 1.0f, ctx_.stream());
  gpu::DeviceMemory dcq = gpu::upload_raw(vb.cu_q()), dck = gpu::upload_raw(vb.cu_kv());
  gpu::PrefillArgs a;
  a.cu_q = dcq.as<std::int32_t>();
  a.cu_kv = dck.as<std::int32_t>();
  a.batch = static_cast<int>(vb.batch());
  a.q_heads = static_cast<int>(job.q_heads);
  a.kv_heads = static_cast<int>(job.kv_heads);
  a.d_head = static_cast<int>(job.d_head);
  a.max_q_len = static_cast<int>(*std::max_element(job.seq_lens.begin(), job.seq_lens.end()));
  a.causal = job.causal;
  Entry e = base_entry(job);
  e.stats = measure(ctx_, timer_, policy_, [&](int i) {
    gpu::PrefillArgs r = a;
    r.q = sets.get(i, 0);
    r.k = sets.get(i, 1);
    r.v = sets.get(i, 2);
    r.out = sets.get(i, 3);
    gpu::prefill_attention(r, ctx_.stream());
  });
  double pairs = 0.0;
  std::string lens;
  for (std::int64_t l : job.seq_lens) {
    pairs += attention_pairs(l, l, job.causal);
    lens += (lens.empty() ? "" : ",") + std::to_string(l);
  }
  e.fields.insert(e.fields.end(), {{"batch", vb.batch()},
                                   {"seq", job.seq},
                                   {"tokens", vb.total_q()},
                                   {"seq_lens", lens},
                                   {"causal", job.causal},
                                   {"causal_pairs", pairs},
                                   {"q_heads", job.q_heads},
                                   {"kv_heads", job.kv_heads},
                                   {"d_head", job.d_head},
                                   {"buffer_sets", std::int64_t{sets.sets()}}});
  print(e, "B=" + std::to_string(vb.batch()) + " seq=" + (job.seq > 0 ? std::to_string(job.seq) : std::string("mixed")));
  out.push_back(std::move(e));
}

void Runner::run_job(const Job& job, std::vector<Entry>& entries) {
  switch (job.kernel_class) {
    case KernelClass::gemm:
      if (job.dtype == DType::fp8) {
        job_gemm_fp8(job, entries);
      } else if (job.kernel == "dense_ffn") {
        job_dense_ffn(job, entries);
      } else {
        job_gemm(job, entries);
      }
      break;
    case KernelClass::batched_gemm: job_batched(job, entries); break;
    case KernelClass::grouped_gemm:
      if (job.dtype == DType::fp8) {
        job_expert_ffn_fp8(job, entries);
      } else {
        job_expert_ffn(job, entries);
      }
      break;
    case KernelClass::decode_attention: job_decode(job, entries); break;
    case KernelClass::prefill_attention: job_prefill(job, entries); break;
    case KernelClass::router: job_router(job, entries); break;
    case KernelClass::permute:
    case KernelClass::unpermute: job_permute(job, entries); break;
    case KernelClass::elementwise: job_activation(job, entries); break;
  }
}

/** The first failed check (by name prefix) that a job depends on, or "" when none: a kernel whose
 *  reference check failed is not timed; the others still are. */
std::string failed_dependency(const Job& j, const std::vector<std::string>& failed) {
  std::vector<const char*> prefixes;
  const bool fp8 = j.dtype == DType::fp8;
  switch (j.kernel_class) {
    case KernelClass::gemm:
      if (fp8) {
        prefixes = {"gemm_fp8", "quantize_fp8", "expert_ffn_fp8"};  // dense_ffn fp8 runs the fp8 FFN pipeline
      } else if (j.kernel == "dense_ffn") {
        prefixes = {"gemm ", "activation", "expert_ffn loop"};
      } else {
        prefixes = {"gemm "};
      }
      break;
    case KernelClass::batched_gemm: prefixes = {"batched_gemm"}; break;
    case KernelClass::grouped_gemm:
      // the loop strategy is also the dense reference; other strategies are dropped one by one
      prefixes = fp8 ? std::vector<const char*>{"gemm_fp8", "quantize_fp8", "expert_ffn_fp8"}
                     : std::vector<const char*>{"gemm ", "activation", "expert_ffn loop"};
      break;
    case KernelClass::router: prefixes = {"softmax_topk", "plan_dispatch"}; break;
    case KernelClass::permute:
    case KernelClass::unpermute: prefixes = {"softmax_topk", "plan_dispatch", "permute", "unpermute"}; break;
    case KernelClass::elementwise: prefixes = {"activation"}; break;
    case KernelClass::decode_attention: prefixes = {"decode_attention"}; break;
    case KernelClass::prefill_attention: prefixes = {"prefill_attention"}; break;
  }
  for (const std::string& f : failed) {
    for (const char* p : prefixes) {
      if (f.rfind(p, 0) == 0) return f;
    }
  }
  return "";
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
  std::cout << "estimated GPU time of the timed runs (roofline lower bound at planning ceilings 798 TFLOP/s bf16, "
               "1596 TFLOP/s fp8, 67 TFLOP/s fp32 and CUDA cores, 3.0 TB/s, 5 us per launch): "
            << std::fixed << std::setprecision(1) << total << " s; " << skipped
            << " shapes would be skipped as slower than " << std::setprecision(2) << policy.max_run_s
            << " s per run\n";
  std::cout << "with " << std::setprecision(2) << policy.setup_s << " s of setup per shape (assumed: allocation, fills, "
            << "uploads): " << std::setprecision(1) << sweep::estimate_sweep_s(jobs, kPlanningCeilings, policy)
            << " s of sweep; the profiler stops starting shapes after --budget-s\n";
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
         "  --dtype D         bf16, fp8, fp32 or all (default all: bf16, then fp8, then fp32)\n"
         "  --only KERNEL     one kernel (expert_ffn, decode_attention, prefill_attention, router, permute,\n"
         "                    unpermute, activation, dense_ffn, qkv_proj, out_proj, router_gate,\n"
         "                    attn_scores, attn_values) or class (gemm, ..., decode_attention)\n"
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
      o.dtypes = v == "all" ? std::vector<DType>{DType::bf16, DType::fp8, DType::fp32} : std::vector<DType>{parse_dtype(v)};
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

  std::vector<std::string> failed_checks;
  if (o.check || o.check_only) {
    int failed = 0, total = 0, skipped_checks = 0;
    for (const auto& group : gpu::check_groups()) {
      for (const auto& r : gpu::run_checks(ctx, group)) {
        ++total;
        failed += !r.passed;
        skipped_checks += r.skipped;
        if (!r.passed) failed_checks.push_back(r.name);
        if (!r.passed || r.skipped || o.check_only) {
          std::cout << (r.skipped ? "  skip " : r.passed ? "  ok   " : "  FAIL ") << r.name << "  error=" << r.error
                    << " tol=" << r.tolerance << (r.detail.empty() ? "" : "  (" + r.detail + ")") << '\n';
        }
      }
    }
    std::cout << "checks: " << total - failed - skipped_checks << " passed, " << skipped_checks
              << " skipped (unsupported on this device), " << failed << " failed\n";
    if (o.check_only) return failed > 0 ? 1 : 0;
    if (failed > 0) {
      std::cout << "kernels that fail their reference check are not timed (listed under \"skipped\"); the others are\n";
    }
  }

  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  Runner runner(o, ctx, dev, failed_checks);
  const Ceilings c = runner.measure_ceilings();
  const sweep::Ceilings est{c.bf16_flops_per_s, c.fp32_flops_per_s, c.copy_bytes_per_s, 5e-6,
                            c.fp8_flops_per_s > 0 ? c.fp8_flops_per_s : 2.0 * c.bf16_flops_per_s};
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
    if (const std::string dep = failed_dependency(job, failed_checks); !dep.empty()) {
      prof.skipped.push_back({job.describe(), "not timed: its reference check failed (" + dep + ")"});
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
      {"fp8", std::string("fp8 = E4M3 (OCP FP8) operands with per-tensor fp32 scales, bf16 outputs, cuBLASLt "
                          "(TN layout) on GPUs with fp8 tensor cores; decode_attention entries: dtype is the KV-cache "
                          "type, queries and outputs bf16")},
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
  if (c.fp8_flops_per_s > 0.0) {
    prof.ceilings.emplace_back("matmul_fp8_flops_per_s", c.fp8_flops_per_s);
    prof.ceilings.emplace_back("matmul_fp8_time_s", c.fp8_stats.median_s);
  }

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
  auto rate_is_flops = [](KernelClass k) {
    return k == KernelClass::gemm || k == KernelClass::batched_gemm || k == KernelClass::grouped_gemm ||
           k == KernelClass::prefill_attention;
  };
  for (const Entry& e : prof.entries) {
    auto& b = best[to_string(e.kernel_class) + " " + to_string(e.dtype)];
    b.first += 1;
    const double rate = rate_is_flops(e.kernel_class) ? e.cost.flops / e.stats.median_s : e.cost.bytes / e.stats.median_s;
    b.second = std::max(b.second, rate);
  }
  std::cout << "\nsummary (" << prof.entries.size() << " entries, " << prof.skipped.size() << " skipped, sweep "
            << std::fixed << std::setprecision(0) << sweep_s << " s)\n" << std::defaultfloat;
  std::cout << "  ceilings: bf16 " << fmt_rate(c.bf16_flops_per_s, 1e12, "TFLOP/s") << ", fp32 "
            << fmt_rate(c.fp32_flops_per_s, 1e12, "TFLOP/s") << ", fp8 "
            << (c.fp8_flops_per_s > 0 ? fmt_rate(c.fp8_flops_per_s, 1e12, "TFLOP/s") : std::string("n/a")) << ", copy "
            << fmt_rate(c.copy_bytes_per_s, 1e9, "GB/s") << '\n';
  for (const auto& [k, v] : best) {
    const bool flops = rate_is_flops(parse_kernel_class(k.substr(0, k.find(' '))));
    std::cout << "  " << std::left << std::setw(24) << k << std::right << std::setw(5) << v.first << " entries, best "
              << (flops ? fmt_rate(v.second, 1e12, "TFLOP/s") : fmt_rate(v.second, 1e9, "GB/s")) << '\n';
  }
  // The targets (issue 12, Part B), each as the median over the shapes it names.
  auto num = [](const Entry& e, const char* key) -> double {
    for (const auto& [k, v] : e.fields) {
      if (k != key) continue;
      if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
      if (const auto* x = std::get_if<double>(&v)) return *x;
      if (const auto* b = std::get_if<bool>(&v)) return *b ? 1.0 : 0.0;
    }
    return -1.0;
  };
  auto median_of = [](std::vector<double> v) {
    if (v.empty()) return -1.0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  std::vector<double> ffn_ratio, perm_ratio, decode_ratio;
  for (const Entry& e : prof.entries) {
    if (e.kernel_class == KernelClass::grouped_gemm && e.dtype == DType::bf16 && num(e, "fastest") == 1.0 &&
        num(e, "tokens_per_expert") >= 512 && num(e, "count_min") == num(e, "count_max")) {
      ffn_ratio.push_back(num(e, "ratio_to_dense"));
    }
    if ((e.kernel_class == KernelClass::permute || e.kernel_class == KernelClass::unpermute) && e.dtype == DType::bf16 &&
        num(e, "tokens") >= 16384) {
      perm_ratio.push_back(num(e, "ratio_to_copy"));
    }
    if (e.kernel_class == KernelClass::decode_attention && e.cost.bytes >= 256e6) decode_ratio.push_back(num(e, "ratio_to_copy"));
  }
  auto target = [](const char* what, double value, double goal, std::size_t n) {
    std::cout << "  target " << std::left << std::setw(58) << what << std::right;
    if (value < 0) {
      std::cout << "  not measured\n";
    } else {
      std::cout << "  " << std::fixed << std::setprecision(2) << value << " (goal >= " << goal << ", " << n << " shapes) "
                << (value >= goal ? "met" : "MISSED") << '\n'
                << std::defaultfloat;
    }
  };
  target("expert FFN bf16 >= 512 tok/expert balanced / dense GEMM, median", median_of(ffn_ratio), 0.90, ffn_ratio.size());
  target("permute+unpermute bf16 T >= 16384 / device copy, median", median_of(perm_ratio), 0.75, perm_ratio.size());
  target("decode attention KV >= 256 MB / device copy, median", median_of(decode_ratio), 0.80, decode_ratio.size());
  std::cout << "  target full sweep wall time < 300 s: " << std::fixed << std::setprecision(0) << sweep_s << " s "
            << (sweep_s < 300.0 ? "met" : "MISSED") << '\n'
            << std::defaultfloat;
  std::cout << "wrote " << out.string() << '\n';
  if (!failed_checks.empty()) {
    std::cout << failed_checks.size() << " reference checks FAILED; their kernels were not timed\n";
    return 1;
  }
  return 0;
}

}  // namespace moesim::kernels::profiler
