"""Where the repository's folders are: the one place that knows the package sits one level below the root."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"  # papermill runs every notebook with this folder as its working directory
