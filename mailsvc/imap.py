"""The IMAP shell (source): connect, wait for mail (IDLE or polling), fetch by UID, move.

A thin adapter over imapclient: it decides nothing, and is told to move a
message only after the store has committed it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from mailsvc import metrics
from mailsvc.alarm import Alarm
from mailsvc.config_servers import ImapConfig, TlsMode
from mailsvc.credentials import Credential, CredentialProvider, as_provider
from mailsvc.errors import TlsError

# What a broken connection or a refusing server raises; the daemon reconnects on these. A password that
# LOGIN cannot carry (non-ASCII) raises UnicodeEncodeError: a refused login, never a crash.
IMAP_ERRORS: tuple[type[BaseException], ...] = (IMAPClientError, OSError, ssl.SSLError, EOFError, UnicodeEncodeError)


def _tls_context(cfg: ImapConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)


class ImapSource:
    """One watched folder. `key` names it in the store (default: the folder's name); new cases
    from it open in `queue` unless their recipients name another."""

    def __init__(
        self,
        cfg: ImapConfig,
        credentials: CredentialProvider | str,
        *,
        key: str | None = None,
        queue: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.credentials = as_provider(cfg.user, credentials)
        self.key = key or cfg.folder
        self.queue = queue
        self.client: IMAPClient | None = None
        self.uidvalidity = 0
        self.capabilities: frozenset[str] = frozenset()
        self._internal_dates: dict[int, datetime] = {}  # for this connection: see internal_dates

    @property
    def mailbox(self) -> str:
        return self.key

    def connect(self) -> None:
        cfg = self.cfg
        try:
            client = IMAPClient(
                cfg.host,
                port=cfg.effective_port,
                ssl=cfg.tls is TlsMode.IMPLICIT,
                ssl_context=_tls_context(cfg) if cfg.tls is not TlsMode.NONE else None,
                timeout=cfg.timeout,
            )
        except ssl.SSLError as exc:
            raise TlsError.handshake(cfg.host, cfg.effective_port, exc) from None
        quiet_imaplib(client)
        try:
            if cfg.tls is TlsMode.STARTTLS:
                try:
                    client.starttls(_tls_context(cfg))
                except ssl.SSLError as exc:
                    raise TlsError.handshake(cfg.host, cfg.effective_port, exc) from None
            login(client, self.credentials)
            for folder in (cfg.processed_folder, cfg.quarantine_folder, cfg.junk_folder):
                if folder is not None:
                    _ensure_folder(client, folder)
            selected = client.select_folder(cfg.folder)
        except BaseException:
            _close_quietly(client)
            raise
        self.client = client
        self.uidvalidity = int(selected[b"UIDVALIDITY"])
        self._internal_dates = {}
        self.capabilities = frozenset(c.decode().upper() for c in client.capabilities())

    def close(self) -> None:
        if self.client is not None:
            _close_quietly(self.client)
            self.client = None

    def _client(self) -> IMAPClient:
        if self.client is None:
            raise IMAPClientError("not connected")
        return self.client

    def pending_uids(self) -> list[int]:
        """Every message in the watched folder: processed ones were moved away."""
        client = self._client()
        # Some servers (Dovecot) answer SEARCH from the session's last sync; NOOP syncs first.
        client.noop()
        # With imap.processed_folder null, processed mail stays here, marked with the done keyword.
        criteria = ["ALL"] if self.cfg.processed_folder is not None else ["NOT", "KEYWORD", self.cfg.done_keyword]
        uids = sorted(int(uid) for uid in client.search(criteria))
        metrics.LAST_FETCH.labels(self.key).set_to_current_time()
        return uids

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each message: known before any is downloaded, so memory stays bounded."""
        found: dict[int, int] = {}
        for start in range(0, len(uids), 500):
            data = self._client().fetch(list(uids[start : start + 500]), ["RFC822.SIZE"])
            found.update((int(uid), int(item[b"RFC822.SIZE"])) for uid, item in data.items() if b"RFC822.SIZE" in item)
        return found

    def fetch_header(self, uid: int) -> bytes | None:
        """The header block of one message (with its ending blank line), without the body."""
        data = self._client().fetch([uid], ["BODY.PEEK[HEADER]"])
        item = data.get(uid)
        if item is None or b"BODY[HEADER]" not in item:
            return None
        metrics.FETCHED.labels(self.key).inc()  # a message too large to download counts as fetched, once
        return bytes(item[b"BODY[HEADER]"])

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        if not uids:
            return {}
        data = self._client().fetch(list(uids), ["BODY.PEEK[]"])
        metrics.FETCHED.labels(self.key).inc(len(data))
        return {int(uid): bytes(item[b"BODY[]"]) for uid, item in data.items() if b"BODY[]" in item}

    def arrival_times(self, uids: Sequence[int]) -> dict[int, datetime]:
        """When the server received these messages (INTERNALDATE, whole seconds); empty when it cannot say."""
        try:
            data = self._client().fetch(list(uids), ["INTERNALDATE"])
        except IMAP_ERRORS:
            return {}
        # imapclient gives naive local times; astimezone() reads them as such.
        return {
            int(uid): item[b"INTERNALDATE"].astimezone(UTC) for uid, item in data.items() if b"INTERNALDATE" in item
        }

    def internal_dates(self, uids: Sequence[int]) -> dict[int, datetime]:
        """INTERNALDATE of each message (when the server received it); raises on IMAP errors, unlike
        `arrival_times`, because what it decides (old mail or new) must not default silently.

        No IMAP command changes a message's INTERNALDATE, so each is asked once a connection: mail the
        backlog leaves alone (imap.backlog: skip) stays in the folder and is judged at every pass."""
        known = self._internal_dates
        missing = [u for u in uids if u not in known]
        for start in range(0, len(missing), 500):
            data = self._client().fetch(missing[start : start + 500], ["INTERNALDATE"])
            known.update(
                (int(uid), item[b"INTERNALDATE"].astimezone(UTC))
                for uid, item in data.items()
                if b"INTERNALDATE" in item
            )
        return {u: known[u] for u in uids if u in known}

    def mark_done(self, uids: Sequence[int]) -> None:
        """Leave processed mail in place: \\Seen, and the done keyword that keeps it from being processed again."""
        if uids:
            self._client().add_flags(list(uids), [b"\\Seen", self.cfg.done_keyword.encode()], silent=True)

    def move_by_message_id(self, folder: str, message_ids: Sequence[str], dest: str) -> int:
        """Move the messages of `folder` with these Message-IDs to `dest`; returns how many were found.
        The watched folder is selected again afterwards (its UIDVALIDITY checked by the next pass)."""
        client = self._client()
        other = folder != self.cfg.folder
        if other:
            client.select_folder(folder)
        try:
            uids: set[int] = set()
            for message_id in message_ids:
                uids.update(int(u) for u in client.search(["HEADER", "Message-ID", message_id]))
            if uids:
                self.move(sorted(uids), dest)
        finally:
            if other:
                client.select_folder(self.cfg.folder)
        return len(uids)

    def move(self, uids: Sequence[int], folder: str) -> None:
        if not uids:
            return
        client = self._client()
        if "MOVE" in self.capabilities:
            client.move(list(uids), folder)
            return
        client.copy(list(uids), folder)
        client.add_flags(list(uids), [b"\\Deleted"], silent=True)
        if "UIDPLUS" in self.capabilities:
            client.uid_expunge(list(uids))
        else:
            client.expunge()

    def wait_for_mail(self, stop: threading.Event) -> None:
        """Return when new mail may have arrived, the IDLE renewal is due, or `stop` is set (an `Alarm`
        ends IDLE the moment it is set, a plain Event within a second)."""
        if not (self.cfg.idle and "IDLE" in self.capabilities):
            stop.wait(self.cfg.poll_interval)
            return
        client = self._client()
        client.idle()
        if _buffered_input(client):
            # Mail that came after the pass is announced with the IDLE continuation, in the same packet:
            # idle_check polls the socket and would not see a line already in the client's buffer.
            client.idle_done()
            return
        renew_at = time.monotonic() + self.cfg.idle_renew
        # Short checks so a stop request is seen within a second; an Alarm (a lost mailbox lock) at once.
        while not stop.is_set() and time.monotonic() < renew_at:
            if isinstance(stop, Alarm):
                stop.wait_beside(client.socket(), 1.0)
                if stop.is_set():
                    break
                responses: list[Any] = client.idle_check(timeout=0)
            else:
                responses = client.idle_check(timeout=1.0)
            # idle_check swallows the end of the stream and answers "nothing" at once, again and again:
            # without this the loop would spin until the renewal, blind to mail on a new connection.
            if any(r and r[0] == b"BYE" for r in responses) or (not responses and _closed_by_peer(client)):
                raise IMAPClientAbortError("the server closed the connection during IDLE")
            if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                break
        client.idle_done()


def quiet_imaplib(client: IMAPClient) -> None:
    """Turn off imaplib's debug messages, which imapclient turns on (level 5) to hand them to a logger.

    imaplib formats them whether or not anyone logs them: each fetched message's repr, twice (when the
    literal is stored and when it is handed over), which held three more copies of a large message.
    mailsvc logs through structlog and never shows them."""
    client._imap.debug = 0


def _authenticate(client: IMAPClient, credential: Credential) -> None:
    if credential.kind == "oauth2":
        # OAUTHBEARER (RFC 7628) is the standard; XOAUTH2 is what Microsoft and Google offer.
        if client.has_capability("AUTH=OAUTHBEARER"):
            client.oauthbearer_login(credential.user, credential.secret)
        else:
            client.oauth2_login(credential.user, credential.secret)
    elif credential.secret.isascii() and credential.user.isascii():
        client.login(credential.user, credential.secret)
    else:
        # LOGIN cannot carry 8-bit text; AUTHENTICATE PLAIN carries UTF-8 (RFC 4616).
        client.plain_login(credential.user, credential.secret)


def login(client: IMAPClient, credentials: CredentialProvider) -> None:
    """Log in with what the provider gives; a refused OAuth2 token is renewed once and tried again."""
    credential = credentials.credential()
    try:
        _authenticate(client, credential)
    except LoginError:
        if credential.kind != "oauth2":
            raise
        _authenticate(client, credentials.credential(renew=True))


def _buffered_input(client: IMAPClient) -> bool:
    """Whether a server response is already waiting, read into imaplib's buffer or on the socket; reads nothing
    the client would not read next anyway, and never blocks."""
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return bool(client._imap.file.peek(1))
    except OSError:  # nothing to read now (a TLS socket says so with SSLWantReadError)
        return False
    finally:
        sock.settimeout(timeout)


def _closed_by_peer(client: IMAPClient) -> bool:
    """Whether the server has ended the connection (end of stream or reset); reads nothing."""
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.settimeout(0)  # with a timeout, recv would first wait that long for data to arrive
    try:
        # socket.socket.recv peeks at the TCP stream itself, under TLS too (SSLSocket.recv refuses flags).
        return socket.socket.recv(sock, 1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


def _ensure_folder(client: IMAPClient, folder: str) -> None:
    """Create `folder` unless it exists; another watcher of the same account may create it meanwhile."""
    if client.folder_exists(folder):
        return
    try:
        client.create_folder(folder)
    except IMAPClientError:
        if not client.folder_exists(folder):
            raise


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, OSError, AttributeError):
        with contextlib.suppress(IMAPClientError, OSError, AttributeError):
            client.shutdown()
