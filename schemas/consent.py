"""Consent to tracking (issue 19): an account's mode, a recipient's state, and what they allow. Pure.

France's CNIL (and other EU authorities after it) asks for a recipient's prior consent before measuring their
own opens; a campaign's aggregate open rate needs none. So each account chooses a `ConsentMode`:

- ``off``: today's behaviour: every recipient not on do-not-track is tracked individually.
- ``opt_out``: tracked individually unless they refused (`ConsentState.REFUSED`).
- ``opt_in``: tracked individually only once they granted it (`ConsentState.GRANTED`).

Each recipient of an account has a `ConsentState` (``unknown`` until they or the sender say otherwise), with
its history (`CONSENT_COLUMNS`: when, how, the source, the evidence), kept as proof, exportable, and erased
with the recipient. Do-not-track keeps its meaning in every mode: nothing about the recipient is recorded.

`tracking_of` decides a send's `Tracking`: ``individual`` (a pixel and click links that name the message),
``aggregate`` (where individual tracking is not allowed and the sender asked for it: a campaign pixel that
names nobody, `schemas.tokens.TokenKind.AGGREGATE_OPEN`; links untouched) or ``none``.
"""

from __future__ import annotations

import enum
from typing import Final


class ConsentMode(enum.StrEnum):
    OFF = "off"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


class ConsentState(enum.StrEnum):
    GRANTED = "granted"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class Tracking(enum.StrEnum):
    """How one send is tracked (`sends.tracking`, 0009)."""

    INDIVIDUAL = "individual"
    AGGREGATE = "aggregate"
    NONE = "none"


def individual_allowed(mode: ConsentMode, state: ConsentState, *, do_not_track: bool) -> bool:
    """Whether a recipient may be tracked individually under the account's mode."""
    if do_not_track:
        return False
    if mode is ConsentMode.OPT_IN:
        return state is ConsentState.GRANTED
    if mode is ConsentMode.OPT_OUT:
        return state is not ConsentState.REFUSED
    return True


def tracking_of(
    mode: ConsentMode, state: ConsentState, *, do_not_track: bool, aggregate_wanted: bool
) -> Tracking:
    """A send's tracking: individual where allowed, else the aggregate pixel where asked for (never for a
    recipient on do-not-track, who asked for nothing to be recorded), else none."""
    if individual_allowed(mode, state, do_not_track=do_not_track):
        return Tracking.INDIVIDUAL
    if aggregate_wanted and not do_not_track:
        return Tracking.AGGREGATE
    return Tracking.NONE


def consent_blocks(mode: ConsentMode, state: ConsentState) -> bool:
    """Whether the edge must stop recording the recipient's hits (a suppression, reason ``consent_refused``,
    through the privacy topic, as do-not-track): a refusal, in every mode (the recipient said no; the
    preferences page offers it in every mode). A recipient who merely has not granted consent under
    ``opt_in`` is never given an individual pixel at registration, so the edge needs no list of them."""
    del mode  # every mode honours a refusal
    return state is ConsentState.REFUSED


def effective_mode(mode: ConsentMode, state: ConsentState) -> ConsentMode:
    """The mode a send is decided under: ``off`` tracks everyone not on do-not-track, but a recipient who
    refused is honoured in every mode (`consent_blocks`), so a refusal under ``off`` is decided as under
    ``opt_out`` (the aggregate pixel may still count the campaign's opens)."""
    if mode is ConsentMode.OFF and state is ConsentState.REFUSED:
        return ConsentMode.OPT_OUT
    return mode


# A consent change as stored (0009 `consent_events`): per account and recipient tag (never the address; the
# tags under every key of the keyring, as `suppression_tags`), the state, how it was given (``api``: the
# sender's call; ``preferences_page``: the recipient on the page of `tracking_preferences_url`; ``import``),
# the source (free text: a form, a campaign, the message id of the page) and the evidence (free text kept as
# proof: the consent text shown, an IP truncated as the hits' are, a user agent).
CONSENT_COLUMNS: Final = (
    "account",
    "tag",
    "recipient_tags",
    "state",
    "how",
    "source",
    "evidence",
    "at",
)
CONSENT_HOW: Final = frozenset({"api", "preferences_page", "import"})
