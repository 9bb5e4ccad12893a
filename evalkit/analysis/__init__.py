"""Analysis: decisions read from run directories (paired comparison, regression gate, signal
and noise). It reads the run store only, never a live model."""
