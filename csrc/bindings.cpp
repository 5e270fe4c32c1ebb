// The one pybind11 binding file. Built twice: as umsynth._cpu (g++, OpenMP) and, where
// nvcc exists, as umsynth._cuda with UMS_CUDA_MODULE defined. Python passes pointers,
// shapes and strides as integers; no torch C++ ABI is involved.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <omp.h>

namespace py = pybind11;

#ifdef UMS_CUDA_MODULE
#include "slic/slic_cuda.h"

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "umsynth CUDA kernels";
  m.def("device_status", &ums::cuda_device_status,
        "(usable, reason): whether a CUDA device can be used now");
  m.def("architectures", []() { return std::string(UMS_CUDA_ARCHS); });
}

#else
#include "slic/slic_cpu.h"
#include "slic/slic_reference.h"

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "umsynth CPU kernels (OpenMP)";
  m.def("max_threads", []() { return omp_get_max_threads(); });
}
#endif
