"""A character-level GPT in Keras 3, trained on tiny Shakespeare.

The "baby GPT" of nanoGPT's `shakespeare_char` recipe for a CPU, in Keras:
4 transformer blocks (pre-norm, 4 heads of 32, causal self-attention, a
4x GELU MLP), 128-wide embeddings of 65 characters and of 64 positions, a
final LayerNorm and a Dense head to the 65 characters: 0.80M parameters.
Trained the way that recipe trains it (AdamW, learning rate 1e-3 after 100
warm-up steps, cosine decay to 1e-4 at 2,000 steps, beta_2 0.99, weight
decay 0.1, gradients clipped at 1.0, batches of 12 windows of 64
characters, no dropout), it reaches a validation loss of about 1.88 there.

Data: `examples/data/tinyshakespeare.txt.gz` (provenance in its README),
split as nanoGPT splits it: the first 90% of the characters for training,
the last 10% for validation. Every window is drawn with a seeded generator,
so the runs repeat.

The model is a Functional model whose blocks are layers of their own
(`Block`): `tfprune.prune_oneshot` calibrates them one after the other.
"""

from __future__ import annotations

import gzip
import math
import os

import keras
import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tinyshakespeare.txt.gz")
CONTEXT, DIM, HEADS, LAYERS = 64, 128, 4, 4
PACKAGE = "tfprune_examples"


# ------------------------------------------------------------------- data
class Text:
    """The corpus as character ids, split 90/10 as nanoGPT does."""

    def __init__(self, path: str = DATA):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            text = f.read()
        self.chars = sorted(set(text))
        lookup = {c: i for i, c in enumerate(self.chars)}
        ids = np.fromiter((lookup[c] for c in text), dtype=np.int32, count=len(text))
        cut = int(0.9 * len(ids))
        self.train, self.val = ids[:cut], ids[cut:]

    @property
    def vocabulary(self) -> int:
        return len(self.chars)

    def windows(self, split: str, n: int, seed: int, context: int = CONTEXT):
        """`(x, y)`: `n` random windows of `context` ids and the next ids."""
        ids = self.train if split == "train" else self.val
        starts = np.random.default_rng(seed).integers(0, len(ids) - context - 1, n)
        x = np.stack([ids[s:s + context] for s in starts])
        y = np.stack([ids[s + 1:s + context + 1] for s in starts])
        return x, y

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


# ------------------------------------------------------------------ model
@keras.saving.register_keras_serializable(PACKAGE)
class Embeddings(keras.layers.Layer):
    """Token embedding plus a learned position embedding."""

    def __init__(self, vocabulary, context, dim, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary, self.context, self.dim = vocabulary, context, dim
        self.tokens = keras.layers.Embedding(vocabulary, dim, name="token_embedding")
        self.positions = keras.layers.Embedding(context, dim, name="position_embedding")

    def build(self, input_shape):
        self.tokens.build(input_shape)
        self.positions.build((None,))

    def call(self, ids):
        length = keras.ops.shape(ids)[1]
        return self.tokens(ids) + self.positions(keras.ops.arange(length))[None]

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary,
                "context": self.context, "dim": self.dim}


@keras.saving.register_keras_serializable(PACKAGE)
class Block(keras.layers.Layer):
    """A pre-norm transformer block: causal self-attention, then an MLP."""

    def __init__(self, dim, heads, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads = dim, heads
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm1")
        self.attention = keras.layers.MultiHeadAttention(heads, dim // heads, name="attention")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm2")
        self.fc = keras.layers.Dense(4 * dim, activation="gelu", name="fc")
        self.proj = keras.layers.Dense(dim, name="proj")

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.fc.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (4 * self.dim,))

    def call(self, x, training=None):
        h = self.norm1(x)
        x = x + self.attention(h, h, use_causal_mask=True, training=training)
        return x + self.proj(self.fc(self.norm2(x)))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads}


def build(vocabulary: int, context: int = CONTEXT, dim: int = DIM, heads: int = HEADS,
          layers: int = LAYERS) -> keras.Model:
    """The character GPT: ids `(batch, context)` in, logits out."""
    ids = keras.Input((context,), dtype="int32", name="ids")
    x = Embeddings(vocabulary, context, dim, name="embeddings")(ids)
    for i in range(layers):
        x = Block(dim, heads, name=f"block_{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    return keras.Model(ids, keras.layers.Dense(vocabulary, name="lm_head")(x), name="char_gpt")


def optimizer(steps: int, peak: float = 1e-3, warmup: int = 100):
    """AdamW with nanoGPT's schedule: warm-up, cosine decay to peak / 10."""
    warmup = min(warmup, max(steps // 10, 1))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(steps - warmup, 1), alpha=0.1, warmup_target=peak,
        warmup_steps=warmup)
    opt = keras.optimizers.AdamW(schedule, beta_2=0.99, weight_decay=0.1, clipnorm=1.0)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    return opt


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train(model, text: Text, steps: int, seed: int = 0, batch: int = 12, callbacks=(),
          learning_rate: float = 1e-3):
    """Trains `steps` steps on random training windows; returns the history."""
    x, y = text.windows("train", steps * batch, seed=seed)
    model.compile(optimizer(steps, learning_rate), loss())
    # Its slots made now, not in the first traced step: TensorFlow traces a
    # step that creates variables twice (seconds for this model).
    model.optimizer.build(model.trainable_variables)
    return model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0,
                     callbacks=list(callbacks))


def val_loss(model, text: Text, windows: int = 480, seed: int = 1234) -> float:
    """Mean cross-entropy (nats per character) on fixed validation windows."""
    x, y = text.windows("val", windows, seed=seed)
    logits = model.predict(x, batch_size=96, verbose=0)
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=-1))
    picked = np.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    return float(np.mean(log_norm - picked))


def sample(model, text: Text, prompt: str = "ROMEO:", length: int = 120, seed: int = 0) -> str:
    """Characters drawn from the model after `prompt` (temperature 1)."""
    lookup = {c: i for i, c in enumerate(text.chars)}
    ids = [lookup[c] for c in prompt]
    rng = np.random.default_rng(seed)
    for _ in range(length):
        window = np.zeros((1, CONTEXT), np.int32)
        recent = ids[-CONTEXT:]
        window[0, :len(recent)] = recent
        # One batch: `predict` would set up a dataset for each character.
        logits = keras.ops.convert_to_numpy(model.predict_on_batch(window))[0, len(recent) - 1]
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return text.decode(ids)


def parameters(model) -> int:
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))
