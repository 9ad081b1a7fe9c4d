"""Input limits in one place: every reader of a user-given file goes through here.

    data = read_file(path, "spec", SpecError)          # regular file, size-limited, never blocks
    text = gunzip(data, "spec", SpecError, where)       # decompressed size limited too
    value = load_json(text, SpecError, where)           # nesting depth limited, non-finite numbers refused

A hostile file (an endless device, a FIFO, a gzip or zip bomb, JSON nested 100,000 deep, a number with
400 digits) is refused with the reader's own error class (exit 3), naming the file and the limit, before
it can exhaust memory, block or overflow the stack.

Limits are a frozen `Limits`; `current()` reads the defaults, overridden per kind by the environment
variable `VERIKIT_MAX_<KIND>_BYTES` (e.g. `VERIKIT_MAX_SPEC_BYTES=4G`, suffixes K, M, G) and
`VERIKIT_MAX_DEPTH`, `VERIKIT_MAX_ELEMENTS`, `VERIKIT_MAX_CLASSES`.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from verikit.core.errors import VerikitError

ErrorType = Callable[..., VerikitError]  # a VerikitError subclass: ErrorType(message, where=...)

_MIB = 1 << 20
#: bytes per kind of file (after decompression where a kind may be compressed)
DEFAULT_BYTES = {
    "model": 2048 * _MIB,  # protobuf's own limit is 2 GiB
    "spec": 1024 * _MIB,  # the largest VNN-COMP specs are a few hundred MB of text
    "witness": 256 * _MIB,
    "data": 1024 * _MIB,  # a dataset: .npz members after decompression, .npy, .csv
    "policy": 4 * _MIB,
    "report": 256 * _MIB,  # a gate baseline (a previous gate report)
    "csv": 256 * _MIB,  # an instances, results or ground-truth CSV
}


@dataclass(frozen=True)
class Limits:
    """Maximum bytes per kind of file, nesting depth of JSON/TOML, and elements of one tensor or class list."""

    max_bytes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BYTES))
    max_depth: int = 64  # every verikit format nests a handful of levels; 64 leaves room to spare
    max_elements: int = 50_000_000  # of a network's input or output (200 MB as float32)
    max_classes: int = 10_000  # of a robustness spec: one dense row per other class, so memory grows as n^2

    def bytes_for(self, kind: str) -> int:
        return self.max_bytes[kind]


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if factor != 1 else text
    value = int(float(number) * factor)
    if value <= 0:
        raise ValueError(text)
    return value


def current() -> Limits:
    """The defaults, with any `VERIKIT_MAX_*` environment overrides (unparsable ones are ignored)."""
    sizes = dict(DEFAULT_BYTES)
    for kind in sizes:
        raw = os.environ.get(f"VERIKIT_MAX_{kind.upper()}_BYTES")
        if raw:
            try:
                sizes[kind] = _parse_size(raw)
            except ValueError:
                pass
    numbers = {}
    for name, key in (("max_depth", "VERIKIT_MAX_DEPTH"), ("max_elements", "VERIKIT_MAX_ELEMENTS"),
                      ("max_classes", "VERIKIT_MAX_CLASSES")):
        raw = os.environ.get(key, "")
        if raw.isdigit() and int(raw) > 0:
            numbers[name] = int(raw)
    return Limits(max_bytes=sizes, **numbers)


def human(size: int) -> str:
    """1048576 -> '1 MiB'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def _env_hint(kind: str) -> str:
    return f"(limit {human(current().bytes_for(kind))}; raise it with VERIKIT_MAX_{kind.upper()}_BYTES)"


def _describe_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular(path: str | Path, kind: str, error: ErrorType) -> os.stat_result:
    """stat `path` (following links) and refuse anything but a regular file within the size limit."""
    where = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{kind} file not found; check the path", where=where) from None
    except OSError as failure:
        raise error(f"cannot read the {kind} file: {failure.strerror or failure}", where=where) from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"is {_describe_mode(info.st_mode)}, not a regular {kind} file", where=where)
    if info.st_size > current().bytes_for(kind):
        raise error(f"the {kind} file is too large: {human(info.st_size)} {_env_hint(kind)}", where=where)
    return info


