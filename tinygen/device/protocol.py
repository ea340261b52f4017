"""Host side of the bench protocol v1 (firmware/tg_bench.c): framing, CRC-32, the banner.

Every line the device sends in reply to a native command ends with `` *XXXXXXXX``, the
CRC-32 (zlib) of the text before `` *``; the host appends the same to every command.
MLPerf Tiny runner lines (``m-...``) carry no CRC.

>>> with_crc("hello 1")
'hello 1 *d7ef3967'
>>> check("OK hello 1 *" + format(zlib.crc32(b"OK hello 1"), "08x"))
'OK hello 1'
>>> check("OK hello 2 *00000000") is None
True
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

VERSION = 1
LINE_MAX = 600           # device limit for one command (TG_BENCH_LINE_MAX)
CHUNK = 128              # input bytes per load command: 256 hex digits
HEX_PER_LINE = 64        # tensor bytes per D line of the device (TG_BENCH_HEX_PER_LINE)
# What the host accepts from a device (it trusts nothing it reads):
CLOCK_MAX = 10_000_000_000   # Hz in the banner
TENSOR_MAX = 64 << 20        # bytes of the input or output tensor in the banner
LAYERS_MAX = 100_000
REPLY_LINE_MAX = 4096        # characters of one reply line; longer lines are noise


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def with_crc(text: str) -> str:
    """``text`` followed by `` *`` and its CRC-32 in 8 lowercase hex digits."""
    return f"{text} *{crc32(text.encode('ascii')):08x}"


def check(line: str) -> str | None:
    """The text of a CRC-framed line, or None when it has no valid CRC (noise, corruption)."""
    if len(line) < 10 or line[-10:-8] != " *":
        return None
    text, tail = line[:-10], line[-8:]
    try:
        want = int(tail, 16)
        return text if crc32(text.encode("latin-1")) == want and len(tail) == 8 else None
    except ValueError:
        return None


def load_commands(data: bytes, chunk: int = CHUNK) -> list[tuple[int, str]]:
    """(offset, command line) per chunk of the input tensor.

    >>> load_commands(bytes([1, 2, 255]), chunk=2)
    [(0, 'load 0 0102 *c609d008'), (2, 'load 2 ff *dfe98f96')]
    """
    return [(off, with_crc(f"load {off} {data[off:off + chunk].hex()}")) for off in range(0, len(data), chunk)]


@dataclass(frozen=True)
class Banner:
    """``TG_BENCH v1 model=<hash> board=<name> clock=<hz> counter=<src> in=<B> out=<B> layers=<n> maxline=<n>``"""

    version: int
    model: str
    board: str
    clock_hz: int
    counter: str
    in_size: int
    out_size: int
    layers: int
    maxline: int


def parse_banner(text: str) -> Banner:
    """Parses a (CRC-checked) banner; ValueError when malformed or out of range.

    >>> parse_banner("TG_BENCH v1 model=ab board=x clock=20 counter=systick in=4 out=2 layers=3 maxline=600").in_size
    4
    >>> parse_banner("TG_BENCH v1 model=ab board=x clock=0 counter=systick in=4 out=2 layers=3 maxline=600")
    Traceback (most recent call last):
    ValueError: banner field clock=0 outside [1, 10000000000]
    """
    parts = text.split()
    if len(parts) < 2 or parts[0] != "TG_BENCH" or not parts[1].startswith("v"):
        raise ValueError(f"not a TG_BENCH banner: {text!r}")
    kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    try:
        b = Banner(int(parts[1][1:]), kv["model"], kv["board"], int(kv["clock"]), kv.get("counter", "?"),
                   int(kv["in"]), int(kv["out"]), int(kv["layers"]), int(kv.get("maxline", LINE_MAX)))
    except KeyError as e:
        raise ValueError(f"banner without {e.args[0]}=") from None
    for what, v, lo, hi in (("clock", b.clock_hz, 1, CLOCK_MAX), ("in", b.in_size, 1, TENSOR_MAX),
                            ("out", b.out_size, 1, TENSOR_MAX), ("layers", b.layers, 0, LAYERS_MAX),
                            ("maxline", b.maxline, 16, REPLY_LINE_MAX)):
        if not lo <= v <= hi:
            raise ValueError(f"banner field {what}={v} outside [{lo}, {hi}]")
    return b


def parse_hex_lines(lines: list[str], size: int) -> bytes:
    """``D <offset> <hex>`` lines -> the tensor bytes; ValueError on gaps or bad hex."""
    buf = bytearray(size)
    seen = 0
    for ln in lines:
        try:
            _, off_s, hx = ln.split(" ", 2)
            off, data = int(off_s), bytes.fromhex(hx)
        except ValueError:
            raise ValueError(f"unparsable D line {ln[:60]!r}") from None
        if off != seen or off + len(data) > size:
            raise ValueError(f"D line at offset {off}, expected {seen}")
        buf[off:off + len(data)] = data
        seen += len(data)
    if seen != size:
        raise ValueError(f"{seen} of {size} bytes received")
    return bytes(buf)


# MLPerf Tiny runner (EEMBC host runner): commands end with '%', replies end with m-ready.
MLPERF_READY = "m-ready"


def mlperf_db_commands(data: bytes, chunk: int = 32) -> list[str]:
    """``db load N%`` then ``db HEX%`` chunks, as MLPerf Tiny's runner sends an input."""
    return [f"db load {len(data)}%"] + [f"db {data[o:o + chunk].hex()}%" for o in range(0, len(data), chunk)]
