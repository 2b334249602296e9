from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from mailsvc.errors import TemplateError
from mailsvc.model import Address, Attachment, QueueMail
from mailsvc.render import (
    QueueView,
    ThreadIds,
    compose,
    header_address,
    header_text,
    recipient_groups,
    reply_subject,
)
from mailsvc.strip import MARKER
from mailsvc.templatefiles import load_templates
from tests.unit.factories import T0, case, message

VIEW = QueueView("help", "help@example.org", "Example Help", "[Help #{id}]", "end")


def render(msg=None, templates=None, action=None, **kw):  # type: ignore[no-untyped-def]
    msg = msg or message(references=("<root@example.net>",))
    args = {"templates": templates or load_templates([]), "queue": VIEW, "message_id": "<ack-1@example.org>", "now": T0}
    args.update(kw)
    action = action or QueueMail("ack", "ack", (msg.from_,))
    the_case = args.pop("case", None) or case()
    out = compose(action, the_case, msg, **args)
    return out, message_from_bytes(out.raw, policy=default)


def test_ack_headers_thread_and_mark_it_automatic() -> None:
    out, mail = render()
    assert out.message_id == mail["Message-ID"] == "<ack-1@example.org>"
    assert out.rcpt_to == ("alice@example.net",)
    assert mail["From"] == "Example Help <help@example.org>"
    assert mail["To"] == "Alice Example <alice@example.net>"
    assert mail["Subject"] == "Re: Printer on floor 3 is jammed [Help #42]"
    assert mail["In-Reply-To"] == "<m1@example.net>"
    assert mail["References"] == "<root@example.net> <m1@example.net>"
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail["X-Loop"] == "help@example.org"


def test_ack_has_text_and_html_alternatives_naming_the_case() -> None:
    _, mail = render()
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "[Help #42]" in text and "Alice Example" in text
    assert "[Help #42]" in html


@pytest.mark.parametrize(
    ("subject", "position", "expected"),
    [
        ("Printer", "end", "Re: Printer [Help #42]"),
        ("Re: Printer", "end", "Re: Printer [Help #42]"),
        ("AW: Printer [Help #42]", "end", "AW: Printer [Help #42]"),
        ("", "end", "Re: [Help #42]"),
        ("Printer", "start", "Re: [Help #42] Printer"),
        ("Printer\r\nBcc: victim@example.net", "end", "Re: Printer Bcc: victim@example.net [Help #42]"),
    ],
)
def test_reply_subject(subject: str, position: str, expected: str) -> None:
    assert reply_subject(subject, "[Help #42]", position) == expected


def test_crlf_in_subject_and_name_cannot_add_headers() -> None:
    evil = message(
        subject="Hi\r\nBcc: victim@example.net",
        from_=Address("alice@example.net", "Alice\r\nBcc: victim@example.net"),
    )
    out, mail = render(msg=evil)
    assert mail["Bcc"] is None
    assert b"\r\nBcc:" not in out.raw


def test_requester_text_is_never_evaluated_as_template(tmp_path: Path) -> None:
    (tmp_path / "ack.txt.j2").write_text("Subject was: {{ message.subject }} / {{ message.text }}\n")
    msg = message(subject="{{ 7 * 7 }}", text="{% for x in range(3) %}boom{% endfor %}")
    _, mail = render(msg=msg, templates=load_templates([tmp_path]), case=case(subject=msg.subject))
    body = mail.get_body(("plain",)).get_content()
    assert body.replace("\r\n", "\n") == "Subject was: {{ 7 * 7 }} / {% for x in range(3) %}boom{% endfor %}\n"
    assert mail["Subject"] == "Re: {{ 7 * 7 }} [Help #42]"
    # Nowhere evaluated: no part says 49 (the raw bytes may, by chance, in a random MIME boundary).
    parts = [part.get_content() for part in mail.walk() if part.get_content_maintype() == "text"]
    assert len(parts) == 2 and not any("49" in part for part in parts)


