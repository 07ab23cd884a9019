"""The synthetic input streams: transactions with labeled fraud, user events, user profiles.

Deterministic: one ``GeneratorConfig`` (and a start time) gives the same bytes every time.
The parts, in the order data flows (docs/generator.md tells the whole story):

- ``config``: ``GeneratorConfig``, every knob, checked when built;
- ``geography``, ``world``: places, users and cards, merchants, the item catalog;
- ``transactions``, ``fraud_scenarios``, ``user_activity``, ``profiles``: the sources;
- ``corruption``: out-of-order, late and malformed records;
- ``stream``: ``EventGenerator``, every source merged into ``Record``s in emission order;
- ``pacing``, ``kafka_sink``, ``files``: the live schedule, Kafka, JSON-lines files;
- ``runner``: ``produce_live``, ``produce_history``, ``write_history``; ``cli``: `rtml produce`.

Nothing is imported here, so `rtml --help` does not pay for numpy.
"""
