"""HDF5 checkpoints: bit-exact round trip, tamper and truncation detection, atomic writes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import checkpoint as ckpt
from zoo.checkpoint import CheckpointError


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"layer.weight": torch.randn(32, 16, generator=g), "layer.bias": torch.randn(32, generator=g),
            "steps": torch.tensor([3, 4], dtype=torch.int64)}


def _save(path, seed=0, **kw):
    return ckpt.save(path, name="toy/model", state_dict=_state(seed), config={"width": 32}, card={"paper": "x"}, **kw)


def test_round_trip_is_bit_exact(tmp_path):
    path = _save(tmp_path / "toy__model.h5")
    name, config, card, arrays = ckpt.load(path)
    assert name == "toy/model" and config == {"width": 32} and card["storage_dtype"] == "float32"
    for key, tensor in _state().items():
        assert arrays[key].dtype == tensor.numpy().dtype
        assert arrays[key].tobytes() == tensor.numpy().tobytes()


def test_float16_storage_rounds_floats_only(tmp_path):
    path = _save(tmp_path / "toy__model.h5", storage_dtype="float16")
    _, _, card, arrays = ckpt.load(path)
    assert card["storage_dtype"] == "float16"
    assert arrays["layer.weight"].dtype == np.float16 and arrays["steps"].dtype == np.int64
    np.testing.assert_allclose(arrays["layer.weight"], _state()["layer.weight"].numpy(), rtol=1e-3, atol=1e-3)


def test_every_flipped_byte_is_detected(tmp_path):
    path = _save(tmp_path / "toy__model.h5")
    original = path.read_bytes()
    positions = np.linspace(0, len(original) - 1, 25).astype(int)
    for pos in positions:
        corrupted = bytearray(original)
        corrupted[pos] ^= 0x01
        path.write_bytes(bytes(corrupted))
        with pytest.raises(CheckpointError, match="sha256") as err:
            ckpt.load(path)
        assert str(path) in str(err.value)
    path.write_bytes(original)
    ckpt.load(path)  # intact again


def test_truncated_file_is_detected(tmp_path):
    path = _save(tmp_path / "toy__model.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load(path)
    # even with a manifest that agrees, a truncated HDF5 file is a clear CheckpointError
    ckpt.record_in_manifest(path, "toy/model")
    with pytest.raises(CheckpointError, match="unreadable"):
        ckpt.load(path)


def test_unlisted_and_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "nope.h5")
    path = _save(tmp_path / "toy__model.h5", update_manifest=False)
    with pytest.raises(CheckpointError, match="not listed"):
        ckpt.load(path)
    (tmp_path / ckpt.MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest"):
        ckpt.load(path)


def test_missing_extra_misshapen_and_nan_tensors(tmp_path):
    model = torch.nn.ModuleDict({"layer": torch.nn.Linear(16, 32)})
    path = ckpt.save(tmp_path / "a.h5", name="t/m", state_dict=model.state_dict(), config={}, card={})
    arrays = ckpt.load(path)[3]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt.state_dict_into(model, arrays, "a.h5")  # complete: loads
    for broken, reason in [
        ({k: v for k, v in arrays.items() if k != "layer.bias"}, "missing tensors: layer.bias"),
        ({**arrays, "extra": np.zeros(1)}, "unexpected tensors: extra"),
        ({**arrays, "layer.bias": np.zeros(31, np.float32)}, r"shape \(31,\)"),
        ({**arrays, "layer.bias": np.full(32, np.nan, np.float32)}, "NaN"),
    ]:
        model.load_state_dict(before)
        with pytest.raises(CheckpointError, match=reason):
            ckpt.state_dict_into(model, broken, "a.h5")
        for k, v in model.state_dict().items():  # nothing half-loads
            assert torch.equal(v, before[k])


def test_exception_during_write_leaves_old_file(tmp_path):
    path = _save(tmp_path / "toy__model.h5")
    old = path.read_bytes()
    bad = {**_state(1), "broken": object()}  # .detach() fails half-way through the write
    with pytest.raises(AttributeError):
        ckpt.save(path, name="toy/model", state_dict=bad, config={}, card={})
    assert path.read_bytes() == old
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file is cleaned up
    ckpt.load(path)


def test_kill_during_write_leaves_old_file(tmp_path):
    path = _save(tmp_path / "toy__model.h5")
    old = path.read_bytes()
    child = textwrap.dedent(f"""
        import sys, time, h5py, torch
        from zoo import checkpoint as ckpt
        original = h5py.Group.create_dataset
        def slow(self, *a, **k):
            out = original(self, *a, **k)
            print("writing", flush=True)
            time.sleep(60)
            return out
        h5py.Group.create_dataset = slow
        ckpt.save({str(path)!r}, name="toy/model", state_dict={{"w": torch.ones(1000)}}, config={{}}, card={{}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == old
    ckpt.load(path)  # still verifies against the manifest


def test_large_config_and_manifest_contents(tmp_path):
    vocab = [f"word{i}" for i in range(30_000)]  # > 64 KiB of JSON
    path = ckpt.save(tmp_path / "big.h5", name="t/m", state_dict=_state(), config={"vocab": vocab}, card={})
    assert ckpt.load(path)[1]["vocab"] == vocab
    manifest = json.loads((tmp_path / ckpt.MANIFEST).read_text())["files"]["big.h5"]
    assert manifest["sha256"] == ckpt.sha256_file(path) and manifest["size"] == os.path.getsize(path)


def test_bad_storage_dtype(tmp_path):
    with pytest.raises(ValueError, match="storage_dtype"):
        _save(tmp_path / "x.h5", storage_dtype="int8")


def _write_raw(path, build):
    """An HDF5 file in the zoo's layout whose /params ``build(group, folder)`` fills, recorded in the manifest."""
    import h5py

    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["format_version"] = ckpt.FORMAT_VERSION
        f.attrs["name"], f.attrs["config"], f.attrs["card"] = "toy/model", "{}", "{}"
        build(f, path.parent)
    ckpt.record_in_manifest(path, "toy/model")
    return path


def _external(f, folder):
    outside = folder / "outside.bin"
    np.arange(4, dtype=np.float32).tofile(outside)
    f.create_group("params").create_dataset("w", shape=(4,), dtype="f4", external=[(str(outside), 0, 16)])


def _virtual(f, folder):
    import h5py

    with h5py.File(folder / "source.h5", "w") as src:
        src["x"] = np.ones(4, np.float32)
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(folder / "source.h5"), "x", shape=(4,))
    f.create_group("params").create_virtual_dataset("w", layout)


def _external_link(f, folder):
    import h5py

    with h5py.File(folder / "other.h5", "w") as other:
        other["w"] = np.ones(4, np.float32)
    f.create_group("params")["w"] = h5py.ExternalLink(str(folder / "other.h5"), "w")


def _params_is_a_dataset(f, folder):
    f["params"] = np.ones(3, np.float32)


def _object_dtype(f, folder):
    import h5py

    f.create_group("params").create_dataset("w", data=["a", "b"], dtype=h5py.string_dtype())


@pytest.mark.parametrize("build, reason", [
    (_external, "external file"), (_virtual, "virtual dataset"), (_external_link, "ExternalLink"),
    (_params_is_a_dataset, "must be a group"), (_object_dtype, "only numeric tensors"),
])
def test_data_outside_the_verified_bytes_is_refused(tmp_path, build, reason):
    """The sha256 covers the file's own bytes; HDF5 can point at bytes elsewhere, which it would not."""
    path = _write_raw(tmp_path / "toy__model.h5", build)
    ckpt.verify(path)  # the file itself matches its manifest ...
    with pytest.raises(CheckpointError, match=reason) as err:
        ckpt.load(path)  # ... but its weights are refused
    assert str(path) in str(err.value)


@pytest.mark.parametrize("record", [{"sha256": "ab"}, "string", {"name": "x", "sha256": "0" * 64, "size": "12"}, []])
def test_malformed_manifest_records_name_the_manifest(tmp_path, record):
    path = _save(tmp_path / "toy__model.h5")
    manifest = tmp_path / ckpt.MANIFEST
    doc = json.loads(manifest.read_text())
    doc["files"][path.name] = record
    manifest.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="manifest record") as err:
        ckpt.load(path)
    assert str(manifest) in str(err.value)


