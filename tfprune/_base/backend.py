"""What differs between Keras backends, for compiled functions.

`compiled(fn)` compiles a pure function of tensors: `tf.function` on
TensorFlow (no XLA, no autograph), `jax.jit` on JAX, the function itself on
PyTorch. Python ints among the arguments are static: the function is traced
once per value (and per input shape).

`stateful(fn)` compiles, on TensorFlow, a function that reads and assigns
variables itself, and calls its traced graph directly (see `Stateful`).
"""

from __future__ import annotations

import functools

import keras


def name() -> str:
    """The Keras backend in use: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


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
