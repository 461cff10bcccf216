"""Sentiment classifiers of Maheswaranathan et al. (NeurIPS 2019): four RNNs and a bag of words.

Every model embeds tokens, ``x_t = E[w_t]`` (``E`` : [V, E_dim], row 0 = padding = 0), and reads
out class logits linearly, ``z = W_out s + b_out`` (one logit for two classes,
``p(positive) = sigmoid(z)``; K logits otherwise). The recurrent models update a state
``h_{t+1} = F(h_t, x_t)`` from ``h_0 = 0`` and read out the state at each review's last real
token (padding never enters the state, so batching does not change results):

* vanilla: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (``torch.nn.RNN``)
* GRU:     ``r = s(W_ir x + b_ir + W_hr h + b_hr)``, ``u = s(W_iz x + b_iz + W_hz h + b_hz)``,
           ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - u) * n + u * h``
           (``torch.nn.GRU``)
* LSTM:    ``[i, f, g, o] = W_ih x + b_ih + W_hh h + b_hh``, ``c' = s(f) c + s(i) tanh(g)``,
           ``h' = s(o) tanh(c')``; flat state ``[h, c]`` (N = 2H), read out from ``h`` (PyTorch's
           convention) or, with ``readout_state="hc"``, from the whole ``[h, c]`` as in the authors'
           code (``torch.nn.LSTM``)
* UGRNN (update-gate RNN, Collins, Sohl-Dickstein & Sussillo, ICLR 2017):
           ``[c, g] = W_ix x + W_hh h + b``, ``h' = s(g + 1) * h + (1 - s(g + 1)) * tanh(c)``
           (``b`` initialised so the gate starts open towards memory, i.e. the +1 is a bias init)

``s`` is the logistic sigmoid. Each recurrent model provides
:class:`zoo.analysis.protocols.RecurrentDynamics` on flat states ``[B, N]``: ``step(h, x)``
reproduces the forward pass to float precision, ``visited_states``, ``initial_state``,
``embed``, ``readout_weights`` [C, N] / ``readout_bias`` [C] (zeros on an LSTM's ``c`` half),
``vocab`` and ``encode``. The bag of words, ``z = W_out mean_t(x_t) + b_out``, is not recurrent.

The vocabulary is part of the config (filled from the task at train time), so a loaded model
encodes raw text with no data present: ``model.predict(["a gripping film"]) -> [B, K]``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from zoo.tasks.sentiment import PAD_ID, encode_texts, tokenize, truncate as _truncate, UNK_ID

from ..registry import register
from . import recurrent_cells as cells

CELLS = ("vanilla", "gru", "lstm", "ugrnn")
_CHUNK = 2048  # tokens per streamed chunk when predict() sees a text longer than this and no max_len


class _TextModel(nn.Module):
    """Vocabulary, embedding and readout shared by every sentiment model."""

    def __init__(self, vocab: Sequence[str] | None, embed_size: int, num_classes: int | None, max_len: int | None,
                 truncate: str | None):
        super().__init__()
        if vocab is None:
            raise ValueError("a sentiment model needs its vocabulary: build it with zoo.load(...) or pass vocab=[...]")
        vocab = list(vocab)
        if len(vocab) < 2 or vocab[PAD_ID] != "<pad>" or vocab[UNK_ID] != "<unk>":
            raise ValueError("vocab must start with '<pad>', '<unk>' (as tasks.sentiment builds it)")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab holds duplicate words")
        num_classes = 2 if num_classes is None else int(num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.vocab = vocab
        self._index = {w: i for i, w in enumerate(vocab)}
        self.num_classes = num_classes
        self.num_outputs = 1 if num_classes == 2 else num_classes
        self.max_len = max_len
        self.truncate = truncate or "first"
        self.input_size = int(embed_size)
        self.embedding = nn.Embedding(len(vocab), embed_size, padding_idx=PAD_ID)

    # -- text ------------------------------------------------------------------------------
    def encode(self, texts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw strings -> ``(token ids [B, T] int64, lengths [B] int64)``, truncated as in training."""
        return encode_texts(texts, self._index, self.max_len, self.truncate)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``token_ids [...]`` -> embeddings ``[..., E]``."""
        return self.embedding(torch.as_tensor(token_ids, dtype=torch.int64))

    def _check_batch(self, ids: torch.Tensor, lengths: torch.Tensor) -> None:
        if ids.dim() != 2 or lengths.shape != ids.shape[:1]:
            raise ValueError(f"expected ids [B, T] and lengths [B], got {tuple(ids.shape)} and {tuple(lengths.shape)}")
        if len(lengths) and (int(lengths.min()) < 0 or int(lengths.max()) > ids.shape[1]):
            raise ValueError("lengths must lie in [0, T]")

    def logits_to_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` logits -> ``[B, K]`` class probabilities (K = 2 from one logit)."""
        if self.num_outputs == 1:
            p = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - p, p], dim=-1)
        return torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def predict(self, texts: str | Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``[B, K]`` for raw strings (``K = 2``: column 1 = positive).

        A bare string is one text. Non-strings raise ``TypeError``; an empty text or one of only
        unknown words gets the model's output for that input (the readout of the initial state,
        or of ``<unk>`` tokens). Texts are truncated to ``max_len`` as in training; with no
        ``max_len`` a long text streams through in chunks, so memory stays bounded.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence):
            raise TypeError(f"predict expects a string or a sequence of strings, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is a {type(t).__name__}, expected str")
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(texts), batch_size):
            seqs = [_truncate([self._index.get(w, UNK_ID) for w in tokenize(t)], self.max_len, self.truncate)
                    for t in texts[start:start + batch_size]]
            out.append(self.logits_to_probabilities(self._stream_logits(seqs)))
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.num_classes)

    def _stream_logits(self, seqs: list[list[int]]) -> torch.Tensor:
        raise NotImplementedError