def test_queue_templates_override_defaults(tmp_path: Path) -> None:
    (tmp_path / "ack.txt.j2").write_text("Custom ack for {{ case.tag }}\n")
    _, mail = render(templates=load_templates([tmp_path]))
    assert mail.get_body(("plain",)).get_content().strip() == "Custom ack for [Help #42]"


def test_unknown_variable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ack.txt.j2").write_text("Hello {{ requester.nmae }}\n")
    with pytest.raises(TemplateError, match=r"ack\.txt\.j2"):
        render(templates=load_templates([tmp_path]))


def test_html_template_escapes_requester_text(tmp_path: Path) -> None:
    (tmp_path / "ack.txt.j2").write_text("{{ message.text }}\n")
    (tmp_path / "ack.html.j2").write_text("<p>{{ message.text }}</p>\n")
    _, mail = render(msg=message(text="<script>alert(1)</script>"), templates=load_templates([tmp_path]))
    html = mail.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_header_text_removes_control_characters() -> None:
    assert header_text("a\x00b\r\nc\td") == "a b c d"


def test_staff_notification_has_token_reply_to_marker_status_and_attachments() -> None:
    pdf = Attachment("error log.pdf", "application/pdf", 4, b"%PDF")
    msg = message(text="It jams again.", attachments=(pdf,))
    action = QueueMail("notify", "notify", (Address("bob@example.org", "Bob"),), text="It jams again.", attach=True)
    out, mail = render(msg=msg, action=action, reply_to="help+c42-0123456789abcdef@example.org")
    assert mail["Reply-To"] == "help+c42-0123456789abcdef@example.org"
    assert mail["Subject"] == "[Help #42] (open) Printer on floor 3 is jammed"
    assert mail["From"] == "Alice Example via Example Help <help@example.org>"
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(("plain",)).get_content()
    assert text.startswith(MARKER) and "It jams again." in text
    (part,) = list(mail.iter_attachments())
    assert part.get_filename() == "error log.pdf" and part.get_content() == b"%PDF"
    assert out.rcpt_to == ("bob@example.org",)


def test_relay_goes_from_the_help_address_with_only_the_given_text() -> None:
    action = QueueMail("relay", "relay", (Address("alice@example.net"),), text="Turn it off and on.")
    _, mail = render(
        msg=message(from_=Address("bob@example.org", "Bob Staff"), subject="Re: [Help #42] x"), action=action
    )
    assert mail["From"] == "Example Help <help@example.org>" and mail["Reply-To"] is None
    assert "bob@example.org" not in mail.as_string()
    body = mail.get_body(("plain",)).get_content()
    assert body.startswith("Turn it off and on.") and "Bob Staff" in body


def test_mail_to_the_requester_takes_the_case_subject_and_the_given_thread_only() -> None:
    staff = message(
        from_=Address("bob@example.org", "Bob Staff"),
        subject="Re: [Help #42] (open) Printer on floor 3 is jammed [Help #7]",
        message_id="<staff-reply@example.org>",
        references=("<notify-1@example.org>",),
    )
    action = QueueMail("relay", "relay", (Address("alice@example.net"),), text="Fixed.")
    thread = ThreadIds("<m1@example.net>", ("<m1@example.net>", "<ack-1@example.org>"))
    out, mail = render(msg=staff, action=action, thread=thread)
    assert mail["Subject"] == "Re: Printer on floor 3 is jammed [Help #42]"
    assert mail["In-Reply-To"] == "<m1@example.net>"
    assert mail["References"] == "<m1@example.net> <ack-1@example.org>"
    assert b"staff-reply" not in out.raw and b"notify-1" not in out.raw


def test_a_case_subject_with_old_tags_keeps_only_its_own() -> None:
    _, mail = render(case=case(subject="Docking station [Help #15] no video [help # 16]"))
    assert mail["Subject"] == "Re: Docking station no video [Help #42]"


