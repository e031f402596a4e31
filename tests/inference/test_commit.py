"""A slide's outputs are committed as a unit; the skip check trusts only intact files (issue 12 item 3)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mrseg.inference.runner import commit, is_done, pending_path, run_slide
from mrseg.models.checkpoint import Checkpoint, save_checkpoint

SlideFactory = Callable[..., Path]


def _identity(out: Path) -> tuple[str, dict[str, object]]:
    record = json.loads((out / "s.json").read_text())
    return record["checkpoint"]["sha256"], record["settings"]


def test_a_crash_between_renames_leaves_no_record_and_the_slide_is_redone(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path, make_ckpt: Callable[..., Checkpoint]
) -> None:
    slide = slide_file()
    out = tmp_path / "out"
    assert run_slide(checkpoint_file, slide, out).status == "done"
    sha, settings = _identity(out)
    names = dict(json.loads((out / "s.json").read_text())["outputs"])
    # a second run (another checkpoint) is killed after renaming its map, before the rest
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shutil.copy(out / names["map"], scratch / names["map"])
    with pytest.raises(FileNotFoundError):
        commit(scratch, out, names, "s")  # the overlay is missing from scratch: the commit stops half-way
    assert not (out / "s.json").exists()  # never a new map beside the old record
    assert pending_path(out, "s").exists()
    assert not is_done(out, "s", sha, settings)  # so the old checkpoint does not skip it
    assert run_slide(checkpoint_file, slide, out).status == "done"
    assert not pending_path(out, "s").exists() and is_done(out, "s", sha, settings)


@pytest.mark.parametrize("damage", ["truncate", "same-size"])
def test_a_damaged_output_is_not_up_to_date(
    damage: str, tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path
) -> None:
    slide = slide_file()
    out = tmp_path / "out"
    run_slide(checkpoint_file, slide, out)
    sha, settings = _identity(out)
    map_path = out / json.loads((out / "s.json").read_text())["outputs"]["map"]
    data = bytearray(map_path.read_bytes())
    if damage == "truncate":
        map_path.write_bytes(data[: len(data) // 2])
    else:
        data[-1] ^= 0xFF
        map_path.write_bytes(bytes(data))
    assert not is_done(out, "s", sha, settings)
    assert run_slide(checkpoint_file, slide, out).status == "done"


def test_an_old_record_is_not_trusted_for_another_checkpoint(
    tmp_path: Path, slide_file: SlideFactory, checkpoint_file: Path, make_ckpt: Callable[..., Checkpoint]
) -> None:
    slide = slide_file()
    out = tmp_path / "out"
    run_slide(checkpoint_file, slide, out)
    other = save_checkpoint(tmp_path / "other.pt", make_ckpt(seed=1))
    assert run_slide(other, slide, out).status == "done"
