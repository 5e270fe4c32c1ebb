#pragma once
#include <string>
#include <utility>

namespace ums {
// (usable, reason). Error 35 (no driver), 100 (no device) and 34 (stub library)
// all mean "no CUDA device here", reported as such, never as a crash or warning.
std::pair<bool, std::string> cuda_device_status();
}  // namespace ums
