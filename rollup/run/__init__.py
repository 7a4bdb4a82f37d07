"""The run: the state machines, their actions, the journal and the events."""
