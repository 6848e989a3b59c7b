"""Tiny but structurally valid MP4 (ISO-BMFF) files for the emulator's CDN."""

from __future__ import annotations

import hashlib
import struct

__all__ = ["build_mp4"]


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _mvhd(duration_ms: int) -> bytes:
    unity_matrix = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
    payload = (
        struct.pack(">I", 0)  # version 0, no flags
        + struct.pack(">IIII", 0, 0, 1000, duration_ms)  # created, modified, timescale, duration
        + struct.pack(">IH", 0x00010000, 0x0100)  # rate 1.0, volume 1.0
        + b"\x00" * 10
        + unity_matrix
        + b"\x00" * 24
        + struct.pack(">I", 1)  # next track id
    )
    return _box(b"mvhd", payload)


def build_mp4(seed: str, *, duration_seconds: float = 5.0, mdat_size: int = 4096) -> bytes:
    """Return an ``ftyp`` + ``moov/mvhd`` + ``mdat`` file whose payload bytes derive from *seed*.

    Different seeds give different files, so tests can tell downloads apart.
    """
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    moov = _box(b"moov", _mvhd(round(duration_seconds * 1000)))
    chunks: list[bytes] = []
    block = hashlib.sha256(seed.encode()).digest()
    total = 0
    while total < mdat_size:
        chunks.append(block)
        total += len(block)
        block = hashlib.sha256(block).digest()
    mdat = _box(b"mdat", b"".join(chunks)[:mdat_size])
    return ftyp + moov + mdat
