"""Fixtures shared by several test modules.

``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) makes the property tests draw the same examples
on every run, so that a CI result does not depend on the draw; without it each run draws anew."""

import os

import pandas as pd
import pytest
from hypothesis import settings

from tkd.data import load_dataset
from tkd.live import EpochLog

settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="module")
def small():
    """Digits with 200 class-balanced training images (seed 0) and the full test split."""
    data = load_dataset("digits")
    data.train = data.train.subset(200, seed=0)
    return data


@pytest.fixture
def live_history(monkeypatch) -> list[list[int]]:
    """After each epoch a run logs, the epochs its ``history.csv`` holds, read from disk."""
    seen = []
    original = EpochLog.__call__

    def spy(self, row):
        original(self, row)
        seen.append(pd.read_csv(self.path)["epoch"].tolist())

    monkeypatch.setattr(EpochLog, "__call__", spy)
    return seen
