"""Shared fixtures of the test suite."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def ax():
    """A fresh matplotlib axes, closed after the test."""
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)
