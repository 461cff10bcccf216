"""Shared fixtures. The tests folder is on sys.path (no __init__.py), so `toy_task` imports."""

import os

import pytest


@pytest.fixture
def ckpt_dir(tmp_path, monkeypatch):
    """An empty checkpoint folder used instead of the shipped one."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(folder))
    return folder


@pytest.fixture
def one_thread():
    """Tiny tensor ops crawl when two threads fight over shared cores: one thread, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
