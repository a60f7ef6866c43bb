"""What the data stage measures of one sample, in worker processes, once per content.

Each image file is read once, hashed (unless git already knows its blob id), decoded once
from those bytes, and everything is computed from that one decode: size, mode, bands, the
integrity verdict, per-channel pixel sums, a brightness bin and a perceptual hash. The
numeric part runs vectorized over a chunk of same-shaped images, so the per-file cost stays
close to the decode itself. Text samples are measured in the calling process (cheap).

A record is a plain tuple in `COLUMNS` order, the row of the cache's `files` table.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import marshal
import operator
import os
import string
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngImageFile

from dlgate import fastpng

# Bump when a record's meaning or the cache's layout changes: another version's cache is not
# used.
VERSION = 6
IMAGE, TEXT = 0, 1
COLUMNS = (
    "key", "kind", "size", "size_bin", "error", "transient", "decoded", "fmt", "mode",
    "w", "h", "bands", "ph", "bright", "smode", "npix",
    "s0", "s1", "s2", "s3", "q0", "q1", "q2", "q3",
    "t_len", "t_alpha", "t_digit", "t_space", "t_punct", "t_nonascii",
)  # fmt: skip
Record = tuple[Any, ...]
Row = tuple[bytes, int | None, int, bytes]  # a `files` row: key, ph, flags, packed record
Counts = dict[tuple[str, str, str], int]  # (split, counter, bucket) → value

THUMB = 8  # perceptual thumbnail side
HELD_BYTES = 1 << 25  # pixel data held for measuring at once: flat memory for large images

_PNG = b"\x89PNG\r\n\x1a\n"
_MAGIC = (
    (_PNG, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"),
    (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)  # fmt: skip
_FAST = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3, "LAB": 3, "HSV": 3}
_PUNCT = str.maketrans("", "", string.punctuation)


# `files.flags`: what queries filter on without unpacking the record.
ERROR, TRANSIENT, DECODED, IMAGE_FLAG = 1, 2, 4, 8


def blob_id(data: bytes) -> bytes:
    """Git's blob id of `data`: the same content hash git records for a tracked file."""
    h = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    h.update(data)
    return h.digest()


def pack(record: Record) -> Row:
    """The cache row of a record (packed here, in the worker that made it)."""
    flags = (
        (ERROR if record[4] is not None else 0)
        | (TRANSIENT if record[5] else 0)
        | (DECODED if record[6] else 0)
        | (IMAGE_FLAG if record[1] == IMAGE else 0)
    )
    return record[0], record[12], flags, marshal.dumps(record)


def unpack(rec: bytes) -> Record:
    record: Record = marshal.loads(rec)
    return record


def analyze_text(value: str) -> Record:
    """The record of a text sample; its key hashes the text, its perceptual hash the
    normalized text (NFKC, case-folded, whitespace collapsed)."""
    data = value.encode("utf-8")
    key = hashlib.sha1(b"text\0" + data, usedforsecurity=False).digest()
    norm = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
    n = len(value)
    return (
        key, TEXT, len(data), len(data).bit_length(), None, 0, 1, "", "",
        None, None, None, _hash64(norm.encode("utf-8")), n.bit_length(), "", None,
        None, None, None, None, None, None, None, None,
        n, sum(map(str.isalpha, value)), sum(map(str.isdigit, value)),
        sum(map(str.isspace, value)), n - len(value.translate(_PUNCT)),
        n - len(value.encode("ascii", "ignore")),
    )  # fmt: skip


def analyze_chunk(chunk: Chunk, max_pixels: int) -> tuple[list[Row], Counts]:
    """Cache rows of a chunk's files, in order, and what they add to its split's counters.
    Never raises for a bad file."""
    root = chunk.root
    paths = [p if p.startswith("/") else f"{root}/{p}" for p in chunk.paths]
    records = analyze_images(list(zip(paths, chunk.blobs, strict=True)), max_pixels)
    counts: Counts = {}
    contribute_many(counts, chunk.split, list(zip(chunk.labels, records, strict=True)), 1)
    return [pack(r) for r in records], counts


def analyze_images(files: Sequence[tuple[str, bytes | None]], max_pixels: int) -> list[Record]:
    """Records of image files (path, known blob id), in order."""
    heads: list[list[Any]] = []
    plain: _Groups = {}  # (mode, w, h) → (index, filtered scanlines): `fastpng.plain` files
    decoded: _Groups = {}  # (layout, w, h) → (index, pixel bytes): decoded by Pillow
    held = 0
    with _quiet_pillow():
        for path, blob in files:
            head, found = _decode(path, blob, max_pixels)
            if found is not None:
                shape, data, filtered = found
                (plain if filtered else decoded).setdefault(shape, []).append((len(heads), data))
                held += len(data)
            heads.append(head)
            if held > HELD_BYTES:  # large images: measure what is held before reading on
                _measure_groups(heads, plain, decoded)
                held = 0
        _measure_groups(heads, plain, decoded)
    return [tuple(h) for h in heads]


_Groups = dict[tuple[str, int, int], list[tuple[int, bytes]]]


