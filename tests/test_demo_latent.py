"""Section (g) of `genlearn demo`: a 2-D-latent VAE on the digits, its test NLL exact by quadrature over z and
every estimate (-ELBO, importance sampling with k samples, forward AIS) set against it."""
import pytest

from genlearn.demo_latent import LATENT_SETTINGS, latent_report, latent_section, latent_table_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    """The section as fast mode runs it (a few seconds), with its figures."""
    out = tmp_path_factory.mktemp("latent")
    return latent_section(*LATENT_SETTINGS[True], out), out


def test_every_estimate_bounds_the_exact_nll_from_above(section):
    r, _ = section
    exact = r["test_nll_exact"]
    # the ELBO with 1,000 samples per row is E_q[log w] to ~1e-3: strictly below log P(x) for a Gaussian q
    assert r["test_neg_elbo"] > exact + 0.05
    assert r["variational_gap"] == pytest.approx(r["test_neg_elbo"] - exact)
    ladder = [row["nll_estimate"] for row in r["is_ladder"]]
    assert [row["k"] for row in r["is_ladder"]] == list(LATENT_SETTINGS[True][2])
    # IS with k samples: an upper bound of the NLL in expectation over 269 rows (noise << the margins here), and
    # the k = 1 estimate is a one-sample -ELBO
    assert all(v > exact - 0.02 for v in ladder)
    assert ladder[0] == pytest.approx(r["test_neg_elbo"], abs=0.15)
    # more samples, tighter: strictly between k = 1 and k = 100 (the gap there is far above the noise)
    assert ladder[-1] < ladder[0] - 0.1
    assert r["ais_nll"] > exact - 0.05


def test_training_kl_and_its_elbo_bound(section):
    r, _ = section
    assert r["entropy_empirical"] > 0
    assert r["kl_empirical"] == pytest.approx(r["train_nll_exact"] - r["entropy_empirical"])
    assert 0 < r["kl_empirical"] < r["kl_empirical_upper"]  # D_KL(Q^||P) >= 0 and the ELBO bounds it


def test_figures_and_text(section):
    r, out = section
    for name in ("vae_bounds.png", "vae_manifold.png", "vae_encodings.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, name
    report = latent_report(r, product_nll=30.0)
    assert f"**{r['test_nll_exact']:.3f}**" in report and "30.000" in report
    assert report.count("| importance sampling, k =") == len(r["is_ladder"])
    lines = latent_table_text(r)
    assert lines[0].startswith("(g)") and f"exact {r['test_nll_exact']:.3f}" in lines[1]
