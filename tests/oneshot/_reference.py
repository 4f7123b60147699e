"""NumPy references of the one-shot methods, and calibration inputs with
outlier features, for the tests."""

import keras
import numpy as np

from tfprune.oneshot._stats import FeatureNorms
from tfprune.oneshot._stats import Hessian


def inputs(rng, n, features, outliers=4, scale=25.0):
    """Inputs with a few outlier features, correlated like real activations."""
    x = rng.normal(size=(n, features)) @ (np.eye(features) + 0.3 * rng.normal(
        size=(features, features)) / np.sqrt(features))
    x[:, rng.choice(features, outliers, replace=False)] *= scale
    return x.astype("float32")


def stats(x):
    norms, hessian = FeatureNorms(x.shape[1]), Hessian(x.shape[1])
    for start in range(0, len(x), 100):  # streamed in batches, as calibration does
        norms.update(keras.ops.convert_to_tensor(x[start:start + 100]))
        hessian.update(keras.ops.convert_to_tensor(x[start:start + 100]))
    return norms, hessian


# ---------------------------------------------------------------- references
def lowest(scores, k):
    """NumPy keep-mask of a 1-D score vector: the k lowest go, ties to the
    lower index."""
    keep = np.ones(scores.size)
    keep[np.argsort(scores, kind="stable")[:k]] = 0
    return keep


def sparsegpt_reference(w, h, sparsity, block=128, damping=0.01, nm=None):
    """Algorithm 1 of Frantar & Alistarh (2023), in float64, on W (outputs,
    inputs), with the reference code's damping and lazy batch updates."""
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    rows, cols = w.shape
    h += damping * np.mean(np.diag(h)) * np.eye(cols)
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: H^-1 = U^T U
    mask = np.ones_like(w)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1, e1, u = w[:, i1:i2].copy(), np.zeros((rows, i2 - i1)), hinv[i1:i2, i1:i2]
        m1 = np.ones_like(w1)
        if nm is None:
            score = w1 ** 2 / np.diag(u)[None] ** 2
            m1 = lowest(score.ravel(), int(round(score.size * sparsity))).reshape(score.shape)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                width = min(nm[1], i2 - i1 - i)
                score = w1[:, i:i + width] ** 2 / np.diag(u)[i:i + width][None] ** 2
                for r in range(rows):
                    m1[r, i:i + width] = lowest(score[r], max(0, width - nm[0]))
            q = w1[:, i] * m1[:, i]
            err = (w1[:, i] - q) / u[i, i]
            w1[:, i:] -= np.outer(err, u[i, i:])
            w1[:, i] = q
            e1[:, i] = err
        w[:, i1:i2] = w1
        mask[:, i1:i2] = m1
        w[:, i2:] -= e1 @ hinv[i1:i2, i2:]
    return w, mask


def wanda_reference(w, x, sparsity):
    """Wanda on a Keras kernel (inputs, outputs): |W| * ||X_j||, each output
    loses its round(inputs * s) lowest."""
    scores = np.abs(w) * np.linalg.norm(x.astype(np.float64), axis=0)[:, None]
    k = int(round(w.shape[0] * sparsity))
    return np.stack([lowest(scores[:, j], k) for j in range(w.shape[1])], axis=1)
