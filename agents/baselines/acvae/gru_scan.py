"""A GRU run only where it is needed: each row from its own start column to the end.

ACVAE's two GRUs read left-padded windows, and on short-history data (Amazon: a median of 4
training items in windows of 50) most of a batch is padding that no loss reads. Running
``nn.GRU`` over the whole grid wastes that work; packing it (``pack_padded_sequence``) skips
it but pays for per-step autograd nodes, the shifting gathers and an extra one-row run for the
padding prefix. :func:`suffix_gru` computes the same states with a hand-written recurrence
(:class:`_SuffixGRU`): rows sorted by start column, so the rows active at column ``t`` are a
prefix of that order that only grows; the input projection is one matmul over the active
positions; the backward pass is the usual BPTT with one ``(rows, 3H) @ (3H, H)`` matmul per
column and the weight gradient as a single matmul at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def suffix_gru(gru: nn.GRU, inputs: Tensor, start: Tensor, *, zero_prefix: bool) -> Tensor:
    """States of ``gru`` on ``inputs`` at columns ``start[r]..L-1`` of each row ``r``.

    Args:
        gru: a one-layer, unidirectional ``nn.GRU`` with biases (``batch_first`` or not; the
            layout here is always ``(R, L, D)``).
        inputs: ``(R, L, D)``.
        start: ``(R,)`` int, the first column of each row (``>= L``: the row is never run).
        zero_prefix: what a row's state is before its start column: ``False`` = zero (the
            GRU starts afresh there, as on a sequence that begins at ``start``); ``True`` = the
            state after that many all-zero inputs (as ``gru`` over the whole row when the inputs
            before ``start`` are zero): one all-zero row is run along and joiners copy it.

    Returns:
        ``(R, L, H)``: ``gru``'s output states at the run positions, zero elsewhere. Up to
        float rounding, equal there to ``gru(x)[0]`` on the row (``zero_prefix=True``) or on
        its suffix (``False``), with the same gradients.
    """
    if gru.num_layers != 1 or gru.bidirectional or not gru.bias or gru.proj_size:
        raise ValueError("suffix_gru needs a one-layer, unidirectional nn.GRU with biases")
    rows, length, dim = inputs.shape
    if zero_prefix:  # row 0: all zeros from column 0; its states are what joiners start from
        inputs = torch.cat([inputs.new_zeros(1, length, dim), inputs])
        start = torch.cat([start.new_zeros(1), start])
    order = torch.sort(start.clamp(max=length), stable=True).indices  # row 0 stays first
    steps = torch.arange(length, device=inputs.device)
    active = start[order].unsqueeze(0) <= steps.unsqueeze(1)  # (L, R'): a growing prefix
    t, i = active.nonzero(as_tuple=True)  # column-major: column by column, rows in order
    flat = order[i] * length + t
    sizes = [n for n in active.sum(dim=1).tolist() if n > 0]
    x = inputs.reshape(-1, dim).index_select(0, flat)  # (N, D): the active positions only
    gi = F.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
    states = _SuffixGRU.apply(gi, gru.weight_hh_l0, gru.bias_hh_l0, sizes, zero_prefix)
    grid = states.new_zeros(len(inputs) * length, states.shape[1]).index_put((flat,), states)
    grid = grid.view(len(inputs), length, -1)
    return grid[1:] if zero_prefix else grid


class _SuffixGRU(torch.autograd.Function):
    """The GRU recurrence on packed input projections ``gi`` (``(N, 3H)``, column-major).

    Column ``t`` holds ``sizes[t]`` rows, a prefix of the previous column's rows plus joiners
    at the end; joiners start from zero or, with ``copy_first``, from row 0's state. Gates as
    ``nn.GRU``: ``r, u = sigmoid(gi_ru + gh_ru)``, ``c = tanh(gi_n + r * gh_n)``,
    ``h' = c + u * (h - c)`` with ``gh = h W_hh^T + b_hh``.
    """

    @staticmethod
    def forward(ctx, gi, weight_hh, bias_hh, sizes, copy_first):  # noqa: ANN001
        n_all, hidden = gi.shape[0], weight_hh.shape[1]
        out, prev = gi.new_empty(n_all, hidden), gi.new_empty(n_all, hidden)
        gates, ghn = gi.new_empty(n_all, 3 * hidden), gi.new_empty(n_all, hidden)
        h, lo, w_t = gi.new_zeros(0, hidden), 0, weight_hh.t()
        for n in sizes:
            if n > len(h):  # joiners, at the end of the prefix
                join = h[:1] if copy_first and len(h) else h.new_zeros(1, hidden)
                h = torch.cat([h, join.expand(n - len(h), hidden)])
            g, gh = gi[lo : lo + n], torch.addmm(bias_hh, h, w_t)
            ru = torch.sigmoid(g[:, : 2 * hidden] + gh[:, : 2 * hidden])
            c = torch.tanh(torch.addcmul(g[:, 2 * hidden :], ru[:, :hidden], gh[:, 2 * hidden :]))
            prev[lo : lo + n], ghn[lo : lo + n] = h, gh[:, 2 * hidden :]
            gates[lo : lo + n, : 2 * hidden], gates[lo : lo + n, 2 * hidden :] = ru, c
            h = torch.addcmul(c, ru[:, hidden:], h - c)
            out[lo : lo + n] = h
            lo += n
        ctx.save_for_backward(weight_hh, prev, gates, ghn)
        ctx.sizes, ctx.copy_first = sizes, copy_first
        return out

    @staticmethod
    def backward(ctx, d_out):  # noqa: ANN001
        weight_hh, prev, gates, ghn = ctx.saved_tensors
        sizes, hidden = ctx.sizes, weight_hh.shape[1]
        d_gi, d_gh = torch.empty_like(gates), torch.empty_like(gates)
        carry, hi = d_out.new_zeros(sizes[-1] if sizes else 0, hidden), len(d_out)
        for step in range(len(sizes) - 1, -1, -1):
            n = sizes[step]
            lo = hi - n
            r, u, c = (gates[lo:hi, k * hidden : (k + 1) * hidden] for k in range(3))
            dh = d_out[lo:hi] + carry
            d_pre_n = dh * (1 - u) * (1 - c * c)  # through c = tanh(pre_n)
            d_gi[lo:hi, :hidden] = d_pre_n * ghn[lo:hi] * r * (1 - r)
            d_gi[lo:hi, hidden : 2 * hidden] = dh * (prev[lo:hi] - c) * u * (1 - u)
            d_gi[lo:hi, 2 * hidden :] = d_pre_n
            d_gh[lo:hi, : 2 * hidden] = d_gi[lo:hi, : 2 * hidden]
            d_gh[lo:hi, 2 * hidden :] = d_pre_n * r
            d_prev = torch.addmm(dh * u, d_gh[lo:hi], weight_hh)
            kept = sizes[step - 1] if step > 0 else 0
            carry = d_prev[:kept]
            if ctx.copy_first and kept and n > kept:  # joiners copied row 0's state
                carry = carry.clone()
                carry[0] += d_prev[kept:].sum(dim=0)
            hi = lo
        return d_gi, d_gh.t() @ prev, d_gh.sum(dim=0), None, None
