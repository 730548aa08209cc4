"""The kit's one statistics rule: the Student-t distribution against table values and closed forms,
Welch's test against a published example, and the decisions (one seed, no variance, a real lead)."""
import math

import pytest

from jepa_kit import analysis
from jepa_kit.analysis import compare, mean_std, t_cdf, t_sf


@pytest.mark.parametrize("t, df, two_sided", [
    (12.706, 1, 0.05), (4.303, 2, 0.05), (2.776, 4, 0.05), (2.228, 10, 0.05), (2.042, 30, 0.05),
    (63.657, 1, 0.01), (4.604, 4, 0.01), (3.169, 10, 0.01), (1.812, 10, 0.10),
])
def test_student_t_matches_the_printed_table(t, df, two_sided):
    # critical values as printed (3 decimals) in every statistics textbook's t table
    assert 2 * t_sf(t, df) == pytest.approx(two_sided, abs=2e-4)
    assert t_cdf(-t, df) == pytest.approx(two_sided / 2, abs=1e-4)


@pytest.mark.parametrize("t", [-30.0, -2.0, -0.3, 0.0, 0.7, 1.5, 4.0, 250.0])
def test_student_t_equals_its_closed_forms(t):
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)      # Cauchy
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)
    assert t_cdf(t, 1e8) == pytest.approx(0.5 * math.erfc(-t / math.sqrt(2)), abs=1e-6)  # the normal limit


def test_incomplete_beta_against_a_binomial_sum():
    # I_x(a, b) for whole a, b is a binomial tail: P(at least a successes in a + b - 1 trials)
    for a, b, x in ((2, 3, 0.4), (5, 1, 0.9), (1, 7, 0.05), (6, 6, 0.5)):
        n = a + b - 1
        tail = sum(math.comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))
        assert analysis.betainc(a, b, x) == pytest.approx(tail, abs=1e-13)
    assert analysis.betainc(2, 3, 0.0) == 0.0 and analysis.betainc(2, 3, 1.0) == 1.0
    with pytest.raises(ValueError):
        analysis.betainc(0, 1, 0.5)


def test_welch_matches_the_published_example():
    # Welch's t-test, Wikipedia "Welch's t-test", example 1: t = -2.46, df = 25.0, two-sided p = 0.021
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    t, df = analysis.welch_t(a1, a2)
    assert t == pytest.approx(-2.46, abs=0.005) and df == pytest.approx(25.0, abs=0.05)
    assert 2 * t_sf(abs(t), df) == pytest.approx(0.021, abs=0.0005)
    c = compare(a2, a1)  # one-sided: does a2 beat a1?
    assert c.beats and c.p == pytest.approx(0.0107, abs=0.0003) and c.verdict == "better (p = 0.0107)"
    assert compare(a1, a2).beats is False, "one-sided: a lower mean never wins"


def test_one_seed_cannot_tell_however_large_the_gap():
    c = compare([0.9], [0.0])
    assert c.beats is None and c.verdict == "cannot tell (one seed)" and c.p is None
    assert c.difference == pytest.approx(0.9)
    assert compare([0.9, 0.95], [0.0]).verdict == "cannot tell (one seed)"
    assert compare([], [0.1, 0.2]).verdict == "cannot tell (no runs)"
    assert compare([0.2, None, float("nan")], [0.1, 0.1]).n == 1, "missing numbers are not seeds"


def test_no_seed_variance_is_decided_exactly():
    same = compare([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert same.beats is False and same.verdict == "no difference (every seed equal)"
    up = compare([0.5, 0.5], [0.2, 0.2, 0.2])
    assert up.beats is True and up.verdict == "better (exact: no seed variance)" and up.p is None
    down = compare([0.1, 0.1], [0.2, 0.2])
    assert down.beats is False and down.verdict == "worse (exact: no seed variance)"
    # variance on one side only is an ordinary Welch test: df = n - 1 of the noisy side
    c = compare([0.0, 0.01, 0.02], [0.0, 0.0, 0.0])
    assert c.df == pytest.approx(2.0) and c.t == pytest.approx(math.sqrt(3))
    assert c.p == pytest.approx(0.5 - math.sqrt(3) / (2 * math.sqrt(5)))  # the df = 2 closed form
    assert c.beats is False and c.verdict == "not better (p = 0.113)"


def test_mean_and_std_over_seeds():
    assert mean_std([0.1, 0.3]) == pytest.approx((0.2, math.sqrt(0.02)))
    m, s = mean_std([0.4])
    assert m == 0.4 and math.isnan(s), "one seed has no std"
    assert all(math.isnan(x) for x in mean_std([]))
    assert analysis.finite([1, None, float("nan"), "2.5"]) == [1.0, 2.5]


def test_one_label_map():
    assert analysis.objective_label("ntp") == "ntp (baseline)"
    assert analysis.objective_label("reverse_aug") == "reverse_aug (trains on test facts)"
    assert analysis.objective_label("jepa") == "jepa"
    assert analysis.run_label({"run": "r", "objective": "reverse_aug"}) == "r (trains on test facts)"
    assert analysis.run_label({"run": "r", "objective": "jepa", "note": ""}) == "r"
