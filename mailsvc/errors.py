"""The one exception hierarchy of mailsvc; shells catch these at their boundary."""

from __future__ import annotations


class MailsvcError(Exception):
    """Base of every error mailsvc raises on purpose."""


class ConfigError(MailsvcError):
    """The configuration is invalid; carries every problem with its key path."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))


class TemplateError(MailsvcError):
    """A mail template is missing, has a syntax error or uses an unknown variable."""


class StoreError(MailsvcError):
    """The store cannot be opened or migrated."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (cannot be opened, locked, disk full): retried, not fatal."""


class StoreConflict(StoreError):
    """What the store is asked to record is there already (the same message stored by another process):
    the transaction is rolled back and the message counts as a duplicate."""


class TransientError(MailsvcError):
    """A failure worth retrying later (network, 4xx)."""


class PermanentError(MailsvcError):
    """A failure that will not go away by retrying (5xx, rejected recipient)."""


class CredentialError(MailsvcError, ConnectionError):
    """No credential to log in with: the shells retry it as they retry a connection that failed."""


class OAuthError(CredentialError):
    """The identity provider refused: `code` is its error code (RFC 6749 5.2), `hint` what to do.

    Permanent ones (a revoked or expired refresh token, missing consent, a wrong client secret) do not go
    away by retrying: someone has to run `mailsvc oauth login` or fix the app registration.
    """

    def __init__(self, code: str, description: str, *, permanent: bool, hint: str = "") -> None:
        self.code, self.description, self.permanent, self.hint = code, description, permanent, hint
        super().__init__(f"{code}: {description}" if description else code)


class TlsError(MailsvcError, ConnectionError):
    """The TLS handshake failed (a certificate not trusted, a wrong host name): retried like a connection."""

    @classmethod
    def handshake(cls, host: str, port: int, exc: BaseException) -> TlsError:
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        if getattr(exc, "verify_code", None) in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
            return cls(f"TLS with {host}:{port} failed: the certificate is not for this host: {reason}")
        if getattr(exc, "verify_code", None) is not None or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return cls(f"TLS with {host}:{port} failed: certificate not trusted: {reason}")
        return cls(f"TLS with {host}:{port} failed: {reason}")
