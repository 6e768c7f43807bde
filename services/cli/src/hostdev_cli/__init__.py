"""The hostdev command: look at a host, render its slices, operate claims by hand."""
