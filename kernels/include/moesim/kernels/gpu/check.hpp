// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "moesim/core/error.hpp"

/** Error checking for every CUDA runtime and cuBLAS call: a failed call throws, naming the call,
 *  the file:line and the library's own error text. Nothing here exits the process. */
namespace moesim::kernels::gpu {

/** A CUDA runtime call failed. */
class CudaError : public Error {
 public:
  CudaError(cudaError_t code, const std::string& what) : Error(what), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

/** A cuBLAS call failed; status() tells e.g. CUBLAS_STATUS_NOT_SUPPORTED apart. */
class CublasError : public Error {
 public:
  CublasError(cublasStatus_t status, const std::string& what) : Error(what), status_(status) {}
  cublasStatus_t status() const { return status_; }

 private:
  cublasStatus_t status_;
};

/** Name of a cuBLAS status ("CUBLAS_STATUS_NOT_SUPPORTED"). */
const char* cublas_status_name(cublasStatus_t status);

[[noreturn]] void throw_cuda(cudaError_t code, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t status, const char* expr, const char* file, int line);

inline void check_cuda(cudaError_t code, const char* expr, const char* file, int line) {
  if (code != cudaSuccess) throw_cuda(code, expr, file, line);
}
inline void check_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas(status, expr, file, line);
}

}  // namespace moesim::kernels::gpu

#define MOESIM_CUDA_CHECK(expr) ::moesim::kernels::gpu::check_cuda((expr), #expr, __FILE__, __LINE__)
#define MOESIM_CUBLAS_CHECK(expr) ::moesim::kernels::gpu::check_cublas((expr), #expr, __FILE__, __LINE__)
/** After every kernel launch: a bad launch configuration shows up here, not later. */
#define MOESIM_CUDA_CHECK_LAUNCH() \
  ::moesim::kernels::gpu::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
