"""Everything that differs between Keras backends, in one place.

The rest of the package asks this module questions (`assigns_in_compiled`,
`step_dtype`, ...) or calls its functions, and never tests the backend's
name itself (`tests/project/test_backend_seam.py` checks it). Each answer
says what tfprune does differently on TensorFlow, JAX and PyTorch, and why.

- Compiled functions: `compiled(fn)` compiles a pure function of tensors
  (`tf.function` on TensorFlow, no XLA, no autograph; `jax.jit` on JAX;
  the function itself on PyTorch); Python ints among the arguments are
  static. `Stateful(fn)` compiles, on TensorFlow, a function that reads and
  assigns variables itself, and calls its traced graph directly.
- Training state: `step_dtype`, `optimizer_applies_constraints`,
  `scores_written_by_optimizer`, `sync_state`, `update_in_train_step`,
  `pure_train_step`.
- Gradients: `runs_custom_gradients`, `identity_on_backward`.
- Selection: `data_dependent_shapes`, `lowest_k`.
- Export: `exports_in_process`.
"""

from __future__ import annotations

import functools

import keras


def name() -> str:
    """The Keras backend in use: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


# ------------------------------------------------------------ training state
def assigns_in_compiled() -> bool:
    """Whether a compiled function may read and assign variables itself
    (TensorFlow, `Stateful`); elsewhere values go in and out of a pure
    function and are assigned outside it."""
    return name() == "tensorflow"


def step_dtype() -> str:
    """int64 steps; int32 on JAX, whose default mode has no 64-bit integers."""
    return "int32" if name() == "jax" else "int64"


def optimizer_applies_constraints() -> bool:
    """Whether `fit`'s optimizer applies `variable.constraint` with the
    masks in sight. Not on JAX: its optimizer applies constraints in a
    stateless call that sees the trainable and optimizer variables only, not
    the masks; there pruned weights are held by the forward mask and zeroed
    at every update, at each epoch end and by `strip`."""
    return name() != "jax"


def scores_written_by_optimizer() -> bool:
    """Whether a gradient criterion's score must be a trainable variable
    that the optimizer overwrites with its "gradient" (JAX: `fit` is pure,
    nothing can be assigned in the backward pass)."""
    return name() == "jax"


def sync_state(model) -> None:
    """Writes the state that JAX's `fit` keeps outside the variables (and
    empties them of) between batches back into them, so that a callback
    reads the step and masks and may assign them; the next batch reads them
    again. Nothing to do on the other backends."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


def update_in_train_step() -> bool:
    """Whether a due mask update can run inside `fit`'s compiled train step
    (TensorFlow, JAX); on PyTorch it runs between steps."""
    return name() in ("tensorflow", "jax")


def pure_train_step() -> bool:
    """Whether `fit`'s train step is a pure function of the training state
    (JAX: `(state, data) -> (logs, state)`, the variables' values held
    outside them), rather than a function that reads and assigns the
    variables (TensorFlow)."""
    return name() == "jax"


# ---------------------------------------------------------------- gradients
#: Backends whose `fit` can feed gradients to a criterion (a TensorFlow
#: custom gradient, a JAX custom VJP, a PyTorch autograd function).
_GRADIENT_BACKENDS = ("tensorflow", "jax", "torch")


def runs_custom_gradients() -> bool:
    """Whether `identity_on_backward` works on this backend."""
    return name() in _GRADIENT_BACKENDS


def identity_on_backward(value, state, accumulate, weight):
    """`value` unchanged, with a backward pass that feeds `state`.

    In the backward pass, `accumulate(state_value, weight, upstream)` gives
    the new value of the variable `state` from the gradient arriving at
    `value`; the gradient itself passes through unchanged.

    - TensorFlow: a `tf.custom_gradient` that assigns `state`.
    - PyTorch: an autograd function that assigns `state` under `no_grad`.
    - JAX (pure, no assignment in a backward pass): the new value is the
      *gradient of `state`*; `state` must be a trainable variable with
      `overwrite_with_gradient=True` (see `scores_written_by_optimizer`).
    """
    backend = name()
    if backend == "jax":
        return _identity_on_backward_jax(value, state, accumulate, weight)
    if backend == "torch":
        return _identity_on_backward_torch(value, state, accumulate, weight)
    import tensorflow as tf

    @tf.custom_gradient
    def _identity(x):
        def grad(upstream):
            state.assign(keras.ops.cast(accumulate(state.value, weight, upstream), state.dtype))
            return upstream

        return tf.identity(x), grad

    return _identity(value)


def _identity_on_backward_jax(value, state, accumulate, weight):
    import jax

    @jax.custom_vjp
    def _identity(x, s, w):
        del s, w
        return x

    def forward(x, s, w):
        return x, (s, w)

    def backward(residual, upstream):
        s, w = residual
        new = keras.ops.cast(accumulate(s, w, upstream), s.dtype)
        return upstream, new, jax.numpy.zeros_like(w)

    _identity.defvjp(forward, backward)
    return _identity(value, keras.ops.convert_to_tensor(state),
                     keras.ops.convert_to_tensor(weight))


