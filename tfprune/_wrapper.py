"""`PruningWrapper`: a Keras layer wrapper that masks the weights it wraps."""

from __future__ import annotations

import inspect
import re

import keras
import numpy as np
from keras import ops

from tfprune import _mask_math
from tfprune import _registry
from tfprune import schedules as schedules_lib
from tfprune._validation import received


class _MaskConstraint:
    """Variable constraint that zeroes pruned weights after every update.

    Keras optimizers apply `variable.constraint` after each step, so weights
    pruned by the mask stay exactly zero in the variable itself; a model
    saved at any moment is as sparse as its masks. A constraint the user set
    on the variable runs first.
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return ops.multiply(w, ops.cast(self.mask, w.dtype))


def _accepts(fn, name) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _builds_from_one_shape(layer) -> bool:
    """True if `layer.build(input_shape)` creates the layer's weights.

    False for layers that only get their weights when first called: those
    whose `build` is Keras' default (custom blocks that create sub-layers in
    `__init__`) or takes several shapes (MultiHeadAttention).
    """
    if getattr(layer.build, "_is_default", False):
        return False
    params = [
        p
        for p in inspect.signature(layer.build).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(params) <= 1


@keras.saving.register_keras_serializable("tfprune")
class PruningWrapper(keras.layers.Wrapper):
    """Prunes the weights of a layer during training.

    The wrapper keeps one mask per prunable weight (kernels, embeddings,
    recurrent kernels; never biases or normalization parameters). Masks act
    in the forward pass, so pruned weights contribute nothing and receive a
    zero gradient, and a variable constraint keeps them exactly zero in the
    variable after every optimizer step. `tfprune.PruningCallback` updates
    the masks during `fit` following the sparsity schedule.

    Any layer whose weights tfprune can find is accepted: Dense, EinsumDense,
    convolutions, Embedding, MultiHeadAttention, SimpleRNN/LSTM/GRU (each
    gate block gets its own threshold), Bidirectional, TimeDistributed,
    nested models, custom layers that hold such layers, and layers that
    implement `get_prunable_weights()`.

    Args:
        layer: the `keras.layers.Layer` to prune.
        sparsity: a number in [0, 1) or a `tfprune.schedules.PruningSchedule`.
        include: optional list of index paths (lists of child positions, see
            `tfprune.prune`) that restrict pruning to some of the layers
            inside `layer`. `None` (default) prunes all of them.
        **kwargs: base layer arguments, such as `name`.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((20,)),
        tfprune.PruningWrapper(keras.layers.Dense(64, activation="relu"), sparsity=0.8),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=3, callbacks=[tfprune.PruningCallback()])
    ```
    """

    def __init__(self, layer, sparsity, include=None, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "`layer` must be a `keras.layers.Layer` instance. "
                f"{received('layer', layer)}"
            )
        if isinstance(layer, PruningWrapper):
            raise ValueError(
                f"Layer '{layer.layer.name}' is already wrapped in a "
                "PruningWrapper; a layer can be wrapped only once. "
                f"Received: layer={layer.name}"
            )
        nested = [
            sub.name
            for sub in layer._flatten_layers(include_self=False)
            if isinstance(sub, PruningWrapper)
        ]
        if nested:
            raise ValueError(
                f"Layer '{layer.name}' already contains PruningWrapper layers "
                f"{nested}; a layer can be wrapped only once. "
                f"Received: layer={layer.name}"
            )
        self.schedule = schedules_lib.get(sparsity, "sparsity")
        if include is not None:
            include = [tuple(int(i) for i in p) for p in include]
        self.include = include
        kwargs.setdefault("name", f"pruned_{layer.name}")
        super().__init__(layer, **kwargs)
        self._call_passes_training = _accepts(layer.call, "training")
        self.supports_masking = layer.supports_masking
        self._pruned = []
        self._masks = []
        self._original_constraints = []
        self.pruning_step = None
        # Set by `PruningCallback.on_train_begin` and cleared at
        # `on_train_end`: training a pruned layer without it is an error.
        self._callback_active = False

    # ----------------------------------------------------------------- build
    def build(self, input_shape=None):
        if not self.layer.built:
            if not _builds_from_one_shape(self.layer):
                # Built by its first (possibly symbolic) call instead; the
                # masks are created right after it.
                return
            self.layer.build(input_shape)
        # A layer can claim to be built and still lack its weights (a custom
        # block rebuilt from a config); then the masks wait for the call.
        self._create_masks(strict=False)

    def _create_masks(self, strict=True):
        if self.pruning_step is not None:
            return
        self._pruned = _registry.prunable_weights(self.layer, include=self.include)
        if not self._pruned:
            if not strict:
                return
            raise ValueError(
                f"Layer '{self.layer.name}' ({type(self.layer).__name__}) has no "
                "weight that tfprune can prune (supported: kernels, embeddings "
                "and recurrent kernels of the layers listed in the docs, or a "
                "`get_prunable_weights()` method). "
                f"Received: layer={self.layer.name}"
            )
        was_locked = self._tracker.locked
        self._tracker.unlock()
        try:
            for pw in self._pruned:
                mask = self.add_weight(
                    name=re.sub(r"[^A-Za-z0-9_]", "_", f"{pw.name}_mask"),
                    shape=pw.variable.shape,
                    dtype=pw.variable.dtype,
                    initializer="ones",
                    trainable=False,
                    aggregation="only_first_replica",
                )
                self._masks.append(mask)
            self.pruning_step = self.add_weight(
                name="pruning_step",
                shape=(),
                dtype="int64",
                initializer=keras.initializers.Constant(-1),
                trainable=False,
                aggregation="only_first_replica",
            )
        finally:
            if was_locked:
                self._tracker.lock()
        for pw, mask in zip(self._pruned, self._masks):
            self._original_constraints.append(pw.variable.constraint)
            pw.variable.constraint = _MaskConstraint(mask, pw.variable.constraint)

    def _ensure_masks(self, inputs, args, kwargs):
        if self.pruning_step is None:
            self._create_masks(strict=False)
        if self.pruning_step is None:
            self.layer(inputs, *args, **kwargs)  # builds the inner layer
            self._create_masks()

    # -------------------------------------------------------------- forward
    def _inner_kwargs(self, training, kwargs):
        # The Keras mask of the inputs travels with the input tensors and is
        # picked up by the inner layer's own `__call__`.
        kwargs = dict(kwargs)
        if self._call_passes_training and training is not None:
            kwargs["training"] = training
        return kwargs

    def call(self, inputs, *args, training=None, **kwargs):
        kwargs = self._inner_kwargs(training, kwargs)
        self._ensure_masks(inputs, args, kwargs)
        if training is True and not self._callback_active:
            raise RuntimeError(
                f"PruningWrapper '{self.name}' is being trained without "
                "`tfprune.PruningCallback`, so its masks would never be "
                "updated and the model would train dense. Pass "
                "`callbacks=[tfprune.PruningCallback()]` to `fit` (in a custom "
                "loop, call the callback's hooks; see the docs)."
            )
        mapping = [
            (pw.variable, ops.multiply(pw.variable, ops.cast(m, pw.variable.dtype)))
            for pw, m in zip(self._pruned, self._masks)
        ]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            outputs = self.layer(inputs, *args, **kwargs)
        # Variables other than the masked weights (seed generators of dropout,
        # moving statistics, RNN states) were updated inside the scope only.
        masked = {id(pw.variable) for pw in self._pruned}
        for variable in self.layer.variables:
            if id(variable) not in masked:
                value = scope.get_current_value(variable)
                if value is not None:
                    variable.assign(value)
        if scope.losses:
            self.add_loss(scope.losses)
        return outputs

    def compute_output_spec(self, inputs, *args, training=None, **kwargs):
        kwargs = self._inner_kwargs(training, kwargs)
        self._ensure_masks(inputs, args, kwargs)
        return self.layer.compute_output_spec(inputs, *args, **kwargs)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # ------------------------------------------------------------- pruning
    @property
    def pruned_weights(self) -> list:
        """The `PrunableWeight`s this wrapper masks, in mask order."""
        return list(self._pruned)

    @property
    def masks(self) -> list:
        """The mask variables, one per entry of `pruned_weights`."""
        return list(self._masks)

    def masked_values(self) -> list:
        """Current effective values (weight x mask) of the pruned weights."""
        return [
            ops.multiply(pw.variable, ops.cast(m, pw.variable.dtype))
            for pw, m in zip(self._pruned, self._masks)
        ]

    def prune_to(self, sparsity: float) -> None:
        """Updates every mask to `sparsity` by weight magnitude.

        Each gate block of each weight gets exactly `round(n * sparsity)`
        pruned weights (or more, if more were already pruned: a pruned weight
        stays pruned). The pruned weights are zeroed in the variables too.

        Raises:
            ValueError: if a weight holds NaN or infinite values.
        """
        if self.pruning_step is None:
            raise ValueError(
                f"PruningWrapper '{self.name}' is not built yet; call it on "
                f"data or build the model first. Received: sparsity={sparsity}"
            )
        for pw, mask in zip(self._pruned, self._masks):
            value = pw.variable.value
            if not bool(ops.all(ops.isfinite(value))):
                raise ValueError(
                    f"Weight '{pw.name}' of layer '{self.layer.name}' holds NaN or "
                    "infinite values, so it cannot be ranked for pruning; the "
                    "training has diverged (lower the learning rate or check "
                    f"the data). Received: layer={self.layer.name}"
                )
            new_mask = _mask_math.magnitude_mask(value, sparsity, mask.value, pw.gates)
            new_mask = ops.cast(new_mask, mask.dtype)
            mask.assign(new_mask)
            pw.variable.assign(ops.multiply(value, ops.cast(new_mask, value.dtype)))

    def restore_constraints(self) -> None:
        """Puts back the constraints the variables had before wrapping."""
        for pw, original in zip(self._pruned, self._original_constraints):
            pw.variable.constraint = original

    # -------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config["sparsity"] = schedules_lib.serialize(self.schedule)
        config["include"] = None if self.include is None else [list(p) for p in self.include]
        return config


def find_wrappers(model) -> list:
    """All `PruningWrapper` layers inside `model` (or `model` itself)."""
    if isinstance(model, PruningWrapper):
        return [model]
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, PruningWrapper)
    ]


def as_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))
