"""Strategies behind `blur.blur`: each computes the "valid" convolution of padded images.

Every strategy maps `padded` `(B, H + k - 1, W + k - 1, C)` and kernels to `(B, H, W, C)` with

    out[b, i, j, c] = sum_{p, q} kernel[b, p, q] * padded[b, i + k - 1 - p, j + k - 1 - q, c]

(a true convolution: the kernel is flipped). Kernels are either dense, `(k, k)` shared or
`(B, k, k)` per example, or a `Separable` pair of 1-D factors. Strategies are bilinear in
(padded, kernels), use only jnp/lax (so they run unchanged on CPU, GPU and TPU), and compute in at
least float32; the caller casts back to the images' dtype. The conv and matmul ask for
`Precision.HIGHEST`: on CPU float32 is exact anyway, and on TPU the default would be bfloat16
passes, too coarse for kernel gradients.

  direct     XLA's grouped convolution (cuDNN/TPU native; slow on XLA:CPU, above all its gradient)
  fft        products of zero-padded real FFTs; cost nearly independent of k
  shift      k*k shifted multiply-adds fused into one loop; for small k
  separable  a row pass and a column pass per rank-1 term (2k taps per pixel)
  native     C++ loops through the XLA FFI (`ops.native`), float32 on CPU; pure JAX elsewhere
"shift" and "separable" use FFTs under differentiation (`fft_when_differentiated`); "native" has its
own VJP (reverse mode only).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from blur_adv.ops import native as native_lib


class Separable(NamedTuple):
  """A kernel given as 1-D factors: `kernel[..., p, q] = column[..., p] * row[..., q]`.

  `column` runs down the rows (vertical taps), `row` along the columns (horizontal taps). Each is
  `(k,)` shared by the batch or `(B, k)` per example. A NamedTuple, so it is a JAX pytree.
  """
  column: jax.Array
  row: jax.Array


def compute_dtype(dtype):
  """bfloat16/float16 are computed in float32 (FFTs need it, and sums of k*k taps lose bits)."""
  return jnp.promote_types(dtype, jnp.float32)


def dense(kernels):
  """The `(k, k)` or `(B, k, k)` kernel of a dense or `Separable` kernel."""
  if isinstance(kernels, Separable):
    return kernels.column[..., :, None] * kernels.row[..., None, :]
  return kernels


def pad_images(images, half, padding):
  """`(B, H, W, C)` images padded by `half` pixels on each side, numpy.pad's `padding` mode."""
  return jnp.pad(images, ((0, 0), (half, half), (half, half), (0, 0)), mode=padding)


def _per_example(array, batch_axes):
  """Adds leading size-1 axes so a shared kernel broadcasts like a per-example one."""
  return array if array.ndim == batch_axes + 1 else array[None]


# --- direct: XLA's convolution -----------------------------------------------------------------

def direct(padded, kernels):
  """Grouped `lax` convolution, one group per (example, channel): cuDNN/TPU's native path."""
  kernels = dense(kernels)
  batch, _, _, channels = padded.shape
  size = kernels.shape[-1]
  flipped = kernels[..., ::-1, ::-1]
  conv = lambda lhs, rhs, groups: lax.conv_general_dilated(
      lhs, rhs, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=groups, precision=lax.Precision.HIGHEST)
  if kernels.ndim == 2:
    rhs = jnp.broadcast_to(flipped[:, :, None, None], (size, size, 1, channels))
    return conv(padded, rhs, channels)
  # Fold the batch into channels so each example's channels see that example's kernel.
  stacked = jnp.transpose(padded, (1, 2, 0, 3)).reshape(1, *padded.shape[1:3], batch * channels)
  rhs = jnp.repeat(jnp.transpose(flipped, (1, 2, 0)), channels, axis=-1)[:, :, None, :]
  out = conv(stacked, rhs, batch * channels)
  return jnp.transpose(out[0].reshape(*out.shape[1:3], batch, channels), (2, 0, 1, 3))


# --- fft: pointwise products of 2-D real FFTs ---------------------------------------------------

