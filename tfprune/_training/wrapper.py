"""`PruningWrapper`: a Keras layer wrapper that masks the weights it wraps."""

from __future__ import annotations

import inspect

import keras
from keras import ops

from tfprune import criteria as criteria_lib
from tfprune import schedules as schedules_lib
from tfprune import strategies as strategies_lib
from tfprune._base import backend
from tfprune._base import keras_internals
from tfprune._base import walk
from tfprune._base.validation import received
from tfprune._masks.core import apply_mask
from tfprune._training import state as state_lib
from tfprune._training.state import Slot  # noqa: F401 (re-exported)
from tfprune._training.state import create_state, state_variables
from tfprune._training.update import MaskUpdate

def _accepts(fn, name) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call_signature_of(layer) -> inspect.Signature:
    """The signature Keras binds a wrapper's call arguments against.

    The wrapper forwards every argument to the inner layer, so Keras must see
    the inner layer's parameters one by one: bound against the wrapper's own
    `(inputs, *args, training=None, **kwargs)`, keyword arguments that mix
    tensors and plain values (`attention_mask=<tensor>, use_causal_mask=True`)
    would land in one nested argument, which Keras rejects. `training` is
    added (keyword-only) when the inner layer does not take it, since the
    wrapper itself does.
    """
    params = list(inspect.signature(layer.call).parameters.values())
    if not any(p.name == "training" for p in params):
        training = inspect.Parameter("training", inspect.Parameter.KEYWORD_ONLY, default=None)
        at = next(
            (i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params)
        )
        params.insert(at, training)
    return inspect.Signature(params)


