"""Settings loading, logging and OpenTelemetry set-up, and the one service runner."""
