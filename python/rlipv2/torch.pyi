from typing import Any, ClassVar

import torch

class MSDeformAttnFunction(torch.autograd.Function):
    backend: ClassVar[str]
    @staticmethod
    def apply(
        value: torch.Tensor,
        value_spatial_shapes: torch.Tensor,
        value_level_start_index: torch.Tensor,
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor,
        im2col_step: int,
    ) -> torch.Tensor: ...
    @staticmethod
    def forward(ctx: Any, *args: Any) -> torch.Tensor: ...
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any: ...