def test_export_refuses_to_replace_and_tampered_runs(tmp_path):
    run = _save(tmp_path / "run" / "toy__model.h5")
    shipped = tmp_path / "shipped"
    target = ckpt.export(run, shipped)
    assert ckpt.load(target)[0] == "toy/model"
    other = _save(tmp_path / "run2" / "toy__model.h5", seed=1)
    with pytest.raises(FileExistsError, match="--replace"):
        ckpt.export(other, shipped)
    data = bytearray(other.read_bytes())
    data[len(data) // 2] ^= 1
    other.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        ckpt.export(other, shipped, replace=True)
    assert ckpt.load(target)[3]["layer.weight"].tobytes() == _state(0)["layer.weight"].numpy().tobytes()


def test_replace_card_keeps_the_weights_and_refuses_shipped_and_tampered_files(tmp_path, monkeypatch):
    run = _save(tmp_path / "run" / "toy__model.h5", storage_dtype="float16")
    before = ckpt.load(run)
    path = ckpt.replace_card(run, {**before[2], "metrics": {"line_attractor": {"n_slow_points": 3}}})
    name, config, card, arrays = ckpt.load(path)  # verified against the updated manifest
    assert (name, config) == before[:2] and card["metrics"]["line_attractor"]["n_slow_points"] == 3
    assert all(arrays[k].tobytes() == before[3][k].tobytes() for k in arrays)  # bytes for bytes, still float16
    with pytest.raises(ValueError, match="the new card is for 'other/model'"):
        ckpt.replace_card(run, {**card, "name": "other/model"})
    monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(tmp_path / "run"))
    with pytest.raises(ValueError, match="shipped checkpoint"):
        ckpt.replace_card(run, card)
    package_set = Path(ckpt.__file__).parent / "checkpoints" / "toy__model.h5"
    with pytest.raises(ValueError, match="shipped checkpoint"):  # the package's own set, whatever the env says
        ckpt.refuse_shipped(package_set)
    other = _save(tmp_path / "run2" / "toy__model.h5")
    data = bytearray(other.read_bytes())
    data[len(data) // 2] ^= 1
    other.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        ckpt.replace_card(other, card)
