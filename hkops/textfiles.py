"""Reading the text files people hand to hkops (CSV, or one value a line), line numbers kept
for the error messages, in the encodings they come in: UTF-8 with or without a byte-order
mark; UTF-16 with one (Excel's "Unicode Text"); else GB18030, which covers GBK and GB2312
(Windows set to Chinese writes them, so do many card vendors' tools).

Files are read in chunks and refused, before anything is imported, when they pass one of
these limits (so that ``/dev/zero`` or a runaway export stops at once):

- :data:`MAX_FILE_BYTES`: 256 MiB (about 20 million numbers or 1.5 million card lines);
- :data:`MAX_LINES`: 5,000,000 lines;
- :data:`MAX_LINE_BYTES`: 8 KiB in one line (a card line is about 150 bytes).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from hkops.errors import InvalidValue

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_LINES = 5_000_000
MAX_LINE_BYTES = 8 * 1024
_CHUNK = 1024 * 1024


def _too_big(path: str | Path) -> InvalidValue:
    return InvalidValue("file", str(path), f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the most hkops "
                                           "reads in one file; split it")


def _read_bounded(path: str | Path) -> bytes:
    """The file's bytes, read in chunks and checked against the limits as they come."""
    chunks: list[bytes] = []
    size = lines = line_bytes = 0  # line_bytes: length of the line still open at the chunk's end
    with open(path, "rb") as stream:
        if os.path.isfile(path) and os.fstat(stream.fileno()).st_size > MAX_FILE_BYTES:
            raise _too_big(path)
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise _too_big(path)
            pieces = chunk.split(b"\n")
            lengths = [line_bytes + len(pieces[0])] + [len(piece) for piece in pieces[1:]]
            for index, length in enumerate(lengths):
                if length > MAX_LINE_BYTES:
                    raise InvalidValue("file", str(path), f"a line is longer than {MAX_LINE_BYTES:,} bytes",
                                       line=lines + index + 1)
            lines += len(pieces) - 1
            line_bytes = lengths[-1]
            if lines > MAX_LINES:
                raise InvalidValue("file", str(path), f"has more than {MAX_LINES:,} lines, the most hkops reads "
                                                      "in one file; split it")
            chunks.append(chunk)
    return b"".join(chunks)


def read_text(path: str | Path) -> str:
    """The file's text; InvalidValue naming the file when it cannot be read, is not text in one
    of the encodings above or passes the limits above (and the line, for an over-long one)."""
    try:
        data = _read_bounded(path)
    except OSError as exc:
        raise InvalidValue("file", str(path), f"cannot be read ({exc.strerror})") from None
    return _decode(data, str(path))


def _decode(data: bytes, source: str) -> str:
    """``data`` as text (see the module's encodings); InvalidValue naming ``source`` otherwise."""
    import codecs

    not_text = InvalidValue("file", source, "is not text: expected UTF-8, UTF-16 with a byte-order mark, "
                                            "or GB18030/GBK")
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        if b"\x00" in data:  # binary (an image, a spreadsheet, a zip), whatever it happens to decode as
            raise not_text
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode("gb18030")
    except UnicodeDecodeError:
        raise not_text from None


def csv_rows(path: str | Path) -> list[tuple[int, list[str]]]:
    """(line number, cells stripped of spaces) of every CSV row that is not blank."""
    reader = csv.reader(read_text(path).splitlines())
    rows = [(reader.line_num, [cell.strip() for cell in cells]) for cells in reader]
    return [(line, cells) for line, cells in rows if any(cells)]
