"""Text reader: CSV, TSV, JSON Lines, or a folder per class of `.txt` files (optionally inside
train/ val/ test/, or train.csv/val.csv/test.csv side by side).

Every example keeps where it came from (`reviews.csv:line 12`), so anything skipped or reported
later names a line a user can open. Bytes are decoded strictly: UTF-8 (with or without BOM) or
Shift_JIS/CP932 (what Excel writes for Japanese users) are detected, anything else needs
`encoding=`. A row whose bytes do not decode is reported by line and skipped, never mangled.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from modeltailor.data.dataset import LabeledDataset, Skipped
from modeltailor.data.folders import (
    SPLIT_NAMES,
    link_problem,
    subfolders,
    visible_subfolders,
    walk_files,
)
from modeltailor.errors import DataError

TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
#: Excel workbooks (the first sheet is read; openpyxl, `pip install modeltailor[excel]`).
EXCEL_SUFFIXES = frozenset({".xlsx", ".xlsm"})
#: Files that hold texts in some other form and get a hint when given (Excel 97, JSON).
TEXT_TABLES = EXCEL_SUFFIXES | {".xls", ".json"}
TEXT_FILE_SUFFIX = ".txt"
#: Quoted e-mails easily exceed csv's default 128 KiB field limit; a field is one example.
MAX_FIELD_CHARS = 64 * 1024 * 1024
#: Labels that mean "no label" (compared case-insensitively, after stripping): what Python
#: (str(float("nan")), str(None)), pandas, R, SQL, JavaScript and Excel write for a missing
#: value. Such a row is skipped and reported by line, as a blank label is.
MISSING_LABELS = frozenset({"nan", "none", "null", "n/a", "na", "#n/a", "<na>"})
_KANA = re.compile(r"[\u3040-\u30ff]")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, slots=True)
class TextItem:
    """One example: its text, and where it came from (`file.csv:line 12`, or a .txt path).

    The origin makes two identical texts on different lines distinct items (so dropping one
    drops only that one) and is what `str()` shows in reports. Digests hash `text` only.
    """

    text: str
    origin: str

    def __str__(self) -> str:
        return self.origin


@dataclass
class TextDataset(LabeledDataset):
    """Texts with labels; items are `TextItem`s."""

    #: The registered modality (modalities/) that reads and models these items.
    modality: ClassVar[str] = "text"

    @property
    def texts(self) -> list[str]:
        return [item.text for item in self.items]


@dataclass
class TextRows:
    """Unlabelled input for prediction: the usable rows with all their original fields.

    `rows[i]`, `texts[i]` and `origins[i]` describe one example; `columns` is the input's
    field order, so predictions can be written as the input rows plus new columns.
    """

    source: str
    columns: list[str]
    rows: list[dict[str, Any]]
    texts: list[str]
    origins: list[str]
    text_column: str
    encoding: str  # as decoded; "auto" for .txt files, each detected on its own
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


# --------------------------------------------------------------------------- decoding


@dataclass
class Decoded:
    """A file's physical lines (endings kept) and the lines whose bytes did not decode."""

    lines: list[str]
    encoding: str
    #: 1-based line -> what was wrong; only with an explicit encoding (auto-detection errors).
    bad_lines: dict[int, str] = field(default_factory=dict)


def _split_lines(text: str) -> list[str]:
    """Split on \\n, \\r\\n and \\r only (str.splitlines also splits on \\f, \\x1c... which
    e-mails contain), so line numbers match what csv and editors count."""
    return list(io.StringIO(text, newline=""))


def _bad_bytes(raw: bytes, exc: UnicodeDecodeError, encoding: str) -> str:
    return f"{raw[exc.start : min(exc.end, exc.start + 4)]!r} is not valid {encoding}"


