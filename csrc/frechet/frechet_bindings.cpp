// Bindings of the Fréchet-distance kernels, in both modules: bind_frechet(m) is called
// from csrc/bindings.cpp. Python validates and allocates; these only loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "frechet/polar_kernels.h"

namespace py = pybind11;

#ifdef UMS_CUDA_MODULE
#include "frechet/polar_cuda.h"

void bind_frechet(py::module_& m) {
  m.def("polar_run", &ums::frechet::polar_run_cuda, py::arg("batch"), py::arg("m"), py::arg("k"),
        py::arg("M"), py::arg("X"), py::arg("Y"), py::arg("G"), py::arg("terms"), py::arg("base"),
        py::arg("alpha"), py::arg("floor_abs"), py::arg("active"), py::arg("t_out"), py::arg("bound_out"),
        py::arg("iters"), py::arg("ell0"), py::arg("rtol"), py::arg("max_iter"), py::arg("check_every"),
        py::arg("portable"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
        "Batched polar iteration on the device (pointers as integers); returns the steps launched.");
}

#else
#include "frechet/polar_cpu.h"

namespace {

using F64 = py::array_t<double, py::array::c_style>;
using U8 = py::array_t<uint8_t, py::array::c_style>;
using I32 = py::array_t<int32_t, py::array::c_style>;

template <class A>
void need(const A& a, int64_t n, const char* name) {
  if (a.size() != n) throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(n) + " elements, got " + std::to_string(a.size()));
}

py::tuple schedule_py(double ell0, int n) {
  F64 a(n), b(n), ell(n), floor(n);
  ums::frechet::polar_schedule(ell0, n, a.mutable_data(), b.mutable_data(), ell.mutable_data(),
                               floor.mutable_data());
  return py::make_tuple(a, b, ell, floor);
}

void step_py(F64 X, F64 XG, F64 M, double a, double b, U8 active, F64 terms, int threads) {
  const int64_t batch = active.size();
  const int64_t mk = batch ? X.size() / batch : 0;
  need(X, batch * mk, "X");
  need(XG, batch * mk, "XG");
  need(M, batch * mk, "M");
  need(terms, 2 * batch, "terms");
  double* x = X.mutable_data();
  const double* xg = XG.data();
  const double* m = M.data();
  const uint8_t* act = active.data();
  double* tr = terms.mutable_data();
  py::gil_scoped_release nogil;
  ums::frechet::polar_step_cpu(batch, mk, x, xg, m, a, b, act, tr, threads);
}

void check_py(F64 terms, F64 base, F64 alpha, double k, double ell, double floor, double rtol,
              F64 floor_abs, int step, U8 active, F64 t_out, F64 bound_out, I32 iters) {
  const int64_t batch = active.size();
  need(terms, 2 * batch, "terms");
  for (auto* a : {&base, &alpha, &floor_abs, &t_out, &bound_out}) need(*a, batch, "per-problem array");
  need(iters, batch, "iters");
  ums::frechet::polar_check_cpu(batch, terms.data(), base.data(), alpha.data(), k, ell, floor, rtol,
                                floor_abs.data(), step, active.mutable_data(), t_out.mutable_data(),
                                bound_out.mutable_data(), iters.mutable_data());
}

// The per-element and per-problem functions one by one, for the tests.
py::tuple terms_py(double x, double xg, double m) {
  const auto t = ums::frechet::polar_terms(x, xg, m);
  return py::make_tuple(t.t, t.s);
}

}  // namespace

void bind_frechet(py::module_& m) {
  m.def("polar_schedule", &schedule_py, py::arg("ell0"), py::arg("n"),
        "(a, b, ell, floor) of the first n steps of the polar iteration for the floor ell0.");
  m.def("polar_step", &step_py, py::arg("X").noconvert(), py::arg("XG"), py::arg("M"), py::arg("a"), py::arg("b"),
        py::arg("active"), py::arg("terms").noconvert(), py::arg("threads"),
        "Epilogue of one step for a batch: X <- a X - b XG in place, terms = (t, s) per problem.");
  m.def("polar_check", &check_py, py::arg("terms"), py::arg("base"), py::arg("alpha"), py::arg("k"),
        py::arg("ell"), py::arg("floor"), py::arg("rtol"), py::arg("floor_abs"), py::arg("step"),
        py::arg("active").noconvert(), py::arg("t_out").noconvert(), py::arg("bound_out").noconvert(),
        py::arg("iters").noconvert(), "Stopping test of one step for a batch (clears active where converged).");
  m.def("polar_update", &ums::frechet::polar_update, py::arg("a"), py::arg("b"), py::arg("x"),
        py::arg("xg"), "One element of a step: a x - b xg.");
  m.def("polar_terms", &terms_py, py::arg("x"), py::arg("xg"), py::arg("m"),
        "One element's share (t, s) of the certificate's traces.");
  m.def("polar_error_bound", &ums::frechet::polar_error_bound, py::arg("s"), py::arg("alpha"),
        py::arg("k"), py::arg("ell"), py::arg("floor"),
        "Bound on the nuclear norm's missing part (negative: not certifiable yet).");
  m.def("polar_converged", &ums::frechet::polar_converged, py::arg("base"), py::arg("t"),
        py::arg("bound"), py::arg("rtol"), py::arg("floor_abs"),
        "The stopping test of one problem.");
}
#endif
