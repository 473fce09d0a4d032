"""Sharing stores: cards, pack, statistics, edits (merge/split/filter/subset), HDF5 and Minari."""
