"""For every test and doctest: camkit's warnings are errors (a test that expects one says so
with pytest.warns), doctests run from the same seed (the examples draw random inputs; a
fixed seed makes a failure repeat), and PIL's Image.open is PIL's own (importing ultralytics,
a test dependency, replaces it with one that tries to pip-install a HEIF plugin whenever an
image cannot be read)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest
import torch
from PIL import Image

PIL_OPEN = Image.open  # before any test module imports ultralytics
# ultralytics, a test dependency, pings its servers and pip-installs what it misses unless told
# not to: the tests never reach the network.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")


@pytest.fixture(autouse=True)
def _seeded_doctest(request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _camkit_warnings_are_errors() -> Iterator[None]:
    # Set here, not as an ini filterwarnings: that would import camkit before coverage starts.
    from camkit.errors import CamkitWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", CamkitWarning)
        yield


@pytest.fixture(autouse=True)
def _pil_opens_images() -> None:
    Image.open = PIL_OPEN
