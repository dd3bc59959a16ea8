// Host side of the bias_act plugin: validates tensors, allocates the output and launches the
// kernel in bias_act.cu on the current stream. The Python wrapper (bias_act_cuda.py) arranges
// for contiguous inputs and builds the autograd graph from the three modes.

// Narrow includes instead of <torch/extension.h>: a third of the compile time, which CI pays.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/utils/pybind.h>
#include "bias_act.h"

namespace {

int dtype_code(const at::Tensor& x) {
    switch (x.scalar_type()) {
    case at::kHalf:   return kDtypeHalf;
    case at::kFloat:  return kDtypeFloat;
    case at::kDouble: return kDtypeDouble;
    default: TORCH_CHECK(false, "bias_act: unsupported dtype ", x.scalar_type(), " (use float16/32/64)");
    }
    return -1;
}

void check_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
    TORCH_CHECK(t.device() == x.device(), "bias_act: ", name, " is on ", t.device(), " but x is on ", x.device());
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act: ", name, " has dtype ", t.scalar_type(),
                " but x has ", x.scalar_type());
    TORCH_CHECK(t.is_contiguous(), "bias_act: ", name, " must be contiguous");
}

}  // namespace

// x: input, a CUDA tensor (a CPU tensor runs the same element code on the host, for tests);
// b: bias along `dim` or an empty tensor; dy: gradient for modes 1 and 2 (same shape as x) or an
// empty tensor. See BiasActMode in bias_act.h for what is returned.
at::Tensor bias_act(at::Tensor x, at::Tensor b, at::Tensor dy, int64_t dim, int64_t act,
                       int64_t mode, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda() || x.is_cpu(), "bias_act: x must be a CUDA (or, for tests, CPU) tensor");
    TORCH_CHECK(x.is_contiguous(), "bias_act: x must be contiguous");
    TORCH_CHECK(x.dim() >= 1 && dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " out of range for a ",
                x.dim(), "-D input");
    TORCH_CHECK(act >= kActLinear && act <= kActSwish, "bias_act: unknown activation code ", act);
    TORCH_CHECK(mode >= kBiasActForward && mode <= kBiasActGradGrad, "bias_act: unknown mode ", mode);
    const bool has_bias = b.numel() > 0;
    if (has_bias) {
        check_like(b, x, "b");
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b has shape ", b.sizes(),
                    " but x.size(", dim, ") is ", x.size(dim));
    }
    if (mode != kBiasActForward) {
        check_like(dy, x, "dy");
        TORCH_CHECK(dy.sizes() == x.sizes(), "bias_act: dy has shape ", dy.sizes(), " but x has ", x.sizes());
    }

    at::Tensor out = at::empty_like(x, x.options(), at::MemoryFormat::Contiguous);
    int64_t b_step = 1;
    for (int64_t d = dim + 1; d < x.dim(); ++d)
        b_step *= x.size(d);

    BiasActParams p;
    p.x = x.data_ptr();
    p.b = has_bias ? b.data_ptr() : nullptr;
    p.dy = mode != kBiasActForward ? dy.data_ptr() : nullptr;
    p.out = out.data_ptr();
    p.n = x.numel();
    p.b_len = has_bias ? b.size(0) : 0;
    p.b_step = b_step > 0 ? b_step : 1;
    p.mode = static_cast<int>(mode);
    p.act = static_cast<int>(act);
    p.dtype = dtype_code(x);
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    if (x.is_cpu()) {
        bias_act_run_host(p);
        return out;
    }
    const c10::cuda::CUDAGuard device_guard(x.device());
    const cudaError_t err = bias_act_launch(p, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    TORCH_CHECK(err == cudaSuccess, "bias_act: kernel launch failed: ", cudaGetErrorString(err));
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    namespace py = pybind11;
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp and its derivatives (see bias_act.h)",
          py::arg("x"), py::arg("b"), py::arg("dy"), py::arg("dim"), py::arg("act"), py::arg("mode"),
          py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
}
