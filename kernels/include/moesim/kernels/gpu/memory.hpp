// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moesim/kernels/types.hpp"

/** Device memory, transfers and the per-device context (stream + cuBLAS handle). Allocation is
 *  plain cudaMalloc (no managed memory, see the device notes). */
namespace moesim::kernels::gpu {

/** Owning handle of one cudaMalloc allocation. Move-only. */
class DeviceMemory {
 public:
  DeviceMemory() = default;
  /** Allocates `bytes` (≥ 1 byte is allocated even for 0). Throws CudaError when out of memory. */
  explicit DeviceMemory(std::size_t bytes);
  ~DeviceMemory();
  DeviceMemory(DeviceMemory&& other) noexcept;
  DeviceMemory& operator=(DeviceMemory&& other) noexcept;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/** Copies host bytes to the device (synchronous). */
void copy_to_device(void* dst, const void* src, std::size_t bytes);
/** Copies device bytes to the host (synchronous). */
void copy_to_host(void* dst, const void* src, std::size_t bytes);

/** Uploads floats as `dtype` elements (bf16: rounded to nearest even; fp8: E4M3, RNE, saturating). */
DeviceMemory upload(const std::vector<float>& values, DType dtype);
/** Uploads a typed host vector as is. */
template <class T>
DeviceMemory upload_raw(const std::vector<T>& values) {
  DeviceMemory mem(values.size() * sizeof(T));
  copy_to_device(mem.get(), values.data(), values.size() * sizeof(T));
  return mem;
}
/** Downloads `count` elements of `dtype` as floats (bf16 and fp8 widened exactly). */
std::vector<float> download(const void* src, std::size_t count, DType dtype);
/** Downloads `count` elements of T. */
template <class T>
std::vector<T> download_raw(const void* src, std::size_t count) {
  std::vector<T> out(count);
  copy_to_host(out.data(), src, count * sizeof(T));
  return out;
}

/** Fills device bytes with 0xFF: NaN for bf16/fp32, -1 for int32. Used to poison outputs before
 *  a checked run so that an unwritten element is caught. */
void poison(void* dst, std::size_t bytes, cudaStream_t stream);

/** Stream, cuBLAS and cuBLASLt handles of one device, created on the current device. */
class Context {
 public:
  /** cuBLASLt workspace: 32 MiB, NVIDIA's recommendation for Hopper (cuBLAS docs, cublasLtMatmul). */
  static constexpr std::size_t kLtWorkspaceBytes = std::size_t{32} << 20;

  Context();
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cublasLtHandle_t cublas_lt() const { return cublas_lt_; }
  /** The cuBLASLt workspace (allocated on first use). */
  void* lt_workspace();
  int sm_count() const { return sm_count_; }
  /** 10·major + minor, e.g. 90 for Hopper. */
  int compute_capability() const { return compute_capability_; }
  /** Waits for all work on the stream; throws on an asynchronous error. */
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublas_lt_ = nullptr;
  DeviceMemory lt_workspace_;
  int sm_count_ = 0;
  int compute_capability_ = 0;
};

/** Number of CUDA devices, or 0 with `why` set to the runtime's message when there are none or
 *  the driver cannot be reached (no throw: callers skip GPU work visibly). */
int device_count(std::string* why);

}  // namespace moesim::kernels::gpu
