"""The grid-cell RNN of Sorscher, Mel, Ganguli & Ocko (NeurIPS 2019): path integration with a ReLU RNN.

    g_0     = W_enc p(x_0)                               (no nonlinearity, no bias)
    g_t     = phi(W_hh g_{t-1} + W_ih v_t)               (phi = ReLU; no bias)
    z_t     = W_dec g_t                                  (logits over place cells)
    loss    = -sum_j p_j(x_t) log softmax(z_t)_j         (see tasks.path_integration)

Shapes: velocity ``v [B, T, 2]`` (m per step), initial place-cell code ``p [B, Np]``, hidden
``g [B, T, N]``, logits ``[B, T, Np]``. Weight decay applies to ``W_hh`` only
(:meth:`GridRNN.optimizer_param_groups`).

Provides :class:`~zoo.analysis.protocols.RecurrentDynamics` (state ``g``, input ``v``; ``step``
reproduces ``forward`` exactly) and :class:`~zoo.analysis.protocols.SpatialMaps` (ratemaps of every
unit from fresh trajectories, binned by :func:`zoo.analysis.gridness.ratemaps`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from tqdm.auto import tqdm
from torch import nn

from ..registry import register
from . import recurrent_cells as cells

_NONLINEARITIES = {"relu": torch.relu, "tanh": torch.tanh}


class GridRNN(nn.Module):
    """``forward(velocity [B,T,2], init_code [B,Np]) -> logits [B,T,Np]``; ``hidden(...) -> g [B,T,N]``."""

    def __init__(self, hidden_size: int = 4096, n_place_cells: int = 512, activation: str = "relu",
                 seed: int = 0, init: str = "pytorch"):
        super().__init__()
        if activation not in _NONLINEARITIES:
            raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(_NONLINEARITIES)}")
        if init not in ("pytorch", "glorot", "identity"):
            raise ValueError(f"unknown init {init!r}; choose 'pytorch' (the authors' PyTorch code), 'glorot' "
                             "(their TensorFlow code and the grid-producing replications) or 'identity'")
        if hidden_size < 1 or n_place_cells < 1:
            raise ValueError(f"hidden_size and n_place_cells must be positive, got {hidden_size}, {n_place_cells}")
        self.activation, self.phi = activation, _NONLINEARITIES[activation]
        self.hidden_size, self.n_place_cells = hidden_size, n_place_cells
        self.state_size, self.input_size = hidden_size, 2
        # PyTorch's defaults for Linear / RNN: U(-1/sqrt(fan), 1/sqrt(fan)), from a seeded generator.
        g = torch.Generator().manual_seed(seed)

        def uniform(shape, fan):
            bound = 1.0 / math.sqrt(fan)
            return nn.Parameter((torch.rand(*shape, generator=g) * 2 - 1) * bound)

        self.encoder = uniform((hidden_size, n_place_cells), n_place_cells)
        # torch's fused RNN kernel (as the authors' nn.RNN); weights drawn from the seeded generator
        self.rnn = nn.RNN(2, hidden_size, nonlinearity=activation, bias=False, batch_first=True)
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(uniform((hidden_size, 2), hidden_size))
            self.rnn.weight_hh_l0.copy_(uniform((hidden_size, hidden_size), hidden_size))
            if init == "identity":  # IRNN start (Le et al. 2015): activity neither dies nor explodes
                self.rnn.weight_hh_l0.copy_(torch.eye(hidden_size))
            elif init == "glorot":  # W_hh only (the other weights keep PyTorch's start): U(+-sqrt(6 / 2N)), radius ~1
                self.rnn.weight_hh_l0.copy_(uniform((hidden_size, hidden_size), hidden_size) * math.sqrt(3))
        self.decoder = uniform((n_place_cells, hidden_size), hidden_size)

    @property
    def weight_hh(self) -> nn.Parameter:
        """Recurrent weights ``W_hh [N, N]``."""
        return self.rnn.weight_hh_l0

    @property
    def weight_ih(self) -> nn.Parameter:
        """Input (velocity) weights ``W_ih [N, 2]``."""
        return self.rnn.weight_ih_l0

    # -- forward -------------------------------------------------------------------------------
    def initial_state(self, init_code: torch.Tensor) -> torch.Tensor:
        """``g_0 = W_enc p(x_0)``: ``[B, Np] -> [B, N]``."""
        if init_code.dim() != 2 or init_code.shape[-1] != self.n_place_cells:
            raise ValueError(f"init_code must be [B, {self.n_place_cells}], got {tuple(init_code.shape)}")
        return init_code @ self.encoder.T

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step ``g_t = phi(W_hh g_{t-1} + W_ih v_t)`` on ``h [B, N]``, ``x [B, 2]``."""
        return self.phi(h @ self.weight_hh.T + x @ self.weight_ih.T)

    def state_jacobian(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``dF/dh = diag(phi'(pre)) W_hh``, ``[B, N, N]``, in closed form."""
        return self._jacobian(h, x, self.weight_hh)

    def input_jacobian(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``dF/dx = diag(phi'(pre)) W_ih``, ``[B, N, 2]``."""
        return self._jacobian(h, x, self.weight_ih)

    def _jacobian(self, h: torch.Tensor, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        pre = h @ self.weight_hh.T + x @ self.weight_ih.T
        if self.activation == "relu":
            return cells.relu_jacobian(pre, matrix)
        return cells.tanh_jacobian(torch.tanh(pre), matrix)

    def hidden(self, velocity: torch.Tensor, init_code: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, T, N]`` (after the nonlinearity) for ``velocity [B, T, 2]``."""
        if velocity.dim() != 3 or velocity.shape[-1] != 2:
            raise ValueError(f"velocity must be [B, T, 2], got {tuple(velocity.shape)}")
        if not torch.isfinite(velocity).all():
            raise ValueError("velocity holds NaN or inf")
        h = self.initial_state(init_code)
        if h.shape[0] != velocity.shape[0]:
            raise ValueError(f"batch sizes differ: velocity {velocity.shape[0]}, init_code {h.shape[0]}")
        return self.rnn(velocity, h[None])[0]

    def forward(self, velocity: torch.Tensor, init_code: torch.Tensor) -> torch.Tensor:
        return self.hidden(velocity, init_code) @ self.decoder.T

    # -- training ------------------------------------------------------------------------------
    def optimizer_param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Weight decay on ``W_hh`` only. The authors add ``weight_decay * ||W_hh||^2`` to the loss,
        whose gradient is ``2 * weight_decay * W_hh``; the optimizer's (coupled, Adam) decay adds
        ``lambda * W_hh``, so ``lambda = 2 * weight_decay`` reproduces their objective."""
        others = [self.encoder, self.weight_ih, self.decoder]
        return [{"params": [self.weight_hh], "weight_decay": 2.0 * weight_decay},
                {"params": others, "weight_decay": 0.0}]

    # -- protocols -----------------------------------------------------------------------------
    def visited_states(self, batch) -> torch.Tensor:
        """States ``[B * T, N]`` visited on a task batch ``(velocity, init_code, ...)``."""
        with torch.no_grad():
            return self.hidden(batch[0], batch[1]).reshape(-1, self.hidden_size)

    @torch.no_grad()
    def spatial_maps(self, task, n_positions: int = 200_000, bins: int = 20, seed: int = 12345,
                     batch_size: int = 500):
        """Ratemaps ``[N, bins, bins]`` of every unit (mean activity per position bin, rows = y,
        columns = x) from ``n_positions`` positions of fresh trajectories of ``task``. The initial
        state encodes the start's place-cell code, so ``task`` is the one the network was trained on,
        place cells included: ``zoo.task(NAME)`` for a zoo entry."""
        from zoo.analysis.gridness import ratemaps
        from zoo.analysis.protocols import MapStack

        if n_positions < 1 or bins < 2:
            raise ValueError(f"need n_positions >= 1 and bins >= 2, got {n_positions}, {bins}")
        g = torch.Generator().manual_seed(seed)
        per_batch = batch_size * task.sequence_length
        n_batches = max(1, math.ceil(n_positions / per_batch))
        sums = torch.zeros(self.hidden_size, bins * bins, dtype=torch.float64)
        counts = torch.zeros(bins * bins, dtype=torch.float64)
        for _ in tqdm(range(n_batches), desc="ratemaps", leave=False, disable=None):  # shown on a terminal
            velocity, init_code, _, position = task.make_batch(g, batch_size)
            states = self.hidden(velocity, init_code).reshape(-1, self.hidden_size)
            s, c = ratemaps(position.reshape(-1, 2), states, bins, task.extent, reduce="sum")
            sums += s.reshape(self.hidden_size, -1).double()
            counts += c.reshape(-1).double()
        maps = (sums / counts).where(counts > 0, torch.full_like(sums, float("nan")))
        return MapStack(maps=maps.reshape(self.hidden_size, bins, bins).float(), extent=task.extent, units="m")


_PAPER_RECIPE = "`zoo train path-integration/rnn-relu --set hidden_size=4096 --max-steps 100000`"
# the authors' recipe (PAPERS.md): the entries' `zoo train` defaults; the shipped networks' cards give the
# command that remade them on CPU (smaller, faster learning rate, fewer steps)
_RECIPE = {"batch_size": 200, "lr": 1e-4, "optimizer": "adam", "weight_decay": 1e-4, "max_steps": 5000,
           "limit_val_batches": 2, "eval_batch_size": 200, "storage_dtype": "float16", "probe_every_n_steps": 1000}
# the authors' place cells: their code's draw of the 512 centres (np.random.seed(0)); the task class's
# default layout (torch.Generator(0)) gave lattices sheared one way (README, "Sheared grids")
_register_grid_entry = partial(register, task="path-integration", weights="file", paper="sorscher2019", recipe=_RECIPE,
                               task_kwargs={"centre_layout": "numpy"})


@_register_grid_entry(
    "path-integration/rnn-relu",
    description="ReLU RNN path integrator (Sorscher et al. 2019): velocity in, DoG place-cell code out; "
                "hexagonal grid cells emerge in the hidden layer.",
    notes="Trained on the authors' task and place cells (their code's draw of the 512 centres, the entries' "
          "`centre_layout=numpy`), smaller and shorter-trained than the paper's network to fit one CPU core: 512 units "
          "(paper 4096), 24k steps (paper 100k), Adam lr 1e-3 decaying smoothly to 1e-4 over the run (paper: 1e-4 "
          "throughout), products in bfloat16 (bf16-mixed); the authors' start (PyTorch's uniform weights), weight "
          "decay 1e-4 on W_hh, batch 200 and 20-step trajectories as theirs; training seed 1. Its units form "
          "hexagonal grid cells beyond chance, and it meets issue 13's gridness and dead-unit targets but not the "
          "grid spacing (0.98 m against the predicted 0.739 m) or the spectrum peak (at the lowest shell: most maps "
          "also carry box-scale modulation): see the README's grid-cell section, which also gives the constant-rate "
          "runs and the networks trained on the zoo's earlier place-cell centres. The card's command remakes it; "
          + _PAPER_RECIPE + " runs the paper's recipe.",
)
def rnn_relu(hidden_size: int = 512, n_place_cells: int | None = None, activation: str = "relu",
             seed: int = 0, init: str = "pytorch") -> GridRNN:
    """ReLU RNN of the grid-cell paper (no bias, encoder of the initial place-cell code, decoder).

    ``init="pytorch"`` is the authors' start (PyTorch's default uniform weights, the shipped
    network's); ``"glorot"`` gives ``W_hh`` spectral radius ~1; ``"identity"`` starts ``W_hh`` at the
    identity."""
    return GridRNN(hidden_size, n_place_cells or 512, activation, seed, init)


@_register_grid_entry(
    "path-integration/rnn-tanh",
    description="tanh twin of path-integration/rnn-relu (same task, size, start and recipe): the paper's control; "
                "without ReLU's non-negativity the theory predicts no hexagonal grids.",
    notes="Trained with exactly the shipped ReLU network's command but tanh units (the authors' place-cell centres, "
          "512 units, the authors' start, Adam lr 1e-3 decaying to 1e-4 over 24k steps, bf16-mixed, seed 1). It does "
          "not path-integrate: its loss spiked at step ~760 (to 6.47; the README's 'Why the tanh network's loss "
          "spikes' replays such a spike step by step), and it then stayed near the loss plateau (6.235 of 6.238 "
          "at chance; decoding error 84 cm against the ReLU network's 6.7 cm). So the pair does not test the "
          "paper's claim that tanh networks path-integrate without grids; the pattern-formation theory shows that "
          "contrast (report). At a constant lr 1e-3 the same network had left the plateau by 24k steps (38 cm), with gridness at chance.",
)
def rnn_tanh(hidden_size: int = 512, n_place_cells: int | None = None, seed: int = 0,
             init: str = "pytorch") -> GridRNN:
    """The ReLU entry's network with ``tanh`` units (``g_t = tanh(W_hh g_{t-1} + W_ih v_t)``)."""
    return GridRNN(hidden_size, n_place_cells or 512, "tanh", seed, init)
