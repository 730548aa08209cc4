"""The kit's statistics and labels: mean ± std over seeds, and the one rule for "does a setting beat
the baseline".

**The rule: Welch's two-sample t-test over seeds, one-sided, alpha 0.05.** A setting beats the
baseline on a metric when its per-seed values are higher than the baseline's with a one-sided
p-value below 0.05, under Welch's t-test (unequal variances, Welch–Satterthwaite degrees of
freedom). The demo, the study table (``jepa_kit.study``), the ablation table
(``jepa_kit.collect.ablation_summary``) and notebook 03 all decide with ``compare``. Two cases
are decided before any test:

* fewer than two seeds on either side: **cannot tell** (there is no estimate of seed noise);
  one seed per objective, as in the demo, never counts as a win;
* no seed variance on either side (every seed gave the same value): equal means are **no
  difference**; different means are an **exact** difference, reported as such (better or worse).

The Student-t distribution comes from the regularised incomplete beta function (a continued
fraction, Numerical Recipes §6.4), so the kit needs no scipy; tests pin it to table values and
to the closed forms at 1 and 2 degrees of freedom.

Pure Python: importing this module costs neither torch nor pandas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
RULE = "Welch's t-test over seeds, one-sided, alpha 0.05"

# -- labels (one map for tables, legends, the demo and the study) ------------------------------
BASELINE = "ntp"
REVERSE_AUG_LABEL = "trains on test facts"
TRAINS_ON_TEST_FACTS = ("reverse_aug",)  # objectives that train on the test facts by design
OBJECTIVE_LABELS = {BASELINE: f"{BASELINE} (baseline)",
                    **{o: f"{o} ({REVERSE_AUG_LABEL})" for o in TRAINS_ON_TEST_FACTS}}


def objective_label(objective) -> str:
    """The objective's name for tables and legends: ``ntp (baseline)``,
    ``reverse_aug (trains on test facts)``, otherwise the name itself."""
    return OBJECTIVE_LABELS.get(objective, str(objective))


def run_label(row) -> str:
    """A run's display name (``row``: a record of ``collect``); runs that train on the test facts
    always carry that label."""
    name = str(row.get("run"))
    marked = row.get("note") == REVERSE_AUG_LABEL or row.get("objective") in TRAINS_ON_TEST_FACTS
    return f"{name} ({REVERSE_AUG_LABEL})" if marked else name


# -- mean ± std over seeds ---------------------------------------------------------------------
def finite(values) -> list[float]:
    """The values as floats, without None and NaN (a run that has no such number)."""
    out = []
    for v in values:
        if v is None:
            continue
        v = float(v)
        if not math.isnan(v):
            out.append(v)
    return out


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of per-seed values. One value: std is NaN
    (one seed says nothing about seed noise); no value: both NaN."""
    v = list(values)
    if not v:
        return math.nan, math.nan
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


# -- the Student-t distribution ----------------------------------------------------------------
def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # modified Lentz evaluation of the continued fraction for I_x(a, b) (Numerical Recipes 6.4)
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1; got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast here; else use the symmetry
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0; got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    return 1.0 - t_sf(t, df)


def welch_t(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t statistic of mean(a) - mean(b) and its Welch–Satterthwaite degrees of freedom.
    Needs two or more values on each side and some variance on at least one."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se2 = va + vb
    if not se2 > 0:
        raise ValueError("Welch's t-test needs two or more values per side and some variance")
    df = se2 * se2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return (ma - mb) / math.sqrt(se2), df


# -- the rule ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A setting's per-seed values against the baseline's, decided by the kit's rule."""
    n: int                  # the setting's seeds
    mean: float
    std: float
    base_n: int             # the baseline's seeds
    base_mean: float
    base_std: float
    beats: bool | None      # None: cannot tell (fewer than two seeds on a side)
    verdict: str            # for tables: "better (p = 0.012)", "cannot tell (one seed)", ...
    t: float | None = None
    df: float | None = None
    p: float | None = None  # one-sided: the chance of a lead this large if the setting is no better

    @property
    def difference(self) -> float:
        return self.mean - self.base_mean


def compare(setting, baseline, alpha: float = ALPHA) -> Comparison:
    """Does ``setting`` beat ``baseline``? Both are per-seed values of one metric where higher is
    better (None and NaN are dropped). See the module docstring for the rule."""
    a, b = finite(setting), finite(baseline)
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    stats = dict(n=len(a), mean=ma, std=sa, base_n=len(b), base_mean=mb, base_std=sb)
    if not a or not b:
        return Comparison(**stats, beats=None, verdict="cannot tell (no runs)")
    if len(a) < 2 or len(b) < 2:
        return Comparison(**stats, beats=None, verdict="cannot tell (one seed)")
    if len(set(a)) == 1 and len(set(b)) == 1:  # no seed noise at all: the difference is what it is
        if a[0] == b[0]:
            return Comparison(**stats, beats=False, verdict="no difference (every seed equal)")
        better = a[0] > b[0]
        return Comparison(**stats, beats=better, verdict=f"{'better' if better else 'worse'} (exact: no seed variance)")
    t, df = welch_t(a, b)
    p = t_sf(t, df)
    beats = p < alpha
    return Comparison(**stats, beats=beats, verdict=f"{'better' if beats else 'not better'} (p = {p:.3g})",
                      t=t, df=df, p=p)
