"""Fuzzing the kernel-facing API: every odd input ends in the right answer or a clear error.

Byte orders, subnormal and huge values, every dtype, empty and degenerate shapes, for
slic, unsupervised_mask, frechet_distance and FeatureStats. The calls run in a child
process with a timeout, many per child: a hang (the kernels release the GIL) or a crash
fails the test and names the case, instead of stopping the run.

Each case is a line of Python run in the child with ``np``, ``umsynth`` and the helpers
of ``_PRELUDE`` in scope. Its outcome must be:

- ``"ok"``: it returns, and whatever it asserts holds (results equal to the same values
  in native order, to the exact rescaled problem, or to scikit-image);
- an exception name (``"ValueError"``, ``"TypeError"``): raised, with a message that
  names the argument given with the case.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Seconds per child: every case is small (64 x 64 images at most); a hang takes all of it.
_TIMEOUT = 60

_PRELUDE = textwrap.dedent('''
    import json, sys, traceback
    import numpy as np
    import umsynth
    from umsynth import FeatureStats, frechet_distance, frechet_distance_features

    rng = np.random.default_rng(0)
    GREY = (rng.random((40, 44)) * 200 + 10)

    def same_slic(a, b, **kw):
        """slic of two arrays holding the same values gives the same labels (both algorithms)."""
        for alg in ("fast", "reference"):
            la = umsynth.slic(a, n_segments=12, algorithm=alg, **kw)
            lb = umsynth.slic(b, n_segments=12, algorithm=alg, **kw)
            assert np.array_equal(la, lb), alg

    def same_um(a, b):
        ua, la = umsynth.unsupervised_mask(a, n_segments=12, return_labels=True)
        ub, lb = umsynth.unsupervised_mask(b, n_segments=12, return_labels=True)
        assert np.array_equal(ua, ub) and np.array_equal(la, lb)

    def fd_pair(d=5):
        x = rng.standard_normal((30, d)); y = rng.standard_normal((25, d)) + 0.5
        return x, y, (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
''')

_DRIVER = textwrap.dedent('''
    for name, code in json.loads(sys.stdin.read()):
        print("START " + name, flush=True)
        try:
            exec(code, dict(globals()))
            out = {"name": name, "outcome": "ok", "msg": ""}
        except AssertionError as exc:
            out = {"name": name, "outcome": "AssertionError",
                   "msg": traceback.format_exc(limit=3)[-600:]}
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            out = {"name": name, "outcome": type(exc).__name__, "msg": str(exc)[:400]}
        print("RESULT " + json.dumps(out), flush=True)
''')


def _run(cases):
    """Run the cases in one child; {name: (outcome, message)}. A hang or crash fails."""
    env = {**os.environ, "UMSYNTH_NUM_THREADS": "2"}
    payload = json.dumps([(name, code) for name, code, _ in cases])
    try:
        proc = subprocess.run([sys.executable, "-c", _PRELUDE + _DRIVER], input=payload,
                              capture_output=True, text=True, timeout=_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        started = [ln[6:] for ln in out.splitlines() if ln.startswith("START ")]
        pytest.fail(f"hang: no result within {_TIMEOUT} s; last case started: "
                    f"{started[-1] if started else '(none)'}")
    lines = proc.stdout.splitlines()
    results = {}
    for ln in lines:
        if ln.startswith("RESULT "):
            r = json.loads(ln[7:])
            results[r["name"]] = (r["outcome"], r["msg"])
    if proc.returncode != 0:
        started = [ln[6:] for ln in lines if ln.startswith("START ")]
        pytest.fail(f"child died (exit status {proc.returncode}) in case "
                    f"{started[-1] if started else '(none)'}:\n{proc.stderr[-2000:]}")
    return results


def _check(cases):
    results = _run(cases)
    bad = []
    for name, _, want in cases:
        outcome, msg = results.get(name, ("missing", ""))
        kind, _, word = want.partition(":")
        if outcome != kind or (word and word.lower() not in msg.lower()):
            bad.append(f"{name}: expected {want}, got {outcome}: {msg}")
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------- byte orders


_ORDERS = [
    (f"slic_{dt}", f"a = GREY.astype('<{dt}'); same_slic(a, a.astype('>{dt}'))", "ok")
    for dt in ("f4", "f8", "u2", "i2", "i4", "u4", "i8", "f2")
] + [
    (f"um_{dt}", f"a = GREY.astype('<{dt}'); same_um(a, a.astype('>{dt}'))", "ok")
    for dt in ("f4", "f8", "u2", "i2", "i4")
] + [
    ("slic_rgb_be", "a = rng.random((30, 32, 3)); "
     "same_slic(a, a.astype('>f8'), channel_axis=-1, convert2lab=True)", "ok"),
    ("slic_mask_be", "m = np.zeros((40, 44), '>u2'); m[5:30, 4:40] = 1; "
     "same_slic(GREY, GREY.astype('>f4').astype('<f8'), mask=m)", "ok"),
    ("slic_torch_from_be", "import torch; a = GREY.astype('>f4'); "
     "t = torch.from_numpy(a.astype(a.dtype.newbyteorder('='))); "
     "assert np.array_equal(umsynth.slic(t, n_segments=9).numpy(), umsynth.slic(a, n_segments=9))",
     "ok"),
    ("binding_refuses_be", "from umsynth import _cpu; a = np.zeros((1, 8, 8, 1), '>f4'); "
     "_cpu.slic_fast(image=a, mask=None, grid=np.array([0,1,1,2,4,2,2,4,2], np.int32), N=1, "
     "D=1, H=8, W=8, C=1, mode=0, wz=1., wy=1., wx=1., cw=1., max_iter=2, "
     "enforce_connectivity=False, min_size=0, start_label=1, um_step=0, slic_zero=False, "
     "labels=np.empty((1, 1, 8, 8), np.int64), um=None, threads=1)", "ValueError:byte order"),
    ("frechet_be", "x, y, (m1, s1, m2, s2) = fd_pair(); "
     "assert frechet_distance(m1.astype('>f8'), s1.astype('>f8'), m2.astype('>f4'), "
     "s2.astype('>f8')) == frechet_distance(m1, s1, m2.astype('f4'), s2)", "ok"),
    ("frechet_features_be", "x, y, _ = fd_pair(); "
     "assert frechet_distance_features(x.astype('>f8'), y) == frechet_distance_features(x, y)",
     "ok"),
    ("stats_be", "x, y, _ = fd_pair(); a = FeatureStats(5).update(x.astype('>f8')); "
     "b = FeatureStats(5).update(x); assert np.array_equal(a.cov, b.cov)", "ok"),
]


def test_byte_orders():
    _check(_ORDERS)


# ----------------------------------------------------------------- value ranges


def _scaled(code_factor, k):
    # the same image times a power of two: exactly the same rescaled problem
    return f"a = rng.random((48, 50)); b = a * {code_factor}; same_slic(a, b); same_um(a, b)"


_RANGES = [
    ("subnormal_range", "x = rng.random((64, 64)) * 1e-310; "
     "same_slic(x, x * 2.0 ** 1000 * 2.0 ** 30); same_um(x, x * 2.0 ** 1000 * 2.0 ** 30)", "ok"),
    ("smallest_subnormals", "x = rng.integers(0, 4, (32, 32)) * 5e-324; "
     "same_um(x, x * 2.0 ** 1000 * 2.0 ** 74)", "ok"),
    ("huge_range", "x = (rng.random((48, 40)) * 2 - 1) * 1.7e308; same_um(x, x * 2.0 ** -1000)",
     "ok"),
    ("near_max_offset", "x = 1.7e308 - rng.random((40, 40)) * 1e300; umsynth.slic(x, n_segments=9)", "ok"),
    ("f4_subnormal", "x = (rng.random((40, 40)) * 1e-44).astype(np.float32); "
     "umsynth.unsupervised_mask(x, n_segments=9)", "ok"),
    ("f4_max", "x = (rng.random((40, 40)) * 3.4e38).astype(np.float32); same_um(x, x)", "ok"),
    ("masked_subnormal", "x = rng.random((40, 40)); x[:20] = 1e300; x[20:] *= 1e-310; "
     "m = np.zeros((40, 40), bool); m[20:] = True; umsynth.slic(x, n_segments=8, mask=m, sigma=1)",
     "ok"),
    ("lab_subnormal", "x = rng.random((40, 40)) * 1e-315; "
     "umsynth.slic(x, n_segments=9, intensity='lab')", "ok"),
    ("slico_subnormal", "x = rng.random((40, 40)) * 1e-315; "
     "umsynth.slic(x, n_segments=9, slic_zero=True)", "ok"),
    ("scale_2^500", _scaled("2.0 ** 500", 500), "ok"),
    ("scale_2^-1000", _scaled("2.0 ** -1000", -1000), "ok"),
    ("constant", "umsynth.slic(np.full((20, 20), 7.5), n_segments=4); "
     "umsynth.unsupervised_mask(np.full((20, 20), 1e-320), n_segments=4)", "ok"),
    ("nan", "umsynth.slic(np.full((8, 8), np.nan), n_segments=2)", "ValueError:NaN"),
    ("inf", "x = GREY.copy(); x[0, 0] = np.inf; umsynth.unsupervised_mask(x)", "ValueError:Inf"),
    ("fd_huge", "x, y, (m1, s1, m2, s2) = fd_pair(); k = 1e150; "
     "r = frechet_distance(m1 * k, s1 * k * k, m2 * k, s2 * k * k) / (k * k); "
     "assert abs(r / frechet_distance(m1, s1, m2, s2) - 1) < 1e-9", "ok"),
    ("fd_tiny", "x, y, (m1, s1, m2, s2) = fd_pair(); k = 2.0 ** -400; "
     "r = frechet_distance(m1 * k, s1 * k * k, m2 * k, s2 * k * k) / (k * k); "
     "assert abs(r / frechet_distance(m1, s1, m2, s2) - 1) < 1e-9", "ok"),
    ("fd_overflow", "x, y, (m1, s1, m2, s2) = fd_pair(); "
     "frechet_distance(m1 * 1e300, s1, -m2 * 1e300, s2)", "ValueError:float64"),
    ("fd_subnormal_cov", "frechet_distance(np.zeros(3), np.eye(3) * 5e-324, np.zeros(3), np.eye(3))",
     "ok"),
    ("fd_features_huge", "x, y, _ = fd_pair(); k = 1e120; "
     "r = frechet_distance_features(x * k, y * k) / (k * k); "
     "assert abs(r / frechet_distance_features(x, y) - 1) < 1e-9", "ok"),
    ("stats_overflow", "FeatureStats(5).update(rng.standard_normal((4, 5)) * 1e200)",
     "ValueError:overflows"),
    ("stats_huge_ok", "s = FeatureStats(5).update(rng.standard_normal((8, 5)) * 1e150); "
     "t = FeatureStats(5).update(rng.standard_normal((8, 5)) * 1e150); "
     "import umsynth.frechet as f; assert f.frechet_distance_from_stats(s, t) > 0", "ok"),
    ("fd_eps", "x, y, a = fd_pair(); assert frechet_distance(*a, eps=1e-6) == frechet_distance(*a)",
     "ok"),
]


def test_value_ranges():
    _check(_RANGES)


# ----------------------------------------------------------------- dtypes


_DTYPES = [
    (f"slic_{dt}", f"a = (GREY).astype('{dt}'); l = umsynth.slic(a, n_segments=9); "
     f"assert l.shape == a.shape and l.min() == 1", "ok")
    for dt in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8", "float128")
] + [
    (f"um_{dt}", f"a = GREY.astype('{dt}'); u = umsynth.unsupervised_mask(a, n_segments=9); "
     f"assert u.dtype == np.uint8 and u.shape == a.shape", "ok")
    for dt in ("u1", "u2", "i2", "i8", "f2", "f4", "f8")
] + [
    ("slic_bool", "umsynth.slic(GREY > 100, n_segments=4)", "TypeError:boolean"),
    ("slic_complex", "umsynth.slic(GREY.astype(complex), n_segments=4)", "TypeError:dtype"),
    ("slic_object", "umsynth.slic(GREY.astype(object), n_segments=4)", "TypeError:dtype"),
    ("slic_str", "umsynth.slic(GREY.astype(str), n_segments=4)", "TypeError:dtype"),
    ("slic_datetime", "umsynth.slic(np.zeros((8, 8), 'M8[s]'), n_segments=4)", "TypeError:dtype"),
    ("um_complex", "umsynth.unsupervised_mask(GREY.astype(complex))", "TypeError:dtype"),
    ("fd_complex", "frechet_distance(np.zeros(2), np.eye(2, dtype=complex), np.zeros(2), np.eye(2))",
     "TypeError:sigma1"),
    ("fd_int", "assert frechet_distance(np.zeros(2, int), 4 * np.eye(2, dtype=np.int8), "
     "np.ones(2, np.uint16), np.eye(2, dtype=bool)) == 4.0", "ok"),
    ("stats_f16", "FeatureStats(3).update(np.ones((4, 3), np.float16))", "ok"),
    ("stats_str", "FeatureStats(3).update(np.ones((4, 3)).astype(str))", "TypeError:features"),
    ("stats_dim_float", "FeatureStats(2.7)", "TypeError:dim"),
    ("stats_dim_zero", "FeatureStats(0)", "ValueError:dim"),
]


def test_dtypes():
    _check(_DTYPES)


# ----------------------------------------------------------------- shapes and limits


_SHAPES = [
    ("slic_1x1", "assert umsynth.slic(np.ones((1, 1)), n_segments=1).tolist() == [[1]]", "ok"),
    ("slic_1xN", "umsynth.slic(GREY[:1], n_segments=5)", "ok"),
    ("slic_Nx1", "umsynth.slic(GREY[:, :1], n_segments=5)", "ok"),
    ("slic_1x1x1", "umsynth.slic(np.ones((1, 1, 1)), n_segments=3)", "ok"),
    ("slic_thin_volume", "umsynth.slic(rng.random((1, 2, 40)), n_segments=7, slic_zero=True)", "ok"),
    ("slic_every_pixel", "l = umsynth.slic(GREY[:6, :7], n_segments=10 ** 12); "
     "assert np.array_equal(l.ravel(), np.arange(1, 43))", "ok"),
    ("um_every_pixel", "umsynth.unsupervised_mask(GREY[:5, :5], n_segments=10 ** 30)", "ok"),
    ("slic_empty", "umsynth.slic(np.zeros((0, 5)), n_segments=1)", "ValueError:empty"),
    ("slic_empty_channels", "umsynth.slic(np.zeros((5, 5, 0)), n_segments=1, channel_axis=-1)",
     "ValueError:empty"),
    ("um_empty_batch", "umsynth.unsupervised_mask(np.zeros((0, 8, 8)))", "ValueError:empty"),
    ("slic_0d", "umsynth.slic(np.float64(3.0), n_segments=1)", "ValueError:dimensions"),
    ("slic_5d", "umsynth.slic(np.zeros((2, 2, 2, 2, 2)), n_segments=1)", "ValueError:dimensions"),
    ("slic_strided", "a = GREY[::-2, ::3]; same_slic(a, np.ascontiguousarray(a))", "ok"),
    ("slic_colour_hint", "umsynth.slic(rng.random((20, 20, 3)), n_segments=4)",
     "ValueError:scikit-image"),
    ("slic_huge_shape", "a = np.lib.stride_tricks.as_strided(np.zeros(1), (70000, 70000), (0, 0)); "
     "umsynth.slic(a, n_segments=4)", "ValueError:pixels"),
    ("um_huge_shape", "a = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (1, 50000, 50000), "
     "(0, 0, 0)); umsynth.unsupervised_mask(a)", "ValueError:pixels"),
    ("slic_many_channels", "a = np.lib.stride_tricks.as_strided(np.zeros(1), (4, 4, 5000), (0, 0, 0)); "
     "umsynth.slic(a, n_segments=2, channel_axis=-1)", "ValueError:channels"),
    ("threads_50000", "umsynth.slic(GREY, n_segments=4, threads=50000)", "ValueError:threads"),
    ("threads_100000", "umsynth.unsupervised_mask(GREY, threads=100000)", "ValueError:threads"),
    ("threads_zero", "umsynth.slic(GREY, n_segments=4, threads=0)", "ValueError:threads"),
    ("threads_float", "umsynth.slic(GREY, n_segments=4, threads=2.5)", "TypeError:threads"),
    ("set_num_threads", "umsynth.set_num_threads(100000)", "ValueError:set_num_threads"),
    ("env_threads", "import os; os.environ['UMSYNTH_NUM_THREADS'] = '50000'\n"
     "try:\n    umsynth.slic(GREY, n_segments=4)\n"
     "finally:\n    os.environ['UMSYNTH_NUM_THREADS'] = '2'", "ValueError:UMSYNTH_NUM_THREADS"),
    ("threads_1024", "umsynth.slic(GREY, n_segments=4, threads=1024)", "ok"),
    ("compactness_1e-20", "umsynth.slic(GREY, n_segments=4, compactness=1e-20)",
     "ValueError:compactness"),
    ("compactness_1e-200", "umsynth.unsupervised_mask(GREY, compactness=1e-200)",
     "ValueError:compactness"),
    ("compactness_1e-10", "l = umsynth.slic(GREY, n_segments=4, compactness=1e-10); assert l.min() == 1",
     "ok"),
    ("compactness_huge", "umsynth.slic(GREY, n_segments=4, compactness=1e300, slic_zero=True)", "ok"),
    ("max_iter_huge", "umsynth.slic(GREY, n_segments=4, max_num_iter=2 ** 40)",
     "ValueError:max_num_iter"),
    ("min_size_huge", "l = umsynth.slic(GREY, n_segments=9, min_size_factor=1e300); "
     "assert len(np.unique(l)) == 1", "ok"),
    ("max_size_huge", "umsynth.slic(GREY, n_segments=9, max_size_factor=1e300, algorithm='reference')",
     "ok"),
    ("n_segments_huge_int", "umsynth.slic(GREY, n_segments=2 ** 80)", "ok"),
    ("fd_empty", "frechet_distance(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0)))",
     "ok"),
    ("fd_mismatch", "frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))",
     "ValueError:sigma1"),
    ("fd_features_one_row", "frechet_distance_features(np.ones((1, 3)), np.ones((4, 3)))",
     "ValueError:x1"),
    ("stats_wrong_dim", "FeatureStats(3).update(np.ones((2, 4)))", "ValueError:features"),
    ("stats_empty_batch", "s = FeatureStats(3).update(np.ones((0, 3))); assert s.n == 0", "ok"),
]


def test_shapes_and_limits():
    _check(_SHAPES)


def test_a_hang_is_reported_not_waited_for(monkeypatch):
    """The harness itself: a case that never returns fails the test within the timeout."""
    monkeypatch.setattr(sys.modules[__name__], "_TIMEOUT", 5)
    with pytest.raises(pytest.fail.Exception, match="hang.*sleeper"):
        _run([("sleeper", "import time; time.sleep(60)", "ok")])
