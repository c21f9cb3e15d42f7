// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/gpu/memory.hpp"

#include <string>
#include <utility>

#include "moesim/kernels/gpu/check.hpp"

namespace moesim::kernels::gpu {

DeviceMemory::DeviceMemory(std::size_t bytes) : bytes_(bytes) {
  MOESIM_CUDA_CHECK(cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes));
}

DeviceMemory::~DeviceMemory() {
  if (ptr_ != nullptr) cudaFree(ptr_);  // no throw from a destructor; errors surface at the next checked call
}

DeviceMemory::DeviceMemory(DeviceMemory&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  MOESIM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  MOESIM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

DeviceMemory upload(const std::vector<float>& values, DType dtype) {
  switch (dtype) {
    case DType::fp32: return upload_raw(values);
    case DType::fp8: {
      std::vector<std::uint8_t> bits(values.size());
      for (std::size_t i = 0; i < values.size(); ++i) bits[i] = float_to_e4m3_bits(values[i]);
      return upload_raw(bits);
    }
    case DType::bf16: break;
  }
  std::vector<std::uint16_t> bits(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) bits[i] = float_to_bf16_bits(values[i]);
  return upload_raw(bits);
}

std::vector<float> download(const void* src, std::size_t count, DType dtype) {
  std::vector<float> out(count);
  switch (dtype) {
    case DType::fp32: return download_raw<float>(src, count);
    case DType::fp8: {
      const auto bits = download_raw<std::uint8_t>(src, count);
      for (std::size_t i = 0; i < count; ++i) out[i] = e4m3_bits_to_float(bits[i]);
      return out;
    }
    case DType::bf16: break;
  }
  const auto bits = download_raw<std::uint16_t>(src, count);
  for (std::size_t i = 0; i < count; ++i) out[i] = bf16_bits_to_float(bits[i]);
  return out;
}

void poison(void* dst, std::size_t bytes, cudaStream_t stream) {
  MOESIM_CUDA_CHECK(cudaMemsetAsync(dst, 0xFF, bytes, stream));
}

Context::Context() {
  MOESIM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  MOESIM_CUBLAS_CHECK(cublasCreate(&cublas_));
  MOESIM_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  MOESIM_CUBLAS_CHECK(cublasLtCreate(&cublas_lt_));
  int device = 0;
  MOESIM_CUDA_CHECK(cudaGetDevice(&device));
  MOESIM_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device));
  int major = 0, minor = 0;
  MOESIM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  MOESIM_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  compute_capability_ = 10 * major + minor;
}

Context::~Context() {
  if (cublas_lt_ != nullptr) cublasLtDestroy(cublas_lt_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void* Context::lt_workspace() {
  if (lt_workspace_.get() == nullptr) lt_workspace_ = DeviceMemory(kLtWorkspaceBytes);
  return lt_workspace_.get();
}

void Context::synchronize() const {
  MOESIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  MOESIM_CUDA_CHECK(cudaGetLastError());
}

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why != nullptr) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  if (n == 0 && why != nullptr) *why = "cudaGetDeviceCount returned 0 devices";
  return n;
}

}  // namespace moesim::kernels::gpu
