"""Checkpoint integrity: atomic, fsynced writes whose content digest is checked on every load."""

from __future__ import annotations

import os
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym._torch_io import (
    DIGEST_KEY,
    atomic_torch_save,
    content_digest,
    read_weights_only,
)
from recgym.errors import RecGymError


def payload():
    gen = torch.Generator().manual_seed(0)
    return {
        "weights": {"w": torch.randn(64, 8, generator=gen), "b": torch.zeros(8)},
        "config": {"dim": 8, "name": "x", "betas": (0.9, 0.98), "none": None},
        "history": [{"round": 1, "loss": 0.5}],
        "rng": gen.get_state(),
    }


def test_a_saved_dict_round_trips_with_its_digest_checked_and_removed(tmp_path):
    path = atomic_torch_save(payload(), tmp_path / "ckpt.pt")
    raw = torch.load(path, weights_only=True)
    assert raw[DIGEST_KEY] == content_digest(payload())
    loaded = read_weights_only(path)
    assert DIGEST_KEY not in loaded and content_digest(loaded) == content_digest(payload())
    assert torch.equal(loaded["weights"]["w"], payload()["weights"]["w"])


@settings(max_examples=30, deadline=None)
@given(offset=st.floats(0.05, 0.95), bit=st.integers(0, 7))
def test_a_flipped_byte_is_an_error_never_different_weights(tmp_path_factory, offset, bit):
    path = atomic_torch_save(payload(), tmp_path_factory.mktemp("flip") / "ckpt.pt")
    data = bytearray(path.read_bytes())
    data[int(offset * (len(data) - 1))] ^= 1 << bit
    path.write_bytes(bytes(data))
    try:
        loaded = read_weights_only(path)
    except RecGymError:
        return  # unreadable or failing its digest: a clear error
    # the flip hit bytes that carry no content (zip padding, a name): the content is intact
    assert content_digest(loaded) == content_digest(payload())


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("char", [0, 7, 13])
def test_a_flipped_byte_in_a_digest_key_name_is_an_error(tmp_path, which, char):
    # Once a loaded file whose digest key was renamed passed as a file without a digest.
    path = atomic_torch_save(payload(), tmp_path / "ckpt.pt")
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data)) if data.startswith(DIGEST_KEY.encode(), i)]
    assert len(starts) == 2  # the digest and its mirror
    data[starts[which] + char] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RecGymError, match="corrupt"):
        read_weights_only(path)


def test_a_flip_that_changes_the_pickled_structure_fails_the_zip_crc(tmp_path):
    # SETITEMS -> TUPLE at the pickle's end once loaded a tuple: no dict, so no digest to check.
    path = atomic_torch_save(payload(), tmp_path / "ckpt.pt")
    data = bytearray(path.read_bytes())
    data[data.index(b"u.PK")] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RecGymError, match="CRC-32"):
        read_weights_only(path)


@pytest.mark.slow
def test_every_single_bit_flip_is_an_error_or_changes_nothing(tmp_path):
    path = atomic_torch_save(payload(), tmp_path / "ckpt.pt")
    original, good = path.read_bytes(), content_digest(payload())
    silent = []
    for offset in range(len(original)):
        for bit in range(8):
            data = bytearray(original)
            data[offset] ^= 1 << bit
            path.write_bytes(bytes(data))
            try:
                loaded = read_weights_only(path)
            except RecGymError:
                continue
            if content_digest(loaded) != good:
                silent.append((offset, bit))
    assert silent == []


def test_a_file_with_one_digest_record_is_still_checked(tmp_path):
    content = payload()
    torch.save({**content, DIGEST_KEY: content_digest(content)}, tmp_path / "old.pt")
    assert content_digest(read_weights_only(tmp_path / "old.pt")) == content_digest(content)
    torch.save({**content, DIGEST_KEY: "0" * 64}, tmp_path / "bad.pt")
    with pytest.raises(RecGymError, match="corrupt"):
        read_weights_only(tmp_path / "bad.pt")


def test_a_changed_tensor_fails_the_digest(tmp_path):
    path = atomic_torch_save(payload(), tmp_path / "ckpt.pt")
    raw = torch.load(path, weights_only=True)
    raw["weights"]["w"][3, 3] += 1.0
    torch.save(raw, path)  # rewritten behind the library's back, old digest kept
    with pytest.raises(RecGymError, match="is corrupt: its content digest"):
        read_weights_only(path)


def test_files_without_a_digest_still_load(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "old.pt")
    assert torch.equal(read_weights_only(tmp_path / "old.pt")["weights"], torch.ones(2))


def test_stale_temp_files_of_an_interrupted_save_are_cleaned(tmp_path):
    stale = tmp_path / ".ckpt.pt.abc123.tmp"
    fresh = tmp_path / ".ckpt.pt.def456.tmp"
    other = tmp_path / ".other.pt.abc.tmp"
    for f in (stale, fresh, other):
        f.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_torch_save(payload(), tmp_path / "ckpt.pt")
    assert not stale.exists()  # an interrupted save of this file, hours ago
    assert fresh.exists()  # maybe another writer's, still in progress
    assert other.exists()  # another file's
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["ckpt.pt"]
