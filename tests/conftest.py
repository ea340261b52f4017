"""Shared fixtures: paths to the shared reference models, CMSIS-NN availability, quiet TF."""

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MLPERF = SHARED / "models" / "mlperf-tiny"


def shared_model(name: str) -> Path:
    p = MLPERF / name
    if not p.exists():
        pytest.skip(f"{p} not found: the shared MLPerf Tiny models live in ../shared beside the checkout")
    return p


def backends() -> list:
    """Both kernel backends; cmsis-nn skips with a reason when CMSIS_NN_PATH is unset."""
    skip = pytest.mark.skipif(not os.environ.get("CMSIS_NN_PATH"),
                              reason="CMSIS_NN_PATH not set: CMSIS-NN tests skipped (see README)")
    return ["portable", pytest.param("cmsis-nn", marks=skip)]
