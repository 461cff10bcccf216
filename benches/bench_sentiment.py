"""Throughput of the sentiment models: tokens per second, fused forward vs a per-step Python loop.

For each recurrent cell (vanilla, GRU, LSTM, UGRNN) at the shipped sizes (H = 256, E = 64,
20,000-word vocabulary) this times, on the same random batch of ``B`` reviews of about ``T``
tokens (ragged lengths, right-padded):

* training: forward + backward + Adam step with the model's own ``forward`` (fused PyTorch
  kernels; the UGRNN runs through the GRU kernel with its reset gate pinned open), against the
  same loss computed with a plain Python loop of ``model.step`` over time steps (masked on
  padding), which is the baseline;
* inference: ``forward`` under ``no_grad`` against the same loop.

It prints tokens/s and the ratio fused / loop. The bag of words is timed for reference.
Run: ``.venv/bin/python benches/bench_sentiment.py [--batch 64] [--length 230] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from zoo.models.sentiment_rnn import SentimentBoW, SentimentRNN


def _loop_logits(model: SentimentRNN, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The baseline: one ``model.step`` per time step, state frozen after each review's end."""
    x = model.embed(ids)
    h = model.initial_state(ids.shape[0])
    for t in range(ids.shape[1]):
        h = torch.where((t < lengths)[:, None], model.step(h, x[:, t]), h)
    return h[:, : model.hidden_size] @ model.readout.weight.T + model.readout.bias


def _rate(fn, tokens: int, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return tokens * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=230, help="longest review in the batch (tokens)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(19998)]
    B, T = args.batch, args.length
    ids = torch.randint(2, len(vocab), (B, T))
    lengths = torch.randint(T // 2, T + 1, (B,))
    lengths[0] = T
    ids[torch.arange(T)[None] >= lengths[:, None]] = 0
    labels = torch.randint(0, 2, (B,)).float()
    tokens = int(lengths.sum())
    print(f"batch {B} reviews, {tokens} real tokens (longest {T}); H={args.hidden}, E={args.embed}, "
          f"{args.threads} thread(s)")
    print(f"{'model':8s} {'train fused':>12s} {'train loop':>11s} {'ratio':>6s} {'infer fused':>12s} "
          f"{'infer loop':>11s} {'ratio':>6s}   (tokens/s)")

    for cell in ("vanilla", "gru", "lstm", "ugrnn"):
        model = SentimentRNN(cell, vocab, hidden_size=args.hidden, embed_size=args.embed)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        with torch.no_grad():  # both paths compute the same logits
            assert torch.allclose(model(ids, lengths), _loop_logits(model, ids, lengths), atol=1e-4)

        def train(logits_fn, opt=opt):
            def once():
                opt.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits_fn(ids, lengths)[:, 0], labels)
                loss.backward()
                opt.step()
            return once

        def infer(logits_fn):
            def once():
                with torch.no_grad():
                    logits_fn(ids, lengths)
            return once

        loop = lambda i, l, model=model: _loop_logits(model, i, l)  # noqa: E731
        tf = _rate(train(model), tokens, args.repeats)
        tl = _rate(train(loop), tokens, args.repeats)
        inf = _rate(infer(model), tokens, args.repeats)
        il = _rate(infer(loop), tokens, args.repeats)
        print(f"{cell:8s} {tf:12.0f} {tl:11.0f} {tf / tl:6.2f} {inf:12.0f} {il:11.0f} {inf / il:6.2f}", flush=True)

    bow = SentimentBoW(vocab, embed_size=args.embed)
    opt = torch.optim.Adam(bow.parameters(), 1e-3)

    def bow_train():
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(bow(ids, lengths)[:, 0], labels).backward()
        opt.step()

    def bow_infer():
        with torch.no_grad():
            bow(ids, lengths)

    print(f"{'bow':8s} {_rate(bow_train, tokens, args.repeats):12.0f} {'-':>11s} {'-':>6s} "
          f"{_rate(bow_infer, tokens, args.repeats):12.0f} {'-':>11s} {'-':>6s}")


if __name__ == "__main__":
    main()
