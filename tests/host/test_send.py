"""The copy to send: the user's identity, and the real mailing-list tools on it.

A tiny git repository stands in for the kernel tree: a base commit with
stand-ins for checkpatch.pl (silent) and get_maintainer.pl (the real
output for this series), and two commits by the placeholder identity.  It
is exported by the code ``make patches`` runs, then given to ``git
send-email --dry-run`` and to ``b4 prep`` / ``b4 send -o``, neither of
which touches the network.
"""

import email
import email.message
import email.policy
import os
import re
import shutil
import subprocess
from email.utils import getaddresses, parseaddr
from pathlib import Path

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.kernel import export, git
from harness.kernel.pipeline import last_built
from harness.kernel.source import KernelTree
from harness.settings import from_env

ME = export.Sender("Zoë Example", "zoe@example.org")
# What get_maintainer.pl says for kernel-patch/ in the harness's tree.
GET_MAINTAINER = """\
Paolo Bonzini <pbonzini@redhat.com> (supporter:KERNEL VIRTUAL MACHINE (KVM))
Jonathan Corbet <corbet@lwn.net> (maintainer:DOCUMENTATION)
Shuah Khan <shuah@kernel.org> (maintainer:KERNEL SELFTEST FRAMEWORK)
Sean Christopherson <seanjc@google.com> (supporter:KERNEL VIRTUAL MACHINE FOR X86 (KVM/x86))
kvm@vger.kernel.org (open list:KERNEL VIRTUAL MACHINE (KVM))
linux-doc@vger.kernel.org (open list:DOCUMENTATION)
linux-kernel@vger.kernel.org (open list)
linux-kselftest@vger.kernel.org (open list:KERNEL SELFTEST FRAMEWORK)
"""
TO = ["Paolo Bonzini <pbonzini@redhat.com>", "Sean Christopherson <seanjc@google.com>",
      "kvm@vger.kernel.org"]
CC = ["Jonathan Corbet <corbet@lwn.net>", "Shuah Khan <shuah@kernel.org>",
      "linux-doc@vger.kernel.org", "linux-kernel@vger.kernel.org",
      "linux-kselftest@vger.kernel.org"]
SUBJECT = "KVM: Add a thing"
SUBJECTS = ["KVM: Add a thing to the I/O bus", "KVM: Document the thing"]


def test_to_the_kvm_maintainers_cc_everyone_else() -> None:
    lines = export.addressed(GET_MAINTAINER).splitlines()
    assert lines == [f"To: {x}" for x in TO] + [f"Cc: {x}" for x in CC]


def test_a_kvm_reviewer_is_cc_and_any_kvm_role_is_to() -> None:
    lines = export.addressed(
        "Rita Viewer <rv@example.org> (reviewer:KERNEL VIRTUAL MACHINE (KVM))\n"
        "Max Both <mb@example.org> (maintainer:DOCUMENTATION,maintainer:KERNEL VIRTUAL "
        "MACHINE FOR ARM64 (KVM/arm64))\n").splitlines()
    assert lines == ["To: Max Both <mb@example.org>", "Cc: Rita Viewer <rv@example.org>"]


def test_each_address_once_and_a_maintainer_role_anywhere_makes_to() -> None:
    """Per-patch runs repeat people: a reviewer of one patch who maintains
    another's files is To, once; the arch files the series only affects add
    Cc's, even their KVM maintainers (the series does not go through them)."""
    lines = export.addressed(
        "Sean X86 <s@example.org> (reviewer:KERNEL VIRTUAL MACHINE (KVM))\n"
        "Doc Person <d@example.org> (maintainer:DOCUMENTATION)\n"
        "Sean X86 <s@example.org> (maintainer:KERNEL VIRTUAL MACHINE FOR X86 (KVM/x86))\n"
        "Doc Person <d@example.org> (maintainer:DOCUMENTATION)\n",
        "Arm Maint <a@example.org> (maintainer:KERNEL VIRTUAL MACHINE FOR ARM64 (KVM/arm64))\n"
        "Doc Person <d@example.org> (maintainer:DOCUMENTATION)\n").splitlines()
    assert lines == ["To: Sean X86 <s@example.org>", "Cc: Doc Person <d@example.org>",
                     "Cc: Arm Maint <a@example.org>"]


