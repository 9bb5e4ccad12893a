"""Reports: what a person reads. They read run directories, never a live model."""
