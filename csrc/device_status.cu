// CUDA device status of the _cuda module (see device_status.h).
#include "device_status.h"

#include <cuda_runtime.h>

#include <string>

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
