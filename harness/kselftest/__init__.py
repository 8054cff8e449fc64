"""The upstream KVM selftests, run with the kselftest runner and judged
against the unpatched base.

- :mod:`~harness.kselftest.tap`: what the runner's TAP output says (results,
  durations, a test's own output);
- :mod:`~harness.kselftest.baseline`: the environment a run is in, its
  baseline recorded on the base (the files beside this module) and the list
  of tests known to flake there;
- :mod:`~harness.kselftest.run`: planning and bounding a run, rerunning
  what broke, the verdict, and recording a baseline on the base.
"""
