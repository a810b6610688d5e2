"""A folder of mp4 files with a `file,caption` CSV, e.g. clips exported with `write_mp4`.

Every file of the requested split is validated in `__init__` (its first `num_frames` frames at `fps`
decoded), so a bad file fails or is dropped before training starts, and index -> sample never shifts
during a run. Validation results are cached in a JSON manifest keyed by each file's size and mtime and
by the clip settings (frames, fps), so a later build decodes only new or changed files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from pathlib import Path

from torch.utils.data import Dataset

from aad1lib.data.video_io import VideoDecodeError, from_uint8_frames, read_clip
from aad1lib.run_folder import atomic_write_text

__all__ = ["VideoDecodeError", "VideoFolderDataset", "manifest_path", "split_files"]
VIDEO_SUFFIXES = (".mp4",)
MANIFEST_NAME = ".aad1-video-folder.json"  # the validation manifest, inside the folder when it is writable
MANIFEST_VERSION = 1
CACHE_DIR_ENV = "AAD1_CACHE_DIR"  # where manifests of read-only folders go (default ~/.cache/aad1)


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


def split_files(files: list[str], test_files: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, test) lists of `files` (order kept): the `test_files` files that rank first by
    sha256(seed, file name) are held out. Depends only on the names and the seed, so it is the same on
    every process, every call and every machine, whatever the listing order."""
    if not 1 <= test_files < len(files):
        raise ValueError(
            f"cannot hold out {test_files} test file(s) from {len(files)} file(s) and keep at least one for "
            f"training: need 1 <= test files (data.test_clips) < number of files"
        )
    ranked = sorted(files, key=lambda f: hashlib.sha256(f"{seed}\0{f}".encode()).hexdigest())
    held_out = set(ranked[:test_files])
    return [f for f in files if f not in held_out], [f for f in files if f in held_out]


def manifest_path(root: str | Path) -> Path:
    """Where the validation manifest of `root` lives: inside the folder if it is writable, else under
    ``$AAD1_CACHE_DIR`` (default ``~/.cache/aad1``), named after the folder's absolute path."""
    root = Path(root).resolve()
    if os.access(root, os.W_OK):
        return root / MANIFEST_NAME
    cache = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "aad1")
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return cache / "video_folder" / f"{root.name}-{digest}.json"