@pytest.mark.parametrize(
    ("content_type", "sent_as"),
    [
        ("message/delivery-status", "application/octet-stream"),
        ("message/rfc822", "application/octet-stream"),
        ("multipart/mixed", "application/octet-stream"),
        ("text/csv", "text/csv"),
        ("image/png", "image/png"),
        ("weird", "application/octet-stream"),
    ],
)
def test_attachments_of_any_type_are_sent_byte_exact(content_type: str, sent_as: str) -> None:
    data = b"Reporting-MTA: dns; mx.example.net\r\n\r\nStatus: 5.1.1\r\n\xff\x00 end"
    msg = message(attachments=(Attachment("report", content_type, len(data), data),))
    action = QueueMail("notify", "notify", (Address("bob@example.org"),), text="See attached.", attach=True)
    _, mail = render(msg=msg, action=action)
    (part,) = list(mail.iter_attachments())
    assert part.get_content_type() == sent_as and part.get_payload(decode=True) == data


def test_internationalised_recipients_get_copies_apart_and_header_forms() -> None:
    alice, zoe, info = (
        Address("alice@example.net"),
        Address("zoë@bücher.example", "Zoë"),
        Address("info@bücher.example"),
    )
    assert recipient_groups((alice, zoe, info)) == ((alice, info), (zoe,))
    assert recipient_groups((alice,)) == ((alice,),)
    assert header_address(info) == "info@xn--bcher-kva.example"
    assert header_address(zoe) == '"Zoë" <zoë@bücher.example>'
    out, _ = render(action=QueueMail("relay", "relay", (zoe,), text="Hi"))
    assert 'To: "Zoë" <zoë@bücher.example>'.encode() in out.raw


def test_message_ids_are_written_byte_exact() -> None:
    msg = message(message_id="<jörg-1@exämple.net>", references=("<=?utf-8?q?x?=@e>",))
    out, _ = render(msg=msg)
    assert (
        "In-Reply-To: <jörg-1@exämple.net>\r\nReferences: <=?utf-8?q?x?=@e>\r\n <jörg-1@exämple.net>\r\n".encode()
        in out.raw
    )


def test_staff_mail_carries_one_tag_too() -> None:
    action = QueueMail("notify", "notify", (Address("bob@example.org"),), text="x")
    _, mail = render(action=action, case=case(subject="Docking station [Help #15]"))
    assert mail["Subject"] == "[Help #42] (open) Docking station"


def test_templates_are_read_once_and_an_edit_on_disk_waits_for_a_reload(tmp_path: Path) -> None:
    (tmp_path / "ack.txt.j2").write_text("Version one for {{ case.id }}\n")
    templates = load_templates([tmp_path])
    (tmp_path / "ack.txt.j2").write_text("Version two {{ case.id }\n")  # edited, and broken
    (tmp_path / "reminder.txt.j2").write_text("A new reminder\n")  # shadows the default from now on
    assert templates.render("ack.txt.j2", {"case": {"id": 7}}) == "Version one for 7\n"
    assert "A new reminder" not in templates.render("reminder.txt.j2", dict(REMINDER))
    reloaded = load_templates([tmp_path])
    assert reloaded.render("reminder.txt.j2", {}) == "A new reminder\n"
    with pytest.raises(TemplateError):
        reloaded.render("ack.txt.j2", {"case": {"id": 7}})
    # Compiled templates are shared in the process, by source: an edit is compiled anew, however often.
    (tmp_path / "ack.txt.j2").write_text("Version three for {{ case.id }}\n")
    assert load_templates([tmp_path]).render("ack.txt.j2", {"case": {"id": 7}}) == "Version three for 7\n"
    (tmp_path / "ack.txt.j2").write_text("Version one for {{ case.id }}\n")
    assert load_templates([tmp_path]).render("ack.txt.j2", {"case": {"id": 8}}) == "Version one for 8\n"


REMINDER = {
    "requester": {"name": "Alice", "address": "alice@example.net"},
    "case": {"tag": "[Help #7]", "subject": "Printer"},
    "queue": {"display_name": "Help"},
}
