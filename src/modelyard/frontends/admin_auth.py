"""The one check on state-changing management calls: ``Authorization: Bearer <admin_token>``.

Both frontends use it: REST on every route that changes server state (endpoint ``PUT``/``DELETE``,
repository load/unload, any route a feature adds with a method other than GET/HEAD unless it says
otherwise: see :func:`~modelyard.frontends.asgi.changes_state`), gRPC on ``RepositoryModelLoad``
and ``RepositoryModelUnload``. The value is the same in an HTTP header and in gRPC metadata
(key ``authorization``), so the check knows neither transport. Without ``settings.admin_token``
every call passes, as before the setting existed.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from modelyard.errors import UnauthenticatedError

AUTHORIZATION = "authorization"
"""Header (HTTP) and metadata key (gRPC, lower case there) that carries the credential."""

SCHEME = "Bearer"


class AdminAuth:
    """Checks the ``Authorization`` value of a management call against the admin token."""

    __slots__ = ("_expected",)

    def __init__(self, token: SecretStr | None) -> None:
        self._expected = None if token is None else token.get_secret_value().encode()

    @property
    def enabled(self) -> bool:
        """Whether management calls need the token (``settings.admin_token`` is set)."""
        return self._expected is not None

    def check(self, authorization: str | None) -> None:
        """Pass, or raise :class:`UnauthenticatedError` (HTTP 401, gRPC UNAUTHENTICATED)."""
        if self._expected is None:
            return
        if authorization is None:
            raise UnauthenticatedError(
                "this management call needs the admin token: Authorization: Bearer <token>"
            )
        scheme, _, given = authorization.strip().partition(" ")
        # compare_digest: the time taken does not tell how much of a guess was right.
        if scheme.lower() != SCHEME.lower() or not hmac.compare_digest(
            given.strip().encode("latin-1", "replace"), self._expected
        ):
            raise UnauthenticatedError("the admin token is missing or wrong")


def bearer(token: SecretStr | str) -> str:
    """The ``Authorization`` value that carries ``token`` (for clients and tests)."""
    value = token.get_secret_value() if isinstance(token, SecretStr) else token
    return f"{SCHEME} {value}"
