// Whether the CUDA module can use a device now: for the whole _cuda module, not one kernel.
// Compiled by nvcc only; the declaration needs no CUDA header.
#pragma once
#include <string>
#include <utility>

namespace ums {

// (usable, reason). Error 35 (no driver), 100 (no device) and 34 (stub library)
// all mean "no CUDA device here", reported as such, never as a crash or warning.
std::pair<bool, std::string> cuda_device_status();

}  // namespace ums
