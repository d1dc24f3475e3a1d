"""Who is calling, and what may they touch: JWT users, agents and operators, scoped by organization.

Two modes mirror the original edge functions:

* **User**: ``Authorization: Bearer <JWT>``. The signature is checked with either an HS256 secret
  (``JWT_SECRET``) or the keys of a JWKS URL (``JWT_JWKS_URL``), never both: a service configured for
  JWKS must not accept HS256, or anyone holding the *public* key could mint tokens (the classic
  algorithm-confusion attack). The algorithm list is pinned, ``none`` is never accepted, and ``exp``,
  ``aud`` and ``sub`` are required. Roles come from ``user_roles`` on every request, so revoking a role
  takes effect immediately rather than when a token expires.
* **Agent**: ``x-agent-token`` (compared in constant time with ``AGENT_TOKEN``) plus
  ``x-organization-id``. Preview and automation environments may have no real users, so the agent's
  ``x-user-id`` is kept as *audit text only*: it is unverified and never lands in a column meant for a
  verified user id (``created_by``, ``published_by``).

A third kind, **operator**, is for trusted local tools (the ``ignite`` CLI run by someone who already
holds the database credentials): superadmin rights, no user id, and a mandatory audit string.

This module is plain domain code (no web framework): the HTTP layer maps :class:`AuthError` to a
response, the CLI builds an operator principal directly.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal
from uuid import UUID

import jwt
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field

from ignite_dagster.config import ConfigError, Settings

Role = Literal["superadmin", "org_admin", "editor", "viewer"]
WRITE_ROLES = frozenset({"org_admin", "editor", "agent"})
"""Roles that may enqueue, requeue and publish in their organization (``agent`` is the agent's
pseudo-role in the one organization its request names)."""

# Asymmetric algorithms accepted from a JWKS. HS* is deliberately absent (see the module docstring).
JWKS_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
HMAC_ALGORITHMS = ("HS256",)
# Small allowance for clock skew between the token issuer and this service.
LEEWAY_SECONDS = 10
AUDIT_TEXT_MAX = 255
_AUDIT_RE = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")  # printable ASCII, no leading blank

ConnSource = ConnectionPool | str | psycopg.Connection


class AuthError(Exception):
    """Authentication or authorization failed; ``status`` is the HTTP status the API should answer."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Principal(BaseModel):
    """The authenticated caller.

    ``roles`` maps organization id → role names held there. ``user_id`` is set only for a verified user
    (a JWT ``sub``); ``audit_user`` is free text for the record (an agent's ``x-user-id``, an operator's
    name) and must never be treated as an identity.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["user", "agent", "operator"]
    user_id: UUID | None = None
    audit_user: str | None = None
    roles: dict[UUID, frozenset[str]] = Field(default_factory=dict)
    is_superadmin: bool = False

    @property
    def organizations(self) -> list[UUID]:
        """Organizations the principal holds any role in (superadmin rights are not listed here)."""
        return sorted(self.roles, key=str)

    @property
    def rate_key(self) -> str:
        """Key of this caller's rate-limit bucket.

        Agents share one token, and their ``x-user-id`` is unverified (varying it must not buy a fresh
        bucket), so agents are limited per organization.
        """
        if self.kind == "user":
            return f"user:{self.user_id}"
        if self.kind == "agent":
            return f"agent:{next(iter(self.roles), 'none')}"
        return f"operator:{self.audit_user}"

    def audit_text(self) -> str | None:
        """What goes into audit-only columns (``requested_by``, ``published_by_agent``)."""
        if self.kind == "user":
            return None
        return self.audit_user or self.kind

    @classmethod
    def operator(cls, audit: str) -> Principal:
        """A trusted local operator (the CLI). The audit text is required: every write names its author."""
        if not audit or not audit.strip():
            raise ValueError("an operator principal needs a non-empty audit text (e.g. 'cli:<os user>')")
        return cls(kind="operator", audit_user=audit.strip()[:AUDIT_TEXT_MAX], is_superadmin=True)


def can_read(principal: Principal, organization_id: UUID) -> bool:
    """Any role in the organization (viewer and up), or superadmin."""
    return principal.is_superadmin or bool(principal.roles.get(organization_id))


def can_write(principal: Principal, organization_id: UUID) -> bool:
    """Editor, org_admin, or an agent of that organization; or superadmin."""
    return principal.is_superadmin or bool(principal.roles.get(organization_id, frozenset()) & WRITE_ROLES)


# -- settings -----------------------------------------------------------------------------------------


def check_auth_settings(settings: Settings) -> None:
    """Refuse an auth configuration that would be unsafe or unusable, naming the variables.

    * neither JWT nor agent auth configured: the service would answer 401 to everyone;
    * both ``JWT_SECRET`` and ``JWT_JWKS_URL``: ambiguous, and accepting HS256 next to a JWKS is the
      algorithm-confusion hole this module exists to close;
    * JWT configured without ``JWT_AUDIENCE``: ``aud`` would go unchecked.
    """
    jwt_on = bool(settings.jwt_secret or settings.jwt_jwks_url)
    if not jwt_on and not settings.agent_token:
        raise ConfigError("api auth", ["JWT_SECRET or JWT_JWKS_URL (with JWT_AUDIENCE), or AGENT_TOKEN"])
    if settings.jwt_secret and settings.jwt_jwks_url:
        raise ConfigError("api auth", [], ["set only one of JWT_SECRET (HS256) and JWT_JWKS_URL (asymmetric keys)"])
    if jwt_on:
        settings.require("api auth (JWT)", "JWT_AUDIENCE")


class JwtVerifier:
    """Verifies user JWTs with the one key source configured; see the module docstring."""

    def __init__(self, settings: Settings, jwks_cache_seconds: int = 300, jwks_timeout_seconds: float = 5.0):
        self._secret = settings.jwt_secret
        self._audience = settings.jwt_audience
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwt_jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url, cache_keys=True, lifespan=jwks_cache_seconds, timeout=jwks_timeout_seconds
            )

    @property
    def enabled(self) -> bool:
        return bool((self._secret or self._jwks) and self._audience)

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims, or AuthError(401). An unreachable JWKS is a 503, not a bad token."""
        if not self.enabled:
            raise AuthError(401, "invalid_token", "bearer token not accepted")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(401, "invalid_token", f"malformed token: {exc}") from exc
        alg = header.get("alg")
        if self._jwks is not None:
            if alg not in JWKS_ALGORITHMS:
                raise AuthError(401, "invalid_token", f"token algorithm {alg!r} is not accepted")
            try:
                signing_key = self._jwks.get_signing_key_from_jwt(token)
            except jwt.PyJWKClientConnectionError as exc:
                raise AuthError(503, "auth_unavailable", "cannot fetch the signing keys to verify the token") from exc
            except jwt.PyJWTError as exc:
                raise AuthError(401, "invalid_token", f"no matching signing key: {exc}") from exc
            key_alg = getattr(signing_key, "algorithm_name", None)
            if key_alg and key_alg != alg:
                raise AuthError(401, "invalid_token", f"token algorithm {alg!r} does not match its key")
            key: Any = signing_key.key
            algorithms = [alg]
        else:
            key = self._secret
            algorithms = list(HMAC_ALGORITHMS)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(401, "token_expired", "token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(401, "invalid_token", "token audience is not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(401, "invalid_token", "token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(401, "invalid_token", f"invalid token: {exc}") from exc


# -- database lookups ---------------------------------------------------------------------------------


@contextmanager
def connection(source: ConnSource) -> Iterator[psycopg.Connection]:
    """A dict-row connection from a pool, a URL or an open connection (used as is)."""
    if isinstance(source, ConnectionPool):
        with source.connection() as conn:
            yield conn
    elif isinstance(source, str):
        with psycopg.connect(source, autocommit=True, row_factory=dict_row) as conn:
            yield conn
    else:
        yield source


def load_roles(source: ConnSource, user_id: UUID) -> tuple[dict[UUID, frozenset[str]], bool]:
    """(roles by organization, is_superadmin) of a user, straight from ``user_roles``."""
    with connection(source) as conn:
        rows = conn.execute(
            "SELECT organization_id, role FROM user_roles WHERE user_id = %s", (user_id,)
        ).fetchall()
    roles: dict[UUID, set[str]] = {}
    superadmin = False
    for row in rows:
        org, role = _get(row, "organization_id", 0), _get(row, "role", 1)
        if role == "superadmin":
            superadmin = True
        elif org is not None:
            roles.setdefault(org, set()).add(role)
    return {org: frozenset(r) for org, r in roles.items()}, superadmin


def organization_exists(source: ConnSource, organization_id: UUID) -> bool:
    with connection(source) as conn:
        return conn.execute("SELECT 1 FROM organizations WHERE id = %s", (organization_id,)).fetchone() is not None


def _get(row: Any, name: str, index: int) -> Any:
    return row[name] if isinstance(row, Mapping) else row[index]


# -- header parsing -----------------------------------------------------------------------------------


def parse_organization_header(value: str | None) -> UUID | None:
    """``x-organization-id`` as a UUID; a malformed value is a 400, never silently ignored."""
    if value is None or value == "":
        return None
    try:
        return UUID(value.strip())
    except ValueError as exc:
        raise AuthError(400, "invalid_organization_id", "x-organization-id must be a UUID") from exc


def parse_audit_header(value: str | None) -> str | None:
    """``x-user-id`` of an agent: printable text, bounded, stored for the record only."""
    if value is None or value == "":
        return None
    value = value.strip()
    if len(value) > AUDIT_TEXT_MAX or not _AUDIT_RE.match(value):
        raise AuthError(400, "invalid_user_id", f"x-user-id must be 1–{AUDIT_TEXT_MAX} printable ASCII characters")
    return value


class Authenticator:
    """Turns request headers into a Principal. One instance per service (it caches JWKS keys)."""

    def __init__(self, settings: Settings, source: ConnSource):
        self._agent_token = settings.agent_token.encode() if settings.agent_token else None
        self._verifier = JwtVerifier(settings)
        self._source = source

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """Principal for ``headers`` (a case-insensitive mapping, or one with lower-case keys).

        ``x-agent-token`` takes precedence over ``Authorization``: browser clients of the original
        service send ``Authorization: Bearer <anon key>`` on every call, agent calls included, and the
        anon key is not a user.
        """
        agent_token = headers.get("x-agent-token")
        if agent_token is not None:
            return self._agent(agent_token, headers)
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError(401, "invalid_token", "Authorization must be 'Bearer <token>'")
            return self._user(token.strip())
        raise AuthError(401, "missing_credentials", "authentication required: a Bearer token or agent headers")

    def _agent(self, token: str, headers: Mapping[str, str]) -> Principal:
        # Compare even when agent auth is off (against a dummy) so timing does not reveal the setting.
        expected = self._agent_token or b"\x00agent-auth-disabled"
        matches = hmac.compare_digest(token.encode("utf-8", "surrogateescape"), expected)
        if not (matches and self._agent_token):
            raise AuthError(401, "invalid_credentials", "invalid agent token")
        org = parse_organization_header(headers.get("x-organization-id"))
        if org is None:
            raise AuthError(400, "organization_required", "agent requests need an x-organization-id header")
        audit = parse_audit_header(headers.get("x-user-id"))
        if not organization_exists(self._source, org):
            raise AuthError(403, "unknown_organization", f"organization {org} does not exist")
        return Principal(kind="agent", audit_user=audit, roles={org: frozenset({"agent"})})

    def _user(self, token: str) -> Principal:
        claims = self._verifier.verify(token)
        try:
            user_id = UUID(str(claims["sub"]))
        except ValueError as exc:
            raise AuthError(401, "invalid_token", "token subject is not a user id") from exc
        roles, superadmin = load_roles(self._source, user_id)
        return Principal(kind="user", user_id=user_id, roles=roles, is_superadmin=superadmin)


def resolve_write_organization(principal: Principal, requested: UUID | None, source: ConnSource) -> UUID:
    """The organization a write (enqueue, live media) acts in.

    Agents act in the one organization their request names. A user names it with ``x-organization-id``
    when they belong to several; with exactly one membership it is implied. Naming an organization the
    caller cannot see reads as "not found" (existence is not leaked); seeing it without a write role is
    a 403.
    """
    if principal.kind == "agent":
        (org,) = principal.roles
        if requested is not None and requested != org:
            raise AuthError(404, "organization_not_found", f"organization {requested} not found")
        return org
    if requested is not None:
        if not can_read(principal, requested) or (
            principal.is_superadmin and requested not in principal.roles and not organization_exists(source, requested)
        ):
            raise AuthError(404, "organization_not_found", f"organization {requested} not found")
        if not can_write(principal, requested):
            raise AuthError(403, "forbidden", "your role in this organization cannot make changes (viewer)")
        return requested
    orgs = principal.organizations
    if len(orgs) == 1:
        if not can_write(principal, orgs[0]):
            raise AuthError(403, "forbidden", "your role in this organization cannot make changes (viewer)")
        return orgs[0]
    if not orgs and not principal.is_superadmin:
        raise AuthError(403, "forbidden", "you are not a member of any organization")
    raise AuthError(
        400, "organization_required", "you belong to several organizations: name one with x-organization-id"
    )
