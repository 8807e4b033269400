import os
import sys
from pathlib import Path

import pytest
import torch

# tests import the plain references in tests/norm_reference.py
sys.path.insert(0, str(Path(__file__).parent))
# foolbox imports GitPython, which insists on a git executable unless told otherwise
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