def _load_manifest(path: Path) -> dict[str, dict]:
    """{file: {"size", "mtime_ns", "checks": {settings: {"ok", "reason" | "source_fps"}}}}; {} when the
    manifest is absent, unreadable, half-written by a concurrent writer or of another version."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return {}
    files = manifest.get("files")
    return files if isinstance(files, dict) else {}


def _save_manifest(path: Path, root: Path, updates: dict[str, dict]) -> None:
    """Merge `updates` into the manifest on disk (another process may have validated other files or settings
    meanwhile), drop files no longer in `root`, write atomically. A cache: failing to write only warns."""
    files = _load_manifest(path)
    for file, entry in updates.items():
        old = files.get(file)
        if old and (old.get("size"), old.get("mtime_ns")) == (entry["size"], entry["mtime_ns"]):
            entry = {**entry, "checks": {**old.get("checks", {}), **entry["checks"]}}
        files[file] = entry
    files = {f: e for f, e in sorted(files.items()) if (root / f).is_file()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"version": MANIFEST_VERSION, "files": files}, indent=1))
    except OSError as err:
        warnings.warn(f"could not write the video folder manifest {path} ({err}); files will be re-validated "
                      f"next time (set {CACHE_DIR_ENV} to a writable folder)", stacklevel=3)  # fmt: skip


class VideoFolderDataset(Dataset):
    """mp4 files under `root` captioned by `captions_csv` (paths relative to `root`).

    Each sample is `num_frames` frames from the start of a file, resampled by timestamp to `fps` (None:
    the file's own frames; see `read_clip`), centre-cropped to H:W and resized:
    {"video": [3, F, H, W] in [-1, 1], "first_frame": [3, H, W], "prompt": caption, "motion": {},
    "source": file}. `split` "train" / "test" holds out `test_files` files chosen by `seed` (see
    `split_files`; None = every file). A file of the split that is corrupt, unreadable or shorter than
    `num_frames` at `fps` raises `VideoDecodeError` naming it (on_error="raise") or is dropped with one
    warning (on_error="skip"; see `self.skipped`, `self.skip_reasons`); a split left empty is an error. A
    CSV row without its file, or an mp4 without a CSV row, is always an error. Validation is cached in a
    manifest (`manifest_path(root)`), so a second build decodes only new or changed files.
    """

    def __init__(
        self,
        root: str | Path,
        captions_csv: str | Path,
        num_frames: int,
        height: int,
        width: int,
        on_error: str = "raise",
        fps: float | None = None,
        split: str | None = None,
        test_files: int = 0,
        seed: int = 0,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if split not in (None, "train", "test"):
            raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
        self.root, self.num_frames, self.height, self.width = Path(root), num_frames, height, width
        self.fps, self.split = fps, split
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

        wanted = list(captions)
        if split is not None:
            try:
                train, test = split_files(wanted, test_files, seed)
            except ValueError as err:
                raise ValueError(f"{self.root} ({captions_csv}): {err}") from None
            wanted = train if split == "train" else test
        checks = self._validate(wanted)
        self.files = [f for f in wanted if checks[f]["ok"]]
        self.skipped = [f for f in wanted if not checks[f]["ok"]]  # files dropped by on_error="skip"
        self.skip_reasons = {f: checks[f]["reason"] for f in self.skipped}
        self.source_fps = {f: checks[f].get("source_fps") for f in self.files}  # from each file's metadata
        self.captions = {f: captions[f] for f in self.files}
        of = f"{len(wanted)} file(s)" + (f" of the {split} split" if split else "")
        listing = "; ".join(self.skip_reasons.values())
        if self.skipped and on_error == "raise":
            if len(self.skipped) == 1:
                raise VideoDecodeError(listing)
            raise VideoDecodeError(f"{len(self.skipped)} of {of} in {self.root} failed validation: {listing}")
        if not self.files:
            raise VideoDecodeError(f"all {of} in {self.root} failed validation, none left: {listing}")
        if self.skipped:
            warnings.warn(f"VideoFolderDataset skipped {len(self.skipped)} of {of}: {listing}", stacklevel=2)
        slow = [f"{f} ({s:g} fps)" for f, s in self.source_fps.items() if fps and s and s < fps]
        if slow:
            shown = ", ".join(slow[:10]) + (f", … ({len(slow) - 10} more)" if len(slow) > 10 else "")
            warnings.warn(f"{len(slow)} file(s) in {self.root} are slower than fps={fps:g}, so their frames "
                          f"repeat: {shown}", stacklevel=2)  # fmt: skip

    @property
    def check_name(self) -> str:
        """The manifest key of the clip settings that decide whether a file is usable."""
        return f"{self.num_frames} frames at " + ("source fps" if self.fps is None else f"{self.fps:g} fps")

    def _validate(self, files: list[str]) -> dict[str, dict]:
        """{file: {"ok": True, "source_fps": ...} or {"ok": False, "reason": ...}}, decoding only files that
        are new or changed (size, mtime) since the manifest was written, or never checked with these settings."""
        path = manifest_path(self.root)
        manifest = _load_manifest(path)
        updates: dict[str, dict] = {}
        results: dict[str, dict] = {}
        for file in files:
            stat = (self.root / file).stat()  # before decoding: a file changed meanwhile is re-checked next time
            entry = manifest.get(file)
            if not entry or (entry.get("size"), entry.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
                entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "checks": {}}
            result = entry.get("checks", {}).get(self.check_name)
            if result is None:
                try:
                    _, source_fps = read_clip(self.root / file, self.num_frames, fps=self.fps)
                except VideoDecodeError as err:
                    result = {"ok": False, "reason": str(err)}
                else:
                    result = {"ok": True, "source_fps": source_fps}
                entry = updates[file] = {**entry, "checks": {**entry.get("checks", {}), self.check_name: result}}
            results[file] = result
        if updates:
            _save_manifest(path, self.root, updates)
        return results

    def _decode(self, file: str):
        return read_clip(self.root / file, self.num_frames, self.height, self.width, fps=self.fps)[0]

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
