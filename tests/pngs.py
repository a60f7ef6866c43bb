"""Hand-made PNG files for the decoder tests: every row filter, any chunk layout."""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
BANDS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type → bands (L, RGB, LA, RGBA)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode(
    pixels: np.ndarray,
    color_type: int,
    filters: list[int],
    *,
    interlace: int = 0,
    depth: int = 8,
    before: bytes = b"",
    after: bytes = b"",
) -> bytes:
    """A PNG of `pixels` (H, W, bands) with row filter `filters[r % len]` on row r (Pillow's
    encoder picks its filters itself; a kind above 4 is written as it is, unfiltered), its
    data split over two IDAT chunks; `before` goes between IHDR and the data, `after` past
    IEND."""
    h, w, bpp = pixels.shape
    rows = pixels.reshape(h, w * bpp).astype(int)
    out = bytearray()
    for r in range(h):
        kind = filters[r % len(filters)]
        prior = rows[r - 1] if r else np.zeros(w * bpp, int)
        left = np.concatenate([np.zeros(bpp, int), rows[r, :-bpp]])
        corner = np.concatenate([np.zeros(bpp, int), prior[:-bpp]])
        p = left + prior - corner
        pa, pb, pc = abs(p - left), abs(p - prior), abs(p - corner)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, corner))
        pred = [0 * left, left, prior, (left + prior) // 2, paeth][kind] if kind <= 4 else 0
        out += bytes([kind]) + ((rows[r] - pred) % 256).astype(np.uint8).tobytes()
    data = zlib.compress(bytes(out))
    half = len(data) // 2
    header = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace)
    idat = chunk(b"IDAT", data[:half]) + chunk(b"IDAT", data[half:])
    return SIGNATURE + chunk(b"IHDR", header) + before + idat + chunk(b"IEND", b"") + after
