"""The peers of ``rtml bench``: the fraud velocity features in Quix Streams, Bytewax and Faust.

Each module is a program the ``peers`` scenario (``bench/scenarios/peers.py``) starts in its own
process, with the Python that has the peer installed (the ``peers`` extra; see
docs/benchmarks.md), from the same pre-produced transactions topic to the same kind of output
topic. They import only the standard library, their framework and ``bench.peer_jobs.common``
(which imports ``bench.reference_features``): no rtml package, so the peers' environment needs
none of rtml's dependencies.

    python -m bench.peer_jobs.quix --bootstrap HOST:PORT --input TOPIC --output TOPIC \\
        --dead-letter TOPIC --group GROUP --partitions 8 --state-dir DIR
"""
