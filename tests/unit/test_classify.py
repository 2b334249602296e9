import pytest

from mailsvc.classify import ClassifyContext, classify
from mailsvc.model import Address, MessageKind
from tests.unit.factories import message

CTX = ClassifyContext(own_addresses=frozenset({"help@example.org"}))


def test_person_is_a_request() -> None:
    found = classify(message(), CTX)
    assert found.kind is MessageKind.REQUEST


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"headers": {"Auto-Submitted": ["auto-replied"]}}, MessageKind.AUTO_REPLY),
        ({"headers": {"Auto-Submitted": ["auto-generated; type=vacation"]}}, MessageKind.AUTO_REPLY),
        ({"headers": {"Precedence": ["bulk"]}}, MessageKind.AUTO_REPLY),
        ({"headers": {"Precedence": ["Junk"]}}, MessageKind.AUTO_REPLY),
        ({"headers": {"List-Id": ["<news.example.net>"]}}, MessageKind.AUTO_REPLY),
        ({"headers": {"X-Autoreply": ["yes"]}}, MessageKind.AUTO_REPLY),
        ({"headers": {"X-Auto-Response-Suppress": ["All"]}}, MessageKind.AUTO_REPLY),
        ({"return_path": ""}, MessageKind.AUTO_REPLY),
        ({"from_": Address("no-reply@shop.example")}, MessageKind.AUTO_REPLY),
        ({"from_": Address("MAILER-DAEMON@mx.example.net")}, MessageKind.BOUNCE),
        (
            {"headers": {"Content-Type": ['multipart/report; report-type="delivery-status"; boundary=x']}},
            MessageKind.BOUNCE,
        ),
        ({"from_": Address("Help@Example.org")}, MessageKind.LOOP),
        ({"headers": {"X-Loop": ["help@example.org"]}}, MessageKind.LOOP),
    ],
)
def test_automatic_mail_is_recognised(fields: dict[str, object], kind: MessageKind) -> None:
    found = classify(message(**fields), CTX)
    assert found.kind is kind, found.reason


def test_auto_submitted_no_is_a_person() -> None:
    assert classify(message(headers={"Auto-Submitted": ["no"]}), CTX).kind is MessageKind.REQUEST


def test_reply_in_the_local_part_is_not_noreply() -> None:
    assert classify(message(from_=Address("replyguy@example.net")), CTX).kind is MessageKind.REQUEST