def _first_bad(raw: bytes, exc: UnicodeDecodeError, encoding: str) -> str:
    """Where the first undecodable byte of a whole file is: line, byte offset, the bytes."""
    line = raw.count(b"\n", 0, exc.start) + 1
    return f"line {line} (byte {exc.start}): {_bad_bytes(raw, exc, encoding)}"


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode_auto(raw: bytes, name: str) -> Decoded:
    """BOM, else strict UTF-8, else strict CP932 holding Japanese kana, else a DataError.

    A file that is UTF-8 apart from a few bad bytes is an error naming the first, not a CP932
    candidate: `encoding="utf-8"` then skips just the damaged rows. The kana check stops a
    Latin-1/CP1252 file (café, Müller) from "decoding" as CP932 into random kanji: real
    Japanese text almost always contains hiragana or katakana.
    """
    for bom, enc in _BOMS:
        if raw.startswith(bom):
            return _decode_whole(raw, name, enc)
    try:
        return Decoded(_split_lines(raw.decode("utf-8")), "utf-8")
    except UnicodeDecodeError as exc:
        where = _first_bad(raw, exc, "UTF-8")
    if _mostly_utf8(raw):
        raise DataError(
            f"{name}: {where}; the rest is UTF-8, so some rows are damaged: fix them, or pass "
            "--encoding utf-8 to skip the rows with bad bytes (each is reported by line)"
        )
    try:
        text = raw.decode("cp932")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: {where}{_cp932_failure(raw, exc)}") from None
    if not _KANA.search(text):
        raise DataError(
            f"{name}: {where}; it decodes as Shift_JIS/CP932 but holds no Japanese kana, so "
            "that would be a guess: give the encoding with --encoding (cp932 if that is right)"
        )
    return Decoded(_split_lines(text), "cp932")


def _cp932_failure(raw: bytes, exc: UnicodeDecodeError) -> str:
    """The rest of the auto-detection error: Shift_JIS with damage, or an unknown encoding."""
    if _KANA.search(raw[: exc.start].decode("cp932", errors="ignore")):
        return (
            f"; it looks like Shift_JIS/CP932 damaged at {_first_bad(raw, exc, 'CP932')}: fix "
            "that, or pass --encoding cp932 to skip the rows with bad bytes"
        )
    return (
        ", nor Shift_JIS/CP932; give the file's encoding with --encoding (e.g. cp1252, euc-jp, "
        "gb18030) or save it as UTF-8"
    )


def _mostly_utf8(raw: bytes) -> bool:
    """More non-ASCII bytes form valid UTF-8 than not: UTF-8 with damage, not another code.

    Guards the CP932 fallback: UTF-8 Japanese can "decode" as CP932 mojibake (縺ゅ...).
    """
    valid = len(raw.decode("utf-8", errors="ignore").encode("utf-8"))  # only to count bytes
    ascii_bytes = len(raw.translate(None, bytes(range(0x80, 0x100))))
    return valid - ascii_bytes > len(raw) - valid


def _decode_whole(raw: bytes, name: str, encoding: str) -> Decoded:
    """Decode in one go (BOM files, non-ASCII-compatible codecs); a bad byte is an error."""
    try:
        return Decoded(_split_lines(raw.decode(encoding)), encoding)
    except UnicodeDecodeError as exc:
        where = _first_bad(raw, exc, encoding)
        raise DataError(f"{name}: {where}; is the encoding right?") from None


def _decode_explicit(raw: bytes, name: str, encoding: str) -> Decoded:
    """Decode line by line so a bad byte costs only its line, reported by number.

    Bad lines are kept (undecodable bytes as surrogate escapes) only so quoting and line
    numbers stay intact; every record touching one is skipped, so no mangled text gets out.
    """
    try:
        enc = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"{name}: unknown encoding {encoding!r}") from None
    if not _ascii_compatible(enc):
        return _decode_whole(raw, name, enc)
    if enc in ("utf-8", "utf-8-sig"):
        raw, enc = raw.removeprefix(codecs.BOM_UTF8), "utf-8"
    out = Decoded([], enc)
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            out.lines.append(line.decode(enc))
        except UnicodeDecodeError as exc:
            out.bad_lines[number] = f"column {exc.start + 1}: {_bad_bytes(line, exc, enc)}"
            out.lines.append(line.decode(enc, errors="surrogateescape"))
    return out


