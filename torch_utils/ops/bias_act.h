// Interface between the bias_act host code (bias_act.cpp, compiled by the C++ compiler with the
// torch headers) and its kernel (bias_act.cu, compiled by nvcc with only CUDA headers, which
// keeps the device compile fast). Plain pointers and numbers only.

#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

// Which quantity the kernel writes, for s = x + b, v = gain * act(s), m = [clamp < 0 or |v| <= clamp]:
//   0 (forward):       out = clamp(v, -clamp, clamp)
//   1 (gradient):      out = dy * gain * act'(s) * m
//   2 (2nd gradient):  out = dy * gain * act''(s) * m
enum BiasActMode { kBiasActForward = 0, kBiasActGrad = 1, kBiasActGradGrad = 2 };

// Activation codes; the numbers match ActivationSpec.cuda_idx in bias_act.py.
enum BiasActFunc {
    kActLinear = 1, kActRelu = 2, kActLrelu = 3, kActTanh = 4, kActSigmoid = 5,
    kActElu = 6, kActSelu = 7, kActSoftplus = 8, kActSwish = 9,
};

enum BiasActDtype { kDtypeHalf = 0, kDtypeFloat = 1, kDtypeDouble = 2 };

struct BiasActParams {
    const void* x;       // [n] contiguous input
    const void* b;       // [b_len] bias, or nullptr
    const void* dy;      // [n] incoming gradient (modes 1, 2), or nullptr
    void*       out;     // [n] result
    int64_t     n;       // number of elements of x
    int64_t     b_len;   // number of bias channels (x.size(dim)); 0 without bias
    int64_t     b_step;  // elements between consecutive channels: product of x's sizes after dim
    int         mode;    // BiasActMode
    int         act;     // BiasActFunc
    int         dtype;   // BiasActDtype of x, b, dy and out
    double      alpha;   // lrelu slope for negative inputs
    double      gain;    // scale applied after the activation
    double      clamp;   // clamp limit after the gain; negative disables clamping
};

// Launches the elementwise kernel on `stream`; returns the launch status.
cudaError_t bias_act_launch(const BiasActParams& p, cudaStream_t stream);

// Runs the same per-element code on the host for CPU tensors. Users never get here (CPU tensors
// take the PyTorch reference); it lets tests check the kernel's arithmetic without a GPU.
void bias_act_run_host(const BiasActParams& p);