def _builds_from_one_shape(layer) -> bool:
    """True if `layer.build(input_shape)` creates the layer's weights.

    False for layers that only get their weights when first called: those
    whose `build` is Keras' default (custom blocks that create sub-layers in
    `__init__`) or takes several shapes (MultiHeadAttention).
    """
    if keras_internals.has_default_build(layer):
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
    the masks during `fit` following the sparsity schedule and the strategy.

    Any layer whose weights tfprune can find is accepted: Dense, EinsumDense,
    convolutions, Embedding, MultiHeadAttention, SimpleRNN/LSTM/GRU (each
    gate block gets its own threshold), Bidirectional, TimeDistributed,
    nested models, custom layers that hold such layers, and layers that
    implement `get_prunable_weights()`.

    The strategy decides what else the wrapper keeps, in variables saved
    with the model: with `Units`, masks for the biases of recurrent cells;
    with a gradient criterion (`Taylor`, `Movement`), a score per pruned
    weight, fed by the backward pass while training; with a regularizer, the
    mask of the next update, and a penalty added to the loss while training.
    The default strategy adds nothing to the train step.

    Args:
        layer: the `keras.layers.Layer` to prune.
        sparsity: a number in [0, 1) or a `tfprune.schedules.PruningSchedule`.
        include: optional list of index paths (lists of child positions, see
            `tfprune.prune`) that restrict pruning to some of the layers
            inside `layer`. `None` (default) prunes all of them.
        strategy: a `tfprune.strategies.Strategy` or a preset name. Defaults
            to `Strategy()`: magnitude, unstructured, every tensor at the
            schedule's sparsity.
        **kwargs: base layer arguments, such as `name`.

    Attributes:
        frozen: when True, `PruningCallback` no longer updates the masks
            (set by `tfprune.QualityGuard`; not saved).

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

    def __init__(self, layer, sparsity, include=None, strategy=None, **kwargs):
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
            for sub in keras_internals.flatten_layers(layer, include_self=False)
            if isinstance(sub, PruningWrapper)
        ]
        if nested:
            raise ValueError(
                f"Layer '{layer.name}' already contains PruningWrapper layers "
                f"{nested}; a layer can be wrapped only once. "
                f"Received: layer={layer.name}"
            )
        self.schedule = schedules_lib.get(sparsity, "sparsity")
        self.strategy = (
            strategies_lib.Strategy() if strategy is None else strategies_lib.get(strategy)
        )
        if include is not None:
            include = [tuple(int(i) for i in p) for p in include]
        self.include = include
        kwargs.setdefault("name", f"pruned_{layer.name}")
        super().__init__(layer, **kwargs)
        keras_internals.set_call_signature(self, _call_signature_of(layer))
        self._call_passes_training = _accepts(layer.call, "training")
        self.supports_masking = layer.supports_masking
        self.frozen = False
        self._pruned = []
        self._masks = []
        self._slots = []
        self._original_constraints = []
        self._resolved = None
        self._local_plan = None
        self.pruning_step = None
        self._mask_update = None

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
        self._pruned = self._prunable_weights()
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
        self._resolved = self.strategy.resolve(self.layer)
        criterion = self._resolved.criterion
        if criterion.needs_gradients and not backend.runs_custom_gradients():
            raise ValueError(
                f"Criterion {type(criterion).__name__} collects gradients during `fit` "
                "with a TensorFlow custom gradient, a JAX custom VJP or a PyTorch autograd "
                f"function, which the '{backend.name()}' backend does not run; use "
                "a weight-only criterion (magnitude, l2_norm, random) there. "
                f"Received: criterion={type(criterion).__name__}"
            )
        self._masks, self.pruning_step, self._slots, self._original_constraints = (
            create_state(self, self._pruned, self._resolved)
        )

    def _prunable_weights(self) -> list:
        """The `PrunableWeight`s to mask (a subclass may select fewer)."""
        return walk.prunable_weights(self.layer, include=self.include)

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

    def _mapped_value(self, slot, training):
        variable = slot.weight.variable
        value = apply_mask(variable, slot.mask)
        if training is True and slot.score is not None:
            value = criteria_lib.accumulate_on_backward(
                value, slot.score, self._resolved.criterion, weight=variable
            )
        return value

    def call(self, inputs, *args, training=None, **kwargs):
        kwargs = self._inner_kwargs(training, kwargs)
        self._ensure_masks(inputs, args, kwargs)
        # A pruning callback attaches the wrappers it trains (`state.attach`).
        if training is True and not state_lib.is_attached(self):
            raise RuntimeError(
                f"PruningWrapper '{self.name}' is being trained without "
                "`tfprune.PruningCallback`, so its masks would never be "
                "updated and the model would train dense. Pass "
                "`callbacks=[tfprune.PruningCallback()]` to `fit` (in a custom "
                "loop, call the callback's hooks; see the docs)."
            )
        if training is True and self._resolved.regularizer is not None:
            for slot in self._slots:
                if slot.next_mask is not None:
                    self.add_loss(self._resolved.regularizer(slot.weight.variable, slot.next_mask))
        # One multiply per masked weight: pruned weights contribute nothing
        # and get exactly zero gradient, whatever the variable holds.
        mapping = [(s.weight.variable, self._mapped_value(s, training)) for s in self._slots]
        masked = {id(s.weight.variable) for s in self._slots}
        others = [v for v in self.layer.variables if id(v) not in masked]
        if keras_internals.in_stateless_scope():
            # Inside a stateless call (JAX's `fit`, `keras.StatelessScope`):
            # the other variables' values live in the outer scope, which the
            # inner one hides; they are passed on.
            mapping += [(v, v.value) for v in others]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            given = {id(v): scope.get_current_value(v) for v in others}
            outputs = self.layer(inputs, *args, **kwargs)
        # Variables other than the masked weights (seed generators of dropout,
        # moving statistics, RNN states) were updated inside the scope only.
        for variable in others:
            value = scope.get_current_value(variable)
            if value is not None and value is not given[id(variable)]:
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
        """The `PrunableWeight`s this wrapper prunes, in mask order."""
        return list(self._pruned)

    @property
    def masks(self) -> list:
        """The mask variables, one per entry of `pruned_weights`."""
        return list(self._masks)

    @property
    def slots(self) -> list:
        """Every masked tensor with its state (`Slot`s): the entries of
        `pruned_weights`, then the recurrent biases masked by `Units`."""
        return list(self._slots)

    def masked_values(self) -> list:
        """Current effective values (weight x mask) of the pruned weights."""
        return [
            apply_mask(pw.variable.value, m)
            for pw, m in zip(self._pruned, self._masks)
        ]

    def check_finite(self) -> None:
        """Raises a `ValueError` naming the weight if one holds NaN or inf."""
        for pw in self._pruned:
            if not bool(ops.all(ops.isfinite(pw.variable.value))):
                raise ValueError(
                    f"Weight '{pw.name}' of layer '{self.layer.name}' holds NaN or "
                    "infinite values, so it cannot be ranked for pruning; the "
                    "training has diverged (lower the learning rate or check "
                    f"the data). Received: layer={self.layer.name}"
                )

    def plan(self):
        """The wrapper's strategy applied to its own weights alone (a
        `tfprune.strategies.Plan`; no input/output protection, which needs
        the whole model). `prune_to` uses it."""
        if self._local_plan is None:
            self._local_plan = self.strategy.plan_weights(self.layer, self._pruned, io=False)
        return self._local_plan

    def prune_to(self, sparsity: float) -> None:
        """Updates every mask to `sparsity` with the wrapper's strategy.

        The strategy (by default magnitude, each gate block of each weight
        exactly `round(n * sparsity)` pruned) is applied to this wrapper's
        weights alone (`PruningCallback` plans over the whole model). A
        pruned weight stays pruned; pruned weights are zeroed in the
        variables too.

        Raises:
            ValueError: if the wrapper is not built, or a weight holds NaN
                or infinite values.
        """
        if self.pruning_step is None:
            raise ValueError(
                f"PruningWrapper '{self.name}' is not built yet; call it on "
                f"data or build the model first. Received: sparsity={sparsity}"
            )
        if self._mask_update is None:
            plan = self.plan()
            slots = {id(s.weight.variable): s for s in self._slots}  # variable -> its slot
            names = {s.key: self.layer.name for s in self._slots if s.counted}
            self._mask_update = MaskUpdate(
                plan, [slots.get(id(pw.variable)) for pw in plan.weights], layer_names=names)
        self._mask_update(sparsity)

    def restore_constraints(self) -> None:
        """Puts back the constraints the variables had before wrapping."""
        for slot, original in zip(self._slots, self._original_constraints):
            slot.weight.variable.constraint = original

    # -------------------------------------------------------------- saving
    def save_own_variables(self, store):
        # One order on every backend (a gradient score is trainable on JAX
        # only, and Keras would list it first there).
        for i, variable in enumerate(self._own_variables()):
            store[f"{i}"] = variable

    def load_own_variables(self, store):
        own = self._own_variables()
        if len(store.keys()) != len(own):
            raise ValueError(
                f"PruningWrapper '{self.name}' expected {len(own)} variables "
                f"({[v.name for v in own]}), but received {len(store.keys())} variables "
                "during loading (a model pruned with another strategy: criterion, "
                "regularizer or granularity, has other pruning variables). "
                f"Received: variables={len(store.keys())}")
        for i, variable in enumerate(own):
            variable.assign(store[f"{i}"])

    def _own_variables(self) -> list:
        return state_variables(self) if self.pruning_step is not None else []

    # -------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config["sparsity"] = schedules_lib.serialize(self.schedule)
        config["include"] = None if self.include is None else [list(p) for p in self.include]
        config["strategy"] = keras.saving.serialize_keras_object(self.strategy)
        return config