def fast_fft_length(n):
  """Smallest 2^a 3^b 5^c >= n: FFT libraries are slow on other sizes (XLA:CPU took 1.7x longer
  for 62x62 real FFTs than for 64x64 here; 254 vs 256: 3x)."""
  while True:
    m = n
    for factor in (2, 3, 5):
      while m % factor == 0:
        m //= factor
    if m == 1:
      return n
    n += 1


def _fft_shape(padded):
  return tuple(fast_fft_length(n) for n in padded.shape[1:3])


def _image_spectrum(padded):
  # Channels first, so each FFT runs over the two minor (contiguous) axes.
  return jnp.fft.rfft2(jnp.moveaxis(padded, -1, 1), s=_fft_shape(padded))


def _convolve_spectrum(images_f, padded, kernels):
  """The valid convolution, given the image spectrum `images_f` of `padded`."""
  kernels = dense(kernels)
  shape = _fft_shape(padded)
  size = kernels.shape[-1]
  height, width = padded.shape[1] - size + 1, padded.shape[2] - size + 1
  kernels_f = _per_example(jnp.fft.rfft2(kernels, s=shape), 2)[:, None]
  out = jnp.fft.irfft2(images_f * kernels_f, s=shape)
  # Zero padding to `shape` >= the padded size makes the circular convolution linear here.
  out = out[:, :, size - 1:size - 1 + height, size - 1:size - 1 + width]
  return jnp.moveaxis(out, 1, -1)


def fft(padded, kernels):
  """Linear convolution by zero-padded FFTs; the crop keeps only the wrap-free outputs."""
  return _convolve_spectrum(_image_spectrum(padded), padded, kernels)


# --- shift and separable: shifted multiply-adds that XLA fuses into single loops ---------------
# Rows are viewed as (B, H, W * C): shifting by q pixels is then a slice starting at q * C of the
# long contiguous minor axis, which vectorizes well and needs no transposes.

def _rows_view(padded):
  batch, height_p, width_p, channels = padded.shape
  return padded.reshape(batch, height_p, width_p * channels)


# Up to this size `shift` unrolls all k*k multiply-adds (`auto` uses it for k <= 7). Larger kernels
# reach it only when forced; they loop over kernel rows instead, so that compile time grows with k,
# not k*k (k = 31 unrolled took XLA:CPU about 20 s to compile).
SHIFT_UNROLLED_MAX_SIZE = 9


def _shift_2d(padded, kernels):
  """k*k shifted multiply-adds; XLA fuses them (and the slicing) into one loop over the output."""
  kernels = dense(kernels)
  batch, height_p, width_p, channels = padded.shape
  size = kernels.shape[-1]
  height, span = height_p - size + 1, (width_p - size + 1) * channels
  taps = _per_example(kernels, 2)[:, ::-1, ::-1, None, None]  # (B, k, k, 1, 1), flipped
  images = _rows_view(padded)

  def kernel_row(row_taps, rows):
    """One kernel row: `row_taps` (B, k, 1, 1) times the k column shifts of `rows` (B, H, W*C)."""
    out = 0.0
    for q in range(size):
      out = out + row_taps[:, q] * rows[:, :, q * channels:q * channels + span]
    return out

  if size <= SHIFT_UNROLLED_MAX_SIZE:
    out = 0.0
    for p in range(size):
      out = out + kernel_row(taps[:, p], images[:, p:p + height])
  else:
    def add_row(p, out):
      rows = lax.dynamic_slice_in_dim(images, p, height, axis=1)
      return out + kernel_row(lax.dynamic_index_in_dim(taps, p, axis=1, keepdims=False), rows)
    zeros = jnp.zeros((images.shape[0], height, span), jnp.result_type(images, taps))
    out = lax.fori_loop(0, size, add_row, zeros)
  return out.reshape(batch, height, -1, channels)


