"""A batch decoder for small PNG files, bit-exact with Pillow, for the deployed inference path.

For an 8x8 PNG, Pillow spends ~40 µs per file in Python (plugin lookup, chunk parsing, the
decoder set-up), several times what onnxruntime spends on the sample; evaluating thousands of
small real-world samples is then mostly file overhead. This decoder parses the chunks with
`struct`, inflates with `zlib`, and undoes the PNG row filters for a whole batch at once with
numpy (one vectorised step per row, and per column only for the Average and Paeth filters).

It takes only what it can decode exactly as Pillow would: 8-bit, non-interlaced, valid CRCs,
the expected size, and a colour type whose conversion to the model's mode is a plain channel
selection (grey or grey+alpha → L; RGB or RGBA → RGB). Anything else — and any file that is
malformed in any way — is left to Pillow, which decodes it or explains why it cannot.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 32 * 32  # above this, the per-column filter loops cost more than Pillow
MAX_BYTES = 64 * 1024  # a small PNG is far smaller; a larger file is left to Pillow

# colour type -> bytes per pixel, for the types whose conversion is a channel selection
_BPP = {0: 1, 4: 2, 2: 3, 6: 4}
_MODES = {"L": (0, 4), "RGB": (2, 6)}  # the colour types each model mode accepts
_CRITICAL = {b"IHDR", b"IDAT", b"IEND", b"PLTE"}
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the one valid IEND chunk


def decode(
    blobs: Sequence[bytes | None], size: tuple[int, int], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every blob that qualifies. Returns (pixels, done): pixels is
    (len(blobs), height, width, channels) uint8, valid where `done` is True."""
    width, height = size
    channels = 1 if mode == "L" else 3
    pixels = np.zeros((len(blobs), height, width, channels), dtype=np.uint8)
    done = np.zeros(len(blobs), dtype=bool)
    if mode not in _MODES or width * height > MAX_PIXELS:
        return pixels, done
    groups: dict[int, tuple[list[int], list[bytes]]] = {}  # colour type -> (index, raw rows)
    headers: dict[bytes, tuple[int, ...] | None] = {}  # a batch's files share their IHDR
    for i, blob in enumerate(blobs):
        parsed = _inflate(blob, width, height, _MODES[mode], headers) if blob else None
        if parsed is not None:
            color_type, raw = parsed
            rows = groups.setdefault(color_type, ([], []))
            rows[0].append(i)
            rows[1].append(raw)
    for color_type, (members, raws) in groups.items():
        bpp = _BPP[color_type]
        filtered = np.frombuffer(b"".join(raws), dtype=np.uint8).reshape(
            len(raws), height, 1 + width * bpp
        )
        index = np.asarray(members)
        ok = filtered[:, :, 0].max(axis=1) <= 4  # an unknown filter type: Pillow says so
        if not ok.all():
            index, filtered = index[ok], filtered[ok]
        if not len(index):
            continue
        image = _unfilter(filtered, bpp).reshape(len(index), height, width, bpp)
        pixels[index] = image[..., :channels]  # alpha dropped, as Pillow's convert does
        done[index] = True
    return pixels, done


def _inflate(
    blob: bytes,
    width: int,
    height: int,
    types: tuple[int, ...],
    headers: dict[bytes, tuple[int, ...] | None],
) -> tuple[int, bytes] | None:
    """(colour type, the filtered scanlines) of a qualifying PNG, else None."""
    if not blob.startswith(SIGNATURE):
        return None
    # The usual small PNG — signature, IHDR, one IDAT, IEND, nothing else — in a few slices;
    # anything else goes through the general chunk walk.
    if blob.endswith(_IEND) and blob[37:41] == b"IDAT":
        (length,) = struct.unpack_from(">I", blob, 33)
        if 57 + length == len(blob):
            ihdr = blob[8:33]
            if ihdr not in headers:
                headers[ihdr] = _header(ihdr)
            header = headers[ihdr]
            (crc,) = struct.unpack_from(">I", blob, 41 + length)
            if header is None or zlib.crc32(blob[37 : 41 + length]) != crc:
                return None
            return _scanlines(header, blob[41 : 41 + length], width, height, types)
    return _walk(blob, width, height, types)


def _header(chunk: bytes) -> tuple[int, ...] | None:
    """The fields of a whole IHDR chunk (length, type, data, CRC), if it is one."""
    length, kind = struct.unpack_from(">I4s", chunk)
    (crc,) = struct.unpack_from(">I", chunk, 21)
    if (length, kind) != (13, b"IHDR") or zlib.crc32(chunk[4:21]) != crc:
        return None
    return struct.unpack_from(">IIBBBBB", chunk, 8)


