"""The training path: one Lightning loop for every strategy and modality, plus the embedding
cache that makes linear probes take seconds."""
