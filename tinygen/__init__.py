"""tinygen: a TinyML firmware generator (Keras/TFLite int8 -> CMSIS-NN C -> STM32 firmware)."""

from pathlib import Path

__version__ = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
