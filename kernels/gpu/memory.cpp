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
  if (dtype == DType::fp32) return upload_raw(values);
  std::vector<std::uint16_t> bits(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) bits[i] = float_to_bf16_bits(values[i]);
  return upload_raw(bits);
}

std::vector<float> download(const void* src, std::size_t count, DType dtype) {
  if (dtype == DType::fp32) return download_raw<float>(src, count);
  const auto bits = download_raw<std::uint16_t>(src, count);
  std::vector<float> out(count);
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
}

Context::~Context() {
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
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
