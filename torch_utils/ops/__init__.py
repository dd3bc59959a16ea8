"""Fused ops with pure-PyTorch references (`impl='ref'`) and CUDA kernels (`impl='cuda'`)."""
