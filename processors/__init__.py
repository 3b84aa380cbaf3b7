"""Stream processors: decode, enrich, classify and load raw hits."""
