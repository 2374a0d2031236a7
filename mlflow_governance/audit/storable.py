"""Values the database cannot store as they are, and the safe form stored instead.

A refused attempt is recorded with the caller's own input: a 10,000-character model name,
a NUL byte in an alias, an emoji in a database whose columns cannot hold it. Sent as is,
the database refuses the row (or, on MySQL without strict mode, silently cuts it, which
breaks the row's hash), so the refusal would leave no trace and the caller would see a
crash. Such a value is stored in a safe form instead: escaped, cut to fit, ending in a
marker with the start of its SHA-256, and the full SHA-256 and length of the original go
to ``details.unstorable`` so an auditor can still match it. Values the database can
store are stored unchanged: that is every value in the common case, found by a check of
a few C-level string operations per column.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from mlflow_governance.audit.tables import audit_log
from mlflow_governance.exceptions import AuditIntegrityError

#: Key in ``details`` listing the columns whose value was stored in a safe form.
UNSTORABLE = "unstorable"

#: MySQL/MariaDB TEXT holds 65,535 bytes; PostgreSQL and SQLite text is unbounded.
_MYSQL_TEXT_BYTES = 65_535

_INT_RANGES = {
    32: (-(2**31), 2**31 - 1),
    64: (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True)
class _Charset:
    """What a column's character set can hold.

    Attributes:
        name: The database's name for it.
        codec: A Python codec that encodes exactly the characters the column stores (or
            fewer: a stricter codec only means more values get a safe form).
        bmp_only: MySQL's 3-byte ``utf8``/``utf8mb3``: no characters beyond U+FFFF.
        width: Bytes per character when the codec cannot tell (unknown character sets
            are taken as 4 bytes wide and ASCII only, to be safe).
    """

    name: str
    codec: str
    bmp_only: bool = False
    width: int | None = None


_UTF8 = _Charset("utf8mb4", "utf-8")
_UTF8_BMP = _Charset("utf8mb3", "utf-8", bmp_only=True)
_ASCII = _Charset("ascii", "ascii")

_MYSQL_CHARSETS = {
    "utf8mb4": _UTF8,
    "utf8mb3": _UTF8_BMP,
    "utf8": _UTF8_BMP,  # an alias of utf8mb3 in MySQL and MariaDB
    "latin1": _Charset("latin1", "cp1252"),  # MySQL's latin1 is Windows-1252
    "ascii": _ASCII,
}
_POSTGRES_ENCODINGS = {
    "UTF8": _UTF8,
    "LATIN1": _Charset("LATIN1", "latin-1"),
    "WIN1252": _Charset("WIN1252", "cp1252"),
    "SQL_ASCII": _ASCII,
}

# Characters a safe form escapes: the backslash (so escapes stay unambiguous), C0 and C1
# control characters (NUL among them), lone surrogates (not encodable as UTF-8) and, per
# character set, whatever it cannot hold.
_ESCAPE_UTF8 = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ESCAPE_UTF8_BMP = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff\U00010000-\U0010ffff]")
_ESCAPE_NON_ASCII = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
_BEYOND_BMP = re.compile(r"[\U00010000-\U0010ffff]")


def _escape_pattern(charset: _Charset) -> re.Pattern[str]:
    if charset.codec != "utf-8":
        return _ESCAPE_NON_ASCII
    return _ESCAPE_UTF8_BMP if charset.bmp_only else _ESCAPE_UTF8


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _sha256(text: str) -> str:
    # Lone surrogates pass through so every Python string has a digest.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class _TextColumn:
    """A text column and what fits in it.

    Attributes:
        name: The column.
        limit: Its capacity, in characters or (``in_bytes``) bytes; None: unbounded.
        in_bytes: Whether ``limit`` counts bytes (MySQL TEXT) rather than characters.
        charset: What characters it holds.
        fast: An ASCII value without NUL and at most this long always fits.
    """

    name: str
    limit: int | None
    in_bytes: bool
    charset: _Charset
    fast: int = field(init=False)

    def __post_init__(self) -> None:
        # Computed once: every governed write compares each value's length with it.
        if self.limit is None:
            fast = sys.maxsize
        elif self.in_bytes:
            fast = self.limit // (self.charset.width or 1)
        else:
            fast = self.limit
        object.__setattr__(self, "fast", fast)

    def size(self, text: str) -> int:
        """The space ``text`` (encodable in the charset) takes, in the unit of ``limit``."""
        if not self.in_bytes:
            return len(text)
        if self.charset.width:
            return len(text) * self.charset.width
        return len(text.encode(self.charset.codec))

    def fits(self, value: str) -> bool:
        """Whether the database stores ``value`` unchanged in this column."""
        # NUL: PostgreSQL refuses it, and SQLite's own functions and tools stop at it.
        if "\x00" in value:
            return False
        charset = self.charset
        try:
            value.encode(charset.codec)
        except UnicodeEncodeError:  # lone surrogates, or characters the charset lacks
            return False
        if charset.bmp_only and _BEYOND_BMP.search(value):
            return False
        return self.limit is None or self.size(value) <= self.limit

    def cut(self, text: str, room: int) -> str:
        """The longest prefix of ``text`` (storable characters only) taking ``room``."""
        if not self.in_bytes:
            return text[:room]
        if self.charset.width:
            return text[: room // self.charset.width]
        # Cutting the bytes may split the last character: "ignore" drops that part.
        return text.encode(self.charset.codec)[:room].decode(self.charset.codec, "ignore")

    def safe_form(self, value: str, digest: str) -> str:
        """``value`` escaped and cut to fit, ending in a marker with its SHA-256 prefix.

        The marker makes two long values that share their beginning differ, and shows a
        reader of the column that it holds a safe form.
        """
        marker = f"...[sha256:{digest[:12]}]"
        pattern = _escape_pattern(self.charset)
        if self.limit is None:
            return pattern.sub(_escape, value) + marker
        room = self.limit - self.size(marker)
        if room <= 0:  # a column too narrow for the marker: the digest alone
            return self.cut(digest, self.limit)
        # Every character takes at least one unit, so no more than ``room`` of them can be
        # used: a huge value costs no more than a short one.
        source = value[:room]
        pieces: list[str] = []
        used = start = 0
        for match in (*pattern.finditer(source), None):
            plain = source[start : match.start() if match else len(source)]
            if used + self.size(plain) > room:
                pieces.append(self.cut(plain, room - used))
                break
            pieces.append(plain)
            used += self.size(plain)
            if match is None:
                break
            escaped = _escape(match)
            if used + self.size(escaped) > room:
                break
            pieces.append(escaped)
            used += self.size(escaped)
            start = match.end()
        return "".join(pieces) + marker


@dataclass(frozen=True)
class _Storage:
    """What one database stores as is: text columns and integer ranges.

    Attributes:
        text: The text columns written from input (``details`` is handled apart).
        integers: ``(column, lowest, highest)`` for the integer columns written from input.
        details: The ``details`` column.
    """

    text: tuple[_TextColumn, ...]
    integers: tuple[tuple[str, int, int], ...]
    details: _TextColumn

    def make_storable(self, row: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Replace in ``row`` every value that cannot be stored as is by its safe form.

        Args:
            row: An audit row before chaining; changed in place.

        Returns:
            ``{column: {"sha256": ..., "length": ...}}`` for each value replaced (integers
            out of range are stored as NULL and also keep their ``value`` when short);
            empty in the common case.
        """
        unstorable: dict[str, dict[str, Any]] = {}
        for column in self.text:
            value = row[column.name]
            if (
                value is None
                or not isinstance(value, str)  # not input text: left to the database
                or (len(value) <= column.fast and value.isascii() and "\x00" not in value)
            ):
                continue
            if not column.fits(value):
                digest = _sha256(value)
                unstorable[column.name] = {"sha256": digest, "length": len(value)}
                row[column.name] = column.safe_form(value, digest)
        for name, lowest, highest in self.integers:
            number = row[name]
            if isinstance(number, int) and not lowest <= number <= highest:
                text = _int_text(number)
                record: dict[str, Any] = {"sha256": _sha256(text), "length": len(text)}
                if len(text) <= 64:
                    record["value"] = text
                unstorable[name] = record
                row[name] = None
        return unstorable

    def details_text(self, details: dict[str, Any], unstorable: dict[str, Any]) -> str:
        """``details`` and the ``unstorable`` record as JSON text that fits the column.

        JSON escapes NUL and non-ASCII characters itself, so only the length can be a
        problem (MySQL TEXT holds 64 KiB). Too long a text is replaced by valid JSON: the
        ``unstorable`` record, with the SHA-256 and length of the call's own details
        (``json.dumps(details, sort_keys=True)``) added, and as much of that text as fits
        under ``details_prefix``.
        """
        merged = {**details, UNSTORABLE: unstorable} if unstorable else details
        text = json.dumps(merged, sort_keys=True, default=str)
        column = self.details
        if len(text) <= column.fast or column.fits(text):
            return text
        original = json.dumps(details, sort_keys=True, default=str)
        record = {**unstorable, "details": {"sha256": _sha256(original), "length": len(original)}}

        def shortened(keep: int) -> str:
            return json.dumps(
                {UNSTORABLE: record, "details_prefix": original[:keep]}, sort_keys=True
            )

        # JSON escaping lengthens the prefix by a factor that depends on its content, so
        # the longest prefix that fits is searched for: rare, and a few dozen dumps at most.
        low, high = 0, min(len(original), column.fast)
        while low < high:
            middle = (low + high + 1) // 2
            if column.size(shortened(middle)) <= (column.limit or 0):
                low = middle
            else:
                high = middle - 1
        return shortened(low)


