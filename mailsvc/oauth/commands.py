"""`mailsvc oauth login` and `mailsvc oauth status`: the command bodies (cli.py only registers them)."""

from __future__ import annotations

import argparse
import sys
import time

from mailsvc.config import load_config
from mailsvc.errors import CredentialError, OAuthError
from mailsvc.oauth.login import describe, login, login_targets
from mailsvc.oauth.tokens import TokenFile


class _Terminal:
    """On a terminal the countdown rewrites its own line; elsewhere (a log, a pipe) each is a line."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.counting = False

    def out(self, line: str) -> None:
        countdown = line.startswith("waiting for")
        # The state changes before the line is written: a Ctrl-C just after the write still ends that line.
        was_counting, self.counting = self.counting, self.tty and countdown
        if self.tty and countdown:
            print(f"\r{line}\x1b[K", end="", flush=True)
        else:
            print(("\n" if was_counting else "") + line, flush=True)


def cmd_oauth_login(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    targets = login_targets(config, args.account)
    if not targets:
        print(f"{args.config}: no account uses auth: oauth2", file=sys.stderr)
        return 1
    failed = 0
    for target in targets:
        print(f"== {', '.join(target.accounts)}: {target.server.user} ({target.oauth2.provider}, {target.oauth2.flow})")
        terminal = _Terminal()
        try:
            try:
                login(target, terminal.out)
            finally:
                if terminal.counting:
                    print()  # end the countdown's line
        except KeyboardInterrupt:
            print("cancelled: nothing stored", file=sys.stderr)
            return 1
        except OAuthError as exc:
            print(f"sign-in failed: {exc}\n  what to do: {exc.hint}", file=sys.stderr)
            failed += 1
        except CredentialError as exc:
            print(f"sign-in failed: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_oauth_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    targets = login_targets(config)
    if not targets:
        print(f"{args.config}: no account uses auth: oauth2")
        return 0
    now = time.time()
    unhealthy = 0
    for target in targets:
        print(f"{', '.join(target.accounts)}: {target.server.user} ({target.oauth2.provider}, {target.oauth2.flow})")
        print(f"  token file: {target.path}")
        try:
            tokens = TokenFile(target.path).load()
        except CredentialError as exc:
            print(f"  {exc}")
            unhealthy += 1
            continue
        for line in describe(tokens, now):
            print(f"  {line}")
        flow_needs_refresh = target.oauth2.flow != "client_credentials"
        if tokens is None or tokens.last_error or (flow_needs_refresh and not tokens.refresh_token):
            unhealthy += 1
    return 1 if unhealthy else 0
