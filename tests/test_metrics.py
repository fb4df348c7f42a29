"""Attribution-quality metrics on hand-made cases whose answers are known."""

import math

import numpy as np
import pytest

from attribot_rag.evaluation import metrics as M

# Two clear outliers (sources 0 and 3); the rest small.
EXACT = np.array([5.0, 0.1, -0.2, 4.0, 0.0, 0.3, 0.2, -0.1])


def test_outlier_positives_rule():
    pos = M.outlier_positives(EXACT)
    assert pos.tolist() == [True, False, False, True, False, False, False, False]
    # mean + std threshold, and > 0: an all-negative example has no positives
    assert not M.outlier_positives(np.array([-3.0, -1.0, -1.0, -1.0])).any()
    # constant scores: every score equals mean + 0 std, but > 0 still required
    assert M.outlier_positives(np.array([1.0, 1.0])).all()
    assert not M.outlier_positives(np.array([0.0, 0.0])).any()


def test_perfect_ranking_has_ap_one():
    assert M.average_precision(EXACT, EXACT) == 1.0
    # any monotone transform ranks the same
    assert M.average_precision(EXACT * 10 + 3, EXACT) == 1.0


def test_reversed_ranking_is_lower():
    ap = M.average_precision(-EXACT, EXACT)
    assert ap < 1.0
    # positives at ranks 7 and 8 of 8: (1/7 + 2/8) / 2
    assert ap == pytest.approx((1 / 7 + 2 / 8) / 2)


def test_partial_ranking_value():
    # positives 0 and 3 ranked 1st and 3rd: (1/1 + 2/3) / 2
    scores = np.array([9.0, 8.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0])
    assert M.average_precision(scores, EXACT) == pytest.approx((1 + 2 / 3) / 2)


def test_unscored_positive_counts_as_not_retrieved():
    scores = np.array([9.0, np.nan, np.nan, np.nan, 1.0, 0.0, 0.0, 0.0])
    # source 0 found at rank 1; source 3 never scored: precision 0 for it
    assert M.average_precision(scores, EXACT) == pytest.approx(0.5)


def test_no_positives_is_nan_and_skipped_in_map():
    flat = np.array([-1.0, -1.0, -2.0])
    assert math.isnan(M.average_precision(flat, flat))
    m = M.mean_average_precision([(EXACT, EXACT), (flat, flat), (-EXACT, EXACT)])
    assert m == pytest.approx((1.0 + (1 / 7 + 2 / 8) / 2) / 2)


def test_spearman():
    assert M.spearman(EXACT, EXACT) == pytest.approx(1.0)
    assert M.spearman(-EXACT, EXACT) == pytest.approx(-1.0)
    assert math.isnan(M.spearman(np.ones(4), np.arange(4.0)))
    # nan ties at the bottom: these nans sit where the truth is lowest -> still perfect
    a = np.array([3.0, 2.0, np.nan, np.nan])
    b = np.array([3.0, 2.0, 1.0, 1.0])
    assert M.spearman(a, b) == pytest.approx(1.0)


def test_top_k_sources_and_ranking():
    s = np.array([0.5, np.nan, 2.0, 2.0, -1.0])
    assert M.ranking(s) == [2, 3, 0, 4]
    assert M.top_k_sources(s, 1) == [2]
    assert M.top_k_sources(s, 3) == [2, 3, 0]
    assert M.top_k_sources(s, 10) == [2, 3, 0, 4]  # nan never selected
    assert M.top_k_drop(-1.0, -4.5) == pytest.approx(3.5)


def test_top_k_drop_of_true_top_sources_is_largest():
    # An additive toy model: LL(C without S) = LL(C) - sum of the true effects of S.
    rng = np.random.default_rng(0)
    effects = rng.exponential(1.0, size=12)
    full_ll = -3.0

    def drop(scores, k):
        removed = M.top_k_sources(scores, k)
        return M.top_k_drop(full_ll, full_ll - effects[removed].sum())

    for k in (1, 3, 5):
        best = drop(effects, k)
        for _ in range(20):
            assert drop(rng.normal(size=12), k) <= best + 1e-12
        assert drop(-effects, k) < best


def test_random_masks_seeded():
    a = M.random_masks(32, 10, 0.5, seed=3)
    b = M.random_masks(32, 10, 0.5, seed=3)
    assert a.shape == (32, 10) and a.dtype == bool
    assert np.array_equal(a, b)
    assert not np.array_equal(a, M.random_masks(32, 10, 0.5, seed=4))
    assert 0.3 < a.mean() < 0.7


def test_lds_of_a_linear_model():
    effects = np.array([3.0, -1.0, 0.5, 2.0, 0.0, 1.5])
    masks = M.random_masks(32, len(effects), 0.5, seed=0)
    outputs = masks.astype(float) @ effects - 7.0
    assert M.lds(effects, masks, outputs) == pytest.approx(1.0)
    assert M.lds(-effects, masks, outputs) == pytest.approx(-1.0)
    # nan counts as 0: dropping a zero-effect source changes nothing
    partial = effects.copy()
    partial[4] = np.nan
    assert M.lds(partial, masks, outputs) == pytest.approx(1.0)
    assert math.isnan(M.lds(np.zeros(6), masks, outputs))


def test_gold_recall():
    pids = ["a", "a", "b", "c", "c", "d"]
    s = np.array([0.1, 5.0, 4.0, 0.2, 3.0, np.nan])
    assert M.top_k_passages(s, pids, 2) == ["a", "b"]
    assert M.gold_recall_at_k(s, pids, {"a", "c"}, 2) == 0.5
    assert M.gold_recall_at_k(s, pids, {"a", "c"}, 3) == 1.0
    assert M.gold_recall_at_k(s, pids, {"d"}, 3) == 0.0  # unscored never retrieved
    assert math.isnan(M.gold_recall_at_k(s, pids, set(), 2))