def _factors(kernels):
  """`(column, row)`, each `(B or 1, R, k)`: R rank-1 terms whose sum is the kernel.

  A dense kernel is split exactly into its k rows, `kernel = sum_p e_p (x) kernel[p]`, so forcing
  this strategy on any kernel is correct (at k times the cost of a true rank-1 kernel).
  """
  if isinstance(kernels, Separable):
    column, row = _per_example(kernels.column, 1), _per_example(kernels.row, 1)
    return column[:, None], row[:, None]
  kernels = _per_example(kernels, 2)
  size = kernels.shape[-1]
  return jnp.eye(size, dtype=kernels.dtype)[None], kernels


# XLA:CPU fuses an array into a loop that reads it through k shifted slices as long as that
# duplicates it at most 15 times (XLA's code-duplication limit): the column pass would recompute
# the row pass for every column tap, k*k taps per pixel, 5-7x slower at k = 9..15 (measured on 2
# CPU cores at benchmarks/blur_bench.py's shapes). So the column pass is computed in `_blocks`
# blocks of output rows, which reads the row pass through more than 15 slices, and XLA
# materializes the row pass once instead. Any number of blocks gives the same result.
# At least 2 blocks, also for k > 15: a single block is a plain sum of k slices, which XLA:CPU
# fused into a consumer that reduces (a loss, SSIM's sums), recomputing the row pass for every
# column tap: blur then sum of squares took 153 ms instead of 2.9 ms at k = 31 (B=64 32x32x3,
# 2 cores; benchmarks/blur_bench.py's "separable -> sum" row). The concatenation of blocks is not
# fused into the reduction. (`lax.optimization_barrier` does not help: XLA:CPU drops barriers
# before fusion.)
_MAX_FUSED_DUPLICATES = 15


