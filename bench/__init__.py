"""`rtml bench`: every performance claim of rtml, measured side by side on one machine.

The harness runs scenarios (``bench/scenarios/``) on its own Kafka, Redis and Ray, repeats
them in interleaved rounds, and reports medians with their min-max range and ratios paired by
round, because a shared 2-core machine is noisy. See docs/benchmarks.md.

    cli.py        the command: options -> stack -> scenarios -> results files
    options.py    BenchOptions: sizes of a quick and a full run, validation
    environment.py  the isolated stack (ports, state dir, Ray) and Kafka/Redis chores
    workload.py   pre-produced synthetic transactions (producers.runner.produce_history)
    measure.py    timing a consumer group through a topic; probes for runners and actors
    serving.py    the rtml Serve app deployed once per run, for scenarios that score
    reference_features.py  the fraud features the obvious way (naive pipeline, peers)
    peer_jobs/    the peers' programs (Quix Streams, Bytewax, Faust), run in subprocesses
    procs.py      RSS and CPU per process, machine load (/proc)
    scenario.py   the Scenario interface and the context scenarios get
    runner.py     interleaved rounds, failures, output files
    results.py    the result schema (JSON)
    stats.py      medians, ranges, paired ratios
    report.py     Markdown table and PNG plots
    machine.py    CPU, memory, versions, git commit
"""
