// Shared between upfirdn2d.cpp (PyTorch binding, host compiler) and upfirdn2d.cu (kernel, nvcc).
// Plain C++ only, so the .cu file needs no PyTorch headers (fast nvcc step), and so the per-sample
// arithmetic below can also be compiled for the CPU: tests/test_upfirdn2d.py builds it with a plain
// C++ compiler (defining UPFIRDN2D_NO_CUDA) and checks it against the reference without a GPU.

#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define UPFIRDN2D_HD __host__ __device__
#else
#define UPFIRDN2D_HD
#endif

// Element types the kernel is instantiated for. The binding maps torch dtypes onto these; the
// 16-bit types are bit-compatible with c10::Half / c10::BFloat16.
enum class Upfirdn2dDtype : int {
    kFloat32 = 0,
    kFloat64 = 1,
    kFloat16 = 2,
    kBFloat16 = 3,
};

// One upfirdn2d pass. Geometry follows spec section 2.4: upsample by zero insertion, pad (negative
// values crop), true convolution with the filter (correlation if flip_filter), keep every down-th
// sample starting at 0.
struct Upfirdn2dParams {
    const void*  x;            // input  [n, c, in_h, in_w], element strides below
    const float* f;            // filter [fh, fw], contiguous float32
    void*        y;            // output [n, c, out_h, out_w], contiguous

    int64_t n, c, in_h, in_w;           // input sizes
    int64_t sx_n, sx_c, sx_h, sx_w;     // input strides, in elements
    int64_t out_h, out_w;               // output sizes (computed and validated by the binding)

    int     fh, fw;                     // filter height and width (taps)
    int     upx, upy;                   // upsampling factors, >= 1
    int     downx, downy;               // downsampling factors, >= 1
    int     px0, px1, py0, py1;         // padding after upsampling; negative crops. px1/py1 enter
                                        // only through out_h/out_w.
    bool    flip_filter;                // false: true convolution; true: correlation
    double  gain;                       // multiplies every output sample
};

// Smallest tap t >= 0 with (base + t) divisible by `up`; `base` may be negative.
UPFIRDN2D_HD inline int upfirdn2d_first_tap(int64_t base, int up) {
    const int r = static_cast<int>(((base % up) + up) % up);
    return (up - r) % up;
}

// Output sample number `idx` (linear index into the contiguous output), accumulated in type A.
// `load(offset)` returns input element `offset` (in elements from p.x) converted to A.
//
// Output (oy, ox) is the sum over filter taps (ty, tx) of filter * padded[oy*down + ty, ox*down + tx].
// Padded position j is upsampled position j - p0, and the upsampled signal is non-zero only at
// multiples of `up`, where it holds input[j / up]; so only every up-th tap contributes. Cropping
// (negative padding) needs no special case: the output size keeps every read inside the crop.
template <typename A, typename Load>
UPFIRDN2D_HD inline A upfirdn2d_sample(const Upfirdn2dParams& p, int64_t idx, const Load& load) {
    const int64_t ox = idx % p.out_w;
    int64_t rest = idx / p.out_w;
    const int64_t oy = rest % p.out_h;
    rest /= p.out_h;
    const int64_t ci = rest % p.c;
    const int64_t ni = rest / p.c;
    const int64_t plane = ni * p.sx_n + ci * p.sx_c;
    const int64_t up_h = p.in_h * p.upy;  // length of the upsampled signal along y
    const int64_t up_w = p.in_w * p.upx;  // ... and along x

    // Upsampled position read by tap 0.
    const int64_t base_y = oy * p.downy - p.py0;
    const int64_t base_x = ox * p.downx - p.px0;

    A acc = 0;
    for (int ty = upfirdn2d_first_tap(base_y, p.upy); ty < p.fh; ty += p.upy) {
        const int64_t uy = base_y + ty;
        if (uy < 0) continue;
        if (uy >= up_h) break;
        // True convolution pairs tap t with filter index (size - 1 - t).
        const int fy = p.flip_filter ? ty : (p.fh - 1 - ty);
        const int64_t row = plane + (uy / p.upy) * p.sx_h;
        for (int tx = upfirdn2d_first_tap(base_x, p.upx); tx < p.fw; tx += p.upx) {
            const int64_t ux = base_x + tx;
            if (ux < 0) continue;
            if (ux >= up_w) break;
            const int fx = p.flip_filter ? tx : (p.fw - 1 - tx);
            acc += load(row + (ux / p.upx) * p.sx_w) * static_cast<A>(p.f[fy * p.fw + fx]);
        }
    }
    return acc * static_cast<A>(p.gain);
}

#if !defined(UPFIRDN2D_NO_CUDA)
#include <cuda_runtime.h>

// Launches the kernel on `stream` and returns the launch status (cudaSuccess when it was queued).
cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, Upfirdn2dDtype dtype, cudaStream_t stream);
#endif