def _blocks(length, size):
  count = min(length, max(2, _MAX_FUSED_DUPLICATES // size + 1))
  edges = np.linspace(0, length, count + 1).astype(int)
  return list(zip(edges[:-1], edges[1:]))


def _row_pass(row, images, span, channels):
  """`rows[..., y, m] = sum_q row[..., q] * images[..., y, q * channels + m]` for m < span."""
  return sum(row[..., q, None, None] * images[..., q * channels:q * channels + span]
             for q in range(row.shape[-1]))


def _column_pass(column, rows, height):
  """`out[..., i, m] = sum_p column[..., p] * rows[..., i + p, m]` for i < height."""
  size = column.shape[-1]
  blocks = [sum(column[..., p, None, None] * rows[..., start + p:stop + p, :] for p in range(size))
            for start, stop in _blocks(height, size)]
  return jnp.concatenate(blocks, axis=-2)


def _separable(padded, kernels):
  column, row = _factors(kernels)
  batch, height_p, width_p, channels = padded.shape
  size = row.shape[-1]
  height, span = height_p - size + 1, (width_p - size + 1) * channels
  column, row = column[..., ::-1], row[..., ::-1]  # (B, R, k), flipped for convolution
  images = _rows_view(padded)  # (B, H + k - 1, (W + k - 1) * C)
  if row.shape[1] == 1:  # a true rank-1 kernel: no rank axis at all
    out = _column_pass(column[:, 0], _row_pass(row[:, 0], images, span, channels), height)
  else:  # R terms ride along as a batch axis
    rows = _row_pass(row, images[:, None], span, channels)
    out = jnp.sum(_column_pass(column, rows, height), axis=1)
  return out.reshape(batch, height, -1, channels)


def _zero_to_none(tangent):
  return None if isinstance(tangent, SymbolicZero) else tangent


def _kernel_tangent(kernels, kernel_dots):
  """The dense tangent of the kernel, or None when the kernel is not differentiated."""
  if not isinstance(kernels, Separable):
    return _zero_to_none(kernel_dots)
  column_dot, row_dot = map(_zero_to_none, kernel_dots)
  terms = []
  if column_dot is not None:
    terms.append(dense(Separable(column_dot, kernels.row)))
  if row_dot is not None:
    terms.append(dense(Separable(kernels.column, row_dot)))
  return sum(terms) if terms else None


def fft_when_differentiated(strategy):
  """`strategy` for plain values; FFTs for values and kernel gradients under differentiation.

  Autodiff of a shift-and-add sum gives the kernel gradient as k*k full reductions of
  (cotangent * shifted image), which XLA runs as k*k passes over memory. Here the JVP computes
  the value and its kernel part from one image spectrum, so the transpose (the kernel gradient)
  is one FFT of the cotangent, a product summed over channels and one small inverse FFT per
  example. The image part keeps `strategy`, whose transpose is the same kind of cheap sum.
  A JVP (not a VJP) rule keeps forward mode and higher orders working.
  """
  @jax.custom_jvp
  def convolve(padded, kernels):
    return strategy(padded, kernels)

  def jvp(primals, tangents):
    padded, kernels = primals
    padded_dot, kernel_dots = tangents
    kernel_dot = _kernel_tangent(kernels, kernel_dots)
    if kernel_dot is None:
      out = convolve(padded, kernels)
      tangent = jnp.zeros_like(out)
    else:
      images_f = _image_spectrum(padded)
      out = _convolve_spectrum(images_f, padded, kernels)
      tangent = _convolve_spectrum(images_f, padded, kernel_dot)
    if not isinstance(padded_dot, SymbolicZero):
      tangent = tangent + convolve(padded_dot, kernels)
    return out, tangent

  convolve.defjvp(jvp, symbolic_zeros=True)
  return convolve


shift = fft_when_differentiated(_shift_2d)
separable = fft_when_differentiated(_separable)


# --- native: C++ loops on CPU (ops/native) -----------------------------------------------------

# Above this size the FFT's kernel gradient (one spectrum product, cost nearly independent of k)
# beats the C++ loops' k*k dot products per row: they tied at k = 31 (B=256 32x32x3, both timed
# alone on 2 cores), and the loops' cost grows as k*k beyond.
NATIVE_TAPS_MAX_SIZE = 31


def _dense_per_example(padded, kernels):
  kernels = dense(kernels)
  return jnp.broadcast_to(kernels, padded.shape[:1] + kernels.shape[-2:])


def _sum_to_shape(array, shape):
  """Sums the leading axes `array` has beyond `shape` (the transpose of broadcasting)."""
  return jnp.sum(array, axis=tuple(range(array.ndim - len(shape)))).reshape(shape)


def _kernel_cotangent(kernels, dense_grad):
  """The cotangent of `kernels` (dense, shared or `Separable`) from the dense `(B, k, k)` one."""
  if isinstance(kernels, Separable):
    column = jnp.einsum("...pq,...q->...p", dense_grad, kernels.row)
    row = jnp.einsum("...pq,...p->...q", dense_grad, kernels.column)
    return Separable(_sum_to_shape(column, kernels.column.shape),
                     _sum_to_shape(row, kernels.row.shape))
  return _sum_to_shape(dense_grad, kernels.shape)


# Up to this size the loops' k*k taps beat their two 1-D passes on `Separable` kernels too.
NATIVE_SEPARABLE_MAX_DENSE_SIZE = 7


def _native_apply(padded, kernels, flip):
  """The loops' valid correlation with `kernels`, flipped (a convolution) or not.

  `Separable` kernels above NATIVE_SEPARABLE_MAX_DENSE_SIZE run as a (1, k) row pass and a (k, 1)
  column pass (2k taps a pixel). (The pure-JAX passes are no substitute: XLA:CPU fused them into
  a consumer that reduces, such as a loss, re-running the row pass per block, 20x slower at
  k = 31.)
  """
  batch = padded.shape[:1]
  if isinstance(kernels, Separable) and kernels.row.shape[-1] > NATIVE_SEPARABLE_MAX_DENSE_SIZE:
    column, row = (jnp.broadcast_to(f, batch + f.shape[-1:]) for f in kernels)
    if flip:
      column, row = column[:, ::-1], row[:, ::-1]
    rows = native_lib.correlate(padded, row[:, None, :])
    return native_lib.correlate(rows, column[:, :, None])
  full = _dense_per_example(padded, kernels)
  return native_lib.correlate(padded, full[:, ::-1, ::-1] if flip else full)


@jax.custom_vjp
def _native_loops(padded, kernels):
  return _native_apply(padded, kernels, flip=True)


def _native_forward(padded, kernels):
  return _native_apply(padded, kernels, flip=True), (padded, kernels)


def _native_backward(residuals, cotangent):
  padded, kernels = residuals
  size = dense(kernels).shape[-1]
  if size <= NATIVE_TAPS_MAX_SIZE:
    dense_grad = native_lib.correlate_taps(padded, cotangent)[:, ::-1, ::-1]
  else:  # the transpose of the FFT convolution's kernel argument
    full = _dense_per_example(padded, kernels)
    dense_grad = jax.linear_transpose(lambda k: fft(padded, k), full)(cotangent)[0]
  # The image gradient is a "full" correlation of the cotangent with the (unflipped) kernel. Under
  # jit it is dropped when the images are not differentiated.
  margin = ((0, 0), (size - 1, size - 1), (size - 1, size - 1), (0, 0))
  padded_grad = _native_apply(jnp.pad(cotangent, margin), kernels, flip=False)
  return padded_grad, _kernel_cotangent(kernels, dense_grad)


_native_loops.defvjp(_native_forward, _native_backward)


def native_or(fallback):
  """The C++ loops for float32 on CPU, `fallback` (a pure-JAX strategy) for everything else.

  This is the padded-input form that `blur.STRATEGIES` holds; `blur` itself calls `native_blur`,
  which lets the loops do the padding.

  The platform is picked when lowering (`lax.platform_dependent`), so the same jitted function
  runs the loops on CPU and `fallback` on GPU/TPU. Reverse-mode differentiation only (first
  order): `jax.jvp` and second derivatives need a pure-JAX strategy such as "fft".
  """
  def strategy(padded, kernels):
    native_lib.require()
    if padded.dtype != jnp.float32:
      return fallback(padded, kernels)
    kernels = jax.tree.map(lambda taps: taps.astype(jnp.float32), kernels)
    return lax.platform_dependent(padded, kernels, cpu=_native_loops, default=fallback)
  return strategy


# The same loops with the padding fused in (what `blur` uses): XLA's pad of the whole batch took as
# long as the blur itself at k = 5; the loops pad each work item's rows in cache instead.

def _native_apply_padding(images, kernels, padding):
  """`_native_apply(pad_images(images), kernels, flip=True)`, the first pass padding itself."""
  batch, size = images.shape[:1], dense(kernels).shape[-1]
  half = size // 2
  if isinstance(kernels, Separable) and size > NATIVE_SEPARABLE_MAX_DENSE_SIZE:
    column, row = (jnp.broadcast_to(f, batch + f.shape[-1:])[:, ::-1] for f in kernels)
    return native_lib.pad_separable(images, column, row, padding, half)
  taps = _dense_per_example(images, kernels)[:, ::-1, ::-1]
  return native_lib.pad_correlate(images, taps, padding, half, half)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _native_blur_loops(images, kernels, padding):
  return _native_apply_padding(images, kernels, padding)


def _native_blur_forward(images, kernels, padding):
  return _native_apply_padding(images, kernels, padding), (images, kernels)


def _native_blur_backward(padding, residuals, cotangent):
  images, kernels = residuals
  half = dense(kernels).shape[-1] // 2
  padded, unpad = jax.vjp(lambda x: pad_images(x, half, padding), images)
  padded_grad, kernel_grad = _native_backward((padded, kernels), cotangent)
  return unpad(padded_grad)[0], kernel_grad


_native_blur_loops.defvjp(_native_blur_forward, _native_blur_backward)


def native_blur(images, kernels, padding, fallback):
  """`blur` by the loops with fused padding: float32 on CPU; else `fallback(padded, kernels)`.

  The platform is picked when lowering, as in `native_or`; same differentiation limits.
  """
  native_lib.require()
  half = dense(kernels).shape[-1] // 2
  pure = lambda x, k: fallback(pad_images(x, half, padding), k)
  if images.dtype != jnp.float32:
    return pure(images, kernels)
  kernels = jax.tree.map(lambda taps: taps.astype(jnp.float32), kernels)
  loops = lambda x, k: _native_blur_loops(x, k, padding)
  return lax.platform_dependent(images, kernels, cpu=loops, default=pure)