def _measure_groups(heads: list[list[Any]], plain: _Groups, decoded: _Groups) -> None:
    for (mode, w, h), items in plain.items():
        pixels = fastpng.unfilter(mode, (w, h), [lines for _, lines in items])
        _measure(heads, mode, [i for i, _ in items], pixels)
    for (smode, w, h), items in decoded.items():
        raw = b"".join(data for _, data in items)
        pixels = np.frombuffer(raw, np.uint8).reshape(len(items), h, w, _FAST[smode])
        _measure(heads, smode, [i for i, _ in items], pixels)
    plain.clear()
    decoded.clear()


def contribute(counts: Counts, split: str, label: str, record: Record, sign: int) -> None:
    """Add (sign 1) or take back (sign -1) what one sample adds to its split's counters."""
    contribute_many(counts, split, [(label, record)], sign)


def contribute_many(
    counts: Counts, split: str, items: Sequence[tuple[str, Record]], sign: int
) -> None:
    """What samples (label, record) of one split add to its counters: `count` per label,
    `file_size` (log2 bins), `errors`, `transient`; for images `size`, `mode`, `format`,
    `brightness`, `bombs` (not decoded) and `pixels.<layout>` sums; for text `length` (log2
    bins), `text` and `chars` (character classes). Samples alike are counted together."""

    def add(name: str, bucket: object, value: int | None) -> None:
        if value:
            k = (split, name, str(bucket))
            counts[k] = counts.get(k, 0) + sign * value

    # The error's text stands for "an error" here: texts differ, `errors` adds them all up.
    alike = Counter((label, _ALIKE(r)) for label, r in items)
    for (
        label,
        (kind, size_bin, error, transient, w, h, mode, fmt, decoded, bright, smode),
    ), n in alike.items():
        add("count", label, n)
        add("file_size", size_bin, n)
        add("errors", "", n if error is not None else 0)
        add("transient", "", n if transient else 0)
        if kind == TEXT:
            add("length", bright, n)
            add("text", "n", n)
            continue
        if w is not None:
            add("size", f"{w}x{h}", n)
            add("mode", mode, n)
            add("format", fmt, n)
        if decoded:
            add("brightness", bright, n)
            add(f"pixels.{smode}", "n", n)
        elif error is None:
            add("bombs", "", n)
    rows: dict[str, list[tuple[int | None, ...]]] = {}
    for _, r in items:
        if r[1] == TEXT:
            rows.setdefault("chars", []).append(r[24:30])
        elif r[6]:
            rows.setdefault(f"pixels.{r[14]}", []).append(r[15:24])
    for name, values in rows.items():
        fields = COLUMNS[24:30] if name == "chars" else COLUMNS[15:24]
        for field, column in zip(fields, zip(*values, strict=True), strict=True):
            value = sum(filter(None, column))  # a band the layout lacks is None throughout
            add(name, field[2:] if name == "chars" else field, value)


# What makes samples alike for the counters: kind, size bin, error, transient, width, height,
# mode, format, decoded, brightness, layout.
_ALIKE = operator.itemgetter(1, 3, 4, 5, 9, 10, 8, 7, 6, 13, 14)


def _decode(
    path: str, blob: bytes | None, max_pixels: int
) -> tuple[list[Any], tuple[tuple[str, int, int], bytes, bool] | None]:
    """A file's record so far, and its pixels to measure: (shape, scanlines still filtered
    (True) or pixel bytes (False)), or None where there are none."""
    head: list[Any] = [None] * len(COLUMNS)
    head[1], head[6], head[5] = IMAGE, 0, 0
    try:
        data = _read(path)
    except OSError as exc:
        # Not a property of the content: recorded for this run, never trusted from the cache.
        head[0] = blob or hashlib.sha1(f"unreadable\0{path}".encode()).digest()
        head[2], head[3], head[5] = 0, 0, 1
        head[4] = f"cannot be read ({exc.strerror or exc})"
        return head, None
    head[0] = blob or blob_id(data)
    head[2], head[3] = len(data), len(data).bit_length()
    if not data:
        head[4] = "zero-byte file"
        return head, None
    hint = "PNG" if data.startswith(_PNG) else _format(data)
    if hint == "PNG":
        plain = fastpng.plain(data, max_pixels)
        if plain is not None:
            mode, w, h, lines = plain
            head[6:12] = 1, "PNG", mode, w, h, len(mode)
            return head, ((mode, w, h), lines, True)
    try:
        im = (
            PngImageFile(io.BytesIO(data))
            if hint == "PNG"
            else Image.open(io.BytesIO(data), formats=(hint,) if hint else None)
        )
    except Exception as exc:  # Pillow raises many types for bad files; each is a verdict
        head[4] = f"not a readable image ({_reason(exc)})"
        return head, None
    head[7], head[8] = im.format or "", im.mode
    head[9], head[10] = w, h = im.size
    head[11] = len(im.getbands())
    if w * h > max_pixels:
        return head, None  # a decompression bomb: judged by the check, never decoded
    try:
        smode, raw = _pixels(im)
    except Exception as exc:
        text = _reason(exc)
        head[4] = f"truncated image ({text})" if "truncated" in text else f"corrupt image ({text})"
        return head, None
    if hint == "PNG" and b"IEND" not in data[-64:]:
        # Pillow decodes a PNG cut off after its image data without a word; the end chunk
        # tells a complete file.
        head[4] = "truncated image (the PNG ends before its IEND chunk)"
        return head, None
    head[6] = 1
    return head, ((smode, w, h), raw, False)


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 16)
        if len(data) < 1 << 16:
            return data
        parts = [data]
        while part := os.read(fd, 1 << 20):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(fd)


