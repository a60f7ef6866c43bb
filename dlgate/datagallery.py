"""Drawing the data stage's gallery: a PNG sheet per split, one row of sample tiles per class
(see the `data.gallery` check for what goes on it).

The sheets are drawn by a child process of their own (`Drawing`, which runs this module
with its job as JSON on stdin). Decoding and laying out a few hundred tiles is some twenty
milliseconds of Python, which in the gate's process would hold the interpreter lock against
the scan the gallery overlaps; the child imports nothing but Pillow, starts while git still
compares the trees, and draws on the other core.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # The child yields to what the run waits for (git reading the trees, the scan) and takes
    # the time they leave: lowered before it loads Pillow.
    with contextlib.suppress(OSError):
        os.nice(5)

from PIL import Image, ImageDraw

CAPTION = 12  # pixels under each tile for its caption
LABEL = 56  # pixels left of each row for the class name
Row = tuple[str, list[tuple[str, str]]]  # class, its tiles: (repository-relative path, caption)


class Drawing:
    """A child process that draws sheets: started first, so that its start-up overlaps the
    caller's work, then given its job (`draw`). Close it where the job never comes."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "dlgate.datagallery"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def draw(
        self, repo: Path, sheets: dict[Path, list[Row]], tile: int, per_row: int, timeout: float
    ) -> None:
        """Draw each sheet (its PNG path → its rows); raises where the child fails."""
        job = {  # (absolute paths: the child's working folder is no concern of the caller's)
            "repo": str(repo.resolve()), "tile": tile, "per_row": per_row,
            "sheets": [{"path": str(p.resolve()), "rows": rows} for p, rows in sheets.items()],
        }  # fmt: skip
        try:
            _out, err = self._proc.communicate(json.dumps(job).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise RuntimeError(f"drawing the gallery took over {timeout:.0f} s") from None
        if self._proc.returncode:
            lines = err.decode("utf-8", "replace").strip().splitlines() or ["no output"]
            raise RuntimeError(f"drawing the gallery failed: {lines[-1]}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


def sheet(repo: Path, rows: list[Row], tile: int, per_row: int) -> Image.Image:
    width = LABEL + min(per_row, max(len(tiles) for _, tiles in rows)) * tile
    out = Image.new("RGB", (width, len(rows) * (tile + CAPTION)), "white")
    draw = ImageDraw.Draw(out)
    for r, (cls, tiles) in enumerate(rows):
        top = r * (tile + CAPTION)
        draw.text((4, top + tile // 2 - 6), cls[:8], fill="black")
        for c, (path, caption) in enumerate(tiles):
            left = LABEL + c * tile
            out.paste(_tile(repo / path, tile), (left, top))
            draw.text((left + 2, top + tile), caption[:12], fill="black")
    return out


def _tile(path: Path, size: int) -> Image.Image:
    out = Image.new("RGB", (size, size), "white")
    try:
        with Image.open(path) as opened:
            im = opened.convert("RGB")
    except Exception:  # an unreadable sample (data.integrity names it) still gets its tile
        out.paste((255, 230, 230), (0, 0, size, size))
        draw = ImageDraw.Draw(out)
        draw.line((0, 0, size, size), fill="red")
        draw.line((0, size, size, 0), fill="red")
        return out
    # Fit the tile; small samples (8x8 digits) are blown up with hard pixel edges.
    scale = size / max(im.size)
    shape = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX
    im = im.resize(shape, resample)
    out.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return out


def main() -> None:
    warnings.simplefilter("ignore")  # (Pillow's warning on a large image: its tile is drawn)
    job: dict[str, Any] = json.load(sys.stdin)
    repo = Path(job["repo"])
    for spec in job["sheets"]:
        rows = [(cls, [(path, caption) for path, caption in tiles]) for cls, tiles in spec["rows"]]
        drawn = sheet(repo, rows, job["tile"], job["per_row"])
        drawn.save(spec["path"], compress_level=1)  # a view for people: fast beats small


if __name__ == "__main__":
    main()