def _int_text(number: int) -> str:
    try:
        return str(number)
    except ValueError:  # beyond Python's digit limit for str(): hexadecimal has none
        return f"{number:#x}"


def _storage_for(dialect: str, charsets: dict[str, _Charset]) -> _Storage:
    """Build the storage rules of one database from the table definitions.

    Args:
        dialect: SQLAlchemy's dialect name.
        charsets: The character set of each text column (missing: UTF-8).
    """
    # SQLite enforces no declared length and stores 64-bit integers in any INTEGER column;
    # PostgreSQL and MySQL/MariaDB enforce both.
    enforced = dialect != "sqlite"
    text: list[_TextColumn] = []
    integers: list[tuple[str, int, int]] = []
    details: _TextColumn | None = None
    for col in audit_log.c:
        if col.name in _WRITER_OWNED:
            continue
        if isinstance(col.type, sa.Integer):
            bits = 64 if not enforced or isinstance(col.type, sa.BigInteger) else 32
            integers.append((col.name, *_INT_RANGES[bits]))
        elif isinstance(col.type, sa.String):
            length = getattr(col.type, "length", None)
            in_bytes = False
            if length is None and dialect in ("mysql", "mariadb"):
                length, in_bytes = _MYSQL_TEXT_BYTES, True
            column = _TextColumn(
                col.name,
                length if enforced else None,
                in_bytes,
                charsets.get(col.name, _UTF8),
            )
            if col.name == "details":
                details = column
            else:
                text.append(column)
    if details is None:  # pragma: no cover - the table definition has one
        raise AuditIntegrityError("governance_audit_log has no details column")
    return _Storage(tuple(text), tuple(integers), details)


