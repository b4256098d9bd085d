// Per-example blur kernels for XLA:CPU, called from JAX through the XLA FFI (blur_adv/ops/native/__init__.py).
//
// XLA:CPU has no fast per-example depthwise convolution: it lowers one to a grouped convolution
// that is 50-250x slower than oneDNN's, and its reductions do not vectorize. These loops do the
// two products the blur needs with contiguous, vectorizable inner loops. Images are viewed as
// rows of W*C floats (NHWC), so a horizontal shift by q pixels is an offset of q*C floats.
//
//   blur_adv_correlate:       out[n, i, m]  = sum_{p,q} taps[n, p, q] * padded[n, i + p, m + q*C]
//   blur_adv_correlate_taps:  grad[n, p, q] = sum_{i,m} cot[n, i, m]  * padded[n, i + p, m + q*C]
//
// Taps are (kh, kw): square for dense kernels, (1, k) and (k, 1) for the two passes of a separable
// one (the taps gradient is only needed for square ones).
//
// Leading dimensions of every operand are flattened into n (so vmap's extra axes just add examples).
// Work is split over examples and spread over XLA's intra-op thread pool.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Geometry {
  int64_t examples, padded_height, padded_width, channels, taps_height, taps_width;
  int64_t height() const { return padded_height - taps_height + 1; }
  int64_t span() const { return (padded_width - taps_width + 1) * channels; }  // floats per row
  int64_t taps() const { return taps_height * taps_width; }
  int64_t padded_row() const { return padded_width * channels; }
  int64_t padded_image() const { return padded_height * padded_row(); }
};

// Boundary modes of the fused padding (numpy.pad's names; its __init__.py passes the codes).
enum PadMode : int64_t { kReflect = 1, kSymmetric = 2, kEdge = 3, kConstant = 4, kWrap = 5 };

// The source index of padded index i in [-pad, n + pad), or -1 for a zero (constant mode).
int64_t SourceIndex(int64_t i, int64_t n, int64_t mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case kReflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1), j = ((i % period) + period) % period;
      return j < n ? j : period - j;
    }
    case kSymmetric: {
      const int64_t period = 2 * n, j = ((i % period) + period) % period;
      return j < n ? j : period - 1 - j;
    }
    case kEdge: return i < 0 ? 0 : n - 1;
    case kWrap: return ((i % n) + n) % n;
    default: return -1;
  }
}

struct Padding {
  int64_t mode, height, width;  // mode 0: the input is already padded
};

// Padded rows [first, last) of one (H, W, C) image into `out` (rows of (W + 2 pw) * C floats).
void PadRows(const float* image, int64_t height, int64_t width, int64_t channels,
             const Padding& pad, int64_t first, int64_t last, float* out) {
  const int64_t padded_row = (width + 2 * pad.width) * channels;
  for (int64_t y = first; y < last; ++y, out += padded_row) {
    const int64_t source_y = SourceIndex(y - pad.height, height, pad.mode);
    if (source_y < 0) {
      std::fill(out, out + padded_row, 0.0f);
      continue;
    }
    const float* source = image + source_y * width * channels;
    std::copy(source, source + width * channels, out + pad.width * channels);
    for (int64_t x = 0; x < pad.width; ++x) {  // the left and right margins
      for (int64_t side = 0; side < 2; ++side) {
        const int64_t padded_x = side ? pad.width + width + x : x;
        const int64_t source_x = SourceIndex(padded_x - pad.width, width, pad.mode);
        float* target = out + padded_x * channels;
        if (source_x < 0) {
          std::fill(target, target + channels, 0.0f);
        } else {
          std::copy(source + source_x * channels, source + (source_x + 1) * channels, target);
        }
      }
    }
  }
}

// Runs body(n) for n in [0, count) on the caller and the pool. Work is claimed from a shared
// counter, so a pool that is busy elsewhere only means the caller does more of it (no deadlock),
// and tasks that start after the caller returned find nothing left and exit. An exception in an
// item (a failed scratch allocation) is recorded, not thrown across threads or the FFI: the
// result is an error.
ffi::Error ParallelFor(ffi::ThreadPool& pool, int64_t count, const std::function<void(int64_t)>& body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
    const std::function<void(int64_t)>* body;
    int64_t count;
    std::atomic<bool> failed{false};
  };
  auto state = std::make_shared<State>();
  state->body = &body;
  state->count = count;
  auto work = [](State& s) {
    for (int64_t n; (n = s.next.fetch_add(1)) < s.count;) {
      try {
        (*s.body)(n);
      } catch (...) {
        s.failed = true;
      }
      if (s.done.fetch_add(1) + 1 == s.count) {
        std::lock_guard<std::mutex> lock(s.mutex);
        s.finished.notify_all();
      }
    }
  };
  // The caller works too, so num_threads - 1 helpers keep one thread per core: more threads than
  // cores would let the scheduler park a thread that holds a claimed item for a whole time slice.
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, count - 1);
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([state, work] { work(*state); });
  work(*state);
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done.load() == count; });
  return state->failed ? ffi::Error::Internal("blur loops: a work item failed (out of memory?)")
                       : ffi::Error::Success();
}

