"""Files: the one atomic writer, the one image reader, and the suffixes umsynth recognises.

Every output of umsynth is written through :func:`atomic_write` (a temporary name beside the
destination, then a rename), so a reader never sees half a file and a crash leaves the old
file as it was. Outputs get the usual permissions, ``0o666`` less the process umask (0644
under the common umask 022), as ``open()`` would give them.

Every image file is read through :func:`read_image`, which returns one of three views of
the pixels (see its ``kind``). This module needs only numpy (Pillow when an image is read);
it sits below :mod:`umsynth.data` and :mod:`umsynth.cli`.

Files written by others are read defensively: :func:`read_npz` never unpickles and bounds
what it allocates by the file's size, :func:`check_name` refuses names read from a file
that would not be plain file names, and :func:`path_inside` keeps paths read from a
manifest inside its folder. :func:`output_lock` keeps two umsynth processes from writing
one output folder at once, and removes the temporary files of killed processes.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
import warnings
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "TEMP_PREFIX", "LOCK_NAME", "ImageReadError", "OutputBusyError",
           "atomic_write", "atomic_write_text", "atomic_write_bytes", "short_reason", "is_nifti", "nifti_stem",
           "list_images", "read_image", "read_grey", "write_png", "check_name", "path_inside", "read_npz",
           "NpzArrays", "clean_stale_temps", "output_lock"]

#: suffixes (lower case) of the image files umsynth reads from folders
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: suffixes (lower case) of NIfTI volumes, the compressed one first
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: start of every temporary file name (followed by the writer's pid)
TEMP_PREFIX = ".umsynth-tmp-"
#: name of the lock file in an output folder held by :func:`output_lock`
LOCK_NAME = ".umsynth.lock"

# read_image kinds -> what they return
IMAGE_KINDS = ("unit", "grey", "values")
_GREY_MODES = ("L", "1", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "LAB", "HSV", "PA")
_VALUE_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L")


class ImageReadError(OSError, ValueError):
    """An image file that cannot be opened or decoded.

    Both an ``OSError`` (what the data readers raise for damaged files) and a ``ValueError``
    (what the feature and metric code catch), like :class:`io.UnsupportedOperation`.
    """


# ----------------------------------------------------------------------------- writing


def _new_file(dest: Path, suffix: str) -> Path:
    """Create an empty, unused temporary file beside ``dest`` with mode 0o666 less the umask.

    Its name, ``.umsynth-tmp-<pid>-<random>-<dest name><suffix>``, says which process
    wrote it, so that :func:`clean_stale_temps` can remove it once that process is gone.
    """
    for _ in range(100):
        tmp = dest.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{dest.name[:80]}{suffix}"
        try:
            # O_EXCL: never reuse another writer's name; mode 0o666 goes through the umask
            # (tempfile.mkstemp would force 0600 on every output)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{dest}: no free temporary name beside it")  # pragma: no cover


def atomic_write(dest, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` on a new temporary name beside `dest`, then rename it to `dest`.

    Parameters
    ----------
    dest : path-like
        The file to write; its folder must exist.
    write : callable
        Writes the whole file to the path it is given (a ``str``).
    suffix : str, optional
        End of the temporary name (some writers pick the format from it, e.g. ``".npz"``,
        ``".png"``, ``".nii.gz"``).

    Notes
    -----
    Readers never see a half-written file; on any error the temporary file is removed and
    an existing `dest` is left as it was. The new file has mode ``0o666 & ~umask``.
    """
    dest = Path(dest)
    tmp = _new_file(dest, suffix)
    mode = os.stat(tmp).st_mode & 0o7777  # what open() gives under this umask
    try:
        write(str(tmp))
        if os.stat(tmp).st_mode & 0o7777 != mode:  # a writer that made its own file (safetensors: 0600)
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(dest, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `dest` atomically (see :func:`atomic_write`)."""
    atomic_write(dest, lambda tmp: Path(tmp).write_text(text, encoding=encoding))


def atomic_write_bytes(dest, data: bytes) -> None:
    """Write `data` to `dest` atomically (see :func:`atomic_write`)."""
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))


def write_png(path, array) -> None:
    """Write a 2D uint8 or uint16 array as a grey PNG, or an (H, W, 3) uint8 array as RGB, atomically.

    Raises
    ------
    ValueError
        Naming the file, for any other shape or dtype.
    """
    from PIL import Image

    a = np.asarray(array)
    grey = a.ndim == 2 and a.dtype in (np.uint8, np.uint16)
    rgb = a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8
    if not (grey or rgb):
        raise ValueError(f"{path}: write_png needs a 2D uint8 or uint16 array (or (H, W, 3) uint8), "
                         f"got {a.dtype} of shape {a.shape}")
    img = Image.fromarray(np.ascontiguousarray(a))
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"), suffix=".png")


# ----------------------------------------------------------------------------- names


def is_nifti(path) -> bool:
    """Whether `path`'s name ends in a NIfTI suffix (any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path) -> str | None:
    """`path`'s name without its NIfTI suffix (``a.nii.gz`` -> ``a``); None if it is not NIfTI."""
    name = Path(path).name
    for s in NIFTI_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return None


def list_images(folder) -> list[Path]:
    """The image files directly in `folder` (not in sub-folders), sorted by name.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    list of pathlib.Path
        Files ending in one of :data:`IMAGE_SUFFIXES` (any case); hidden files are left out.

    Raises
    ------
    FileNotFoundError
        If `folder` is not a folder.
    ValueError
        If it holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(e[1:] for e in IMAGE_SUFFIXES)}) found in folder {folder}")
    return files


# names and paths read from files: a file umsynth reads may come from anyone
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


def check_name(name, what: str) -> str:
    """`name` if it can be used inside a file name; ValueError naming `what` otherwise.

    For names read from files (an extractor's name in a suite or statistics folder) that
    become parts of file names: letters, digits, ``_``, ``.``, ``+`` and ``-``, 1 to 128
    characters, not starting with ``.`` or ``-``, and no ``..``. Path separators, ``@``
    (it separates name and scale in statistics file names), spaces and control
    characters are refused.
    """
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what}: {name!r} is not a safe name (1 to 128 letters, digits, '_', '.', '+' "
                         "or '-', not starting with '.' or '-', no '..')")
    return name


def path_inside(folder, rel, what: str) -> Path:
    """``folder / rel`` for a relative path `rel` read from a manifest in `folder`.

    Raises
    ------
    ValueError
        Naming `what`, when `rel` is not a non-empty relative path, has a ``..`` part, a
        drive or a backslash, or leads (through a symbolic link) out of `folder`.
    """
    bad = not isinstance(rel, str) or not rel.strip() or "\\" in rel or "\0" in rel
    if not bad:
        p = PurePosixPath(rel)
        bad = p.is_absolute() or bool(PureWindowsPath(rel).drive) or ".." in p.parts
    if bad:
        raise ValueError(f"{what}: {rel!r} is not a relative path inside {folder}")
    full = Path(folder) / rel
    try:
        inside = full.resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError):  # a symbolic link loop
        inside = False
    if not inside:
        raise ValueError(f"{what}: {rel!r} leads out of {folder}")
    return full


# ----------------------------------------------------------------------------- reading


class _Unsupported(Exception):
    """A decoded image whose pixel type has no meaning for the requested kind."""


def short_reason(exc: BaseException) -> str:
    """``exc`` as a short reason (its type name when the message is empty)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _as_unit(im) -> np.ndarray:
    mode = im.mode
    if mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    if mode.startswith("I;16") or mode == "I":
        return np.clip(np.asarray(im).astype(np.float32) / 65535.0, 0.0, 1.0)
    if mode == "F":
        raise _Unsupported("float pixels have no known scale; save it as 8 or 16 bit")
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _as_grey(im) -> np.ndarray:
    if im.mode in _GREY_MODES:
        return np.asarray(im.convert("L"), dtype=np.uint8)
    arr = np.asarray(im)
    if arr.dtype.kind not in "iu":
        raise _Unsupported(f"unsupported pixel type {arr.dtype}; save the image as 8- or 16-bit")
    if arr.ndim != 2 or arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise _Unsupported(f"unsupported image (mode {im.mode}, shape {arr.shape}); save it as 8- or "
                           "16-bit grey")
    # exact rounding of v * 255 / 65535 in integers
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _as_values(im) -> np.ndarray:
    arr = np.asarray(im)
    if im.mode not in _VALUE_MODES or arr.ndim != 2:
        raise _Unsupported(f"image has mode {im.mode} (shape {arr.shape}); expected numbers stored as "
                           "an 8- or 16-bit grey or palette image")
    return arr


_CONVERT = {"unit": _as_unit, "grey": _as_grey, "values": _as_values}


def read_image(path, kind: str = "unit") -> np.ndarray:
    """Read one image file (PNG, TIFF, JPEG, BMP; a multi-page file gives its first page).

    Parameters
    ----------
    path : path-like
    kind : {"unit", "grey", "values"}, optional
        What to return:

        ``"unit"`` (default)
            float32 in [0, 1], shape (H, W) for grey or (H, W, 3) for colour: 8-bit images
            divided by 255, 16-bit (and 32-bit integer) ones by 65535; alpha dropped,
            palette images as RGB. For feature extractors.
        ``"grey"``
            uint8 (H, W): 8-bit grey as stored, colour through ITU-R 601 luma (alpha
            ignored), 16-bit grey scaled by 255/65535 and rounded. What ``umsynth masks``
            and the montage readers use.
        ``"values"``
            The stored numbers of a grey or palette image (uint8, uint16 or int32),
            unconverted: for label maps, UMs and superpixel labels, where values are
            numbers, not colours. Colour images are refused.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    FileNotFoundError
        No such file.
    ImageReadError
        (an ``OSError`` and a ``ValueError``) The file cannot be opened or decoded.
    ValueError
        The pixels have no meaning for `kind` (float pixels; colour for ``"values"``).
        Every message starts with the file's path.
    """
    if kind not in _CONVERT:
        raise ValueError(f"kind must be one of {', '.join(IMAGE_KINDS)}, got {kind!r}")
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        with warnings.catch_warnings():
            # Pillow warns about damaged metadata and large images it then reads: one line per
            # file is the reader's to give (a batch reports its bad files itself)
            warnings.filterwarnings("ignore", module="PIL")
            with Image.open(p) as im:
                im.load()
                return _CONVERT[kind](im)
    except _Unsupported as exc:
        raise ValueError(f"{p}: {exc}") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError ...
        raise ImageReadError(f"{p}: cannot read image ({short_reason(exc)})") from exc


def read_grey(path) -> np.ndarray:
    """Read an image file as a 2D uint8 grey array: :func:`read_image` with ``kind="grey"``."""
    return read_image(path, "grey")


# ----------------------------------------------------------------------------- .npz files

# deflate cannot shrink data by more than about 1032:1; an entry claiming more is forged
_DEFLATE_RATIO = 1100


class NpzArrays(dict):
    """The arrays of an .npz file, by name (see :func:`read_npz`).

    A missing name raises ValueError naming the file, not KeyError; ``files`` lists the
    names and ``with`` works, as for numpy's ``NpzFile``.
    """

    def __init__(self, arrays: dict, path: Path, what: str) -> None:
        super().__init__(arrays)
        self.path, self.what = path, what

    @property
    def files(self) -> list[str]:
        return list(self)

    def __missing__(self, key):
        raise ValueError(f"{self.path}: this {self.what} has no {key!r} entry (it has {', '.join(self) or 'none'})")

    def __enter__(self) -> "NpzArrays":
        return self

    def __exit__(self, *exc) -> None:
        return None


def _npz_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy entry of an open zip: header checked before its data is allocated or read."""
    fmt = np.lib.format
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        if dtype.hasobject:
            raise ValueError("it holds Python objects (pickled data), which umsynth never loads")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        limit = info.compress_size * (_DEFLATE_RATIO if info.compress_type != zipfile.ZIP_STORED else 1)
        if nbytes > min(info.file_size, limit):
            raise ValueError(f"its header claims {shape} {dtype} ({nbytes} bytes) but the entry holds "
                             f"{info.file_size} bytes")
        arr = np.empty(shape, dtype, order="F" if fortran else "C")  # aligned, as numpy.load gives
        buf, got = memoryview(arr.reshape(-1, order="A").view(np.uint8)) if nbytes else None, 0
        while got < nbytes:
            n = fh.readinto(buf[got:])
            if not n:
                raise ValueError(f"its data is truncated ({got} of {nbytes} bytes)")
            got += n
        fh.read(1)  # reach the end, where zipfile checks the CRC
    return arr


def read_npz(path, what: str = "file") -> NpzArrays:
    """Read every array of an .npz file (``numpy.savez``), refusing anything suspicious.

    Parameters
    ----------
    path : path-like
    what : str, optional
        What the file should be (``"statistics file"``), for messages.

    Returns
    -------
    NpzArrays
        A dict of name -> array (names without ``.npy``); a missing name raises ValueError.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Naming the file, when it is not a readable .npz (truncated, empty, damaged, a CRC
        error), holds pickled Python objects (never unpickled), or an entry's header claims
        more data than the entry holds (nothing of that size is allocated).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    arrays = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    try:
                        arrays[info.filename[:-4]] = _npz_entry(zf, info)
                    except ValueError as exc:
                        raise ValueError(f"entry {info.filename[:-4]!r}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"cannot read {what} {p}: {exc}") from None
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, OSError, NotImplementedError ...
        raise ValueError(f"cannot read {what} {p}: not a complete .npz file ({short_reason(exc)})") from None
    return NpzArrays(arrays, p, what)


# ----------------------------------------------------------------------------- output folders


class OutputBusyError(OSError):
    """An output folder (or file) that another running umsynth process holds."""


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (True when that cannot be told)."""
    if pid <= 0 or os.name == "nt":  # os.kill would end the process on Windows
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def _started_after(pid: int, t: float) -> bool:
    """Whether process `pid` started after time `t` (so a file from time `t` is not its own)."""
    try:  # Linux: start time in clock ticks after boot
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK") > t + 1.0
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return False


def _stale(pid: int, mtime: float) -> bool:
    """Whether a file that process `pid` wrote at `mtime` belongs to a process that is gone."""
    if pid == os.getpid():
        return False
    return not _pid_alive(pid) or _started_after(pid, mtime)  # the pid was reused since


def clean_stale_temps(folder, recursive: bool = True) -> list[Path]:
    """Remove the temporary files that killed umsynth processes left in `folder`.

    A temporary file (``.umsynth-tmp-<pid>-...``, see :func:`atomic_write`) is stale when
    process ``<pid>`` no longer runs on this machine, or started after the file was last
    written (its pid was reused). Files of running processes are left alone.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    removed = []
    for root, dirs, names in os.walk(folder):
        for name in names:
            m = re.match(re.escape(TEMP_PREFIX) + r"(\d+)-", name)
            if not m:
                continue
            p = Path(root) / name
            try:
                if _stale(int(m.group(1)), p.stat().st_mtime):
                    p.unlink()
                    removed.append(p)
            except OSError:  # gone already, or not ours to remove
                continue
        if not recursive:
            break
    return removed


_HELD: dict[str, list] = {}  # lock file -> [open file, depth], for re-entry in one process


def _lock_record(command: str) -> bytes:
    return (json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                        "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n").encode()


def _busy(lock: Path, target: Path) -> OutputBusyError:
    try:
        rec = json.loads(lock.read_text(encoding="utf-8"))
        who = f"umsynth {rec['command']}, pid {rec['pid']} on {rec['host']}, since {rec['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another umsynth process"
    return OutputBusyError(f"{target} is in use by another umsynth process ({who}); wait for it to end or "
                           f"choose another output (the lock is {lock})")


def _take_flock(lock: Path, target: Path, command: str):
    """The open lock file, locked with flock (released by the kernel when the process dies)."""
    import fcntl

    for _ in range(20):
        fh = open(lock, "a+b")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise _busy(lock, target) from None
        try:  # the holder before us may have removed the file after we opened it: retry
            same = os.path.samestat(os.fstat(fh.fileno()), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            fh.truncate(0)
            fh.write(_lock_record(command))
            fh.flush()
            return fh
        fh.close()
    raise _busy(lock, target)  # pragma: no cover


def _take_pidfile(lock: Path, target: Path, command: str):
    """Without flock (Windows): create the lock file exclusively; a dead owner's lock is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                rec = json.loads(lock.read_text(encoding="utf-8"))
                dead = rec["host"] == socket.gethostname() and _stale(int(rec["pid"]), lock.stat().st_mtime)
            except (OSError, ValueError, KeyError, TypeError):
                dead = False
            if not dead:
                raise _busy(lock, target) from None
            lock.unlink(missing_ok=True)
            continue
        fh = os.fdopen(fd, "wb")
        fh.write(_lock_record(command))
        fh.flush()
        return fh
    raise _busy(lock, target)


@contextmanager
def output_lock(path, command: str = "umsynth", *, file: bool = False):
    """Hold an output folder (or, with ``file=True``, an output file) for this process.

    Parameters
    ----------
    path : path-like
        The output folder (created if missing), or the output file.
    command : str, optional
        Recorded in the lock file, for the message another process gets.
    file : bool, optional
        `path` is a file: its lock is ``.<name>.umsynth.lock`` beside it, and stale
        temporary files are cleaned in its folder only (not below it).

    Raises
    ------
    OutputBusyError
        (an ``OSError``) If another running process holds `path`; its message names the
        holder (command, pid, host, start time).

    Notes
    -----
    The lock file (``.umsynth.lock`` in the folder) records the holder's pid; it is
    removed on exit, and so is the folder if this call created it and it stayed empty.
    Where ``fcntl.flock`` exists the kernel releases the lock when the holder dies, however
    it dies, so a killed run never blocks the next one; elsewhere a lock whose process no
    longer runs on this machine is taken over. On entry the stale temporary files of
    killed processes are removed (:func:`clean_stale_temps`). The
    same process may enter the lock again (nested).
    """
    target = Path(path)
    folder = target.parent if file else target
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / (f".{target.name}{LOCK_NAME}" if file else LOCK_NAME)
    key = os.path.realpath(lock)
    if key in _HELD and _HELD[key][2] == os.getpid():
        _HELD[key][1] += 1
    else:
        try:
            import fcntl  # noqa: F401
            fh = _take_flock(lock, target, command)
        except ImportError:
            fh = _take_pidfile(lock, target, command)
        _HELD[key] = [fh, 1, os.getpid()]
        clean_stale_temps(folder, recursive=not file)
    try:
        yield target
    finally:
        held = _HELD[key]
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            lock.unlink(missing_ok=True)  # while still locked: no one can have taken it meanwhile
            held[0].close()
            if created:  # a command that wrote nothing leaves no empty folder behind
                try:
                    folder.rmdir()
                except OSError:
                    pass
