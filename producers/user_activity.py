"""Browsing sessions: bursts of views, some clicks, few purchases (topic user-events).

Each user has long-term interests over item categories (sparse: most users care about a few) and
a favourite niche (sub-style) in every category. A session is a Markov walk over categories: it
starts in a long-term interest, in the previous session's category, or in a globally popular one;
each next view stays in the current category, returns to one seen earlier in the session, or
drifts to a long-term interest. Within a category the item follows Zipf popularity inside the
user's favourite niche (or any niche). So recent categories and the user's niches predict the next
item much better than global popularity, which still matters within a niche.

The loop is plain Python over ``random.Random`` (cheap scalar draws); session starts are drawn for a
whole chunk with numpy.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from typing import Literal

import numpy as np

from contracts.events import UserEvent
from producers.config import GeneratorConfig
from producers.records import Drafts, EventIds, Stream
from producers.world import ITEM_CATEGORIES, NICHES_PER_CATEGORY, World, habit_of

P_RETURN_TO_LAST_SESSION = 0.3  # a session starts where the previous one ended
P_GLOBAL_START = 0.1  # ...or in a globally popular category
P_STAY = 0.6  # the next view stays in the current category
P_SESSION_CATEGORY = 0.2  # ...or goes back to a category seen earlier in the session
P_FAVOURITE_NICHE = 0.65  # within a category, the user's favourite niche
P_REVISIT = 0.12  # view an item already seen in this session again
P_CLICK = (0.22, 0.36)  # after a view: outside / inside the favourite niche
P_CLICK_REVISIT = 0.45
P_PURCHASE = 0.12  # after a click
MEAN_VIEW_GAP_MS = 25_000
EventKind = Literal["view", "click", "purchase"]
EVENTS_PER_VIEW = 1.0 + 0.31 * (1.0 + P_PURCHASE)  # a view, its clicks and their purchases


class SessionSource:
    def __init__(
        self,
        world: World,
        config: GeneratorConfig,
        rng: np.random.Generator,
        ids: EventIds,
    ) -> None:
        self.world = world
        self.config = config
        self.rng = rng
        self.random = random.Random(int(rng.integers(1 << 62)))
        self.ids = ids
        self._last_category = [-1] * world.population.size
        self._category_names = [ITEM_CATEGORIES[c] for c in world.catalog.category.tolist()]

    def generate(self, t0: int, t1: int, drafts: Drafts) -> None:
        if self.config.sessions_per_user_day <= 0:
            return
        users, starts = self.world.population.sample_activity(
            self.rng, t0, t1, self.config.sessions_per_user_day
        )
        lengths = self.rng.geometric(1.0 / self.config.mean_session_views, len(users))
        for user, start, length in zip(
            users.tolist(), starts.tolist(), lengths.tolist(), strict=True
        ):
            self._session(user, start, length, drafts)

    def _session(self, user: int, time: int, views: int, drafts: Drafts) -> None:
        r = self.random.random
        catalog = self.world.catalog
        interest = self.world.population.interest_cdf[user].tolist()
        user_id = self.world.population.user_ids[user]
        item_ids, names = catalog.ids, self._category_names
        niche_items, niche_cdf = catalog.niche_items, catalog.niche_cdf
        ids = self.ids
        item_id = name = ""

        def emit(at: int, kind: EventKind) -> None:
            event = UserEvent(ids.one(), user_id, item_id, name, kind, at)
            drafts.add(at, Stream.USER_EVENTS, user_id, event, user)

        last = self._last_category[user]
        draw = r()
        if draw < P_RETURN_TO_LAST_SESSION and last >= 0:
            category = last
        elif draw < P_RETURN_TO_LAST_SESSION + P_GLOBAL_START:
            category = bisect_right(catalog.category_cdf, r())
        else:
            category = bisect_right(interest, r())
        category = min(category, len(ITEM_CATEGORIES) - 1)
        session_categories = [category]
        seen: list[int] = []

        for step in range(views):
            if step:
                draw = r()
                if draw >= P_STAY:
                    if draw < P_STAY + P_SESSION_CATEGORY:
                        category = session_categories[int(r() * len(session_categories))]
                    else:
                        category = min(bisect_right(interest, r()), len(ITEM_CATEGORIES) - 1)
                    session_categories.append(category)
            favourite = habit_of(user, category) % NICHES_PER_CATEGORY
            revisit = bool(seen) and r() < P_REVISIT
            if revisit:
                item = seen[int(r() * len(seen))]
                p_click = P_CLICK_REVISIT
            else:
                in_favourite = r() < P_FAVOURITE_NICHE
                niche = favourite if in_favourite else int(r() * NICHES_PER_CATEGORY)
                cdf = niche_cdf[category][niche]
                item = niche_items[category][niche][min(bisect_right(cdf, r()), len(cdf) - 1)]
                seen.append(item)
                p_click = P_CLICK[in_favourite]
            item_id, name = item_ids[item], names[item]
            emit(time, "view")
            if r() < p_click:
                click_time = time + 2_000 + int(r() * 10_000)
                emit(click_time, "click")
                if r() < P_PURCHASE:
                    emit(click_time + 10_000 + int(r() * 80_000), "purchase")
            time += 2_000 + int(self.random.expovariate(1.0 / MEAN_VIEW_GAP_MS))
        self._last_category[user] = category