def test_the_io_bus_callers_are_found_in_every_architecture() -> None:
    """The arch files whose behaviour the series changes: every architecture
    with an io bus caller is there, so its maintainers get the series."""
    try:
        tree = last_built(from_env().with_flavour("default")).tree
    except HarnessError as e:
        pytest.skip(f"needs a built kernel tree to grep: {e}")
    found = export.bus_callers(tree)
    for arch in ("arm64", "loongarch", "mips", "powerpc", "riscv", "x86"):
        assert any(f.startswith(f"arch/{arch}/") for f in found), (arch, found)
    assert "arch/powerpc/kvm/mpic.c" in found and "arch/arm64/kvm/vgic/vgic-its.c" in found


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of its own with the user's identity as the global git config
    (git reads GIT_CONFIG_GLOBAL; b4's libgit2 reads $HOME/.gitconfig)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[user]\n\tname = {ME.name}\n\temail = {ME.email}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for xdg in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(xdg, str(home / xdg.lower()))
    return home


def _commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git.git(repo, "add", "-A")
    name, addr = export.PLACEHOLDER.rstrip(">").split(" <")
    git.git(repo, "commit", "-q", "-m", f"{message}\n\nWhy.\n\nSigned-off-by: {export.PLACEHOLDER}",
            env={"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": addr})


@pytest.fixture
def tree(tmp_path: Path, home: Path) -> KernelTree:
    repo = tmp_path / "linux"
    repo.mkdir()
    git.git(repo, "init", "-q", "-b", "base")
    (repo / "scripts").mkdir()
    (repo / "scripts" / "checkpatch.pl").write_text("exit 0;\n")
    (repo / "scripts" / "get_maintainer.pl").write_text(f"print <<'EOF';\n{GET_MAINTAINER}EOF\n")
    (repo / "virt" / "kvm").mkdir(parents=True)
    (repo / "virt" / "kvm" / "bus.c").write_text("int bus;\n")
    git.git(repo, "add", "-A")
    git.git(repo, "commit", "-q", "-m", "base")
    base = git.out(repo, "rev-parse", "HEAD")
    git.git(repo, "checkout", "-q", "-b", "kvm-iofd")
    _commit(repo, {"virt/kvm/bus.c": "int bus;\nint thing;\n"}, SUBJECTS[0])
    _commit(repo, {"Documentation/thing.rst": "The thing.\n"}, SUBJECTS[1])
    return KernelTree(path=repo, repo=repo, base=base, branch="kvm-iofd", name="tiny")


@pytest.fixture
def committed(tree: KernelTree, tmp_path: Path) -> Path:
    """kernel-patch/ as 'make patches' leaves it, with the cover letter written."""
    directory = tmp_path / "kernel-patch"
    export.export(tree, directory)
    (cover,) = directory.glob(export.COVER_GLOB)
    cover.write_text(cover.read_text().replace("*** SUBJECT HERE ***", SUBJECT)
                     .replace("*** BLURB HERE ***", "Why the thing."))
    return directory


@pytest.fixture
def outgoing(tree: KernelTree, committed: Path, tmp_path: Path) -> Path:
    out = tmp_path / "outgoing"
    export.export(tree, committed, out=out, by=export.sender(tree.path))
    return out


def _messages(directory: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(directory.iterdir()) if p.name != export.SEND_TO]


def test_the_committed_export_keeps_the_placeholder_and_says_so(committed: Path) -> None:
    patches = [m for m in _messages(committed) if "0/2" not in m["Subject"]]
    assert [str(m["From"]) for m in patches] == [export.PLACEHOLDER] * 2
    send_to = (committed / export.SEND_TO).read_text()
    assert send_to.startswith(export.NOT_FOR_SENDING)
    assert send_to.removeprefix(export.NOT_FOR_SENDING) == export.addressed(GET_MAINTAINER)


def test_the_copy_to_send_is_from_and_signed_off_by_the_user(tree: KernelTree,
                                                             outgoing: Path) -> None:
    messages = _messages(outgoing)
    assert [str(m["Subject"]) for m in messages] == [
        f"[PATCH v1 0/2] {SUBJECT}", *(f"[PATCH v1 {i}/2] {s}" for i, s in enumerate(SUBJECTS, 1))]
    assert {str(m["From"]) for m in messages} == {str(ME)}
    for m in messages[1:]:
        body = m.get_content()
        assert f"\nSigned-off-by: {ME}\n---\n" in body and body.count("Signed-off-by:") == 1
    cover = messages[0].get_content()
    assert "Why the thing." in cover and f"{ME.name} (2):" in cover
    for p in outgoing.iterdir():
        assert not any(e in p.read_text() for e in export.PLACEHOLDER_EMAILS), p.name
    assert (outgoing / export.SEND_TO).read_text() == export.addressed(GET_MAINTAINER)


def test_the_copy_to_send_leaves_the_kernel_repository_alone(tree: KernelTree,
                                                            committed: Path, tmp_path: Path) -> None:
    def state() -> tuple[str, str]:
        return git.out(tree.path, "rev-parse", "HEAD"), git.out(tree.path, "count-objects")
    before = state()
    export.export(tree, committed, out=tmp_path / "outgoing", by=ME)
    assert state() == before
    assert git.out(tree.path, "log", "-1", "--format=%an <%ae>") == export.PLACEHOLDER


def test_someone_elses_commit_keeps_its_author_and_gets_the_senders_signoff(
        tree: KernelTree, committed: Path, tmp_path: Path) -> None:
    (tree.path / "virt" / "kvm" / "other.c").write_text("int other;\n")
    git.git(tree.path, "add", "-A")
    git.git(tree.path, "commit", "-q", "-m", "KVM: Other\n\nWhy.\n\n"
            "Signed-off-by: Ann Author <ann@example.org>",
            env={"GIT_AUTHOR_NAME": "Ann Author", "GIT_AUTHOR_EMAIL": "ann@example.org"})
    export.export(tree, committed, out=tmp_path / "out", by=ME)
    last = _messages(tmp_path / "out")[-1]
    assert str(last["From"]) == "Ann Author <ann@example.org>"
    assert last.get_content().count(f"Signed-off-by: {ME}") == 1


def test_no_copy_to_send_without_the_users_identity(tree: KernelTree, home: Path) -> None:
    (home / ".gitconfig").write_text("")
    with pytest.raises(HarnessError) as e:
        export.sender(tree.path)
    assert "git config --global user.name" in str(e.value)


def test_no_copy_to_send_in_kernel_patch(tree: KernelTree, committed: Path) -> None:
    with pytest.raises(HarnessError, match="keeps the placeholder identity"):
        export.export(tree, committed, by=ME)


def test_no_copy_to_send_that_still_names_the_placeholder(tree: KernelTree, committed: Path,
                                                          tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="still names the placeholder identity"):
        export.export(tree, committed, out=tmp_path / "out",
                      by=export.Sender("Someone", "kvm-iofd@lists.invalid"))
    assert not (tmp_path / "out").exists()


def test_out_never_deletes_patches_it_did_not_write(tree: KernelTree, committed: Path,
                                                    tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "0001-my-own.patch").write_text("x")
    with pytest.raises(HarnessError, match="did not write"):
        export.export(tree, committed, out=mine, by=ME)
    assert (mine / "0001-my-own.patch").exists()


def _send_to_args(outgoing: Path) -> list[str]:
    """send-to.txt's lines as git send-email options."""
    return [f"--{kind.lower()}={who}" for kind, who in
            (line.split(": ", 1) for line in (outgoing / export.SEND_TO).read_text().splitlines())]


def _dry_run(log: str) -> list[email.message.EmailMessage]:
    """The headers of each message git send-email's dry run says it would send."""
    blocks = re.findall(r"^Dry-OK\. Log says:\nSendmail: .*?\n(.*?)\n\nResult: OK$", log, re.M | re.S)
    return [email.message_from_string(b + "\n\n", policy=email.policy.default)
            for b in blocks]


def _addrs(header: object) -> list[str]:
    return [addr for _, addr in getaddresses([str(header)])]


def test_git_send_email_dry_run_takes_the_copy_to_send(tree: KernelTree, outgoing: Path) -> None:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout
    if not (Path(exec_path.strip()) / "git-send-email").exists():
        pytest.skip("git send-email is not installed (Debian package git-email; make deps)")
    r = subprocess.run(
        ["git", "send-email", "--dry-run", "--confirm=never", "--smtp-server=/bin/true",
         "--no-format-patch", *_send_to_args(outgoing), *sorted(map(str, outgoing.glob("*.patch")))],
        cwd=tree.path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    messages = _dry_run(r.stdout)
    assert [str(m["Subject"]) for m in messages] == [
        f"[PATCH v1 0/2] {SUBJECT}", *(f"[PATCH v1 {i}/2] {s}" for i, s in enumerate(SUBJECTS, 1))]
    for m in messages:
        assert str(m["From"]) == str(ME)
        assert _addrs(m["To"]) == [parseaddr(x)[1] for x in TO]
        # send-email adds the sender from the patch's own From: and Signed-off-by.
        assert _addrs(m["Cc"]) == [parseaddr(x)[1] for x in CC] + [ME.email]
    assert not any(e in r.stdout + r.stderr for e in export.PLACEHOLDER_EMAILS)


def _b4() -> str:
    b4 = shutil.which("b4", path=paths.tool_env()["PATH"])
    if not b4:
        pytest.skip("b4 is not installed (pyproject's dev dependencies; make venv)")
    return b4


def test_b4_prepares_and_writes_the_copy_to_send(tree: KernelTree, outgoing: Path,
                                                 tmp_path: Path) -> None:
    """As a b4 user would: apply the copy to a branch of their own, enroll
    it, put the cover letter and send-to.txt in b4's cover, and send to a
    directory."""
    b4 = _b4()
    work = tmp_path / "mine"
    git.git(tmp_path, "clone", "-q", str(tree.path), str(work))
    git.git(work, "checkout", "-q", "-b", "iofd", tree.base)
    env = {**os.environ, "GIT_EDITOR": f"cp {tmp_path / 'cover.txt'}"}
    # A mail transport and no web endpoint: b4 send -o then only writes files.
    for key, value in (("sendemail.smtpserver", "/bin/true"), ("b4.send-endpoint-web", "none")):
        git.git(work, "config", key, value)
    subprocess.run(["git", "am", "-q", *sorted(str(p) for p in outgoing.glob("*.patch")
                                              if "-0000-" not in p.name)],
                   cwd=work, check=True, capture_output=True)
    (tmp_path / "cover.txt").write_text(f"{SUBJECT}\n\nWhy the thing.\n\n"
                                        + (outgoing / export.SEND_TO).read_text())

    def run(*args: str) -> None:
        r = subprocess.run([b4, *args], cwd=work, env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        assert r.returncode == 0, f"b4 {' '.join(args)}: {r.stderr}"

    run("prep", "--enroll", tree.base)
    run("prep", "--edit-cover")
    run("send", "--no-sign", "-o", str(tmp_path / "sent"))
    messages = _messages(tmp_path / "sent")
    assert [str(m["Subject"]) for m in messages] == [
        f"[PATCH 0/2] {SUBJECT}", *(f"[PATCH {i}/2] {s}" for i, s in enumerate(SUBJECTS, 1))]
    for m in messages:
        assert str(m["From"]) == str(ME)
        assert _addrs(m["To"]) == [parseaddr(x)[1] for x in TO]
        assert _addrs(m["Cc"]) == [parseaddr(x)[1] for x in CC] + [ME.email]  # b4's send-me-too
    for p in (tmp_path / "sent").iterdir():
        assert not any(e in p.read_text() for e in export.PLACEHOLDER_EMAILS), p.name
