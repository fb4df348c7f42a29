"""Passage structure as companion features: does where a candidate sits in its passage
tell the companion model more than "same passage" and "lead" do?

HotpotQA's supporting facts in one passage are mostly neighbours (a lead and the
sentence after it), and early in the passage. Two features say so, from the passage
indices the citation step already has (no model pass):

``adjacent``  1 when the candidate is next to a source the sentence cites, in its passage
``position``  log(1 + the candidate's index within its passage)

This replays the choice split (cite-eval's records, nothing is recorded) with the
companion features extended by those two, against the shipped features, each setting's
companion model fitted per fold under that setting (``companion_choice.py --bridges``'s
procedure, the measured optimism taken off the room). The library is patched for the
run only; nothing it ships changes.

    python benchmarks/companion_structure.py [--structure-only]
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

sys.path.insert(0, "benchmarks")
import companion_choice  # noqa: E402
from companion_choice import MODEL, choice_items, cross_validated  # noqa: E402

from attribot_rag.citations import CitationPolicy, calibration_for  # noqa: E402
from attribot_rag.citations import companions, policy  # noqa: E402
from attribot_rag.evaluation import calibrate  # noqa: E402

STRUCTURE = ("adjacent", "position")
shipped_features, SHIPPED = companions.candidate_features, companions.FEATURES


def structured_features(scores, chosen, terms, passage_of):
    """The shipped features of each candidate, then ``STRUCTURE``'s."""
    extended, companions.FEATURES = companions.FEATURES, SHIPPED  # the shipped function reads it
    try:
        candidates, x = shipped_features(scores, chosen, terms, passage_of)
    finally:
        companions.FEATURES = extended
    start = companions.first_sentences(passage_of)
    cited = set(chosen)
    extra = [
        [float(any(j in cited and passage_of[j] == passage_of[i] for j in (i - 1, i + 1) if 0 <= j < len(passage_of))),
         float(np.log1p(i - start[passage_of[i]]))]
        for i in candidates
    ]
    return candidates, np.hstack([x, np.array(extra, dtype=np.float64).reshape(len(candidates), len(STRUCTURE))])


@contextmanager
def structure_features():
    """The library's companion features extended by ``STRUCTURE`` for the block."""
    saved, loaded = companions.FEATURES, calibration_for(MODEL)
    # the shipped companion model has the shipped features; each fold refits its own
    companion_choice.calibration_for = lambda model: replace(loaded, companion=None)
    companions.FEATURES = saved + STRUCTURE
    companions.CompanionModel.__init__.__defaults__ = (companions.FEATURES,)  # what fit() builds
    for module in (policy, calibrate):
        module.candidate_features = structured_features
    try:
        yield
    finally:
        companions.FEATURES = saved
        companion_choice.calibration_for = calibration_for
        companions.CompanionModel.__init__.__defaults__ = (saved,)
        for module in (policy, calibrate):
            module.candidate_features = shipped_features


def grid() -> dict[str, CitationPolicy]:
    p = CitationPolicy()
    return {f"probability {t}": p.with_options(companion_probability=t) for t in (0.35, 0.4, 0.45, 0.5, 0.55)}


def main() -> None:
    items = choice_items()
    print(f"{len({ex.id for ex, _, _ in items})} examples, {len(items)} answers")
    print("| setting | quality | room, optimism off | text: precision / recall / uncited | own |")
    if "--structure-only" not in sys.argv:
        print("| shipped features |")
        cross_validated(items, grid(), fit_per_setting=True, corrected=True)
    with structure_features():
        print("| + adjacent, position |")
        cross_validated(items, grid(), fit_per_setting=True, corrected=True)


if __name__ == "__main__":
    main()