// One output row block of `Width` floats: its accumulators stay in registers (8 AVX vectors at
// Width = 64) while every tap adds a shifted source row. A compile-time width lets the compiler
// unroll the inner loop fully.
template <int64_t Width>
void CorrelateBlock(const Geometry& g, const float* padded, const float* taps, float* out) {
  const int64_t row = g.padded_row(), c = g.channels;
  float acc[Width] = {};
  for (int64_t p = 0; p < g.taps_height; ++p) {
    const float* source_row = padded + p * row;
    for (int64_t q = 0; q < g.taps_width; ++q) {
      const float tap = taps[p * g.taps_width + q];
      const float* source = source_row + q * c;
#pragma GCC unroll 64
      for (int64_t m = 0; m < Width; ++m) acc[m] += tap * source[m];
    }
  }
  std::copy(acc, acc + Width, out);
}

// Output rows [first, last) of one example.
void CorrelateRows(const Geometry& g, const float* padded, const float* taps, float* out,
                   int64_t first, int64_t last) {
  const int64_t span = g.span();
  for (int64_t i = first; i < last; ++i) {
    const float* source = padded + i * g.padded_row();
    float* target = out + i * span;
    int64_t m = 0;
    for (; m + 64 <= span; m += 64) CorrelateBlock<64>(g, source + m, taps, target + m);
    if (m + 32 <= span) CorrelateBlock<32>(g, source + m, taps, target + m), m += 32;
    if (m + 16 <= span) CorrelateBlock<16>(g, source + m, taps, target + m), m += 16;
    if (m + 8 <= span) CorrelateBlock<8>(g, source + m, taps, target + m), m += 8;
    for (; m < span; ++m) CorrelateBlock<1>(g, source + m, taps, target + m);
  }
}

// The gradients of taps (p, q .. q + 1) from one block of `Width` floats of every row: the
// products are summed over rows element-wise into accumulators that stay in registers (the same
// shape of loop as `CorrelateBlock`, each cotangent load serving both taps) and reduced across
// the block once at the end.
template <int64_t Width, int64_t Taps>
void TapsBlock(const Geometry& g, const float* padded, const float* cotangent, int64_t p,
               int64_t q, float* grad) {
  const int64_t span = g.span(), row = g.padded_row(), c = g.channels;
  float acc[Taps][Width] = {};
  for (int64_t i = 0; i < g.height(); ++i) {
    const float* cot = cotangent + i * span;
    const float* source = padded + (i + p) * row + q * c;
#pragma GCC unroll 64
    for (int64_t m = 0; m < Width; ++m) {
      for (int64_t t = 0; t < Taps; ++t) acc[t][m] += cot[m] * source[t * c + m];
    }
  }
  for (int64_t t = 0; t < Taps; ++t) {
    float total = 0.0f;
    for (int64_t m = 0; m < Width; ++m) total += acc[t][m];
    grad[p * g.taps_width + q + t] += total;
  }
}

template <int64_t Width>
void TapsColumn(const Geometry& g, const float* padded, const float* cotangent, float* grad) {
  for (int64_t p = 0; p < g.taps_height; ++p) {
    int64_t q = 0;
    for (; q + 2 <= g.taps_width; q += 2) TapsBlock<Width, 2>(g, padded, cotangent, p, q, grad);
    if (q < g.taps_width) TapsBlock<Width, 1>(g, padded, cotangent, p, q, grad);
  }
}

void CorrelateTapsExample(const Geometry& g, const float* padded, const float* cotangent,
                          float* grad) {
  const int64_t span = g.span();
  std::fill(grad, grad + g.taps(), 0.0f);
  int64_t m = 0;
  for (; m + 32 <= span; m += 32) TapsColumn<32>(g, padded + m, cotangent + m, grad);
  if (m + 16 <= span) TapsColumn<16>(g, padded + m, cotangent + m, grad), m += 16;
  if (m + 8 <= span) TapsColumn<8>(g, padded + m, cotangent + m, grad), m += 8;
  for (; m < span; ++m) TapsColumn<1>(g, padded + m, cotangent + m, grad);
}

