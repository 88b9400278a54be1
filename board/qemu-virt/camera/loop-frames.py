#!/usr/bin/env python3
"""Frames for vivid's video loop: each 8-bit grey PNG part (as `linesight synth`
writes them) stretched to the HDMI output's WxH (nearest neighbour, so every value
is a value of the part) and written as one raw YUYV frame (Y = the grey value,
U = V = 128), NAME.yuyv, with NAME.png of the same luma beside it for comparison.

    loop-frames.py --width 1280 --height 720 --out DIR PART.png ...

Python 3 standard library only (zlib); PNGs: 8-bit greyscale, not interlaced."""

import argparse
import os
import struct
import sys
import zlib


def read_gray_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, interlace) == (8, 0, 0), f"{path}: not 8-bit grey, non-interlaced"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows, prev = [], bytearray(w)
    for y in range(h):
        f, line = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0
            b = prev[x]
            c = prev[x - 1] if x else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows


def write_gray_png(path, w, h, rows):
    raw = b"".join(b"\x00" + r for r in rows)
    chunk = lambda k, b: struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b))  # noqa: E731
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("parts", nargs="+")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for p in a.parts:
        w, h, rows = read_gray_png(p)
        xs = [x * w // a.width for x in range(a.width)]
        big = [bytes(rows[y * h // a.height][x] for x in xs) for y in range(a.height)]
        name = os.path.splitext(os.path.basename(p))[0]
        with open(os.path.join(a.out, name + ".yuyv"), "wb") as f:
            for r in big:
                f.write(bytes(v for i in range(0, a.width, 2) for v in (r[i], 128, r[i + 1], 128)))
        write_gray_png(os.path.join(a.out, name + ".png"), a.width, a.height, big)
        print(f"loop-frames: {name}: {w}x{h} -> {a.width}x{a.height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
