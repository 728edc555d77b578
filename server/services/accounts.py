"""Users and personal API tokens: plain functions over a session (used only when auth is on).

Passwords are hashed with argon2id (argon2-cffi); API tokens are 256-bit random strings, so a plain
SHA-256 of them is enough to store (nobody can brute-force the preimage), and lookups stay one index hit.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import ApiToken, User, utcnow

Role = Literal["viewer", "member", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
TOKEN_PREFIX = "odt_"  # makes a leaked token recognisable to secret scanners and to people
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1000  # argon2 hashes any length, slowly: a 20 MB "password" is not one
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A request about accounts that cannot be carried out; the message says why and what to do."""


def role_at_least(role: str, needed: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def create_user(*, session: Session, name: str, password: str, role: Role) -> User:
    if not NAME_PATTERN.match(name):
        raise AccountError(f"user name {name!r}: use letters, digits and . _ @ - (up to 100), starting with a letter or digit")
    if role not in ROLES:
        raise AccountError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    _check_password(password)
    if get_user(session=session, name=name) is not None:
        raise AccountError(f"user {name!r} already exists")
    user = User(name=name, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def set_password(*, user: User, password: str) -> None:
    """A new password; the user's sessions elsewhere end with the old one (`password_fingerprint`)."""
    _check_password(password)
    user.password_hash = _hasher.hash(password)


def password_fingerprint(user: User) -> str:
    """Kept in a login's session: a session made before the password changed no longer matches."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password: use at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"password: use at most {MAX_PASSWORD_CHARS} characters")


def get_user(*, session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def authenticate(*, session: Session, name: str, password: str) -> User | None:
    """The user whose name and password these are, or None."""
    user = get_user(session=session, name=name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, session: Session, user: User, label: str) -> tuple[ApiToken, str]:
    """A new token for `user`: returns the row and the token itself, which is shown once and never stored."""
    label = label.strip() or "token"
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, label=label[:100], token_hash=_token_hash(token))
    session.add(row)
    session.flush()
    return row, token


def list_tokens(*, session: Session, user_id: int) -> list[ApiToken]:
    return list(session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)
    ))


def revoke_token(*, session: Session, user_id: int, token_id: int) -> bool:
    """Revoke one of the user's own tokens; False if they have no such live token."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def user_for_token(*, session: Session, token: str) -> User | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    return session.get(User, row.user_id)
