"""Private servers on 127.0.0.1 for tests/demo/bench: the private Dovecot with TLS, OAuth2 and submission.

TLS from a ThrowawayCA on the plain port (STARTTLS) and on an implicit-TLS port; OAuth2 bearer tokens
(XOAUTH2, OAUTHBEARER) checked by Dovecot itself against the identity provider's HS256 key, with no
network; and Dovecot's submission service (SMTP with the same logins), relaying to an SMTP capture.
Plain password logins keep working on the plain port, so the test helpers that append mail still do.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

from mailsvc.testing.dovecot import HOST, PrivateDovecot, _free_port
from mailsvc.testing.idp import write_dovecot_key
from mailsvc.testing.tls import ServerCert


class SecureDovecot(PrivateDovecot):
    def __init__(
        self,
        base: Path,
        cert: ServerCert,
        *,
        oauth_key: bytes | None = None,
        relay_port: int | None = None,
        trace: bool = False,
    ) -> None:
        super().__init__(base, trace=trace)
        self.cert = cert
        self.oauth_key = oauth_key
        self.relay_port = relay_port
        self.imaps_port = _free_port()
        self.submission_port = _free_port() if relay_port else 0

    def _make_dirs(self) -> None:
        super()._make_dirs()
        if self.oauth_key is None:
            return
        keys = self.base / "keys"
        path = write_dovecot_key(keys, self.oauth_key)
        for folder in (keys, *path.parents):
            if folder == keys.parent:
                break
            folder.chmod(0o755)
        if self._root:
            os.chown(path, 0, grp.getgrnam("dovecot").gr_gid)
        path.chmod(0o640)
        (self.base / "oauth2.conf.ext").write_text(
            f"introspection_mode = local\nlocal_validation_key_dict = fs:posix:prefix={keys}/\n"
            "username_attribute = email\n"
        )

    def _config(self) -> str:
        text = super()._config()
        text = text.replace(
            "ssl = no\n", f"ssl = yes\nssl_cert = <{self.cert.cert_file}\nssl_key = <{self.cert.key_file}\n"
        )
        text = text.replace(
            "  inet_listener imaps {\n    port = 0\n",
            f"  inet_listener imaps {{\n    address = {HOST}\n    port = {self.imaps_port}\n",
        )
        if self.oauth_key is not None:
            text = text.replace("auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2 oauthbearer")
            text = text.replace("  driver = passwd-file\n", "  driver = passwd-file\n  mechanisms = plain login\n")
            text += f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.base}/oauth2.conf.ext
}}
"""
        if self.relay_port:
            text = text.replace("protocols = imap\n", "protocols = imap submission\n")
            text += f"""hostname = mail.test
submission_relay_host = {HOST}
submission_relay_port = {self.relay_port}
submission_relay_trusted = yes
service submission-login {{
{"" if self._root else "  chroot =" + chr(10)}  inet_listener submission {{
    address = {HOST}
    port = {self.submission_port}
  }}
}}
"""
        return text
