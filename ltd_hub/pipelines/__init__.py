"""Multi-step flows built from the library: the quick start and the reproduction of an experiment config."""