def _identity_on_backward_torch(value, state, accumulate, weight):
    import torch

    class _Identity(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, upstream):
            with torch.no_grad():
                w = keras.ops.convert_to_tensor(weight).detach()
                new = accumulate(state.value, w, upstream)
                state.assign(keras.ops.cast(new, state.dtype))
            return upstream

    return _Identity.apply(keras.ops.convert_to_tensor(value))


# ---------------------------------------------------------------- selection
def data_dependent_shapes() -> bool:
    """Whether a compiled function may cut a tensor to a length known only
    at run time (TensorFlow); `jax.jit` needs static shapes."""
    return name() == "tensorflow"


def top_k_with_tensor_k() -> bool:
    """Whether `keras.ops.top_k` takes `k` as a tensor inside a compiled
    function, ties toward the lower index (TensorFlow's `top_k`, whose tie
    order is documented); `jax.lax.top_k` needs a static `k`, PyTorch's
    `topk` leaves the order of ties open."""
    return name() == "tensorflow"


def lowest_k(rows, k: int) -> tuple:
    """`(values, indices)` of the `k` lowest entries of each row of a 2-D
    tensor, ties toward the lower index on every backend (`top_k` of the
    negated rows; PyTorch's `topk` leaves the order of ties open, so a
    stable sort there)."""
    if name() == "torch":
        indices = keras.ops.argsort(rows, axis=-1)[:, :k]
        return keras.ops.take_along_axis(rows, indices, axis=-1), indices
    values, indices = keras.ops.top_k(keras.ops.negative(rows), k)
    return keras.ops.negative(values), indices


# ------------------------------------------------------------------- export
def exports_in_process() -> bool:
    """Whether SavedModel and TFLite export run in this process
    (TensorFlow); elsewhere they run in a child TensorFlow process."""
    return name() == "tensorflow"


def compiled(fn, static_argnums=()):
    """`fn` compiled for the current backend (see the module docstring).

    Args:
        fn: a pure function of tensors and Python values.
        static_argnums: positions of the Python-value arguments (JAX needs
            them named; TensorFlow retraces on a new Python value anyway).

    Returns:
        A callable with `fn`'s signature.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        # One `tf.function` per static values and input shapes: each is
        # traced once. Each wraps a `functools.partial` of its own, because
        # TensorFlow counts the traces of every `tf.function` with the same
        # code object together and warns about retracing past five.
        functions = {}

        def call(*args):
            key = tuple(a if i in static_argnums else _shape(a) for i, a in enumerate(args))
            if key not in functions:
                functions[key] = tf.function(functools.partial(fn), autograph=False)
            return functions[key](*args)

        return call
    if backend == "jax":
        import jax

        return jax.jit(fn, static_argnums=static_argnums)
    return fn


def compiled_train_step(step):
    """A pure train step `(state, data) -> (logs, state)` compiled as `fit`
    compiles its own (JAX: `jax.jit`, the state's buffers donated)."""
    import jax

    return jax.jit(step, donate_argnums=0)


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else x


@functools.lru_cache(maxsize=None)
def cached(fn, static_argnums=()):
    """`compiled(fn)`, made once per function and backend."""
    return compiled(fn, static_argnums)


class Stateful:
    """A `tf.function` (no XLA, no autograph) called through its traced
    concrete functions.

    Calling a `tf.function` first matches the arguments against its traces
    (about 0.15 ms on 2 CPU cores even for an empty function, more with
    several arguments); a mask update between two train steps pays it at
    every call. Here each argument structure (None, or the shapes and
    dtypes of the tensors) is matched once, by a dictionary look-up, and
    the concrete function of that structure is called. Numpy arguments are
    turned into constants.

    Example:

    >>> import numpy as np
    >>> double = Stateful(lambda x: x * 2)
    >>> float(double(np.float32(3.0)))
    6.0
    """

    def __init__(self, fn):
        import tensorflow as tf

        self._tf = tf
        self.function = tf.function(fn, autograph=False, reduce_retracing=True)
        self._concrete = {}

    def _tensor(self, x):
        if x is None or self._tf.is_tensor(x):
            return x
        if isinstance(x, (list, tuple)):
            return [self._tensor(v) for v in x]
        return self._tf.constant(x)

    @staticmethod
    def _key(x):
        if x is None:
            return None
        if isinstance(x, list):
            return tuple(Stateful._key(v) for v in x)
        return (tuple(x.shape), x.dtype)

    def __call__(self, *args):
        args = [self._tensor(a) for a in args]
        key = tuple(self._key(a) for a in args)
        concrete = self._concrete.get(key)
        if concrete is None:
            concrete = self._concrete[key] = self.function.get_concrete_function(*args)
        return concrete(*args)
