"""`data.integrity`: truncated, zero-byte, corrupt and oversized files are named; clean
digits pass."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
from conftest import GitRepo
from digits import config, context, data_stage, png, write_digits
from PIL import Image
from PIL.PngImagePlugin import PngImageFile
from pngs import chunk

from dlgate import dataanalysis, fastpng
from dlgate.report import Level, Outcome


def bomb_png(side: int = 100_000) -> bytes:
    """A valid PNG header for a side x side image: 10 gigapixels, a few bytes on disk."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def noisy_png(side: int = 48) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (side, side), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, "PNG")
    return buf.getvalue()


def defects(repo: GitRepo) -> dict[str, str]:
    """path → the start of what data.integrity must say about it."""
    full = noisy_png()
    repo.write("data/train/1/truncated.png", full[: len(full) // 2])
    repo.write("data/train/1/cut-at-end.png", full[:-12])  # Pillow itself decodes this one
    repo.write("data/train/2/zero.png", b"")
    repo.write("data/train/3/corrupt.png", b"this is no image at all")
    repo.write("data/real_world/4/bomb.png", bomb_png())
    return {
        "data/train/1/truncated.png": "truncated image",
        "data/train/1/cut-at-end.png": "truncated image (the PNG ends before its IEND chunk)",
        "data/train/2/zero.png": "zero-byte file",
        "data/train/3/corrupt.png": "not a readable image (Pillow cannot identify the format)",
        "data/real_world/4/bomb.png": "decompression bomb: 100000x100000 = 10,000,000,000 pixels",
    }


def test_clean_digits_pass(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.commit("data")
    found = data_stage(context(git_repo, tmp_path, config()))["data.integrity"]
    assert found.outcome is Outcome.PASS
    assert found.message == "all 160 samples read and decoded"


def test_each_defect_is_named_by_path(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    expected = defects(git_repo)
    git_repo.commit("defects")
    start = time.perf_counter()
    found = data_stage(context(git_repo, tmp_path, config()))["data.integrity"]
    assert time.perf_counter() - start < 30  # the bomb was never decoded
    assert found.outcome is Outcome.FAIL
    assert "5 unreadable samples of 165" in found.message
    messages = {a.path: a.message for a in found.annotations}
    assert set(messages) == set(expected)
    for path, start_of in expected.items():
        assert messages[path].startswith(start_of), (path, messages[path])
    assert all(a.level is Level.FAILURE for a in found.annotations)


def test_pixel_limit_and_level_are_configurable(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo)
    git_repo.write("data/train/5/big.png", noisy_png(48))
    git_repo.commit("a 48x48 image")
    text = config("  integrity: {max_pixels: 1000, level: warn}\n")
    found = data_stage(context(git_repo, tmp_path, text))["data.integrity"]
    assert found.outcome is Outcome.WARN
    [note] = found.annotations
    assert note.path == "data/train/5/big.png" and note.level is Level.WARNING
    assert "48x48 = 2,304 pixels, over `data.integrity.max_pixels` (1,000)" in note.message
    # Raising the limit decodes the cached image now (it was never decoded before).
    found = data_stage(context(git_repo, tmp_path / "2", config()))["data.integrity"]
    assert found.outcome is Outcome.PASS


def test_long_lists_go_to_an_artifact(git_repo: GitRepo, tmp_path: Path) -> None:
    write_digits(git_repo, 2, 1)
    for i in range(5):
        git_repo.write(f"data/train/0/zero-{i}.png", b"")
        git_repo.write(f"data/train/1/broken-{i}.png", png(i)[:40])
    git_repo.commit("ten broken files")
    ctx = context(git_repo, tmp_path, config("  max_listed: 3\n"))
    found = data_stage(ctx)["data.integrity"]
    assert found.outcome is Outcome.FAIL
    assert len(found.annotations) == 3
    assert "… and 7 more (all of them in the artifact `data/integrity.txt`)" in found.details
    assert found.artifacts == ("data/integrity.txt",)
    lines = (ctx.out / "data/integrity.txt").read_text().splitlines()
    assert len(lines) == 10 and lines[0].startswith("data/train/0/zero-0.png: zero-byte file")


def odd_pngs() -> dict[str, bytes]:
    """PNGs the fast path leaves to Pillow: each ends as Pillow says, decoded or not."""
    w, h = 5, 4
    raw = b"".join(bytes([r % 5]) + bytes(range(r * 7, r * 7 + w)) for r in range(h))
    data = zlib.compress(raw)
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))

    def png(*chunks: bytes, idat: bytes = data, tail: bytes = b"") -> bytes:
        body = b"".join(chunks) or chunk(b"IDAT", idat)
        return b"\x89PNG\r\n\x1a\n" + header + body + chunk(b"IEND", b"") + tail

    bad_crc = bytearray(chunk(b"gAMA", b"\x00\x00\xb1\x8f"))
    bad_crc[-1] ^= 1
    return {
        "bad-ancillary-crc": png(bytes(bad_crc), chunk(b"IDAT", data)),
        "short-gama": png(chunk(b"gAMA", b"\x00\x01"), chunk(b"IDAT", data)),
        # A text key Pillow reads back as a setting: it decodes the rows as interlaced.
        "text-interlace": png(chunk(b"tEXt", b"interlace\x001"), chunk(b"IDAT", data)),
        "bad-checksum": png(idat=data[:-4] + bytes(4)),
        "filter-5": png(idat=zlib.compress(b"\x05" + raw[1:])),
        "short-data": png(idat=zlib.compress(raw[:-3])),
        "extra-data": png(idat=zlib.compress(raw + bytes(6))),
        "chunk-between-idats": png(
            chunk(b"IDAT", data[:5]), chunk(b"tIME", b"1234567"), chunk(b"IDAT", data[5:])
        ),
        "chunk-after-idat": png(chunk(b"IDAT", data), chunk(b"tIME", b"1234567")),
        "bytes-after-iend": png(tail=b"garbage!"),
    }


def test_odd_pngs_get_pillows_verdict(tmp_path: Path) -> None:
    """What the fast PNG path does not take gets exactly Pillow's verdict and pixels."""
    files = []
    for name, blob in odd_pngs().items():
        assert fastpng.plain(blob, 10**6) is None, name
        (tmp_path / f"{name}.png").write_bytes(blob)
        files.append((str(tmp_path / f"{name}.png"), None))
    records = dataanalysis.analyze_images(files, 10**6)
    for (path, _), record in zip(files, records, strict=True):
        pixels = pillow(path)
        if isinstance(pixels, str):
            assert record[4] is not None and pixels in record[4], (path, record[4])
        else:
            assert record[4] is None and record[6] == 1, (path, record[4])
            assert record[16] == int(pixels.sum())  # the sum of the grey band


def pillow(path: str) -> np.ndarray | str:
    """Pillow's pixels of a PNG, or what it says instead."""
    try:
        with PngImageFile(path) as im:
            return np.asarray(im)
    except Exception as exc:
        return str(exc)
