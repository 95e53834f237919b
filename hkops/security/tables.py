"""Users and their sessions and API tokens (issue 9). Written only by hkops.security.users."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table

from hkops.store.schema import BigKey, UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    # argon2id hash (argon2-cffi's encoded form); None: no password set, cannot log in.
    Column("password_hash", String(200)),
    # Role names from the role file, comma-separated.
    Column("roles", String(200), nullable=False),
    # For agent users: the agent (agents.code) whose subtree they see.
    Column("agent_code", String(32)),
    Column("disabled", Boolean, nullable=False, server_default="0"),
    # Failed logins in a row; reaching the limit locks the user until locked_until.
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
)

user_tokens = Table(
    "user_tokens",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, nullable=False),
    # "cli" or "console" (a login session) or "api" (an API token issued by an admin).
    Column("kind", String(8), nullable=False),
    # SHA-256 (hex) of the token; the token itself is shown once and never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    # The token's first characters, to tell tokens apart in lists and revoke one.
    Column("prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("last_seen", UTCDateTime),
    Index(None, "user_id"),
    Index(None, "prefix"),
)
