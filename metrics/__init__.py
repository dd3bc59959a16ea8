"""Quality metrics for generators (FID, KID, precision/recall, IS, PPL and the domain-expansion
metrics). `metrics.metric_main` holds the registry; `calc_metrics.py` is the command line."""
