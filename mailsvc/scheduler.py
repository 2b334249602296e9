"""The scheduler shell: fires due timers and tells the team of mail that failed for good.

Each case's due timers are handled in one transaction that also marks them
ended, so a timer acts once even across crashes; time comes from the
pipeline's clock, so tests move it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsvc.decide import decide_send_failure
from mailsvc.ingest import Pipeline
from mailsvc.log import get_logger
from mailsvc.model import Action, Decision, EndTimer, Timer, TimerState
from mailsvc.parse import parse_message
from mailsvc.store import Applied
from mailsvc.timers import fire_timers


@dataclass
class TickResult:
    timers: int = 0  # timers ended (fired or skipped)
    mails: int = 0  # mails queued
    notices: int = 0  # send failures told to the team


class Scheduler:
    """Runs in its own thread with its own Store (through `pipeline`)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store
        self.log = get_logger(component="scheduler")

    def tick(self) -> TickResult:
        """Everything due now: timers, then failure notices."""
        result = TickResult()
        while True:
            now = self.pipeline.clock()
            due = self.store.due_timers(now)
            if not due:
                break
            for case_id, timers in due.items():
                try:
                    with self.store.transaction():
                        applied = self._fire(case_id, timers)
                except Exception as exc:  # a bug or a broken template must not stop every other case's timers
                    self._give_up(case_id, timers, f"{type(exc).__name__}: {exc}")
                    continue
                result.timers += len(timers)
                result.mails += len(applied.outbox_ids)
        for row in self.store.unnoticed_failures():
            try:
                with self.store.transaction():
                    outbox_ids = self._notice(
                        row["id"], row["case_id"], row["purpose"], row["rcpt_to"], row["last_error"]
                    )
            except Exception as exc:
                self.log.exception(
                    "send_failure_notice_failed", outbox_id=row["id"], error=f"{type(exc).__name__}: {exc}"
                )
                with self.store.transaction():
                    self.store.mark_failure_noticed(row["id"])
                continue
            result.mails += len(outbox_ids)
            result.notices += 1
        return result

    def _give_up(self, case_id: int, timers: list[Timer], error: str) -> None:
        """Skip timers that could not be carried out, so they are not tried again and again; logged as errors."""
        self.log.exception("timer_failed", case_id=case_id, timers=[t.kind.value for t in timers], error=error)
        skipped = tuple(EndTimer(t, TimerState.SKIPPED, f"error: {error}"[:200]) for t in timers)
        with self.store.transaction():
            self.store.apply_timers(
                Decision(case_id, "", skipped), parse_message(b"", self.pipeline.limits), self.pipeline.compose,
                self.pipeline.clock(),
            )  # fmt: skip

    def _fire(self, case_id: int, timers: list[Timer]) -> Applied:
        p = self.pipeline
        now = p.clock()
        case = self.store.case_by_id(case_id)
        raw = self.store.case_request(case_id)
        if case is None or case.id != case_id or raw is None:
            # Merged away (its timers were cancelled then) or never filed: nothing to act on.
            actions: tuple[Action, ...] = tuple(EndTimer(t, TimerState.SKIPPED, "case merged") for t in timers)
            decision = Decision(case_id, case.queue if case else "", actions)
            request = parse_message(b"", p.limits)
        else:
            staff = p.queues[case.queue].staff
            actions = fire_timers(case, timers, p.timer_policies[case.queue], staff, now)
            decision = Decision(case_id, case.queue, p.guard(actions, now))
            request = parse_message(raw, p.limits)
        applied = self.store.apply_timers(decision, request, p.compose, now)
        log = self.log.bind(case_id=case_id)
        for event, fields in applied.events:
            log.info(event, **{k: v for k, v in fields.items() if k != "case_id"})
        return applied

    def _notice(self, outbox_id: int, case_id: int | None, purpose: str, rcpt_to: str, error: str) -> tuple[int, ...]:
        p = self.pipeline
        now = p.clock()
        self.store.mark_failure_noticed(outbox_id)
        case = self.store.case_by_id(case_id) if case_id is not None else None
        raw = self.store.case_request(case.id) if case else None
        if case is None or raw is None:
            self.log.warning("send_failure_without_case", outbox_id=outbox_id, purpose=purpose)
            return ()
        rcpt = rcpt_to.replace("\n", ", ")
        actions = decide_send_failure(case, p.queues[case.queue], purpose, rcpt, error)
        applied = self.store.apply_timers(
            Decision(case.id, case.queue, actions), parse_message(raw, p.limits), p.compose, now
        )
        log = self.log.bind(case_id=case.id)
        for event, fields in applied.events:
            log.info(event, failed_purpose=purpose, **{k: v for k, v in fields.items() if k != "case_id"})
        return applied.outbox_ids
