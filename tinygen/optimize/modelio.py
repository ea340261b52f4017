"""Loading models as tf_keras (Keras 2) models; Keras-3 models are rebuilt layer by layer
from their configs with the weights copied over."""

from __future__ import annotations

from pathlib import Path

from tinygen.errors import ModelError, UnsupportedError

from ._tf import keras

# Keras-3 config keys that tf_keras either names differently or does not need (weights are copied)
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_DROP_KEYS = {"dtype", "build_config", "compile_config", "quantization_config", "lora_rank", "lora_alpha",
              "synchronized", "seed", "module", "registered_name"}


def load_model(path: str | Path) -> keras.Model:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; give a Keras .h5 or .keras model")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as legacy_error:  # not a tf_keras file: try Keras 3
        try:
            import keras as keras3

            k3 = keras3.saving.load_model(path, compile=False)
        except Exception as e:
            raise ModelError(
                f"{path}: cannot load the model with tf_keras ({legacy_error}) nor Keras 3 ({e}); "
                "save it with model.save('model.keras') or as .h5"
            ) from e
        return from_keras3(k3)


def _tf_keras_layer(layer):
    kind = type(layer).__name__
    cls = getattr(keras.layers, kind, None)
    if cls is None:
        raise UnsupportedError(f"layer {layer.name!r}: Keras-3 layer type {kind} has no tf_keras equivalent")
    cfg = {k: v for k, v in layer.get_config().items()
           if k not in _DROP_KEYS and not k.endswith(_DROP_SUFFIXES)}
    for _ in range(len(cfg) + 1):
        try:
            return cls.from_config(cfg)
        except TypeError as e:  # an argument tf_keras does not know: drop it and retry
            bad = [k for k in cfg if f"'{k}'" in str(e)]
            if not bad:
                raise UnsupportedError(f"layer {layer.name!r} ({kind}): cannot rebuild as tf_keras: {e}") from e
            for k in bad:
                cfg.pop(k)
    raise UnsupportedError(f"layer {layer.name!r} ({kind}): cannot rebuild as tf_keras")


def from_keras3(k3) -> keras.Model:
    """Rebuild a Keras-3 Sequential/functional model as a tf_keras functional model."""
    if len(k3.inputs) != 1 or len(k3.outputs) != 1:
        raise UnsupportedError(f"model {k3.name!r}: only single-input, single-output models are supported")
    inp = k3.inputs[0]
    x = keras.Input(shape=tuple(inp.shape[1:]), name=getattr(inp, "name", "input").split(":")[0])
    if type(k3).__name__ == "Sequential":
        out = x
        for layer in k3.layers:
            new = _tf_keras_layer(layer)
            out = new(out)
            new.set_weights(layer.get_weights())
        return keras.Model(x, out, name=k3.name)
    cfg = k3.get_config()  # the functional graph, by layer name, as Keras 3 serializes it
    tensors = {cfg["input_layers"][0] if isinstance(cfg["input_layers"][0], str) else cfg["input_layers"][0][0]: x}
    for lc in cfg["layers"]:
        if lc["class_name"] == "InputLayer":
            continue
        if len(lc["inbound_nodes"]) != 1:
            raise UnsupportedError(f"layer {lc['name']!r} is used {len(lc['inbound_nodes'])} times (shared layer)")
        ins = [tensors[name] for name in _history_names(lc["inbound_nodes"][0])]
        layer = k3.get_layer(lc["name"])
        new = _tf_keras_layer(layer)
        tensors[lc["name"]] = new(ins if len(ins) > 1 else ins[0])
        new.set_weights(layer.get_weights())
    out = cfg["output_layers"][0] if isinstance(cfg["output_layers"][0], str) else cfg["output_layers"][0][0]
    return keras.Model(x, tensors[out], name=k3.name)


def _history_names(obj) -> list[str]:
    """Names of the layers whose tensors appear in a serialized Keras-3 inbound node."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"][0]]
        return [n for v in obj.values() for n in _history_names(v)]
    if isinstance(obj, (list, tuple)):
        return [n for v in obj for n in _history_names(v)]
    return []
