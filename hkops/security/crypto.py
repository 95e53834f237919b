"""Secrets at rest (Ki, OPc, PIN/PUK, ADM, later resident IDs): AES-256-GCM with a keyring.

Token format, one string per secret value::

    v1.<key id>.<base64url(nonce 12 bytes + ciphertext + tag 16 bytes), no padding>

The associated data is a *context* naming where the value lives, ``"<table>.<field>:<row
key>"`` (for instance ``"sims.ki:89860012345678901234"``): a token copied into another row
or field fails to decrypt, as does any changed byte.

Where the keys come from (the database never holds them):

1. ``HKOPS_SECRET_KEY``, when set: a keyring ``"id1:key1,id2:key2"`` (keys base64, 32
   bytes each; the FIRST entry is the active key that encrypts, the others only decrypt),
   or one bare base64 key (its id is then a fingerprint of the key, see :func:`key_id_for`).
2. Otherwise the key file ``HKOPS_SECRET_KEY_FILE`` (default ``data/secret.key``): the same
   entries, one per line, the first active. It is created with one new key on first use,
   owner-only (0600), atomically, and refused when group or others may read it.

Key rotation without downtime for reads:

1. :func:`new_key` puts a new active key in front of the key file (the old keys stay), and
   processes are restarted (or, with ``HKOPS_SECRET_KEY``, the new entry is put first).
   New writes now use the new key; old tokens still decrypt with the old keys.
2. :func:`rotate` re-encrypts the stored tokens batch by batch, in short transactions.
3. :func:`retire_key` drops an old key once :func:`count_by_key` shows no token uses it.

Decrypted values should travel as :class:`Secret`, whose ``repr``/``str`` is ``***``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets as _random
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Table, and_, bindparam, func, not_, or_, select, update

from hkops.errors import HkopsError
from hkops.store.engine import Store, unit_of_work

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ENV = "HKOPS_SECRET_KEY"
KEY_FILE_ENV = "HKOPS_SECRET_KEY_FILE"
KEY_FILE_NAME = "secret.key"
MASK = "***"

_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class SecretError(HkopsError):
    """A secret cannot be encrypted or decrypted (bad key, wrong context, tampered token)."""


class Secret:
    """A secret value that prints as ``***``; :meth:`reveal` gives the value itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError("a Secret holds text")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):
        raise TypeError("a Secret cannot be pickled")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def key_id_for(key: bytes) -> str:
    """The id of a key given without one: ``k`` + 8 hex digits of a hash of the key."""
    return "k" + hashlib.sha256(b"hkops key id\0" + key).hexdigest()[:8]


