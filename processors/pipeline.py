"""Decode, enrich and classify one raw hit: pure, given the lookup tables it is built with.

Location is not attributed to a hit that came through a mail provider's proxy or a machine on the reader's
side (Gmail's proxy, Apple's MPP relays): the address is the proxy's, not the reader's.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.classify import classify
from processors.geo import Geo, GeoLookup
from processors.ranges import RangeTable
from processors.useragent import Agent, parse_agent
from schemas.events import RawHit
from schemas.verdicts import Classification, Verdict

NO_GEO = Geo()


@dataclass(frozen=True, slots=True)
class ProcessedHit:
    hit: RawHit
    source: str
    geo: Geo
    agent: Agent
    classification: Classification

    @property
    def message_key(self) -> tuple[str, str]:
        return (self.hit.account, self.hit.message_id)


class HitProcessor:
    def __init__(self, geo: GeoLookup, ranges: RangeTable) -> None:
        self.geo = geo
        self.ranges = ranges

    def process(self, hit: RawHit, source: str) -> ProcessedHit:
        agent = parse_agent(hit.user_agent)
        geo = self.geo.lookup(hit.ip) if hit.ip else NO_GEO
        classification = classify(hit, agent, geo, self.ranges)
        if classification.via_proxy or classification.verdict is Verdict.MACHINE:
            # Keep the network (who fetched) but not a place: it is the proxy's, not the reader's.
            geo = Geo(asn=geo.asn, as_org=geo.as_org)
        return ProcessedHit(hit, source, geo, agent, classification)
