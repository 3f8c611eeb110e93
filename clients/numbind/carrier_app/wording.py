"""The sentences of the "my numbers" page, built from its cards: the same function words a
row on the server-rendered page and in the JSON that static/app.js polls, so a reload and a
live update never say different things."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from numbind.carrier_app.i18n import Translator
from numbind.carrier_app.views import OPEN_STATES, AppRow, Group, NumberCard

__all__ = ["Words", "card_json"]


@dataclass(frozen=True)
class Words:
    """What the page says, in one language, for one carrier."""

    t: Translator
    carrier: str
    # The carrier's complaint line, when it has one.
    support_phone: str = ""

    # -- one app -------------------------------------------------------------------------
    def meta(self, row: AppRow) -> list[str]:
        """Accounts and when they were bound; once unbound, how many were."""
        t = self.t
        if not row.accounts:
            return [t.count("me.unbound_accounts", row.unbound)] if row.unbound else []
        out = [t.accounts(row.accounts)]
        if row.earliest and row.latest and t.date(row.earliest) != t.date(row.latest):
            out.append(t("me.bound_range", start=t.date(row.earliest), end=t.date(row.latest)))
        elif row.earliest:
            out.append(t("me.bound_on", date=t.date(row.earliest)))
        return out

    def details(self, row: AppRow) -> list[str]:
        """What the state means for the holder, and for a refusal or an overdue app what
        they can do next, quoting a reference the app can look up."""
        t = self.t
        contact = t("row.contact", phone=self.support_phone) if self.support_phone else ""
        ref = row.reference or "—"
        if row.state == "REJECTED":
            return [
                t("row.reason", reason=row.reason),
                t("row.next_refused", app=row.name, ref=ref, carrier=self.carrier, contact=contact),
            ]
        if row.state == "OVERDUE":
            return [
                t("row.overdue"),
                t("row.next_overdue", carrier=self.carrier, contact=contact, ref=ref),
            ]
        if row.state in OPEN_STATES and row.deadline is not None:
            return [t("row.deadline", time=t.date_time(row.deadline))]
        return []

    # -- one group -----------------------------------------------------------------------
    def lead(self, group: Group) -> tuple[str, str]:
        """(sentence, tone) on the state of the group's asked apps; tone is live, ok, warn
        or bad: never ok unless everything asked was unbound."""
        t = self.t
        states = [r.state for r in group.asked]
        if not states:
            return (t("lead.bound"), "") if group.kind == "previous" and group.rows else ("", "")
        parts = t.parts(states)
        done = states.count("DONE")
        if any(s in OPEN_STATES for s in states):
            return t("lead.live", parts=parts), "live"
        if done == len(states):
            return t("lead.all_done", parts=parts), "ok"
        if done == 0:
            return t("lead.none_done", parts=parts), "bad"
        return t("lead.result", parts=parts), "warn"

    def also_bound(self, group: Group) -> str:
        """Apps still bound that nobody asked, beside a lead about those that were."""
        n = len(group.to_ask)
        return self.t.count("lead.also_bound", n) if n and group.asked else ""

    def retry_label(self, group: Group) -> str:
        return self.t("me.retry", names=self.t.names([r.name for r in group.overdue]))

    # -- confirmations -------------------------------------------------------------------
    def confirm_previous(self, card: NumberCard, rows: list[AppRow]) -> str:
        return self.t.count(
            "confirm.previous",
            len(rows),
            phone=card.masked,
            names=self.t.names([r.name for r in rows]),
            promise=self.t.promise(card.order_deadline),
        )

    def confirm_retry(self, card: NumberCard, rows: list[AppRow]) -> str:
        return self.t(
            "confirm.retry",
            phone=card.masked,
            names=self.t.names([r.name for r in rows]),
            promise=self.t.promise(card.order_deadline),
        )

    def confirm_platform(self, card: NumberCard, row: AppRow) -> str:
        return self.t(
            "confirm.platform",
            name=row.name,
            phone=card.masked,
            promise=self.t.promise(card.order_deadline),
        )

    # -- the card ------------------------------------------------------------------------
    def banner(self, card: NumberCard) -> str:
        """While apps are being asked: how many, and how long it may take."""
        if not card.live:
            return ""
        return self.t.count("me.banner", card.asking, promise=self.t.promise(card.order_deadline))

    def still_bound(self, group: Group) -> str:
        return self.t.count("me.still_bound", group.still_bound)

    def registry(self, row: AppRow) -> str:
        """Where the app is registered, in a federation of several registries."""
        return self.t("me.registry", name=row.registry) if row.registry else ""

    def unreachable(self, card: NumberCard) -> str:
        """Registries the query could not reach: say plainly the lists may be missing
        their apps (never pretend the list is complete)."""
        if not card.unreachable:
            return ""
        names = self.t.names([u.label for u in card.unreachable])
        return self.t("me.unreachable", names=names)


def card_json(words: Words, card: NumberCard) -> dict[str, Any]:
    """The live part of a card, for static/app.js: every asked app's state and sentences,
    each group's lead and (once nothing is open) retry; ``live`` false hides the banner.
    The card needs no registry query, only the progress of its revocations."""
    t = words.t
    groups: dict[str, Any] = {}
    for group in (card.previous, card.mine):
        lead, tone = words.lead(group)
        retry = None
        if group.kind == "previous" and group.overdue and not group.live:
            rows = group.overdue
            retry = {
                "platforms": ",".join(r.platform_id for r in rows),
                "label": words.retry_label(group),
                "confirm": words.confirm_retry(card, rows),
            }
        groups[group.kind] = {
            "lead": lead,
            "tone": tone,
            "requested": t("lead.requested", time=t.date_time(group.requested))
            if group.requested
            else "",
            "retry": retry,
            "apps": [
                {
                    "id": r.platform_id,
                    "state": r.state,
                    "label": t.state(r.state),
                    # Accounts and dates come with the page; once unbound, how many were.
                    "meta": words.meta(r) if r.state == "DONE" else None,
                    "details": words.details(r),
                }
                for r in group.rows
                if r.state
            ],
        }
    return {"number": card.id, "live": card.live, "groups": groups}
