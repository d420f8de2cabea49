"""The A1 policy (``training/model/``): backbone, heads, exits, weights loading, tokenizer.

transformers is told not to look for TensorFlow or JAX: the environment has TensorFlow
(the DROID reader's TFDS parsing), and importing it would cost seconds and hundreds of MB
in every training process.
"""

import os

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("USE_FLAX", "0")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from training.model.policy import A1Policy  # noqa: E402

__all__ = ["A1Policy"]
