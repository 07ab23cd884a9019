"""The compacted user-profiles topic: a profile before a user's first event, then changes.

- announce: a user's full profile is emitted just before the user's first event (1 ms earlier
  in event time), so a consumer that reads from the start always knows the user's home;
- update: occasionally a user moves (new home, perhaps another city) or changes segment; the
  full new profile is emitted and the user's later transactions follow the new home;
- delete: rarely a user closes the account: a tombstone (key, null value); the user then stops.

Updates and deletions draw from their own random stream and never look at the activity streams, so
they are the same whatever the mix; announcements follow the activity.
"""

from __future__ import annotations

import numpy as np

from contracts.events import UserProfile
from producers.config import DAY_MS, GeneratorConfig
from producers.geography import CITY_SPREAD_DEG, PLACES, place_arrays
from producers.records import Drafts, Stream
from producers.world import SEGMENT_NAMES, World

# Segment changes: student -> standard; standard -> premium or business; premium -> standard;
# business -> premium.
_NEXT_SEGMENT = {
    SEGMENT_NAMES.index("student"): [SEGMENT_NAMES.index("standard")],
    SEGMENT_NAMES.index("standard"): [SEGMENT_NAMES.index("premium")] * 7
    + [SEGMENT_NAMES.index("business")] * 3,
    SEGMENT_NAMES.index("premium"): [SEGMENT_NAMES.index("standard")],
    SEGMENT_NAMES.index("business"): [SEGMENT_NAMES.index("premium")],
}
P_MOVE = 0.55  # of updates; the rest change segment
P_MOVE_WITHIN_CITY = 0.6


class ProfileSource:
    def __init__(
        self, world: World, config: GeneratorConfig, rng: np.random.Generator, start_ms: int
    ) -> None:
        self.world = world
        self.config = config
        self.rng = rng
        self.start_ms = start_ms
        self._lat, self._lon, _ = place_arrays()
        residents = np.array([p.residents for p in PLACES])
        self._residents_p = residents / residents.sum()

    def profile(self, user: int, time: int) -> UserProfile:
        pop = self.world.population
        return UserProfile(
            pop.user_ids[user],
            float(pop.home_lat[user]),
            float(pop.home_lon[user]),
            int(pop.account_age_days[user]) + max(time - self.start_ms, 0) // DAY_MS,
            SEGMENT_NAMES[pop.segment[user]],
            time,
        )

    def announce(self, drafts: Drafts) -> None:
        """Add a profile just before the first event of every user not announced yet."""
        pop = self.world.population
        if not drafts.users:
            return
        users = np.asarray(drafts.users)
        fresh = ~pop.announced[users]
        if not fresh.any():
            return
        users, times = users[fresh], np.asarray(drafts.times)[fresh]
        order = np.lexsort((times, users))
        users, times = users[order], times[order]
        first = np.concatenate([[True], users[1:] != users[:-1]])
        pop.announced[users[first]] = True
        for user, time in zip(users[first].tolist(), times[first].tolist(), strict=True):
            profile = self.profile(user, max(time - 1, 0))
            drafts.add(profile.updated_at, Stream.USER_PROFILES, profile.user_id, profile, user)

    def changes(self, t0: int, t1: int, drafts: Drafts) -> None:
        """Updates and deletions in [t0, t1). Call after the chunk's other events: they were
        made with the old state, so a change takes effect from the next chunk on."""
        pop, rng, config = self.world.population, self.rng, self.config
        days = (t1 - t0) / DAY_MS
        for user in rng.integers(
            0, pop.size, rng.poisson(config.profile_update_rate * pop.size * days)
        ).tolist():
            if pop.deleted[user]:
                continue
            if rng.random() < P_MOVE:
                self._move(user)
            else:
                pop.segment[user] = rng.choice(_NEXT_SEGMENT[int(pop.segment[user])])
            pop.announced[user] = True
            profile = self.profile(user, int(rng.integers(t0, t1)))
            drafts.add(profile.updated_at, Stream.USER_PROFILES, profile.user_id, profile, user)
        for _ in range(rng.poisson(config.profile_delete_rate * pop.size * days)):
            user = int(rng.integers(pop.size))
            if pop.deleted[user]:
                continue
            pop.deleted[user] = True
            pop.announced[user] = True
            drafts.add(
                int(rng.integers(t0, t1)), Stream.USER_PROFILES, pop.user_ids[user], None, user
            )

    def _move(self, user: int) -> None:
        pop, rng = self.world.population, self.rng
        place = int(pop.home_place[user])
        if rng.random() >= P_MOVE_WITHIN_CITY:
            place = int(rng.choice(len(PLACES), p=self._residents_p))
        pop.home_place[user] = place
        pop.home_lat[user] = round(self._lat[place] + rng.normal(0, CITY_SPREAD_DEG), 5)
        pop.home_lon[user] = round(self._lon[place] + rng.normal(0, CITY_SPREAD_DEG), 5)
        if not pop.away[user]:
            pop.current_place[user] = place
            pop.current_lat[user] = pop.home_lat[user]
            pop.current_lon[user] = pop.home_lon[user]
