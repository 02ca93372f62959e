"""Section (f) of `genlearn demo`: GAN generators on 3x3 bars-and-stripes, scored exactly by quadrature over z;
summary.json as a strict JSON parser reads it. (The whole demo end to end, its summary read strictly, its report
and page, is tests/test_cli.py::test_demo_fast.)"""
import json
import math

import pytest
import torch

from genlearn.demo import GAN_EPOCHS, _gan_reading, gan_section, pattern_scores, plot_gan_patterns, write_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def gan():
    """The section as fast mode runs it (a few seconds)."""
    return gan_section(*GAN_EPOCHS[True])


def test_gan_section_has_the_three_fits_on_the_14_patterns(gan):
    assert [f["fit"] for f in gan["fits"]] == ["kl", "js", "maximum likelihood"]
    assert [f["rule"] for f in gan["fits"]] == ["f-gan", "f-gan", "quadrature-likelihood"]
    assert [f["rule_settings"].get("divergence") for f in gan["fits"]] == ["kl", "js", None]
    patterns = torch.tensor(gan["patterns"])
    assert patterns.shape == (14, 9) and gan["n_states"] == 512
    assert torch.unique(patterns, dim=0).shape[0] == 14
    for image in patterns.reshape(14, 3, 3):  # bars (constant columns) or stripes (constant rows)
        assert bool((image == image[:1]).all()) or bool((image == image[:, :1]).all())


def test_gan_section_probabilities_are_exact_and_consistent(gan):
    for f in gan["fits"]:
        p = f["pattern_probabilities"]
        assert len(p) == 14 and all(0 <= x <= 1 for x in p)
        # P over all 2^9 states sums to 1 (quadrature over z), and patterns + outside is that same total
        assert f["total_probability"] == pytest.approx(1.0, abs=1e-6)
        assert sum(p) + f["mass_outside"] == pytest.approx(1.0, abs=1e-6)
        assert 0 < f["mass_outside"] < 1
        # the KLs: nonnegative, D_KL(Q||P) recounted from the per-pattern probabilities (Q = 1/14 on each)
        assert f["kl_qp"] >= 0 and f["kl_pq_on_patterns"] >= 0
        assert f["kl_qp"] == pytest.approx(sum(math.log((1 / 14) / x) for x in p) / 14, rel=1e-9)
        cond = [x / sum(p) for x in p]
        assert f["kl_pq_on_patterns"] == pytest.approx(sum(c * math.log(c * 14) for c in cond), rel=1e-9, abs=1e-12)
        assert f["kl_pq"] is None  # mass outside the patterns, where Q = 0: D_KL(P||Q) is infinite
        # covered: an integer in 0..14, the number of patterns with P >= 1/28
        assert isinstance(f["patterns_covered"], int) and 0 <= f["patterns_covered"] <= 14
        assert f["patterns_covered"] == sum(x >= 1 / 28 for x in p)
        assert f["seconds"] > 0
    # fast mode's maximum-likelihood fit has moved far enough that the count above is not all zeros
    assert any(f["patterns_covered"] > 0 for f in gan["fits"]), "no covered pattern: the recount tests nothing"


def test_pattern_scores_agree_with_the_exact_kl_of_the_package():
    """D_KL(Q||P) of pattern_scores against genlearn.kl_divergence (exact enumeration of the 512 states) for a GAN
    from the registry, and the order of the per-pattern probabilities."""
    from genlearn.data.registry import load_dataset
    from genlearn.data.synthetic import bars_and_stripes_patterns
    from genlearn.divergence import kl_divergence
    from genlearn.models.registry import build_model

    ds = load_dataset("bars-and-stripes:size=3,n=200,seed=1")
    model = build_model("gan", ds, init_seed=3)
    patterns = bars_and_stripes_patterns(3)
    scores = pattern_scores(model, patterns)
    assert scores["kl_qp"] == pytest.approx(kl_divergence(ds.truth, model).value, rel=1e-4)
    # the probabilities come in the order of the patterns given (the figure labels its bars with them)
    reversed_scores = pattern_scores(model, patterns.flip(0))
    assert reversed_scores["pattern_probabilities"] == pytest.approx(scores["pattern_probabilities"][::-1])
    assert len(set(scores["pattern_probabilities"])) == 14
    assert scores["patterns"] == 14
    assert scores["total_probability"] == pytest.approx(1.0, abs=1e-6)


def test_gan_figure_is_a_png(gan, tmp_path):
    path = tmp_path / "gan_patterns.png"
    plot_gan_patterns(gan, path)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000


def _fit(name, covered, outside):
    return {"fit": name, "patterns": 14, "patterns_covered": covered, "mass_outside": outside, "kl_qp": 0.1}


def test_gan_reading_says_what_the_numbers_show():
    text = _gan_reading([_fit("kl", 10, 0.45), _fit("js", 6, 0.05), _fit("maximum likelihood", 14, 0.07)])
    assert max(len(line) for line in text.splitlines()) <= 115
    text = text.replace("\n", " ")
    assert "kl covers 10 of the 14 patterns with 45% of its mass outside them; js covers 6 with 5% outside" in text
    assert "kl is mode covering" in text and "js is mode seeking" in text
    assert "all 14 patterns covered" in text
    not_separated = _gan_reading([_fit("kl", 0, 0.97), _fit("js", 0, 0.97), _fit("maximum likelihood", 12, 0.2)])
    text = not_separated.replace("\n", " ")
    assert "does not show that separation" in text and "mode covering" not in text
    assert "12 of the 14 patterns covered" in text


def _strict(text: str):
    """json.loads refusing NaN and infinities, as JavaScript's JSON.parse does."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_write_summary_writes_nan_and_infinity_as_null(tmp_path):
    write_summary(tmp_path / "s.json", {"history": [{"loss": float("nan"), "kl": 0.5}], "kl_pq": float("inf"),
                                        "rows": (1.0, float("-inf"))})
    assert _strict((tmp_path / "s.json").read_text()) == {"history": [{"loss": None, "kl": 0.5}], "kl_pq": None,
                                                          "rows": [1.0, None]}
