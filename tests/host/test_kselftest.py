"""Judging the upstream KVM selftests against the base's baseline."""

from harness import kselftest

TAP = """\
TAP version 13
1..4
# selftests: kvm: x86_64/cpuid_test
# ok 1 something inside the test
ok 1 selftests: kvm: x86_64/cpuid_test
# selftests: kvm: x86_64/amx_test
ok 2 selftests: kvm: x86_64/amx_test # SKIP
# selftests: kvm: dirty_log_test
not ok 3 selftests: kvm: dirty_log_test # TIMEOUT 120 seconds
# selftests: kvm: x86_64/iofd_test
not ok 4 selftests: kvm: x86_64/iofd_test # exit=1
"""


def test_parse() -> None:
    assert kselftest.parse(TAP) == {
        "x86_64/cpuid_test": "pass",
        "x86_64/amx_test": "skip",
        "dirty_log_test": "fail",
        "x86_64/iofd_test": "fail",
    }


def test_regressions_are_base_passes_only() -> None:
    base = {"a": "pass", "b": "fail", "c": "skip", "d": "pass"}
    now = {"a": "pass", "b": "fail", "c": "fail", "d": "skip"}
    assert kselftest.regressions(base, now) == ["d"]
    assert kselftest.regressions(base, {"a": "pass"}) == ["d"]  # not run counts too


def test_dump_load_round_trip(tmp_path) -> None:
    res = kselftest.parse(TAP)
    p = tmp_path / "baseline.txt"
    p.write_text("# comment\n" + kselftest.dump(res))
    assert kselftest.load(p) == res
    assert kselftest.counts(res) == {"pass": 1, "fail": 2, "skip": 1}


def test_command_runs_all_or_one() -> None:
    assert kselftest.command("/ks") == "cd /ks && ./run_kselftest.sh -c kvm"
    assert kselftest.command("/ks", "iofd_test") == "cd /ks && ./run_kselftest.sh -t kvm:iofd_test"
