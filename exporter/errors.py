"""Exceptions that carry a one-line message meant for the operator."""


class ConfigError(Exception):
    """Invalid configuration. ``problems`` holds one line per problem."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class SourceError(Exception):
    """A refresh of a cloud source failed.

    ``reason`` is a short, fixed label value for
    imaging_source_refresh_errors_total{reason}; the message must never
    contain credentials.
    """

    REASONS = ("timeout", "connection", "auth", "http_4xx", "http_5xx",
               "rate_limited", "malformed", "pagination", "other")

    def __init__(self, reason, message, retry_after=None):
        if reason not in self.REASONS:
            reason = "other"
        self.reason = reason
        self.retry_after = retry_after    # seconds the API asked us to wait (429 Retry-After)
        super().__init__(message)
