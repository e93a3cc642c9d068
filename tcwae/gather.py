"""The all-gather of codes across DDP ranks that keeps gradients, so that every rank evaluates the
latent terms on the global batch (`mws_scope: global`): DDP averages gradients over ranks while
this gather's backward sums them, so the averaged gradient is the single-process one."""

from __future__ import annotations

import torch
import torch.distributed as dist


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this rank's share of the summed gradient.

    Every rank's loss depends on every rank's rows, so the gradient of a row is the sum over
    ranks of the gradients flowing into its copies (all-reduce, then take our slice).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `tensor` (equal shapes) along dim 0, differentiably."""
    return _GatherWithGrad.apply(tensor)
