"""`rlipv2.torch.MSDeformAttnFunction` swapped into a module that calls the function the way the
official `MSDeformAttn` does, against the same module on PyTorch's grid_sample formulation;
`torch.autograd.gradcheck` in float64 through the reference backend."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from rlipv2.torch import MSDeformAttnFunction  # noqa: E402


class GridSampleFunction:
    """The original the swap replaces: the op written with PyTorch's own grid_sample (what the
    official code falls back to without its CUDA extension), same `apply` signature."""

    @staticmethod
    def apply(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step):
        b, _, m, d = value.shape
        _, q, _, l, p, _ = sampling_locations.shape
        levels = [(int(h), int(w)) for h, w in spatial_shapes]
        per_level = value.split([h * w for h, w in levels], dim=1)
        grid = 2 * sampling_locations - 1
        sampled = []
        for i, (h, w) in enumerate(levels):
            v = per_level[i].flatten(2).transpose(1, 2).reshape(b * m, d, h, w)
            g = grid[:, :, :, i].transpose(1, 2).flatten(0, 1)
            sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
        a = attention_weights.transpose(1, 2).reshape(b * m, 1, q, l * p)
        out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(b, m * d, q)
        return out.transpose(1, 2).contiguous()


class DeformAttn(nn.Module):
    """Multi-scale deformable attention with the official module's structure and call: value,
    offset, weight and output projections; locations = reference + offset / (W, H); the
    function called as `Function.apply(value, shapes, level_start_index, locations, weights,
    im2col_step)`."""

    def __init__(self, function, d_model=32, levels=3, heads=4, points=2):
        super().__init__()
        self.function, self.levels, self.heads, self.points = function, levels, heads, points
        self.im2col_step = 64
        self.sampling_offsets = nn.Linear(d_model, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d_model, heads * levels * points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query, reference_points, input_flatten, spatial_shapes, level_start_index):
        n, q, _ = query.shape
        _, s, _ = input_flatten.shape
        value = self.value_proj(input_flatten).view(n, s, self.heads, -1)
        offsets = self.sampling_offsets(query).view(n, q, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(n, q, self.heads, self.levels * self.points)
        weights = F.softmax(weights, -1).view(n, q, self.heads, self.levels, self.points)
        normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        out = self.function.apply(value, spatial_shapes, level_start_index, locations, weights, self.im2col_step)
        return self.output_proj(out)


def inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    shapes = torch.tensor([[6, 7], [3, 4], [1, 2]], dtype=torch.long)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    src = torch.randn(2, s, 32, generator=g, dtype=dtype)
    query = torch.randn(2, 20, 32, generator=g, dtype=dtype)
    ref = torch.rand(2, 20, 3, 2, generator=g, dtype=dtype)
    return query, ref, src, shapes, starts


def test_one_import_swap_matches_the_original_forward_and_gradients():
    torch.manual_seed(0)
    original = DeformAttn(GridSampleFunction)
    swapped = DeformAttn(MSDeformAttnFunction)
    swapped.load_state_dict(original.state_dict())
    MSDeformAttnFunction.backend = "cpu"
    query, ref, src, shapes, starts = inputs()
    outs, grads = [], []
    for module in (original, swapped):
        module.zero_grad()
        q = query.clone().requires_grad_(True)
        out = module(q, ref, src, shapes, starts)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append([q.grad] + [p.grad for p in module.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradcheck_in_float64_through_the_reference():
    g = torch.Generator().manual_seed(4)
    shapes = torch.tensor([[4, 5], [2, 3]], dtype=torch.long)
    starts = torch.tensor([0, 20], dtype=torch.long)
    value = torch.randn(1, 26, 2, 8, generator=g, dtype=torch.float64, requires_grad=True)
    # locations away from pixel-centre lines, where the bilinear kernel is not differentiable
    loc = (torch.rand(1, 3, 2, 2, 2, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    w = torch.rand(1, 3, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, l, a: MSDeformAttnFunction.apply(v, shapes, starts, l, a, 64), (value, loc, w), eps=1e-6, atol=1e-5
    )


def test_cuda_tensors_and_wrong_dtypes_are_errors_not_crashes():
    query, ref, src, shapes, starts = inputs()
    value = src.view(2, -1, 4, 8)
    loc = torch.rand(2, 20, 4, 3, 2, 2)
    w = torch.rand(2, 20, 4, 3, 2)
    with pytest.raises(ValueError, match="tensor `attention_weights` has dtype torch.float16"):
        MSDeformAttnFunction.apply(value, shapes, starts, loc, w.half(), 64)
    with pytest.raises(ValueError, match="tensor `spatial_shapes` has dtype float32"):
        MSDeformAttnFunction.apply(value, shapes.float(), starts, loc, w, 64)
