"""Secrets at rest: the keyring, authenticated encryption and the ``Secret`` wrapper."""

from hkops.security.crypto import (
    Keyring,
    Secret,
    SealedColumn,
    SecretError,
    count_by_key,
    load_keyring,
    new_key,
    retire_key,
    rotate,
)

__all__ = [
    "Keyring",
    "Secret",
    "SealedColumn",
    "SecretError",
    "count_by_key",
    "load_keyring",
    "new_key",
    "retire_key",
    "rotate",
]
