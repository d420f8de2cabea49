"""The model half of a1pipe: training data, the A1 policy, training, calibration and evaluation.

``training`` reads released manifests (``pipelines.manifest``) and the episode store reader
(``pipelines.episode_store``), and nothing else of the data half: no converter, no Beam, no
curation. Its settings are ``params.yaml``'s ``training`` section (``training/config.py``).
"""
