"""Every pixelpipe process tunes the collector once started (`pixelpipe.cli.tune_gc`): what start-up allocated
is frozen out of the collector's sight, and the young generation is collected every 50,000 allocations."""

from __future__ import annotations

import gc

from pixelpipe.cli import tune_gc


def test_start_up_is_frozen_and_the_young_generation_collected_less_often() -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        tune_gc()
        assert gc.get_threshold() == (50_000, *threshold[1:])
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
