"""The test VM: acceleration, virtme-ng command line, console session, splats."""
