"""Reading the text files people hand to hkops (CSV, or one value a line): UTF-8 with or
without a byte-order mark, line numbers kept for the error messages."""

from __future__ import annotations

import csv
from pathlib import Path

from hkops.errors import InvalidValue


def read_text(path: str | Path) -> str:
    """The file's text; InvalidValue naming the file when it cannot be read or is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidValue("file", str(path), f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InvalidValue("file", str(path), "is not UTF-8 text") from None


def csv_rows(path: str | Path) -> list[tuple[int, list[str]]]:
    """(line number, cells stripped of spaces) of every CSV row that is not blank."""
    reader = csv.reader(read_text(path).splitlines())
    rows = [(reader.line_num, [cell.strip() for cell in cells]) for cells in reader]
    return [(line, cells) for line, cells in rows if any(cells)]
