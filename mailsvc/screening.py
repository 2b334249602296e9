"""Screening: the configuration's spam and sender rules made into the pure policies (spam.SpamPolicy,
senders.SenderRules), and the Screen of one message that decide reads.

ingest asks `Screening.screen` once per message, after routing; the store's denials of `#spam block`
come in through `denied` so this module does no I/O itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from mailsvc.config import Config
from mailsvc.model import InboundMessage, QueueMap
from mailsvc.senders import Screen, SenderRules, screen_sender
from mailsvc.spam import HeaderRule, SpamPolicy
from mailsvc.trust import TrustPolicy, authenticate_sender


class Screening:
    def __init__(self, config: Config) -> None:
        self.spam = SpamPolicy(
            trust=frozenset(config.spam.trust),
            rules=tuple(
                HeaderRule(r.name, re.compile(r.matches, re.IGNORECASE) if r.matches else None, r.score_at_least)
                for r in config.spam.headers
            ),
        )
        self.rules = QueueMap(
            {
                name: SenderRules(q.senders.allow, q.senders.deny, q.senders.no_ack, q.senders.others == "refuse")
                for name, q in config.queues.items()
            },
            config.default_queue,
        )
        self.trust = TrustPolicy(staff=frozenset(), trusted_authserv_ids=frozenset(config.trust.authserv_ids))
        self.require_authenticated = config.auto_mail.require_authenticated

    def screen(self, msg: InboundMessage, queue: str, staff: bool, denied: Callable[[str], tuple[str, ...]]) -> Screen:
        """What the rules of `queue` and the sender's authentication say; staff mail is not screened."""
        if msg.from_ is None or staff:
            return Screen()
        found = screen_sender(msg.from_.addr, self.rules[queue], denied(queue))
        auth = authenticate_sender(msg, self.trust)
        if auth.forged or (self.require_authenticated and not auth.authenticated):
            return replace(found, unverified=auth.reason)
        return replace(found, authenticated=auth.authenticated)
