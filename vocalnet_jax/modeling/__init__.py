"""The model of a config, below training and decoding (which both call it).

build.py: the network, tokenizers and vocabularies a config means; restore.py: its
params from a workdir's latest checkpoint (params only); partitioning.py: mesh and
logical-axis shardings.
"""