def read_file(path: str | Path, kind: str, error: ErrorType) -> bytes:
    """The bytes of a regular file of `kind` (see DEFAULT_BYTES); `error` (e.g. SpecError) on any problem.

    Checked before opening (no FIFO, device or directory), opened with O_NONBLOCK so that a file swapped
    for a FIFO meanwhile cannot block, checked again on the open descriptor, read up to the limit only.
    """
    where = str(path)
    check_regular(path, kind, error)
    limit = current().bytes_for(kind)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as failure:
        raise error(f"cannot open the {kind} file: {failure.strerror or failure}", where=where) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"is {_describe_mode(mode)}, not a regular {kind} file", where=where)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(descriptor, min(16 * _MIB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as failure:
        raise error(f"cannot read the {kind} file: {failure.strerror or failure}", where=where) from None
    finally:
        os.close(descriptor)
    if total > limit:
        raise error(f"the {kind} file is too large {_env_hint(kind)}", where=where)
    return b"".join(chunks)


def read_text(path: str | Path, kind: str, error: ErrorType, *, encoding: str = "utf-8-sig") -> str:
    """`read_file` decoded as UTF-8 (a BOM dropped); not-UTF-8 bytes raise `error` with their offset."""
    return decode(read_file(path, kind, error), kind, error, str(path), encoding=encoding)


def decode(data: bytes, kind: str, error: ErrorType, where: str, *, encoding: str = "utf-8-sig") -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as failure:
        raise error(f"not UTF-8 text (byte {failure.start}); is this really a {kind} file?", where=where) from None


def gunzip(data: bytes, kind: str, error: ErrorType, where: str) -> bytes:
    """Decompress gzip `data` (all members), refusing output beyond the `kind` limit: no gzip bomb."""
    limit = current().bytes_for(kind)
    out, total = [], 0
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while pending and not inflater.eof:
                piece = inflater.decompress(pending, limit + 1 - total)
                total += len(piece)
                out.append(piece)
                if total > limit:
                    raise error(f"the {kind} file decompresses to more than the limit {_env_hint(kind)}",
                                where=where)
                pending = inflater.unconsumed_tail
            if not inflater.eof:
                raise error("corrupt gzip file: it ends before the compressed stream does", where=where)
            rest = inflater.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
    except zlib.error as failure:
        raise error(f"corrupt gzip file: {failure}", where=where) from None
    return b"".join(out)


def nesting_depth(text: str, *, quotes: str = '"', comment: str = "") -> int:
    """The deepest nesting of [ ] and { } in `text`, outside strings (and comments, when given)."""
    depth = deepest = 0
    quote = ""
    escaped = False
    in_comment = False
    for char in text:
        if in_comment:
            in_comment = char != "\n"
        elif quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in quotes:
            quote = char
        elif comment and char == comment:
            in_comment = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in "]}":
            depth -= 1
    return deepest


def check_depth(text: str, kind: str, error: ErrorType, where: str, **scan) -> None:
    """Refuse text nested deeper than the limit, before a recursive parser can overflow the stack."""
    limit = current().max_depth
    if nesting_depth(text, **scan) > limit:
        raise error(f"the {kind} is nested more than {limit} levels deep", where=where)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of the float64 range")
    return value


def load_json(text: str, kind: str, error: ErrorType, where: str, *, finite: bool = True):
    """json.loads with the nesting depth limited; with `finite`, NaN, Infinity and out-of-range numbers are
    refused (without, they are read as Python does: reports written by json.dumps may hold them)."""
    check_depth(text, kind, error, where)
    numbers = {"parse_constant": _refuse_constant, "parse_float": _finite_float} if finite else {}
    try:
        return json.loads(text, **numbers)
    except json.JSONDecodeError as failure:
        raise error(f"invalid JSON: {failure.msg}", where=f"{where}:{failure.lineno}:{failure.colno}") from None
    except (ValueError, RecursionError) as failure:  # a huge integer, a non-finite number
        raise error(f"invalid JSON: {str(failure).splitlines()[0][:200]}", where=where) from None


def load_toml(text: str, kind: str, error: ErrorType, where: str) -> dict:
    """tomllib.loads with the nesting depth limited (TOML strings use " and ', comments #)."""
    import tomllib

    check_depth(text, kind, error, where, quotes="\"'", comment="#")
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as failure:  # TOMLDecodeError is a ValueError; so is a huge int
        raise error(f"not valid TOML: {str(failure).splitlines()[0][:200]}", where=where) from None


def load_npy(data: bytes, kind: str, error: ErrorType, where: str, *, real: bool = True) -> np.ndarray:
    """An array from .npy bytes: no pickles, a shape that fits the bytes given, real numbers only
    (complex or text dtypes are refused: dropping an imaginary part would change the value)."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, _, dtype = reader(stream)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as failure:
        raise error(f"not a readable .npy array: {str(failure).splitlines()[0][:200]}", where=where) from None
    if dtype.hasobject:
        raise error("the .npy array holds Python objects (pickles are never loaded)", where=where)
    if real and dtype.kind not in "fiub":
        raise error(f"the .npy array has dtype {dtype}; expected real numbers", where=where)
    needed = math.prod(shape) * dtype.itemsize
    if needed > len(data) - stream.tell():
        raise error(f"the .npy header declares shape {list(shape)} ({human(needed)}) but the file is shorter",
                    where=where)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as failure:
        raise error(f"not a readable .npy array: {str(failure).splitlines()[0][:200]}", where=where) from None


def load_npz(data: bytes, names: tuple[str, ...], kind: str, error: ErrorType, where: str
             ) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the named arrays of an .npz archive, missing ones left out; every array name in it). Each member's
    declared uncompressed size is checked against the `kind` limit before it is inflated: no zip bomb."""
    import zipfile

    limit = current().bytes_for(kind)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            available = [name[:-4] for name in members if name.endswith(".npy")]
            total = 0
            for name in names:
                info = members.get(f"{name}.npy")
                if info is None:
                    continue
                total += info.file_size
                if total > limit:
                    raise error(f"the .npz archive decompresses to more than the limit {_env_hint(kind)}",
                                where=where)
                arrays[name] = load_npy(archive.read(info), kind, error, f"{where}[{name}]")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, ValueError,
            zlib.error) as failure:  # a corrupt directory gives ValueError (a negative seek), among others
        raise error(f"cannot read as .npz: {str(failure).splitlines()[0][:200]}", where=where) from None
    return arrays, available


def check_finite(value: float, what: str, error: ErrorType, where: str | None = None, *,
                 float32: bool = False) -> float:
    """`value` unless NaN, infinite or (with float32) beyond float32's range, which the model consumes."""
    limit = float(np.finfo(np.float32).max) if float32 else math.inf
    if not (math.isfinite(value) and abs(value) <= limit):
        scope = " within the float32 range" if float32 else ""
        raise error(f"{what} must be a finite number{scope}, got {value!r}", where=where)
    return value
