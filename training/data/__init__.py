"""From a released manifest to model-ready batches.

- ``dataset.py``: :class:`ManifestData` (the split, checked against the stores before training)
  and :class:`ManifestDataset` (samples and batches);
- ``loader.py``: :class:`ManifestLoader` (workers, a resumable position, decode-error accounting);
- ``layouts.py`` + ``layouts.yaml``: camera slots and dimension layout per embodiment;
- ``normalize.py``: normalisation from the stores' statistics, and its inverse;
- ``images.py``: decoding at the input size, A1's augmentation;
- ``spec.py``: what is saved beside a checkpoint for inference.
"""

from training.data.dataset import ManifestData, ManifestDataset, TrainingDataError
from training.data.loader import ManifestLoader
from training.data.spec import DataSpec, EmbodimentCodec

__all__ = ["DataSpec", "EmbodimentCodec", "ManifestData", "ManifestDataset", "ManifestLoader", "TrainingDataError"]