def _scanlines(
    header: tuple[int, ...], data: bytes, width: int, height: int, types: tuple[int, ...]
) -> tuple[int, bytes] | None:
    w, h, depth, color_type, compression, filtering, interlace = header
    if (w, h, depth, compression, filtering, interlace) != (width, height, 8, 0, 0, 0):
        return None
    if color_type not in types:
        return None
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        return None
    if len(raw) != height * (1 + width * _BPP[color_type]):
        return None
    return color_type, raw


def _walk(blob: bytes, width: int, height: int, types: tuple[int, ...]) -> tuple[int, bytes] | None:
    """Any chunk layout: every chunk in turn, checked as Pillow would."""
    pos, end = 8, len(blob)
    header: tuple[int, ...] | None = None
    idat: list[bytes] = []
    last = b""
    try:
        while pos + 12 <= end:
            length, kind = struct.unpack_from(">I4s", blob, pos)
            stop = pos + 12 + length
            if stop > end:
                return None
            (crc,) = struct.unpack_from(">I", blob, stop - 4)
            if zlib.crc32(blob[pos + 4 : stop - 4]) != crc:
                return None
            if (header is None) != (kind == b"IHDR"):  # IHDR first, and only once
                return None
            if kind[0] & 0x20 == 0 and kind not in _CRITICAL:  # an unknown critical chunk
                return None
            if kind == b"IHDR":
                header = struct.unpack_from(">IIBBBBB", blob, pos + 8)
            elif kind == b"IDAT":
                if idat and last != b"IDAT":  # IDAT chunks must be consecutive
                    return None
                idat.append(blob[pos + 8 : stop - 4])
            elif kind == b"IEND":
                break
            last = kind
            pos = stop
        else:
            return None  # no IEND: truncated
    except struct.error:
        return None
    if header is None or not idat:
        return None
    return _scanlines(header, b"".join(idat), width, height, types)


