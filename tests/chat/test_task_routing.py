"""Which queue a celery-mode task goes to (task_routing.choose): the pure choice, no Redis.

The same routing against real workers is in tests/topology/test_affinity_routing.py."""

import json

from chatsite.chat.workers.task_routing import SHARED, Route, WorkerState, choose, parse_registry


def worker(name, *adapters, live=0, routed=0, capacity=16):
    return WorkerState(name, frozenset(adapters), live=live, capacity=capacity, routed=routed)


def test_it_sends_a_request_to_the_worker_holding_its_adapter():
    workers = [worker("a", "chef", live=5), worker("b", "poet", live=0)]

    assert choose(workers, "chef") == Route("gpu.a", "a", "affinity")


def test_it_picks_the_least_busy_of_several_holders_counting_tasks_not_started():
    workers = [worker("a", "chef", live=2, routed=3), worker("b", "chef", live=4)]

    assert choose(workers, "chef").worker == "b"


def test_it_sends_an_adapter_nobody_holds_to_the_least_busy_worker():
    workers = [worker("a", "chef", live=3), worker("b", "poet", live=1)]

    assert choose(workers, "pirate") == Route("gpu.b", "b", "least_busy")


def test_it_sends_the_base_model_to_the_least_busy_worker_as_every_worker_has_it():
    workers = [worker("a", "chef", live=1), worker("b", live=2)]

    assert choose(workers, None) == Route("gpu.a", "a", "least_busy")


def test_it_breaks_ties_by_fewer_adapters_held_so_adapters_spread_over_the_caches():
    workers = [worker("a", "chef", "poet"), worker("b", "terse")]

    assert choose(workers, "pirate").worker == "b"


def test_it_breaks_remaining_ties_by_name_so_the_choice_is_stable():
    workers = [worker("b", "chef"), worker("a", "chef")]

    assert choose(workers, "chef").worker == "a"
    assert choose(workers, "pirate").worker == "a"


def test_it_passes_over_a_full_holder_for_a_worker_with_room():
    workers = [worker("a", "chef", live=15, routed=1), worker("b", live=3)]

    assert choose(workers, "chef") == Route("gpu.b", "b", "least_busy")


def test_it_uses_the_shared_queue_when_every_worker_is_full():
    workers = [worker("a", "chef", live=16), worker("b", live=10, routed=6)]

    assert choose(workers, "chef") == SHARED


def test_it_uses_the_shared_queue_when_no_worker_has_a_record():
    assert choose([], "chef") == SHARED
    assert choose([], None) == SHARED


def test_it_never_counts_a_worker_of_unknown_capacity_as_full():
    assert choose([worker("a", "chef", live=500, capacity=None)], "chef").outcome == "affinity"


def test_it_reads_only_fresh_records_and_their_routed_counts():
    fresh = {"adapters": ["chef"], "live": 2, "capacity": 16, "until": 110.0}
    stale = {"adapters": ["poet"], "live": 0, "capacity": 16, "until": 90.0}
    records = {b"a": json.dumps(fresh).encode(), b"b": json.dumps(stale).encode()}

    workers = parse_registry(records, {b"a": b"3", b"b": b"1"}, now=100.0)

    assert workers == [WorkerState("a", frozenset({"chef"}), live=2, capacity=16, routed=3)]


def test_it_reads_a_routed_count_below_zero_as_zero():
    record = {"adapters": [], "live": 0, "capacity": None, "until": 110.0}

    workers = parse_registry({"a": json.dumps(record)}, {"a": "-1"}, now=100.0)

    assert workers[0].load == 0
