"""Decode, enrich and classify one raw hit: pure, given the lookup tables it is built with.

Location is not attributed to a hit that came through a mail provider's proxy or a machine on the reader's
side (Gmail's proxy, Apple's MPP relays): the address is the proxy's, not the reader's.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from processors.address import ClientAddress, parse_address
from processors.classify import hit_facts, judge
from processors.geo import Geo, GeoLookup
from processors.ranges import RangeTable
from processors.useragent import Agent, parse_agent
from schemas.events import RawHit
from schemas.verdicts import Classification, Verdict

NO_GEO = Geo()
_MACHINE: Final = Verdict.MACHINE  # an enum member is a class attribute lookup on every access
_new: Final = tuple.__new__


class ProcessedHit(NamedTuple):
    """A hit with what was found about it. A NamedTuple, like `HitFacts`: immutable, and built on every hit
    for a third of what a frozen dataclass costs."""

    hit: RawHit
    source: str
    geo: Geo
    agent: Agent
    classification: Classification
    address: ClientAddress | None = None  # `parse_address(hit.ip)`; None also when it is not an address

    @property
    def message_key(self) -> tuple[str, str]:
        return (self.hit.account, self.hit.message_id)


class HitProcessor:
    def __init__(self, geo: GeoLookup, ranges: RangeTable) -> None:
        self.geo = geo
        self.ranges = ranges

    def process(self, hit: RawHit, source: str) -> ProcessedHit:
        agent = parse_agent(hit.user_agent)
        address = parse_address(hit.ip) if hit.ip else None  # once: GeoIP, the ranges and the row use it
        geo = self.geo.lookup_address(address)
        classification = judge(hit_facts(hit, agent, geo, self.ranges.match_address(address)))
        if classification.via_proxy or classification.verdict is _MACHINE:
            # Keep the network (who fetched) but not a place: it is the proxy's, not the reader's.
            geo = Geo(asn=geo.asn, as_org=geo.as_org) if geo.asn or geo.as_org else NO_GEO
        return _new(ProcessedHit, (hit, source, geo, agent, classification, address))
