"""The scheduler shell: fires due timers and tells the team of mail that failed for good.

Each case's due timers are handled in one transaction that also marks them
ended, so a timer acts once even across crashes; time comes from the
pipeline's clock, so tests move it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsvc import crashpoint, metrics
from mailsvc.decide import decide_send_failure
from mailsvc.digest_job import DigestJob
from mailsvc.errors import StoreConflict
from mailsvc.log import get_logger
from mailsvc.model import Action, Decision, EndTimer, Timer, TimerState
from mailsvc.parse import parse_message
from mailsvc.pipeline import Pipeline, log_applied
from mailsvc.retention import RetentionJob
from mailsvc.store import STORE_ERRORS, Applied
from mailsvc.store.contract import FailedOutgoing
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
        self.digest = DigestJob(pipeline.config, pipeline.store, pipeline.clock)
        self.retention = RetentionJob(pipeline.config, pipeline.store, pipeline.clock)

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
                        crashpoint.reached("timer_fired")
                except STORE_ERRORS:
                    raise  # the store's state, not the timer's: the caller backs off and tries again
                except StoreConflict:
                    # Ended meanwhile by new mail on the case or by another instance: nothing left to do.
                    self.log.info("timers_handled_elsewhere", case_id=case_id, timers=[t.kind.value for t in timers])
                    continue
                except Exception as exc:  # a bug or a broken template must not stop every other case's timers
                    self._give_up(case_id, timers, f"{type(exc).__name__}: {exc}")
                    continue
                result.timers += len(timers)
                result.mails += len(applied.outbox_ids)
        for failed in self.store.unnoticed_failures():
            try:
                with self.store.transaction():
                    outbox_ids = self._notice(failed)
            except STORE_ERRORS:
                raise
            except Exception as exc:
                self.log.exception(
                    "send_failure_notice_failed", outbox_id=failed.id, error=f"{type(exc).__name__}: {exc}"
                )
                with self.store.transaction():
                    self.store.mark_failure_noticed(failed.id)
                continue
            if outbox_ids is None:
                continue  # no case to tell it on: logged, told to nobody
            result.mails += len(outbox_ids)
            result.notices += 1
        self.pipeline.build_pending()
        result.mails += self.digest.send_due()
        self.retention.run_due()
        return result

    def _give_up(self, case_id: int, timers: list[Timer], error: str) -> None:
        """Skip timers that could not be carried out, so they are not tried again and again; logged as errors."""
        self.log.exception("timer_failed", case_id=case_id, timers=[t.kind.value for t in timers], error=error)
        with self.store.transaction():
            self._skip(case_id, timers, f"error: {error}"[:200])

    def _skip(self, case_id: int, timers: list[Timer], reason: str) -> Applied:
        return self._apply(case_id, "", tuple(EndTimer(t, TimerState.SKIPPED, reason) for t in timers), None)

    def _fire(self, case_id: int, timers: list[Timer]) -> Applied:
        p = self.pipeline
        case = self.store.case_by_id(case_id)
        raw = self.store.case_request(case_id)
        if case is None or case.id != case_id or raw is None:
            # Merged away (its timers were cancelled then) or never filed: nothing to act on.
            return self._skip(case_id, timers, "case merged")
        now = p.clock()
        actions = fire_timers(case, timers, p.timer_policies[case.queue], p.queues[case.queue].staff, now)
        return self._apply(case_id, case.queue, p.guard(actions, now, case_id), raw)

    def _notice(self, failed: FailedOutgoing) -> tuple[int, ...] | None:
        """Tell the failure on its case: the outbox ids queued, or None when there is no case to tell it on."""
        p = self.pipeline
        self.store.mark_failure_noticed(failed.id)
        case = self.store.case_by_id(failed.case_id) if failed.case_id is not None else None
        raw = self.store.case_request(case.id) if case else None
        if case is None or raw is None:
            self.log.warning("send_failure_without_case", outbox_id=failed.id, purpose=failed.purpose)
            return None
        rcpt = ", ".join(failed.rcpt_to)
        actions = decide_send_failure(case, p.queues[case.queue], failed.purpose, rcpt, failed.last_error)
        return self._apply(case.id, case.queue, actions, raw, failed_purpose=failed.purpose).outbox_ids

    def _apply(
        self, case_id: int, queue: str, actions: tuple[Action, ...], raw: bytes | None, **fields: object
    ) -> Applied:
        """Perform actions on a case and log them; mail follows `raw`, the request that opened the case."""
        p = self.pipeline
        request = parse_message(raw or b"", p.limits)
        applied = self.store.apply_timers(Decision(case_id, queue, actions), request, p.compose, p.clock())
        if applied.outbox_ids:
            p.builder.known(request, request_of=case_id)  # the mail it queued follows the request: parsed once
        log_applied(self.log.bind(case_id=case_id, **fields), applied)
        metrics.count_applied(applied)
        return applied
