"""Kernels: the oneDNN gateway, the step products and their int8 rewrite, the fused output loss."""
