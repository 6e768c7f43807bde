"""The claim state machine: prepare and unprepare."""