def _unfilter(filtered: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the PNG filters of (images, rows, 1 + row bytes) scanlines, all images at once."""
    n, height, stride = filtered.shape
    width = stride - 1
    out = np.empty((n, height, width), dtype=np.uint8)
    prior = np.zeros((n, width), dtype=np.uint8)
    for r in range(height):
        kinds = filtered[:, r, 0]
        line = filtered[:, r, 1:]
        row = out[:, r]
        none, sub, up = kinds == 0, kinds == 1, kinds == 2
        row[none] = line[none]
        row[up] = line[up] + prior[up]  # uint8 arithmetic wraps modulo 256, as PNG does
        if sub.any():
            run = line[sub].reshape(-1, width // bpp, bpp)
            row[sub] = np.cumsum(run, axis=1, dtype=np.uint8).reshape(-1, width)
        for kind in (3, 4):
            picked = kinds == kind
            if picked.any():
                row[picked] = _sequential(line[picked], prior[picked], bpp, paeth=kind == 4)
        prior = row
    return out


def _sequential(line: np.ndarray, prior: np.ndarray, bpp: int, *, paeth: bool) -> np.ndarray:
    """Average and Paeth depend on the byte to the left: one column at a time."""
    x_line = line.astype(np.int16)
    up = prior.astype(np.int16)
    out = np.zeros_like(x_line)
    zero = np.zeros(len(line), dtype=np.int16)
    for x in range(line.shape[1]):
        left = out[:, x - bpp] if x >= bpp else zero
        above = up[:, x]
        if paeth:
            corner = up[:, x - bpp] if x >= bpp else zero
            p = left + above - corner
            pa, pb, pc = np.abs(p - left), np.abs(p - above), np.abs(p - corner)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, corner))
        else:
            pred = (left + above) >> 1
        out[:, x] = (x_line[:, x] + pred) & 0xFF
    return out.astype(np.uint8)


# --- any plain PNG, for the data stage -------------------------------------------------------
#
# The data stage measures every file in its own mode and size, in batches of mixed shapes, so
# the per-column loops above (cheap only over a large batch of one shape) do not fit it.
# `plain` parses and inflates one file; `unfilter` undoes the row filters of many files of one
# shape in a single call of Pillow's own PNG decoder: the files' scanlines are stacked into
# one tall image with a zero row (filter None) before each file, so every file's first row
# sees the zero prior row PNG defines, and the decoded pixels are Pillow's by construction.

PLAIN_MODES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}  # 8-bit colour types, as Pillow names them
BANDS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
# Ancillary chunks Pillow's reader cannot fail on at these lengths (its handlers raise on
# shorter ones) and whose values change no pixel: (smallest length, largest length). Not
# tEXt: a text key such as "interlace" lands in `info` and changes how Pillow decodes.
_HARMLESS = {
    b"gAMA": (4, 1 << 16), b"cHRM": (32, 1 << 16), b"sRGB": (1, 1 << 16),
    b"pHYs": (9, 1 << 16), b"tIME": (0, 1 << 16), b"bKGD": (0, 1 << 16),
    b"sBIT": (0, 1 << 16),
}  # fmt: skip
_IHDR = struct.Struct(">IIBBBBB")
_HEAD = struct.Struct(">I4s")


def plain(blob: bytes, max_pixels: int) -> tuple[str, int, int, bytes] | None:
    """(mode, width, height, filtered scanlines) of a PNG that Pillow opens and decodes
    without a word, to exactly the pixels `unfilter` gives for these scanlines; else None.

    Taken: 8 bits per sample, grey or RGB with or without alpha, not interlaced, at most
    `max_pixels`; IHDR, then only the harmless ancillary chunks above, then consecutive IDAT
    chunks holding one complete zlib stream of exactly the image's scanlines with known row
    filters, then IEND as the last bytes of the file; every chunk's CRC valid. Anything else
    (a palette, transparency, text Pillow decompresses, a truncated or padded file, a bad
    checksum) is None, and the caller asks Pillow, which decodes it or says why not."""
    if not blob.startswith(SIGNATURE) or not blob.endswith(_IEND) or len(blob) < 57:
        return None
    ihdr = blob[8:33]
    if ihdr not in _SHAPES:
        if len(_SHAPES) > 4096:  # (a data set has a handful of shapes)
            _SHAPES.clear()
        _SHAPES[ihdr] = _shape(ihdr)
    shape = _SHAPES[ihdr]
    if shape is None or shape[1] * shape[2] > max_pixels:
        return None
    mode, w, h = shape
    end = len(blob) - len(_IEND)
    if blob[37:41] == b"IDAT" and _HEAD.unpack_from(blob, 33)[0] + 45 == end:
        data = _chunk_data(blob, 33)  # the usual file: IHDR, one IDAT, IEND
    else:
        data = _idat(blob, end)
    if data is None:
        return None
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        return None
    stride = 1 + w * BANDS[mode]
    if len(raw) != h * stride or max(raw[::stride]) > 4:  # 0..4: the PNG row filters
        return None
    return mode, w, h, raw


_SHAPES: dict[bytes, tuple[str, int, int] | None] = {}  # IHDR chunk → (mode, width, height)


def _shape(ihdr: bytes) -> tuple[str, int, int] | None:
    """(mode, width, height) of a whole IHDR chunk of a plain image, else None."""
    header = _header(ihdr)
    if header is None:
        return None
    w, h, depth, color_type, compression, filtering, interlace = header
    mode = PLAIN_MODES.get(color_type)
    if mode is None or depth != 8 or compression or filtering or interlace or not w or not h:
        return None
    return mode, w, h


def _chunk_data(blob: bytes, pos: int) -> bytes | None:
    """The data of the chunk at `pos` if its CRC is right."""
    (length,) = struct.unpack_from(">I", blob, pos)
    stop = pos + 8 + length
    (crc,) = struct.unpack_from(">I", blob, stop)
    return blob[pos + 8 : stop] if zlib.crc32(blob[pos + 4 : stop]) == crc else None


def _idat(blob: bytes, end: int) -> bytes | None:
    """The joined IDAT data of a file with harmless ancillary chunks or several IDATs,
    walked from after IHDR up to `end` (where IEND starts)."""
    pos, idat = 33, []
    while pos < end:
        if pos + 12 > end:
            return None
        length, kind = _HEAD.unpack_from(blob, pos)
        stop = pos + 12 + length
        if stop > end:
            return None
        data = _chunk_data(blob, pos)
        if data is None:
            return None
        if kind == b"IDAT":
            idat.append(data)
        elif idat:  # after the image data, only IEND
            return None
        else:
            bounds = _HARMLESS.get(kind)
            if bounds is None or not bounds[0] <= length <= bounds[1]:
                return None
        pos = stop
    return b"".join(idat) if idat and pos == end else None


def unfilter(mode: str, size: tuple[int, int], scanlines: Sequence[bytes]) -> np.ndarray:
    """The pixels (n, height, width, bands) of n images of one mode and size, from their
    scanlines as `plain` returns them, decoded by Pillow in one call."""
    width, height = size
    bands = BANDS[mode]
    stride = 1 + width * bands
    zero = bytes(stride)
    stacked = zero + zero.join(scanlines)
    rows = len(scanlines) * (height + 1)
    # Stored (level 0) deflate: Pillow's PNG decoder takes zlib data; storing costs a copy.
    tall = Image.frombytes(mode, (width, rows), zlib.compress(stacked, 0), "zip", mode)
    pixels = np.frombuffer(tall.tobytes(), np.uint8).reshape(
        len(scanlines), height + 1, width, bands
    )
    return pixels[:, 1:]


__all__ = [
    "BANDS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "PLAIN_MODES",
    "SIGNATURE",
    "decode",
    "plain",
    "unfilter",
]
