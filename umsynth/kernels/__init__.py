"""The one home of umsynth's compiled calls and their plumbing (a map; nothing imported here).

- :mod:`~umsynth.kernels.arrays`: numpy / torch / CuPy plumbing (host views, GPU pointers and
  streams, allocation in the caller's framework) and :func:`~umsynth.kernels.arrays.cuda_module`,
  the one gate to ``umsynth._cuda`` (:class:`~umsynth.kernels.arrays.CudaUnavailableError`).
- :mod:`~umsynth.kernels.config`: thread caps, CUDA status, :func:`~umsynth.show_config`.
- :mod:`~umsynth.kernels.slic`: the SLIC launchers (CPU, CUDA, scikit-image-exact reference)
  and :class:`~umsynth.kernels.slic.SlicParams`, the C++ ``Params`` passed by name.
- :mod:`~umsynth.kernels.polar`: the polar iteration for nuclear norms (CPU and CUDA).
- :mod:`~umsynth.kernels.frechet_device`: the Fréchet distance on a GPU.
- :mod:`~umsynth.kernels.reference`: plain-numpy statements of the kernels, for tests.
- :mod:`~umsynth.kernels.original`: the original SemiCS2 ``run()``, a baseline for UMs.
- :mod:`~umsynth.kernels.radiomics`: the texture-matrix counting kernels of
  :mod:`umsynth.radiomics` (co-occurrence, run-length, size-zone, dependence, neighbourhood).
- :mod:`~umsynth.kernels.radiomics_reference`: plain-numpy statements of those matrices, for tests.

The public functions (umsynth.masks, umsynth.frechet, umsynth.stats) validate and document;
the modules here only turn validated input into the kernels' arguments. They may import
``umsynth._cpu``, ``umsynth._cuda`` (through ``cuda_module``), umsynth.covariance and each
other, nothing above.
"""
