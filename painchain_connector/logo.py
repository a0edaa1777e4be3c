"""The connector's logo, drawn here: a blue heptagon holding a white seven-spoke wheel.

Registered as a `data:image/png;base64,...` URI (the backend's `logo` field), so the UI's
logo request is answered without a file or a new dependency: a PNG is zlib + struct.
`data_uri()` draws it once per process (about 0.1 s, at registration) and caches the text.
"""
from __future__ import annotations

import base64
import functools
import math
import struct
import zlib

SIZE = 64
SAMPLES = 3  # per axis, per pixel: antialiasing by supersampling
BLUE = (0x32, 0x6C, 0xE5)
WHITE = (0xFF, 0xFF, 0xFF)
SPOKES = 7


def _heptagon(radius: float) -> list[tuple[float, float]]:
    return [(radius * math.sin(2 * math.pi * k / 7), -radius * math.cos(2 * math.pi * k / 7)) for k in range(7)]


_EDGES = list(zip(_heptagon(0.96), _heptagon(0.96)[1:] + _heptagon(0.96)[:1]))


_INNER = 0.96 * math.cos(math.pi / 7)  # inscribed circle: everything within it is inside


def _inside_heptagon(x: float, y: float) -> bool:
    r2 = x * x + y * y
    if r2 <= _INNER * _INNER:
        return True
    if r2 > 0.96 * 0.96:
        return False
    # Convex, vertices clockwise on screen: inside when on the same side of every edge.
    return all((bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0 for (ax, ay), (bx, by) in _EDGES)


def _on_wheel(x: float, y: float) -> bool:
    r = math.hypot(x, y)
    if r <= 0.17 or 0.50 <= r <= 0.62:  # hub and rim
        return True
    if r > 0.74:
        return False
    angle = math.atan2(x, -y) % (2 * math.pi / SPOKES)
    distance = r * math.sin(min(angle, 2 * math.pi / SPOKES - angle))  # from the nearest spoke's axis
    return distance <= 0.055 or (r > 0.62 and distance <= 0.085)  # spokes, with handles past the rim


def _pixel(px: int, py: int) -> bytes:
    blue = white = 0
    for sy in range(SAMPLES):
        for sx in range(SAMPLES):
            x = ((px + (sx + 0.5) / SAMPLES) / SIZE) * 2 - 1
            y = ((py + (sy + 0.5) / SAMPLES) / SIZE) * 2 - 1
            if _inside_heptagon(x, y):
                if _on_wheel(x, y):
                    white += 1
                else:
                    blue += 1
    covered = blue + white
    if not covered:
        return b"\0\0\0\0"
    rgb = (round((BLUE[i] * blue + WHITE[i] * white) / covered) for i in range(3))
    return bytes((*rgb, round(255 * covered / SAMPLES**2)))


def png() -> bytes:
    """The logo as PNG bytes (8-bit RGBA, no interlace)."""
    rows = b"".join(b"\0" + b"".join(_pixel(px, py) for px in range(SIZE)) for py in range(SIZE))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


@functools.lru_cache(maxsize=1)
def data_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(png()).decode("ascii")
