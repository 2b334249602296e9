"""The one exception hierarchy of mailsvc; shells catch these at their boundary."""


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


class TransientError(MailsvcError):
    """A failure worth retrying later (network, 4xx)."""


class PermanentError(MailsvcError):
    """A failure that will not go away by retrying (5xx, rejected recipient)."""