// Reads the geometry of (..., H, W, C) images, padded by `pad`, and (..., kh, kw) taps, and
// checks they agree. (The Python wrapper checks shapes first; this only guards memory accesses.)
ffi::Error ReadGeometry(ffi::Buffer<ffi::F32>& images, ffi::Span<const int64_t> tap_dims,
                        size_t tap_count, const Padding& pad, Geometry* g) {
  auto dims = images.dimensions();
  if (dims.size() < 3 || tap_dims.size() < 2)
    return ffi::Error::InvalidArgument("images need rank >= 3 and taps rank >= 2");
  const int64_t height = dims[dims.size() - 3], width = dims[dims.size() - 2];
  g->channels = dims[dims.size() - 1];
  g->padded_height = height + 2 * pad.height;
  g->padded_width = width + 2 * pad.width;
  g->taps_height = tap_dims[tap_dims.size() - 2];
  g->taps_width = tap_dims[tap_dims.size() - 1];
  if (g->taps_height < 1 || g->taps_width < 1 || g->taps_height > g->padded_height ||
      g->taps_width > g->padded_width)
    return ffi::Error::InvalidArgument("taps larger than the padded images");
  if (pad.mode != 0 && (height < 1 || width < 1))
    return ffi::Error::InvalidArgument("cannot pad empty images");
  g->examples = images.element_count() / std::max<int64_t>(1, height * width * g->channels);
  if (tap_count != static_cast<size_t>(g->examples * g->taps()))
    return ffi::Error::InvalidArgument("example counts of images and taps differ");
  return ffi::Error::Success();
}

// Row blocks per example: about 4 work items per thread, so that a small batch (even a single
// image) still uses every thread; each block has at least `min_rows` of the `height` output rows.
int64_t RowBlocks(ffi::ThreadPool& pool, int64_t examples, int64_t height, int64_t min_rows) {
  const int64_t wanted = 4 * std::max<int64_t>(1, pool.num_threads());
  return std::clamp<int64_t>((wanted + examples - 1) / examples, 1,
                             std::max<int64_t>(1, height / min_rows));
}

// out = correlate(pad(images), taps); `pad.mode` 0 means `images` are already padded. Fused
// padding builds each work item's padded rows in a scratch buffer that stays in cache, instead of
// a padded copy of the whole batch in memory (at k = 5 XLA's pad took as long as the blur).
ffi::Error CorrelatePadded(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& images,
                           ffi::Buffer<ffi::F32>& taps, ffi::ResultBuffer<ffi::F32>& out,
                           const Padding& pad) {
  if (out->element_count() == 0) return ffi::Error::Success();  // no examples, rows or channels
  if (pad.mode < 0 || pad.mode > kWrap || pad.height < 0 || pad.width < 0)
    return ffi::Error::InvalidArgument("bad padding");
  Geometry g;
  ffi::Error status = ReadGeometry(images, taps.dimensions(), taps.element_count(), pad, &g);
  if (status.failure()) return status;
  if (out->element_count() != static_cast<size_t>(g.examples * g.height() * g.span()))
    return ffi::Error::InvalidArgument("output shape does not match the images and taps");
  const int64_t height = g.padded_height - 2 * pad.height, width = g.padded_width - 2 * pad.width;
  const int64_t image_size = height * width * g.channels;
  const float* source = images.typed_data();
  const float* kernel = taps.typed_data();
  float* result = out->typed_data();
  const int64_t blocks = RowBlocks(pool, g.examples, g.height(), 1);
  return ParallelFor(pool, g.examples * blocks, [&](int64_t item) {
    const int64_t n = item / blocks, block = item % blocks;
    const int64_t first = block * g.height() / blocks, last = (block + 1) * g.height() / blocks;
    float* target = result + n * g.height() * g.span();
    if (pad.mode == 0) {
      CorrelateRows(g, source + n * g.padded_image(), kernel + n * g.taps(), target, first, last);
      return;
    }
    std::vector<float> rows((last - first + g.taps_height - 1) * g.padded_row());
    PadRows(source + n * image_size, height, width, g.channels, pad, first,
            last + g.taps_height - 1, rows.data());
    CorrelateRows(g, rows.data(), kernel + n * g.taps(), target + first * g.span(), 0,
                  last - first);
  });
}

ffi::Error Correlate(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> padded, ffi::Buffer<ffi::F32> taps,
                     ffi::ResultBuffer<ffi::F32> out) {
  return CorrelatePadded(pool, padded, taps, out, Padding{0, 0, 0});
}

ffi::Error PadCorrelate(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> images,
                        ffi::Buffer<ffi::F32> taps, ffi::ResultBuffer<ffi::F32> out,
                        int64_t pad_mode, int64_t pad_height, int64_t pad_width) {
  if (pad_mode < 1) return ffi::Error::InvalidArgument("bad padding mode");  // 0 = pre-padded
  return CorrelatePadded(pool, images, taps, out, Padding{pad_mode, pad_height, pad_width});
}

