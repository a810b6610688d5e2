"""A folder of mp4 files with a `file,caption` CSV, e.g. clips exported with `write_mp4`.

Every file is validated in `__init__` (its first `num_frames` frames decoded), so a bad file fails or
is dropped before training starts, and index -> sample never shifts during a run.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from torch.utils.data import Dataset

from aad1lib.data.video_io import VideoDecodeError, from_uint8_frames, read_frames

__all__ = ["VideoDecodeError", "VideoFolderDataset"]
VIDEO_SUFFIXES = (".mp4",)


def read_captions(captions_csv: str | Path) -> dict[str, str]:
    """{file: caption} from a CSV with a header `file,caption`; rejects missing columns and duplicates."""
    captions_csv = Path(captions_csv)
    if not captions_csv.is_file():
        raise FileNotFoundError(f"captions CSV not found: {captions_csv}")
    with captions_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{captions_csv}: needs columns file,caption; missing {sorted(missing)}")
        captions: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            file, caption = (row["file"] or "").strip(), (row["caption"] or "").strip()
            if not file or not caption:
                raise ValueError(f"{captions_csv}, line {line}: empty file or caption")
            if file in captions:
                raise ValueError(f"{captions_csv}, line {line}: {file} is listed twice")
            captions[file] = caption
    if not captions:
        raise ValueError(f"{captions_csv}: no rows")
    return captions


class VideoFolderDataset(Dataset):
    """mp4 files under `root` captioned by `captions_csv` (paths relative to `root`).

    Each sample is the file's first `num_frames` frames, centre-cropped to H:W and resized:
    {"video": [3, F, H, W] in [-1, 1], "first_frame": [3, H, W], "prompt": caption, "motion": {},
    "source": file}. A file that is corrupt, unreadable or shorter than `num_frames` raises
    `VideoDecodeError` (on_error="raise") or is dropped with one warning (on_error="skip"; see
    `self.skipped`, `self.skip_reasons`). A CSV row without its file, or an mp4 without a CSV row, is always an error.
    """

    def __init__(
        self,
        root: str | Path,
        captions_csv: str | Path,
        num_frames: int,
        height: int,
        width: int,
        on_error: str = "raise",
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root, self.num_frames, self.height, self.width = Path(root), num_frames, height, width
        if not self.root.is_dir():
            raise FileNotFoundError(f"video folder not found: {self.root}")
        captions = read_captions(captions_csv)
        absent = sorted(f for f in captions if not (self.root / f).is_file())
        if absent:
            raise FileNotFoundError(f"{len(absent)} file(s) named in {captions_csv} are not in {self.root}: {absent}")
        on_disk = {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.suffix in VIDEO_SUFFIXES}
        uncaptioned = sorted(on_disk - set(captions))
        if uncaptioned:
            raise ValueError(f"{len(uncaptioned)} video(s) in {self.root} have no row in {captions_csv}: {uncaptioned}")

        self.files: list[str] = []
        self.skipped: list[str] = []  # files dropped by on_error="skip"; why in skip_reasons
        self.skip_reasons: dict[str, str] = {}
        for file in captions:
            try:
                self._decode(file)
            except VideoDecodeError as err:
                if on_error == "raise":
                    raise
                self.skipped.append(file)
                self.skip_reasons[file] = str(err)
            else:
                self.files.append(file)
        self.captions = {f: captions[f] for f in self.files}
        if self.skipped:
            listing = "; ".join(self.skip_reasons.values())
            warnings.warn(
                f"VideoFolderDataset skipped {len(self.skipped)} of {len(captions)} file(s): {listing}", stacklevel=2
            )

    def _decode(self, file: str):
        return read_frames(self.root / file, self.num_frames, self.height, self.width)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        file = self.files[index]
        # a file that changed since validation raises here even in skip mode: skipping now would
        # silently shift index -> sample
        video = from_uint8_frames(self._decode(file))
        return {
            "video": video,  # [3, F, H, W] in [-1, 1]
            "first_frame": video[:, 0].clone(),  # [3, H, W]
            "prompt": self.captions[file],
            "motion": {},
            "source": file,
        }
