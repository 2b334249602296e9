"""The demo behind scripts/demo: mailsvc run against a private Dovecot and SMTP capture on 127.0.0.1.

It mails in a sample request, waits for the acknowledgement, and shows the
case and the mail the requester got. Everything lives under ./demo/.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mailsvc.testing.dovecot import PrivateDovecot
from mailsvc.testing.sandbox import HELP_ADDRESS, mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture


def _mailsvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailsvc", *args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return "\n".join(line for line in text.splitlines() if line.startswith("mailsvc_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="where the demo keeps its files")
    parser.add_argument("--keep", action="store_true", help="keep the daemon and servers running until Ctrl-C")
    args = parser.parse_args(argv)
    base = args.dir.resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)

    metrics_port = _free_port()
    with PrivateDovecot(base / "dovecot") as dovecot, SmtpCapture() as smtp:
        mailbox = dovecot.new_mailbox("help")
        config = write_config(
            base / "mailsvc.yaml",
            sandbox_config(
                imap_port=dovecot.port, imap_user=mailbox.user, imap_password=mailbox.password,
                smtp_port=smtp.port, store=base / "mailsvc.db", log={"format": "console", "level": "info"},
                metrics={"listen": f"127.0.0.1:{metrics_port}"},
            ),
        )  # fmt: skip
        print(f"== private Dovecot on 127.0.0.1:{dovecot.port}, SMTP capture on 127.0.0.1:{smtp.port}")
        print(f"== config {config}\n== starting: mailsvc run -c {config}\n")
        daemon = subprocess.Popen(_mailsvc("run", "-c", str(config)))
        try:
            time.sleep(1.0)
            mailbox.append(mail())
            sent_at = time.time()
            print(f"\n== mailed a sample request from alice@example.net to {HELP_ADDRESS}\n")
            (ack,) = smtp.wait_for(1, timeout=30)
            print(f"\n== acknowledgement arrived {ack.received_at - sent_at:.3f} s after the request was delivered\n")
            time.sleep(0.3)
            subprocess.run(_mailsvc("cases", "show", "1", "-c", str(config)), check=True)
            message = ack.message
            print("\n== the acknowledgement, as the requester got it:\n")
            for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "Auto-Submitted"):
                print(f"{name}: {message[name]}")
            body = message.get_body(("plain",))
            print("\n" + (body.get_content() if body is not None else ""))
            print(f"== the request was moved to the Processed folder: {len(mailbox.uids('Processed'))} message(s)")
            print(f"\n== the daemon's metrics (http://127.0.0.1:{metrics_port}/metrics), mailsvc_ samples:\n")
            print(_metrics(metrics_port))
            if args.keep:
                print(
                    f"\n== still running. Point a mail client at 127.0.0.1:{dovecot.port} "
                    f"(user {mailbox.user}, password {mailbox.password}) and mail to the INBOX;\n"
                    f"   mailsvc cases list -c {config}\n   Ctrl-C stops everything."
                )
                daemon.wait()
        except KeyboardInterrupt:
            pass
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=30)
            print(f"\n== mailsvc stopped (exit code {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
