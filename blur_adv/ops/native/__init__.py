"""The C++ blur loops for XLA:CPU (`blur_cpu.cc` here): built on first use, called through the FFI.

XLA:CPU has no fast per-example depthwise convolution, and its reductions do not vectorize, so the
two products a per-example blur needs (the blur itself and its gradient w.r.t. the kernels) run
here as plain C++ loops with contiguous inner loops, spread over XLA's intra-op thread pool.

The library is compiled once per source, compiler version, jaxlib and CPU (model and instruction
set flags, since it is built with -march=native) with the system C++ compiler (`$CXX`, else
`g++`) into `$BLUR_ADV_CACHE` (default `~/.cache/blur_adv`), atomically and world-readable, so
concurrent processes may race harmlessly and a cache can be shared. Without a compiler, or with
`BLUR_ADV_NATIVE=0`, it is simply unavailable: `available()` is False, `blur`'s `auto` rule uses
the pure-JAX strategies, and forcing `method="native"` raises with the reason. Only float32 and
CPU are served here; the strategy in `blur_strategies` falls back to pure JAX for the rest.
"""

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from absl import logging

SOURCE = pathlib.Path(__file__).with_name("blur_cpu.cc")
# FFI target name -> the handler symbol the library exports.
TARGETS = {"blur_adv_correlate": "BlurAdvCorrelate",
           "blur_adv_pad_correlate": "BlurAdvPadCorrelate",
           "blur_adv_pad_separable": "BlurAdvPadSeparable",
           "blur_adv_correlate_taps": "BlurAdvCorrelateTaps"}
# numpy.pad's boundary modes, as blur_cpu.cc's PadMode codes.
PAD_MODES = {"reflect": 1, "symmetric": 2, "edge": 3, "constant": 4, "wrap": 5}
FFI_HEADER = "xla/ffi/api/ffi.h"
# -march=native: the cache key includes the CPU's flags, so a cache shared across machines rebuilds.
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w"]


def compiler_name():
  return os.environ.get("CXX", "g++")


def cache_dir():
  return pathlib.Path(os.environ.get("BLUR_ADV_CACHE") or
                      pathlib.Path.home() / ".cache" / "blur_adv")


def _cpu_description():
  """The CPU's model and instruction-set lines (the model name alone spans generations)."""
  try:
    with open("/proc/cpuinfo") as info:
      lines = {line.split(":")[0].strip(): line for line in info
               if line.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")}
    return "".join(sorted(lines.values()))
  except OSError:
    return platform.processor()


def _compiler_version(compiler):
  result = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
  return result.stdout


def library_path(compiler):
  key = hashlib.sha256()
  for part in (SOURCE.read_bytes(), _compiler_version(compiler), " ".join(FLAGS),
               jaxlib.__version__, (pathlib.Path(jax.ffi.include_dir()) / FFI_HEADER).read_bytes(),
               _cpu_description(), platform.machine()):
    key.update(part if isinstance(part, bytes) else part.encode())
  return cache_dir() / f"blur_cpu_{key.hexdigest()[:16]}.so"


def build(compiler, target):
  """Compiles the source to `target` via a temporary file and an atomic rename."""
  target.parent.mkdir(parents=True, exist_ok=True)
  handle, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
  os.close(handle)
  try:
    command = [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", temporary]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
      raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    os.chmod(temporary, 0o644)  # mkstemp makes it private; a shared cache must be readable
    os.replace(temporary, target)
  finally:
    if os.path.exists(temporary):
      os.unlink(temporary)


@functools.cache
def _load():
  """Builds (if needed), loads and registers the library; returns None or why it is unavailable."""
  if os.environ.get("BLUR_ADV_NATIVE", "1") == "0":
    return "disabled by BLUR_ADV_NATIVE=0"
  compiler = compiler_name()
  if shutil.which(compiler) is None:
    return f"no C++ compiler {compiler!r} on PATH (set $CXX)"
  try:
    path = library_path(compiler)
    if not path.exists():
      logging.info("Building the native blur loops into %s", path)
      build(compiler, path)
    library = ctypes.cdll.LoadLibrary(str(path))
    for name, symbol in TARGETS.items():
      jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)),
                                  platform="cpu")
  except Exception as error:  # pylint: disable=broad-except  (any failure: fall back to pure JAX)
    logging.warning("Native blur loops unavailable, using pure JAX: %s", error)
    return str(error).splitlines()[0]
  return None


def unavailable_reason():
  """None when the loops are ready (building them on first call), else why not."""
  return _load()


def available():
  return _load() is None


def require():
  reason = _load()
  if reason is not None:
    raise ValueError(f"method 'native' is unavailable: {reason}")


# Leading axes are examples to the C++ side, so vmap can just add axes ("broadcast_all").
def correlate(padded, taps):
  """`out[n, i, j, c] = sum_{p,q} taps[n, p, q] * padded[n, i + p, j + q, c]`, float32, CPU.

  `taps` is `(N, kh, kw)`: square, or one row or column for a pass of a separable kernel.
  """
  batch, height_p, width_p, channels = padded.shape
  taps_height, taps_width = taps.shape[-2:]
  out = jax.ShapeDtypeStruct(
      (batch, height_p - taps_height + 1, width_p - taps_width + 1, channels), jnp.float32)
  return jax.ffi.ffi_call("blur_adv_correlate", out, vmap_method="broadcast_all")(padded, taps)


def pad_correlate(images, taps, padding, pad_height, pad_width):
  """`correlate(jnp.pad(images, ..., mode=padding), taps)` with the padding done in the loops."""
  batch, height, width, channels = images.shape
  taps_height, taps_width = taps.shape[-2:]
  out = jax.ShapeDtypeStruct((batch, height + 2 * pad_height - taps_height + 1,
                              width + 2 * pad_width - taps_width + 1, channels), jnp.float32)
  return jax.ffi.ffi_call("blur_adv_pad_correlate", out, vmap_method="broadcast_all")(
      images, taps, pad_mode=np.int64(PAD_MODES[padding]), pad_height=np.int64(pad_height),
      pad_width=np.int64(pad_width))


def pad_separable(images, column, row, padding, half):
  """`pad_correlate` with the taps `column (x) row` (each `(N, k)`), as two passes in one call."""
  out = jax.ShapeDtypeStruct(images.shape, jnp.float32)
  return jax.ffi.ffi_call("blur_adv_pad_separable", out, vmap_method="broadcast_all")(
      images, column, row, pad_mode=np.int64(PAD_MODES[padding]), pad_height=np.int64(half),
      pad_width=np.int64(half))


def correlate_taps(padded, cotangent):
  """`grad[n, p, q] = sum_{i,j,c} cotangent[n, i, j, c] * padded[n, i + p, j + q, c]`."""
  size = padded.shape[1] - cotangent.shape[1] + 1
  out = jax.ShapeDtypeStruct((padded.shape[0], size, size), jnp.float32)
  return jax.ffi.ffi_call("blur_adv_correlate_taps", out, vmap_method="broadcast_all")(
      padded, cotangent)
