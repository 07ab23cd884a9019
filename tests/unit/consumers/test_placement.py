"""Consumer actor placement: the consumer resource only where the cluster has it; the group ids
the autoscaler and `rtml status` read are the pipelines' own."""

from __future__ import annotations

import inspect

import pytest

from consumers.actors import consumer_actor_options
from consumers.pipelines import GROUP_IDS, factories, input_partitions, input_spec
from rtml.settings import PlacementSettings, Settings


def test_consumer_resource_is_requested_only_where_nodes_advertise_it() -> None:
    placement = PlacementSettings(num_cpus=0.5)
    on_cluster = consumer_actor_options(placement, {"CPU": 36.0, "consumer": 32.0, "GPU": 1.0})
    assert on_cluster == {
        "num_cpus": 0.5,
        "resources": {"consumer": 0.5},
        "scheduling_strategy": "SPREAD",
    }
    one_machine = consumer_actor_options(placement, {"CPU": 8.0})
    assert one_machine == {"num_cpus": 0.5, "scheduling_strategy": "SPREAD"}


def test_placement_can_be_turned_off() -> None:
    placement = PlacementSettings(consumer_resource=None, spread=False)
    assert consumer_actor_options(placement, {"consumer": 8.0}) == {"num_cpus": 0.25}


def test_a_required_consumer_resource_is_requested_before_any_node_has_it() -> None:
    placement = PlacementSettings(require_consumer_resource=True, spread=False)
    assert consumer_actor_options(placement, {"CPU": 8.0}) == {
        "num_cpus": 0.25,
        "resources": {"consumer": 0.25},
    }
    with pytest.raises(ValueError, match="needs a consumer_resource"):
        PlacementSettings(consumer_resource=None, require_consumer_resource=True)


def test_group_ids_are_the_pipelines_defaults() -> None:
    for name, cls in factories().items():
        default = inspect.signature(cls).parameters["group_id"].default
        assert GROUP_IDS[name] == default, name


def test_input_spec_names_each_pipelines_topic() -> None:
    settings = Settings()
    assert input_spec(settings, "fraud").name == settings.rtml_topics.transactions.name
    assert input_spec(settings, "recsys").name == settings.rtml_topics.user_events.name
    assert input_partitions(settings, "profiles") == settings.rtml_topics.user_profiles.partitions
