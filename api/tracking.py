"""How one registered send is tracked (issue 19), and the URLs that follow from it. Pure.

`decide` turns the account's consent mode, the recipient's consent state and do-not-track into the send's
`schemas.consent.Tracking` and the reason it is not individual (`tracking_reason`):

- ``do_not_track``: the recipient is on do-not-track (or was erased): nothing, not even the aggregate pixel.
- ``consent_refused``: they refused (honoured in every mode: `schemas.consent.effective_mode`).
- ``consent_not_granted``: the account asks for consent (``opt_in``) and they have not granted it.

None when tracked individually. Where individual tracking is not allowed, the send gets the aggregate pixel
when the account wants it (`aggregate_pixel_url`: a `TokenKind.AGGREGATE_OPEN` token naming the account and
campaign only), and its links stay as they are.

Every URL is made under the send's base URL: the message's own ``tracking_base_url``, else the account's,
else the process's public URL (a branded domain, `api.account_settings.check_base_url`).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.consent import ConsentMode, ConsentState, Tracking, tracking_of
from schemas.tokens import Claim, Keyring, TokenKind, sign

AGGREGATE_SENT_AT_STEP_S = 3600  # the aggregate token's time, to the hour: shared by a campaign's sends


@dataclass(frozen=True, slots=True)
class TrackingDecision:
    tracking: Tracking
    reason: str | None  # why not individual; None when individual

    @property
    def individual(self) -> bool:
        return self.tracking is Tracking.INDIVIDUAL


def decide(
    mode: ConsentMode, state: ConsentState, *, do_not_track: bool, aggregate_wanted: bool
) -> TrackingDecision:
    """A send's tracking under the account's ``mode`` for a recipient in ``state``, and why."""
    tracking = tracking_of(mode, state, do_not_track=do_not_track, aggregate_wanted=aggregate_wanted)
    if tracking is Tracking.INDIVIDUAL:
        return TrackingDecision(tracking, None)
    if do_not_track:
        return TrackingDecision(tracking, "do_not_track")
    if state is ConsentState.REFUSED:
        return TrackingDecision(tracking, "consent_refused")
    return TrackingDecision(tracking, "consent_not_granted")


def aggregate_pixel_url(keyring: Keyring, base_url: str, account: str, campaign_id: str, sent_at: int) -> str:
    """The campaign's aggregate pixel: a token of the account and campaign only (no message, a zero
    recipient tag), its time cut to the hour, so every send of the campaign in that hour carries the same
    URL and none tells one recipient from another."""
    hour = sent_at - sent_at % AGGREGATE_SENT_AT_STEP_S
    token = sign(Claim(TokenKind.AGGREGATE_OPEN, account, campaign_id, "", hour), keyring)
    return f"{base_url}/o/{token}.gif"
