import os
from pathlib import Path

import pytest
import torch

# The unit tests use small tensors, for which one thread is fastest (no OpenMP spin-waiting on a busy machine).
torch.set_num_threads(1)
# Every process of the suite (and the CLI runs it starts) times its kernel choices itself: no values remembered from
# the user's cache (genlearn.timing_cache), so that tests that mock the timings see their mocks
os.environ["GENLEARN_TIMING_CACHE"] = "off"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (benchmark data); tests that use it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture
def bfloat16_honoured(monkeypatch):
    """Declares the CPU bfloat16-capable, so that an explicit matmul_precision="bfloat16" runs bfloat16 products
    even where they are emulated (AVX2: it would resolve to float32 with a warning): for the tests of those
    products' numbers, not their speed."""
    from genlearn import precision

    monkeypatch.setattr(precision, "bf16_capable", lambda device_type="cpu": True)


@pytest.fixture(autouse=True)
def _quiet_machine(request, monkeypatch):
    """The CLI without --threads measures the other work on this machine (genlearn.cpu_load) and prints a note when
    cores are busy: the suite's commands see a quiet machine, so that their stderr does not depend on what else
    runs beside the tests (test_cpu_load tests the measurement and the note themselves)."""
    if request.module.__name__.rsplit(".", 1)[-1] != "test_cpu_load":
        from genlearn import cpu_load

        monkeypatch.setattr(cpu_load, "busy_cores", lambda *args, **kwargs: 0.0)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    os.environ.setdefault("MPLBACKEND", "Agg")
    yield


@pytest.fixture(autouse=True)
def _one_thread_per_test():
    """Every test starts and ends with one torch thread (and so one numba thread for the NADE kernels), whatever it
    set itself: a CLI run with --threads, or a recipe's own thread count, changes the process-wide setting, and
    a module-scoped fixture of the next file runs before this fixture does (a sum over 2 threads is not
    bit-identical to a sum over 1)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def cli(capsys):
    """cli(argv) runs `genlearn ARGV` in-process: (exit code, stdout, stderr); argparse's SystemExit gives its code."""
    from genlearn.cli import main

    def run(argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def refused(cli):
    """refused(argv, words) runs `genlearn ARGV` and checks the package's refusal: exit code 2 and exactly one
    non-empty stderr line, `genlearn: error: ...` holding `words`, no traceback. Returns that line."""
    def check(argv, words):
        code, _, err = cli(argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (code, err)
        assert len(lines) == 1 and lines[0].startswith("genlearn: error:"), err
        assert "Traceback" not in err
        assert words in lines[0], lines[0]
        return lines[0]

    return check
