"""The patched kernel: source tree, series, config and build."""
