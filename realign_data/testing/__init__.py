"""Test and demo material: the sample corpus, tiny random models, the one-command demo."""
