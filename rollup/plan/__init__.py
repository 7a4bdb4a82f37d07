"""The plan: order, batches, placement, checks and estimate. Pure, no I/O."""
