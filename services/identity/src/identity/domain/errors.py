from __future__ import annotations

from datetime import datetime


class IdentityError(Exception):
    pass


class InvalidCredentials(IdentityError):
    """Wrong e-mail, password or second factor; never says which."""


class SecondFactorRequired(IdentityError):
    """The password was right; a TOTP or backup code is needed too."""


class TooManyAttempts(IdentityError):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"too many failed attempts; try again after {until.isoformat()}")
        self.until = until


class InvalidRefreshToken(IdentityError):
    pass


class SessionEnded(IdentityError):
    pass


class NotAllowed(IdentityError):
    pass


class PolicyViolation(IdentityError):
    def __init__(self, violations: list[str]) -> None:
        super().__init__("; ".join(violations))
        self.violations = violations
