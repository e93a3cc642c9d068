"""Successive halving's pure parts (pipeline/rungs.py), on hand-worked rung tables."""

import math

import pytest

from pipeline.search.successive_halving import (
    SchedulerSpec,
    SuccessiveHalving,
    kept_at_rung,
    rung_steps,
)

TWO = (("rec", "min"), ("mig", "max"))


def test_rungs_lie_below_the_budget():
    assert rung_steps(100, 3, 1000) == (100, 300, 900)
    assert rung_steps(100, 3, 900) == (100, 300)
    assert rung_steps(100, 2, 100) == ()
    assert SchedulerSpec("fifo", 100, 3).rungs(1000) == ()
    with pytest.raises(ValueError, match="eta >= 2"):
        rung_steps(100, 1, 1000)


def test_the_best_ceil_n_over_eta_continue():
    assert [kept_at_rung(n, 3) for n in range(1, 8)] == [1, 1, 1, 2, 2, 2, 3]
    assert [kept_at_rung(n, 2) for n in range(1, 6)] == [1, 1, 2, 2, 3]


# Four trials reach rung 10 (eta 2) in this order, scored on Rec (min) and MIG (max).
ARRIVALS = [
    ("t1", {"rec": 5.0, "mig": 0.10}),
    ("t2", {"rec": 4.0, "mig": 0.20}),  # dominates t1
    ("t3", {"rec": 6.0, "mig": 0.05}),  # dominated by t1 and t2
    ("t4", {"rec": 3.0, "mig": 0.01}),  # best Rec, worst MIG: on the front with t2
]


def judged(selection: str) -> tuple[SuccessiveHalving, list]:
    halving = SuccessiveHalving(SchedulerSpec("mo-asha", 10, 2, TWO, selection), steps=40)
    return halving, [halving.judge(trial, 10, scores) for trial, scores in ARRIVALS]


def test_pareto_selection_by_hand():
    halving, decisions = judged("pareto")
    assert halving.rungs == (10, 20)
    # t1 alone: 1st of 1, keep 1. t2 dominates t1: 1st of 2, keep 1. t3 is last of 3, keep 2.
    # t4: front {t2, t4}, mean ranks within it tie (1.5 each), arrival order puts t2 first, so
    # t4 is 2nd of 4, keep 2.
    assert [(d.position, d.arrived, d.kept, d.proceed) for d in decisions] == [
        (1, 1, 1, True),
        (1, 2, 1, True),
        (3, 3, 2, False),
        (2, 4, 2, True),
    ]
    assert halving.stopped("t3") == decisions[2] and halving.stopped("t4") is None
    assert decisions[2].reason() == (
        "stopped at rung 1 of 2 (step 10): 3rd of 3 trials at this rung by Pareto fronts on "
        "rec, mig, ties by mean rank; the best 2 continue"
    )


def test_mean_rank_selection_by_hand():
    # At t4's arrival: Rec ranks t4 1, t2 2, t1 3, t3 4; MIG ranks t2 1, t1 2, t3 3, t4 4; mean
    # ranks t2 1.5, t1 2.5, t4 2.5, t3 3.5: t4 is 3rd of 4 (ties in arrival order) and stops.
    _, decisions = judged("mean_rank")
    assert [(d.position, d.proceed) for d in decisions] == [
        (1, True),
        (1, True),
        (3, False),
        (3, False),
    ]


def test_a_rung_reported_again_keeps_its_first_decision_and_other_steps_are_not_judged():
    halving, decisions = judged("pareto")
    assert halving.judge("t3", 10, {"rec": 0.0, "mig": 1.0}) == decisions[2]
    assert len(halving.arrivals[10]) == 4
    assert halving.judge("t1", 15, {"rec": 1.0, "mig": 0.1}) is None
    assert halving.judge("t1", 40, {"rec": 1.0, "mig": 0.1}) is None  # the full budget
    assert halving.judge("t1", 20, {"rec": 1.0, "mig": math.nan}).proceed  # first at rung 20


def test_state_round_trips_and_the_restored_rungs_judge_alike():
    halving, _ = judged("pareto")
    restored = SuccessiveHalving.from_state(halving.state())
    assert restored.state() == halving.state()
    assert restored.spec == halving.spec
    late = {"rec": 5.5, "mig": 0.06}
    assert restored.judge("t5", 10, late) == halving.judge("t5", 10, late)


SYNC = SchedulerSpec("mo-asha", 10, 2, TWO, "mean_rank", synchronous=True)
# Five trials for a sweep of five; quality q scores rec 10 - q and mig q / 10, so the order is
# total and the best have the highest q.
QUALITY = {"a": 1, "b": 4, "c": 0, "d": 3, "e": 2}


def sync_scores(trial: str) -> dict[str, float]:
    return {"rec": 10.0 - QUALITY[trial], "mig": QUALITY[trial] / 10}


def test_a_synchronous_rung_waits_for_every_trial_then_keeps_the_best_regardless_of_order():
    halving = SuccessiveHalving(SYNC, steps=40, trials=5)
    assert halving.rungs == (10, 20)
    for trial in "abcd":
        assert halving.arrive(trial, 10, sync_scores(trial)) == []
        assert halving.waiting(trial)
    decisions = {d.trial_id: d for d in halving.arrive("e", 10, sync_scores("e"))}
    # ceil(5 / 2) = 3 continue: b, d, e. The first arrival (a) stops, as ASHA would not have it.
    assert {t for t, d in decisions.items() if d.proceed} == {"b", "d", "e"}
    assert decisions["a"].reason() == (
        "stopped at rung 1 of 2 (step 10): 4th of 5 trials at this rung by mean rank on rec, "
        "mig; the best 3 continue"
    )
    assert not any(halving.waiting(trial) for trial in QUALITY)
    # A resumed trial reporting the rung again gets its decision; the next rung waits for the
    # three promoted trials only.
    assert halving.arrive("b", 10, sync_scores("b")) == [decisions["b"]]
    assert halving.arrive("e", 20, sync_scores("e")) == []
    assert halving.arrive("b", 20, sync_scores("b")) == []
    settled = halving.arrive("d", 20, sync_scores("d"))
    assert {d.trial_id: d.proceed for d in settled} == {"b": True, "d": True, "e": False}


def test_a_trial_that_ends_before_a_rung_is_not_waited_for_and_release_decides_early():
    halving = SuccessiveHalving(SYNC, steps=40, trials=4)
    assert halving.arrive("a", 10, sync_scores("a")) == []
    assert halving.arrive("b", 10, sync_scores("b")) == []
    assert halving.end("c") == []  # an error before the rung: three can still arrive, two did
    settled = halving.arrive("d", 10, sync_scores("d"))
    assert {d.trial_id: d.proceed for d in settled} == {"a": False, "b": True, "d": True}
    assert all(d.arrived == 3 for d in settled)
    # The search ended with one trial fewer than planned: release decides with what came.
    short = SuccessiveHalving(SYNC, steps=40, trials=3)
    short.arrive("a", 10, sync_scores("a"))
    short.arrive("b", 10, sync_scores("b"))
    assert {d.trial_id: d.proceed for d in short.release()} == {"a": False, "b": True}
    restored = SuccessiveHalving.from_state(short.state())
    assert restored.state() == short.state() and restored.closed == [10]


def test_synchronous_needs_the_number_of_trials_and_asynchronous_never_waits():
    with pytest.raises(ValueError, match="number of trials"):
        SuccessiveHalving(SYNC, steps=40)
    halving, _ = judged("pareto")
    assert not halving.waiting("t1")
    assert halving.end("t1") == [] and halving.release() == []
