"""The default mail templates, installed as package data of `mailsvc.templates`; copy one to override it."""