def _ascii_compatible(encoding: str) -> bool:
    """True when line ends and delimiters are the ASCII bytes (splitting bytes is safe)."""
    probe = '\n\r,;\t"{}:'
    try:
        return probe.encode(encoding) == probe.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def decode_file(path: str | Path, encoding: str | None = None) -> Decoded:
    """Read and decode one file: `encoding` as given, else detected (module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if encoding:
        return _decode_explicit(raw, str(path), encoding)
    return _decode_auto(raw, str(path))


# --------------------------------------------------------------------------- tables


@dataclass
class _Row:
    line: int  # where the record starts
    fields: dict[str, Any]
    end: int = 0  # where it ends, when a quoted field runs over several lines


@dataclass
class _Table:
    """Records of one CSV/TSV/JSONL file, already cleared of structurally broken ones."""

    source: str
    columns: list[str]
    rows: list[_Row]
    encoding: str
    skipped: list[Skipped] = field(default_factory=list)
    delimiter: str = ""  # "" for JSON Lines


def _where(source: str, line: int) -> str:
    return f"{source}:line {line}"


def _read_table(path: Path, encoding: str | None) -> _Table:
    suffix = path.suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        return _parse_excel(path)
    decoded = decode_file(path, encoding)
    if suffix in JSONL_SUFFIXES:
        return _parse_jsonl(decoded, str(path))
    return _parse_delimited(decoded, str(path), TABLE_DELIMITERS[suffix])


def _parse_excel(path: Path) -> _Table:
    """The first sheet of a workbook: the first non-empty row names the columns, each row
    below is a record (its "line" is the sheet's row number); cells keep their values."""
    try:
        import openpyxl
    except ImportError as exc:
        raise DataError(
            f"{path}: reading Excel files needs openpyxl (pip install 'modeltailor[excel]'), "
            "or save it from Excel as CSV UTF-8 (.csv)"
        ) from exc
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/XML errors of a damaged or fake workbook
        raise DataError(f"{path}: not a readable Excel workbook ({exc})") from exc
    try:
        sheet = book.worksheets[0]
        table = _Table(f"{path} (sheet {sheet.title})", [], [], "xlsx")
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = ["" if v is None else v for v in values]
            if not any(str(c).strip() for c in cells):
                continue  # an empty row: no header yet, or no example
            if not table.columns:
                table.columns = [_clean_name(c) for c in cells]
                continue
            table.rows.append(_Row(number, dict(zip(table.columns, cells, strict=False))))
    finally:
        book.close()
    if not table.columns:
        raise DataError(f"{path}: the first sheet is empty")
    if not table.rows:
        raise DataError(f"{table.source}: no rows below the header line")
    return table


def _parse_delimited(decoded: Decoded, source: str, delimiter: str) -> _Table:
    """CSV/TSV with Excel's quoting (TSV only when its quotes parse cleanly: `_quoting`);
    records report the line they start on."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    delimiter = _delimiter(decoded.lines, delimiter)
    reader = csv.reader(
        decoded.lines, delimiter=delimiter, quoting=_quoting(decoded.lines, delimiter)
    )
    records = iter(_records(reader, source, 0))
    first = next(records, None)
    if first is None or not any(h.strip() for h in first[2]):
        raise DataError(f"{source}: empty file (expected a header row naming the columns)")
    start, end, header = first
    bad = [n for n in range(start, end + 1) if n in decoded.bad_lines]
    if bad:
        raise DataError(f"{_where(source, bad[0])} (the header): {decoded.bad_lines[bad[0]]}")
    columns = [_clean_name(h) for h in header]
    table = _Table(source, columns, [], decoded.encoding, delimiter=delimiter)
    seen = 0
    for start, end, record in records:
        seen += 1
        problem = _record_problem(record, len(columns), start, end, decoded.bad_lines)
        if problem:
            table.skipped.append(Skipped(_where(source, start), problem))
        elif any(v.strip() for v in record):  # a row of empty cells is no example
            table.rows.append(_Row(start, dict(zip(columns, record, strict=False)), end))
    if not table.rows and not table.skipped:  # one file with nothing in it, not "no files"
        what = (
            "every row below the header line is empty" if seen else "no rows below the header line"
        )
        raise DataError(f"{source}: {what}")
    return table


def _delimiter(lines: list[str], default: str) -> str:
    """';' for a .csv whose header has semicolons and no commas (Excel in many European
    locales writes that); otherwise the suffix's delimiter."""
    header = next((line for line in lines if line.strip()), "")
    if default == "," and ";" in header and "," not in header:
        return ";"
    return default


def _quoting(lines: list[str], delimiter: str) -> int:
    """How quotes are read: as Excel writes them in a CSV; in a TSV only when the file is
    consistently quoted, else as plain characters.

    TSV fields are rarely quoted, and a quote that opens a field and never closes
    (`"starts with a quote<TAB>ham`) would swallow the rows after it into one text. A TSV's
    quotes are honoured only when every quoted field opens and closes cleanly (a strict
    parse) and every record then has the header's number of fields, as in what Excel
    ("Unicode text") or R's write.table write.
    """
    if delimiter != "\t":
        return csv.QUOTE_MINIMAL
    if not any(line.startswith('"') or '\t"' in line for line in lines):
        return csv.QUOTE_NONE  # no field starts with a quote: both read the same
    try:
        records = [r for r in csv.reader(lines, delimiter="\t", strict=True) if r]
    except csv.Error:
        return csv.QUOTE_NONE
    width = len(records[0]) if records else 0
    return csv.QUOTE_MINIMAL if all(len(r) == width for r in records) else csv.QUOTE_NONE


_DELIMITER_NAMES = {",": "a comma", "\t": "a tab", ";": "a semicolon"}


def _swallowed_rows(
    row: _Row, columns: list[str], label_column: str, labels: set[str], delimiter: str
) -> str | None:
    """Why a record that runs over several lines looks like several rows read as one, or None.

    A quote that opens a field and never closes takes the following lines into that field,
    up to the next quote, with the last of them's label: the field then holds lines that
    are rows of their own (`<text><delimiter><label>`, or `<label><delimiter><text>` when
    the label column comes first). Only fields holding line breaks are looked at, and only
    values used as labels in the file count, so a real multi-line text (an e-mail with
    commas) is not taken for rows.
    """
    if row.end <= row.line or not labels:
        return None
    li = columns.index(label_column)
    line = row.line  # where the field being looked at starts
    for k, name in enumerate(columns):
        value = row.fields.get(name)
        if not isinstance(value, str):
            continue
        parts = _split_lines(value)
        if k != li and len(parts) > 1:
            # the field's own first line follows its row's start, its last line precedes
            # the row's end: a row of its own can only show on the other side of those
            for j in range(len(parts) - 1) if k < li else range(1, len(parts)):
                label = _label_in_line(parts[j], k, li, len(columns), delimiter)
                if _clean_name(label.strip('"')) in labels:
                    sep = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
                    label = label.strip()
                    shape = (
                        f"{sep} and the label {label!r} after its text"
                        if k < li
                        else f"the label {label!r} and {sep} before its text"
                    )
                    return (
                        f"lines {row.line}-{row.end} were read as one row, but its {name!r} "
                        f"field holds what look like rows of their own (line {line + j} has "
                        f"{shape}): a quote that opens at line {line} and never closes? "
                        "Close or remove it"
                    )
        line += sum(1 for part in parts if part.endswith(("\n", "\r")))
    return None


def _label_in_line(part: str, k: int, li: int, width: int, delimiter: str) -> str:
    """What stands where the label would if one line of field `k` were a row of its own."""
    cells = next(csv.reader([part.rstrip("\r\n")], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])
    if k < li:  # <text><delimiter><label>...: counted from the end (the text may hold commas)
        return cells[len(cells) - (width - li)] if len(cells) >= width - k else ""
    return cells[li] if len(cells) >= k + 1 else ""  # ...<label><delimiter><text>


def _records(reader: Any, source: str, after: int) -> Iterable[tuple[int, int, list[str]]]:
    """(first line, last line, fields) per record; blank lines are passed over."""
    previous_end = after
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{_where(source, previous_end + 1)}: cannot parse: {exc}") from None
        start, previous_end = previous_end + 1, reader.line_num
        if record:
            yield start, previous_end, record


def _record_problem(
    record: list[str], width: int, start: int, end: int, bad_lines: dict[int, str]
) -> str | None:
    """Why a record cannot be used as a row, or None."""
    for n in range(start, end + 1) if bad_lines else ():
        if n in bad_lines:
            return f"undecodable bytes at line {n}, {bad_lines[n]}"
    extra = record[width:]
    if len(record) < width or any(v.strip() for v in extra):
        span = f" (lines {start}-{end}: an unclosed quote?)" if end > start else ""
        return f"{len(record)} fields where the header has {width}{span}"
    return None


def _parse_jsonl(decoded: Decoded, source: str) -> _Table:
    """One JSON object per line. Bad lines are skipped and reported; if no line is a JSON
    object at all the file is not JSON Lines and that is an error, not N skipped rows."""
    table = _Table(source, [], [], decoded.encoding)
    seen: dict[str, None] = {}
    for number, line in enumerate(decoded.lines, start=1):
        if not line.strip():
            continue
        problem, obj = _json_object(line, decoded.bad_lines.get(number))
        if problem:
            table.skipped.append(Skipped(_where(source, number), problem))
            continue
        obj = {_clean_name(k): v for k, v in obj.items()}
        seen.update(dict.fromkeys(obj))
        table.rows.append(_Row(number, obj))
    if not table.rows and table.skipped:
        first = table.skipped[0]
        array = _starts_array(decoded)
        hint = " (a JSON array? JSON Lines has one object per line)" if array else ""
        raise DataError(f"{first.path}: {first.reason}; no line is a JSON object{hint}")
    table.columns = list(seen)
    return table


def _json_object(line: str, bad_bytes: str | None) -> tuple[str | None, dict[str, Any]]:
    if bad_bytes:
        return f"undecodable bytes, {bad_bytes}", {}
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} (column {exc.colno})", {}
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object", {}
    return None, obj