# The model walk sees the wrapped layer in the wrapper's place.
walk.register_transparent(PruningWrapper, lambda wrapper: wrapper.layer)


def build_like_inner(layer):
    """Builds a new wrapper around a built layer, so that its masks exist
    before the first call (which a subclassed model makes only in `fit`);
    returns `layer` (anything else is returned as it is)."""
    if isinstance(layer, PruningWrapper) and layer.layer.built and not layer.built:
        config = layer.layer.get_build_config() or {}
        layer.build(config.get("input_shape"))
    return layer


def find_wrappers(model) -> list:
    """The `PruningWrapper` layers of a model, in the order Keras tracks them.

    Wrappers inside nested models and custom blocks are included; a
    wrapper passed itself gives `[wrapper]`. Use it to read masks, the step
    of the last update or a wrapper's schedule, or to call `prune_to`.

    Args:
        model: a Keras model or layer.

    Returns:
        A list of `tfprune.PruningWrapper`.

    Example:

    ```python
    pruned = tfprune.prune(model, 0.5)
    for wrapper in tfprune.find_wrappers(pruned):
        print(wrapper.name, [tuple(m.shape) for m in wrapper.masks])
    ```
    """
    if isinstance(model, PruningWrapper):
        return [model]
    return [
        layer
        for layer in keras_internals.flatten_layers(model, include_self=False)
        if isinstance(layer, PruningWrapper)
    ]
