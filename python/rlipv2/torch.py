"""A drop-in for the official ``MSDeformAttnFunction`` (Deformable-DETR, DINO, Grounding DINO,
detrex, RLIPv2): change one import,

    from rlipv2.torch import MSDeformAttnFunction

and the module's ``MSDeformAttnFunction.apply(value, value_spatial_shapes,
value_level_start_index, sampling_locations, attention_weights, im2col_step)`` runs on rlipv2's
kernels, forward and backward, with no CUDA extension to build.

float32 tensors run on ``MSDeformAttnFunction.backend`` (default ``"auto"``; set it to ``"cpu"``,
``"wgpu"``, ``"cubecl-wgpu"``, ``"cubecl-cuda"``); float64 tensors run on the f64 reference (for
``torch.autograd.gradcheck``). Tensors must be on the CPU. ``im2col_step`` is accepted for the
signature and ignored (it only chunks the batch in the official CUDA op).
"""

import torch
from torch.autograd.function import once_differentiable

from . import ms_deform_attn, ms_deform_attn_backward

__all__ = ["MSDeformAttnFunction"]


class MSDeformAttnFunction(torch.autograd.Function):
    """``apply(value, value_spatial_shapes, value_level_start_index, sampling_locations,
    attention_weights, im2col_step) -> output [B,Q,M·D]``; differentiable in ``value``,
    ``sampling_locations`` and ``attention_weights`` (deterministic gradients)."""

    backend = "auto"

    @staticmethod
    def _backend(value):
        return "reference" if value.dtype == torch.float64 else MSDeformAttnFunction.backend

    @staticmethod
    def forward(ctx, value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights,
                im2col_step):
        ctx.save_for_backward(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                              attention_weights)
        return ms_deform_attn(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                              attention_weights, backend=MSDeformAttnFunction._backend(value))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, shapes, starts, loc, weights = ctx.saved_tensors
        gv, gl, gw = ms_deform_attn_backward(value, shapes, starts, loc, weights, grad_output.contiguous(),
                                             backend=MSDeformAttnFunction._backend(value))
        return gv, None, None, gl, gw, None
