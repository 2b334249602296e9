"""The benchmark: `python bench/run.py` measures mailsvc against baselines taken in the same run."""
