"""A small GRU trained on the 3-bit flip-flop task (Sussillo & Barak 2013; Golub & Sussillo 2018).

GRU update (PyTorch's convention), on the state ``h [B, N]`` and input ``x [B, n_bits]``::

    r  = sigmoid(W_r x + U_r h + b_r)
    z  = sigmoid(W_z x + U_z h + b_z)
    n  = tanh(W_n x + b_in + r * (U_n h + b_hn))
    h' = (1 - z) * n + z * h                       output  y = W_out h' + b_out

``forward`` runs exactly :meth:`FlipFlopGRU.step` over time, so the
:class:`~zoo.analysis.protocols.RecurrentDynamics` view and the trained network are the same map.
A trained network has 8 stable fixed points (one per stored 3-bit word) at zero input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..registry import register
from .recurrent_cells import gru_jacobian, gru_update


class FlipFlopGRU(nn.Module):
    """``forward(inputs [B, T, n_bits]) -> outputs [B, T, n_bits]``; state size ``hidden``."""

    def __init__(self, n_bits: int = 3, hidden: int = 16, seed: int = 0):
        super().__init__()
        if n_bits < 1 or hidden < 1:
            raise ValueError(f"n_bits and hidden must be positive, got {n_bits}, {hidden}")
        g = torch.Generator().manual_seed(seed)
        bound = hidden ** -0.5

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter((torch.rand(shape, generator=g) * 2 - 1) * bound)

        self.state_size, self.input_size, self.n_bits = hidden, n_bits, n_bits
        self.weight_ih, self.weight_hh = uniform(3 * hidden, n_bits), uniform(3 * hidden, hidden)
        self.bias_ih, self.bias_hh = uniform(3 * hidden), uniform(3 * hidden)
        self.readout = nn.Linear(hidden, n_bits)
        with torch.no_grad():
            self.readout.weight.copy_(uniform(n_bits, hidden))
            self.readout.bias.zero_()

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, self.state_size, dtype=self.weight_hh.dtype)

    def state_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(-1, 1)`` per unit: a GRU's update mixes the previous state with a tanh."""
        return -torch.ones(self.state_size, dtype=torch.float64), torch.ones(self.state_size, dtype=torch.float64)

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One GRU update ``h [B, N], x [B, n_bits] -> h' [B, N]``."""
        return gru_update(h, x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh)

    def state_jacobian(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``dF/dh [B, N, N]`` of :meth:`step` in closed form (:func:`recurrent_cells.gru_jacobian`)."""
        return gru_jacobian(h, x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh,
                            self.weight_hh, wrt_state=True)

    def input_jacobian(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``dF/dx [B, N, n_bits]`` of :meth:`step` in closed form."""
        return gru_jacobian(h, x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh,
                            self.weight_ih, wrt_state=False)

    def states(self, inputs: torch.Tensor) -> torch.Tensor:
        """Hidden states after each input, ``[B, T, N]``."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"expected inputs [B, T, {self.input_size}], got {tuple(inputs.shape)}")
        h = self.initial_state(inputs.shape[0])
        out = []
        for t in range(inputs.shape[1]):
            h = self.step(h, inputs[:, t])
            out.append(h)
        return torch.stack(out, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.readout(self.states(inputs))

    def visited_states(self, batch: Any) -> torch.Tensor:
        """All states visited on a task batch ``(inputs, targets)``, ``[B * T, N]``."""
        return self.states(batch[0]).reshape(-1, self.state_size)

    def readout_weights(self) -> torch.Tensor:
        return self.readout.weight.detach()

    def readout_bias(self) -> torch.Tensor:
        return self.readout.bias.detach()

    def input_sequences(self, batch: Any) -> tuple[torch.Tensor, None, None]:
        """``(pulses [B, T, n_bits], None, None)``: every trial runs its full length and has no class."""
        return batch[0], None, None

    def input_vocabulary(self) -> tuple[list[str], torch.Tensor]:
        """The ``2 n_bits`` pulses (``+1`` or ``-1`` on one channel) and their input vectors."""
        eye = torch.eye(self.n_bits, dtype=self.weight_ih.dtype)
        names = [f"{sign}bit{i + 1}" for sign in "+-" for i in range(self.n_bits)]
        return names, torch.cat([eye, -eye])


@register("flip-flop/gru", task="flip-flop", weights="file", paper="sussillo2013",
          recipe={"batch_size": 128, "lr": 1e-2, "max_steps": 1500, "gradient_clip_val": 1.0},
          notes="16 GRU units; a test bed for the fixed-point finder (8 stable points expected).")
def flip_flop_gru(n_bits: int = 3, hidden: int = 16, seed: int = 0) -> FlipFlopGRU:
    """A 16-unit GRU with a linear readout, trained on the 3-bit flip-flop task."""
    return FlipFlopGRU(n_bits=n_bits, hidden=hidden, seed=seed)