def _starts_array(decoded: Decoded) -> bool:
    return "".join(decoded.lines[:1]).lstrip().startswith("[")


def _clean_name(name: Any) -> str:
    """Column names and labels compare in NFC (macOS writes Japanese names decomposed)."""
    return unicodedata.normalize("NFC", str(name)).strip()


def _find_column(
    columns: list[str], wanted: str | None, default: str, option: str, source: str
) -> str:
    """The column named `wanted` (exact, else case-insensitive), or `default` when not given."""
    name = wanted if wanted is not None else default
    key = _clean_name(name).casefold()
    exact = [c for c in columns if c == _clean_name(name)]
    found = exact or [c for c in columns if c.casefold() == key]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(repr(c) for c in columns) or "none"
    if found:
        raise DataError(f"{source}: {len(found)} columns match {name!r} ({listed}); rename one")
    how = f"name one with {option}" if wanted is None else f"check {option}"
    raise DataError(f"{source}: no column {name!r}; columns found: {listed} ({how})")


def _text_value(value: Any) -> tuple[str, str | None]:
    """(text, problem): newlines normalised and whitespace stripped, so digests do not depend
    on the platform that wrote the file."""
    if value is None:
        return "", "empty text"
    if isinstance(value, dict | list):
        return "", f"text is a JSON {'object' if isinstance(value, dict) else 'list'}"
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").strip()
    return text, None if text else "empty text"


