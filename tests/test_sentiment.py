"""Sentiment task (IMDB, SST, Yelp CSV) and the sentiment RNN zoo (Maheswaranathan et al. 2019).

Oracles: the publishers' split sizes (IMDB 25,000 / 25,000 with 12,500 per class; SST-2
6,920 / 872 / 1,821; SST-5 8,544 / 1,101 / 2,210), the exact recurrence equations (step
loop vs the fused forward pass, float64 to 1e-12 and float32 to 1e-5), the readout identity
``logits = W s + b`` and, for shipped entries, the paper's Table 1 accuracies minus 2 points.
"""

from __future__ import annotations

import math
import resource
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.analysis.protocols import RecurrentDynamics
from zoo.tasks import get_task
from zoo.tasks import sentiment as S
from zoo.models.sentiment_rnn import SentimentBoW, SentimentRNN

CELLS = ("vanilla", "gru", "lstm", "ugrnn")
REAL = S.data_dir()
HAS_IMDB = any((REAL / n).exists() for n in ("aclImdb", "aclImdb_v1.tar.gz"))
HAS_SST = (REAL / "sst" / "stsa.binary.train").exists()
VOCAB = ["<pad>", "<unk>", "good", "bad", "film", "the", "great", "awful", ".", "!"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(cell: str, dtype=torch.float32, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    if cell == "bow":
        return SentimentBoW(VOCAB, embed_size=8, **kw).to(dtype).eval()
    return SentimentRNN(cell, VOCAB, hidden_size=12, embed_size=8, **kw).to(dtype).eval()


def _batch(seed=0, B=6, T=15):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, len(VOCAB), (B, T), generator=g)
    lengths = torch.tensor([T, 1, 0, 7, T - 1, 3][:B])
    ids[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


# ----------------------------------------------------------------------------- tokenizer and encoding


def test_tokenizer_is_deterministic_and_splits_punctuation():
    text = "Great film!<br /><br />I DIDN'T like the end... (really)"
    assert S.tokenize(text) == ["great", "film", "!", "i", "didn't", "like", "the", "end", ".", ".", ".", "(",
                                "really", ")"]
    assert S.tokenize(text) == S.tokenize(text)
    assert S.tokenize("") == []
    assert S.tokenize("wo n't -lrb- it -rrb-") == ["wo", "n't", "-", "lrb", "-", "it", "-", "rrb", "-"]
    with pytest.raises(TypeError, match="str"):
        S.tokenize(3)


def test_truncate_keeps_first_or_last():
    assert S.truncate([1, 2, 3, 4], 2, "first") == [1, 2]
    assert S.truncate([1, 2, 3, 4], 2, "last") == [3, 4]
    assert S.truncate([1, 2], None) == [1, 2]
    with pytest.raises(ValueError, match="first"):
        S.truncate([1], 1, "middle")


def test_vocabulary_from_training_documents_only():
    corpus = S.Corpus.from_texts(["good good film", "bad film", "zebra zebra zebra"], [1, 0, 1], ["train", "train", "test"])
    vocab = S.build_vocab(corpus, corpus.splits["train"], vocab_size=None, min_count=1)
    assert vocab == ["<pad>", "<unk>", "film", "good", "bad"]  # by count, ties alphabetical; 'zebra' is test-only
    assert S.build_vocab(corpus, corpus.splits["train"], vocab_size=3, min_count=1) == ["<pad>", "<unk>", "film"]
    assert S.build_vocab(corpus, corpus.splits["train"], vocab_size=None, min_count=2) == ["<pad>", "<unk>", "film", "good"]


# ----------------------------------------------------------------------------- loaders on fixtures


def _write_imdb_folder(root: Path) -> None:
    reviews = {("train", "pos"): ["Great film!<br />Loved it.", "A joy."], ("train", "neg"): ["Awful.", "Bad bad bad."],
               ("test", "pos"): ["Good."], ("test", "neg"): ["Dull zebra."]}
    for (split, label), texts in reviews.items():
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(text)
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("unlabelled must be ignored")
    (root / "aclImdb" / "train" / "labeledBow.feat").write_text("0 0:1\n")
    (root / "aclImdb" / "README").write_text("readme")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("ZOO_DATA_DIR", str(data))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    return data, cache


@pytest.mark.parametrize("layout", ["folder", "tarball"])
def test_imdb_fixture_folder_and_tarball(sandbox, layout):
    data, cache = sandbox
    src = data / "src" if layout == "tarball" else data
    src.mkdir(exist_ok=True)
    _write_imdb_folder(src)
    if layout == "tarball":
        with tarfile.open(data / "aclImdb_v1.tar.gz", "w:gz") as tf:
            tf.add(src / "aclImdb", arcname="aclImdb")
        import shutil
        shutil.rmtree(src)
    task = get_task("sentiment-imdb", val_fraction=0.25, download=False)
    assert task.describe()["split_sizes"] == {"train": 3, "val": 1, "test": 2}
    corpus = task.corpus
    assert sorted(corpus.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert "unlabelled" not in corpus.words  # unsup/ ignored
    assert "zebra" not in task.vocab and "<unk>" in task.vocab
    ids, lengths, labels = next(iter(task.dataloader("test", 8)))
    assert ids.shape[0] == 2 and lengths.tolist() == sorted(lengths.tolist())
    assert (ids[torch.arange(ids.shape[1])[None] >= lengths[:, None]] == 0).all()  # right padding
    if layout == "tarball":
        assert list(cache.glob("corpus-imdb-*.npz"))  # the parsed corpus is cached ...
        assert not list(data.glob("*.npz"))  # ... never in the data folder
        again = get_task("sentiment-imdb", val_fraction=0.25, download=False)
        assert again.vocab == task.vocab


def test_imdb_missing_gives_clear_error(sandbox):
    with pytest.raises(FileNotFoundError, match="aclImdb_v1.tar.gz"):
        _ = get_task("sentiment-imdb", download=False).vocab


def test_sst_fixture_and_missing(sandbox):
    data, _ = sandbox
    with pytest.raises(FileNotFoundError, match="stsa.binary"):
        _ = get_task("sentiment-sst").vocab
    (data / "sst").mkdir()
    for ext, lines in {"train": ["1 a good film", "0 a bad film", "1 good"], "dev": ["0 bad"], "test": ["1 new words"]}.items():
        (data / "sst" / f"stsa.binary.{ext}").write_text("\n".join(lines) + "\n")
    task = get_task("sentiment-sst")
    assert task.describe()["split_sizes"] == {"train": 3, "val": 1, "test": 1}
    assert task.vocab[:2] == ["<pad>", "<unk>"] and "new" not in task.vocab
    (data / "sst" / "stsa.binary.dev").write_text("not a label line\n")
    with pytest.raises(ValueError, match="LABEL sentence"):
        _ = get_task("sentiment-sst").vocab


def test_yelp_csv_reader(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('"1","Terrible service.\\nNever again, ""ever""."\n"2","Loved it!"\n')
    texts, labels = S.read_yelp_csv(path)
    assert labels == [0, 1]
    assert texts[0] == 'Terrible service. Never again, "ever".'
    (tmp_path / "test.csv").write_text('"2","Great food"\n')
    task = S.YelpSentiment(folder=str(tmp_path), val_fraction=0.0)
    assert task.describe()["split_sizes"] == {"train": 2, "val": 0, "test": 1}
    path.write_text('"3","bad label"\n')
    with pytest.raises(ValueError, match="label 1 or 2"):
        S.read_yelp_csv(path)


# ----------------------------------------------------------------------------- loaders on the real data


@pytest.mark.skipif(not HAS_IMDB, reason="no IMDB data in $ZOO_DATA_DIR / ../shared/data")
def test_imdb_real_splits():
    task = get_task("sentiment-imdb")
    corpus = task.corpus
    test = corpus.splits["test"]
    assert len(corpus.splits["train"]) == 25000 and len(test) == 25000
    assert int(corpus.labels[test].sum()) == 12500
    assert task.describe()["split_sizes"] == {"train": 22500, "val": 2500, "test": 25000}
    assert len(task.vocab) == 20000 and task.vocab[2] == "the"
    train, val = task.splits["train"], task.splits["val"]
    assert not set(train.tolist()) & set(val.tolist())
    assert np.array_equal(val, get_task("sentiment-imdb", seed=5).splits["val"])  # seed-independent carve


@pytest.mark.skipif(not HAS_SST, reason="no SST data")
def test_sst_real_splits():
    two = get_task("sentiment-sst")
    assert two.describe()["split_sizes"] == {"train": 6920, "val": 872, "test": 1821}
    five = get_task("sentiment-sst", fine=True)
    assert five.describe()["split_sizes"] == {"train": 8544, "val": 1101, "test": 2210}
    assert five.num_classes == 5 and set(five.corpus.labels.tolist()) == {0, 1, 2, 3, 4}


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("cell", CELLS)
def test_step_reproduces_forward(cell):
    """Iterating ``step`` from ``initial_state`` gives the forward pass's final state and logits."""
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        model = _model(cell, dtype)
        ids, lengths = _batch()
        x = model.embed(ids)
        h = model.initial_state(len(ids))
        assert h.shape == (len(ids), model.state_size)
        for t in range(ids.shape[1]):
            h = torch.where((t < lengths)[:, None], model.step(h, x[:, t]), h)
        with torch.no_grad():
            final = model.final_state(ids, lengths)
            logits = model(ids, lengths)
        assert torch.allclose(final, h, atol=tol, rtol=0), (cell, dtype, (final - h).abs().max())
        readout = h @ model.readout_weights().T + model.readout_bias()
        assert torch.allclose(logits, readout, atol=tol, rtol=0)
        visited = model.visited_states((ids, lengths))
        assert visited.shape == (int(lengths.sum()), model.state_size)


def test_lstm_read_out_from_h_and_c():
    """``readout_state="hc"`` (the authors' LSTM): the readout sees the whole flat state ``[h, c]``;
    the per-step cell loop that trains it equals the fused packed pass, logits and gradients."""
    ids, lengths = _batch()
    model = _model("lstm", torch.float64, readout_state="hc")
    assert model.readout_weights().shape == (1, 24) and (model.readout_weights()[:, 12:] != 0).any()
    final = model.final_state(ids, lengths)
    logits = model(ids, lengths)
    assert torch.allclose(logits, final @ model.readout_weights().T + model.readout_bias(), atol=1e-12, rtol=0)
    assert torch.allclose(model._stream_logits([ids[i, :n].tolist() for i, n in enumerate(lengths)]), logits,
                          atol=1e-12, rtol=0)
    grad_loop = torch.autograd.grad(logits.sum(), model.rnn.weight_hh_l0)[0]
    grad_fused = torch.autograd.grad(model.readout(model.final_state(ids, lengths)).sum(), model.rnn.weight_hh_l0)[0]
    assert torch.allclose(grad_loop, grad_fused, atol=1e-10, rtol=0)
    for cell in ("gru", "vanilla", "ugrnn"):
        with pytest.raises(ValueError, match="readout_state"):
            _model(cell, readout_state="hc")
    with pytest.raises(ValueError, match="readout_state"):
        _model("lstm", readout_state="c")


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_dynamics_protocol(cell):
    model = _model(cell)
    assert isinstance(model, RecurrentDynamics)
    N = 24 if cell == "lstm" else 12
    assert model.state_size == N and model.input_size == 8
    assert model.readout_weights().shape == (1, N) and model.readout_bias().shape == (1,)
    if cell == "lstm":
        assert (model.readout_weights()[:, 12:] == 0).all()
    assert model.embed(torch.tensor([[2, 3]])).shape == (1, 2, 8)
    ids, lengths = model.encode(["good film", "", "zzz"])
    assert lengths.tolist() == [2, 0, 1] and ids[2, 0] == S.UNK_ID
    assert model.vocab == VOCAB
    assert not isinstance(_model("bow"), RecurrentDynamics)


@pytest.mark.parametrize("cell", CELLS + ("bow",))
def test_batching_invariance(cell):
    """A review's logits do not depend on its batch-mates or on padding."""
    model = _model(cell)
    ids, lengths = _batch(B=6, T=15)
    with torch.no_grad():
        together = model(ids, lengths)
        alone = torch.cat([model(ids[i:i + 1, : max(int(lengths[i]), 1)], lengths[i:i + 1]) for i in range(len(ids))])
        padded = model(torch.cat([ids, torch.zeros(6, 9, dtype=torch.int64)], 1), lengths)
    assert torch.allclose(together, alone, atol=1e-5) and torch.allclose(together, padded, atol=1e-5)
    texts = ["good film !", "bad", "", "the great great film . awful"]
    probs = model.predict(texts)
    one_by_one = torch.cat([model.predict([t]) for t in texts])
    assert torch.allclose(probs, one_by_one, atol=1e-5)
    assert torch.allclose(model.predict(texts, batch_size=1), probs, atol=1e-5)


@pytest.mark.parametrize("cell", ("gru", "lstm", "bow"))
def test_predict_bad_input(cell):
    model = _model(cell)
    empty = model.predict([""])
    assert empty.shape == (1, 2) and torch.allclose(empty.sum(-1), torch.ones(1))
    assert torch.allclose(empty[0, 1], torch.sigmoid(model.readout.bias[0]))  # readout of the initial state / zero mean
    unknown = model.predict(["qwerty zxcvb", "qwerty"])
    assert torch.isfinite(unknown).all()
    assert model.predict("good").shape == (1, 2)  # a bare string is one text
    assert model.predict([]).shape == (0, 2)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        model.predict(["good", 3])
    with pytest.raises(TypeError, match="string"):
        model.predict(5)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            model.predict(["good"], batch_size=bad)


@pytest.mark.parametrize("cell", ("gru", "bow"))
def test_predict_200k_tokens_bounded_memory(cell):
    """200,000 tokens: truncated to ``max_len`` (as the shipped entries are) or, with no
    ``max_len``, streamed through in 2,048-token chunks; peak memory grows by < 300 MB."""
    text = " ".join(["good film"] * 100_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux: KiB)
    truncated = _model(cell, max_len=400, truncate="last").predict([text, "bad"])
    streamed = _model(cell).predict([text if cell == "bow" else text[: len(text) // 8]])  # 25,000 tokens for the RNN
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert torch.isfinite(streamed).all() and torch.isfinite(truncated).all()
    assert grown < 300, f"peak memory grew by {grown:.0f} MB"
    short = _model(cell).predict([" ".join(["good film"] * 200)])
    if cell == "bow":  # the mean of a periodic text does not depend on its length
        assert torch.allclose(streamed, short, atol=1e-5)
        assert torch.allclose(truncated[0], short[0], atol=1e-5)


def test_streaming_equals_one_pass():
    model = _model("lstm")
    text = " ".join(["good", "bad", "film", "the"] * 1500)  # 6000 tokens: three chunks
    ids, lengths = model.encode([text])
    with torch.no_grad():
        whole = model.logits_to_probabilities(model(ids, lengths))
    assert torch.allclose(model.predict([text]), whole, atol=1e-5)


def test_model_bad_construction():
    with pytest.raises(ValueError, match="vocabulary"):
        SentimentRNN("gru", None)
    with pytest.raises(ValueError, match="<pad>"):
        SentimentRNN("gru", ["a", "b"])
    with pytest.raises(ValueError, match="unknown cell"):
        SentimentRNN("transformer", VOCAB)
    with pytest.raises(ValueError, match="ids"):
        _model("gru")(torch.zeros(3, dtype=torch.int64), torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match="lengths"):
        _model("gru")(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="truncate"):
        get_task("sentiment-sst", truncate="middle")


def test_five_class_readout():
    model = SentimentRNN("gru", VOCAB, hidden_size=6, embed_size=4, num_classes=5).eval()
    probs = model.predict(["good", "bad film"])
    assert probs.shape == (2, 5) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert model.readout_weights().shape == (5, 6)


# ----------------------------------------------------------------------------- shipped entries

ENTRIES = zoo.list_models("sentiment-*")
PAPER = {"sentiment-imdb": {"bow": 88.53, "vanilla": 87.08, "ugrnn": 87.96, "gru": 86.86, "lstm": 86.93},
         "sentiment-sst": {"bow": 79.74, "vanilla": 78.09, "ugrnn": 77.74, "gru": 80.25, "lstm": 80.09}}


def test_the_papers_ten_entries_and_the_five_class_one_are_registered():
    assert ENTRIES == sorted([f"{t}/{a}" for t in PAPER for a in PAPER[t]] + ["sentiment-sst5/gru"])


@pytest.mark.parametrize("name", ENTRIES)
def test_shipped_entry_loads_offline_and_card_is_complete(name, monkeypatch, tmp_path):
    if not zoo.get_entry(name).path.exists():
        pytest.skip(f"{name} not trained yet")
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))  # no data: the vocabulary travels in the checkpoint
    model = zoo.load(name)
    card = zoo.card(name)
    task, arch = name.split("/")
    accuracy = card["metrics"]["test_accuracy"]
    assert 0 < accuracy <= 1
    if task in PAPER:
        assert accuracy * 100 >= PAPER[task][arch] - 2, f"{name}: {accuracy:.4f} more than 2 points below the paper"
    else:  # SST-5: chance is 20%; sentence-level RNNs reach about 45%
        assert accuracy >= 0.38, f"{name}: {accuracy:.4f}"
    for key in ("vocab_size", "max_len"):
        assert key in card["data"]
    assert card["config"]["embed_size"] and card["training"]["wall_time_s"] > 0 and "zoo train" in card["command"]
    probs = model.predict(["a wonderful , moving and beautifully acted film .",
                           "a dull , boring and stupid mess ; the worst movie ."])
    positive = probs[:, (probs.shape[1] + 1) // 2:].sum(1)  # class 1 of 2; classes 3-4 of 5
    assert positive[0] > 0.5 > positive[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRIES)
def test_shipped_entry_accuracy_recomputes(name):
    if not zoo.get_entry(name).path.exists():
        pytest.skip(f"{name} not trained yet")
    model, card = zoo.load(name), zoo.card(name)
    again = zoo.task(name).evaluate(model, "test", line_attractor=False)["test_accuracy"]
    assert math.isclose(again, card["metrics"]["test_accuracy"], abs_tol=2e-3)


# ----------------------------------------------------------------------------- line attractors (issue 14)

BINARY_RNNS = [n for n in ENTRIES if n.split("/")[0] in PAPER and not n.endswith("/bow")]
# Targets each shipped network misses, as measured (README, "Line attractors"); a retrained entry that
# meets one of them fails this test until the list is updated, and so does one that misses a new one.
KNOWN_SHORTFALLS: dict[str, set[str]] = {
    "sentiment-imdb/gru": {"linearised_accuracy"},
    "sentiment-imdb/lstm": {"abs_lambda1", "cos_line_readout", "linearised_accuracy", "n_slow_points", "tangent_alignment"},
    "sentiment-imdb/ugrnn": {"abs_lambda1", "linearised_accuracy", "tangent_alignment"},
    "sentiment-imdb/vanilla": {"linearised_accuracy", "tangent_alignment"},
    "sentiment-sst/gru": {"abs_lambda1", "linearised_accuracy", "n_slow_points", "one_step_error"},
    "sentiment-sst/lstm": {"abs_lambda1", "cos_line_readout", "n_slow_points"},
    "sentiment-sst/ugrnn": {"abs_lambda1", "cos_line_readout"},
    "sentiment-sst/vanilla": {"abs_lambda1", "cos_line_readout", "linearised_accuracy", "n_slow_points", "one_step_error",
                              "pc1_fraction", "tangent_alignment"},
}


def test_card_line_attractor_metrics_are_complete():
    """Every shipped binary RNN's card carries ``metrics.line_attractor`` with issue 14's keys and
    the settings that produced them."""
    from zoo.papers.line_attractors import TARGETS

    assert len(BINARY_RNNS) == 8
    for name in BINARY_RNNS:
        if not zoo.get_entry(name).path.exists():
            continue
        la = zoo.card(name)["metrics"].get("line_attractor")
        assert la is not None, f"{name}: card has no metrics.line_attractor (zoo eval {name} --checkpoint RUN --write-card)"
        assert set(TARGETS) | {"network_accuracy", "n_seeds", "settings"} <= set(la), (name, sorted(la))
        assert la["settings"]["n_seeds"] == 1000 and la["settings"]["q_fixed"] == 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("name", BINARY_RNNS)
def test_shipped_line_attractor_recomputes_and_meets_its_targets(name):
    """The headline table regenerates from the shipped checkpoint (the card's values, same settings),
    and the entry meets issue 14's targets except its documented shortfalls."""
    from zoo.analysis.line_attractor import VERSION, card_metrics
    from zoo.papers.line_attractors import TARGETS, target_verdicts

    if not zoo.get_entry(name).path.exists():
        pytest.skip(f"{name} not trained yet")
    stored = zoo.card(name)["metrics"]["line_attractor"]
    settings = {k: v for k, v in stored["settings"].items() if k not in ("analysis", "version")}
    assert stored["settings"]["version"] == VERSION, f"{name}: card from line-attractor v{stored['settings']['version']}"
    again = card_metrics(zoo.load(name), zoo.task(name), **settings)
    for key in TARGETS:
        assert again[key] == pytest.approx(stored[key], rel=0.05, abs=0.01), (name, key, again[key], stored[key])
    missed = {k for k, v in target_verdicts(again).items() if v != "match"}
    assert missed == KNOWN_SHORTFALLS.get(name, set()), f"{name}: misses {sorted(missed)}"


def test_card_metrics_state_their_settings_and_leave_the_weights_trainable():
    """``card_metrics`` records every setting of the analysis (and its version), and a model evaluated
    in the middle of training keeps its gradients (the analysis itself freezes the weights)."""
    import inspect

    from zoo.analysis.line_attractor import _QUICK, VERSION, card_metrics, line_attractor

    model = zoo.load("flip-flop/gru")
    for p in model.parameters():
        p.requires_grad_(True)
    out = card_metrics(model, zoo.task("flip-flop/gru"), **_QUICK)
    assert all(p.requires_grad for p in model.parameters())
    params = set(inspect.signature(line_attractor).parameters) - {"model", "task"}
    assert set(out["settings"]) == params | {"analysis", "version"} and out["settings"]["version"] == VERSION
    assert out["settings"]["n_seeds"] == _QUICK["n_seeds"]
    assert out["tau1"] == pytest.approx(-1 / math.log(out["abs_lambda1"]))  # tau from the median |lambda|