class Keyring:
    """The active key (encrypts) and old keys (decrypt only), by key id."""

    def __init__(self, keys: Mapping[str, bytes], active: str):
        if active not in keys:
            raise SecretError(f"the active key {active!r} is not in the keyring")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise SecretError(f"key id {key_id!r}: use 1-32 letters, digits, '-' or '_'")
            if len(key) != KEY_BYTES:
                raise SecretError(f"key {key_id!r} is {len(key)} bytes; AES-256 keys are {KEY_BYTES}")
        self._keys = {active: bytes(keys[active])} | {k: bytes(v) for k, v in keys.items() if k != active}
        self._ciphers = {key_id: AESGCM(key) for key_id, key in self._keys.items()}
        self._active = active
        self._prefix = f"{VERSION}.{active}."

    # ------------------------------------------------------------ building

    @classmethod
    def generate(cls, key_id: str | None = None) -> "Keyring":
        """A keyring with one new random key."""
        key = AESGCM.generate_key(bit_length=256)
        key_id = key_id or key_id_for(key)
        return cls({key_id: key}, key_id)

    @classmethod
    def parse(cls, text: str, source: str = KEY_ENV) -> "Keyring":
        """Read ``"id1:key1,id2:key2"`` (or one entry a line; ``#`` comments); first is active."""
        keys: dict[str, bytes] = {}
        entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
        for number, entry in enumerate(e for e in entries if e):
            key_id, sep, encoded = entry.rpartition(":")
            try:
                key = _b64decode(encoded)
            except (binascii.Error, ValueError):
                raise SecretError(f"{source}: entry {number + 1} is not base64") from None
            if len(key) != KEY_BYTES:
                raise SecretError(f"{source}: entry {number + 1} is {len(key)} bytes, a key is {KEY_BYTES}")
            key_id = key_id.strip() if sep else key_id_for(key)
            if key_id in keys:
                raise SecretError(f"{source}: key id {key_id!r} appears twice")
            keys[key_id] = key
        if not keys:
            raise SecretError(f"{source}: holds no key")
        try:
            return cls(keys, next(iter(keys)))
        except SecretError as exc:
            raise SecretError(f"{source}: {exc}") from None

    def dump(self, separator: str = "\n") -> str:
        """The keyring in the form :meth:`parse` reads (contains the keys: handle with care)."""
        text = separator.join(f"{key_id}:{_b64encode(key)}" for key_id, key in self._keys.items())
        return text + ("\n" if separator == "\n" else "")

    def with_new_key(self, key_id: str | None = None) -> "Keyring":
        """This keyring with a new random key as the active one (the others kept for reads)."""
        key = AESGCM.generate_key(bit_length=256)
        key_id = key_id or key_id_for(key)
        if key_id in self._keys:
            raise SecretError(f"key id {key_id!r} is already in the keyring")
        return Keyring({key_id: key, **self._keys}, key_id)

    def without(self, key_id: str) -> "Keyring":
        """This keyring with an old key retired (the active key cannot be)."""
        if key_id == self._active:
            raise SecretError(f"key {key_id!r} is the active key; make another key active first")
        if key_id not in self._keys:
            raise SecretError(f"key {key_id!r} is not in the keyring")
        return Keyring({k: v for k, v in self._keys.items() if k != key_id}, self._active)

    # ------------------------------------------------------------ using

    @property
    def active_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> list[str]:
        """Key ids, the active one first."""
        return list(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(active={self._active!r}, keys={self.key_ids!r})"

    def encrypt(self, plaintext: str | Secret, context: str) -> str:
        """Encrypt ``plaintext`` for the place named by ``context`` with the active key."""
        return self.encrypt_many([(plaintext, context)])[0]

    def encrypt_many(self, items: Sequence[tuple[str | Secret | None, str]]) -> list[str | None]:
        """Encrypt many (plaintext, context) pairs at once; a None plaintext stays None."""
        return self._seal([None if p is None else p.reveal() if isinstance(p, Secret) else p for p, _ in items],
                          b"", [c for _, c in items])

    def encrypt_column(self, values: Sequence[str | None], context: str, keys: Sequence[str]) -> list[str | None]:
        """Encrypt ``values[i]`` with context ``f"{context}:{keys[i]}"`` (a column of a table,
        by row key), as fast as it goes; None stays None."""
        return self._seal(values, f"{context}:".encode("utf-8"), keys)

    def _seal(self, values: Sequence[str | None], context_prefix: bytes, contexts: Sequence[str]) -> list[str | None]:
        if len(values) != len(contexts):
            raise ValueError("one context per value")
        if any(not c for c in contexts) and not context_prefix:
            raise SecretError("a context is required")
        encrypt = self._ciphers[self._active].encrypt
        nonces = os.urandom(NONCE_BYTES * len(values))
        prefix = self._prefix.encode("ascii")
        b2a, urlsafe = binascii.b2a_base64, _URLSAFE
        out: list[str | None] = []
        append = out.append
        for index, (value, context) in enumerate(zip(values, contexts)):
            if value is None:
                append(None)
                continue
            nonce = nonces[index * NONCE_BYTES:(index + 1) * NONCE_BYTES]
            sealed = encrypt(nonce, value.encode("utf-8"), context_prefix + context.encode("utf-8"))
            append(
                (prefix + b2a(nonce + sealed, newline=False).translate(urlsafe)).rstrip(b"=").decode("ascii"))
        return out

    def decrypt(self, token: str, context: str) -> str:
        """The plaintext of ``token``; fails for a wrong context, a changed byte or an unknown key."""
        key_id, body = self._split(token)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SecretError(f"{context}: encrypted with key {key_id!r}, which is not in the keyring")
        try:
            data = _b64decode(body)
        except (binascii.Error, ValueError):
            raise SecretError(f"{context}: the encrypted value is damaged") from None
        if len(data) < NONCE_BYTES + 16:
            raise SecretError(f"{context}: the encrypted value is damaged")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], context.encode("utf-8"))
        except InvalidTag:
            raise SecretError(f"{context}: does not decrypt (wrong place, wrong key or tampered)") from None
        return plain.decode("utf-8")

    def reveal(self, token: str, context: str) -> Secret:
        """:meth:`decrypt`, wrapped in a :class:`Secret`."""
        return Secret(self.decrypt(token, context))

    def key_id_of(self, token: str) -> str:
        """The id of the key a token was encrypted with."""
        return self._split(token)[0]

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is encrypted with the active key (nothing to rotate)."""
        return token.startswith(self._prefix)

    @staticmethod
    def _split(token: str) -> tuple[str, str]:
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != VERSION or not parts[1]:
            raise SecretError(f"not an encrypted value of format {VERSION}")
        return parts[1], parts[2]


# ---------------------------------------------------------------- key file


def key_file_path() -> Path:
    """``HKOPS_SECRET_KEY_FILE``, else ``secret.key`` in the data folder."""
    from hkops.config import DATA_DIR

    configured = os.environ.get(KEY_FILE_ENV)
    return Path(configured) if configured else DATA_DIR / KEY_FILE_NAME


def _write_private(path: Path, text: str, *, replace: bool) -> bool:
    """Write ``text`` to ``path`` with mode 0600 via a private temporary file.

    The file appears atomically and complete: ``os.link`` (``replace=False``, fails when
    the file exists, so two processes cannot both create it) or ``os.replace``. Returns
    False when ``replace`` is False and the file already existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create it directly
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            try:
                os.write(fd, text.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
    finally:
        if temp.exists():
            temp.unlink()


def _read_key_file(path: Path) -> Keyring:
    try:
        info = path.stat()
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"{path}: the key file may be read by others; run: chmod 600 {path}")
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise SecretError(f"{path}: the key file cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SecretError(f"{path}: is not a key file") from None
    return Keyring.parse(text, str(path))


def load_keyring(path: str | Path | None = None, *, create: bool = True) -> Keyring:
    """The keyring from ``HKOPS_SECRET_KEY``, else from the key file (created if missing)."""
    if path is None:
        configured = os.environ.get(KEY_ENV, "").strip()
        if configured:
            return Keyring.parse(configured, KEY_ENV)
    path = Path(path) if path is not None else key_file_path()
    if not path.exists():
        if not create:
            raise SecretError(f"{path}: no key file (and {KEY_ENV} is not set)")
        _write_private(path, Keyring.generate().dump(), replace=False)
    return _read_key_file(path)


def _file_only(path: str | Path | None) -> Path:
    if path is None and os.environ.get(KEY_ENV, "").strip():
        raise SecretError(f"the keys come from {KEY_ENV}: change the keyring there (new active key first)")
    return Path(path) if path is not None else key_file_path()


def new_key(path: str | Path | None = None, key_id: str | None = None) -> str:
    """Put a new active key in front of the key file; the old keys stay for reads. Returns its id."""
    path = _file_only(path)
    keyring = load_keyring(path).with_new_key(key_id)
    _write_private(path, keyring.dump(), replace=True)
    return keyring.active_id


def retire_key(
    key_id: str,
    *,
    db: Store | Connection,
    columns: Sequence["SealedColumn"],
    path: str | Path | None = None,
) -> None:
    """Drop an old key from the key file, refused while any token in ``columns`` still uses it."""
    path = _file_only(path)
    keyring = load_keyring(path, create=False)
    kept = keyring.without(key_id)  # refuses the active key and unknown ids
    remaining = count_by_key(db, columns, keyring).get(key_id, 0)
    if remaining:
        raise SecretError(f"key {key_id!r} still encrypts {remaining} value(s); run the rotation first")
    _write_private(path, kept.dump(), replace=True)


# ---------------------------------------------------------------- rotation


@dataclass(frozen=True)
class SealedColumn:
    """A table column holding tokens; each row's context is ``f"{context}:{row[key]}"``."""

    table: Table
    column: str
    context: str
    key: str

    def context_for(self, key_value: object) -> str:
        return f"{self.context}:{key_value}"


def _groups(columns: Iterable[SealedColumn]) -> dict[tuple[str, str], list[SealedColumn]]:
    groups: dict[tuple[str, str], list[SealedColumn]] = {}
    for column in columns:
        groups.setdefault((column.table.name, column.key), []).append(column)
    return groups


def rotate(
    db: Store | Connection,
    columns: Sequence[SealedColumn],
    *,
    keyring: Keyring | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-encrypt with the active key every token in ``columns`` made with an older key.

    Works in batches of ``batch_size`` rows, each in its own short transaction (pass a
    Store; a Connection makes it one transaction), walking each table by its key. A
    row changed by someone else meanwhile is left as that writer made it. Reads keep
    working throughout, since old keys stay in the keyring until :func:`retire_key`.
    Returns how many values were re-encrypted.
    """
    keyring = keyring or load_keyring()
    prefix = f"{VERSION}.{keyring.active_id}."
    total = 0
    for group in _groups(columns).values():
        table, key = group[0].table, group[0].table.c[group[0].key]
        cols = [table.c[c.column] for c in group]
        stale = or_(*(and_(c.is_not(None), not_(c.startswith(prefix, autoescape=True))) for c in cols))
        last = None
        while True:
            done = 0
            with unit_of_work(db) as conn:
                query = select(key, *cols).where(stale).order_by(key).limit(batch_size)
                if last is not None:
                    query = query.where(key > last)
                rows = conn.execute(query).all()
                if not rows:
                    break
                by_shape: dict[tuple[int, ...], list[dict]] = {}
                for row in rows:
                    changed = tuple(i for i, token in enumerate(row[1:]) if token is not None and not token.startswith(prefix))
                    params = {"_key": row[0]}
                    for i in changed:
                        context = group[i].context_for(row[0])
                        params[f"_old{i}"] = row[1 + i]
                        params[f"_new{i}"] = keyring.encrypt(keyring.decrypt(row[1 + i], context), context)
                    by_shape.setdefault(changed, []).append(params)
                    done += len(changed)
                for changed, params in by_shape.items():
                    statement = (
                        update(table)
                        .where(key == bindparam("_key"), *(cols[i] == bindparam(f"_old{i}") for i in changed))
                        .values({cols[i].name: bindparam(f"_new{i}") for i in changed})
                    )
                    conn.execute(statement, params)
                last = rows[-1][0]
            total += done
            if progress:
                progress(done)
    return total


def count_by_key(db: Store | Connection, columns: Sequence[SealedColumn], keyring: Keyring | None = None) -> dict[str, int]:
    """How many stored tokens each key id encrypts (``"other"``: keys not in the keyring)."""
    keyring = keyring or load_keyring()
    counts = {key_id: 0 for key_id in keyring.key_ids}
    counts["other"] = 0
    with unit_of_work(db) as conn:
        for column in columns:
            col = column.table.c[column.column]
            present = conn.execute(select(func.count()).where(col.is_not(None))).scalar() or 0
            known = 0
            for key_id in keyring.key_ids:
                n = conn.execute(select(func.count()).where(col.startswith(f"{VERSION}.{key_id}.", autoescape=True))).scalar() or 0
                counts[key_id] += n
                known += n
            counts["other"] += present - known
    return counts
