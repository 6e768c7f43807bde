"""The CDI spec directory, written atomically."""
