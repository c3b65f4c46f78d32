"""DataFlow's benchmark: every figure set beside a baseline measured in the same run."""
