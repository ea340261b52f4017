"""A functional tf_keras model as a list of nodes, and rebuilding it with layers replaced.

Both the depthwise-separable rewrite and channel pruning rebuild the model layer by layer
in topological order; :func:`rebuild` is the one loop they share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tinygen.errors import UnsupportedError

from ._tf import keras


@dataclass
class Node:
    layer: keras.layers.Layer
    inputs: list[str]  # names of the layers whose outputs feed this one

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def kind(self) -> str:
        return type(self.layer).__name__


def nodes(model: keras.Model) -> list[Node]:
    """The model's layers in topological order with their inbound layer names."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "tinygen optimize handles single-input, single-output models only"
        )
    out = [Node(model.inputs[0]._keras_history.layer, [])]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            raise UnsupportedError(
                f"layer {layer.name!r} is a nested model; flatten it into one functional model first"
            )
        if len(layer._inbound_nodes) != 1:
            raise UnsupportedError(
                f"layer {layer.name!r} is called {len(layer._inbound_nodes)} times (shared layer); "
                "tinygen optimize needs each layer used once"
            )
        ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        out.append(Node(layer, [t._keras_history.layer.name for t in ins]))
    return out


def output_name(model: keras.Model) -> str:
    return model.outputs[0]._keras_history.layer.name


def clone_layer(layer: keras.layers.Layer, **overrides) -> keras.layers.Layer:
    """A fresh layer of the same class and config (with ``overrides``), same name."""
    cfg = layer.get_config()
    cfg.update(overrides)
    return type(layer).from_config(cfg)


def call(layer: keras.layers.Layer, inputs: list, weights: list | None):
    """Call ``layer`` on ``inputs`` (a list of tensors) and then set ``weights``."""
    out = layer(inputs if len(inputs) > 1 else inputs[0])
    if weights is not None:
        layer.set_weights(weights)
    return out


Replace = Callable[[Node, list], "object | None"]


def rebuild(model: keras.Model, replace: Replace, name: str | None = None) -> keras.Model:
    """Rebuild ``model``; ``replace(node, new_inputs)`` returns the node's new output tensor,
    or None to keep a fresh copy of the layer with its weights."""
    graph = nodes(model)
    inp = graph[0].layer
    x = keras.Input(batch_shape=model.inputs[0].shape, name=inp.name, dtype=model.inputs[0].dtype)
    tensors = {inp.name: x}
    for node in graph[1:]:
        ins = [tensors[n] for n in node.inputs]
        out = replace(node, ins)
        if out is None:
            out = call(clone_layer(node.layer), ins, node.layer.get_weights())
        tensors[node.name] = out
    return keras.Model(x, tensors[output_name(model)], name=name or model.name)
