"""What a user reads: the plan's renderings, event sinks, JUnit, status."""