#: Columns the writer fills itself (ids, times, hashes): never input, never checked.
_WRITER_OWNED = frozenset({"id", "time", "prev_hash", "hash"})

_STORAGE: weakref.WeakKeyDictionary[sa.Engine, _Storage] = weakref.WeakKeyDictionary()


def storage_of(connection: sa.Connection) -> _Storage:
    """The storage rules of the connection's database, probed once per engine."""
    engine = connection.engine
    storage = _STORAGE.get(engine)
    if storage is None:
        dialect = connection.dialect.name
        storage = _STORAGE[engine] = _storage_for(dialect, _probe_charsets(connection))
    return storage


def _probe_charsets(connection: sa.Connection) -> dict[str, _Charset]:
    """The character set of each text column of the audit table, as the database says.

    The tables take the database's default character set, which an operator chose: on
    MySQL/MariaDB it may be utf8mb3 (no emoji) or latin1, on PostgreSQL LATIN1.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        encoding = str(connection.exec_driver_sql("SHOW server_encoding").scalar())
        charset = _POSTGRES_ENCODINGS.get(encoding.upper(), _Charset(encoding, "ascii", width=4))
        return {col.name: charset for col in audit_log.c}
    if dialect not in ("mysql", "mariadb"):
        return {}
    # What the connection can carry limits what reaches the column, too.
    connection_charset = _mysql_charset(
        connection.exec_driver_sql("SELECT @@character_set_connection").scalar()
    )
    found = connection.execute(
        sa.text(
            "SELECT column_name, character_set_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = :table"
        ),
        {"table": audit_log.name},
    ).all()
    return {
        str(name).lower(): _narrower(_mysql_charset(charset), connection_charset)
        for name, charset in found
        if charset is not None
    }


def _mysql_charset(name: object) -> _Charset:
    key = str(name).lower()
    return _MYSQL_CHARSETS.get(key, _Charset(key, "ascii", width=4))


def _narrower(first: _Charset, second: _Charset) -> _Charset:
    """A character set holding only what both hold (conservatively)."""
    if second in (first, _UTF8):
        return first
    # utf8mb3 holds every other character set of the tables above: the other one wins.
    if first in (_UTF8, _UTF8_BMP):
        return second
    if second == _UTF8_BMP:
        return first
    width = max(first.width or 1, second.width or 1)
    return _Charset(f"{first.name}+{second.name}", "ascii", width=width)
