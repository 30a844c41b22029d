"""What every stage shares: typed config, run directory, user errors, device probing."""
