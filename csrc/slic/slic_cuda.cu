// CUDA launcher for the SLIC family. The per-element logic lives in slic_kernels.h,
// shared with the CPU launcher.
#include <cuda_runtime.h>

#include <string>

#include "slic/slic_cuda.h"

namespace ums {

std::pair<bool, std::string> cuda_device_status() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice ||
      err == cudaErrorStubLibrary) {
    cudaGetLastError();  // clear the sticky error
    return {false, std::string("no usable CUDA device: ") + cudaGetErrorString(err)};
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    return {false, std::string("CUDA error: ") + cudaGetErrorString(err)};
  }
  if (n == 0) return {false, "no CUDA device found"};
  return {true, std::to_string(n) + " CUDA device(s)"};
}

}  // namespace ums
