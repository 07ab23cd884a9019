"""One rule's NFA step: advance every partial match of a key by one event, in event-time order.

A partial match (a *run*) is ``(step, taken, start, ids)``: it waits in step ``step`` having
taken ``taken`` events there, started at event time ``start``, and holds the ids of the events
it has taken. Runs are independent of each other; every event that satisfies the first step
starts one, so a key has at most one match per starting event. The rules of the step (docs/
patterns.md, "Semantics"):

1. a run whose ``start`` is more than ``within`` before the event is dropped (it cannot end in
   time);
2. once step i has its ``min`` events, an event that satisfies step i+1 advances the run (lazy:
   the next step wins over more repetitions);
3. else an event that satisfies step i (fewer than ``max`` taken) is taken by step i;
4. else the event is skipped, unless it satisfies a negated step between i and i+1 (after step
   i's ``min``): the run dies; or step i+1 is strict and the event is of its kind (after step
   i's ``min``): the run dies; or step i is strict and the event is of its kind: below ``min``
   the run dies, above it step i takes no more;
5. the run completes when the last step has taken its ``min`` events.
"""

from __future__ import annotations

from features.patterns.compiler import CompiledRule

Run = tuple[int, int, int, tuple[str, ...]]
"""(step index, events taken by that step, start event time, ids of the taken events)."""

MAX_RUNS_PER_RULE = 256  # a runaway key keeps its newest partial matches only


def advance(
    rule: CompiledRule,
    runs: list[Run] | tuple[()],
    t: int,
    kind: int,
    mask: int,
    event_id: str,
    completed: list[tuple[str, ...]],
) -> list[Run]:
    """The runs after the event ``(t, kind, mask, event_id)``; matches go to ``completed``.

    A list of runs is updated in place and returned: a card's runs stay the same list from
    event to event, instead of a new list per event for the garbage collector to scan.
    """
    steps = rule.steps
    last = len(steps) - 1
    oldest = t - rule.within
    out: list[Run] = runs if type(runs) is list else []
    w = 0  # runs kept so far, written over the ones already read (w never passes the reader)
    for run in runs:
        i, n, start, ids = run
        if start < oldest:
            continue
        cur = steps[i]
        if n >= cur.min:  # i < last: the last step completes at its min
            nxt = steps[i + 1]
            if kind == nxt.kind and mask & nxt.bit:
                taken = (*ids, event_id)
                if i + 1 == last and nxt.min == 1:
                    completed.append(taken)
                else:
                    out[w] = (i + 1, 1, start, taken)
                    w += 1
                continue
            if n < cur.max and kind == cur.kind and mask & cur.bit:
                out[w] = (i, n + 1, start, (*ids, event_id))
                w += 1
                continue
            if mask & nxt.kill or (nxt.strict and kind == nxt.kind):
                continue
            if cur.strict and kind == cur.kind and n < cur.max:
                out[w] = (i, cur.max, start, ids)  # no more repetitions
                w += 1
                continue
            out[w] = run
            w += 1
        elif kind == cur.kind:
            if mask & cur.bit:
                n += 1
                taken = (*ids, event_id)
                if i == last and n == cur.min:
                    completed.append(taken)
                else:
                    out[w] = (i, n, start, taken)
                    w += 1
            elif not cur.strict:
                out[w] = run
                w += 1
        else:
            out[w] = run
            w += 1
    del out[w:]
    first = steps[0]
    if kind == first.kind and mask & first.bit:
        if last == 0 and first.min == 1:
            completed.append((event_id,))
        else:
            out.append((0, 1, t, (event_id,)))
    if len(out) > MAX_RUNS_PER_RULE:
        del out[: len(out) - MAX_RUNS_PER_RULE]
    return out
