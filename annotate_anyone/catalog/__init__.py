"""The catalog: sources, items, images, browsing, statistics, dedup and takedowns."""
