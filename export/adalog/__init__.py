"""ADALog: the per-line masked-language-model detector (text side, model, bundle)."""
