"""Outgoing mail: SMTP when a server is configured, the log otherwise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Protocol

import aiosmtplib

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailMessage:
    to: str
    subject: str
    body: str
    #: The one link the message exists for (invitation, password reset); LogMailer shows it on its own.
    link: str = ""


class Mailer(Protocol):
    async def send(self, message: MailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    ssl: bool = False
    sender: str = "Telerad <no-reply@telerad.invalid>"
    timeout_seconds: float = 30

    def __post_init__(self) -> None:
        if self.starttls and self.ssl:
            raise ValueError("choose STARTTLS or TLS from the start (ssl), not both")
        if "@" not in parseaddr(self.sender)[1]:
            raise ValueError(f"the sender {self.sender!r} is not an e-mail address")


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def compose(self, message: MailMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.settings.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(domain=parseaddr(self.settings.sender)[1].partition("@")[2] or None)
        email.set_content(message.body)
        return email

    async def send(self, message: MailMessage) -> None:
        s = self.settings
        await aiosmtplib.send(self.compose(message), hostname=s.host, port=s.port, username=s.username,
                              password=s.password, start_tls=s.starttls, use_tls=s.ssl, timeout=s.timeout_seconds)
        log.info("mail sent", extra={"to": message.to, "subject": message.subject})


class LogMailer:
    """Embedded default: nothing leaves the machine; whoever runs `make run` follows the link from the console."""

    async def send(self, message: MailMessage) -> None:
        log.info("mail (not sent, no SMTP host configured) to %s: %s — %s", message.to, message.subject,
                 message.link, extra={"to": message.to, "subject": message.subject, "link": message.link})


async def deliver(mailer: Mailer, message: MailMessage) -> bool:
    """Send, and on failure log rather than raise: the state the mail announces is already committed."""
    try:
        await mailer.send(message)
    except Exception:
        log.exception("mail could not be sent", extra={"to": message.to, "subject": message.subject})
        return False
    return True