def _label_value(value: Any) -> tuple[str, str | None]:
    """(label, problem): labels are strings as written; numbers keep their string form."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, dict | list):
        return "", f"label is a JSON {'object' if isinstance(value, dict) else 'list'}"
    label = "" if value is None else _clean_name(value)
    if label.casefold() in MISSING_LABELS:
        return "", (
            f"missing label: {label!r} is how a missing value is written (NaN, None, null, "
            "N/A, NA, #N/A, <NA>, in any case); a real class needs another name"
        )
    return label, None if label else "missing label"


# --------------------------------------------------------------------------- labelled data


@dataclass
class _Labelled:
    """Examples of one file or folder before label names become indices."""

    source: str
    items: list[TextItem]
    labels: list[str]
    skipped: list[Skipped]
    folders: list[str] = field(default_factory=list)  # class folders, even empty ones


def _labelled_table(
    path: Path, text_column: str | None, label_column: str | None, encoding: str | None
) -> _Labelled:
    table = _read_table(path, encoding)
    text_col = _find_column(table.columns, text_column, "text", "--text-column", table.source)
    label_col = _find_column(table.columns, label_column, "label", "--label-column", table.source)
    out = _Labelled(table.source, [], [], list(table.skipped))
    known = {_label_value(row.fields.get(label_col))[0] for row in table.rows} - {""}
    for row in table.rows:
        text, problem = _text_value(row.fields.get(text_col))
        label, label_problem = _label_value(row.fields.get(label_col))
        swallowed = table.delimiter and _swallowed_rows(
            row, table.columns, label_col, known, table.delimiter
        )
        problem = swallowed or problem or label_problem
        if problem:
            out.skipped.append(Skipped(_where(table.source, row.line), problem))
        else:
            out.items.append(TextItem(text, _where(table.source, row.line)))
            out.labels.append(label)
    out.skipped.sort(key=_skipped_line)
    return out


def _skipped_line(s: Skipped) -> int:
    return int(s.path.rsplit(":line ", 1)[-1]) if ":line " in s.path else 0


def _read_txt(path: Path, encoding: str | None) -> tuple[str, str | None]:
    """(text, problem) for a one-example .txt file; decoding trouble skips just this file."""
    if path.suffix.lower() != TEXT_FILE_SUFFIX:
        return "", "not a .txt file"
    try:
        decoded = decode_file(path, encoding)
    except DataError as exc:
        return "", str(exc).removeprefix(f"{path}: ")
    if decoded.bad_lines:
        number, reason = next(iter(decoded.bad_lines.items()))
        return "", f"undecodable bytes at line {number}, {reason}"
    return _text_value("".join(decoded.lines))


def _labelled_folders(
    root: Path, encoding: str | None, dataset_root: Path | None = None
) -> _Labelled:
    """`root/<class>/*.txt`, one example per file; other files are reported, hidden ones
    ignored (as images do). Links leading back inside `dataset_root` (default `root`) or
    above it are not followed but reported (`folders.link_problem`)."""
    dataset_root = dataset_root or root
    skipped: list[Skipped] = []
    class_dirs = subfolders(root, dataset_root, skipped)
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders of .txt files found{_folder_hint(root)}")
    out = _Labelled(str(root), [], [], skipped, [_clean_name(d.name) for d in class_dirs])
    for d, label in zip(class_dirs, out.folders, strict=True):
        for f in walk_files(d, dataset_root, out.skipped):
            text, problem = _read_txt(f, encoding)
            if problem:
                out.skipped.append(Skipped(str(f), problem))
            else:
                out.items.append(TextItem(text, str(f)))
                out.labels.append(label)
    return out


def _folder_hint(root: Path) -> str:
    tables = sorted(f.name for f in root.iterdir() if _table_suffix(f))
    if tables:
        return f" (it holds {', '.join(tables)}: give the file itself)"
    if any(f.suffix.lower() == TEXT_FILE_SUFFIX for f in root.iterdir()):
        return " (.txt files lie directly in it: put each class in its own sub-folder)"
    return ""


def _table_suffix(path: Path) -> bool:
    suffix = path.suffix.lower()
    tables = TABLE_DELIMITERS.keys() | JSONL_SUFFIXES | EXCEL_SUFFIXES
    return path.is_file() and suffix in tables


def _sorted_labels(labels: Iterable[str]) -> list[str]:
    """Sorted names; all-integer labels sort as numbers ("2" before "10")."""
    unique = set(labels)
    if unique and all(_INTEGER.fullmatch(x) for x in unique):
        return sorted(unique, key=lambda x: (int(x), x))
    return sorted(unique)


def _to_dataset(part: _Labelled, names: list[str]) -> TextDataset:
    """Labels to indices into `names`; a label outside them is an error naming its line."""
    index = {name: i for i, name in enumerate(names)}
    unknown: dict[str, str] = {}
    origins = [f"{part.source}/{f}" for f in part.folders] + [i.origin for i in part.items]
    for label, where in zip(part.folders + part.labels, origins, strict=True):
        if label not in index:
            unknown.setdefault(label, where)
    if unknown:
        listed = ", ".join(f"{lab!r} ({where})" for lab, where in list(unknown.items())[:5])
        raise DataError(
            f"{part.source}: {len(unknown)} label(s) are not classes of this model "
            f"({', '.join(names)}): {listed}"
        )
    labels = [index[lab] for lab in part.labels]
    return TextDataset(part.items, labels, names, source=part.source, skipped=part.skipped)


def _class_names(parts: Iterable[_Labelled], given: list[str] | None) -> list[str]:
    if given:
        return [_clean_name(c) for c in given]
    parts = list(parts)
    return _sorted_labels([lab for p in parts for lab in (*p.labels, *p.folders)])


def _assemble_predefined(
    root: Path, parts: dict[str, _Labelled], given: list[str] | None
) -> TextDataset:
    """train/val/test as laid out by the user; split() returns them unchanged."""
    names = _class_names(parts.values(), given)
    datasets = {split: _to_dataset(part, names) for split, part in parts.items()}
    return TextDataset.from_splits(datasets, names, str(root), noun="examples")


def _split_files(root: Path) -> dict[str, Path]:
    """train.csv / val.jsonl / test.tsv ... lying in `root` (one file per split)."""
    found: dict[str, list[Path]] = {}
    for f in sorted(root.iterdir()):
        split = SPLIT_NAMES.get(f.stem.lower())
        if split and _table_suffix(f):
            found.setdefault(split, []).append(f)
    for split, files in found.items():
        if len(files) > 1:
            raise DataError(f"{root}: several {split} files ({', '.join(f.name for f in files)})")
    return {split: files[0] for split, files in found.items()}


def _load_folder(
    root: Path,
    text_column: str | None,
    label_column: str | None,
    encoding: str | None,
    class_names: list[str] | None,
) -> TextDataset:
    refused: list[Skipped] = []  # val.csv -> train.csv, val/ -> train/: the same data twice
    files = _distinct_files(_split_files(root), refused)
    if "train" in files:
        parts = {
            split: _labelled_table(f, text_column, label_column, encoding)
            for split, f in files.items()
        }
        return _with_skipped(_assemble_predefined(root, parts, class_names), refused)
    split_dirs = {
        SPLIT_NAMES[d.name.lower()]: d
        for d in visible_subfolders(root)
        if d.name.lower() in SPLIT_NAMES and not _refused_link(d, root, refused)
    }
    if "train" in split_dirs:
        parts = {s: _labelled_folders(d, encoding, root) for s, d in split_dirs.items()}
        return _with_skipped(_assemble_predefined(root, parts, class_names), refused)
    part = _labelled_folders(root, encoding)
    return _to_dataset(part, _class_names([part], class_names))


def _refused_link(path: Path, root: Path, skipped: list[Skipped]) -> bool:
    problem = link_problem(path, root)
    if problem:
        skipped.append(Skipped(str(path), problem))
    return problem is not None


def _distinct_files(files: dict[str, Path], skipped: list[Skipped]) -> dict[str, Path]:
    """Split files that are not the same file as another (val.csv -> train.csv): train is
    kept first, then val, then test; the order of `files` is kept."""
    kept: dict[str, Path] = {}
    for split in sorted(files, key=["train", "val", "test"].index):
        same = [f for f in kept.values() if f.resolve() == files[split].resolve()]
        if same:
            reason = f"the same file as {same[0].name} (a link): not read twice"
            skipped.append(Skipped(str(files[split]), reason))
        else:
            kept[split] = files[split]
    return {split: f for split, f in files.items() if split in kept}


def _with_skipped(data: TextDataset, skipped: list[Skipped]) -> TextDataset:
    data.skipped = skipped + data.skipped
    return data


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return
    suffix = path.suffix.lower()
    if suffix in TABLE_DELIMITERS or suffix in JSONL_SUFFIXES or suffix in EXCEL_SUFFIXES:
        return
    hints = {
        ".json": "use JSON Lines (.jsonl): one object per line",
        ".xls": "save it from Excel as .xlsx, or as CSV UTF-8 (.csv)",
        ".txt": "a .txt file is one example: give a folder with one sub-folder per class",
    }
    hint = hints.get(suffix, "expected .csv, .tsv, .jsonl or a folder of class folders")
    raise DataError(f"{path}: cannot read {suffix or 'this'} files as labelled text ({hint})")


def load_text(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    class_names: list[str] | None = None,
) -> TextDataset:
    """Read labelled text from a .csv/.tsv/.jsonl file or a folder.

    Columns default to `text` and `label` (any case). A folder holds `<class>/*.txt`, or
    `train/ val/ test/` folders of those, or `train.csv`/`val.csv`/`test.csv` (or .tsv/.jsonl),
    which `split()` then returns as laid out. Empty texts, missing labels, broken rows and
    undecodable lines are skipped and listed in `skipped` with their line. With `class_names`
    (a trained run's labels) every label must be one of them.
    """
    path = Path(path)
    _check_path(path)
    if path.is_dir():
        return _load_folder(path, text_column, label_column, encoding, class_names)
    part = _labelled_table(path, text_column, label_column, encoding)
    return _to_dataset(part, _class_names([part], class_names))


# --------------------------------------------------------------------------- prediction input


def read_text_rows(
    path: str | Path, text_column: str | None = None, encoding: str | None = None
) -> TextRows:
    """Read texts to predict on, keeping every row's original fields to echo them back.

    A .csv/.tsv/.jsonl file: the text column is `text` (any case), the only column when there
    is just one, or `text_column`. A .txt file or a folder of .txt files (searched
    recursively): one example per file, with a `file` column. Rows with empty text or
    undecodable bytes are listed in `skipped`, not in `rows`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() == TEXT_FILE_SUFFIX:
        return _rows_from_txt_files(path, encoding)
    _check_path(path)
    table = _read_table(path, encoding)
    wanted = text_column
    if wanted is None and len(table.columns) == 1:
        wanted = table.columns[0]
    column = _find_column(table.columns, wanted, "text", "--text-column", table.source)
    out = TextRows(table.source, table.columns, [], [], [], column, table.encoding)
    out.skipped = list(table.skipped)
    for row in table.rows:
        text, problem = _text_value(row.fields.get(column))
        if problem:
            out.skipped.append(Skipped(_where(table.source, row.line), problem))
            continue
        out.rows.append(row.fields)
        out.texts.append(text)
        out.origins.append(_where(table.source, row.line))
    out.skipped.sort(key=_skipped_line)
    return out


def _rows_from_txt_files(path: Path, encoding: str | None) -> TextRows:
    files = (
        [path]
        if path.is_file()
        else sorted(f for f in path.rglob("*.txt") if f.is_file() and not f.name.startswith("."))
    )
    out = TextRows(str(path), ["file"], [], [], [], "file", encoding or "auto")
    for f in files:
        text, problem = _read_txt(f, encoding)
        if problem:
            out.skipped.append(Skipped(str(f), problem))
            continue
        out.rows.append({"file": str(f)})
        out.texts.append(text)
        out.origins.append(str(f))
    return out


# --------------------------------------------------------------------------- modality detection


def looks_like_text_data(path: str | Path) -> bool:
    """Whether `tailor train PATH` means text: a table file, a folder holding train/val/test
    tables, or a folder whose class folders (possibly inside train/ val/ test/) hold .txt files.

    A folder of images is never taken for text: the image reader handles it and its errors.
    """
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        return suffix in TABLE_DELIMITERS or suffix in JSONL_SUFFIXES or suffix in TEXT_TABLES
    if not path.is_dir():
        return False
    if _split_files(path):
        return True
    for sub in visible_subfolders(path):
        for inner in [sub, *visible_subfolders(sub)]:
            if any(f.suffix.lower() == TEXT_FILE_SUFFIX for f in inner.iterdir() if f.is_file()):
                return True
    return False
