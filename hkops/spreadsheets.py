"""Spreadsheets for people: one writer of Excel workbooks (openpyxl) and CSV files for every export.

A :class:`Sheet` is a name, its column headings (or none) and its rows of plain values. Written
the same way in both formats:

- text that begins with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return, which Excel skips)
  is neutralised, so that a name or code typed by a user never runs as a formula: in CSV it gets a
  leading apostrophe (``'=1+1``, what Excel itself shows for typed text), in Excel it is stored as
  text with the cell's quote prefix set (shown as typed, never evaluated, even when edited); a
  plain signed number written as text (``-5.00``) runs nothing and is left as it is;
- a time with a zone is shown in Asia/Shanghai, as ISO 8601 with ``+08:00``;
- None, NaN and NaT are blank; numpy scalars are plain numbers;
- money stays as given: integer fen as integers, yuan as Decimal (a number in Excel, with the
  sheet's number format for that column; the same digits in CSV).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence

#: The first characters that make a spreadsheet read a cell as a formula (tab and CR: Excel skips them).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"[+-]\d+(\.\d+)?")
#: Excel's number format for yuan columns of analysis tables.
YUAN_NUMBER = "#,##0.00"


@dataclass
class Sheet:
    """One table: ``columns`` (None: no heading row) and ``rows``. ``formats`` maps a column's
    position to the Excel number format of its Decimal and float cells (integers keep the general
    format); ``bold_last`` makes the last row bold (a total); ``widths`` are Excel column widths."""

    name: str
    columns: Sequence[str] | None
    rows: Iterable[Sequence]
    formats: dict[int, str] = field(default_factory=dict)
    bold_last: bool = False
    widths: Sequence[float] = ()


def from_frame(name: str, frame, money: str | None = YUAN_NUMBER) -> Sheet:
    """A pandas frame as a sheet (no index); columns named ``*_yuan`` get the number format ``money``."""
    columns = [str(c) for c in frame.columns]
    formats = {n: money for n, c in enumerate(columns) if money and c.endswith("_yuan")}
    return Sheet(name, columns, frame.itertuples(index=False, name=None), formats)


def neutralised(text: str) -> bool:
    """Whether ``text`` could be read as a formula by a spreadsheet (and so is written as text);
    a plain signed number such as ``-5.00`` cannot, and is left as it is."""
    return text.startswith(FORMULA_STARTS) and not _SIGNED_NUMBER.fullmatch(text)


def plain(value):
    """``value`` as a spreadsheet holds it: None for blanks, Python numbers, Shanghai time as text."""
    if value is None or isinstance(value, (str, Decimal, bool, int)):
        return value
    if isinstance(value, float):
        return None if value != value else value
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if isinstance(value, datetime) and value.tzinfo is not None:
        from hkops.timeutil import SHANGHAI

        return value.astimezone(SHANGHAI).isoformat(timespec="seconds")
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def csv_text_value(value) -> str:
    """One CSV field: blank for None, a neutralised formula gets a leading apostrophe."""
    value = plain(value)
    if value is None:
        return ""
    text = str(value)
    return "'" + text if isinstance(value, str) and neutralised(text) else text


def write_csv(sheet: Sheet, out: IO[str]) -> None:
    """``sheet`` as CSV on the text stream ``out`` (opened with ``newline=""``)."""
    import csv

    writer = csv.writer(out)
    if sheet.columns is not None:
        writer.writerow([csv_text_value(c) for c in sheet.columns])
    for row in sheet.rows:
        writer.writerow([csv_text_value(v) for v in row])


def csv_bytes(sheet: Sheet, encoding: str = "utf-8-sig") -> bytes:
    """``sheet`` as CSV bytes (by default UTF-8 with a byte-order mark, so that Excel reads Chinese)."""
    import io

    text = io.StringIO(newline="")
    write_csv(sheet, text)
    return text.getvalue().encode(encoding)


def write_xlsx(sheets: Iterable[Sheet], target) -> None:
    """The sheets as one workbook saved to ``target`` (a path or a binary stream): a bold, frozen
    heading row, number formats per column, a bold last row where asked."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    bold = Font(bold=True)
    for sheet in sheets:
        page = book.create_sheet(sheet.name[:31])
        for number, width in enumerate(sheet.widths, start=1):
            page.column_dimensions[get_column_letter(number)].width = width

        def cells(values, font=None) -> list:
            out = []
            for n, value in enumerate(values):
                value = plain(value)
                cell = WriteOnlyCell(page, value=value)
                if isinstance(value, str) and neutralised(value):
                    cell.data_type, cell.quotePrefix = "s", True
                elif n in sheet.formats and isinstance(value, (Decimal, float)):
                    cell.number_format = sheet.formats[n]
                if font:
                    cell.font = font
                out.append(cell)
            return out

        if sheet.columns is not None:
            page.freeze_panes = "A2"
            page.append(cells(sheet.columns, bold))
        previous = None
        for row in sheet.rows:
            if previous is not None:
                page.append(cells(previous))
            previous = row
        if previous is not None:
            page.append(cells(previous, bold if sheet.bold_last else None))
    book.save(target)


def write_whole(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` on a hidden file next to ``path``, then rename it to ``path``: the
    file appears whole or not at all, and a failed write leaves nothing behind."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(suffix=path.suffix, dir=path.parent, prefix=f".{path.stem}-")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def save(sheets: Sequence[Sheet], path: str | Path, *, encoding: str = "utf-8-sig") -> Path:
    """Write ``sheets`` to ``path`` whole or not at all: ``.xlsx`` a workbook, ``.csv`` the one
    sheet given (``encoding``: UTF-8 with a byte-order mark unless told otherwise)."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        return write_whole(path, lambda temporary: write_xlsx(sheets, temporary))
    (sheet,) = sheets

    def csv_file(temporary: Path) -> None:
        with open(temporary, "w", newline="", encoding=encoding) as out:
            write_csv(sheet, out)

    return write_whole(path, csv_file)
