"""API keys (``API_KEYS_FILE``) and admin rights (``ADMIN_KEYS``).

The file holds one ``name:sha256-hex-of-key`` per line (``#`` comments and blank lines are
ignored), so the server never stores a key itself. A request names its key with
``Authorization: Bearer <key>``; the key's *name* is what logs and metrics see.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import ForbiddenError, UnauthorizedError
from service.settings import SettingsError

OPEN_PATHS = frozenset({"/health", "/ready"})
"""Probes answer without a key (load balancers and Kubernetes send none)."""
SECURITY_SCHEME = "apiKey"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_LINE = re.compile(r"(?P<name>[A-Za-z0-9_.@-]{1,64}):(?P<digest>[0-9a-fA-F]{64})")


@dataclass(frozen=True)
class KeyRing:
    names_by_digest: dict[str, str]
    admins: frozenset[str]

    @classmethod
    def load(cls, path: Path, admins: frozenset[str]) -> KeyRing:
        """Read ``path``; :class:`SettingsError` naming the variable and line for anything
        malformed, and for admin names that are not in the file."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(f"API_KEYS_FILE={path}: cannot be read ({e})") from e
        names: dict[str, str] = {}
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            match = _LINE.fullmatch(line)
            if match is None:
                raise SettingsError(f"API_KEYS_FILE={path} line {number}: expected name:sha256-hex-of-key "
                                    "(64 hex digits, e.g. from `printf %s \"$KEY\" | sha256sum`)")
            digest = match["digest"].lower()
            if digest in names or match["name"] in names.values():
                raise SettingsError(f"API_KEYS_FILE={path} line {number}: duplicate key or name")
            names[digest] = match["name"]
        if not names:
            raise SettingsError(f"API_KEYS_FILE={path} holds no keys: every request would be refused")
        unknown = admins - set(names.values())
        if unknown:
            raise SettingsError(f"ADMIN_KEYS names keys that are not in API_KEYS_FILE: {', '.join(sorted(unknown))}")
        return cls(names, admins)

    def identify(self, authorization: str | None) -> str:
        """The name of the key in an ``Authorization`` header, or :class:`UnauthorizedError`."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise UnauthorizedError("this service needs an API key: send the header 'Authorization: Bearer <key>'")
        digest = hashlib.sha256(key.strip().encode("utf-8", "surrogateescape")).hexdigest()
        # compare against every digest, so the time taken says nothing about which one was close
        found = None
        for known, name in self.names_by_digest.items():
            if hmac.compare_digest(known, digest):
                found = name
        if found is None:
            raise UnauthorizedError("the API key is not valid for this service")
        return found

    def require_admin(self, name: str | None) -> None:
        if name not in self.admins:
            raise ForbiddenError(f"key {name!r} may not use admin routes (ADMIN_KEYS)")


def with_api_keys(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (OpenAPI) as a service with API keys serves it: the bearer scheme, required
    by every operation outside :data:`OPEN_PATHS` (a copy; ``schema`` is left as it is)."""
    out = copy.deepcopy(schema)
    out.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http", "scheme": "bearer",
        "description": "an API key named in API_KEYS_FILE: 'Authorization: Bearer <key>'"}
    for path, item in out.get("paths", {}).items():
        if path in OPEN_PATHS:
            continue
        for method, operation in item.items():
            if method in _HTTP_METHODS:
                operation["security"] = [{SECURITY_SCHEME: []}]
    return out
