"""What differs between Keras backends, for the one-shot code.

`compiled(fn)` compiles a pure function of tensors: `tf.function` on
TensorFlow (no XLA, no autograph), `jax.jit` on JAX, the function itself on
PyTorch. Python ints among the arguments are static: the function is traced
once per value (and per input shape).
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
