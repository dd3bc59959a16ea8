// Elementwise kernel of bias_act: forward, first and second derivative of
// y = clamp(gain * act(x + b), -clamp, clamp). Formulas match the PyTorch reference ops,
// including their conventions at kinks (relu'(0) = 0, elu'(0) = 1, softplus linear above 20).

#include <cmath>
#include <cuda_fp16.h>
#include "bias_act.h"

namespace {

// Storage type <-> compute type. Half is computed in float.
template <typename T> struct Compute { using type = T; };
template <> struct Compute<__half> { using type = float; };

__host__ __device__ __forceinline__ float  to_compute(float v)  { return v; }
__host__ __device__ __forceinline__ double to_compute(double v) { return v; }
__host__ __device__ __forceinline__ float  to_compute(__half v) { return __half2float(v); }
template <typename T> __host__ __device__ __forceinline__ T from_compute(typename Compute<T>::type v) { return v; }
template <> __host__ __device__ __forceinline__ __half from_compute<__half>(float v) { return __float2half_rn(v); }

__host__ __device__ __forceinline__ float  exp_(float v)   { return expf(v); }
__host__ __device__ __forceinline__ double exp_(double v)  { return exp(v); }
__host__ __device__ __forceinline__ float  tanh_(float v)  { return tanhf(v); }
__host__ __device__ __forceinline__ double tanh_(double v) { return tanh(v); }
__host__ __device__ __forceinline__ float  log1p_(float v) { return log1pf(v); }
__host__ __device__ __forceinline__ double log1p_(double v){ return log1p(v); }

template <typename C> __host__ __device__ __forceinline__ C sigmoid_(C s) { return C(1) / (C(1) + exp_(-s)); }

// Value f(s), first derivative d1 = f'(s) and second derivative d2 = f''(s) of activation `act`.
template <typename C>
__host__ __device__ __forceinline__ void activation(int act, C s, C alpha, C& f, C& d1, C& d2) {
    const C selu_lambda = C(1.0507009873554804934193349852946);
    const C selu_alpha  = C(1.6732632423543772848170429916717);
    const C softplus_threshold = C(20);  // torch.nn.functional.softplus default
    d2 = C(0);
    switch (act) {
    case kActRelu:
        f = s > C(0) ? s : C(0);
        d1 = s > C(0) ? C(1) : C(0);
        break;
    case kActLrelu:
        f = s > C(0) ? s : alpha * s;
        d1 = s > C(0) ? C(1) : alpha;
        break;
    case kActTanh: {
        C t = tanh_(s);
        f = t;
        d1 = C(1) - t * t;
        d2 = C(-2) * t * d1;
        break;
    }
    case kActSigmoid: {
        C g = sigmoid_(s);
        f = g;
        d1 = g * (C(1) - g);
        d2 = d1 * (C(1) - C(2) * g);
        break;
    }
    case kActElu: {
        C e = exp_(s);
        f = s > C(0) ? s : e - C(1);
        d1 = s > C(0) ? C(1) : e;
        d2 = s > C(0) ? C(0) : e;
        break;
    }
    case kActSelu: {
        C e = exp_(s);
        f = s > C(0) ? selu_lambda * s : selu_lambda * selu_alpha * (e - C(1));
        d1 = s > C(0) ? selu_lambda : selu_lambda * selu_alpha * e;
        d2 = s > C(0) ? C(0) : selu_lambda * selu_alpha * e;
        break;
    }
    case kActSoftplus:
        if (s > softplus_threshold) {
            f = s;
            d1 = C(1);
        } else {
            C g = sigmoid_(s);
            f = log1p_(exp_(s));
            d1 = g;
            d2 = g * (C(1) - g);
        }
        break;
    case kActSwish: {
        C g = sigmoid_(s);
        C dg = g * (C(1) - g);
        f = s * g;
        d1 = g + s * dg;
        d2 = dg * (C(2) + s * (C(1) - C(2) * g));
        break;
    }
    default:  // kActLinear; the host code rejects unknown codes.
        f = s;
        d1 = C(1);
        break;
    }
}

// One output element; shared by the kernel and the host loop (which lets tests on machines
// without a GPU run this exact code on CPU tensors).
template <typename T>
__host__ __device__ __forceinline__ void bias_act_element(const BiasActParams& p, int64_t i) {
    using C = typename Compute<T>::type;
    const T* x = static_cast<const T*>(p.x);
    const T* b = static_cast<const T*>(p.b);
    const T* dy = static_cast<const T*>(p.dy);
    const C alpha = C(p.alpha), gain = C(p.gain), clamp = C(p.clamp);

    C s = to_compute(x[i]);
    if (b != nullptr)
        s += to_compute(b[(i / p.b_step) % p.b_len]);
    C f, d1, d2;
    activation<C>(p.act, s, alpha, f, d1, d2);
    const C v = gain * f;
    C r;
    if (p.mode == kBiasActForward) {
        r = v;
        if (clamp >= C(0))
            r = r > clamp ? clamp : (r < -clamp ? -clamp : r);
    } else {
        // Clamped outputs are constant in s, so both derivatives vanish there
        // (torch.clamp passes gradients for -clamp <= v <= clamp inclusive).
        const bool pass = clamp < C(0) || (v >= -clamp && v <= clamp);
        const C d = p.mode == kBiasActGrad ? d1 : d2;
        r = pass ? to_compute(dy[i]) * gain * d : C(0);
    }
    static_cast<T*>(p.out)[i] = from_compute<T>(r);
}

template <typename T>
__global__ void bias_act_kernel(BiasActParams p) {
    // Grid-stride loop: a bounded grid covers any n.
    const int64_t stride = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n; i += stride)
        bias_act_element<T>(p, i);
}

template <typename T>
cudaError_t launch(const BiasActParams& p, cudaStream_t stream) {
    const int threads = 256;
    const int64_t blocks = (p.n + threads - 1) / threads;
    const int grid = int(blocks < 65536 ? blocks : 65536);
    bias_act_kernel<T><<<grid, threads, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename T>
void host_loop(const BiasActParams& p) {
    for (int64_t i = 0; i < p.n; ++i)
        bias_act_element<T>(p, i);
}

}  // namespace

void bias_act_run_host(const BiasActParams& p) {
    switch (p.dtype) {
    case kDtypeHalf:   host_loop<__half>(p); break;
    case kDtypeFloat:  host_loop<float>(p); break;
    case kDtypeDouble: host_loop<double>(p); break;
    default: break;
    }
}

cudaError_t bias_act_launch(const BiasActParams& p, cudaStream_t stream) {
    if (p.n == 0)
        return cudaSuccess;
    switch (p.dtype) {
    case kDtypeHalf:   return launch<__half>(p, stream);
    case kDtypeFloat:  return launch<float>(p, stream);
    case kDtypeDouble: return launch<double>(p, stream);
    default:           return cudaErrorInvalidValue;
    }
}
