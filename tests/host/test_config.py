"""Fragment parsing and the check that every fragment option took effect."""

from harness import paths
from harness.kernel import config


def test_parse_set_and_unset() -> None:
    opts = config.parse("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n# comment\n")
    assert opts == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"x"'}


def test_unmet_names_each_missing_option() -> None:
    wanted = {"CONFIG_KVM": "m", "CONFIG_EVENTFD": "y", "CONFIG_FOO": "n"}
    actual = {"CONFIG_KVM": "y"}
    assert config.unmet(wanted, actual) == ["CONFIG_KVM=m (got y)", "CONFIG_EVENTFD=y (got unset)"]


def test_fragment_has_what_the_issue_requires() -> None:
    frag = config.parse((paths.REPO / "Kconfig.fragment").read_text())
    for name in ("KVM", "KVM_AMD", "KVM_INTEL", "EVENTFD", "MODULES", "MODULE_UNLOAD",
                 "KVM_WERROR"):
        assert frag.get(f"CONFIG_{name}") in ("y", "m"), name
    assert frag["CONFIG_KVM_AMD"] == "m" and frag["CONFIG_KVM_INTEL"] == "m"


def test_fingerprint_changes_with_content(tmp_path) -> None:
    f = tmp_path / "frag"
    f.write_text("CONFIG_A=y\n")
    before = config.fingerprint([f])
    f.write_text("CONFIG_A=n\n")
    assert config.fingerprint([f]) != before
