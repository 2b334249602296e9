"""OAuth2 for the mail accounts: provider presets, the token file, the grants, and the refresh policy.

The credential provider (mailsvc.credentials) asks `TokenKeeper.access_token()` at each IMAP or SMTP login;
`mailsvc oauth login` runs a flow once on a terminal to fill the token file.
"""
