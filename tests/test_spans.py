"""One attribution answers every span of its answer: per-span scores read from the
effects equal a direct run of the method on that span (LOO, AT2, ContextCite with the same
masks, proxy), and citations run a method's ablations once, not once per sentence."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from attribot_rag import Attributor, InputError, cite  # noqa: E402
from attribot_rag.models import get_model  # noqa: E402

from test_proxy import _tiny_model  # noqa: E402
from travel_fixture import ANSWER, PASSAGES, QUESTION  # noqa: E402

TWO_SENTENCES = ANSWER + " Meals are covered up to $95 a day."


@pytest.fixture(scope="module")
def attributor():
    return Attributor(get_model("smollm2-135m"), max_new_tokens=24)


@pytest.fixture(scope="module")
def second_span():
    start = TWO_SENTENCES.index("Meals")
    return (start, len(TWO_SENTENCES))


@pytest.mark.parametrize(
    "method, options",
    [("loo", {}), ("at2", {}), ("attention", {}), ("contextcite", {"ablations": 16}), ("similarity", {})],
)
def test_a_span_read_from_one_attribution_equals_a_direct_run(attributor, second_span, method, options):
    whole = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method=method, level="sentence", **options)
    part = whole.for_span(second_span)
    direct = attributor.attribute(
        QUESTION, PASSAGES, TWO_SENTENCES, method=method, level="sentence", span=second_span, **options
    )
    np.testing.assert_allclose(part.scores, direct.scores, rtol=1e-6, atol=1e-6)
    assert part.target_tokens == direct.target_tokens and part.target_span == direct.target_span
    assert part.forward_passes == 0  # a query, not a run
    assert not np.allclose(part.scores, whole.scores)  # the span really is another question


def test_a_proxy_span_equals_a_direct_proxy_run(attributor, second_span):
    proxy = _tiny_model()  # another tokenizer: the span maps to the proxy's tokens by characters
    whole = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method="proxy", proxy=proxy)
    part = whole.for_span(second_span)
    direct = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method="proxy", proxy=proxy, span=second_span)
    np.testing.assert_allclose(part.scores, direct.scores, rtol=1e-6, atol=1e-6)
    assert part.info["proxy_target_tokens"] == direct.info["proxy_target_tokens"]
    assert part.info["proxy_target_tokens"][0] > 0


def test_per_sentence_covers_the_answer(attributor):
    whole = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method="loo", level="sentence")
    spans = [span for span, _ in whole.per_sentence()]
    assert [TWO_SENTENCES[a:b] for a, b in spans] == [ANSWER, "Meals are covered up to $95 a day."]
    # LOO is additive over tokens: the sentences' scores sum to the whole answer's
    total = sum(att.scores for _, att in whole.per_sentence())
    np.testing.assert_allclose(total, whole.scores, atol=1e-6)


def test_contextcite_citations_run_the_ablations_once(attributor):
    options = {"ablations": 16}
    cited = cite(attributor, QUESTION, PASSAGES, TWO_SENTENCES, method="contextcite", evidence="used", min_context_gain=None, **options)
    assert len(cited.sentences) == 2
    one_run = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method="contextcite", level="sentence", **options)
    # the full pass plus one set of ablation batches, whatever the number of sentences
    assert cited.forward_passes == one_run.forward_passes
    assert cited.forward_tokens == one_run.forward_tokens
    # the context-gain gate adds its passes once per answer, not per sentence: the
    # passage-free prompt, and the full pass (ContextCite's stays with its own effects)
    gated = cite(attributor, QUESTION, PASSAGES, TWO_SENTENCES, method="contextcite", evidence="used", **options)
    assert gated.forward_passes == one_run.forward_passes + 2


@pytest.mark.parametrize("passage_method", ["loo", "auto"])
def test_hierarchical_spans_share_the_work_and_match_a_direct_run(attributor, second_span, passage_method):
    opts = {"method": "hierarchical", "level": "sentence", "passage_method": passage_method}
    whole = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, **opts)
    part = whole.for_span(second_span)
    direct = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, span=second_span, **opts)
    # The span's sentence ablations ride in batches with other rows than in the direct
    # run; batch composition moves fp32 log-probabilities by ~1e-5 nats.
    np.testing.assert_allclose(part.scores, direct.scores, rtol=0, atol=1e-4, equal_nan=True)
    assert part.info["kept_passages"] == direct.info["kept_passages"]
    assert part.forward_passes < direct.forward_passes  # the passage ranking was reused


def test_a_span_outside_the_answer_is_refused(attributor):
    whole = attributor.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method="at2")
    with pytest.raises(InputError, match="span"):
        whole.for_span((0, len(TWO_SENTENCES) + 5))


def test_span_queries_on_a_tiny_model(second_span):
    """The fast tier's span check (a tiny random model, no weights loaded): a span read
    from one attribution equals a direct run on it, and a span outside the answer is refused."""
    att = Attributor(_tiny_model(), max_new_tokens=4)
    whole = att.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method="loo", level="sentence")
    part = whole.for_span(second_span)
    direct = att.attribute(QUESTION, PASSAGES, TWO_SENTENCES, method="loo", level="sentence", span=second_span)
    np.testing.assert_allclose(part.scores, direct.scores, rtol=1e-6, atol=1e-6)
    assert part.target_span == direct.target_span and part.forward_passes == 0
    assert [TWO_SENTENCES[a:b] for (a, b), _ in whole.per_sentence()] == [ANSWER, TWO_SENTENCES[second_span[0]:]]
    with pytest.raises(InputError, match="span"):
        whole.for_span((0, len(TWO_SENTENCES) + 5))
