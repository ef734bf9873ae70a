"""FastLogAD: the model, the pseudo-anomaly generators, training, and the bundle it writes."""