def _format(data: bytes) -> str | None:
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def _pixels(im: Image.Image) -> tuple[str, bytes]:
    """8-bit pixel bytes in a layout of `_FAST` (statistics are on the 0..255 scale)."""
    mode = im.mode
    if mode in _FAST:
        return mode, im.tobytes()
    if mode in ("P", "PA"):
        rgba = mode == "PA" or "transparency" in im.info
        conv = im.convert("RGBA" if rgba else "RGB")
        return conv.mode, conv.tobytes()
    if mode == "1":
        return "L", im.convert("L").tobytes()
    arr = np.asarray(im)
    if mode.startswith("I;16"):
        arr = arr.astype(np.uint16) >> 8
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3:  # any other multi-band layout: keep its first three bands
        arr = np.ascontiguousarray(arr[..., :3])
        return "RGB", arr.tobytes()
    return "L", arr.tobytes()


def _measure(heads: list[list[Any]], smode: str, index: list[int], pixels: np.ndarray) -> None:
    """Fill the pixel fields of the records `index`, whose pixels (n, h, w, bands) these are."""
    n, h, w, c = pixels.shape
    sums = np.zeros((n, c), np.int64)
    squares = np.zeros((n, c), np.uint64)
    thumbs = np.zeros((n, THUMB, THUMB), np.float32)
    rows_box, cols_box = _box(h, THUMB), _box(w, THUMB).T
    # In blocks of rows (one block for small images): the temporaries stay a few megabytes
    # however large the image (a 50-megapixel one would need several hundred at once).
    step = max(1, _BLOCK // (n * w * c))
    for top in range(0, h, step):
        block = pixels[:, top : top + step]
        # Bands first, each one's pixels contiguous: numpy sums those fast (a band-interleaved
        # sum over the pixels takes several times as long).
        bands = np.ascontiguousarray(block.reshape(n, -1, c).transpose(0, 2, 1))
        sums += bands.sum(-1, dtype=np.int64)
        squares += np.square(bands, dtype=np.uint16).sum(-1, dtype=np.uint64)  # 255² fits
        if smode in ("RGB", "RGBA"):
            rgb = block[..., :3].reshape(-1, 3).astype(np.float32)
            gray = (rgb @ _LUMA).reshape(n, -1, w)
        else:
            gray = block[..., 0].astype(np.float32)
        thumbs += rows_box[:, top : top + step] @ gray @ cols_box  # (a sum over row blocks)
    quant = (np.clip(np.rint(thumbs), 0, 255).astype(np.uint8) >> 4).reshape(n, -1)
    bright = np.minimum(thumbs.mean((1, 2)) // 16, 15).astype(int).tolist()
    pad = [None] * (4 - c)
    side = THUMB * THUMB
    npix = w * h
    # Back to Python values once per group, not per element.
    thumbs_bytes, sums_list, squares_list = quant.tobytes(), sums.tolist(), squares.tolist()
    for j, i in enumerate(index):
        head = heads[i]
        head[12] = _hash64(thumbs_bytes[j * side : (j + 1) * side])
        head[13], head[14], head[15] = bright[j], smode, npix
        head[16:20] = sums_list[j] + pad
        head[20:24] = squares_list[j] + pad


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 grey, as Pillow's "L"
_BLOCK = 1 << 22  # pixel values measured at once
_BOXES: dict[tuple[int, int], np.ndarray] = {}


def _box(n: int, m: int) -> np.ndarray:
    """(m, n) weights averaging n samples into m (area resampling, like Pillow's BOX)."""
    key = (n, m)
    if key not in _BOXES:
        edges = np.arange(m + 1) * (n / m)
        lo, hi = edges[:-1, None], edges[1:, None]
        pos = np.arange(n)[None, :]
        overlap = np.clip(np.minimum(hi, pos + 1) - np.maximum(lo, pos), 0, None)
        _BOXES[key] = (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)
    return _BOXES[key]


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):  # its text names our in-memory buffer
        return "Pillow cannot identify the format"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


@contextlib.contextmanager
def _quiet_pillow() -> Iterator[None]:
    # The gate sets its own pixel limit (`integrity.max_pixels`); Pillow's would raise first.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


class Chunk(NamedTuple):
    """Image samples of one split, for one worker task."""

    split: str
    root: str  # the folder `paths` are relative to (an absolute path is taken as it is)
    paths: list[str]
    blobs: list[bytes | None]  # each file's git blob id, where known (else it is hashed)
    labels: list[str]
