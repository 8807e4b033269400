import os
import shutil
import sys
from pathlib import Path

# impl="triton" runs on CPU tensors only in Triton's interpreter, and triton.language's own
# helpers pick it when triton is first imported (torch may import it), so it is switched on
# before torch is imported; it changes nothing else (auto picks triton only for CUDA tensors).
os.environ.setdefault("TRITON_INTERPRET", "1")
# `make test` runs two pytest workers on two cores: one thread each, or torch's OpenMP threads
# oversubscribe the cores and spin against each other (the suite ran slower than serial)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

# tests import the plain references in tests/norm_reference.py
sys.path.insert(0, str(Path(__file__).parent))
# foolbox imports GitPython, which insists on a git executable unless told otherwise
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same seed and the same torch thread count: a command run
    in-process with --threads 1 must not change the arithmetic of the tests after it."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


@pytest.fixture
def triton_interpreter():
    """The Triton kernels, in the interpreter switched on above (for ``impl="triton"`` tests)."""
    pytest.importorskip("triton")
    from triton.runtime.interpreter import InterpretedFunction

    from robustbench_norm.norms import triton_layers

    assert triton_layers.interpreting(), "TRITON_INTERPRET=0 in the environment: unset it"
    kernels = triton_layers._kernels()
    assert isinstance(kernels.moments_kernel, InterpretedFunction)
    return triton_layers
