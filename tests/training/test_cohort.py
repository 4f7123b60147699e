"""`Cohort`: the wrappers updated together, and when their update is due."""

import keras

import tfprune
from tfprune import find_wrappers
from tfprune import schedules
from tfprune._training.cohort import plan_cohorts

L = keras.layers


def _pruned(sparsity):
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="hidden"),
                              L.Dense(2, name="head")])
    return tfprune.prune(model, sparsity)


def test_wrappers_of_one_schedule_form_one_cohort_that_follows_is_due():
    pruned = _pruned(schedules.PolynomialDecay(0.0, 0.5, 10, 30))
    wrappers = find_wrappers(pruned)
    plan, slots, (cohort,) = plan_cohorts(pruned, wrappers)
    assert cohort.wrappers == wrappers and cohort.plan is plan and cohort.update is None
    assert [s.weight.variable for s in slots] == [pw.variable for pw in plan.weights]
    cohort.read_last()
    assert cohort.last == [-1, -1]
    assert not cohort.due(9, 5) and cohort.due(10, 5)
    cohort.updated(10)
    assert cohort.last == [10, 10]
    assert not cohort.due(14, 5) and cohort.due(15, 5) and cohort.due(30, 100)
    wrappers[1].frozen = True
    assert cohort.frozen and not cohort.due(15, 5)


def test_wrappers_with_schedules_of_their_own_form_a_cohort_each():
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="hidden"),
                              L.Dense(2, name="head")])
    pruned = keras.Sequential([keras.Input((8,))] + [
        tfprune.PruningWrapper(layer, schedules.Constant(s, begin))
        for layer, s, begin in zip(model.layers, (0.5, 0.25), (0, 7))])
    wrappers = find_wrappers(pruned)
    _, _, cohorts = plan_cohorts(pruned, wrappers)
    assert [c.wrappers for c in cohorts] == [[w] for w in wrappers]
    assert [c.schedule for c in cohorts] == [w.schedule for w in wrappers]
    for cohort in cohorts:
        cohort.read_last()
    assert [c.due(0, 1) for c in cohorts] == [True, False]
