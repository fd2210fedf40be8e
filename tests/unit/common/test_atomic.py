"""``trajlab.atomic``: the one atomic write (temp file beside the target, fsync, rename)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from trajlab.atomic import atomic_open, atomic_write_bytes, atomic_write_text


def test_the_target_keeps_its_old_content_until_the_write_ends(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    with atomic_open(target, "w") as fh:
        fh.write("new, ")
        fh.flush()
        assert target.read_text() == "old"  # a reader meanwhile sees the whole old file
        fh.write("é and all")
    assert target.read_text(encoding="utf-8") == "new, é and all"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "arr.npy"
    np.save(target, np.arange(3))
    with pytest.raises(RuntimeError, match="disk went away"), atomic_open(target) as fh:
        np.save(fh, np.arange(1000))
        raise RuntimeError("disk went away")
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["arr.npy"]


def test_new_files_are_readable_by_others_like_open_makes_them(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "model.bin", b"\x00\x01")
        atomic_write_text(tmp_path / "meta.json", "{}", fsync=False)
    finally:
        os.umask(old)
    for name in ("model.bin", "meta.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert (tmp_path / "model.bin").read_bytes() == b"\x00\x01"


def test_only_whole_file_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "a"):
        pass