// A separable kernel in one call: per work item, the padded rows, their row pass and the column
// pass all stay in cache (two calls would send the row pass through memory). `column` and `row`
// are (..., k) correlation taps, one pair per example.
ffi::Error PadSeparable(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> images,
                        ffi::Buffer<ffi::F32> column, ffi::Buffer<ffi::F32> row,
                        ffi::ResultBuffer<ffi::F32> out, int64_t pad_mode, int64_t pad_height,
                        int64_t pad_width) {
  if (out->element_count() == 0) return ffi::Error::Success();
  const Padding pad{pad_mode, pad_height, pad_width};
  if (pad.mode < 1 || pad.mode > kWrap || pad.height < 0 || pad.width < 0)
    return ffi::Error::InvalidArgument("bad padding");
  auto dims = images.dimensions();
  auto size_dims = row.dimensions();
  if (dims.size() < 3 || size_dims.size() < 1)
    return ffi::Error::InvalidArgument("images need rank >= 3 and factors rank >= 1");
  const int64_t height = dims[dims.size() - 3], width = dims[dims.size() - 2];
  const int64_t channels = dims[dims.size() - 1], size = size_dims[size_dims.size() - 1];
  const int64_t examples = images.element_count() / std::max<int64_t>(1, height * width * channels);
  const int64_t padded_height = height + 2 * pad.height, padded_width = width + 2 * pad.width;
  if (size < 1 || size > padded_height || size > padded_width || height < 1 || width < 1 ||
      row.element_count() != static_cast<size_t>(examples * size) ||
      column.element_count() != row.element_count())
    return ffi::Error::InvalidArgument("images and factors do not match");
  const Geometry whole{examples, padded_height, padded_width, channels, size, size};
  if (out->element_count() != static_cast<size_t>(examples * whole.height() * whole.span()))
    return ffi::Error::InvalidArgument("output shape does not match the images and factors");
  const float* source = images.typed_data();
  const float* columns = column.typed_data();
  const float* rows_taps = row.typed_data();
  float* result = out->typed_data();
  // Blocks of at least k rows: each block redoes k - 1 halo rows of padding and row pass.
  const int64_t blocks = RowBlocks(pool, examples, whole.height(), size);
  return ParallelFor(pool, examples * blocks, [&](int64_t item) {
    const int64_t n = item / blocks, block = item % blocks;
    const int64_t first = block * whole.height() / blocks;
    const int64_t last = (block + 1) * whole.height() / blocks;
    const int64_t rows = last - first + size - 1;
    std::vector<float> padded(rows * whole.padded_row());
    PadRows(source + n * height * width * channels, height, width, channels, pad, first,
            first + rows, padded.data());
    const Geometry row_pass{1, rows, padded_width, channels, 1, size};
    std::vector<float> passed(rows * row_pass.span());
    CorrelateRows(row_pass, padded.data(), rows_taps + n * size, passed.data(), 0, rows);
    const Geometry column_pass{1, rows, padded_width - size + 1, channels, size, 1};
    CorrelateRows(column_pass, passed.data(), columns + n * size,
                  result + (n * whole.height() + first) * whole.span(), 0, last - first);
  });
}

ffi::Error CorrelateTaps(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> padded,
                         ffi::Buffer<ffi::F32> cotangent, ffi::ResultBuffer<ffi::F32> grad) {
  if (cotangent.element_count() == 0) {  // an empty sum
    std::fill(grad->typed_data(), grad->typed_data() + grad->element_count(), 0.0f);
    return ffi::Error::Success();
  }
  Geometry g;
  ffi::Error status =
      ReadGeometry(padded, grad->dimensions(), grad->element_count(), Padding{0, 0, 0}, &g);
  if (status.failure()) return status;
  if (cotangent.element_count() != static_cast<size_t>(g.examples * g.height() * g.span()))
    return ffi::Error::InvalidArgument("cotangent shape does not match the output");
  const float* source = padded.typed_data();
  const float* cot = cotangent.typed_data();
  float* result = grad->typed_data();
  return ParallelFor(pool, g.examples, [&](int64_t n) {
    CorrelateTapsExample(g, source + n * g.padded_image(), cot + n * g.height() * g.span(),
                         result + n * g.taps());
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlurAdvCorrelate, Correlate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlurAdvPadCorrelate, PadCorrelate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("pad_mode")
                                  .Attr<int64_t>("pad_height")
                                  .Attr<int64_t>("pad_width"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlurAdvPadSeparable, PadSeparable,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("pad_mode")
                                  .Attr<int64_t>("pad_height")
                                  .Attr<int64_t>("pad_width"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(BlurAdvCorrelateTaps, CorrelateTaps,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