def _at_last(outputs: torch.Tensor, lengths: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """``outputs [B, T, D]`` at each sequence's last real step ``lengths - 1``; ``empty [B, D]`` where
    a sequence has no token. Right padding comes after that step, so it never reaches the result."""
    index = (lengths - 1).clamp(min=0).to(outputs.device)
    last = outputs[torch.arange(len(outputs), device=outputs.device), index]
    return torch.where((lengths > 0).to(outputs.device)[:, None], last, empty)


def _pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    ids = torch.zeros(len(seqs), max(int(lengths.max()), 1) if len(seqs) else 1, dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.int64)
    return ids, lengths


class SentimentBoW(_TextModel):
    """Bag of words: ``z = W_out mean_t E[w_t] + b_out``; ``forward(ids [B, T], lengths [B]) -> [B, C]``."""

    def __init__(self, vocab=None, embed_size: int = 64, num_classes: int | None = None, max_len: int | None = None,
                 truncate: str | None = None, dropout: float = 0.0):
        super().__init__(vocab, embed_size, num_classes, max_len, truncate)
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(embed_size, self.num_outputs)

    def _sum(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(ids.shape[1]) < lengths[:, None]
        return (self.embedding(ids) * mask[..., None]).sum(1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self._check_batch(ids, lengths)
        mean = self._sum(ids, lengths) / lengths.clamp(min=1)[:, None]
        return self.readout(self.dropout(mean))

    def _stream_logits(self, seqs):
        total = torch.zeros(len(seqs), self.input_size)
        longest = max((len(s) for s in seqs), default=0)
        for start in range(0, max(longest, 1), _CHUNK):
            ids, lengths = _pad([s[start:start + _CHUNK] for s in seqs])
            total += self._sum(ids, lengths)
        counts = torch.tensor([max(len(s), 1) for s in seqs], dtype=torch.float32)
        return self.readout(total / counts[:, None])


class SentimentRNN(_TextModel):
    """A recurrent sentiment classifier (``cell`` in vanilla, gru, lstm, ugrnn) with flat-state dynamics.

    ``forward(ids [B, T], lengths [B]) -> logits [B, C]``. State size ``N = H`` (``2H`` for LSTM).
    """

    def __init__(self, cell: str, vocab=None, hidden_size: int = 128, embed_size: int = 64,
                 num_classes: int | None = None, max_len: int | None = None, truncate: str | None = None,
                 recurrent_init_gain: float = 1.0, dropout: float = 0.0, recurrent_init: str = "orthogonal",
                 recurrent_lr: float | None = None, readout_state: str = "h"):
        super().__init__(vocab, embed_size, num_classes, max_len, truncate)
        if readout_state not in ("h", "hc") or (readout_state == "hc" and cell != "lstm"):
            raise ValueError(f"readout_state is 'h', or 'hc' for an LSTM (read out [h, c]), got {readout_state!r}")
        self.readout_state = readout_state
        if recurrent_init not in ("orthogonal", "identity"):
            raise ValueError(f"recurrent_init is 'orthogonal' or 'identity', got {recurrent_init!r}")
        self.recurrent_lr = recurrent_lr
        self.dropout = nn.Dropout(dropout)  # on embeddings and the read-out state, training only
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose from {', '.join(CELLS)}")
        self.cell, self.hidden_size = cell, int(hidden_size)
        H, E = self.hidden_size, self.input_size
        self.state_size = 2 * H if cell == "lstm" else H
        nn.init.normal_(self.embedding.weight, std=1.0 / math.sqrt(E) * 2)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        if cell == "ugrnn":  # rows ordered [c; g]; the gate bias starts at +1 (leaning towards memory)
            bound = 1 / math.sqrt(H)
            self.weight_ih = nn.Parameter(torch.empty(2 * H, E).uniform_(-bound, bound))
            self.weight_hh = nn.Parameter(torch.empty(2 * H, H))
            self.bias = nn.Parameter(torch.cat([torch.zeros(H), torch.ones(H)]))
            for k in range(2):
                nn.init.orthogonal_(self.weight_hh.data[k * H:(k + 1) * H], gain=recurrent_init_gain)
        else:
            kind = {"vanilla": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
            self.rnn = kind(E, H, batch_first=True)
            gates = {"vanilla": 1, "gru": 3, "lstm": 4}[cell]
            for k in range(gates):
                block = self.rnn.weight_hh_l0.data[k * H:(k + 1) * H]
                if recurrent_init == "identity":  # an integrator to start from (Le et al. 2015, for tanh)
                    block.copy_(torch.eye(H) * recurrent_init_gain)
                else:
                    nn.init.orthogonal_(block, gain=recurrent_init_gain)
            if cell == "lstm":  # forget-gate bias 1 (Jozefowicz et al. 2015)
                with torch.no_grad():
                    self.rnn.bias_ih_l0[H:2 * H].fill_(1.0)
                    self.rnn.bias_hh_l0[H:2 * H].zero_()
            if cell == "vanilla":
                with torch.no_grad():
                    self.rnn.bias_hh_l0.zero_()
                    self.rnn.bias_ih_l0.zero_()
        self.readout = nn.Linear(self._readout_size, self.num_outputs)

    @property
    def _readout_size(self) -> int:
        """Dimensions of the state the readout sees: ``H``, or ``2H`` for an LSTM read out from ``[h, c]``."""
        return self.state_size if self.readout_state == "hc" else self.hidden_size

    def optimizer_param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer; recurrent weights get ``recurrent_lr`` when it is set
        (Adam moves every entry of an N x N matrix by about lr per step, so a vanilla RNN's spectrum
        shifts by about N * lr per step unless its recurrent learning rate is smaller)."""
        recurrent = [p for n, p in self.named_parameters() if "weight_hh" in n]
        others = [p for n, p in self.named_parameters() if "weight_hh" not in n]
        groups = [{"params": others, "weight_decay": weight_decay}]
        rec = {"params": recurrent, "weight_decay": weight_decay}
        if self.recurrent_lr is not None:
            rec["lr"] = self.recurrent_lr
        return groups + [rec]

    # -- RecurrentDynamics -----------------------------------------------------------------
    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The state every review starts from: zeros ``[B, N]``."""
        w = self.embedding.weight
        return torch.zeros(batch_size, self.state_size, dtype=w.dtype, device=w.device)

    def state_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low [N], high [N])``: from the zero initial state every cell's ``h`` stays in ``[-1, 1]``
        (a tanh, or a convex mix of tanh and the previous ``h``); an LSTM's cell ``c`` is unbounded."""
        high = torch.ones(self.state_size, dtype=torch.float64)
        if self.cell == "lstm":
            high[self.hidden_size:] = math.inf
        return -high, high

    def _weights(self):
        if self.cell == "ugrnn":
            return self.weight_ih, self.weight_hh, self.bias, None
        r = self.rnn
        return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One update ``h [B, N], x [B, E] -> h' [B, N]`` with the model's own weights (module docstring)."""
        w_ih, w_hh, b_ih, b_hh = self._weights()
        H = self.hidden_size
        if self.cell == "lstm":
            hh, c = h[..., :H], h[..., H:]
            i, f, g, o = (x @ w_ih.T + b_ih + hh @ w_hh.T + b_hh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)
        if self.cell == "vanilla":
            return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        if self.cell == "gru":
            return cells.gru_update(h, x @ w_ih.T + b_ih, h @ w_hh.T + b_hh)
        return self._ugrnn_update(h, x @ w_ih.T + b_ih)

    def state_jacobian(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``dF/dh [B, N, N]`` of :meth:`step` in closed form (:mod:`zoo.models.recurrent_cells`)."""
        return self._jacobian(h, x, wrt_state=True)

    def input_jacobian(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``dF/dx [B, N, E]`` of :meth:`step` in closed form."""
        return self._jacobian(h, x, wrt_state=False)

    def _jacobian(self, h: torch.Tensor, x: torch.Tensor, wrt_state: bool) -> torch.Tensor:
        w_ih, w_hh, b_ih, b_hh = self._weights()
        matrix = w_hh if wrt_state else w_ih
        H = self.hidden_size
        if self.cell == "gru":
            return cells.gru_jacobian(h, x @ w_ih.T + b_ih, h @ w_hh.T + b_hh, matrix, wrt_state)
        if self.cell == "lstm":
            hh, c = h[..., :H], h[..., H:]
            return cells.lstm_jacobian(c, x @ w_ih.T + b_ih + hh @ w_hh.T + b_hh, matrix, wrt_state)
        if self.cell == "vanilla":
            return cells.tanh_jacobian(self.step(h, x), matrix)
        return cells.ugrnn_jacobian(h, x @ w_ih.T + b_ih + h @ w_hh.T, matrix, wrt_state)

    def _ugrnn_update(self, h: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        c, g = (drive + h @ self.weight_hh.T).chunk(2, dim=-1)
        gate = torch.sigmoid(g)
        return gate * h + (1 - gate) * torch.tanh(c)

    def _ugrnn_as_gru(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the UGRNN over ``x [B, T, E]`` from ``h0 [B, H]`` with the fused GRU kernel.

        A GRU whose reset gate is pinned open (``r = sigmoid(100) = 1`` exactly in float32 and
        float64) is a UGRNN: ``n = tanh(W_c x + b_c + U_c h)`` and ``u = sigmoid(W_g x + b_g + U_g h)``
        are the candidate and the update gate. The reset rows are constants, not parameters.
        Returns ``(outputs [B, T, H], h_T [B, H])``.
        """
        H = self.hidden_size
        w_c, w_g = self.weight_ih.chunk(2)
        u_c, u_g = self.weight_hh.chunk(2)
        b_c, b_g = self.bias.chunk(2)
        zeros_ih, zeros_hh = w_c.new_zeros(H, w_c.shape[1]), u_c.new_zeros(H, H)
        params = [torch.cat([zeros_ih, w_g, w_c]), torch.cat([zeros_hh, u_g, u_c]),
                  torch.cat([b_c.new_full((H,), 100.0), b_g, b_c]), self.bias.new_zeros(3 * H)]
        out, hn = torch._VF.gru(x, h0[None].contiguous(), params, True, 1, 0.0, self.training, False, True)
        return out, hn[0]

    def readout_weights(self) -> torch.Tensor:
        """``[C, N]``: logits = ``readout_weights() @ state + readout_bias()`` (zeros on an LSTM's c
        unless it reads out ``[h, c]``)."""
        w = self.readout.weight
        return torch.cat([w, torch.zeros_like(w)], dim=1) if w.shape[1] < self.state_size else w

    def readout_bias(self) -> torch.Tensor:
        return self.readout.bias

    def input_sequences(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(embeddings [B, T, E], lengths [B], labels [B])`` of a task batch ``(ids, lengths, labels)``."""
        return self.embed(batch[0]).detach(), batch[1], batch[2]

    def input_vocabulary(self) -> tuple[list[str], torch.Tensor]:
        """Every word and its embedding ``[V, E]``: the inputs whose push along the line is reported."""
        return self.vocab, self.embed(torch.arange(len(self.vocab))).detach()

    @torch.no_grad()
    def visited_states(self, batch: Any, max_states: int | None = None) -> torch.Tensor:
        """States ``[M, N]`` visited on ``batch`` (a task batch ``(ids, lengths, ...)`` or a list of
        texts), after each real token, padding excluded; at most ``max_states`` rows (the first ones)."""
        if isinstance(batch, (list, tuple)) and batch and all(isinstance(t, str) for t in batch):
            ids, lengths = self.encode(batch)
        else:
            ids, lengths = batch[0], batch[1]
        x = self.embed(ids)
        h = self.initial_state(ids.shape[0])
        states = []
        for t in range(ids.shape[1]):
            h = self.step(h, x[:, t])
            states.append(h[t < lengths])
        out = torch.cat(states) if states else torch.zeros(0, self.state_size)
        return out[:max_states] if max_states is not None else out

    # -- forward ---------------------------------------------------------------------------
    def final_state(self, ids: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """Flat state ``[B, N]`` after each review's last real token (``h0`` if it has none)."""
        self._check_batch(ids, lengths)
        B, H = ids.shape[0], self.hidden_size
        h0 = self.initial_state(B) if h0 is None else h0
        x = self.dropout(self.embed(ids))
        if self.cell == "ugrnn":
            return _at_last(self._ugrnn_as_gru(x, h0)[0], lengths, h0)
        if bool((lengths == ids.shape[1]).all()):  # no padding (one streamed text): unpacked is faster
            if self.cell == "lstm":
                _, (hn, cn) = self.rnn(x, (h0[:, :H][None].contiguous(), h0[:, H:][None].contiguous()))
                return torch.cat([hn[0], cn[0]], dim=-1)
            return self.rnn(x, h0[None].contiguous())[1][0]
        nonempty = lengths > 0
        if not bool(nonempty.any()):
            return h0
        packed = pack_padded_sequence(x[nonempty], lengths[nonempty].cpu(), batch_first=True, enforce_sorted=False)
        start = h0[nonempty]
        if self.cell == "lstm":
            _, (hn, cn) = self.rnn(packed, (start[:, :H][None].contiguous(), start[:, H:][None].contiguous()))
            last = torch.cat([hn[0], cn[0]], dim=-1)
        else:
            _, hn = self.rnn(packed, start[None].contiguous())
            last = hn[0]
        if bool(nonempty.all()):
            return last
        return h0.index_put((nonempty.nonzero()[:, 0],), last)

    def _lstm_states(self, x: torch.Tensor) -> torch.Tensor:
        """Every flat LSTM state ``[B, T, 2H]`` (``[h_t, c_t]``) over ``x [B, T, E]`` from rest.

        The fused kernel returns ``c`` only at the last step, and on CPU its packed-sequence
        backward pass is 20x slower than this per-step loop of fused cells (1.4x the unpacked kernel)."""
        w_ih, w_hh, b_ih, b_hh = self._weights()
        h = c = x.new_zeros(x.shape[0], self.hidden_size)
        states = []
        for t in range(x.shape[1]):
            h, c = torch.lstm_cell(x[:, t], (h, c), w_ih, w_hh, b_ih, b_hh)
            states.append(torch.cat([h, c], dim=-1))
        return torch.stack(states, dim=1) if states else x.new_zeros(x.shape[0], 0, self.state_size)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` from the state at each review's last real token.

        Fused cells run over the right-padded batch unpacked (on CPU the backward pass of a
        packed sequence is several times slower) and the output at ``lengths - 1`` is read;
        padding comes after the last real token, so it cannot reach that output.
        """
        if self.cell == "ugrnn":
            return self.readout(self.dropout(self.final_state(ids, lengths)))
        self._check_batch(ids, lengths)
        x = self.dropout(self.embed(ids))
        if self.readout_state == "hc":  # [h, c] at each review's last token
            outputs = self._lstm_states(x)  # [B, T, 2H]
        else:
            outputs = self.rnn(x)[0]  # [B, T, H]
        return self.readout(self.dropout(_at_last(outputs, lengths, outputs.new_zeros(len(ids), outputs.shape[-1]))))

    def _stream_logits(self, seqs):
        h = self.initial_state(len(seqs))
        longest = max((len(s) for s in seqs), default=0)
        for start in range(0, max(longest, 1), _CHUNK):
            ids, lengths = _pad([s[start:start + _CHUNK] for s in seqs])
            h = self.final_state(ids, lengths, h)
        return self.readout(h[:, : self._readout_size])


# ----------------------------------------------------------------------------- entries

_PAPER = "maheswaranathan2019"
_SIZES_NOTE = ("The authors' 256 units with 64-d embeddings (theirs: 128-d) and a capped vocabulary, stored as "
               "float16, to keep checkpoints small; trained on 2 CPU cores.")


PAPER_ACCURACY = {  # test accuracy (%), Maheswaranathan et al. 2019, Table 1
    "sentiment-imdb": {"bow": 88.53, "vanilla": 87.08, "ugrnn": 87.96, "gru": 86.86, "lstm": 86.93},
    "sentiment-sst": {"bow": 79.74, "vanilla": 78.09, "ugrnn": 77.74, "gru": 80.25, "lstm": 80.09},
}


def _entry(task: str, arch: str, recipe: dict, task_kwargs: dict, notes: str, name: str | None = None,
           trained_on: str | None = None, **sizes) -> None:
    if arch == "bow":
        def builder(vocab=None, embed_size=sizes["embed_size"], num_classes=None, max_len=None, truncate=None,
                    dropout=sizes.get("dropout", 0.0)):
            return SentimentBoW(vocab, embed_size, num_classes, max_len, truncate, dropout)
        what = "Bag-of-words baseline (mean word embedding -> logistic readout)"
    else:
        def builder(vocab=None, hidden_size=sizes["hidden_size"], embed_size=sizes["embed_size"], num_classes=None,
                    max_len=None, truncate=None, recurrent_init_gain=sizes.get("gain", 1.0), dropout=sizes.get("dropout", 0.0),
                    recurrent_init=sizes.get("init", "orthogonal"), recurrent_lr=sizes.get("recurrent_lr"),
                    readout_state=sizes.get("readout_state", "h")):
            return SentimentRNN(arch, vocab, hidden_size, embed_size, num_classes, max_len, truncate,
                                recurrent_init_gain, dropout, recurrent_init, recurrent_lr, readout_state)
        what = {"vanilla": "Vanilla tanh RNN", "gru": "GRU", "lstm": "LSTM",
                "ugrnn": "UGRNN (update-gate RNN, Collins et al. 2017)"}[arch] + " with a linear readout of the final state"
    name = name or f"{task}/{arch}"
    builder.__name__ = name.replace("-", "_").replace("/", "_")
    paper = (f" (paper Table 1: {PAPER_ACCURACY[task][arch]:.2f}% test accuracy)" if trained_on is None else
             " (no accuracy in the paper; the follow-up of Aitken et al. 2020 studies the attractor of N-class tasks)")
    register(name, task=task, weights="file", task_kwargs=task_kwargs, recipe=recipe, paper=_PAPER,
             description=f"{what}, trained on {trained_on or task.split('-')[1].upper()}{paper}.",
             notes=notes)(builder)


_IMDB_TASK = {"vocab_size": 20000, "max_len": 400, "truncate": "last"}
_SST_TASK = {"vocab_size": None, "min_count": 2, "max_len": 400, "truncate": "last"}  # no SST sentence is longer
_IMDB_NOTE = (" IMDB: the 20,000 most frequent training words; reviews truncated to their last 400 tokens "
              "(82% of reviews are shorter) for training and testing.")
_SST_NOTE = " SST-2: words seen at least twice in the training sentences (7,206 words)."

_VANILLA = {"init": "identity", "recurrent_lr": 1e-4}  # see SentimentRNN.optimizer_param_groups
_VANILLA_NOTE = (" Vanilla RNN: W_hh starts at the identity and learns at lr 1e-4 (the rest at the recipe's lr); "
                 "with one learning rate for all weights Adam destabilised it and it stayed near chance.")

_VANILLA_IMDB_NOTE = (" Vanilla RNN on IMDB: W_hh starts at the identity and learns at lr 5e-5, the rest at lr 5e-4, "
                      "4 epochs; with lr 1e-3 / 1e-4 for 3 epochs it reached 83.8% (validation accuracy fell in the "
                      "last epoch), and with one learning rate for all weights it stayed near chance.")
_UGRNN_IMDB_NOTE = (" UGRNN on IMDB: W_hh learns at lr 1e-4; with the recipe's lr for all weights it stayed at "
                    "chance for a whole epoch (51% validation accuracy).")

_SENTIMENT_RECIPE = {"gradient_clip_val": 1.0, "storage_dtype": "float16"}
_DROPOUT_NOTE = (" Dropout 0.5 on the embeddings and the read-out state (the authors' code has none): over 3 "
                 "training seeds per architecture, training without it met no more of the line-attractor targets "
                 "and lost 2-4 points of test accuracy (README, Line attractors).")
_IMDB_DROPOUT_NOTE = (" Dropout 0.2 on the embeddings and the read-out state: without it the 3-4 epochs overfit "
                      "and test accuracy falls 3 points below Table 1 (vanilla 84.1%, UGRNN 84.8%).")
_LSTM_NOTE = (" LSTM: the readout sees the whole state [h, c], as in the authors' code (PyTorch's convention reads "
              "h only; the line attractor lives in the joint space).")

for _arch in ("vanilla", "gru", "lstm", "ugrnn"):
    _extra = _VANILLA if _arch == "vanilla" else {}
    _note = _VANILLA_NOTE if _arch == "vanilla" else ""
    _imdb_extra, _imdb_note, _imdb_recipe = _extra, _note, {"lr": 1e-3, "max_epochs": 3}
    if _arch == "ugrnn":
        _imdb_extra, _imdb_note = {"recurrent_lr": 1e-4}, _UGRNN_IMDB_NOTE
    if _arch == "vanilla":
        _imdb_extra, _imdb_note = {"init": "identity", "recurrent_lr": 5e-5}, _VANILLA_IMDB_NOTE
        _imdb_recipe = {"lr": 5e-4, "max_epochs": 4}
    if _arch == "lstm":  # 4 epochs: after 3 (h readout) validation accuracy was still rising
        _imdb_recipe = {"lr": 1e-3, "max_epochs": 4}
        _imdb_extra = _extra = {"readout_state": "hc"}
        _imdb_note = _note = _LSTM_NOTE
    _entry("sentiment-imdb", _arch,
           recipe={"batch_size": 64, **_imdb_recipe, **_SENTIMENT_RECIPE},
           task_kwargs=_IMDB_TASK, notes=_SIZES_NOTE + _IMDB_NOTE + _imdb_note + _IMDB_DROPOUT_NOTE, hidden_size=256,
           embed_size=64, dropout=0.2, **_imdb_extra)
    _entry("sentiment-sst", _arch,
           recipe={"batch_size": 32, "lr": 1e-3, "max_epochs": 6, **_SENTIMENT_RECIPE},
           task_kwargs=_SST_TASK, notes=_SIZES_NOTE + _SST_NOTE + _note + _DROPOUT_NOTE, hidden_size=256,
           embed_size=64, dropout=0.5, **_extra)

_entry("sentiment-sst", "gru", name="sentiment-sst5/gru", trained_on="SST-5 (five ordered classes, very negative .. very positive)",
       recipe={"batch_size": 32, "lr": 1e-3, "max_epochs": 6, **_SENTIMENT_RECIPE},
       task_kwargs={**_SST_TASK, "fine": True}, notes=_SIZES_NOTE + " SST-5: stsa.fine.*, words seen at least twice "
       "in the training sentences; the SST-2 GRU's recipe.", hidden_size=256, embed_size=64, dropout=0.5)
_entry("sentiment-imdb", "bow", recipe={"batch_size": 64, "lr": 3e-3, "max_epochs": 3, "storage_dtype": "float16"},
       task_kwargs={"vocab_size": 20000, "max_len": None},
       notes="Whole reviews, 20,000-word vocabulary, dropout 0.5 on the mean embedding (without it: 86.1% after 6 "
             "epochs, overfitted); float16 storage.", embed_size=64, dropout=0.5)
_entry("sentiment-sst", "bow", recipe={"batch_size": 32, "lr": 1e-3, "max_epochs": 8, "storage_dtype": "float16"},
       task_kwargs=_SST_TASK, notes="float16 storage." + _SST_NOTE, embed_size=64)
