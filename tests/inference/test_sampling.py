"""Sampling: greedy at temperature 0, nucleus sampling, and a private seeded generator."""

from collections import Counter

import torch

from inference.sampling import Sampler
from inference.types import SamplingParams

LOGITS = torch.log(torch.tensor([0.05, 0.6, 0.3, 0.05]))


def draws(sampler: Sampler, count: int = 200) -> list[int]:
    return [sampler(LOGITS) for _ in range(count)]


def test_it_takes_the_most_likely_token_at_temperature_zero():
    assert set(draws(Sampler(SamplingParams(temperature=0, seed=1)), 20)) == {1}


def test_it_repeats_the_same_draws_for_the_same_seed():
    params = SamplingParams(temperature=1.0, seed=42)

    assert draws(Sampler(params)) == draws(Sampler(params))
    assert draws(Sampler(params)) != draws(Sampler(SamplingParams(temperature=1.0, seed=43)))


def test_it_is_not_disturbed_by_the_global_random_state():
    params = SamplingParams(temperature=1.0, seed=5)
    torch.manual_seed(0)
    first = draws(Sampler(params))
    torch.manual_seed(1)

    assert draws(Sampler(params)) == first


def test_it_picks_a_random_seed_when_none_is_given():
    assert Sampler(SamplingParams(seed=None)).seed != Sampler(SamplingParams(seed=None)).seed


def test_it_samples_only_from_the_nucleus():
    # 0.6 alone falls short of top_p=0.8; 0.6 + 0.3 reaches it, so tokens 1 and 2 remain.
    counts = Counter(draws(Sampler(SamplingParams(temperature=1.0, top_p=0.8, seed=3)), 500))

    assert set(counts) == {1, 2}
    assert counts[1] > counts[2]


def test_it_keeps_the_top_token_when_top_p_is_tiny():
    assert set(draws(Sampler(SamplingParams(temperature=1.0, top_p=0.01, seed=3)))) == {1}


def test_it_flattens_the_distribution_at_high_temperature():
    cold = Counter(draws(Sampler(SamplingParams(temperature=0.3, seed=9)), 500))
    hot = Counter(draws(Sampler(SamplingParams(temperature=3.0, seed=9)), 500))

    assert hot[0] + hot[3] > cold[0] + cold[3]


def test_it_samples_only_among_the_top_k():
    counts = Counter(draws(Sampler(SamplingParams(temperature=1.0, top_k=2, seed=3)), 500))

    assert set(counts) == {1, 2}


def test_it_penalises_tokens_the_answer_already_has_by_presence_and_frequency():
    sampler = Sampler(SamplingParams(temperature=0, presence_penalty=0.1, frequency_penalty=0.5))
    sampler.record(1)
    assert sampler(LOGITS) == 1  # log 0.6 - 0.6 is still above log 0.3

    sampler.record(1)
    assert sampler(LOGITS) == 2  # twice: log 0.6 - 1.1 falls below log 0.3


def test_it_divides_the_logits_of_seen_tokens_by_the_repetition_penalty():
    logits = torch.tensor([0.0, 2.0, 1.5, -1.0])
    sampler = Sampler(SamplingParams(temperature=0, repetition_penalty=2.0), prompt=[1])

    assert sampler(logits) == 2  # 2.0 / 2 = 1.0 < 1.5


def test_it_adds_the_logit_bias():
    sampler = Sampler(SamplingParams(temperature=0, logit_bias=((3, 100.0),)))

    assert sampler(LOGITS) == 3


def test_it_never_picks_a_token_the_grammar_forbids_whatever_the_bias():
    sampler = Sampler(SamplingParams(temperature=1.0, seed=1, logit_bias=((1, 100.0),), grammar="g"))
    allowed = torch.tensor([True, False, True, False])

    assert set(sampler(LOGITS, allowed) for _ in range(100)) == {0, 2}


def test_it_leaves_the_callers_logits_alone():
    logits = LOGITS.clone()

    Sampler(SamplingParams(temperature=0, logit_bias=((3, 100.0),)))(logits)

    assert torch.equal(logits, LOGITS)
