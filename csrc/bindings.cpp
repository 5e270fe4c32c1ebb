// The module definitions: umsynth._cpu (g++, OpenMP) and, where nvcc exists, umsynth._cuda
// (this file built again with UMS_CUDA_MODULE defined). Each kernel family binds its own
// functions beside its kernels (bind_<family> in csrc/<family>/<family>_bindings.cpp);
// this file only adds the module-wide functions and calls them. Python passes pointers,
// shapes and strides as integers; no torch C++ ABI is involved.
#include <pybind11/pybind11.h>

#include <string>

#include <omp.h>

namespace py = pybind11;

// ---- kernel families, bound into both modules: a new family adds its declaration here
// and one call in bind_families.
void bind_slic(py::module_& m);     // csrc/slic/slic_bindings.cpp
void bind_frechet(py::module_& m);  // csrc/frechet/frechet_bindings.cpp
void bind_radiomics(py::module_& m);  // csrc/radiomics/radiomics_bindings.cpp

namespace {
void bind_families(py::module_& m) {
  bind_slic(m);
  bind_frechet(m);
  bind_radiomics(m);
}
}  // namespace

#ifdef UMS_CUDA_MODULE
#include "device_status.h"

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "umsynth CUDA kernels";
  m.def("device_status", &ums::cuda_device_status,
        "(usable, reason): whether a CUDA device can be used now");
  m.def("architectures", []() { return std::string(UMS_CUDA_ARCHS); },
        "The CUDA architectures the module was built for.");
  bind_families(m);
}

#else

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "umsynth CPU kernels (OpenMP). Python validates; these only loop.";
  m.def("max_threads", []() { return omp_get_max_threads(); },
        "OpenMP's default thread count.");
  bind_families(m);
}
#endif
