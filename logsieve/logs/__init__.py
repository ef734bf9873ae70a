"""The log → tokens core shared by training and serving: masking, template
mining and matching, windowing and the vocabulary. Imports nothing of ours
above :mod:`logsieve.config` and :mod:`logsieve.errors`."""
